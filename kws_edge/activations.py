"""Peak activation bytes of a TFLite model, computed one way: from tensor lifetimes over the operator order.

Every non-constant tensor lives from the operator that writes it (the start, for model inputs) to
the last operator that reads it (the end, for model outputs); variables live throughout. The peak is
the largest sum of live tensor sizes at any operator: a *lower bound* on a TFLite Micro arena (kernel
scratch buffers, alignment and the planner's fragmentation come on top). :func:`peak_live_bytes` is
that computation; ``kws_edge.converters.analysis`` feeds it from the flatbuffer, and
:func:`interpreter_peak_activation_bytes` from an interpreter's operator graph (for ``kws bench`` on a
bundle whose manifest lacks the figure; the runtime install has no flatbuffer schema on every board).
"""

from __future__ import annotations

from typing import Mapping, Optional

import numpy as np

__all__ = ["peak_live_bytes", "interpreter_peak_activation_bytes"]


def peak_live_bytes(n_ops: int, sizes: Mapping[int, int], first: Mapping[int, int], last: Mapping[int, int],
                    pinned: frozenset[int] | set[int] = frozenset()) -> tuple[int, int]:
    """``(peak bytes, operator index of the peak)`` of tensors ``sizes`` living ``first[t]..last[t]``.

    ``pinned`` tensors (variables) count at every operator. A tensor without ``last`` dies where it is born.
    """
    pinned_bytes = sum(size for t, size in sizes.items() if t in pinned)
    peak, peak_at = 0, 0
    for i in range(max(n_ops, 1)):
        total = pinned_bytes + sum(size for t, size in sizes.items()
                                   if t not in pinned and first[t] <= i <= last.get(t, first[t]))
        if total > peak:
            peak, peak_at = total, i
    return int(peak), int(peak_at)


def interpreter_peak_activation_bytes(model_bytes: bytes, *, backend: Optional[str] = None) -> int:
    """:func:`peak_live_bytes` of a model, from the interpreter's operator graph (``_get_ops_details``).

    Available in ai_edge_litert, tflite_runtime and tf.lite. Constant tensors are those no operator
    produces and that are not model inputs.
    """
    from .engine import Engine

    eng = Engine(model_bytes, backend=backend)
    interp = eng._interp
    ops = interp._get_ops_details()
    tensors = {int(t["index"]): t for t in interp.get_tensor_details()}
    n_ops = len(ops)
    first: dict[int, int] = {t.index: 0 for t in eng.inputs}
    last: dict[int, int] = {}
    for k, op in enumerate(ops):
        for i in op["outputs"]:
            if int(i) >= 0:
                first.setdefault(int(i), k)
    for k, op in enumerate(ops):
        for i in op["inputs"]:
            if int(i) >= 0 and int(i) in first:
                last[int(i)] = k
    for t in eng.outputs:
        last[t.index] = max(n_ops - 1, 0)
    sizes = {i: int(np.prod(tensors[i]["shape"])) * np.dtype(tensors[i]["dtype"]).itemsize for i in first}
    return peak_live_bytes(n_ops, sizes, first, last)[0]
