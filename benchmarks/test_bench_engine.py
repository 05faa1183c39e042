"""Engine invoke per window, and batch classify throughput (clips per second)."""

from __future__ import annotations

import time

import numpy as np

from bench_support import record_figure
from kws_edge.features import mfcc


def test_engine_invoke(benchmark, kws_model, audio_10s):
    cfg = kws_model.features
    window = kws_model.prepare(mfcc(audio_10s[:cfg.clip_samples], cfg))
    scores = benchmark(kws_model.scores_prepared, window)
    assert scores.shape == (len(kws_model.labels),)
    n = 1000
    t0 = time.process_time()
    for _ in range(n):
        kws_model.scores_prepared(window)
    cpu_us = 1e6 * (time.process_time() - t0) / n
    benchmark.extra_info.update(cpu_us_per_invoke=cpu_us, backend=kws_model.engine.backend)
    record_figure("engine invoke", f"{cpu_us:.0f} us CPU per window ({kws_model.engine.backend})")


def test_batch_classify_throughput(benchmark, kws_model, audio_10s):
    cfg = kws_model.features
    clips = [audio_10s[i * cfg.clip_samples:(i + 1) * cfg.clip_samples] for i in range(10)]

    def classify_all():
        return [kws_model.classify(c) for c in clips]

    result = benchmark.pedantic(classify_all, rounds=5, iterations=1, warmup_rounds=1)
    assert len(result) == len(clips) and all(np.isclose(r.sum(), 1.0, atol=0.02) for r in result)
    t0, w0 = time.process_time(), time.perf_counter()
    for _ in range(3):
        classify_all()
    clips_per_cpu_s = 3 * len(clips) / (time.process_time() - t0)
    clips_per_s = 3 * len(clips) / (time.perf_counter() - w0)
    benchmark.extra_info.update(clips_per_s=clips_per_s, clips_per_cpu_s=clips_per_cpu_s)
    record_figure("batch classify", f"{clips_per_cpu_s:.0f} clips per CPU second ({clips_per_s:.0f} clips/s wall)")
