"""The streaming keyword detector that applications embed.

Audio chunks of any size -> :class:`~kws_edge.features.StreamingMfcc` (only
new frames) -> normalise and quantise each new frame once -> a ring buffer
holding the last clip-length window -> the model every ``stride_hops`` hops
-> :class:`~kws_edge.smoothing.PosteriorSmoother` -> ``Detection`` events,
returned and passed to callbacks. The same audio gives the same detections
whatever the chunk sizes.

Example
-------
>>> from kws_edge import KeywordDetector
>>> det = KeywordDetector.from_bundle()            # the bundled yes/no model
>>> det.on_detection(lambda d: print(d.label, d.time_s))
>>> events = det.process(audio_chunk)             # int16 or float32, any length
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .audio import validate_audio
from .bundle import Bundle, load_bundle
from .errors import ConfigError
from .features import StreamingMfcc
from .model import KwsModel
from .smoothing import Detection, DetectorConfig, PosteriorSmoother

__all__ = ["KeywordDetector", "Detection", "DetectorConfig", "detect_samples", "DEFAULT_INTERVAL_MS"]

DetectionCallback = Callable[[Detection], Any]

#: How much new audio the streaming model waits for before features and model run (issue 8): two
#: 100 ms blocks of the shipped model. Measured on the shipped bundle (benchmarks/test_streaming_cost.py):
#: ~0.9 ms of CPU per second of audio, against ~1.3 ms at one block per call; same detections, each up
#: to 100 ms later.
DEFAULT_INTERVAL_MS = 200.0


class KeywordDetector:
    """Streaming detector for one bundle.

    Parameters
    ----------
    bundle : a loaded :class:`~kws_edge.bundle.Bundle`
    config : detection settings; default: the bundle manifest's
    num_threads, backend : passed to the interpreter
    telemetry : optional :class:`~kws_edge.telemetry.DetectorTelemetry` fed once per chunk
    streaming : use the bundle's streaming model (see :mod:`kws_edge.streaming`); None: when it has one
    gate : optional :class:`~kws_edge.streaming.EnergyGate` (streaming model only)
    interval_ms : streaming model only: run features and model once this much new audio has arrived
        (rounded up to whole model blocks). Default :data:`DEFAULT_INTERVAL_MS` (200 ms: two blocks of
        the shipped model). Fewer, larger calls cost less CPU per second of audio; each detection comes
        up to one interval after the audio that completes it, and the detections are otherwise the
        same. ``interval_ms=100`` (one block) gives the earliest detections, for ~40 % more CPU.
    """

    def __init__(self, bundle: Bundle, *, config: DetectorConfig | None = None, num_threads: int = 1,
                 backend: str | None = None, telemetry: Any = None, streaming: bool | None = None,
                 gate: Any = None, interval_ms: float | None = None) -> None:
        self.bundle = bundle
        self.telemetry = telemetry
        self.model = KwsModel(bundle, num_threads=num_threads, backend=backend)
        self.config = config or bundle.manifest.detector
        self.labels = self.model.labels
        self.keywords = self.model.keywords
        fc = self.model.features
        self.sample_rate_hz = fc.sample_rate_hz
        self._hop_samples = fc.hop_samples
        self._window_samples = fc.window_samples
        self._n_window = self.model.window_frames
        self._mfcc = StreamingMfcc(fc)
        self._smoother = PosteriorSmoother(self.labels, self.keywords, self.config,
                                           hop_s=fc.hop_samples * self.config.stride_hops / fc.sample_rate_hz)
        dtype = np.dtype(self.model.input.dtype)
        # Ring buffer written twice so the latest window is always one contiguous slice.
        self._ring = np.zeros((2 * self._n_window, fc.n_cepstra), dtype)
        self._callbacks: list[DetectionCallback] = []
        self.streaming = None
        if streaming or (streaming is None and bundle.streaming_model_bytes is not None):
            from .streaming import StreamingRunner

            self.streaming = StreamingRunner(bundle, num_threads=num_threads, backend=backend, gate=gate)
        if interval_ms is not None and self.streaming is None:
            raise ConfigError("interval_ms needs the bundle's streaming model (kws-convert --streaming); "
                              "the window model runs at every hop")
        if self.streaming is not None:
            interval_ms = DEFAULT_INTERVAL_MS if interval_ms is None else interval_ms
            if not interval_ms > 0:
                raise ConfigError(f"interval_ms={interval_ms} must be > 0")
            block_ms = self.streaming.block_frames * fc.hop_ms
            self.streaming.blocks_per_call = max(1, math.ceil(round(interval_ms / block_ms, 6)))
        self.reset()

    @classmethod
    def from_bundle(cls, path: str | Path | Bundle | None = None, *, num_threads: int = 1,
                    backend: str | None = None, telemetry: Any = None, streaming: bool | None = None,
                    gate: Any = None, interval_ms: float | None = None,
                    **overrides: Any) -> "KeywordDetector":
        """Load a bundle (default: the packaged one; or pass a loaded one) and override detector settings by name.

        ``thresholds`` may be a dict per keyword or one number for all keywords.
        """
        bundle = path if isinstance(path, Bundle) else load_bundle(path)
        config = bundle.manifest.detector
        if overrides:
            names = {f.name for f in dataclasses.fields(DetectorConfig)}
            unknown = sorted(set(overrides) - names)
            if unknown:
                raise ConfigError(f"unknown detector setting {unknown[0]!r}; known: {', '.join(sorted(names))}")
            thresholds = overrides.get("thresholds")
            if isinstance(thresholds, (int, float)):
                overrides["thresholds"] = {k: float(thresholds) for k in bundle.manifest.keywords}
            elif isinstance(thresholds, dict):
                overrides["thresholds"] = {**config.thresholds, **thresholds}
            config = dataclasses.replace(config, **overrides)
        return cls(bundle, config=config, num_threads=num_threads, backend=backend, telemetry=telemetry,
                   streaming=streaming, gate=gate, interval_ms=interval_ms)

    def on_detection(self, callback: DetectionCallback) -> DetectionCallback:
        """Call ``callback(detection)`` for every detection; returns it (usable as a decorator)."""
        self._callbacks.append(callback)
        return callback

    def reset(self) -> None:
        """Forget all audio and state; stream time restarts at 0."""
        self._mfcc.reset()
        self._smoother.reset()
        self._ring[:] = 0
        if self.streaming is not None:
            self.streaming.reset()
        self._n_frames = 0
        self.n_samples = 0
        self.n_evaluations = 0
        self.last_posteriors = np.zeros(len(self.labels), np.float32)

    def flush(self) -> list[Detection]:
        """Feed one clip length of digital silence (end of a recording); return new detections."""
        return self.process(np.zeros(self.model.features.clip_samples, np.float32))

    @property
    def time_s(self) -> float:
        """Stream time of the audio processed so far."""
        return self.n_samples / self.sample_rate_hz

    def process(self, chunk: np.ndarray) -> list[Detection]:
        """Feed audio (int16 or float32 in [-1, 1], any length); return new detections."""
        if self.streaming is not None:  # the streaming model's branch (kws_edge/streaming.py); it validates
            return self.streaming.detect(self, chunk)
        audio = validate_audio(chunk, name="audio chunk")
        self.n_samples += audio.size
        frames = self._mfcc.process(audio)
        tel = self.telemetry
        if not len(frames):
            if tel is not None:
                tel.observe(audio, frames)
            return []
        prepared = self.model.prepare(frames)
        detections = []
        evaluated = [] if tel is not None else None
        n, ring, stride = self._n_window, self._ring, self.config.stride_hops
        for row in prepared:
            pos = self._n_frames % n
            ring[pos] = row
            ring[pos + n] = row
            self._n_frames += 1
            if self._n_frames < n or (self._n_frames - n) % stride:
                continue
            start = pos + 1
            posteriors = self.model.scores_prepared(ring[start:start + n])
            self.n_evaluations += 1
            self.last_posteriors = posteriors
            if evaluated is not None:
                evaluated.append(posteriors)
            end_sample = (self._n_frames - 1) * self._hop_samples + self._window_samples
            hit = self._smoother.update(posteriors, end_sample / self.sample_rate_hz)
            if hit is not None:
                detections.append(hit)
                for cb in self._callbacks:
                    cb(hit)
        if tel is not None:
            tel.observe(audio, frames, np.asarray(evaluated) if evaluated else None, detections)
        return detections


def detect_samples(detector: KeywordDetector, samples: np.ndarray, *, chunk_samples: int = 1600,
                   flush: bool = False) -> list[Detection]:
    """Run a whole signal through ``detector`` in chunks (after ``reset()``).

    ``flush=True`` then feeds one clip of digital silence, so a keyword at the
    very end of a recording (or a recording shorter than the model's window)
    still slides through the window; such detections can carry a ``time_s``
    up to one clip length past the end of the signal.
    """
    if chunk_samples < 1:
        raise ValueError(f"chunk_samples={chunk_samples} must be >= 1")
    detector.reset()
    out: list[Detection] = []
    for start in range(0, len(samples), chunk_samples):
        out.extend(detector.process(samples[start:start + chunk_samples]))
    if flush:
        out.extend(detector.flush())
    return out
