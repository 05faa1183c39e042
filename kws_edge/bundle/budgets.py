"""A manifest's ``budgets``: the device profile the model that runs was checked against, and the result.

:class:`Budgets` holds one :class:`~kws_edge.limits.Limit` per budget (model bytes, peak activations,
compute, CPU share, per-hop latency, and for TFLite Micro profiles the operators and the tensor
arenas), the profile it came from, what the converter read from each model file
(:class:`ModelCost`, by file name) and what TFLite Micro measured (:class:`TflmRecord`).
``kws_edge.budgets.check_budgets`` makes one; ``kws-convert`` and ``kws bench`` print its table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from ..limits import Limit, format_value, limits_table

__all__ = ["ProfileRef", "ModelCost", "TflmBuild", "ArenaRecord", "TflmParity", "TflmModelRecord", "TflmRecord",
           "Budgets"]


@dataclass(frozen=True)
class ProfileRef:
    """The device profile a bundle was checked against (``path``: its file name, never a full path)."""

    name: str = ""
    description: str = ""
    path: str = ""
    runtime: str = ""


@dataclass(frozen=True)
class ModelCost:
    """What one model file costs, read from the flatbuffer (``kws_edge.converters.analysis``)."""

    model_bytes: int = 0
    weight_bytes: int = 0
    #: a lower bound on a TFLite Micro arena (tensor lifetimes; no scratch or alignment)
    peak_activation_bytes: int = 0
    peak_activation_note: str = ""
    peak_operator_index: int = 0
    macs_per_inference: int = 0
    macs_by_operator: dict[str, int] = field(default_factory=dict)
    operators: tuple[str, ...] = ()
    tflm_unsupported: tuple[str, ...] = ()
    n_subgraphs: int = 1
    quantization_param_bytes: int = 0
    #: the most scales on one constant tensor: 1 = per-tensor, > 1 = per-channel, 0 = none quantised
    max_weight_scales: int = 0


@dataclass(frozen=True)
class TflmBuild:
    """Which TFLite Micro measured: the package version and the git hash of its source."""

    package: str = ""
    version: str = ""
    git_hash: str = ""
    platform: str = ""

    def describe(self) -> str:
        return f"{self.package} {self.version} ({self.platform} build, reference kernels)"


@dataclass(frozen=True)
class ArenaRecord:
    """The tensor arena one model needs in TFLM."""

    #: smallest arena with which AllocateTensors succeeds (the parity checks then invoke the model in it)
    arena_bytes: int = 0
    #: the RecordingMicroAllocator's own total (leaves out the planner's temporary buffers)
    arena_used_bytes: int = 0
    method: str = ""
    trials: int = 0


@dataclass(frozen=True)
class TflmParity:
    """TFLM's int8 outputs against LiteRT's on the same int8 inputs."""

    inputs: str = ""
    #: rows of probabilities compared (clips for a window model, frames for a streaming one)
    n_compared: int = 0
    argmax_agreement: float = 0.0
    #: largest difference of any output value: int8 steps for int8 outputs, else output units
    max_difference: float = 0.0
    difference_unit: str = ""
    reference: str = ""

    def summary(self) -> str:
        agree = int(round(self.argmax_agreement * self.n_compared))
        diff = int(self.max_difference) if float(self.max_difference).is_integer() else round(self.max_difference, 6)
        return (f"argmax agrees on {agree}/{self.n_compared} ({100 * self.argmax_agreement:.1f}%), "
                f"largest difference {diff} {self.difference_unit}")


@dataclass(frozen=True)
class TflmModelRecord:
    """One model file measured in TFLM."""

    arena_bytes: int = 0
    arena: ArenaRecord = field(default_factory=ArenaRecord)
    parity: Optional[TflmParity] = None


@dataclass(frozen=True)
class TflmRecord:
    """The TFLM build and what it measured of each model file."""

    build: TflmBuild = field(default_factory=TflmBuild)
    models: dict[str, TflmModelRecord] = field(default_factory=dict)


@dataclass(frozen=True)
class Budgets:
    """Every budget of one device profile checked against the model that runs; see the module docstring."""

    device: str = ""
    results: tuple[Limit, ...] = ()
    measured_on_target: bool = False
    #: the bundle was written although a budget failed (``kws-convert --allow-over-budget``)
    allowed_over_budget: bool = False
    profile: Optional[ProfileRef] = None
    #: static costs of each model file, by file name
    analysis: dict[str, ModelCost] = field(default_factory=dict)
    tflm: Optional[TflmRecord] = None
    #: CPU share and latency measured on a machine that is not the device (for reference; not checked)
    measured_here: dict[str, float] = field(default_factory=dict)
    within_budget: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "within_budget", all(r.passed for r in self.results))

    @property
    def failures(self) -> tuple[Limit, ...]:
        return tuple(r for r in self.results if not r.passed)

    def result(self, name: str) -> Limit:
        for r in self.results:
            if r.name == name:
                return r
        raise KeyError(name)

    def summary(self) -> str:
        """One line: the verdict and the failing budgets."""
        if self.within_budget:
            return f"within the budgets of {self.device}"
        parts = [f"{r.label} {r.value:,.0f} B > {r.limit:,.0f} B ({r.basis})" if r.method == "tflm" else
                 f"{r.label} {format_value(r.value, r.unit)} > {format_value(r.limit, r.unit)}" for r in self.failures]
        return f"over the budgets of {self.device}: " + "; ".join(parts)

    def table(self) -> str:
        """:func:`kws_edge.limits.limits_table` of every budget under a verdict line."""
        verdict = "within budget" if self.within_budget else "OVER BUDGET"
        return limits_table(self.results, title=f"device {self.device}: {verdict}")
