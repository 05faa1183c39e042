"""The shipped default bundle (kws_edge/default_bundle): its manifest, and that the recipe reproduces it.

* ``test_default_bundle_manifest``: fast, no data needed: the bundle loads, fits the size budgets of
  issue 7 (model <= 24 KB, peak activations <= 16 KB), and carries its provenance, metrics,
  validation-chosen thresholds and the CC BY 4.0 attribution.
* ``test_default_bundle_on_real_clips``: realdata, seconds: the runtime classifies validation-speaker
  clips as well as the manifest says.
* ``test_shipped_validation_figures_reproduce_exactly``: realdata, seconds (what CI checks of the
  reproduction): the data indexed with the shipped training configuration, the validation split's
  features computed again by the runtime's MFCC, the int8 model run on them: the confusion matrix
  is exactly the manifest's (any change of the split, the silence crops, the features or the engine
  shows here).
* ``test_recipe_reproduces_default_bundle``: realdata + slow + ship (about 30 min on 2 cores, not in
  CI; ``pytest -m ship -s`` before a bundle ships): runs
  ``training/recipes/make_default_bundle.sh`` (three DS-CNN teachers, the distilled kws-train,
  kws-convert, finish) and checks the reproduced model stays within 1 point of every shipped figure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kws_edge.bundle import default_bundle_path, load_bundle

REPO = Path(__file__).resolve().parents[2]
REAL_DATA = REPO.parent / "shared" / "data" / "speech_commands_subset"
MAX_MODEL_BYTES = 24 * 1024
MAX_ACTIVATION_BYTES = 16 * 1024
TOLERANCE = 0.01  # one point

needs_data = pytest.mark.skipif(not REAL_DATA.is_dir(), reason=f"{REAL_DATA} is not on this machine")


@pytest.fixture(scope="module")
def shipped():
    if not (default_bundle_path() / "manifest.json").is_file():
        pytest.skip("no default bundle in this checkout (kws_edge/default_bundle)")
    return load_bundle(default_bundle_path())


def test_default_bundle_manifest(shipped):
    m = shipped.manifest
    assert m.labels == ("_silence_", "_unknown_", "yes", "no") and m.keywords == ("yes", "no")
    assert m.model.quantization == "int8"
    assert len(shipped.model_bytes) <= MAX_MODEL_BYTES
    assert 0 < m.model.peak_activation_bytes <= MAX_ACTIVATION_BYTES
    assert "Speech Commands" in m.attribution and "CC BY 4.0" in m.attribution
    assert len(m.provenance.data_sha256) == 64
    assert m.provenance.config["exclude_words"]
    assert isinstance(m.provenance.seed, int)
    # a distilled model names its teachers (the runs of --distill-from) with their hashes
    teachers = m.provenance.run.distilled_from
    assert len(teachers) == len(m.provenance.config.get("distill_from", []))
    for t in teachers:
        assert len(t.config_sha256) == 64 and len(t.data_sha256) == 64 and 0 < t.validation_accuracy <= 1
    for key in ("validation", "unseen_words", "streaming"):
        assert getattr(m.metrics, key) is not None, key
    assert set(m.detector.thresholds) == {"yes", "no"}
    assert m.detector == m.metrics.streaming.report.detector  # the report stream measured the shipped settings
    report = m.metrics.streaming.report.score
    assert report.duration_s >= 30 * 60


@needs_data
@pytest.mark.realdata
def test_default_bundle_on_real_clips(shipped):
    """Validation-speaker keyword clips through the runtime's KwsModel: recall as in the manifest."""
    from kws_edge.audio import read_wav
    from kws_edge.model import KwsModel
    from kws_edge.training.dataset import which_set

    model = KwsModel(shipped)
    cfg = shipped.manifest.provenance.config
    for word in ("yes", "no"):
        files = [f for f in sorted((REAL_DATA / word).glob("*.wav"))
                 if which_set(f.name, cfg["validation_percentage"], cfg["testing_percentage"]) == "validation"]
        assert len(files) > 50
        pred = [model.labels[int(np.argmax(model.classify(read_wav(f).samples)))] for f in files]
        recall = float(np.mean([p == word for p in pred]))
        shipped_recall = shipped.manifest.metrics.validation.converted.recall[word]
        assert recall >= shipped_recall - TOLERANCE, (word, recall, shipped_recall)


@needs_data
@pytest.mark.realdata
def test_shipped_validation_figures_reproduce_exactly(shipped):
    from kws_edge.config import from_dict
    from kws_edge.model import KwsModel
    from kws_edge.training.config import TrainConfig
    from kws_edge.training.dataset import index_dataset
    from kws_edge.training.featurize import clean_features
    from kws_edge.metrics import clip_metrics

    m = shipped.manifest
    config = from_dict(TrainConfig, {**m.provenance.config, "data": str(REAL_DATA)})
    index = index_dataset(REAL_DATA, config)
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
        "streaming false-reject rate": stream.false_reject_rate,
    }


@needs_data
@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.ship
def test_recipe_reproduces_default_bundle(shipped, tmp_path):
    out = tmp_path / "bundle"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    proc = subprocess.run(["bash", str(REPO / "training/recipes/make_default_bundle.sh"), str(REAL_DATA),
                           str(tmp_path / "work"), str(out)], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=3600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    reproduced = load_bundle(out)
    assert len(reproduced.model_bytes) <= MAX_MODEL_BYTES
    assert reproduced.manifest.model.peak_activation_bytes <= MAX_ACTIVATION_BYTES
    # data_sha256 no longer depends on where the synthetic cache lives, but it is not compared: it hashes the
    # synthetic negatives' audio, which another eSpeak NG build may render differently; the figures are what
    # the issue asks to reproduce.
    assert len(reproduced.manifest.provenance.data_sha256) == 64
    got, want = _figures(reproduced.manifest.metrics), _figures(shipped.manifest.metrics)
    off = {k: (got[k], want[k]) for k in want if abs(got[k] - want[k]) > TOLERANCE}
    assert not off, f"reproduced figures more than 1 point from the shipped ones: {off}; summary {summary}"
    fa_h = reproduced.manifest.metrics.streaming.report.score.false_accepts_per_hour
    shipped_fa_h = shipped.manifest.metrics.streaming.report.score.false_accepts_per_hour
    assert fa_h <= shipped_fa_h + 1.0 / (reproduced.manifest.metrics.streaming.report.score.duration_s / 3600)
