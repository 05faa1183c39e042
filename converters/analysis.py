"""What a ``.tflite`` file costs, read from the flatbuffer alone (no interpreter, no TensorFlow).

:func:`analyze_model` parses the model with the flatbuffer schema that ships
with ``ai-edge-litert`` (``ai_edge_litert.schema_py_generated``; it needs only
the ``flatbuffers`` package) and reports:

* the operators in execution order, and which of them TFLite Micro's builtin
  op resolver lacks (:data:`TFLM_BUILTINS`);
* model bytes (the file) and weight bytes (every constant tensor's buffer);
* quantisation-parameter bytes (every tensor's scales, 4 bytes each, and zero
  points, 8 bytes each, as the schema stores them) and the most scales on one
  constant tensor (1: per-tensor weight scales; the channel count: per-channel;
  0: no quantised constants), which is what ``kws-convert --per-tensor`` saves;
* **peak activation bytes** of the main subgraph, by
  :func:`kws_edge.activations.peak_live_bytes` (tensor lifetimes; variables live
  throughout). This is a *lower bound* on a TFLite Micro arena: the real arena
  adds kernel scratch buffers, alignment padding and the planner's
  fragmentation, and the LiteRT interpreter on Linux allocates more still;
* MACs per inference, per operator type, from tensor shapes: CONV_2D =
  output elements x kernel height x kernel width x input channels;
  DEPTHWISE_CONV_2D = output elements x kernel height x kernel width;
  FULLY_CONNECTED and BATCH_MATMUL = output elements x reduced dimension;
  TRANSPOSE_CONV = input elements x kernel height x kernel width x output
  channels; pooling = output elements x window (one add or compare each);
  MEAN/SUM = input elements; element-wise ADD/SUB/MUL/SQUARED_DIFFERENCE =
  output elements. Biases, activations, softmax and data movement count 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kws_edge.activations import peak_live_bytes
from kws_edge.bundle import TensorSpec
from kws_edge.errors import BackendUnavailableError, BundleError

__all__ = ["ModelAnalysis", "OperatorCost", "analyze_model", "TFLM_BUILTINS", "ELEMENT_BYTES"]

#: builtin operators TFLite Micro's MicroMutableOpResolver can register (tflite-micro,
#: tensorflow/lite/micro/micro_mutable_op_resolver.h, the Add* methods; 2023-2024 versions)
TFLM_BUILTINS = frozenset("""
ABS ADD ADD_N ARG_MAX ARG_MIN ASSIGN_VARIABLE AVERAGE_POOL_2D BATCH_MATMUL BATCH_TO_SPACE_ND
BROADCAST_ARGS BROADCAST_TO CALL_ONCE CAST CEIL CONCATENATION CONV_2D COS CUMSUM DEPTH_TO_SPACE
DEPTHWISE_CONV_2D DEQUANTIZE DIV ELU EMBEDDING_LOOKUP EQUAL EXP EXPAND_DIMS FILL FLOOR FLOOR_DIV
FLOOR_MOD FULLY_CONNECTED GATHER GATHER_ND GREATER GREATER_EQUAL HARD_SWISH IF L2_NORMALIZATION
L2_POOL_2D LEAKY_RELU LESS LESS_EQUAL LOG LOG_SOFTMAX LOGICAL_AND LOGICAL_NOT LOGICAL_OR LOGISTIC
MAX_POOL_2D MAXIMUM MEAN MINIMUM MIRROR_PAD MUL NEG NOT_EQUAL PACK PAD PADV2 PRELU QUANTIZE
READ_VARIABLE REDUCE_MAX RELU RELU6 RESHAPE RESIZE_BILINEAR RESIZE_NEAREST_NEIGHBOR ROUND RSQRT
SELECT_V2 SHAPE SIN SLICE SOFTMAX SPACE_TO_BATCH_ND SPACE_TO_DEPTH SPLIT SPLIT_V SQRT SQUARE
SQUARED_DIFFERENCE SQUEEZE STRIDED_SLICE SUB SUM SVDF TANH TRANSPOSE TRANSPOSE_CONV
UNIDIRECTIONAL_SEQUENCE_LSTM UNPACK VAR_HANDLE WHILE ZEROS_LIKE
""".split())

#: bytes per element of each TFLite tensor type (sub-byte types rounded up per tensor)
ELEMENT_BYTES = {
    "FLOAT32": 4, "FLOAT16": 2, "BFLOAT16": 2, "FLOAT64": 8, "INT64": 8, "UINT64": 8, "INT32": 4,
    "UINT32": 4, "INT16": 2, "UINT16": 2, "INT8": 1, "UINT8": 1, "BOOL": 1, "COMPLEX64": 8,
    "COMPLEX128": 16, "INT4": 0.5, "UINT4": 0.5, "INT2": 0.25, "FLOAT8_E4M3FN": 1, "FLOAT8_E5M2": 1,
    "STRING": 0, "RESOURCE": 0, "VARIANT": 0,
}

_POOLS = {"AVERAGE_POOL_2D", "MAX_POOL_2D", "L2_POOL_2D"}
_ELEMENTWISE = {"ADD", "SUB", "MUL", "SQUARED_DIFFERENCE"}
_REDUCE = {"MEAN", "SUM"}


@dataclass(frozen=True)
class OperatorCost:
    """One operator of the main subgraph."""

    index: int
    name: str
    macs: int
    output_shape: tuple[int, ...]


@dataclass(frozen=True)
class ModelAnalysis:
    """Static costs of one model file; see the module docstring for definitions."""

    model_bytes: int
    weight_bytes: int
    peak_activation_bytes: int
    #: index of the operator at which the activation peak occurs
    peak_operator_index: int
    macs_per_inference: int
    macs_by_operator: dict[str, int]
    #: operator names in execution order (main subgraph)
    operators: tuple[str, ...]
    #: operator names (all subgraphs) TFLite Micro's builtin resolver does not have
    tflm_unsupported: tuple[str, ...]
    input: TensorSpec
    output: TensorSpec
    n_subgraphs: int = 1
    per_operator: tuple[OperatorCost, ...] = field(default=(), repr=False)
    #: bytes of every tensor's quantisation scales (float32) and zero points (int64)
    quantization_param_bytes: int = 0
    #: the most scales on one constant tensor: 1 = per-tensor, > 1 = per-channel, 0 = none quantised
    max_weight_scales: int = 0

    @property
    def operator_set(self) -> tuple[str, ...]:
        return tuple(sorted(set(self.operators)))

    @property
    def tflm_compatible(self) -> bool:
        return not self.tflm_unsupported

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_bytes": self.model_bytes,
            "weight_bytes": self.weight_bytes,
            "peak_activation_bytes": self.peak_activation_bytes,
            "peak_activation_note": "lower bound on a TFLite Micro arena (tensor lifetimes; no scratch or alignment)",
            "peak_operator_index": self.peak_operator_index,
            "macs_per_inference": self.macs_per_inference,
            "macs_by_operator": dict(self.macs_by_operator),
            "operators": list(self.operators),
            "tflm_unsupported": list(self.tflm_unsupported),
            "n_subgraphs": self.n_subgraphs,
            "quantization_param_bytes": self.quantization_param_bytes,
            "max_weight_scales": self.max_weight_scales,
        }


def _schema() -> Any:
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:
        raise BackendUnavailableError(
            "model analysis needs the TFLite flatbuffer schema from ai-edge-litert; pip install ai-edge-litert"
        ) from None
    return schema


def _enum_names(enum_cls: Any) -> dict[int, str]:
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_") and isinstance(v, int)}


def _elements(shape: Any) -> int:
    dims = [int(d) for d in (shape if shape is not None else [])]
    return int(math.prod(max(d, 1) for d in dims)) if dims else 1


def _count(values: Any) -> int:
    return 0 if values is None else len(values)


def _shape(tensor: Any) -> tuple[int, ...]:
    return tuple(int(d) for d in (tensor.shape if tensor.shape is not None else []))


def _tensor_bytes(tensor: Any, type_names: dict[int, str]) -> int:
    per = ELEMENT_BYTES.get(type_names.get(tensor.type, ""), 0)
    return int(math.ceil(_elements(tensor.shape) * per))


def _spec(tensor: Any, type_names: dict[int, str]) -> TensorSpec:
    q = tensor.quantization
    scale = float(q.scale[0]) if q is not None and q.scale is not None and len(q.scale) else 0.0
    zero = int(q.zeroPoint[0]) if q is not None and q.zeroPoint is not None and len(q.zeroPoint) else 0
    return TensorSpec(shape=_shape(tensor), dtype=type_names.get(tensor.type, "UNKNOWN").lower(),
                      scale=scale, zero_point=zero)


def _op_macs(name: str, op: Any, tensors: list) -> int:
    ins = [tensors[i] if i >= 0 else None for i in (op.inputs if op.inputs is not None else [])]
    outs = [tensors[i] for i in (op.outputs if op.outputs is not None else []) if i >= 0]
    if not outs:
        return 0
    out = outs[0]
    out_elems = _elements(out.shape)
    if name == "CONV_2D" and len(ins) > 1 and ins[1] is not None:
        _, kh, kw, cin = (list(_shape(ins[1])) + [1, 1, 1, 1])[:4]
        return out_elems * kh * kw * cin
    if name == "DEPTHWISE_CONV_2D" and len(ins) > 1 and ins[1] is not None:
        f = _shape(ins[1])
        return out_elems * f[1] * f[2] if len(f) == 4 else 0
    if name == "FULLY_CONNECTED" and len(ins) > 1 and ins[1] is not None:
        w = _shape(ins[1])
        return out_elems * (w[-1] if w else 1)
    if name == "BATCH_MATMUL" and ins and ins[0] is not None:
        a = _shape(ins[0])
        adj_x = bool(getattr(op.builtinOptions, "adjX", False))
        k = (a[-2] if adj_x else a[-1]) if a else 1
        return out_elems * k
    if name == "TRANSPOSE_CONV" and len(ins) > 2 and ins[1] is not None and ins[2] is not None:
        cout, kh, kw, _ = (list(_shape(ins[1])) + [1, 1, 1, 1])[:4]
        return _elements(ins[2].shape) * kh * kw * cout
    if name in _POOLS:
        opts = op.builtinOptions
        return out_elems * int(getattr(opts, "filterHeight", 1)) * int(getattr(opts, "filterWidth", 1))
    if name in _REDUCE and ins and ins[0] is not None:
        return _elements(ins[0].shape)
    if name in _ELEMENTWISE:
        return out_elems
    return 0


def analyze_model(model: bytes | str | Path) -> ModelAnalysis:
    """Analyse a ``.tflite`` model (bytes or path); raises ``BundleError`` if it is not one."""
    data = model if isinstance(model, (bytes, bytearray)) else Path(model).read_bytes()
    data = bytes(data)
    schema = _schema()
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise BundleError("not a TFLite model: the flatbuffer identifier TFL3 is missing")
    try:
        m = schema.ModelT.InitFromObj(schema.Model.GetRootAs(data, 0))
    except Exception as exc:  # malformed flatbuffers raise anything from struct.error to IndexError
        raise BundleError(f"the TFLite flatbuffer cannot be parsed: {exc}") from None
    op_names = _enum_names(schema.BuiltinOperator)
    type_names = _enum_names(schema.TensorType)
    buffers = m.buffers or []

    def opname(opcode_index: int) -> str:
        code = m.operatorCodes[opcode_index]
        builtin = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
        name = op_names.get(builtin, f"BUILTIN_{builtin}")
        if name == "CUSTOM":
            custom = code.customCode.decode() if isinstance(code.customCode, bytes) else str(code.customCode)
            return f"CUSTOM:{custom}"
        return name

    def is_constant(tensor: Any) -> bool:
        if tensor.buffer <= 0 or tensor.buffer >= len(buffers):
            return False
        buf = buffers[tensor.buffer]
        return (buf.data is not None and len(buf.data) > 0) or buf.size > 0

    subgraphs = m.subgraphs or []
    if not subgraphs:
        raise BundleError("the TFLite model has no subgraph")

    weight_buffers: dict[int, int] = {}
    all_ops: set[str] = set()
    quant_bytes = max_scales = 0
    for sg in subgraphs:
        for t in sg.tensors or []:
            n_scales = _count(t.quantization.scale) if t.quantization is not None else 0
            if t.quantization is not None:
                quant_bytes += 4 * n_scales + 8 * _count(t.quantization.zeroPoint)
            if is_constant(t):
                buf = buffers[t.buffer]
                weight_buffers[t.buffer] = len(buf.data) if buf.data is not None and len(buf.data) else int(buf.size)
                max_scales = max(max_scales, n_scales)
        for op in sg.operators or []:
            all_ops.add(opname(op.opcodeIndex))

    main = subgraphs[0]
    tensors = main.tensors or []
    ops = main.operators or []
    n_ops = len(ops)
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    pinned: set[int] = set()
    for t_index in main.inputs if main.inputs is not None else []:
        first[t_index] = 0
    for i, op in enumerate(ops):
        for t_index in op.inputs if op.inputs is not None else []:
            if t_index >= 0:
                first.setdefault(t_index, i)
                last[t_index] = i
        for t_index in op.outputs if op.outputs is not None else []:
            first.setdefault(t_index, i)
            last[t_index] = max(last.get(t_index, i), i)
    for t_index in main.outputs if main.outputs is not None else []:
        first.setdefault(t_index, 0)
        last[t_index] = max(n_ops - 1, 0)
    for t_index, t in enumerate(tensors):
        if t.isVariable:
            pinned.add(t_index)

    live_sizes = {
        t: _tensor_bytes(tensors[t], type_names)
        for t in set(first) | pinned
        if not is_constant(tensors[t])
    }
    peak, peak_at = peak_live_bytes(n_ops, live_sizes, first, last, pinned)

    costs = []
    by_op: dict[str, int] = {}
    for i, op in enumerate(ops):
        name = opname(op.opcodeIndex)
        macs = _op_macs(name, op, tensors)
        out_shape = _shape(tensors[op.outputs[0]]) if op.outputs is not None and len(op.outputs) else ()
        costs.append(OperatorCost(index=i, name=name, macs=int(macs), output_shape=out_shape))
        by_op[name] = by_op.get(name, 0) + int(macs)

    def tflm_ok(name: str) -> bool:
        return name in TFLM_BUILTINS

    inputs = list(main.inputs) if main.inputs is not None else []
    outputs = list(main.outputs) if main.outputs is not None else []
    if not inputs or not outputs:
        raise BundleError("the TFLite model's main subgraph has no input or no output")
    return ModelAnalysis(
        model_bytes=len(data),
        weight_bytes=int(sum(weight_buffers.values())),
        peak_activation_bytes=int(peak),
        peak_operator_index=int(peak_at),
        macs_per_inference=int(sum(c.macs for c in costs)),
        macs_by_operator={k: v for k, v in sorted(by_op.items()) if v > 0},
        operators=tuple(c.name for c in costs),
        tflm_unsupported=tuple(sorted(n for n in all_ops if not tflm_ok(n))),
        input=_spec(tensors[inputs[0]], type_names),
        output=_spec(tensors[outputs[0]], type_names),
        n_subgraphs=len(subgraphs),
        per_operator=tuple(costs),
        quantization_param_bytes=int(quant_bytes),
        max_weight_scales=int(max_scales),
    )
