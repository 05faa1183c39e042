"""The gate logic of benchmarks/ and kws bench (no timing assertions here)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from kws_edge import bench
from kws_edge.activations import interpreter_peak_activation_bytes
from kws_edge.limits import limits_table
from kws_edge.workstation import gates

REPO = Path(__file__).resolve().parents[2]
TONE_BUNDLE = REPO / "tests" / "data" / "tone_bundle"
needs_tone_bundle = pytest.mark.skipif(not (TONE_BUNDLE / "manifest.json").exists(),
                                       reason="tests/data/tone_bundle not built")


def test_max_gate_passes_and_fails_with_margin():
    ok = gates.gate("model_bytes", 900, 1000, unit="B")
    over = gates.gate("model_bytes", 1250, 1000, unit="B")
    assert ok.passed and ok.margin == pytest.approx(0.1)
    assert not over.passed and over.margin == pytest.approx(-0.25)
    assert gates.gate("x", 1000, 1000).passed  # limits are inclusive


def test_min_gate_and_ratio_gate():
    g = gates.ratio_gate("naive/streaming", slow=50.0, fast=4.0, min_ratio=10.0)
    assert g.kind == "min" and g.value == pytest.approx(12.5) and g.passed
    assert g.margin == pytest.approx(0.25)
    regressed = gates.ratio_gate("naive/streaming", slow=50.0, fast=10.0, min_ratio=10.0)
    assert not regressed.passed and regressed.margin == pytest.approx(-0.5)


def test_a_missing_or_nan_measurement_fails_never_passes_silently():
    assert not gates.gate("cpu_share", float("nan"), 0.1).passed
    assert not gates.gate("cpu_share", float("inf"), 0.1).passed
    found = gates.budget_gates({"model_bytes": 10.0}, {"model_bytes": 100.0, "cpu_share": 0.1})
    assert [g.passed for g in found] == [True, False]
    assert math.isnan(found[1].value)


def test_bad_gate_kind_is_a_config_error():
    from kws_edge.errors import ConfigError

    with pytest.raises(ConfigError):
        gates.gate("x", 1, 2, kind="between")


def test_failed_gate_table_is_readable():
    table = limits_table([
        gates.gate("model_bytes", 46_264, 40_000, unit="B", source="raspberry-pi-4b"),
        gates.ratio_gate("naive/streaming", 30.0, 7.5, 10.0),
    ])
    lines = table.splitlines()
    assert lines[0].split() == ["budget", "value", "limit", "margin", "result", "how", "basis"]
    assert "46,264 B" in lines[2] and "<= 40,000 B" in lines[2] and "-16%" in lines[2] and " OVER " in lines[2]
    assert lines[2].endswith("raspberry-pi-4b")
    assert "4.0x" in lines[3] and ">= 10.0x" in lines[3] and "-60%" in lines[3] and " OVER " in lines[3]
    assert lines[3].endswith("same-run ratio")


def test_profile_budgets_from_a_shipped_profile():
    from kws_edge.devices import load_profile

    budgets = gates.profile_budgets(load_profile("raspberry-pi-4b"))
    assert set(budgets) == set(gates.BUDGET_KEYS)
    assert all(v > 0 for v in budgets.values())


def test_stream_stats_figures():
    s = bench.StreamStats("streaming", audio_s=10.0, cpu_s=0.05, wall_s=10.0,
                          hop_latencies_ms=np.array([0.1] * 99 + [5.0]), hop_cpu_ms=np.array([0.1] * 100))
    assert s.cpu_ms_per_audio_s == pytest.approx(5.0)
    assert s.real_time_factor == pytest.approx(0.005)
    assert s.cpu_share == pytest.approx(0.005)
    assert s.latency_ms(50) == pytest.approx(0.1)
    assert s.latency_ms(99) > 0.1
    d = s.to_dict()
    assert d["n_hops_timed"] == 100 and d["hop_cpu_p99_ms"] == pytest.approx(0.1)


@needs_tone_bundle
def test_activation_estimate_is_positive_and_bounded_by_all_tensors():
    from kws_edge.engine import Engine

    model_bytes = (TONE_BUNDLE / "model.tflite").read_bytes()
    est = interpreter_peak_activation_bytes(model_bytes)
    interp = Engine(model_bytes)._interp
    total = sum(int(np.prod(t["shape"])) * np.dtype(t["dtype"]).itemsize for t in interp.get_tensor_details())
    assert 0 < est < total


@needs_tone_bundle
def test_detector_and_naive_measurements_count_every_hop():
    from kws_edge import KeywordDetector, load_bundle
    from kws_edge.model import KwsModel

    b = load_bundle(TONE_BUNDLE)
    audio = bench.bench_audio(2.0)
    s = bench.measure_detector(KeywordDetector(b), audio)
    n = bench.measure_naive(KwsModel(b), audio)
    hops = b.manifest.features.hops_per_second
    assert s.audio_s == pytest.approx(1.0) and s.n_evaluations == round(hops)
    assert s.hop_latencies_ms.size == s.hop_cpu_ms.size == round(hops)
    assert n.n_evaluations == round(hops)  # the naive loop's first clip only fills the window, like the warm-up
    assert s.cpu_s > 0 and n.cpu_s > 0


@needs_tone_bundle
def test_run_bench_reports_every_figure_and_checks_a_profile():
    r = bench.run_bench(TONE_BUNDLE, device="raspberry-pi-4b", seconds=0.5, realtime=False)
    for key in ("cpu_share", "real_time_factor", "hop_latency_median_ms", "hop_latency_p99_ms", "peak_rss_bytes",
                "model_bytes", "activation_bytes"):
        assert r[key] > 0, key
    names = {b["name"] for b in r["budgets"]}
    assert {"model_bytes", "activation_bytes", "cpu_share", "hop_latency_p99_ms"} <= names
    assert r["within_budget"] is True
    json.dumps({k: v for k, v in r.items() if k != "_budget_table"})


def _kws(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from kws_edge.cli import main; main()", *args],
                          capture_output=True, text=True, cwd=REPO, timeout=120)


@needs_tone_bundle
def test_kws_bench_exits_1_over_budget_with_one_line(tmp_path):
    from kws_edge.devices import load_profile

    src = Path(load_profile("raspberry-pi-4b").path).read_text()
    tiny = tmp_path / "tiny.toml"
    tiny.write_text(src.replace('name = "raspberry-pi-4b"', 'name = "tiny-board"')
                    .replace("model_bytes = 1048576", "model_bytes = 1000"))
    proc = _kws("bench", "--bundle", str(TONE_BUNDLE), "--device", str(tiny), "--seconds", "0.3",
                "--no-realtime", "--json")
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    assert report["within_budget"] is False and report["device"] == "tiny-board"
    assert [b["name"] for b in report["budgets"] if not b["passed"]] == ["model_bytes"]
    assert proc.stderr.strip().splitlines() == ["error: over the budgets of tiny-board: model_bytes"]


@needs_tone_bundle
def test_kws_bench_table_and_unknown_device():
    proc = _kws("bench", "--bundle", str(TONE_BUNDLE), "--device", "raspberry-pi-4b", "--seconds", "0.3",
                "--no-realtime")
    assert proc.returncode == 0, proc.stderr
    for text in ("CPU share of one core", "real-time factor", "hop latency median / p99", "peak RSS",
                 "model bytes", "activation bytes", "device raspberry-pi-4b"):
        assert text in proc.stdout
    bad = _kws("bench", "--bundle", str(TONE_BUNDLE), "--device", "no-such-board", "--seconds", "0.1")
    assert bad.returncode == 2
    assert "unknown device 'no-such-board'" in bad.stderr and "Traceback" not in bad.stderr


@needs_tone_bundle
def test_ratio_gate_fails_for_an_injected_slow_path():
    """A real regression (streaming path recomputing whole-window MFCC every hop) fails the benchmark gate."""
    env = {**os.environ, "KWS_BENCH_INJECT": "slow_mfcc", "KWS_BENCH_BUNDLE": str(TONE_BUNDLE),
           "KWS_BENCH_ROUNDS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--benchmark-disable",
         "benchmarks/test_bench_detector.py::test_streaming_vs_naive_ratio"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    out = proc.stdout
    assert proc.returncode == 1, out[-2000:]
    assert "KWS_BENCH_INJECT=slow_mfcc" in out
    rows = [line for line in out.splitlines() if line.startswith("naive/streaming")]
    assert rows and all(" OVER " in line for line in rows)
    ratio = float(next(cell for cell in rows[0].split() if cell.endswith("x")).rstrip("x"))
    assert ratio < 10.0


def test_interleaving_balances_a_cheap_path_and_keeps_each_paths_cheapest_run():
    calls = {"cheap": 0, "dear": 0}
    cheap_costs = iter([0.010, 0.030, 0.004] + [0.008] * 100)

    def cheap():
        calls["cheap"] += 1
        return bench.StreamStats(path="cheap", audio_s=1.0, cpu_s=next(cheap_costs), wall_s=0.0)

    def dear():
        calls["dear"] += 1
        return bench.StreamStats(path="dear", audio_s=1.0, cpu_s=0.1 + calls["dear"] / 1000, wall_s=0.0)

    best = bench.measure_interleaved({"cheap": cheap, "dear": dear}, rounds=3, max_repeats=16)
    # round 1 once each; the cheap path costs a tenth, so 10 runs in each later round
    assert calls == {"cheap": 1 + 10 + 10, "dear": 3}
    assert best["cheap"].cpu_s == pytest.approx(0.004)
    assert best["dear"].cpu_s == pytest.approx(0.101)
    n_tiny = []

    def tiny():
        n_tiny.append(1)
        return bench.StreamStats("tiny", 1.0, 1e-6, 0.0)

    capped = bench.measure_interleaved({"tiny": tiny, "dear": lambda: bench.StreamStats("d", 1.0, 1.0, 0.0)},
                                       rounds=2, max_repeats=4)
    assert len(n_tiny) == 1 + 4  # a million times cheaper, but at most max_repeats runs per round
    assert capped["tiny"].cpu_s == pytest.approx(1e-6)


@needs_tone_bundle
def test_run_bench_reports_paced_and_unpaced_figures():
    """kws bench (issue 21): paced by default (the figure a device pays), the tight loop beside it."""
    r = bench.run_bench(TONE_BUNDLE, seconds=0.4, realtime=True)
    assert r["realtime_paced"] is True and r["block_dtype"] == "int16"
    for key in ("paced_cpu_ms_per_audio_s", "paced_call_cpu_ms_per_audio_s", "unpaced_cpu_ms_per_audio_s",
                "unpaced_call_cpu_ms_per_audio_s"):
        assert r[key] > 0, key
    assert r["cpu_ms_per_audio_s"] == r["paced_cpu_ms_per_audio_s"]  # the headline is the paced figure
    assert r["wall_s"] >= 0.4 * 0.95  # paced: the audio took its own duration to arrive
    # inside process() is part of the whole process's CPU
    assert r["paced_call_cpu_ms_per_audio_s"] <= r["paced_cpu_ms_per_audio_s"] * 1.05 + 0.05
    fast = bench.run_bench(TONE_BUNDLE, seconds=0.4, realtime=False)
    assert fast["paced_cpu_ms_per_audio_s"] is None and fast["cpu_ms_per_audio_s"] == fast["unpaced_cpu_ms_per_audio_s"]


def test_measure_feed_paces_any_engine_and_times_inside_the_calls():
    audio = np.zeros(16000, np.int16)
    calls = []

    def busy(chunk):
        calls.append(len(chunk))
        t = time.thread_time()
        while time.thread_time() - t < 0.0005:  # 0.5 ms of CPU per call
            pass

    started = []
    s = bench.measure_feed(busy, audio, sample_rate_hz=16000, chunk_samples=1600, realtime=True, warmup_s=0.5,
                           on_start=lambda: started.append(len(calls)))
    assert started == [5] and len(calls) == 10 and s.audio_s == pytest.approx(0.5)
    assert s.wall_s >= 0.5 * 0.95  # five 100 ms chunks, each handed over when due
    assert s.call_cpu_ms_per_audio_s == pytest.approx(5 * 0.5 / 0.5, rel=0.5)  # ~5 ms CPU per s of audio
    assert s.cpu_ms_per_audio_s >= s.call_cpu_ms_per_audio_s * 0.95
    tight = bench.measure_feed(busy, audio, sample_rate_hz=16000, chunk_samples=1600, warmup_s=0.5)
    assert tight.wall_s < 0.4
