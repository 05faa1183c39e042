"""``kws pipeline --check-reproducible``: two training runs of one config and seed, compared."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..config import flatten
from ..training.rundir import RunDir

__all__ = ["compare_runs", "REPRO_WEIGHT_ATOL", "REPRO_METRIC_ATOL"]

#: --check-reproducible: largest allowed absolute difference of any weight between the two runs
REPRO_WEIGHT_ATOL = 1e-6
#: --check-reproducible: largest allowed absolute difference of any metric between the two runs
REPRO_METRIC_ATOL = 1e-9


def compare_runs(run_a: Path, run_b: Path) -> dict[str, Any]:
    """Whether two training runs of one config and seed give the same metrics and weights.

    Tolerances: every weight within ``REPRO_WEIGHT_ATOL`` (absolute), every
    number in metrics.json within ``REPRO_METRIC_ATOL``.
    """
    ma, mb = RunDir(Path(run_a)).metrics(), RunDir(Path(run_b)).metrics()
    fa, fb = _numbers(ma), _numbers(mb)
    metric_diffs = {k: abs(fa[k] - fb.get(k, float("nan"))) for k in fa}
    worst_metric = max(metric_diffs.values(), default=0.0)
    wa = RunDir(Path(run_a)).load_keras_model().get_weights()
    wb = RunDir(Path(run_b)).load_keras_model().get_weights()
    same_shapes = len(wa) == len(wb) and all(a.shape == b.shape for a, b in zip(wa, wb))
    worst_weight = max((float(np.max(np.abs(a - b))) if a.size else 0.0 for a, b in zip(wa, wb)), default=0.0) \
        if same_shapes else float("inf")
    metrics_ok = set(fa) == set(fb) and worst_metric <= REPRO_METRIC_ATOL
    weights_ok = same_shapes and worst_weight <= REPRO_WEIGHT_ATOL
    ok = bool(metrics_ok and weights_ok)
    return {
        "reproducible": ok,
        "metrics_match": bool(metrics_ok),
        "weights_match": bool(weights_ok),
        "max_metric_abs_diff": worst_metric,
        "max_weight_abs_diff": worst_weight,
        "metric_tolerance": REPRO_METRIC_ATOL,
        "weight_tolerance": REPRO_WEIGHT_ATOL,
        "n_weight_tensors": len(wa),
        "n_weights": int(sum(a.size for a in wa)),
        "headline": ("reproducible: " if ok else "NOT reproducible: ")
        + f"max weight diff {worst_weight:.2g}, max metric diff {worst_metric:.2g}",
    }


def _numbers(metrics: Any) -> dict[str, float]:
    """Every number in a metrics.json, by its path."""
    return {k: float(v) for k, v in flatten(metrics, index_lists=True).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}
