"""Cost of the streaming model path against the incremental window path and the naive loop (issue 8).

All three paths run on the same bundle (``tests/data/tone_tcn_bundle``: the
default 64-channel ``tcn`` architecture, int8, trained on synthetic tones; the
cost does not depend on the weights) and the same 20 s of audio, interleaved
in one run, cheapest of ``KWS_BENCH_ROUNDS`` (3) balanced rounds each (a
cheap path runs more times per round, see ``bench.measure_interleaved``),
CPU time of this process (never wall time):

* naive: every hop, MFCC of the whole last second and one window-model call;
* incremental: ``KeywordDetector(streaming=False)``, new MFCC frames only,
  one full-window model call per hop;
* streaming: ``KeywordDetector`` with the bundle's streaming model at its
  defaults (features and model once per ``DEFAULT_INTERVAL_MS`` = 200 ms of
  audio, two model blocks per call), smoothing in blocks;
* streaming + gate: the same with an :class:`EnergyGate` on audio that is
  quiet for half its length (reports how much the gate skipped);
* streaming, shipped model: the packaged default bundle's streaming model
  (28 channels) on the same audio at the defaults: what an application pays;
  and the same with ``interval_ms=100`` (features and model at every 100 ms
  chunk: the same detections, each up to 100 ms earlier, for more CPU).

Audio arrives in 100 ms chunks (1600 samples, a usual audio-callback size);
per-hop chunks (320 samples) are reported too, not gated.

Gates, same-run ratios (robust on a shared machine): incremental / streaming
>= ``MIN_INCREMENTAL_RATIO`` at 100 ms chunks and >= ``MIN_INCREMENTAL_RATIO_PER_HOP``
at one-hop chunks; naive / streaming >= ``MIN_NAIVE_RATIO``; the shipped model every 100 ms /
every 200 ms (the default) >= ``MIN_INTERVAL_RATIO``. The absolute
target of issue 8, streaming <= ``MAX_STREAMING_CPU_MS_PER_S`` ms of CPU per
second of audio, is measured and printed for the shipped model at the default
interval (200 ms) and every 100 ms; the default's figure is gated only with
``KWS_STREAMING_ABS_GATE=1`` (on this shared 2-core machine the load of the
other processes moves it by 2x).

Measured here 2026-11-26 22:09 UTC (quiet machine, ``KWS_BENCH_ROUNDS=5``), CPU ms per second of
audio at 100 ms chunks: naive 24.5; incremental 3.31 (one hop: 6.30); streaming (tone model) 1.38
(one hop: 1.63); half-quiet audio 1.49 ungated, 1.52 gated (40% of frames skipped: the gate skips the
model, not the MFCC, which is most of the cost); shipped model 1.45, every 200 ms 0.98. Ratios:
incremental/streaming 2.4x, naive/streaming 17.8x, shipped every 100 ms / every 200 ms 1.5x.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest

from kws_edge import bench
from kws_edge.workstation import gates as bench_gates
from kws_edge.bundle import default_bundle_path, load_bundle
from kws_edge.detector import KeywordDetector
from kws_edge.model import KwsModel
from kws_edge.streaming import EnergyGate

BUNDLE = Path(__file__).resolve().parents[1] / "tests" / "data" / "tone_tcn_bundle"
ROUNDS = int(os.environ.get("KWS_BENCH_ROUNDS", "3"))
CHUNK_SAMPLES = 1600
AUDIO_S = 20.0
MIN_INCREMENTAL_RATIO = 1.5
MIN_INCREMENTAL_RATIO_PER_HOP = 2.5
MIN_NAIVE_RATIO = 10.0
MIN_INTERVAL_RATIO = 1.2  # measured 1.4-1.45
MAX_STREAMING_CPU_MS_PER_S = 1.0
ABSOLUTE_GATE = os.environ.get("KWS_STREAMING_ABS_GATE", "0") == "1"


@pytest.fixture(scope="module")
def tcn_bundle():
    return load_bundle(BUNDLE)


@pytest.fixture(scope="module")
def audio() -> np.ndarray:
    return bench.bench_audio(AUDIO_S, seed=8)


@pytest.fixture(scope="module")
def half_quiet_audio() -> np.ndarray:
    """Alternating 5 s of the benchmark audio and 5 s of near-silence (-100 dBFS noise)."""
    x = bench.bench_audio(AUDIO_S, seed=9)
    rng = np.random.default_rng(9)
    n = 16000 * 5
    for start in range(n, len(x), 2 * n):
        x[start:start + n] = (1e-5 * rng.standard_normal(len(x[start:start + n]))).astype(np.float32)
    return x


def _stream(bundle, **kw) -> KeywordDetector:
    det = KeywordDetector(bundle, **kw)
    return det


def _figures(best: dict[str, bench.StreamStats]) -> dict[str, float]:
    return {name: round(s.cpu_ms_per_audio_s, 4) for name, s in best.items()}


def test_streaming_cost_three_paths(benchmark, tcn_bundle, audio, half_quiet_audio):
    window_det = _stream(tcn_bundle, streaming=False)
    stream_det = _stream(tcn_bundle)
    shipped = load_bundle(default_bundle_path())
    shipped_det = _stream(shipped) if shipped.streaming_model_bytes else None  # default interval (200 ms)
    shipped_100 = _stream(shipped, interval_ms=100.0) if shipped_det is not None else None
    gated_det = _stream(tcn_bundle, gate=EnergyGate(level_dbfs=-60.0))
    model = KwsModel(tcn_bundle)
    assert stream_det.streaming is not None and window_det.streaming is None
    best = bench.measure_interleaved({
        "naive": lambda: bench.measure_naive(model, audio),
        "incremental": lambda: bench.measure_detector(window_det, audio, chunk_samples=CHUNK_SAMPLES),
        "streaming": lambda: bench.measure_detector(stream_det, audio, chunk_samples=CHUNK_SAMPLES),
        "streaming_per_hop": lambda: bench.measure_detector(stream_det, audio),
        "incremental_per_hop": lambda: bench.measure_detector(window_det, audio),
        "streaming_half_quiet": lambda: bench.measure_detector(stream_det, half_quiet_audio,
                                                              chunk_samples=CHUNK_SAMPLES),
        "streaming_gated_half_quiet": lambda: bench.measure_detector(gated_det, half_quiet_audio,
                                                                    chunk_samples=CHUNK_SAMPLES),
        **({"streaming_default_bundle": lambda: bench.measure_detector(shipped_det, audio,
                                                                      chunk_samples=CHUNK_SAMPLES),
            "streaming_default_bundle_every_100ms": lambda: bench.measure_detector(shipped_100, audio,
                                                                                  chunk_samples=CHUNK_SAMPLES)}
           if shipped_det is not None else {}),
    }, rounds=ROUNDS)
    gated_share = gated_det.streaming.stats.gated_share
    # pytest-benchmark's own record: one streaming pass over the audio
    benchmark.pedantic(bench.measure_detector, args=(stream_det, audio), kwargs={"chunk_samples": CHUNK_SAMPLES},
                       rounds=ROUNDS, iterations=1)
    figures = _figures(best)
    s, inc, naive = best["streaming"].cpu_s, best["incremental"].cpu_s, best["naive"].cpu_s
    ratios = {"incremental/streaming": round(inc / s, 2), "naive/streaming": round(naive / s, 2),
              "naive/incremental": round(naive / inc, 2),
              "gated/ungated (half quiet)": round(best["streaming_gated_half_quiet"].cpu_s
                                                  / best["streaming_half_quiet"].cpu_s, 3)}
    benchmark.extra_info.update({"cpu_ms_per_audio_s": figures, "ratios": ratios, "gated_share": round(gated_share, 4),
                                 "chunk_samples": CHUNK_SAMPLES, "rounds": ROUNDS,
                                 "block_frames": stream_det.streaming.block_frames,
                                 "machine": bench.machine_info()})
    gates = [
        bench_gates.ratio_gate("incremental/streaming CPU per s audio", inc, s, MIN_INCREMENTAL_RATIO),
        bench_gates.ratio_gate("incremental/streaming, one-hop chunks", best["incremental_per_hop"].cpu_s,
                         best["streaming_per_hop"].cpu_s, MIN_INCREMENTAL_RATIO_PER_HOP),
        bench_gates.ratio_gate("naive/streaming CPU per s audio", naive, s, MIN_NAIVE_RATIO),
    ]
    if "streaming_default_bundle_every_100ms" in best:
        gates.append(bench_gates.ratio_gate("shipped model, every 100 ms / every 200 ms (default)",
                                      best["streaming_default_bundle_every_100ms"].cpu_s,
                                      best["streaming_default_bundle"].cpu_s, MIN_INTERVAL_RATIO))
    # the absolute target is about the shipped model (what users run), at the default interval (200 ms),
    # gated with KWS_STREAMING_ABS_GATE=1, and every 100 ms; the 64-channel tone model's figures are printed
    # beside them
    shipped_rows = [k for k in ("streaming_default_bundle_every_100ms", "streaming_default_bundle") if k in best]
    targets = [bench_gates.gate(f"{k} CPU per s audio (100 ms chunks)", best[k].cpu_ms_per_audio_s,
                          MAX_STREAMING_CPU_MS_PER_S, unit="ms", source="issue 8, reported only")
               for k in shipped_rows or ["streaming"]]
    target = targets[-1]
    if ABSOLUTE_GATE:
        target = dataclasses.replace(target, source="issue 8")
    if ABSOLUTE_GATE:
        gates.append(target)
    reported = [t for t in targets if not (ABSOLUTE_GATE and t.name == target.name)]
    table = bench_gates.limits_table(gates + reported, title="streaming cost gates")
    print("\n" + table)
    print("CPU ms per s of audio:", figures)
    print("ratios:", ratios, f"gate skipped {gated_share:.0%} of frames")
    failed = [g for g in gates if not g.passed]
    assert not failed, table
