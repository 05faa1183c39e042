"""Telemetry of a deployed detector: what an operator needs to decide when to retrain.

A :class:`DetectorTelemetry` is fed by :class:`~kws_edge.detector.KeywordDetector`
once per audio chunk (``observe``), vectorised over the chunk, never per sample:

* counters: chunks, samples (stream time), feature hops, model evaluations,
  detections per label, overflowed audio blocks (reported by the audio source);
* the input level: RMS in dBFS of the last chunk and of the whole stream, the
  peak, and the number of clipped samples (``|x| >= clip_level``);
* a histogram per keyword of the model's posterior for that keyword;
* running statistics of the raw MFCC frames, cumulative and recent (an
  exponential moving average over about ``drift_window_frames`` frames, decayed once per
  batch of about half a second of frames), and a
  **drift score**: the largest, over cepstral coefficients, Kullback-Leibler
  divergence ``KL(recent || training)`` between a Gaussian with the recent
  statistics and one with the manifest's normalisation statistics (the
  training features' per-coefficient mean and std). It is 0 for identical
  statistics and grows with the square of a mean shift measured in training
  standard deviations (a shift of 1 std gives 0.5). It is flagged above
  ``drift_threshold`` once ``drift_min_frames`` frames were seen. A gain change
  moves c0 (log energy) only; added noise and a different sample-rate path
  (band limits, pitch shift) move the higher cepstra. The maximum, not the
  mean, is used so that a shift in one coefficient (gain) is not diluted.
  Measured on real Speech Commands clips streamed for 130 s: clean audio
  0.01-0.09; -20 dB gain 0.52; white noise at 10 dB SNR 2.5; an 8 kHz
  telephone path 2.0; hence the default threshold 0.3.
  Digital silence (frames whose c0 sits at the energy floor: all-zero samples, such as
  padding between recordings or a muted input) says nothing about the audio path and is
  left out of the feature statistics (counted as ``silent_frames``): on real clips with
  0.5-1.5 s of digital zeros between them it had raised the score from 0.08 to 0.32 over a
  threshold of 0.3; without those frames it is 0.08 again. Quiet but not silent frames stay
  in: the training statistics hold them too (a quarter of Speech Commands frames are below
  -80 dBFS), and leaving them out would read clean speech as drift.

Exposition: :func:`serve_metrics` serves the telemetry in the Prometheus text
format on 127.0.0.1 (``prometheus_client``, the ``monitor`` extra, imported
lazily); :class:`JsonlSnapshotter` appends one JSON snapshot per line. Reading
such a file back, summarising and plotting it (``kws monitor``) is workstation
work: :mod:`kws_edge.workstation.monitor`.

No TensorFlow, and nothing here is needed for detection itself.
"""

from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import numpy as np

from .errors import BackendUnavailableError, ConfigError, KwsError
from .stamps import utc_now

__all__ = [
    "TelemetryConfig",
    "DetectorTelemetry",
    "gaussian_kl",
    "serve_metrics",
    "MetricsServer",
    "JsonlSnapshotter",
    "SNAPSHOT_FORMAT_VERSION",
    "TelemetrySession",
    "DB_FLOOR",
    "dbfs",
]

SNAPSHOT_FORMAT_VERSION = 1
#: frames collected before they are folded into the running statistics (0.5 s at 20 ms hops)
_FLUSH_FRAMES = 25
#: the level reported for digital silence (dBFS)
DB_FLOOR = -120.0


@dataclass(frozen=True)
class TelemetryConfig:
    """Telemetry settings.

    Attributes
    ----------
    score_bins : number of equal-width bins of the keyword score histograms over [0, 1]
    clip_level : a sample with ``|x| >= clip_level`` (float scale) counts as clipped
    drift_window_frames : time constant of the recent feature statistics, in frames (1500 = 30 s at 20 ms hops)
    drift_min_frames : no drift verdict before this many frames were seen
    drift_threshold : drift score above which the drift flag is raised
    """

    score_bins: int = 20
    clip_level: float = 0.999
    drift_window_frames: int = 1500
    drift_min_frames: int = 250
    drift_threshold: float = 0.3

    def __post_init__(self) -> None:
        if self.score_bins < 1:
            raise ConfigError(f"score_bins={self.score_bins} must be >= 1")
        if not 0 < self.clip_level <= 1:
            raise ConfigError(f"clip_level={self.clip_level} must be in (0, 1]")
        if self.drift_window_frames < 1 or self.drift_min_frames < 1:
            raise ConfigError("drift_window_frames and drift_min_frames must be >= 1")
        if self.drift_threshold <= 0:
            raise ConfigError(f"drift_threshold={self.drift_threshold} must be > 0")


def gaussian_kl(mean_p: np.ndarray, std_p: np.ndarray, mean_q: np.ndarray, std_q: np.ndarray) -> np.ndarray:
    """Per-coefficient ``KL(N(mean_p, std_p) || N(mean_q, std_q))`` in nats."""
    sp = np.maximum(np.asarray(std_p, np.float64), 1e-6)
    sq = np.maximum(np.asarray(std_q, np.float64), 1e-6)
    d = np.asarray(mean_p, np.float64) - np.asarray(mean_q, np.float64)
    return np.log(sq / sp) + (sp ** 2 + d ** 2) / (2 * sq ** 2) - 0.5


#: how far above the c0 of an all-zero frame a frame still counts as digital silence (nats of log energy)
_SILENT_C0_MARGIN = 0.5


def silent_c0_for(features: Any) -> float:
    """The first MFCC coefficient below which a frame is digital silence, for a feature configuration.

    Measured with the runtime's own :func:`~kws_edge.features.mfcc` on one window of zeros (the
    energy floor), plus a margin far below any real recording's level.
    """
    from .features import mfcc

    zeros = np.zeros(features.window_samples, np.float32)
    return float(mfcc(zeros, features)[0, 0]) + _SILENT_C0_MARGIN


def dbfs(mean_square: float) -> float:
    """A mean square (float scale) in dBFS, never below :data:`DB_FLOOR`."""
    if mean_square <= 0:
        return DB_FLOOR
    return max(DB_FLOOR, 10.0 * math.log10(mean_square))


class DetectorTelemetry:
    """Thread-safe counters and statistics of one detector stream.

    Parameters
    ----------
    labels, keywords : the model's class names (output order) and the keywords among them
    train_mean, train_std : the manifest's normalisation statistics (per cepstral coefficient);
        without them there is no drift score
    sample_rate_hz : of the audio fed to ``observe``
    config : TelemetryConfig
    silent_c0 : frames whose first coefficient is at or below this are digital silence and stay out of
        the feature statistics (:func:`silent_c0_for`; None: every frame counts)
    """

    def __init__(self, labels: Sequence[str], keywords: Sequence[str], *,
                 train_mean: Optional[Sequence[float]] = None, train_std: Optional[Sequence[float]] = None,
                 sample_rate_hz: int = 16000, config: TelemetryConfig = TelemetryConfig(),
                 silent_c0: Optional[float] = None) -> None:
        self.labels = tuple(labels)
        self.keywords = tuple(keywords)
        missing = [k for k in self.keywords if k not in self.labels]
        if missing:
            raise ConfigError(f"keyword {missing[0]!r} is not one of the labels {list(self.labels)}")
        self._kw_index = np.array([self.labels.index(k) for k in self.keywords], dtype=np.intp)
        first = int(self._kw_index[0]) if len(self._kw_index) else 0
        contiguous = len(self._kw_index) and list(self._kw_index) == list(range(first, first + len(self._kw_index)))
        self._kw_slice = slice(first, first + len(self._kw_index)) if contiguous else None
        self._bin_offsets = (np.arange(len(self.keywords), dtype=np.intp) * config.score_bins)[None, :]
        self.config = config
        self.sample_rate_hz = int(sample_rate_hz)
        if (train_mean is None) != (train_std is None):
            raise ConfigError("give both train_mean and train_std, or neither")
        self.train_mean = None if train_mean is None else np.asarray(train_mean, np.float64)
        self.train_std = None if train_std is None else np.asarray(train_std, np.float64)
        self._decay = math.exp(-1.0 / config.drift_window_frames)
        self.silent_c0 = None if silent_c0 is None else float(silent_c0)
        self._lock = threading.Lock()
        self.reset()

    @classmethod
    def for_manifest(cls, manifest: Any, config: TelemetryConfig = TelemetryConfig()) -> "DetectorTelemetry":
        """Telemetry for a bundle's manifest (labels, keywords, normalisation, sample rate)."""
        return cls(manifest.labels, manifest.keywords, train_mean=manifest.normalization.mean,
                   train_std=manifest.normalization.std, sample_rate_hz=manifest.features.sample_rate_hz,
                   config=config, silent_c0=silent_c0_for(manifest.features))

    def reset(self) -> None:
        """Zero every counter and statistic (the wall-clock start is reset too)."""
        with self._lock:
            self.started_monotonic = time.monotonic()
            self.started_utc = utc_now("microseconds")
            self.chunks = 0
            self.samples = 0
            self.hops = 0
            self.evaluations = 0
            self.overflows = 0
            self.clipped_samples = 0
            self.peak = 0.0
            self.sum_squares = 0.0
            self.last_chunk_dbfs = DB_FLOOR
            self.detections = {k: 0 for k in self.keywords}
            self.last_detection: Optional[dict[str, Any]] = None
            nb = self.config.score_bins
            self.score_counts = np.zeros((len(self.keywords), nb), np.int64)
            self.score_sums = np.zeros(len(self.keywords), np.float64)
            self._feat_n = 0
            self.silent_frames = 0
            self._feat_sum: Optional[np.ndarray] = None
            self._feat_sumsq: Optional[np.ndarray] = None
            self._ema_w = 0.0  # sum of weights, for bias correction
            self._ema_m1: Optional[np.ndarray] = None
            self._ema_m2: Optional[np.ndarray] = None
            self._pending_frames: list[np.ndarray] = []
            self._pending_posteriors: list[np.ndarray] = []
            self._pending_n = 0

    # ------------------------------------------------------------------ feeding
    def observe(self, audio: np.ndarray, frames: np.ndarray, posteriors: Optional[np.ndarray] = None,
                detections: Iterable[Any] = ()) -> None:
        """Record one processed chunk.

        ``audio`` float32 in [-1, 1]; ``frames`` the new raw MFCC frames
        ``(n, n_cepstra)``; ``posteriors`` the model outputs evaluated during
        the chunk ``(n_eval, n_labels)`` (or None); ``detections`` the events.
        """
        a = np.asarray(audio)
        n = int(a.size)
        if n:
            af = a.reshape(-1)
            sq = float(np.dot(af, af))
            peak = max(float(af.max()), -float(af.min()))
            clipped = int(np.count_nonzero(np.abs(af) >= self.config.clip_level)) if peak >= self.config.clip_level else 0
        with self._lock:
            self.chunks += 1
            if n:
                self.samples += n
                self.sum_squares += sq
                self.last_chunk_dbfs = dbfs(sq / n)
                self.peak = max(self.peak, peak)
                self.clipped_samples += clipped
            # Frames and posteriors are only collected here and folded into the statistics in
            # batches of about _FLUSH_FRAMES frames (and before any read): a few numpy calls per
            # second instead of a dozen per chunk.
            if frames is not None and len(frames):
                self.hops += len(frames)
                self._pending_frames.append(frames)
                self._pending_n += len(frames)
            if posteriors is not None and len(posteriors):
                self.evaluations += len(posteriors)
                self._pending_posteriors.append(posteriors)
            if self._pending_n >= _FLUSH_FRAMES:
                self._flush()
            for d in detections:
                self.detections[d.label] = self.detections.get(d.label, 0) + 1
                self.last_detection = {"label": d.label, "score": round(float(d.score), 4),
                                       "time_s": round(float(d.time_s), 3)}

    def record_overflow(self, n_blocks: int = 1) -> None:
        """Count audio blocks the source dropped (for example a sounddevice input overflow)."""
        with self._lock:
            self.overflows += int(n_blocks)

    def _flush(self) -> None:
        if self._pending_frames:
            self._add_frames(np.concatenate(self._pending_frames).astype(np.float64, copy=False))
            self._pending_frames = []
            self._pending_n = 0
        if self._pending_posteriors:
            p = np.concatenate([np.asarray(x).reshape(-1, len(self.labels)) for x in self._pending_posteriors])
            self._add_posteriors(p)
            self._pending_posteriors = []

    def _add_frames(self, f: np.ndarray) -> None:
        if self.silent_c0 is not None:
            sound = f[:, 0] > self.silent_c0
            if not sound.all():
                self.silent_frames += int(f.shape[0] - np.count_nonzero(sound))
                f = f[sound]
        n = f.shape[0]
        if not n:
            return
        if self._feat_sum is None:
            c = f.shape[1]
            self._feat_sum = np.zeros(c)
            self._feat_sumsq = np.zeros(c)
            self._ema_m1 = np.zeros(c)
            self._ema_m2 = np.zeros(c)
        self._feat_n += n
        fsum = f.sum(axis=0)
        sqsum = np.einsum("ij,ij->j", f, f)
        self._feat_sum += fsum
        self._feat_sumsq += sqsum
        # Exponential moving average over frames, per chunk: the sums decay by d^n for a chunk of
        # n frames, and the chunk's frames enter with weight 1 (n is small against the window,
        # so treating one chunk's frames alike changes nothing that matters).
        dn = self._decay ** n
        self._ema_w = self._ema_w * dn + n
        self._ema_m1 *= dn
        self._ema_m1 += fsum
        self._ema_m2 *= dn
        self._ema_m2 += sqsum

    def _add_posteriors(self, p: np.ndarray) -> None:
        kw = p[:, self._kw_slice] if self._kw_slice is not None else p[:, self._kw_index]  # (n_eval, n_kw)
        nb = self.config.score_bins
        if kw.shape[0] == 1:  # one evaluation per chunk: plain Python beats numpy on 2 numbers
            counts, sums = self.score_counts, self.score_sums
            for j, v in enumerate(kw[0].tolist()):
                counts[j, min(max(int(v * nb), 0), nb - 1)] += 1
                sums[j] += v
            return
        idx = (kw * nb).astype(np.intp)
        np.minimum(idx, nb - 1, out=idx)
        np.maximum(idx, 0, out=idx)
        flat = (idx + self._bin_offsets).ravel()
        self.score_counts += np.bincount(flat, minlength=self.score_counts.size).reshape(self.score_counts.shape)
        self.score_sums += kw.sum(axis=0)

    # ------------------------------------------------------------------ reading
    def feature_stats(self) -> dict[str, Any]:
        """Cumulative and recent per-coefficient mean/std of the raw MFCC frames."""
        with self._lock:
            return self._feature_stats()

    def _feature_stats(self) -> dict[str, Any]:
        self._flush()
        if not self._feat_n:
            return {"frames": 0}
        n = self._feat_n
        mean = self._feat_sum / n
        std = np.sqrt(np.maximum(self._feat_sumsq / n - mean ** 2, 0.0))
        rmean = self._ema_m1 / self._ema_w
        rstd = np.sqrt(np.maximum(self._ema_m2 / self._ema_w - rmean ** 2, 0.0))
        return {"frames": n, "mean": mean, "std": std, "recent_mean": rmean, "recent_std": rstd}

    def drift(self) -> dict[str, Any]:
        """``{"score", "per_coefficient", "threshold", "flag", "frames"}``; score None when undecided."""
        with self._lock:
            return self._drift()

    def _drift(self) -> dict[str, Any]:
        self._flush()
        out: dict[str, Any] = {"score": None, "per_coefficient": None, "threshold": self.config.drift_threshold,
                               "flag": False, "frames": self._feat_n, "silent_frames": self.silent_frames}
        if self.train_mean is None or self._feat_n < self.config.drift_min_frames:
            return out
        st = self._feature_stats()
        if len(st["recent_mean"]) != len(self.train_mean):
            raise KwsError(
                f"features have {len(st['recent_mean'])} coefficients but the normalisation statistics "
                f"{len(self.train_mean)}; telemetry was built for another bundle"
            )
        kl = gaussian_kl(st["recent_mean"], st["recent_std"], self.train_mean, self.train_std)
        score = float(np.max(kl))
        out.update(score=score, per_coefficient=[round(float(v), 4) for v in kl],
                   flag=bool(score > self.config.drift_threshold))
        return out

    @property
    def uptime_s(self) -> float:
        return time.monotonic() - self.started_monotonic

    def snapshot(self) -> dict[str, Any]:
        """Everything as plain JSON types (one line of a telemetry JSONL file)."""
        with self._lock:
            self._flush()
            st = self._feature_stats()
            drift = self._drift()
            nb = self.config.score_bins
            stream_s = self.samples / self.sample_rate_hz if self.sample_rate_hz else 0.0
            feats: dict[str, Any] = {"frames": st["frames"]}
            for key in ("mean", "std", "recent_mean", "recent_std"):
                if key in st:
                    feats[key] = [round(float(v), 5) for v in st[key]]
            return {
                "format_version": SNAPSHOT_FORMAT_VERSION,
                "time_utc": utc_now("microseconds"),
                "started_utc": self.started_utc,
                "uptime_s": round(self.uptime_s, 3),
                "stream_time_s": round(stream_s, 3),
                "chunks": self.chunks,
                "samples": self.samples,
                "hops": self.hops,
                "evaluations": self.evaluations,
                "overflows": self.overflows,
                "detections": dict(self.detections),
                "last_detection": self.last_detection,
                "input": {
                    "rms_dbfs": round(dbfs(self.sum_squares / self.samples) if self.samples else DB_FLOOR, 2),
                    "last_chunk_rms_dbfs": round(self.last_chunk_dbfs, 2),
                    "peak": round(self.peak, 5),
                    "clipped_samples": self.clipped_samples,
                    "clipped_fraction": (self.clipped_samples / self.samples) if self.samples else 0.0,
                },
                "scores": {
                    "bin_edges": [round(i / nb, 6) for i in range(nb + 1)],
                    "counts": {k: self.score_counts[j].tolist() for j, k in enumerate(self.keywords)},
                    "sums": {k: round(float(self.score_sums[j]), 4) for j, k in enumerate(self.keywords)},
                },
                "features": feats,
                "drift": drift,
            }


# ---------------------------------------------------------------------- Prometheus
class _Collector:
    """prometheus_client collector that reads a telemetry object at scrape time."""

    def __init__(self, telemetry: DetectorTelemetry, prefix: str = "kws") -> None:
        self.telemetry = telemetry
        self.prefix = prefix

    def describe(self):  # no eager collection at registration
        return []

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        t = self.telemetry
        p = self.prefix
        s = t.snapshot()
        yield CounterMetricFamily(f"{p}_audio_samples", "Audio samples processed", value=s["samples"])
        yield CounterMetricFamily(f"{p}_audio_chunks", "Audio chunks processed", value=s["chunks"])
        yield CounterMetricFamily(f"{p}_hops", "Feature hops (MFCC frames) processed", value=s["hops"])
        yield CounterMetricFamily(f"{p}_evaluations", "Model evaluations", value=s["evaluations"])
        yield CounterMetricFamily(f"{p}_overflows", "Audio blocks dropped by the source", value=s["overflows"])
        yield CounterMetricFamily(f"{p}_clipped_samples", "Input samples at or above the clip level",
                                  value=s["input"]["clipped_samples"])
        det = CounterMetricFamily(f"{p}_detections", "Detections per label", labels=["label"])
        for label, n in s["detections"].items():
            det.add_metric([label], n)
        yield det
        yield GaugeMetricFamily(f"{p}_stream_time_seconds", "Stream time of the audio processed",
                                value=s["stream_time_s"])
        yield GaugeMetricFamily(f"{p}_uptime_seconds", "Seconds since the telemetry started", value=s["uptime_s"])
        yield GaugeMetricFamily(f"{p}_input_rms_dbfs", "RMS input level of the whole stream (dBFS)",
                                value=s["input"]["rms_dbfs"])
        yield GaugeMetricFamily(f"{p}_input_last_chunk_rms_dbfs", "RMS input level of the last chunk (dBFS)",
                                value=s["input"]["last_chunk_rms_dbfs"])
        yield GaugeMetricFamily(f"{p}_input_peak", "Peak absolute sample (float scale)", value=s["input"]["peak"])
        edges = s["scores"]["bin_edges"]
        hist = HistogramMetricFamily(f"{p}_keyword_score", "Posterior of each keyword per evaluation",
                                     labels=["keyword"])
        for kw, counts in s["scores"]["counts"].items():
            cum = np.cumsum(counts).tolist()
            buckets = [(_fmt_edge(e), c) for e, c in zip(edges[1:-1], cum[:-1])] + [("+Inf", cum[-1])]
            hist.add_metric([kw], buckets, sum_value=s["scores"]["sums"][kw])
        yield hist
        drift = s["drift"]
        yield GaugeMetricFamily(f"{p}_feature_drift_score",
                                "Largest per-coefficient KL divergence of recent MFCC statistics from the training statistics "
                                "(NaN until enough frames)",
                                value=float("nan") if drift["score"] is None else drift["score"])
        yield GaugeMetricFamily(f"{p}_feature_drift_flag", "1 when the drift score exceeds its threshold",
                                value=1.0 if drift["flag"] else 0.0)
        yield GaugeMetricFamily(f"{p}_feature_drift_threshold", "Drift score threshold", value=drift["threshold"])
        feats = s["features"]
        if "recent_mean" in feats:
            g = GaugeMetricFamily(f"{p}_feature_recent_mean", "Recent mean of each MFCC coefficient",
                                  labels=["coefficient"])
            for i, v in enumerate(feats["recent_mean"]):
                g.add_metric([str(i)], v)
            yield g


def _fmt_edge(e: float) -> str:
    return f"{e:g}"


@dataclass
class MetricsServer:
    """A running Prometheus endpoint; ``close()`` stops it."""

    host: str
    port: int
    _server: Any = field(repr=False)
    _thread: Any = field(repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def serve_metrics(telemetry: DetectorTelemetry, port: int, *, host: str = "127.0.0.1",
                  prefix: str = "kws") -> MetricsServer:
    """Serve ``telemetry`` as Prometheus metrics on ``http://host:port/metrics`` (port 0: any free port).

    Needs ``prometheus_client`` (``pip install "kws-edge[monitor]"``). Each
    scrape reads a fresh snapshot; nothing is computed between scrapes.
    """
    try:
        from prometheus_client import CollectorRegistry, start_http_server
    except ImportError:
        raise BackendUnavailableError(
            "serving metrics needs prometheus_client: pip install \"kws-edge[monitor]\""
        ) from None
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(telemetry, prefix))
    try:
        result = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise ConfigError(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}; choose another port") from None
    if not isinstance(result, tuple):  # prometheus_client < 0.17 returns None
        raise BackendUnavailableError("prometheus_client >= 0.17 is needed: pip install -U prometheus_client")
    server, thread = result
    return MetricsServer(host=host, port=int(server.server_port), _server=server, _thread=thread)


# ---------------------------------------------------------------------- JSONL snapshots
class JsonlSnapshotter:
    """Append one telemetry snapshot per line to ``path`` at most every ``interval_s`` seconds.

    Call :meth:`maybe_write` from the audio loop (cheap when not due), or
    :meth:`start` a background thread; :meth:`close` writes a final snapshot.
    Each line is written with a single ``write`` on a file opened for
    appending, so a crash can at worst leave one truncated last line, which
    :func:`read_snapshots` skips.
    """

    def __init__(self, telemetry: DetectorTelemetry, path: str | Path, *, interval_s: float = 10.0) -> None:
        if interval_s <= 0:
            raise ConfigError(f"telemetry interval {interval_s} s must be > 0")
        self.telemetry = telemetry
        self.path = Path(path)
        self.interval_s = float(interval_s)
        self._next = time.monotonic() + self.interval_s
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.n_written = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = self.path.open("a", encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot open telemetry file {self.path}: {exc.strerror or exc}") from None
        self._write_lock = threading.Lock()

    def write(self) -> dict[str, Any]:
        snap = self.telemetry.snapshot()
        line = json.dumps(snap, separators=(",", ":"), allow_nan=False) + "\n"
        with self._write_lock:
            if self._fh.closed:
                return snap
            self._fh.write(line)
            self._fh.flush()
            self.n_written += 1
        return snap

    def maybe_write(self, now: Optional[float] = None) -> bool:
        now = time.monotonic() if now is None else now
        if now < self._next:
            return False
        self._next = now + self.interval_s
        self.write()
        return True

    def start(self) -> "JsonlSnapshotter":
        def loop() -> None:
            while not self._stop.wait(self.interval_s):
                self.write()

        self._thread = threading.Thread(target=loop, name="kws-telemetry-jsonl", daemon=True)
        self._thread.start()
        return self

    def close(self, *, final: bool = True) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if final and not self._fh.closed:
            self.write()
        with self._write_lock:
            self._fh.close()

    def __enter__(self) -> "JsonlSnapshotter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class TelemetrySession:
    """Telemetry for a live detector: attaches itself, serves metrics and/or writes snapshots.

    For ``kws listen --metrics-port PORT --telemetry FILE.jsonl``::

        with TelemetrySession(detector, metrics_port=9100, jsonl_path="t.jsonl") as tel:
            for chunk in mic:
                detector.process(chunk)
                tel.tick(lost_blocks=mic.stats.dropped_blocks + mic.stats.input_overflows)

    ``tick`` is cheap: it records the source's cumulative lost-block count and
    writes a snapshot when one is due. ``close`` writes a final snapshot and
    stops the endpoint.
    """

    def __init__(self, detector: Any, *, metrics_port: Optional[int] = None, jsonl_path: Optional[str | Path] = None,
                 interval_s: float = 10.0, host: str = "127.0.0.1",
                 config: TelemetryConfig = TelemetryConfig()) -> None:
        self.telemetry = DetectorTelemetry.for_manifest(detector.bundle.manifest, config)
        self.server: Optional[MetricsServer] = None
        self.snapshotter: Optional[JsonlSnapshotter] = None
        try:
            if metrics_port is not None:
                self.server = serve_metrics(self.telemetry, metrics_port, host=host)
            if jsonl_path is not None:
                self.snapshotter = JsonlSnapshotter(self.telemetry, jsonl_path, interval_s=interval_s)
        except BaseException:
            self.close()
            raise
        detector.telemetry = self.telemetry
        self._detector = detector

    def describe(self) -> str:
        parts = []
        if self.server is not None:
            parts.append(f"metrics on {self.server.url}")
        if self.snapshotter is not None:
            parts.append(f"telemetry snapshots to {self.snapshotter.path} every {self.snapshotter.interval_s:g} s")
        return "; ".join(parts)

    def tick(self, *, lost_blocks: Optional[int] = None) -> None:
        if lost_blocks is not None:
            with self.telemetry._lock:
                self.telemetry.overflows = max(self.telemetry.overflows, int(lost_blocks))
        if self.snapshotter is not None:
            self.snapshotter.maybe_write()

    def close(self) -> None:
        if self.snapshotter is not None:
            self.snapshotter.close()
            self.snapshotter = None
        if self.server is not None:
            self.server.close()
            self.server = None

    def __enter__(self) -> "TelemetrySession":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
