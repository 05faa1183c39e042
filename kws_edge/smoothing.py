"""Turning per-hop class posteriors into detection events.

Pure decision logic, no audio and no model: the averaging window, a
per-keyword threshold, a minimum number of consecutive hops above it,
suppression of every keyword for ``suppression_ms`` after a hit, and re-arming:
a keyword that fired cannot fire again until its smoothed score has dropped
below its threshold (a window model still sees the tail of a word one clip
after it first fired; without re-arming that tail fires a second event) (in the spirit of TensorFlow's ``RecognizeCommands``
and the cooldowns of openWakeWord/microWakeWord). Times are counted in stream
samples, so the result does not depend on wall clock or chunk sizes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .errors import ConfigError

__all__ = ["DetectorConfig", "Detection", "PosteriorSmoother"]

#: a minute of averaging or suppression is far beyond any keyword; larger values are damaged settings
MAX_SMOOTHING_WINDOW_MS = 60_000.0
MAX_SUPPRESSION_MS = 3_600_000.0


@dataclass(frozen=True)
class DetectorConfig:
    """Detection settings; every bundle manifest carries its defaults.

    Attributes
    ----------
    smoothing_window_ms : posteriors are averaged over this many ms of hops
    thresholds : smoothed score a keyword must reach, per keyword (0..1)
    default_threshold : for keywords missing from ``thresholds``
    min_count : consecutive evaluated hops the smoothed score must stay at or above threshold
    suppression_ms : after a detection, no event (of any keyword) for this long
    stride_hops : run the model every N feature hops (1 = every hop)
    """

    smoothing_window_ms: float = 200.0
    thresholds: dict[str, float] = field(default_factory=dict)
    default_threshold: float = 0.8
    min_count: int = 2
    suppression_ms: float = 1000.0
    stride_hops: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.smoothing_window_ms <= MAX_SMOOTHING_WINDOW_MS:
            raise ConfigError(f"smoothing_window_ms={self.smoothing_window_ms} must be in 0..{MAX_SMOOTHING_WINDOW_MS:g}")
        for name, value in {**self.thresholds, "default_threshold": self.default_threshold}.items():
            if not 0.0 < float(value) <= 1.0:
                raise ConfigError(f"threshold for {name!r} is {value}; it must be in (0, 1]")
        if self.min_count < 1:
            raise ConfigError(f"min_count={self.min_count} must be >= 1")
        if not 0 <= self.suppression_ms <= MAX_SUPPRESSION_MS:
            raise ConfigError(f"suppression_ms={self.suppression_ms} must be in 0..{MAX_SUPPRESSION_MS:g}")
        if not 1 <= self.stride_hops <= 1000:
            raise ConfigError(f"stride_hops={self.stride_hops} must be in 1..1000")
        if self.min_count > 100_000:
            raise ConfigError(f"min_count={self.min_count} must be <= 100000")

    def threshold(self, keyword: str) -> float:
        return float(self.thresholds.get(keyword, self.default_threshold))


@dataclass(frozen=True)
class Detection:
    """A keyword heard in the stream.

    ``time_s`` is the end of the audio window that triggered it, counted in
    stream samples since the start (or the last ``reset()``), in seconds.
    """

    label: str
    score: float
    time_s: float

    def to_dict(self) -> dict[str, object]:
        return {"label": self.label, "score": round(float(self.score), 4), "time_s": round(float(self.time_s), 3)}


class PosteriorSmoother:
    """Stateful: feed one posterior vector per evaluated hop, get detections.

    Parameters
    ----------
    labels : class names in model output order
    keywords : the labels that produce events
    config : DetectorConfig
    hop_s : seconds between evaluated hops (feature hop x stride)
    """

    def __init__(self, labels: tuple[str, ...], keywords: tuple[str, ...], config: DetectorConfig, hop_s: float):
        unknown = [k for k in keywords if k not in labels]
        if unknown:
            raise ConfigError(f"keyword {unknown[0]!r} is not one of the model's labels {list(labels)}")
        extra = [k for k in config.thresholds if k not in keywords]
        if extra:
            raise ConfigError(f"threshold given for {extra[0]!r}, which is not a keyword; keywords: {list(keywords)}")
        self.labels = tuple(labels)
        self.keywords = tuple(keywords)
        self.config = config
        self.hop_s = float(hop_s)
        self._kw_index = np.array([labels.index(k) for k in keywords], dtype=np.intp)
        self._kw_thresholds = np.array([config.threshold(k) for k in keywords], dtype=np.float32)
        self._window_len = max(1, int(round(config.smoothing_window_ms / 1000.0 / self.hop_s)))
        self._kw_window_thresholds = self._kw_thresholds * self._window_len
        self.reset()

    def reset(self) -> None:
        # the last <= window_len keyword-score rows, oldest first [shape=(m, n_keywords), float64]
        self._history = np.zeros((0, len(self.keywords)), np.float64)
        self._sum = np.zeros(len(self.keywords), np.float64)
        self._run_length = np.zeros(len(self.keywords), np.int64)
        self._suppressed_until_s = -np.inf
        self._armed = np.ones(len(self.keywords), bool)
        self._clear = True  # run lengths all 0 and every keyword armed
        # last smoothed scores, kept as numerator / denominator and divided only when read
        self._smoothed: tuple[np.ndarray, float] = (np.zeros(len(self.keywords), np.float64), 1.0)

    @property
    def last_smoothed(self) -> np.ndarray:
        """Smoothed keyword scores after the last hop [shape=(n_keywords,), float32]."""
        num, den = self._smoothed
        return (num / den).astype(np.float32)

    def update(self, posteriors: np.ndarray, time_s: float) -> Detection | None:
        """Add the posteriors of the window ending at ``time_s``; maybe return a detection."""
        kw = np.asarray(posteriors, np.float64)[self._kw_index]
        history = self._history
        if len(history) == self._window_len:
            self._sum -= history[0]
            history = history[1:]
        self._history = np.concatenate((history, kw[None]))
        self._sum += kw
        smoothed = self._sum / len(self._history)
        self._smoothed = (smoothed, 1.0)
        above = smoothed >= self._kw_thresholds
        self._run_length = np.where(above, self._run_length + 1, 0)
        self._armed |= ~above  # a keyword re-arms once its smoothed score has dropped below threshold
        self._clear = False
        if time_s < self._suppressed_until_s:
            return None
        ready = (self._run_length >= self.config.min_count) & self._armed
        if not ready.any():
            return None
        best = int(np.argmax(np.where(ready, smoothed, -1.0)))
        self._suppressed_until_s = time_s + self.config.suppression_ms / 1000.0
        self._run_length[:] = 0
        self._armed[best] = False
        return Detection(label=self.keywords[best], score=float(smoothed[best]), time_s=float(time_s))

    @property
    def idle(self) -> bool:
        """History full of zero keyword scores: further all-zero keyword rows change no state."""
        return len(self._history) == self._window_len and not self._sum.any() and not self._run_length.any()

    def update_many(self, posteriors: np.ndarray, times_s: np.ndarray | Callable[[], np.ndarray]) -> list[Detection]:
        """Add many hops at once; the same detections as :meth:`update` row by row.

        ``posteriors`` is ``(n, n_labels)`` (probabilities, >= 0), ``times_s``
        ``(n,)``, or a function that returns them (called only when a row may
        fire). When the history is full and even the sum of the whole history
        and the whole block, averaged over the window, stays below every
        threshold (the usual case away from keywords), no smoothed score in the
        block can reach a threshold: the state advances with a few vectorised
        operations (the running sum can differ from the row-by-row one by float
        rounding, ~1e-16). Otherwise the rows go through :meth:`update` one by one.
        """
        post = np.asarray(posteriors)
        if len(post) == 0:
            return []
        history = self._history
        window = self._window_len
        if len(history) == window:
            kw = post[:, self._kw_index].astype(np.float64)
            total = kw.sum(axis=0)
            n = len(kw)
            if ((self._sum + total) < self._kw_window_thresholds).all():
                if n >= window:  # the block alone fills the history
                    self._sum = total if n == window else kw[-window:].sum(axis=0)
                    self._history = kw[-window:]
                else:  # the running sum, as update() keeps it: minus the n oldest, plus the block
                    self._sum = self._sum + total - history[:n].sum(axis=0)
                    self._history = np.concatenate((history[n:], kw))
                self._clear_runs()  # every row was below threshold: re-armed, as update() would
                self._smoothed = (self._sum, float(window))
                return []
            # exact check: the smoothed score of every row of the block, from cumulative sums
            csum = np.cumsum(np.concatenate((history, kw)), axis=0)
            smoothed = (csum[window:] - csum[:n]) / window  # row j averages rows j+1 .. window+j
            if not (smoothed >= self._kw_thresholds).any():
                self._history = np.concatenate((history[n:], kw[-window:]))
                self._sum = csum[-1] - csum[n - 1]
                self._clear_runs()
                self._smoothed = (smoothed[-1], 1.0)
                return []
        if callable(times_s):
            times_s = times_s()
        found = []
        for row, t in zip(post, np.asarray(times_s, np.float64).tolist()):
            hit = self.update(row, t)
            if hit is not None:
                found.append(hit)
        return found

    def _clear_runs(self) -> None:
        if not self._clear:
            self._run_length[:] = 0
            self._armed[:] = True
            self._clear = True
