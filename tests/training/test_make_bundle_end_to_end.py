"""``make_bundle.sh`` end to end on a tiny tone dataset (slow, a few minutes; never the shared real data).

The real tools run as a user runs them: ``kws-train`` for a teacher, the tier's student distilled from it
and one more seed, ``kws-convert --streaming``, ``finish_bundle.py``. The test checks the bundle that comes
out: it loads, names its recipe and teacher, carries every figure the finish step measures (validation,
words heard as keywords, isolated keywords, the tuning rule and its candidates, the report stream, the seed
spread), and its detector defaults are the ones the rule chose.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from support.training_data import make_folder

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "training" / "recipes" / "make_bundle.sh"

RECIPE = """epochs = 2
batch_size = 32
learning_rate = 0.003
seed = 1
silence_percentage = 15.0
unknown_percentage = 100.0
validation_percentage = 25.0
testing_percentage = 15.0
synthetic_negatives = 0
exclude_words = ["down"]
{extra}
[model]
{model}
[augment]
copies = 1
"""


@pytest.mark.slow
def test_make_bundle_micro_tier_on_tones(tmp_path):
    pytest.importorskip("tensorflow")
    data = make_folder(tmp_path / "data", n_speakers=40)
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    (recipes / "yes_no_teacher.toml").write_text(RECIPE.format(extra="", model='architecture = "tiny_conv"'))
    (recipes / "yes_no_micro.toml").write_text(RECIPE.format(
        extra="distill_weight = 0.5\ndistill_temperature = 2.0",
        model='architecture = "tcn"\nwidth = 8\ndepth = 2\ndropout = 0.0'))
    out = tmp_path / "bundle"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "DATA": str(data), "RECIPES": str(recipes), "TEACHER_SEEDS": "1", "SPREAD_SEEDS": "2",
           "TUNE_MINUTES": "1", "REPORT_MINUTES": "1"}
    proc = subprocess.run(["bash", str(SCRIPT), "micro", str(tmp_path / "work"), str(out)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-3000:]

    from kws_edge.bundle import load_bundle

    m = load_bundle(out).manifest
    assert m.name == "yes-no-micro" and m.streaming_model is not None
    assert "yes_no_micro.toml" in m.provenance.recipe
    assert len(m.provenance.run.distilled_from) == 1
    metrics = m.metrics
    assert metrics.headline == "validation" and metrics.validation.converted.n_clips > 0
    assert metrics.unseen_words.words == ("down",) and metrics.unseen_words.n_clips == 40
    assert set(metrics.word_false_accepts.per_word) == {"up"}  # every other word; the held-out one is apart
    assert metrics.word_false_accepts.per_word["up"].n > 0
    assert set(metrics.isolated.per_keyword) == {"yes", "no"} and metrics.isolated.n_clips > 0
    tuning = metrics.streaming.tuning
    assert len(tuning.candidates) == 3 and tuning.chosen.detector == m.detector
    assert m.detector == metrics.streaming.report.detector == metrics.isolated.detector
    assert metrics.streaming.report.score.duration_s >= 55
    assert metrics.seed_spread.seeds == (1, 2) and len(metrics.seed_spread.figures["accuracy"]) == 2
