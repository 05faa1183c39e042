"""The shipped bundles (kws_edge/default_bundle, kws_edge/micro_bundle): their manifests, and that the recipe
reproduces them (issue 18).

* ``test_shipped_bundle_manifest``: fast, no data needed: each bundle loads, fits its tier's budgets (the
  default: every budget of the Raspberry Pi Zero 2 W profile; the micro tier: model <= 24 KB and a TFLite
  Micro arena <= 20 KB for the model that runs, measured in the real interpreter), and carries its
  provenance, metrics, validation-chosen detector defaults and the CC BY 4.0 attribution.
* ``test_shipped_bundle_on_real_clips``: realdata, seconds: the runtime classifies validation-speaker
  clips of both folders as well as the manifest says.
* ``test_shipped_validation_figures_reproduce_exactly``: realdata, seconds (what CI checks of the
  reproduction): both data folders indexed with the shipped training configuration, the validation
  split's features computed again by the runtime's MFCC, the int8 model run on them: the confusion
  matrix is exactly the manifest's (any change of the split, the silence crops, the features or the
  engine shows here).
* ``test_a_keyword_said_once_is_heard``: realdata, seconds: validation-speaker "yes" and "no" clips, each
  alone as a 1 s recording through ``KeywordDetector.process()`` + ``flush()`` at the bundle's defaults.
* ``test_recipe_reproduces_shipped_bundle``: realdata + slow + ship (about 75 minutes for both tiers on
  2 cores, not in CI; ``pytest -m ship -s`` before a bundle ships): runs ``training/recipes/make_bundle.sh
  TIER`` (two DS-CNN teachers, trained once for both tiers, the distilled kws-train, kws-convert, finish)
  and checks the reproduced bundle stays within 1 point of every shipped figure (training is deterministic
  per machine: on the machine that built them the models come out byte for byte, which the test prints).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kws_edge.bundle import load_bundle, shipped_bundle_path

REPO = Path(__file__).resolve().parents[2]
DATA_ROOT = REPO.parent / "shared" / "data"
FOLDERS = (DATA_ROOT / "speech_commands_subset", DATA_ROOT / "speech_commands_more")
TIERS = ("default", "micro")
MAX_MICRO_MODEL_BYTES = 24 * 1024
MAX_MICRO_ARENA_BYTES = 20 * 1024
TOLERANCE = 0.01  # one point

needs_data = pytest.mark.skipif(not all(f.is_dir() for f in FOLDERS),
                                reason=f"{FOLDERS[0]} and {FOLDERS[1].name} are not both on this machine")


@pytest.fixture(scope="module", params=TIERS)
def shipped(request):
    path = shipped_bundle_path(request.param)
    if not (path / "manifest.json").is_file():
        pytest.skip(f"no {request.param} bundle in this checkout ({path})")
    return load_bundle(path)


def _tier(bundle) -> str:
    return bundle.path.name.removesuffix("_bundle")


def test_shipped_bundle_manifest(shipped):
    m = shipped.manifest
    assert m.name == f"yes-no-{_tier(shipped)}"
    assert m.labels == ("_silence_", "_unknown_", "yes", "no") and m.keywords == ("yes", "no")
    assert m.model.quantization == "int8" and m.streaming_model is not None
    budgets = m.budgets
    assert budgets.within_budget and not budgets.allowed_over_budget
    if _tier(shipped) == "micro":
        assert budgets.device == "cortex-m7-tflm"
        assert shipped.streaming_model_bytes is not None and len(shipped.streaming_model_bytes) <= MAX_MICRO_MODEL_BYTES
        arena = budgets.tflm.models[m.streaming_model.file].arena_bytes  # measured in TFLite Micro
        assert 0 < arena <= MAX_MICRO_ARENA_BYTES, arena
    else:
        assert budgets.device == "raspberry-pi-zero-2-w"
    assert "Speech Commands" in m.attribution and "CC BY 4.0" in m.attribution
    assert len(m.provenance.data_sha256) == 64
    assert m.provenance.config["exclude_words"]
    assert len(m.provenance.config["data"]) == 2  # both shared folders
    assert isinstance(m.provenance.seed, int)
    assert f"yes_no_{_tier(shipped)}.toml" in m.provenance.recipe
    # a distilled model names its teachers (the runs of --distill-from) with their hashes
    teachers = m.provenance.run.distilled_from
    assert teachers and len(teachers) == len(m.provenance.config.get("distill_from", []))
    for t in teachers:
        assert len(t.config_sha256) == 64 and len(t.data_sha256) == 64 and 0 < t.validation_accuracy <= 1
    for key in ("validation", "unseen_words", "word_false_accepts", "isolated", "streaming"):
        assert getattr(m.metrics, key) is not None, key
    assert m.metrics.headline == "validation"
    assert "go" in m.metrics.word_false_accepts.per_word
    assert set(m.detector.thresholds) == {"yes", "no"}
    # the report stream and the isolated keywords measured the shipped settings, and the rule chose them
    assert m.detector == m.metrics.streaming.report.detector == m.metrics.isolated.detector
    assert m.detector == m.metrics.streaming.tuning.chosen.detector
    assert m.metrics.streaming.report.score.duration_s >= 30 * 60


def _validation_files(bundle, word: str) -> list[Path]:
    from kws_edge.training.dataset import which_set

    cfg = bundle.manifest.provenance.config
    return [f for folder in FOLDERS for f in sorted((folder / word).glob("*.wav"))
            if which_set(f.name, cfg["validation_percentage"], cfg["testing_percentage"]) == "validation"]


@needs_data
@pytest.mark.realdata
def test_shipped_bundle_on_real_clips(shipped):
    """Validation-speaker keyword clips through the runtime's KwsModel: recall as in the manifest."""
    from kws_edge.audio import read_wav
    from kws_edge.model import KwsModel

    model = KwsModel(shipped)
    for word in ("yes", "no"):
        files = _validation_files(shipped, word)
        assert len(files) > 50
        pred = [model.labels[int(np.argmax(model.classify(read_wav(f).samples)))] for f in files]
        recall = float(np.mean([p == word for p in pred]))
        shipped_recall = shipped.manifest.metrics.validation.converted.recall[word]
        assert recall >= shipped_recall - TOLERANCE, (word, recall, shipped_recall)


@needs_data
@pytest.mark.realdata
def test_a_keyword_said_once_is_heard(shipped):
    """Each validation-speaker keyword clip alone, as ``kws detect`` reads a 1 s file: process() + flush()."""
    from kws_edge.audio import read_wav
    from kws_edge.detector import KeywordDetector

    det = KeywordDetector(shipped)
    rates = {}
    for word in ("yes", "no"):
        heard = []
        for f in _validation_files(shipped, word):
            det.reset()
            found = det.process(read_wav(f).samples) + det.flush()
            heard.append(word in {d.label for d in found})
        rates[word] = float(np.mean(heard))
    # the manifest's isolated figure pads each clip with 1 s of noise; a bare clip is harder. Recorded
    # at shipping (README): the bare-clip rates of both bundles; the floor here is 10 points under them.
    floor = {"default": 0.85, "micro": 0.80}[_tier(shipped)]
    assert min(rates.values()) >= floor, rates


@needs_data
@pytest.mark.realdata
def test_shipped_validation_figures_reproduce_exactly(shipped):
    from kws_edge.config import from_dict
    from kws_edge.metrics import clip_metrics
    from kws_edge.model import KwsModel
    from kws_edge.training.config import TrainConfig
    from kws_edge.training.dataset import index_dataset
    from kws_edge.training.featurize import clean_features

    m = shipped.manifest
    data = tuple(str(f) for f in FOLDERS)
    config = from_dict(TrainConfig, {**m.provenance.config, "data": data})
    index = index_dataset(list(data), config)
    clips = index.split("validation")
    x = clean_features(index.root, clips, config, index.noise_files, cache=False, workers=1)
    y = np.array([config.labels.index(c.label) for c in clips])
    model = KwsModel(shipped)
    pred = np.array([int(np.argmax(model.scores_features(f))) for f in x])
    got = clip_metrics(y, pred, m.labels, m.keywords)
    want = m.metrics.validation.converted
    assert got["n_clips"] == want.n_clips
    assert tuple(map(tuple, got["confusion_matrix"])) == want.confusion_matrix, (got["confusion_matrix"],
                                                                                  want.confusion_matrix)


def _figures(metrics) -> dict[str, float]:
    v = metrics.validation.converted
    stream = metrics.streaming.report.score
    return {
        "validation accuracy": v.accuracy,
        "yes recall": v.recall["yes"],
        "no recall": v.recall["no"],
        "keyword false-accept rate": v.keyword_false_accept_rate,
        "unseen-word false-accept rate": metrics.unseen_words.keyword_false_accept_rate,
        "go heard as a keyword": metrics.word_false_accepts.per_word["go"].false_accept_rate,
        "streaming false-reject rate": stream.false_reject_rate,
    }


@pytest.fixture(scope="module")
def ship_work(tmp_path_factory):
    """One work folder for both tiers: make_bundle.sh trains the teachers once and the other tier reuses them."""
    return tmp_path_factory.mktemp("make_bundle")


@needs_data
@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.ship
def test_recipe_reproduces_shipped_bundle(shipped, ship_work, tmp_path):
    tier = _tier(shipped)
    out = tmp_path / "bundle"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "DATA": " ".join(str(f) for f in FOLDERS)}
    proc = subprocess.run(["bash", str(REPO / "training/recipes/make_bundle.sh"), tier, str(ship_work), str(out)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=4 * 3600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    reproduced = load_bundle(out)
    assert reproduced.manifest.budgets.within_budget
    # data_sha256 is not compared: it hashes the synthetic negatives' audio, which another eSpeak NG build
    # may render differently; the figures are what the issue asks to reproduce.
    assert len(reproduced.manifest.provenance.data_sha256) == 64
    got, want = _figures(reproduced.manifest.metrics), _figures(shipped.manifest.metrics)
    same = {name: (out / name).read_bytes() == (shipped.path / name).read_bytes()
            for name in ("model.tflite", "model_streaming.tflite")}
    print(f"\n{tier}: reproduced figures {got}; model files byte-identical to the shipped ones: {same}")
    off = {k: (got[k], want[k]) for k in want if abs(got[k] - want[k]) > TOLERANCE}
    assert not off, f"reproduced figures more than 1 point from the shipped ones: {off}; summary {summary}"
