"""The benchmark suite's gates (``benchmarks/``): same-run ratios and a device profile's budgets as limits.

A gate is a :class:`~kws_edge.limits.Limit` measured on this host; :func:`~kws_edge.limits.limits_table`
(re-exported here for the suite) prints them, the same table ``kws-convert`` and ``kws bench`` print.
Gates on a shared machine compare *ratios measured in the same run* or CPU time, never wall time.
"""

from __future__ import annotations

from dataclasses import asdict, is_dataclass
from typing import Any

from ..limits import Limit, limits_table

__all__ = ["gate", "ratio_gate", "budget_gates", "profile_budgets", "profile_name", "BUDGET_KEYS", "Limit",
           "limits_table"]

#: budgets of a device profile that the benchmarks gate, with their units
BUDGET_KEYS = {
    "model_bytes": "B",
    "activation_bytes": "B",
    "cpu_share": "share",
    "hop_latency_p99_ms": "ms",
}


def gate(name: str, value: float, limit: float, *, kind: str = "max", unit: str = "", source: str = "") -> Limit:
    """One value measured on this host against one limit (``kind`` "max": at most; "min": at least)."""
    return Limit(name, value, limit, unit, kind=kind, basis=source, method="host")


def ratio_gate(name: str, slow: float, fast: float, min_ratio: float) -> Limit:
    """``slow / fast`` must be at least ``min_ratio`` (both measured in the same run)."""
    ratio = slow / fast if fast > 0 else float("inf")
    return gate(name, ratio, min_ratio, kind="min", unit="x", source="same-run ratio")


def profile_budgets(profile: Any) -> dict[str, float]:
    """The budgets of a device profile as ``{key: limit}`` (keys of :data:`BUDGET_KEYS` present)."""
    src = getattr(profile, "budgets", profile)
    if is_dataclass(src):
        src = asdict(src)
    out: dict[str, float] = {}
    for key in BUDGET_KEYS:
        value = src.get(key) if isinstance(src, dict) else getattr(src, key, None)
        if value is not None:
            out[key] = float(value)
    return out


def profile_name(profile: Any) -> str:
    return str(getattr(profile, "name", None) or (profile.get("name") if isinstance(profile, dict) else "") or "?")


def budget_gates(measured: dict[str, float], budgets: dict[str, float], source: str = "") -> list[Limit]:
    """One gate per budget the profile sets; a budget without a measurement fails (value NaN)."""
    return [gate(key, float(measured.get(key, float("nan"))), limit, unit=BUDGET_KEYS.get(key, ""), source=source)
            for key, limit in budgets.items()]
