"""Clip-level metrics, defined once (docs/ARCHITECTURE.md, CLIP_METRICS).

``clip_metrics`` returns::

    {"n_clips", "labels", "accuracy", "recall": {label: r},
     "keyword_false_accept_rate", "confusion_matrix": [[int]]}

Rows of the confusion matrix are true labels, columns predicted, both in label
order. The keyword false-accept rate is the share of ``_unknown_`` and
``_silence_`` clips classified as a keyword. A class with no clips has recall
``None`` (JSON null), never a made-up number.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from .config import SILENCE_LABEL, UNKNOWN_LABEL

__all__ = ["confusion_matrix", "clip_metrics", "from_confusion", "metrics_table"]


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


def clip_metrics(y_true: np.ndarray, y_pred: np.ndarray, labels: tuple[str, ...] | list[str],
                 keywords: tuple[str, ...] | list[str] | None = None) -> dict[str, Any]:
    """CLIP_METRICS from true and predicted class indices (or from a confusion matrix via ``from_confusion``)."""
    labels = tuple(labels)
    return from_confusion(confusion_matrix(y_true, y_pred, len(labels)), labels, keywords)


def from_confusion(cm: np.ndarray, labels: tuple[str, ...] | list[str],
                   keywords: tuple[str, ...] | list[str] | None = None) -> dict[str, Any]:
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
