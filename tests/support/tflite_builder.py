"""Build tiny TFLite flatbuffers by hand (schema object API, no TensorFlow) for tests.

The model built by :func:`hand_built_model` is small enough that every figure
of :mod:`kws_edge.converters.analysis` can be computed by hand; see
``tests/converters/test_convert_analysis.py``.
"""

from __future__ import annotations

import numpy as np


def _schema():
    from ai_edge_litert import schema_py_generated as schema

    return schema


def hand_built_model(seed: int = 0, final_op: str = "SOFTMAX") -> bytes:
    """float32: (1,8,6,1) -CONV_2D 3x3x4-> (1,6,4,4) -DEPTHWISE 3x3-> (1,4,2,4)
    -AVERAGE_POOL 2x2/2-> (1,2,1,4) -RESHAPE-> (1,8) -FULLY_CONNECTED 3-> (1,3) -SOFTMAX-> (1,3).

    ``final_op`` replaces the SOFTMAX (options-free operators only).
    """
    import flatbuffers

    s = _schema()
    rng = np.random.default_rng(seed)
    buffers = [s.BufferT()]  # buffer 0 is the empty sentinel
    tensors = []

    def tensor(name, shape, dtype="FLOAT32", data=None):
        t = s.TensorT()
        t.name = name.encode()
        t.shape = list(shape)
        t.type = getattr(s.TensorType, dtype)
        b = s.BufferT()
        if data is not None:
            b.data = np.frombuffer(np.ascontiguousarray(data).tobytes(), np.uint8).tolist()
        buffers.append(b)
        t.buffer = len(buffers) - 1
        tensors.append(t)
        return len(tensors) - 1

    f32 = np.float32
    x = tensor("input", (1, 8, 6, 1))
    cw = tensor("conv_w", (4, 3, 3, 1), data=rng.normal(size=(4, 3, 3, 1)).astype(f32))
    cb = tensor("conv_b", (4,), data=np.zeros(4, f32))
    c = tensor("conv_out", (1, 6, 4, 4))
    dw = tensor("dw_w", (1, 3, 3, 4), data=rng.normal(size=(1, 3, 3, 4)).astype(f32))
    db = tensor("dw_b", (4,), data=np.zeros(4, f32))
    d = tensor("dw_out", (1, 4, 2, 4))
    p = tensor("pool_out", (1, 2, 1, 4))
    rs = tensor("reshape_shape", (2,), "INT32", data=np.array([1, 8], np.int32))
    r = tensor("reshape_out", (1, 8))
    fw = tensor("fc_w", (3, 8), data=rng.normal(size=(3, 8)).astype(f32))
    fb = tensor("fc_b", (3,), data=np.zeros(3, f32))
    fo = tensor("fc_out", (1, 3))
    y = tensor("probs", (1, 3))

    codes, ops = [], []

    def op(name, inputs, outputs, opt_type=0, opts=None):
        code = getattr(s.BuiltinOperator, name)
        for i, oc in enumerate(codes):
            if oc.builtinCode == code:
                index = i
                break
        else:
            oc = s.OperatorCodeT()
            oc.builtinCode = code
            oc.deprecatedBuiltinCode = min(code, 127)
            oc.version = 1
            codes.append(oc)
            index = len(codes) - 1
        o = s.OperatorT()
        o.opcodeIndex = index
        o.inputs, o.outputs = list(inputs), list(outputs)
        o.builtinOptionsType, o.builtinOptions = opt_type, opts
        ops.append(o)

    conv = s.Conv2DOptionsT()
    conv.padding, conv.strideW, conv.strideH = s.Padding.VALID, 1, 1
    conv.fusedActivationFunction = s.ActivationFunctionType.RELU
    op("CONV_2D", [x, cw, cb], [c], s.BuiltinOptions.Conv2DOptions, conv)
    dwo = s.DepthwiseConv2DOptionsT()
    dwo.padding, dwo.strideW, dwo.strideH, dwo.depthMultiplier = s.Padding.VALID, 1, 1, 1
    dwo.dilationWFactor = dwo.dilationHFactor = 1
    op("DEPTHWISE_CONV_2D", [c, dw, db], [d], s.BuiltinOptions.DepthwiseConv2DOptions, dwo)
    pool = s.Pool2DOptionsT()
    pool.padding, pool.strideW, pool.strideH, pool.filterWidth, pool.filterHeight = s.Padding.VALID, 2, 2, 2, 2
    op("AVERAGE_POOL_2D", [d], [p], s.BuiltinOptions.Pool2DOptions, pool)
    reshape = s.ReshapeOptionsT()
    reshape.newShape = [1, 8]
    op("RESHAPE", [p, rs], [r], s.BuiltinOptions.ReshapeOptions, reshape)
    op("FULLY_CONNECTED", [r, fw, fb], [fo], s.BuiltinOptions.FullyConnectedOptions, s.FullyConnectedOptionsT())
    if final_op == "SOFTMAX":
        sm = s.SoftmaxOptionsT()
        sm.beta = 1.0
        op("SOFTMAX", [fo], [y], s.BuiltinOptions.SoftmaxOptions, sm)
    else:  # e.g. "GELU", which TFLite Micro lacks
        op(final_op, [fo], [y])

    sg = s.SubGraphT()
    sg.tensors, sg.inputs, sg.outputs, sg.operators = tensors, [x], [y], ops
    sg.name = b"main"
    model = s.ModelT()
    model.version = 3
    model.operatorCodes, model.subgraphs, model.buffers = codes, [sg], buffers
    model.description = b"hand-built test model"
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def add_model(n_elements: int) -> bytes:
    """float32: two (1, n) inputs -ADD-> (1, n). Three non-constant tensors live at once, no weights, no
    scratch: in TFLite Micro the planned (head) part of the arena is exactly their bytes, 3 x 4 x n
    (when 4n is a multiple of the 16-byte alignment), and nothing else of the arena depends on n."""
    import flatbuffers

    s = _schema()
    tensors = []
    for name in ("a", "b", "sum"):
        t = s.TensorT()
        t.name, t.shape, t.type, t.buffer = name.encode(), [1, int(n_elements)], s.TensorType.FLOAT32, 0
        tensors.append(t)
    code = s.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = s.BuiltinOperator.ADD
    code.version = 1
    op = s.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0, 1], [2]
    op.builtinOptionsType, op.builtinOptions = s.BuiltinOptions.AddOptions, s.AddOptionsT()
    sg = s.SubGraphT()
    sg.tensors, sg.inputs, sg.outputs, sg.operators, sg.name = tensors, [0, 1], [2], [op], b"main"
    model = s.ModelT()
    model.version = 3
    model.operatorCodes, model.subgraphs, model.buffers = [code], [sg], [s.BufferT()]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())
