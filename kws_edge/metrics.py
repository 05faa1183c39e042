"""Clip and streaming scoring, defined once (docs/DESIGN.md, "Metrics, defined once").

Everything that turns predictions or detections into the project's figures lives here, in the
runtime (numpy only), so the trainer, the converter, ``kws evaluate``, the pipeline, the bundle
manifests and ``kws registry diff`` all use one definition.

Clip level (:func:`clip_metrics`, the ``CLIP_METRICS`` of docs/ARCHITECTURE.md)::

    {"n_clips", "labels", "accuracy", "recall": {label: r},
     "keyword_false_accept_rate", "confusion_matrix": [[int]]}

Rows of the confusion matrix are true labels, columns predicted, both in label order. The keyword
false-accept rate is the share of ``_unknown_`` and ``_silence_`` clips classified as a keyword. A
class with no clips has recall ``None`` (JSON null), never a made-up number.

Streaming (:func:`score_detections`): a long recording with keywords at known times (``events``:
``{"label", "start_s", "end_s", "snr_db"?}`` per placed clip). A detection of keyword K at time t
(the end of the detector's window) is a *hit* for a K clip placed at [start, end] when
``start <= t <= end + tolerance_ms`` (default 500 ms: the smoothing window and ``min_count`` delay
a detection past the end of the word). Each clip is hit at most once; a second detection inside the
same window is a *duplicate* (counted, neither a hit nor a false accept). Every other detection,
including the wrong keyword on a keyword clip, is a *false accept*. FRR = missed keyword clips /
keyword clips; FA/h = false accepts per hour of stream. The FRR is also broken down by the SNR of
each clip against the noise under it (:data:`SNR_BANDS_DB`).

The DET curve (:func:`det_curve`) replays a detector's own per-evaluation posteriors through its own
:class:`~kws_edge.smoothing.PosteriorSmoother` for each threshold, which is exactly what the detector
would do with that threshold.

The typed records (:class:`ClipMetrics`, :class:`StreamScore`, :class:`DetPoint`) are the shapes these
functions return, as a bundle manifest stores them (``kws_edge.config.from_dict`` reads one back).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional, Protocol, Sequence

import numpy as np

from .errors import ConfigError
from .smoothing import Detection, DetectorConfig, PosteriorSmoother

__all__ = [
    "SILENCE_LABEL",
    "UNKNOWN_LABEL",
    "StreamConfig",
    "IsolatedConfig",
    "ClipMetrics",
    "KeywordScore",
    "SnrBand",
    "StreamScore",
    "DetPoint",
    "confusion_matrix",
    "clip_metrics",
    "from_confusion",
    "metrics_table",
    "SNR_BANDS_DB",
    "DEFAULT_THRESHOLDS",
    "DEFAULT_TOLERANCE_MS",
    "score_detections",
    "replay_detections",
    "det_curve",
    "select_thresholds",
    "choose_setting",
    "threshold_for_isolated_target",
    "choose_isolated_setting",
    "evaluation_hop_s",
]

SILENCE_LABEL = "_silence_"
UNKNOWN_LABEL = "_unknown_"

#: SNR bands (dB, lower edge inclusive) of the FRR breakdown; an event over a silent bed counts as +inf
SNR_BANDS_DB = ((-np.inf, 0.0), (0.0, 10.0), (10.0, 20.0), (20.0, np.inf))
#: a detection counts for a keyword until this long after the keyword's clip ends
DEFAULT_TOLERANCE_MS = 500.0
#: thresholds of a DET curve (the same for every keyword)
DEFAULT_THRESHOLDS = tuple(float(t) for t in np.round(np.concatenate(
    [np.arange(0.1, 0.9, 0.05), np.arange(0.9, 0.99, 0.01), [0.99, 0.995]]), 3))


# ---------------------------------------------------------------------- records


@dataclass(frozen=True)
class StreamConfig:
    """How a test recording is built (``kws_edge.training.streaming_eval.build_stream``) and scored."""

    minutes: float = 10.0
    keyword_share: float = 0.4
    gap_s: tuple[float, float] = (0.3, 2.0)
    clip_gain_db: tuple[float, float] = (-15.0, 3.0)
    noise_dbfs: tuple[float, float] = (-65.0, -35.0)
    noise_segment_s: float = 20.0
    tolerance_ms: float = DEFAULT_TOLERANCE_MS
    seed: int = 0


@dataclass(frozen=True)
class IsolatedConfig:
    """Isolated keywords: each keyword clip alone, ``pad_s`` of noise before and after it.

    The noise (the split's portion of the noise recordings, else generated pink noise) is scaled so
    that the clip's RMS over it is a random ``snr_db``; the clip keeps its own level.
    """

    pad_s: float = 1.0
    snr_db: tuple[float, float] = (10.0, 30.0)
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.pad_s <= 10.0:
            raise ConfigError(f"pad_s={self.pad_s} must be in [0, 10]")
        if not self.snr_db[0] <= self.snr_db[1]:
            raise ConfigError(f"snr_db={self.snr_db} must be (low, high) with low <= high")


@dataclass(frozen=True)
class ClipMetrics:
    """One model on one set of clips (``CLIP_METRICS``); a figure that was not measured is None."""

    n_clips: int = 0
    labels: tuple[str, ...] = ()
    accuracy: Optional[float] = None
    recall: dict[str, Optional[float]] = field(default_factory=dict)
    keyword_false_accept_rate: Optional[float] = None
    #: rows true label, columns predicted, in label order
    confusion_matrix: tuple[tuple[int, ...], ...] = ()


@dataclass(frozen=True)
class KeywordScore:
    """One keyword's share of a stream score."""

    n: int = 0
    hits: int = 0
    false_accepts: int = 0
    false_reject_rate: Optional[float] = None
    false_accepts_per_hour: Optional[float] = None


@dataclass(frozen=True)
class SnrBand:
    """FRR of the keyword clips whose SNR lies in ``snr_db`` (None: open end)."""

    snr_db: tuple[Optional[float], Optional[float]] = (None, None)
    n: int = 0
    hits: int = 0
    false_reject_rate: Optional[float] = None


@dataclass(frozen=True)
class FalseAccept:
    """A detection that matched no keyword clip."""

    label: str
    score: float
    time_s: float


@dataclass(frozen=True)
class StreamScore:
    """:func:`score_detections` of one detector setting on one stream."""

    duration_s: float = 0.0
    n_keywords: int = 0
    hits: int = 0
    false_reject_rate: Optional[float] = None
    false_accepts: int = 0
    false_accepts_per_hour: Optional[float] = None
    duplicates: int = 0
    tolerance_ms: float = DEFAULT_TOLERANCE_MS
    per_keyword: dict[str, KeywordScore] = field(default_factory=dict)
    by_snr: tuple[SnrBand, ...] = ()
    #: the first 50 false accepts
    false_accept_events: tuple[FalseAccept, ...] = ()


@dataclass(frozen=True)
class KeywordRates:
    false_reject_rate: Optional[float] = None
    false_accepts_per_hour: Optional[float] = None


@dataclass(frozen=True)
class DetPoint:
    """One threshold (the same for every keyword) of a DET curve."""

    threshold: float
    false_reject_rate: Optional[float] = None
    false_accepts_per_hour: Optional[float] = None
    per_keyword: dict[str, KeywordRates] = field(default_factory=dict)


# ---------------------------------------------------------------------- clips


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts [shape=(n_classes, n_classes), int64]; rows true, columns predicted."""
    y_true = np.asarray(y_true, np.int64).reshape(-1)
    y_pred = np.asarray(y_pred, np.int64).reshape(-1)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has {y_true.size} labels but y_pred has {y_pred.size}")
    if y_true.size and (min(y_true.min(), y_pred.min()) < 0 or max(y_true.max(), y_pred.max()) >= n_classes):
        raise ValueError(f"class indices must be in 0..{n_classes - 1}")
    cm = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    return cm


def clip_metrics(y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[str],
                 keywords: Optional[Sequence[str]] = None) -> dict[str, Any]:
    """CLIP_METRICS from true and predicted class indices (or from a confusion matrix via ``from_confusion``)."""
    labels = tuple(labels)
    return from_confusion(confusion_matrix(y_true, y_pred, len(labels)), labels, keywords)


def from_confusion(cm: np.ndarray, labels: Sequence[str], keywords: Optional[Sequence[str]] = None) -> dict[str, Any]:
    """CLIP_METRICS from a confusion matrix (rows true, columns predicted)."""
    labels = tuple(labels)
    cm = np.asarray(cm, np.int64)
    if keywords is None:
        keywords = tuple(l for l in labels if l not in (SILENCE_LABEL, UNKNOWN_LABEL))
    n = int(cm.sum())
    rows = cm.sum(axis=1)
    recall: dict[str, Optional[float]] = {
        label: (float(cm[i, i] / rows[i]) if rows[i] else None) for i, label in enumerate(labels)
    }
    kw_idx = [labels.index(k) for k in keywords]
    neg_idx = [labels.index(l) for l in (SILENCE_LABEL, UNKNOWN_LABEL) if l in labels]
    n_neg = int(rows[neg_idx].sum()) if neg_idx else 0
    false_accepts = int(cm[np.ix_(neg_idx, kw_idx)].sum()) if neg_idx and kw_idx else 0
    return {
        "n_clips": n,
        "labels": list(labels),
        "accuracy": float(np.trace(cm) / n) if n else None,
        "recall": recall,
        "keyword_false_accept_rate": float(false_accepts / n_neg) if n_neg else None,
        "confusion_matrix": cm.tolist(),
    }


def _pct(v: Optional[float]) -> str:
    return "   n/a" if v is None else f"{100 * v:5.1f}%"


def metrics_table(metrics: dict[str, Any], title: str = "") -> str:
    """Plain-text summary of one CLIP_METRICS dict (for the CLI)."""
    lines = [f"{title} ({metrics['n_clips']} clips)" if title else f"{metrics['n_clips']} clips"]
    lines.append(f"  accuracy                 {_pct(metrics['accuracy'])}")
    for label, r in metrics["recall"].items():
        lines.append(f"  recall {label:<17} {_pct(r)}")
    lines.append(f"  keyword false-accept rate {_pct(metrics['keyword_false_accept_rate'])}")
    labels = metrics["labels"]
    width = max(len(l) for l in labels) + 1
    lines.append("  confusion (rows true, columns predicted):")
    lines.append("  " + " " * width + "".join(f"{l[:9]:>10}" for l in labels))
    for label, row in zip(labels, metrics["confusion_matrix"]):
        lines.append(f"  {label:<{width}}" + "".join(f"{v:>10d}" for v in row))
    return "\n".join(lines)


# ---------------------------------------------------------------------- streams


class Stream(Protocol):
    """What scoring needs of a test recording: its placed clips and its length."""

    events: list[dict]

    @property
    def duration_s(self) -> float: ...


def score_detections(detections: Sequence[Detection], events: Sequence[dict], keywords: Sequence[str],
                     duration_s: float, tolerance_ms: float = DEFAULT_TOLERANCE_MS) -> dict[str, Any]:
    """Hits, misses, false accepts (see the module docstring for the tolerance window); a :class:`StreamScore`."""
    tol = tolerance_ms / 1000.0
    keywords = tuple(keywords)
    kw_events = [e for e in events if e["label"] in keywords]
    matched = [False] * len(kw_events)
    per_kw = {k: {"n": sum(e["label"] == k for e in kw_events), "hits": 0, "false_accepts": 0} for k in keywords}
    duplicates = 0
    false_accepts = []
    for d in sorted(detections, key=lambda d: d.time_s):
        candidates = [i for i, e in enumerate(kw_events)
                      if e["label"] == d.label and e["start_s"] <= d.time_s <= e["end_s"] + tol]
        free = [i for i in candidates if not matched[i]]
        if free:
            matched[free[0]] = True
            per_kw[d.label]["hits"] += 1
        elif candidates:
            duplicates += 1
        else:
            per_kw[d.label]["false_accepts"] += 1
            false_accepts.append(d.to_dict())
    hours = duration_s / 3600.0
    n_kw = len(kw_events)
    by_snr = []
    snrs = [(i, np.inf if e["snr_db"] is None else e["snr_db"]) for i, e in enumerate(kw_events) if "snr_db" in e]
    for lo, hi in SNR_BANDS_DB:
        band = [matched[i] for i, snr in snrs if lo <= snr and (snr < hi or hi == np.inf)]
        if band:
            by_snr.append({"snr_db": [None if np.isinf(lo) else lo, None if np.isinf(hi) else hi],
                           "n": len(band), "hits": int(sum(band)), "false_reject_rate": 1 - sum(band) / len(band)})
    for k, v in per_kw.items():
        v["false_reject_rate"] = (1 - v["hits"] / v["n"]) if v["n"] else None
        v["false_accepts_per_hour"] = v["false_accepts"] / hours if hours else None
    return {
        "duration_s": duration_s,
        "n_keywords": n_kw,
        "hits": int(sum(matched)),
        "false_reject_rate": (1 - sum(matched) / n_kw) if n_kw else None,
        "false_accepts": len(false_accepts),
        "false_accepts_per_hour": len(false_accepts) / hours if hours else None,
        "duplicates": duplicates,
        "tolerance_ms": tolerance_ms,
        "per_keyword": per_kw,
        "by_snr": by_snr,
        "false_accept_events": false_accepts[:50],
    }


def replay_detections(posteriors: np.ndarray, times: np.ndarray, labels: Sequence[str], keywords: Sequence[str],
                      config: DetectorConfig, hop_s: float) -> list[Detection]:
    """What a detector with ``config`` reports for these posteriors (one row per evaluation, ending at ``times``)."""
    sm = PosteriorSmoother(tuple(labels), tuple(keywords), config, hop_s=hop_s)
    out = []
    for p, t in zip(posteriors, times):
        hit = sm.update(p, float(t))
        if hit is not None:
            out.append(hit)
    return out


def evaluation_hop_s(bundle: Any, config: DetectorConfig) -> float:
    """Seconds between two evaluations of ``bundle``'s detector with ``config`` (the smoother's hop)."""
    fc = bundle.manifest.features
    return fc.hop_samples * config.stride_hops / fc.sample_rate_hz


def det_curve(posteriors: np.ndarray, times: np.ndarray, bundle: Any, stream: Stream, base: DetectorConfig, *,
              tolerance_ms: float = DEFAULT_TOLERANCE_MS,
              thresholds: Sequence[float] = DEFAULT_THRESHOLDS) -> list[dict[str, Any]]:
    """One point per threshold (the same for every keyword): FRR and FA/h, overall and per keyword (a :class:`DetPoint`)."""
    m = bundle.manifest
    hop_s = evaluation_hop_s(bundle, base)
    points = []
    for t in thresholds:
        cfg = dataclasses.replace(base, thresholds={k: float(t) for k in m.keywords})
        dets = replay_detections(posteriors, times, m.labels, m.keywords, cfg, hop_s)
        s = score_detections(dets, stream.events, m.keywords, stream.duration_s, tolerance_ms)
        points.append({"threshold": float(t), "false_reject_rate": s["false_reject_rate"],
                       "false_accepts_per_hour": s["false_accepts_per_hour"],
                       "per_keyword": {k: {"false_reject_rate": v["false_reject_rate"],
                                           "false_accepts_per_hour": v["false_accepts_per_hour"]}
                                       for k, v in s["per_keyword"].items()}})
    return points


def select_thresholds(points: Sequence[dict[str, Any]], keywords: Sequence[str], target_fa_per_hour: float,
                      ) -> dict[str, float]:
    """Per keyword, the lowest threshold whose own FA/h is within its share of the target.

    ``points`` come from :func:`det_curve` on a *validation* stream; each
    keyword gets ``target_fa_per_hour / len(keywords)``. If no threshold
    meets it, the highest threshold is returned for that keyword.
    """
    share = target_fa_per_hour / max(1, len(keywords))
    out = {}
    for k in keywords:
        ok = [p["threshold"] for p in points if p["per_keyword"][k]["false_accepts_per_hour"] <= share]
        out[k] = float(min(ok)) if ok else float(max(p["threshold"] for p in points))
    return out


def choose_setting(scores: Sequence[dict[str, Any]], target_fa_per_hour: float, target_frr: float) -> int:
    """Index of the detector setting to ship among ``scores`` (each with ``false_reject_rate`` and
    ``false_accepts_per_hour``, measured on a *tuning* stream).

    The lowest FRR among the settings within the FA/h target; if none is, the setting nearest to both
    targets, each figure counted in multiples of its target (``FA/h / target_fa_per_hour + FRR /
    target_frr``), so a setting never buys its last false accepts with most of the keywords.
    """
    if not scores:
        raise ConfigError("no detector settings to choose from")
    if target_fa_per_hour <= 0 or target_frr <= 0:
        raise ConfigError(f"targets must be > 0 (FA/h {target_fa_per_hour}, FRR {target_frr})")
    within = [i for i, s in enumerate(scores) if s["false_accepts_per_hour"] <= target_fa_per_hour]
    if within:
        return min(within, key=lambda i: scores[i]["false_reject_rate"])
    return min(range(len(scores)), key=lambda i: (scores[i]["false_accepts_per_hour"] / target_fa_per_hour
                                                  + scores[i]["false_reject_rate"] / target_frr))


def threshold_for_isolated_target(detection_rates: dict[float, float], points: dict[float, dict[str, Any]],
                                  keyword: str, target: float) -> float:
    """A keyword's threshold: of those whose isolated-keyword detection rate (``detection_rates[t]``) is
    at least ``target``, the one with the fewest false accepts per hour of ``keyword`` on the tuning
    stream (``points[t]``, a DET point), then the lowest FRR, then the highest threshold. When none
    reaches the target, the threshold that detects the most clips (ties: the highest threshold)."""
    if not detection_rates:
        raise ConfigError("no thresholds to choose from")
    ok = [t for t, r in detection_rates.items() if r is not None and r >= target]
    if not ok:
        return max(detection_rates, key=lambda t: (detection_rates[t] or 0.0, t))
    return min(ok, key=lambda t: (points[t]["per_keyword"][keyword]["false_accepts_per_hour"],
                                  points[t]["per_keyword"][keyword]["false_reject_rate"], -t))


def choose_isolated_setting(candidates: Sequence[dict[str, Any]], target: float) -> int:
    """Index of the detector setting to ship among ``candidates`` (each with ``isolated``: the
    isolated-keyword detection rate per keyword, and the tuning stream's ``false_accepts_per_hour`` and
    ``false_reject_rate``): among the settings whose every keyword meets ``target``, the fewest FA/h,
    then the lowest FRR; if none meets it, the setting whose worst keyword is detected most often."""
    if not candidates:
        raise ConfigError("no detector settings to choose from")
    met = [i for i, c in enumerate(candidates) if all(r is not None and r >= target for r in c["isolated"].values())]
    if met:
        return min(met, key=lambda i: (candidates[i]["false_accepts_per_hour"], candidates[i]["false_reject_rate"]))
    return max(range(len(candidates)), key=lambda i: (min(r or 0.0 for r in candidates[i]["isolated"].values()),
                                                       -candidates[i]["false_accepts_per_hour"]))
