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

    The keyword scores of the last hops live in one buffer (float64, oldest
    first); a hop's smoothed score is the mean of the window of rows ending
    there, summed afresh (int8 models give multiples of 1/256, whose sums are
    exact in any order, so :meth:`update` and :meth:`update_many` agree to the bit).
    """

    #: rows the buffer holds beyond the window before the window moves back to its front
    _SPARE_ROWS = 64

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
        index = [labels.index(k) for k in keywords]
        self._kw_index = np.array(index, dtype=np.intp)
        # keyword columns as a slice when they are adjacent and in order (a view, not a gather)
        self._kw_columns: slice | np.ndarray = (slice(index[0], index[-1] + 1)
                                                if index and index == list(range(index[0], index[-1] + 1))
                                                else self._kw_index)
        self._kw_thresholds = np.array([config.threshold(k) for k in keywords], dtype=np.float32)
        self._window_len = max(1, int(round(config.smoothing_window_ms / 1000.0 / self.hop_s)))
        # a block cannot fire while (sum of its rows and the window before) / window stays below these
        self._bound_limits = [float(t) for t in self._kw_thresholds]
        self._rows = np.zeros((self._window_len + self._SPARE_ROWS, len(self.keywords)), np.float64)
        self.reset()

    def reset(self) -> None:
        self._end = 0  # rows in use: _rows[:_end], the last min(window, _n_seen) of them the history
        self._n_seen = 0
        self._run_length = np.zeros(len(self.keywords), np.int64)
        self._suppressed_until_s = -np.inf
        self._armed = np.ones(len(self.keywords), bool)
        self._clear = True  # run lengths all 0 and every keyword armed

    def _history(self) -> np.ndarray:
        """The keyword rows of the current window, oldest first [shape=(h, n_keywords), float64]."""
        h = min(self._window_len, self._n_seen)
        return self._rows[self._end - h:self._end]

    @property
    def last_smoothed(self) -> np.ndarray:
        """Smoothed keyword scores after the last hop [shape=(n_keywords,), float32]."""
        history = self._history()
        if not len(history):
            return np.zeros(len(self.keywords), np.float32)
        return (history.sum(axis=0) / len(history)).astype(np.float32)

    def _make_room(self, n_rows: int) -> None:
        """Room for ``n_rows`` more rows after the used ones (the window moves to the front)."""
        if self._end + n_rows <= len(self._rows):
            return
        keep = min(self._window_len, self._n_seen)
        size = max(len(self._rows), keep + n_rows)
        rows = self._rows if size == len(self._rows) else np.zeros((size, len(self.keywords)), np.float64)
        rows[:keep] = self._rows[self._end - keep:self._end]
        self._rows, self._end = rows, keep

    def update(self, posteriors: np.ndarray, time_s: float) -> Detection | None:
        """Add the posteriors of the window ending at ``time_s``; maybe return a detection."""
        kw = np.asarray(posteriors, np.float64)[self._kw_index]
        self._make_room(1)
        self._rows[self._end] = kw
        self._end += 1
        self._n_seen += 1
        history = self._history()
        smoothed = history.sum(axis=0) / len(history)
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
        return (self._n_seen >= self._window_len and self._clear
                and not self._rows[self._end - self._window_len:self._end].any())

    def update_many(self, posteriors: np.ndarray, times_s: np.ndarray | Callable[[], np.ndarray]) -> list[Detection]:
        """Add many hops at once; the same detections as :meth:`update` row by row.

        ``posteriors`` is ``(n, n_labels)`` (probabilities, >= 0), ``times_s``
        ``(n,)``, or a function that returns them (called only when a row may
        fire). When the history is full and even the sum of the block and the
        window before it, averaged over the window, stays below every
        threshold (the usual case away from keywords), no smoothed score in
        the block can reach a threshold: the rows are stored with a few numpy
        calls. Otherwise every row's smoothed score is checked exactly, and the
        rows go through :meth:`update` one by one only if one may fire.
        """
        post = np.asarray(posteriors)
        n = len(post)
        if n == 0:
            return []
        window = self._window_len
        if self._n_seen >= window:
            self._make_room(n)
            end = self._end
            rows = self._rows
            rows[end:end + n] = post[:, self._kw_columns]
            span = rows[end - window + 1:end + n]  # every row of a window that ends in this block
            bound = np.add.reduce(span, axis=0).tolist()
            if all(b / window < t for b, t in zip(bound, self._bound_limits)) or not (
                    self._smoothed_rows(end, n) >= self._kw_thresholds).any():
                self._end = end + n
                self._n_seen += n
                self._clear_runs()  # every row was below threshold: re-armed, as update() would
                return []
        if callable(times_s):
            times_s = times_s()
        found = []
        for row, t in zip(post, np.asarray(times_s, np.float64).tolist()):
            hit = self.update(row, t)
            if hit is not None:
                found.append(hit)
        return found

    def _smoothed_rows(self, end: int, n: int) -> np.ndarray:
        """Smoothed score of each of the ``n`` rows stored after ``_rows[:end]`` [shape=(n, n_keywords)]."""
        window = self._window_len
        csum = np.cumsum(self._rows[end - window:end + n], axis=0)
        return (csum[window:] - csum[:n]) / window  # row j averages the window of rows ending at it

    def _clear_runs(self) -> None:
        if not self._clear:
            self._run_length[:] = 0
            self._armed[:] = True
            self._clear = True
