"""Budget checks of a model against a device profile (shared by ``kws-convert`` and ``kws bench``).

Static checks need only numbers the converter reads from the model file:
model bytes, peak activation bytes, and compute (MACs per inference x
inferences per second against the profile's compute budget). Per-hop latency
p99 and CPU share are *measured* when the command runs on the target itself
(``measured_on_target=True`` with a ``measured`` dict, as ``kws bench`` does);
otherwise they are *estimated* from the profile's throughput figures and the
result says so, and how. For TFLite Micro profiles the tensor arena each model
needs is *measured in TFLM* by the converter (:func:`arena_result`). Every
result is a :class:`~kws_edge.limits.Limit` whose ``method`` says which of these
it is; the whole check is the :class:`~kws_edge.bundle.budgets.Budgets` a bundle
manifest stores. No TensorFlow here.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

from .bundle.budgets import Budgets
from .errors import ConfigError
from .limits import Limit

__all__ = ["check_budgets", "arena_result", "MEASURABLE", "P99_OVER_MEAN"]

#: budgets that ``measured`` may hold, with their units
MEASURABLE = {"cpu_share": "share", "hop_latency_p99_ms": "ms"}
#: p99 / mean ratio assumed when latency is estimated from throughput
P99_OVER_MEAN = 2.0


def arena_result(profile: Any, arena_bytes: int, *, build: str, streaming: bool = False) -> Limit:
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
    return Limit(name, needed, limit, "B", basis=f"measured in {build}: smallest working arena {arena_bytes:,} B {margin}",
                 method="tflm")


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
) -> Budgets:
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
        Limit("model_bytes", model_bytes, b.model_bytes, "B", basis="static"),
        Limit("activation_bytes", activation_bytes, b.activation_bytes, "B",
              basis="static (lower bound from tensor lifetimes)"),
    ]
    compute = float(macs_per_inference) * float(inferences_per_second)
    results.append(Limit("compute", compute, b.macs_per_second, "MAC/s",
                         basis=f"static ({macs_per_inference:,} MACs x {inferences_per_second:g}/s)"))

    throughput = est.int8_macs_per_second * (est.float32_speed_ratio if quantization == "float32" else 1.0)
    inference_ms = 1000.0 * macs_per_inference / throughput
    mfcc_hop_ms = est.mfcc_ms_per_audio_second / hops_per_second
    how = f"{throughput / 1e9:g} G MAC/s and {est.mfcc_ms_per_audio_second:g} ms MFCC per audio second from the profile"

    if measured_on_target and "cpu_share" in measured:
        cpu, cpu_basis = float(measured["cpu_share"]), measured_basis
    else:
        cpu = (inference_ms * inferences_per_second + est.mfcc_ms_per_audio_second) / 1000.0
        cpu_basis = f"estimated ({how})"
    results.append(Limit("cpu_share", cpu, b.cpu_share, "share", basis=cpu_basis))

    if measured_on_target and "hop_latency_p99_ms" in measured:
        lat, lat_basis = float(measured["hop_latency_p99_ms"]), measured_basis
    else:
        lat = P99_OVER_MEAN * (inference_ms + mfcc_hop_ms)
        lat_basis = f"estimated ({P99_OVER_MEAN:g} x mean of {inference_ms:.3f} ms model + {mfcc_hop_ms:.3f} ms MFCC; {how})"
    results.append(Limit("hop_latency_p99_ms", lat, b.hop_latency_p99_ms, "ms", basis=lat_basis))

    if getattr(profile, "runtime", "litert") == "tflite-micro" and unsupported_operators is not None:
        bad = sorted(set(unsupported_operators))
        results.append(Limit("operators", len(bad), 0, "ops",
                             basis="static (" + (", ".join(bad) if bad else "all builtin in TFLite Micro") + ")"))
    if tflm_arena_bytes is not None:
        results.append(arena_result(profile, tflm_arena_bytes, build=tflm_build or "TFLite Micro"))
    return Budgets(device=profile.name, results=tuple(results), measured_on_target=bool(measured_on_target))
