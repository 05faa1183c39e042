"""The typed manifest (format 3): provenance, metrics and budgets typed; formats 1 and 2 still load and upgrade."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kws_edge.bundle import FORMAT_VERSION, Manifest, load_bundle, save_bundle
from kws_edge.bundle.metrics import (Benchmark, IsolatedDetection, KeywordDetectionRate, Metrics, SeedSpread,
                                     SplitMetrics, WordCount, WordFalseAccepts)
from kws_edge.bundle.upgrade import STREAMING_BEFORE_FORMAT_3, upgrade_manifest
from kws_edge.config import from_dict, to_dict
from kws_edge.errors import BundleError
from kws_edge.metrics import ClipMetrics, IsolatedConfig, StreamConfig, StreamScore, clip_metrics, score_detections
from kws_edge.portable import absolute_paths_in

ROOT = Path(__file__).resolve().parents[2]
#: the default bundle shipped until session 9, as it shipped (format 2): the upgrade's real-world fixture
SHIPPED = ROOT / "tests" / "data" / "format2_bundle"
TCN = ROOT / "tests" / "data" / "tone_tcn_bundle"


def test_the_metrics_functions_return_the_typed_records_shapes():
    cm = clip_metrics([0, 1, 2, 3, 2], [0, 1, 2, 2, 3], ("_silence_", "_unknown_", "yes", "no"), ("yes", "no"))
    assert to_dict(from_dict(ClipMetrics, cm)) == json.loads(json.dumps(cm))
    score = score_detections([], [{"label": "yes", "start_s": 1.0, "end_s": 2.0, "snr_db": 3.0}], ("yes", "no"),
                             60.0)
    assert to_dict(from_dict(StreamScore, score)) == json.loads(json.dumps(score))


def test_a_format_2_manifest_is_read_as_format_3_key_by_key():
    raw = json.loads((SHIPPED / "manifest.json").read_text())
    assert raw["format_version"] == 2  # the bundle shipped until session 9 predates format 3; it loads without a note
    b = load_bundle(SHIPPED)
    m = b.manifest
    assert m.format_version == FORMAT_VERSION and b.notes == ()
    old = raw["metrics"]
    assert m.metrics.headline == "validation"
    assert to_dict(m.metrics.validation.converted) == old["validation"]["int8"]
    assert to_dict(m.metrics.test.converted) == old["test_split"]["int8"]
    assert m.metrics.parity.argmax_agreement == old["parity"]["argmax_agreement"]
    report, tuning = m.metrics.streaming.report, m.metrics.streaming.tuning
    assert report.score.false_reject_rate == old["streaming"]["report_stream"]["false_reject_rate"]
    assert to_dict(report.stream) == old["streaming"]["report_stream"]["config"]
    assert len(report.det_curve) == len(old["streaming"]["report_det_curve"])
    assert report.detector == m.detector  # the report measured the shipped settings
    assert len(tuning.candidates) == len(old["streaming"]["smoothing_grid"])
    assert tuning.chosen.false_accepts_per_hour == old["streaming"]["tuning_stream"]["false_accepts_per_hour"]
    cat = old["unseen_words"]["per_word"]["cat"]
    assert m.metrics.unseen_words.per_word["cat"].false_accepts == cat["false_accepts"]
    prov = raw["provenance"]
    assert m.provenance.seed == prov["seed"] and m.provenance.data_sha256 == prov["data_sha256"]
    assert m.provenance.conversion.weight_scales == prov["conversion"]["weight_scales"]
    assert len(m.provenance.run.distilled_from) == len(prov["run"]["distilled_from"])
    assert m.budgets.within_budget is raw["budgets"]["within_budget"]
    assert set(m.budgets.analysis) == {m.model.file}
    arena = raw["budgets"]["tflm"]["models"]["model.tflite"]["arena_bytes"]
    assert m.budgets.tflm.models[m.model.file].arena_bytes == arena


def test_the_streaming_model_figures_move_to_the_conversion_record():
    raw = json.loads((TCN / "manifest.json").read_text())
    m = load_bundle(TCN).manifest
    assert m.provenance.conversion.streaming.block_frames == raw["metrics"]["streaming"]["block_frames"]
    assert m.metrics.streaming is None  # not a streaming evaluation
    assert m.provenance.extra["script"] == "tests/make_streaming_bundle.py"


def test_a_pipeline_bundles_own_stream_is_not_passed_off_as_the_one_streaming_evaluation():
    raw = json.loads((TCN / "manifest.json").read_text())
    raw["metrics"]["streaming"] = {"selected": {"threshold": 0.8}, "tolerance_s": 1.0, "false_reject_rate": 0.087}
    up = upgrade_manifest(raw)
    assert "streaming" not in up["metrics"]
    assert up["metrics"]["extra"][STREAMING_BEFORE_FORMAT_3]["false_reject_rate"] == 0.087
    assert from_dict(Manifest, up).metrics.streaming is None


def test_digest_command_upgrades_in_place_and_restamps(tmp_path):
    for src in (SHIPPED, TCN):
        dst = tmp_path / src.name
        shutil.copytree(src, dst)
        proc = subprocess.run([sys.executable, "-m", "kws_edge.digest", str(dst)], capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 0, proc.stderr
        written = json.loads((dst / "manifest.json").read_text())
        assert written["format_version"] == FORMAT_VERSION and written["bundle_sha256"] in proc.stdout
        upgraded, original = load_bundle(dst).manifest, load_bundle(src).manifest
        assert dataclasses.replace(upgraded, bundle_sha256="") == dataclasses.replace(original, bundle_sha256="")
        assert absolute_paths_in(written) == []
        again = subprocess.run([sys.executable, "-m", "kws_edge.digest", str(dst)], capture_output=True, text=True,
                               timeout=120)
        assert again.returncode == 0 and json.loads((dst / "manifest.json").read_text()) == written  # idempotent


def test_a_bad_section_is_refused_with_one_message(tmp_path):
    dst = tmp_path / "b"
    shutil.copytree(TCN, dst)
    data = to_dict(load_bundle(dst).manifest)
    data["metrics"] = {"accuracy": 0.9}  # format 3: metrics must be typed
    (dst / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(BundleError, match="unknown key 'metrics.accuracy'"):
        load_bundle(dst)


def test_metrics_hold_the_figures_of_issue_18(tmp_path):
    """Isolated keywords, "go" and other words heard as a keyword, unseen words, seed spread: typed fields."""
    src = load_bundle(TCN)
    metrics = Metrics(
        headline="validation",
        validation=SplitMetrics(converted=ClipMetrics(n_clips=10, accuracy=0.9)),
        isolated=IsolatedDetection(split="validation", n_clips=200, detection_rate=0.97, config=IsolatedConfig(),
                                   per_keyword={"yes": KeywordDetectionRate(n=100, detected=98, detection_rate=0.98)}),
        word_false_accepts=WordFalseAccepts(words=("go", "down"), n_clips=20, false_accepts=1,
                                            per_word={"go": WordCount(n=10, false_accepts=1, false_accept_rate=0.1)}),
        unseen_words=WordFalseAccepts(words=("cat",), n_clips=5, false_accepts=0, keyword_false_accept_rate=0.0),
        seed_spread=SeedSpread(seeds=(1, 2, 3), figures={"validation accuracy": (0.97, 0.98, 0.99)}),
        benchmark=Benchmark(cpu_ms_per_audio_s=0.9),
        extra={"a figure not typed yet": {"value": 1.5}},
    )
    save_bundle(tmp_path / "b", dataclasses.replace(src.manifest, metrics=metrics), src.model_bytes,
                streaming_model_bytes=src.streaming_model_bytes)
    got = load_bundle(tmp_path / "b").manifest.metrics
    assert got == metrics
    assert got.word_false_accepts.per_word["go"].false_accept_rate == 0.1
    assert got.seed_spread.mean("validation accuracy") == pytest.approx(0.98)
    assert got.converted.accuracy == 0.9  # the headline split's converted model


def test_stream_config_is_one_type_for_the_evaluation_and_the_manifest():
    from kws_edge.training import streaming_eval

    assert streaming_eval.StreamConfig is StreamConfig
    assert streaming_eval.IsolatedConfig is IsolatedConfig
