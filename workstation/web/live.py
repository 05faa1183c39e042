"""The live feed behind ``kws serve``: audio source -> detector -> JSON events.

No web library here: :class:`DetectorPump` runs a detector over a source in
its own thread and hands plain ``dict`` events to a ``publish`` callback, and
:class:`LiveState` keeps the recent history a late-joining page needs. The
server (``kws_edge.workstation.web.server``) only moves these events to browsers.

Events (every one has ``type``):

``frame``      one per chunk: ``t`` stream time (s) at its end, ``p`` the class posteriors
               of the newest evaluated window in label order (null until the first
               window is complete), ``rms_dbfs`` / ``peak_dbfs`` input level of the chunk
``detection``  ``label``, ``score``, ``time_s`` (stream time), ``wall_utc``
``telemetry``  ``counters``: a flat ``{name: number}`` dict
``status``     ``state`` ("live", "ended", "error") and a human ``message``
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ...audio import read_wav
from ...detector import KeywordDetector
from ...stamps import utc_now

__all__ = ["AudioSource", "FileSource", "MicSource", "DetectorPump", "LiveState", "level_dbfs", "telemetry_counters"]

Event = dict[str, Any]

#: level reported for digital silence
FLOOR_DBFS = -120.0


class AudioSource(Protocol):
    """What the pump reads: an iterable of mono float32 chunks that can be closed.

    ``description`` names it for the page ("microphone", "file x.wav").
    ``overflow_count`` (optional) counts audio blocks the source had to drop.
    """

    description: str

    def __iter__(self) -> Iterator[np.ndarray]: ...

    def close(self) -> None: ...


def level_dbfs(chunk: np.ndarray) -> tuple[float, float]:
    """RMS and peak level of float audio in dB relative to full scale."""
    if chunk.size == 0:
        return FLOOR_DBFS, FLOOR_DBFS
    x = chunk.astype(np.float64, copy=False)
    rms = math.sqrt(float(np.mean(x * x)))
    peak = float(np.max(np.abs(x)))

    def db(v: float) -> float:
        return max(FLOOR_DBFS, 20.0 * math.log10(v)) if v > 0 else FLOOR_DBFS

    return round(db(rms), 1), round(db(peak), 1)


class FileSource:
    """A WAV file played as if it were a microphone: fixed chunks, paced in real time.

    Parameters
    ----------
    path : the WAV file (read and checked now, so a bad file fails before serving)
    sample_rate_hz : the model's rate; other rates are resampled
    chunk_ms : size of each chunk
    speed : 1.0 = real time; 2.0 = twice as fast; 0 = as fast as possible
    """

    def __init__(self, path: str | Path, sample_rate_hz: int, *, chunk_ms: float = 50.0, speed: float = 1.0) -> None:
        self.path = Path(path)
        self.samples = read_wav(self.path, sample_rate_hz=sample_rate_hz).samples
        self.sample_rate_hz = int(sample_rate_hz)
        self.chunk_samples = max(1, int(round(chunk_ms / 1000.0 * sample_rate_hz)))
        self.speed = float(speed)
        self.description = f"file {self.path.name}"
        self.duration_s = len(self.samples) / self.sample_rate_hz
        self._stop = threading.Event()

    def __iter__(self) -> Iterator[np.ndarray]:
        start = time.monotonic()
        n = self.chunk_samples
        for i, offset in enumerate(range(0, len(self.samples), n)):
            if self.speed > 0:
                # a microphone hands over a chunk once it has been recorded: at the chunk's end
                due = start + ((i + 1) * n / self.sample_rate_hz) / self.speed
                delay = due - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    return
            if self._stop.is_set():
                return
            yield self.samples[offset:offset + n]

    def close(self) -> None:
        self._stop.set()


class MicSource:
    """A :class:`~kws_edge.microphone.MicrophoneSource` seen as an :class:`AudioSource`.

    ``overflow_count`` adds the blocks dropped because the detector fell behind and
    the blocks PortAudio flagged as input overflows.
    """

    def __init__(self, sample_rate_hz: int, *, device: Any = None, block_ms: float = 50.0) -> None:
        from ...microphone import MicrophoneSource

        self.mic = MicrophoneSource(sample_rate_hz=sample_rate_hz, device=device,
                                    block_samples=max(1, int(round(block_ms / 1000.0 * sample_rate_hz))),
                                    dtype="float32")
        self.mic.start()  # fail now (no device, no PortAudio), before the server starts
        self.description = f"microphone {self.mic.device_name}".strip()

    @property
    def overflow_count(self) -> int:
        return self.mic.stats.dropped_blocks + self.mic.stats.input_overflows

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter(self.mic)

    def close(self) -> None:
        self.mic.stop()


class DetectorPump:
    """Run ``detector`` over ``source`` in a thread and publish events.

    ``publish(event)`` is called from the pump's thread; it must not block
    (the server hands events to its event loop with ``call_soon_threadsafe``).
    ``extra_counters()``, if given, adds to the telemetry counters (e.g. the
    number of connected pages). When the detector has a
    :class:`~kws_edge.telemetry.DetectorTelemetry` (``detector.telemetry``),
    its snapshot (input level, clipping, drift score) joins the counters.
    """

    def __init__(self, detector: KeywordDetector, source: AudioSource, publish: Callable[[Event], None], *,
                 telemetry_interval_s: float = 1.0,
                 extra_counters: Callable[[], dict[str, float]] | None = None) -> None:
        self.detector = detector
        self.source = source
        self.publish = publish
        self.telemetry_interval_s = float(telemetry_interval_s)
        self.extra_counters = extra_counters
        self.counts: dict[str, float] = {"chunks": 0, "audio_s": 0.0, "processing_s": 0.0, "detections": 0}
        for kw in detector.keywords:
            self.counts[f"detections_{kw}"] = 0
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.finished = threading.Event()

    # -- thread control -------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="kws-pump", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 2.0) -> None:
        self._stopping.set()
        self.source.close()
        if self._thread is not None:
            self._thread.join(timeout_s)

    # -- the loop --------------------------------------------------------
    def counters(self) -> dict[str, float]:
        c = dict(self.counts)
        c["evaluations"] = self.detector.n_evaluations
        audio_s = c["audio_s"]
        c["real_time_factor"] = round(c["processing_s"] / audio_s, 5) if audio_s else 0.0
        c["audio_s"] = round(audio_s, 2)
        c["processing_s"] = round(c["processing_s"], 3)
        overflows = getattr(self.source, "overflow_count", None)
        if overflows is not None:
            c["source_overflows"] = int(overflows)
        telemetry = getattr(self.detector, "telemetry", None)
        if telemetry is not None:
            c.update(telemetry_counters(telemetry.snapshot()))
        if self.extra_counters is not None:
            c.update(self.extra_counters())
        return c

    def _publish_detection(self, d: Any) -> None:
        self.counts["detections"] += 1
        self.counts[f"detections_{d.label}"] = self.counts.get(f"detections_{d.label}", 0) + 1
        self.publish({"type": "detection", **d.to_dict(),
                      "wall_utc": utc_now("milliseconds")})

    def run(self) -> None:
        """Blocking loop; publishes a final ``status`` event when the source ends or fails."""
        det = self.detector
        last_telemetry = time.monotonic()
        self.publish({"type": "status", "state": "live", "message": f"listening to {self.source.description}"})
        try:
            for chunk in self.source:
                if self._stopping.is_set():
                    break
                t0 = time.perf_counter()
                detections = det.process(chunk)
                self.counts["processing_s"] += time.perf_counter() - t0
                self.counts["chunks"] += 1
                self.counts["audio_s"] += len(chunk) / det.sample_rate_hz
                rms, peak = level_dbfs(np.asarray(chunk, np.float32))
                self.publish({"type": "frame", "t": round(det.time_s, 3),
                              "p": ([round(float(v), 4) for v in det.last_posteriors]
                                    if det.n_evaluations else None),
                              "rms_dbfs": rms, "peak_dbfs": peak})
                for d in detections:
                    self._publish_detection(d)
                now = time.monotonic()
                if now - last_telemetry >= self.telemetry_interval_s:
                    last_telemetry = now
                    self.publish({"type": "telemetry", "counters": self.counters()})
        except Exception as exc:  # a failing source or model: tell the page, keep the server up
            self.publish({"type": "telemetry", "counters": self.counters()})
            self.publish({"type": "status", "state": "error",
                          "message": f"{self.source.description} failed: {exc}"})
            self.finished.set()
            return
        if not self._stopping.is_set() and hasattr(det, "flush"):
            # End of a recording: one clip of silence lets a keyword at the very end through the window.
            for d in det.flush():
                self._publish_detection(d)
        self.publish({"type": "telemetry", "counters": self.counters()})
        if self._stopping.is_set():
            self.publish({"type": "status", "state": "ended", "message": "server is stopping"})
        else:
            self.publish({"type": "status", "state": "ended",
                          "message": f"{self.source.description} ended after {self.counts['audio_s']:.1f} s of audio; "
                                     f"{int(self.counts['detections'])} detection(s)"})
        self.finished.set()


def telemetry_counters(snapshot: dict[str, Any]) -> dict[str, float]:
    """The numbers of a :meth:`DetectorTelemetry.snapshot` worth showing live, flattened."""
    out: dict[str, float] = {}
    for key in ("hops", "overflows"):
        if key in snapshot:
            out[key] = snapshot[key]
    inp = snapshot.get("input") or {}
    if "rms_dbfs" in inp:
        out["input_rms_dbfs"] = inp["rms_dbfs"]
    if "clipped_samples" in inp:
        out["clipped_samples"] = inp["clipped_samples"]
    drift = snapshot.get("drift") or {}
    if drift.get("score") is not None:
        out["drift_score"] = round(float(drift["score"]), 3)
        out["drift_flag"] = int(bool(drift.get("flag")))
    else:
        out["drift_score"] = "n/a"  # type: ignore[assignment]  (too few frames yet)
    return out


class LiveState:
    """What a page needs when it (re)connects: recent frames and detections, status, counters."""

    def __init__(self, *, history_frames: int = 600, history_detections: int = 100) -> None:
        self.frames: deque[Event] = deque(maxlen=history_frames)
        self.detections: deque[Event] = deque(maxlen=history_detections)
        self.status: Event = {"type": "status", "state": "starting", "message": "starting"}
        self.counters: dict[str, float] = {}

    def apply(self, event: Event) -> None:
        kind = event.get("type")
        if kind == "frame":
            self.frames.append(event)
        elif kind == "detection":
            self.detections.append(event)
        elif kind == "status":
            self.status = event
        elif kind == "telemetry":
            self.counters = dict(event.get("counters", {}))

    def snapshot(self) -> dict[str, Any]:
        return {"frames": list(self.frames), "detections": list(self.detections), "status": self.status,
                "counters": self.counters}
