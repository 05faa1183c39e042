"""What a device pays: CPU at microphone pace, at 10, 30 and 100 ms chunks, beside microWakeWord (issue 21).

A microphone hands over a block every 10-100 ms and the process sleeps in
between, so every call starts on cold caches; a tight loop (the other
benchmarks) keeps them warm. Both feedings are measured here, in one run,
for the default bundle's detector and for pymicro-wakeword 2.5 (the
microWakeWord runtime; its bundled ``okay_nabu`` model, its own audio front
end and TFLite build; offline) on the same int16 audio (what
``kws_edge.microphone`` delivers by default), through the same feeding loop
(``bench.measure_feed``: paced = sleep until the next chunk is due). Figures
are CPU ms per second of audio: the whole process (``time.process_time``,
wake-ups included) and inside the engine's calls only (thread CPU).

Paced runs take their audio's duration in wall time: ``PACED_AUDIO_S`` (3 s)
per run, interleaved over ``ROUNDS`` rounds (2, ``KWS_BENCH_ROUNDS``), the
cheapest run of each path kept (``bench.measure_interleaved``, no repeats:
a repeat would cost wall time, not CPU). About 50 s in all.

A third path, the *bare loop*, feeds the same chunks to a function that does
nothing: the floor every engine pays here (the sleep and wake-up, the clock
reads around each call). It is printed beside the engines, so the share of a
figure that an engine can change is visible.

Gates, same-run ratios only (this machine is shared; absolute figures are
printed, not gated):

* pymicro-wakeword / kws-edge, whole process, paced, at 10 ms and at 100 ms
  chunks >= ``MIN_PEER_RATIO_PACED`` (issue 21's target is 3x; the gate sits
  below what is reached here, see the README's cost table);
* kws-edge's cost per second of audio at 10 ms over 100 ms chunks, inside
  ``process()``, tight loop <= ``MAX_CHUNK_COST_RATIO`` (chunk-size
  independence: a 10 ms chunk should cost about a tenth of a 100 ms block).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from bench_support import record_figure
from kws_edge import bench
from kws_edge.workstation import gates as bench_gates
from kws_edge.audio import to_int16

pymicro = pytest.importorskip("pymicro_wakeword", reason="pymicro-wakeword (the dev extra) runs the peer benchmark")

ROUNDS = int(os.environ.get("KWS_BENCH_ROUNDS", "2"))
SAMPLE_RATE_HZ = 16000
PACED_AUDIO_S = 3.0
TIGHT_AUDIO_S = 10.0
WARMUP_S = 1.0
CHUNKS_MS = (10, 30, 100)
#: measured here 2026-12-07 (shared machine, a training job on both cores), seven runs of this file, 2-3
#: rounds each: 2.2-2.5x at 10 ms and 2.3-2.9x at 100 ms (the code of 2026-12-03: 1.7-2.6x, gated at 1.3x
#: for both). The gates sit a fifth under the lowest figure of each, and fail when the paced path loses a
#: quarter of its lead over the peer.
MIN_PEER_RATIO_PACED = {10: 1.7, 100: 1.8}
#: measured here 2026-12-07: 1.12, 1.13, 1.31 tight (2026-12-03: 1.4-1.8; before issue 21: 1.5-2.1)
MAX_CHUNK_COST_RATIO = 2.0
#: issue 21's absolute targets (ms CPU per s of audio, inside process(); x86 here), reported only
TARGETS_MS = {"paced 100 ms": 2.0, "paced 10 ms": 4.0, "tight 100 ms": 1.0, "tight 10 ms": 1.0}


class MicroWakeWordPeer:
    """pymicro-wakeword fed like our detector: int16 chunks in, features -> model per chunk."""

    def __init__(self) -> None:
        from pymicro_wakeword import MicroWakeWord, MicroWakeWordFeatures, Model

        self._make = lambda: (MicroWakeWordFeatures(), MicroWakeWord.from_builtin(Model.OKAY_NABU))
        self.reset()

    def reset(self) -> None:
        self._features, self._model = self._make()
        self.detections = 0

    def process(self, chunk: np.ndarray) -> None:
        for features in self._features.process_streaming(chunk.tobytes()):
            if self._model.process_streaming(features):
                self.detections += 1


def _bare(audio, chunk_ms, realtime):
    """The feeding loop around a function that does nothing: what every engine pays here."""
    return lambda: bench.measure_feed(lambda chunk: None, audio, sample_rate_hz=SAMPLE_RATE_HZ,
                                      chunk_samples=chunk_ms * SAMPLE_RATE_HZ // 1000, realtime=realtime,
                                      warmup_s=WARMUP_S, path="bare loop")


def _audio(seconds: float, seed: int) -> np.ndarray:
    return to_int16(bench.bench_audio(seconds + WARMUP_S, SAMPLE_RATE_HZ, seed=seed))


def _kws(detector, audio, chunk_ms, realtime):
    return lambda: bench.measure_detector(detector, audio, chunk_samples=chunk_ms * SAMPLE_RATE_HZ // 1000,
                                          realtime=realtime, warmup_s=WARMUP_S)


def _peer(peer, audio, chunk_ms, realtime):
    def run():
        peer.reset()
        return bench.measure_feed(peer.process, audio, sample_rate_hz=SAMPLE_RATE_HZ,
                                  chunk_samples=chunk_ms * SAMPLE_RATE_HZ // 1000, realtime=realtime,
                                  warmup_s=WARMUP_S, path="pymicro-wakeword")
    return run


@pytest.mark.gate
def test_paced_and_peer_cost(benchmark, detector, gate):
    if detector.streaming is None:
        pytest.skip("the benchmark bundle has no streaming model (the default bundle has one)")
    peer = MicroWakeWordPeer()
    paced_audio, tight_audio = _audio(PACED_AUDIO_S, seed=21), _audio(TIGHT_AUDIO_S, seed=22)
    # tight loops first (seconds of CPU, balanced repeats), then the paced ones (wall time, no repeats)
    tight = bench.measure_interleaved(
        {**{f"kws tight {c} ms": _kws(detector, tight_audio, c, False) for c in CHUNKS_MS},
         **{f"peer tight {c} ms": _peer(peer, tight_audio, c, False) for c in CHUNKS_MS}}, rounds=ROUNDS + 1)
    paced = bench.measure_interleaved(
        {**{f"kws paced {c} ms": _kws(detector, paced_audio, c, True) for c in CHUNKS_MS},
         **{f"peer paced {c} ms": _peer(peer, paced_audio, c, True) for c in CHUNKS_MS},
         **{f"bare paced {c} ms": _bare(paced_audio, c, True) for c in CHUNKS_MS}},
        rounds=ROUNDS, max_repeats=1)
    best = {**tight, **paced}
    # pytest-benchmark's record: one paced 100 ms pass of the detector
    benchmark.pedantic(_kws(detector, paced_audio, 100, True), rounds=1, iterations=1)
    figures = {name: {"whole": round(s.cpu_ms_per_audio_s, 3), "inside": round(s.call_cpu_ms_per_audio_s, 3)}
               for name, s in best.items()}
    benchmark.extra_info.update({"cpu_ms_per_audio_s": figures, "rounds": ROUNDS, "paced_audio_s": PACED_AUDIO_S})
    for c in CHUNKS_MS:
        k, p, f = best[f"kws paced {c} ms"], best[f"peer paced {c} ms"], best[f"bare paced {c} ms"]
        kt, pt = best[f"kws tight {c} ms"], best[f"peer tight {c} ms"]
        record_figure(f"{c} ms chunks, CPU ms/s (whole / inside)",
                      f"kws-edge paced {k.cpu_ms_per_audio_s:.2f} / {k.call_cpu_ms_per_audio_s:.2f}, tight "
                      f"{kt.cpu_ms_per_audio_s:.2f} / {kt.call_cpu_ms_per_audio_s:.2f}; pymicro-wakeword paced "
                      f"{p.cpu_ms_per_audio_s:.2f} / {p.call_cpu_ms_per_audio_s:.2f}, tight "
                      f"{pt.cpu_ms_per_audio_s:.2f} / {pt.call_cpu_ms_per_audio_s:.2f}; bare loop paced "
                      f"{f.cpu_ms_per_audio_s:.2f} / {f.call_cpu_ms_per_audio_s:.2f}; ratio paced "
                      f"{p.cpu_s / k.cpu_s:.1f}x (above the bare loop "
                      f"{(p.cpu_s - f.cpu_s) / max(k.cpu_s - f.cpu_s, 1e-9):.1f}x), tight {pt.cpu_s / kt.cpu_s:.1f}x")
    reported = [bench_gates.gate(f"kws-edge {name} inside process()", best[f"kws {name}"].call_cpu_ms_per_audio_s,
                           limit, unit="ms", source="issue 21 target, reported only")
                for name, limit in TARGETS_MS.items()]
    reported.append(bench_gates.ratio_gate("pymicro-wakeword / kws-edge, tight, 100 ms", best["peer tight 100 ms"].cpu_s,
                                     best["kws tight 100 ms"].cpu_s, 3.0))
    print("\n" + bench_gates.limits_table(reported, title="issue 21 targets (reported, not gated)"))
    tight_10, tight_100 = best["kws tight 10 ms"], best["kws tight 100 ms"]
    chunk_ratio = tight_10.call_cpu_ms_per_audio_s / tight_100.call_cpu_ms_per_audio_s
    record_figure("chunk-size cost ratio 10 ms / 100 ms (inside process())",
                  f"tight {chunk_ratio:.2f}, paced "
                  f"{best['kws paced 10 ms'].call_cpu_ms_per_audio_s / best['kws paced 100 ms'].call_cpu_ms_per_audio_s:.2f}")
    gate.check(
        bench_gates.ratio_gate("pymicro-wakeword / kws-edge CPU, paced, 10 ms chunks", best["peer paced 10 ms"].cpu_s,
                         best["kws paced 10 ms"].cpu_s, MIN_PEER_RATIO_PACED[10]),
        bench_gates.ratio_gate("pymicro-wakeword / kws-edge CPU, paced, 100 ms chunks", best["peer paced 100 ms"].cpu_s,
                         best["kws paced 100 ms"].cpu_s, MIN_PEER_RATIO_PACED[100]),
        bench_gates.gate("kws-edge CPU per s of audio, 10 ms / 100 ms chunks (tight, inside process())", chunk_ratio,
                   MAX_CHUNK_COST_RATIO, kind="max", unit="x", source="same-run ratio"),
    )
