"""The streaming keyword detector that applications embed.

Audio chunks of any size -> :class:`~kws_edge.features.StreamingMfcc` (only
new frames) -> a :class:`~kws_edge.scoring.Scorer` (the bundle's streaming
model, or its window model every ``stride_hops`` hops) -> posteriors ->
:class:`~kws_edge.smoothing.PosteriorSmoother` -> ``Detection`` events,
returned and passed to callbacks. The same audio gives the same detections
whatever the chunk sizes.

The detector owns the audio intake, the MFCC stream, the smoothing, the
callbacks and the telemetry; the scorer only turns frames into posteriors.
Audio is held (copied, so callers may reuse their buffers) until the MFCC would
complete the frames the scorer wants next (:meth:`Scorer.frames_due`: one
``interval_ms`` of the streaming model, the next evaluated hop of the window
model); then features, model and smoother run once on all of it. MFCC and
scorer are chunking-invariant, so holding changes no result, only how many
calls they take.

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

from .audio import to_float32, validate_audio
from .bundle import Bundle, load_bundle
from .errors import ConfigError
from .features import StreamingMfcc
from .model import KwsModel
from .scoring import Scorer, Scores, WindowScorer
from .smoothing import Detection, DetectorConfig, PosteriorSmoother

__all__ = ["KeywordDetector", "Detection", "DetectorConfig", "detect_samples", "DEFAULT_INTERVAL_MS"]

DetectionCallback = Callable[[Detection], Any]
#: ``callback(posteriors [shape=(m, n_labels), float32], times_s [shape=(m,), float64])``
PosteriorCallback = Callable[[np.ndarray, np.ndarray], Any]

#: How much new audio the streaming model waits for before features and model run (issue 8): two
#: 100 ms blocks of the shipped model. Measured on the shipped bundle (benchmarks/test_streaming_cost.py):
#: ~0.9 ms of CPU per second of audio, against ~1.3 ms at one block per call; same detections, each up
#: to 100 ms later.
DEFAULT_INTERVAL_MS = 200.0

_NDARRAY = np.ndarray
_INT16 = np.dtype(np.int16)


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

    Attributes
    ----------
    scorer : the :class:`~kws_edge.scoring.Scorer` that runs (``streaming``: the same object when it is
        the streaming model's, else None)
    n_samples, n_frames, n_evaluations : audio samples, MFCC frames and evaluated hops since ``reset()``
    """

    def __init__(self, bundle: Bundle, *, config: DetectorConfig | None = None, num_threads: int = 1,
                 backend: str | None = None, telemetry: Any = None, streaming: bool | None = None,
                 gate: Any = None, interval_ms: float | None = None) -> None:
        m = bundle.manifest
        self.bundle = bundle
        self.config = config or m.detector
        self.labels = tuple(m.labels)
        self.keywords = tuple(m.keywords)
        fc = self.features = m.features
        self.sample_rate_hz = fc.sample_rate_hz
        self._hop_samples = fc.hop_samples
        self._window_samples = fc.window_samples
        self._n_window = fc.frames_per_clip
        self._num_threads, self._backend = num_threads, backend
        self.telemetry = telemetry
        self._model: KwsModel | None = None
        use_streaming = streaming or (streaming is None and bundle.streaming_model_bytes is not None)
        if interval_ms is not None and not use_streaming:
            raise ConfigError("interval_ms needs the bundle's streaming model (kws-convert --streaming); "
                              "the window model runs at every hop")
        if gate is not None and not use_streaming:
            raise ConfigError("the energy gate runs the streaming model; it needs streaming=True and a bundle "
                              "converted with kws-convert --streaming")
        self.scorer: Scorer
        self.streaming = None
        if use_streaming:
            from .streaming import StreamingScorer

            interval_ms = DEFAULT_INTERVAL_MS if interval_ms is None else interval_ms
            if not interval_ms > 0:
                raise ConfigError(f"interval_ms={interval_ms} must be > 0")
            self.streaming = self.scorer = StreamingScorer(bundle, num_threads=num_threads, backend=backend,
                                                           gate=gate)
            block_ms = self.streaming.block_frames * fc.hop_ms
            self.streaming.blocks_per_call = max(1, math.ceil(round(interval_ms / block_ms, 6)))
        else:
            self.scorer = WindowScorer(self.model, stride_hops=self.config.stride_hops)
        self._mfcc = StreamingMfcc(fc)
        self._smoother = PosteriorSmoother(self.labels, self.keywords, self.config,
                                           hop_s=fc.hop_samples * self.config.stride_hops / fc.sample_rate_hz)
        self._callbacks: list[DetectionCallback] = []
        self._posterior_callbacks: list[PosteriorCallback] = []
        self._no_frames = np.zeros((0, fc.n_cepstra), np.float32)
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

    @property
    def model(self) -> KwsModel:
        """The bundle's window model (classify clips, score windows). Loaded on first use when the
        streaming model runs: the detector itself then never builds its interpreter."""
        if self._model is None:
            self._model = KwsModel(self.bundle, num_threads=self._num_threads, backend=self._backend)
        return self._model

    @property
    def telemetry(self) -> Any:
        """Optional :class:`~kws_edge.telemetry.DetectorTelemetry`, fed once per chunk (may be set at any time)."""
        return self._telemetry

    @telemetry.setter
    def telemetry(self, value: Any) -> None:
        self._telemetry = value
        if hasattr(self, "_held_dtype"):
            self._update_light_path()

    @property
    def backend(self) -> str:
        """The interpreter package that runs the scorer's model (name and version)."""
        return self.scorer.engine.backend

    def on_detection(self, callback: DetectionCallback) -> DetectionCallback:
        """Call ``callback(detection)`` for every detection; returns it (usable as a decorator)."""
        self._callbacks.append(callback)
        return callback

    def on_posteriors(self, callback: PosteriorCallback) -> PosteriorCallback:
        """Call ``callback(posteriors, times_s)`` with every evaluated posterior row; returns it.

        ``posteriors`` [shape=(m, n_labels), float32] are the rows the smoother
        sees, in stream order (one per evaluated hop: every ``stride_hops`` hops
        from the first complete window); ``times_s`` [shape=(m,), float64] the
        end of each row's audio window in stream seconds (the ``time_s`` a
        detection on that row carries). Called once per model call, before the
        detection callbacks of the same rows. The arrays are the caller's to keep.
        """
        self._posterior_callbacks.append(callback)
        return callback

    def reset(self) -> None:
        """Forget all audio and state; stream time restarts at 0."""
        self._mfcc.reset()
        self._smoother.reset()
        self.scorer.reset()
        self._held: list[bytes] = []  # validated audio held back until the scorer's frames are due
        self._held_dtype = _INT16  # sample type of the held audio (int16, or float32 once a float chunk came)
        # samples that complete the frames the scorer wants next, counted from the last model call, and
        # those still to come (held audio: the difference)
        self._due_samples = self._room = self._mfcc.samples_until(self.scorer.frames_due())
        self._update_light_path()
        self.n_evaluations = 0
        self._last_rows: np.ndarray | None = None

    @property
    def n_samples(self) -> int:
        """Audio samples processed since ``reset()`` (held ones included)."""
        return self._mfcc.n_samples_seen + self._due_samples - self._room

    @property
    def n_frames(self) -> int:
        """MFCC frames computed since ``reset()`` (audio held for the next interval is not yet framed)."""
        return self._mfcc.n_frames_emitted

    @property
    def _n_frames(self) -> int:  # training/pipeline.py reads it (until issue 19 item 1 moves that evaluation)
        return self.n_frames

    @property
    def last_posteriors(self) -> np.ndarray:
        """Posteriors of the last evaluated hop [shape=(n_labels,), float32] (zeros before the first)."""
        if self._last_rows is None:
            return np.zeros(len(self.labels), np.float32)
        return np.array(self._last_rows[-1], np.float32)

    def flush(self) -> list[Detection]:
        """Feed one clip length of digital silence (end of a recording); return new detections."""
        return self.process(np.zeros(self.features.clip_samples, self._held_dtype))

    @property
    def time_s(self) -> float:
        """Stream time of the audio processed so far."""
        return self.n_samples / self.sample_rate_hz

    def process(self, chunk: np.ndarray) -> list[Detection]:
        """Feed audio (int16 or float32 in [-1, 1], any length); return new detections.

        A chunk that completes no interval is copied and held, nothing more: a
        microphone delivers one every 10-100 ms and the process sleeps in
        between, so each call starts on cold caches, where every numpy call costs
        tens of microseconds. int16 chunks (what a microphone gives) need no
        checks but their type; float32 chunks are checked for NaN and range.
        """
        if type(chunk) is _NDARRAY and chunk.dtype is self._light_dtype and chunk.ndim == 1:
            self._held.append(chunk.tobytes())
            self._room -= len(chunk)
            if self._room > 0:
                return []
            return self._run(chunk)  # (an int16 chunk needs no other check)
        return self._process(chunk)

    def _process(self, chunk: np.ndarray) -> list[Detection]:
        audio = validate_audio(chunk, name="audio chunk", keep_int16=True)
        if audio.dtype != self._held_dtype:  # a float chunk in an int16 stream: hold float32 from now on
            if self._held_dtype == _INT16:
                self._held[:] = [to_float32(np.frombuffer(b"".join(self._held), _INT16)).tobytes()]
                self._held_dtype = audio.dtype
                self._update_light_path()
            else:
                audio = to_float32(audio)
        self._held.append(audio.tobytes())
        self._room -= audio.size
        tel = self._telemetry
        if self._room > 0:
            if tel is not None:
                tel.observe(to_float32(audio), self._no_frames)
            return []
        return self._run(audio)

    def _run(self, audio: np.ndarray) -> list[Detection]:
        """The held audio (``audio``: the chunk that completed it) -> frames -> scorer -> smoother."""
        held = self._held
        frames = self._mfcc.process_bytes(b"".join(held), self._held_dtype)
        held.clear()
        detections = self._score(frames, audio)
        self._due_samples = self._room = self._mfcc.samples_until(self.scorer.frames_due())
        return detections

    def _update_light_path(self) -> None:
        """int16 chunks that complete nothing take process()'s first branch: no telemetry, int16 held."""
        self._light_dtype = _INT16 if self._telemetry is None and self._held_dtype is _INT16 else None

    def _score(self, frames: np.ndarray, audio: np.ndarray) -> list[Detection]:
        """Frames -> scorer -> smoother -> callbacks and telemetry (one observation per chunk)."""
        scores = self.scorer.score(frames)
        stride = self.config.stride_hops
        if stride > 1:
            scores = scores.every(stride, first_window_frames=self._n_window)
        rows = scores.posteriors
        tel = self._telemetry
        detections: list[Detection] = []
        if len(rows):
            if self._posterior_callbacks:
                times = self._times_s(scores)
                for pcb in self._posterior_callbacks:
                    pcb(rows, times)
            smoother = self._smoother
            if not (scores.silence_only and smoother.idle):  # silence rows into an idle smoother change nothing
                detections = smoother.update_many(rows, lambda: self._times_s(scores))
                for hit in detections:
                    for cb in self._callbacks:
                        cb(hit)
            self.n_evaluations += len(rows)
            self._last_rows = rows
        if tel is not None:
            tel.observe(to_float32(audio), frames, rows if len(rows) else None, detections)
        return detections

    def _times_s(self, scores: Scores) -> np.ndarray:
        return scores.end_samples(window_samples=self._window_samples,
                                  hop_samples=self._hop_samples) / self.sample_rate_hz


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
