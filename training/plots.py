"""PNG plots with matplotlib's Agg backend (no display needed); written atomically."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_write_bytes

__all__ = ["plot_training_curves", "plot_confusion_matrix", "plot_det_curve"]


def _figure():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())


def plot_training_curves(history: dict[str, list[float]], path: str | Path) -> None:
    """Loss and accuracy per epoch, training and validation."""
    plt = _figure()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    try:
        for ax, key in zip(axes, ("loss", "accuracy")):
            for prefix, style in (("", "-"), ("val_", "--")):
                values = history.get(prefix + key)
                if values:
                    ax.plot(np.arange(1, len(values) + 1), values, style,
                            label=("validation " if prefix else "training ") + key)
            ax.set_xlabel("epoch")
            ax.set_title(key)
            ax.grid(alpha=0.3)
            ax.legend()
        _save(fig, Path(path))
    finally:
        plt.close(fig)


def plot_confusion_matrix(metrics: dict[str, Any], path: str | Path, title: str = "") -> None:
    """Confusion matrix of one CLIP_METRICS dict, counts and row shares."""
    plt = _figure()
    cm = np.asarray(metrics["confusion_matrix"], float)
    labels = metrics["labels"]
    share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(5, 4.4))
    try:
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        for i in range(len(labels)):
            for j in range(len(labels)):
                ax.text(j, i, f"{int(cm[i, j])}\n{100 * share[i, j]:.1f}%", ha="center", va="center",
                        color="white" if share[i, j] > 0.5 else "black", fontsize=8)
        ax.set_xticks(range(len(labels)), labels, rotation=30)
        ax.set_yticks(range(len(labels)), labels)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        acc = metrics.get("accuracy")
        ax.set_title(title or (f"accuracy {100 * acc:.1f}%" if acc is not None else ""))
        _save(fig, Path(path))
    finally:
        plt.close(fig)


def plot_det_curve(points: list[dict[str, float]], path: str | Path, title: str = "",
                   selected: dict[str, float] | None = None) -> list[float]:
    """False-reject rate against false accepts per hour, one point per threshold.

    Thresholds are written next to their points where the labels do not overlap
    (:func:`place_threshold_labels`); returns the thresholds that got a label.
    """
    plt = _figure()
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    try:
        fa = [p["false_accepts_per_hour"] for p in points]
        frr = [100 * p["false_reject_rate"] for p in points]
        ax.plot(fa, frr, "o-", ms=3)
        if selected:
            ax.plot([selected["false_accepts_per_hour"]], [100 * selected["false_reject_rate"]], "r*", ms=12,
                    label="selected")
            ax.legend()
        ax.set_xscale("symlog", linthresh=1.0)  # 0 FA/h stays on the axis
        ax.set_xlabel("false accepts per hour (symlog)")
        ax.set_ylabel("false-reject rate (%)")
        ax.set_title(title or "DET curve (labels: threshold)")
        ax.grid(alpha=0.3)
        labelled = [t for t, _ in place_threshold_labels(ax, points)]
        _save(fig, Path(path))
        return labelled
    finally:
        plt.close(fig)


#: free space kept around each threshold label, in display pixels
_LABEL_GAP_PX = 2.0


def place_threshold_labels(ax, points: list[dict[str, float]]) -> list[tuple[float, Any]]:
    """Label DET points with their thresholds, skipping any label that would overlap one already placed.

    Call it once the axes' limits and scales are final. The curve's two ends are
    labelled first, then the points in threshold order; where points crowd
    together (thresholds 0.3-0.7 often share a false-accept rate; 0.9-0.98 sit
    close on the log axis) only the first of them keeps its label. Returns
    ``[(threshold, label bounding box in display pixels)]`` of the labels kept.
    """
    if not points:
        return []
    ax.figure.canvas.draw()  # final limits and layout, so display positions are those of the saved figure
    renderer = ax.figure.canvas.get_renderer()
    order = sorted(range(len(points)), key=lambda i: points[i]["threshold"])
    order = [order[0], order[-1], *order[1:-1]] if len(order) > 1 else order
    kept: list[tuple[float, Any]] = []
    for i in order:
        p = points[i]
        ann = ax.annotate(f"{p['threshold']:.2f}", (p["false_accepts_per_hour"], 100 * p["false_reject_rate"]),
                          fontsize=7, xytext=(3, 3), textcoords="offset points")
        box = ann.get_window_extent(renderer).expanded(1.0, 1.0).padded(_LABEL_GAP_PX)
        if any(box.overlaps(other) for _, other in kept):
            ann.remove()
            continue
        kept.append((float(p["threshold"]), box))
    kept.sort(key=lambda tb: tb[0])
    return kept
