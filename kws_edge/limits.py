"""One limit type and one table: a value against a limit, a device budget or a benchmark gate alike.

A :class:`Limit` is a measured, estimated or computed value, its limit, which way the limit points
(``max``: the value must stay at or under it; ``min``: at or over it) and how the value was
obtained. ``kws-convert`` and ``kws bench`` check a device profile's budgets with it
(:mod:`kws_edge.budgets`), a bundle manifest stores them (``budgets.results``), and the benchmark
suite gates its same-run ratios with it (:mod:`kws_edge.workstation.gates`). :func:`limits_table`
renders any of them for people.

A value that is not a finite number (a missing or failed measurement) never passes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from .config import to_dict
from .errors import ConfigError

__all__ = ["Limit", "METHODS", "KINDS", "format_value", "limits_table"]

#: how a limit's value was obtained (``Limit.method``) and the words the table uses for it
METHODS = {
    "static": "static",
    "tflm": "measured in TFLM",
    "host": "measured on this host",
    "estimated": "estimated",
}
#: which way a limit points: the value must be <= ("max") or >= ("min") the limit
KINDS = {"max": "<=", "min": ">="}

_LABELS = {
    "model_bytes": "model size",
    "activation_bytes": "peak activations",
    "compute": "compute at streaming rate",
    "cpu_share": "CPU share of one core",
    "hop_latency_p99_ms": "per-hop latency p99",
    "operators": "ops outside TFLite Micro",
    "tensor_arena_bytes": "TFLM tensor arena",
    "streaming_tensor_arena_bytes": "TFLM tensor arena, streaming model",
}


@dataclass(frozen=True)
class Limit:
    """One value against one limit, and how the value was obtained.

    ``basis`` says where the value comes from in words ("static", "estimated (...)", "measured (...)",
    "same-run ratio", a device profile's name); ``method`` is one of :data:`METHODS` (default: inferred
    from ``basis``: "measured ..." is "host", "estimated ..." is "estimated", anything else "static").
    ``passed`` and ``margin`` (headroom as a fraction of the limit, negative when failed; None when
    the limit is 0 and the value is not) follow from the rest; a manifest stores them for its readers
    and they are recomputed when it is read.
    """

    name: str
    value: float
    limit: float
    unit: str = ""
    kind: str = "max"
    basis: str = ""
    method: str = ""
    passed: bool = field(init=False)
    margin: Optional[float] = field(init=False)

    def __post_init__(self) -> None:
        for name in ("value", "limit"):  # whole numbers stay whole (bytes, operator counts), as JSON shows them
            v = getattr(self, name)
            if isinstance(v, float) and v.is_integer() and abs(v) < 2**53:
                object.__setattr__(self, name, int(v))
        if self.kind not in KINDS:
            raise ConfigError(f"limit {self.name}: kind {self.kind!r} must be 'max' or 'min'")
        if not self.method:
            inferred = ("host" if self.basis.startswith("measured") else
                        "estimated" if self.basis.startswith("estimated") else "static")
            object.__setattr__(self, "method", inferred)
        if self.method not in METHODS:
            raise ConfigError(f"limit {self.name}: method {self.method!r} must be one of {', '.join(METHODS)}")
        finite = isinstance(self.value, (int, float)) and math.isfinite(self.value)
        passed = finite and (self.value <= self.limit if self.kind == "max" else self.value >= self.limit)
        object.__setattr__(self, "passed", bool(passed))
        margin: Optional[float] = None
        if finite and self.limit:
            headroom = self.limit - self.value if self.kind == "max" else self.value - self.limit
            margin = headroom / abs(self.limit)
        elif finite and self.value == self.limit:
            margin = 0.0
        object.__setattr__(self, "margin", margin)

    @property
    def how(self) -> str:
        """Words for :attr:`method`: static, measured in TFLM, measured on this host, or estimated."""
        return METHODS[self.method]

    @property
    def label(self) -> str:
        """The budget's name in words (the name itself when it has none)."""
        return _LABELS.get(self.name, self.name)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (a manifest's ``budgets.results`` entry; ``kws_edge.config.from_dict`` reads it back)."""
        return to_dict(self)


def format_value(value: float, unit: str) -> str:
    """Human form of a value: bytes in KiB/MiB, MAC/s in M, shares in %, ratios as ``4.0x``."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if unit == "B":
        if value >= 1024 * 1024:
            return f"{value / (1024 * 1024):.2f} MiB"
        if value >= 1024:
            return f"{value / 1024:.1f} KiB"
        return f"{int(value)} B"
    if unit == "MAC/s":
        return f"{value / 1e6:.1f} M MAC/s"
    if unit == "share":
        return f"{value * 100:.2f}%"
    if unit == "ms":
        return f"{value:.3f} ms"
    if unit == "ops":
        return str(int(value))
    if unit == "x":
        return f"{value:.1f}x"
    if abs(value) >= 100 or value == int(value):
        text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:g}"
    else:
        text = f"{value:.3g}"
    return f"{text} {unit}".strip()


def _cell(value: float, unit: str) -> str:
    """A table cell: bytes exactly (``46,264 B``) with the human form beside them from 1 KiB on."""
    if unit == "B" and isinstance(value, (int, float)) and math.isfinite(value):
        exact = f"{int(value):,} B"
        return exact if value < 1024 else f"{exact} ({format_value(value, unit)})"
    return format_value(value, unit)


def limits_table(limits: Sequence[Limit], title: str = "") -> str:
    """A plain-text table, one limit per row: budget, value, limit, margin, result, how, basis."""
    head = ("budget", "value", "limit", "margin", "result", "how", "basis")
    rows = [head]
    for r in limits:
        rows.append((
            r.label,
            _cell(r.value, r.unit),
            f"{KINDS[r.kind]} {_cell(r.limit, r.unit)}",
            "n/a" if r.margin is None else f"{r.margin * 100:+.0f}%",
            "ok" if r.passed else "OVER",
            r.how,
            r.basis,
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head) - 1)]
    lines = [title] if title else []
    for j, row in enumerate(rows):
        cells = [row[i].ljust(widths[i]) if i in (0, len(widths) - 1) else row[i].rjust(widths[i])
                 for i in range(len(widths))]
        lines.append(("  ".join(cells) + "  " + row[-1]).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * len(head[-1]))
    return "\n".join(lines)
