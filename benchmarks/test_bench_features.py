"""Streaming MFCC per hop, against the full-window MFCC the naive path recomputes."""

from __future__ import annotations

import time

import numpy as np

from bench_support import record_figure
from kws_edge.features import StreamingMfcc, mfcc


def _cpu_per_call_ms(fn, n: int) -> float:
    t0 = time.process_time()
    for _ in range(n):
        fn()
    return 1000.0 * (time.process_time() - t0) / n


def test_streaming_mfcc_per_hop(benchmark, loaded_bundle, audio_10s):
    cfg = loaded_bundle.manifest.features
    stream = StreamingMfcc(cfg)
    stream.process(audio_10s[:cfg.clip_samples])  # primed: one hop in gives one frame out
    hop = audio_10s[cfg.clip_samples:cfg.clip_samples + cfg.hop_samples]
    frames = benchmark(stream.process, hop)
    assert frames.shape == (1, cfg.n_cepstra)
    cpu_ms = _cpu_per_call_ms(lambda: stream.process(hop), 2000)
    benchmark.extra_info.update(cpu_ms_per_hop=cpu_ms, cpu_ms_per_audio_s=cpu_ms * cfg.hops_per_second)
    record_figure("streaming MFCC", f"{cpu_ms * 1000:.1f} us CPU per hop = "
                                    f"{cpu_ms * cfg.hops_per_second:.2f} ms CPU per s of audio")


def test_full_window_mfcc(benchmark, loaded_bundle, audio_10s):
    cfg = loaded_bundle.manifest.features
    clip = np.ascontiguousarray(audio_10s[:cfg.clip_samples])
    feats = benchmark(mfcc, clip, cfg)
    assert feats.shape == (cfg.frames_per_clip, cfg.n_cepstra)
    cpu_ms = _cpu_per_call_ms(lambda: mfcc(clip, cfg), 300)
    benchmark.extra_info.update(cpu_ms_per_window=cpu_ms)
    record_figure("full-window MFCC (1 s)", f"{cpu_ms:.3f} ms CPU per call")
