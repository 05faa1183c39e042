"""run_detector sees every evaluated posterior, for the window and the streaming model alike."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from kws_edge import load_bundle
from kws_edge.audio import read_wav
from kws_edge.detector import DEFAULT_INTERVAL_MS
from kws_edge.training.streaming_eval import run_detector

DATA = Path(__file__).parents[1] / "data"


@dataclasses.dataclass
class _Stream:
    samples: np.ndarray


def _stream() -> _Stream:
    parts = [read_wav(DATA / f"tone_{name}.wav").samples for name in ("silence", "yes", "unknown", "no", "silence")]
    return _Stream(np.concatenate(parts))


def test_streaming_bundle_reports_one_posterior_per_hop():
    bundle = load_bundle(DATA / "tone_tcn_bundle")
    assert bundle.streaming_model_bytes is not None
    stream = _stream()
    _, posts, times = run_detector(bundle, stream)
    fc = bundle.manifest.features
    n_frames = 1 + (len(stream.samples) - fc.window_samples) // fc.hop_samples
    # every complete window is evaluated once; the streaming model may hold back the frames of its last,
    # incomplete interval (DEFAULT_INTERVAL_MS: 10 hops)
    assert 0 <= n_frames - fc.frames_per_clip + 1 - len(posts) < DEFAULT_INTERVAL_MS / fc.hop_ms
    assert len(posts) > 100
    np.testing.assert_allclose(np.diff(times), fc.hop_samples / fc.sample_rate_hz)
    np.testing.assert_allclose(posts.sum(axis=1), 1.0, atol=0.02)


def test_window_and_streaming_paths_give_matching_posteriors():
    bundle = load_bundle(DATA / "tone_tcn_bundle")
    window_bundle = dataclasses.replace(bundle, streaming_model_bytes=None)
    stream = _stream()
    _, p_stream, t_stream = run_detector(bundle, stream)
    _, p_window, t_window = run_detector(window_bundle, stream)
    n = min(len(p_stream), len(p_window))
    np.testing.assert_allclose(t_stream[:n], t_window[:n])
    agreement = np.mean(p_stream[:n].argmax(1) == p_window[:n].argmax(1))
    assert agreement >= 0.99, agreement
