"""Budget checks of a model against a device profile (shared by ``kws-convert`` and ``kws bench``).

Static checks need only numbers the converter reads from the model file:
model bytes, peak activation bytes, and compute (MACs per inference x
inferences per second against the profile's compute budget). Per-hop latency
p99 and CPU share are *measured* when the command runs on the target itself
(``measured_on_target=True`` with a ``measured`` dict, as ``kws bench`` does);
otherwise they are *estimated* from the profile's throughput figures and the
result says so, and how. For TFLite Micro profiles the tensor arena each model
needs is *measured in TFLM* by the converter (:func:`arena_result`). Every
result's ``method`` says which of these it is (:data:`METHODS`). No TensorFlow here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

from .errors import ConfigError

__all__ = ["BudgetResult", "BudgetReport", "check_budgets", "arena_result", "format_value", "MEASURABLE", "METHODS"]

#: budgets that ``measured`` may hold, with their units
MEASURABLE = {"cpu_share": "share", "hop_latency_p99_ms": "ms"}
#: how a budget's value was obtained (``BudgetResult.method``) and the words the table uses for it
METHODS = {
    "static": "static",
    "tflm": "measured in TFLM",
    "host": "measured on this host",
    "estimated": "estimated",
}
#: p99 / mean ratio assumed when latency is estimated from throughput
P99_OVER_MEAN = 2.0

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
class BudgetResult:
    """One budget: the value, its limit, the margin and how the value was obtained."""

    name: str
    value: float
    limit: float
    unit: str
    passed: bool
    #: "static" (read from the model), "measured" (on the target), or "estimated (how)"
    basis: str
    #: one of :data:`METHODS`; default: inferred from ``basis`` ("measured ..." -> "host")
    method: str = ""

    def __post_init__(self) -> None:
        if not self.method:
            inferred = ("host" if self.basis.startswith("measured") else
                        "estimated" if self.basis.startswith("estimated") else "static")
            object.__setattr__(self, "method", inferred)
        if self.method not in METHODS:
            raise ConfigError(f"budget {self.name}: method {self.method!r} must be one of {', '.join(METHODS)}")

    @property
    def how(self) -> str:
        """Words for :attr:`method`: static, measured in TFLM, measured on this host, or estimated."""
        return METHODS[self.method]

    @property
    def margin(self) -> float:
        """Headroom as a fraction of the limit (negative when over budget)."""
        if self.limit == 0:
            return 0.0 if self.value == 0 else -float("inf")
        return (self.limit - self.value) / self.limit

    @property
    def label(self) -> str:
        return _LABELS.get(self.name, self.name)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "BudgetResult":
        """The inverse of :meth:`to_dict` (a bundle manifest's ``budgets.results`` entry)."""
        return cls(str(data["name"]), float(data["value"]), float(data["limit"]), str(data["unit"]),
                   bool(data["passed"]), str(data.get("basis", "")), str(data.get("method", "")))

    def to_dict(self) -> dict[str, Any]:
        margin = self.margin
        return {
            "name": self.name,
            "value": _num(self.value),
            "limit": _num(self.limit),
            "unit": self.unit,
            "margin": round(margin, 4) if margin != -float("inf") else None,
            "passed": self.passed,
            "method": self.method,
            "basis": self.basis,
        }


def _num(v: float) -> float | int:
    return int(v) if float(v).is_integer() else round(float(v), 6)


@dataclass(frozen=True)
class BudgetReport:
    """Every budget of one device profile checked against one model."""

    device: str
    results: tuple[BudgetResult, ...]
    measured_on_target: bool = False

    @property
    def within_budget(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failures(self) -> tuple[BudgetResult, ...]:
        return tuple(r for r in self.results if not r.passed)

    def result(self, name: str) -> BudgetResult:
        for r in self.results:
            if r.name == name:
                return r
        raise KeyError(name)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "BudgetReport":
        """The inverse of :meth:`to_dict` (extra keys of a manifest's ``budgets`` are ignored)."""
        return cls(device=str(data.get("device", "")),
                   results=tuple(BudgetResult.from_dict(r) for r in data.get("results") or ()),
                   measured_on_target=bool(data.get("measured_on_target", False)))

    def to_dict(self) -> dict[str, Any]:
        """JSON form stored in a bundle manifest's ``budgets``."""
        return {
            "device": self.device,
            "results": [r.to_dict() for r in self.results],
            "within_budget": self.within_budget,
            "measured_on_target": self.measured_on_target,
        }

    def summary(self) -> str:
        """One line: the verdict and the failing budgets."""
        if self.within_budget:
            return f"within the budgets of {self.device}"
        parts = [f"{r.label} {r.value:,.0f} B > {r.limit:,.0f} B ({r.basis})" if r.method == "tflm" else
                 f"{r.label} {format_value(r.value, r.unit)} > {format_value(r.limit, r.unit)}" for r in self.failures]
        return f"over the budgets of {self.device}: " + "; ".join(parts)

    def table(self) -> str:
        """A plain-text table: budget, value, limit, margin, result, how it was obtained, basis."""
        head = ("budget", "value", "limit", "margin", "result", "how", "basis")
        rows = [head]
        for r in self.results:
            margin = r.margin
            rows.append((
                r.label,
                format_value(r.value, r.unit),
                format_value(r.limit, r.unit),
                "-inf" if margin == -float("inf") else f"{margin * 100:+.0f}%",
                "ok" if r.passed else "OVER",
                r.how,
                r.basis,
            ))
        widths = [max(len(row[i]) for row in rows) for i in range(len(head) - 1)]
        lines = [f"device {self.device}: " + ("within budget" if self.within_budget else "OVER BUDGET")]
        for row in rows:
            cells = [row[i].ljust(widths[i]) if i in (0, len(widths) - 1) else row[i].rjust(widths[i])
                     for i in range(len(widths))]
            lines.append("  ".join(cells) + "  " + row[-1])
        return "\n".join(lines)


def format_value(value: float, unit: str) -> str:
    """Human form of a budget value: bytes in KiB/MiB, MAC/s in M, shares in %."""
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
    return f"{value:g} {unit}".strip()


def arena_result(profile: Any, arena_bytes: int, *, build: str, streaming: bool = False) -> BudgetResult:
    """The tensor-arena budget of a model measured in TFLM: the measured arena plus the profile's margin.

    The limit is the arena the firmware reserves (the profile's ``[tflm]``
    table) or, for a TFLite Micro profile without one, ``budgets.activation_bytes``
    with no margin. ``build`` names the TFLM build that measured it.
    """
    tflm = getattr(profile, "tflm", None)
    if tflm is not None:
        needed, limit = tflm.needed_bytes(arena_bytes), tflm.tensor_arena_bytes
        margin = f"+ {100 * tflm.margin_fraction:g}% margin for CMSIS-NN scratch and the 32-bit layout"
    else:
        needed, limit = int(arena_bytes), profile.budgets.activation_bytes
        margin = "no margin (the profile has no [tflm] table)"
    name = "streaming_tensor_arena_bytes" if streaming else "tensor_arena_bytes"
    return BudgetResult(name, needed, limit, "B", needed <= limit,
                        f"measured in {build}: smallest working arena {arena_bytes:,} B {margin}", "tflm")


def check_budgets(
    profile: Any,
    *,
    model_bytes: int,
    activation_bytes: int,
    macs_per_inference: int,
    inferences_per_second: float,
    measured: Optional[Mapping[str, float]] = None,
    measured_on_target: bool = False,
    hops_per_second: float = 50.0,
    quantization: str = "int8",
    unsupported_operators: Optional[Sequence[str]] = None,
    measured_how: str = "",
    tflm_arena_bytes: Optional[int] = None,
    tflm_build: str = "",
) -> BudgetReport:
    """Check one model against every budget of ``profile`` (a :class:`kws_edge.devices.DeviceProfile`).

    Parameters
    ----------
    model_bytes, activation_bytes, macs_per_inference : from the model analysis
    inferences_per_second : model invocations per second of audio at the streaming rate
        (feature hops per second / the detector's ``stride_hops``)
    measured : ``{"cpu_share": 0..1, "hop_latency_p99_ms": ms}`` measured by ``kws bench``;
        used only when ``measured_on_target`` is true
    hops_per_second : feature hops per second of audio (for the MFCC share of a hop)
    quantization : "int8" or "float32" (float models use the profile's float32 speed ratio)
    unsupported_operators : operators outside the TFLite Micro builtin set; checked (limit 0)
        only for profiles whose runtime is "tflite-micro"
    measured_how : how the measured values were taken, shown as "measured (how)"
    tflm_arena_bytes, tflm_build : the model's smallest working arena measured in TFLM and the build that
        measured it; adds the "tensor_arena_bytes" budget (see :func:`arena_result`)
    """
    if inferences_per_second <= 0 or hops_per_second <= 0:
        raise ConfigError("inferences_per_second and hops_per_second must be > 0")
    measured = dict(measured or {})
    unknown = sorted(set(measured) - set(MEASURABLE))
    if unknown:
        raise ConfigError(f"unknown measured budget {unknown[0]!r}; known: {', '.join(MEASURABLE)}")
    measured_basis = f"measured ({measured_how})" if measured_how else "measured"
    b = profile.budgets
    est = profile.estimates
    results = [
        BudgetResult("model_bytes", model_bytes, b.model_bytes, "B", model_bytes <= b.model_bytes, "static"),
        BudgetResult("activation_bytes", activation_bytes, b.activation_bytes, "B",
                     activation_bytes <= b.activation_bytes,
                     "static (lower bound from tensor lifetimes)"),
    ]
    compute = float(macs_per_inference) * float(inferences_per_second)
    results.append(BudgetResult(
        "compute", compute, b.macs_per_second, "MAC/s", compute <= b.macs_per_second,
        f"static ({macs_per_inference:,} MACs x {inferences_per_second:g}/s)",
    ))

    throughput = est.int8_macs_per_second * (est.float32_speed_ratio if quantization == "float32" else 1.0)
    inference_ms = 1000.0 * macs_per_inference / throughput
    mfcc_hop_ms = est.mfcc_ms_per_audio_second / hops_per_second
    how = f"{throughput / 1e9:g} G MAC/s and {est.mfcc_ms_per_audio_second:g} ms MFCC per audio second from the profile"

    if measured_on_target and "cpu_share" in measured:
        cpu, cpu_basis = float(measured["cpu_share"]), measured_basis
    else:
        cpu = (inference_ms * inferences_per_second + est.mfcc_ms_per_audio_second) / 1000.0
        cpu_basis = f"estimated ({how})"
    results.append(BudgetResult("cpu_share", cpu, b.cpu_share, "share", cpu <= b.cpu_share, cpu_basis))

    if measured_on_target and "hop_latency_p99_ms" in measured:
        lat, lat_basis = float(measured["hop_latency_p99_ms"]), measured_basis
    else:
        lat = P99_OVER_MEAN * (inference_ms + mfcc_hop_ms)
        lat_basis = f"estimated ({P99_OVER_MEAN:g} x mean of {inference_ms:.3f} ms model + {mfcc_hop_ms:.3f} ms MFCC; {how})"
    results.append(BudgetResult("hop_latency_p99_ms", lat, b.hop_latency_p99_ms, "ms",
                                lat <= b.hop_latency_p99_ms, lat_basis))

    if getattr(profile, "runtime", "litert") == "tflite-micro" and unsupported_operators is not None:
        bad = sorted(set(unsupported_operators))
        results.append(BudgetResult(
            "operators", len(bad), 0, "ops", not bad,
            "static (" + (", ".join(bad) if bad else "all builtin in TFLite Micro") + ")",
        ))
    if tflm_arena_bytes is not None:
        results.append(arena_result(profile, tflm_arena_bytes, build=tflm_build or "TFLite Micro"))
    return BudgetReport(device=profile.name, results=tuple(results), measured_on_target=bool(measured_on_target))
