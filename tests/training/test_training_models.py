"""Every architecture trains with a dynamic batch and exports a batch-1, builtin-int8-only TFLite graph."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from kws_edge.engine import Engine  # noqa: E402
from kws_edge.training.config import ModelConfig  # noqa: E402
from kws_edge.training.models import ARCHITECTURES, build_inference_model, build_model, preset  # noqa: E402

# architectures of this module; others registered in ARCHITECTURES (the streaming "tcn") are tested by their owners
MINE = ("ds_cnn", "ds_cnn_mlperf", "tiny_conv", "tc_resnet")
ALLOWED_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "AVERAGE_POOL_2D", "RESHAPE", "FULLY_CONNECTED", "SOFTMAX"}


def _int8_tflite(model, x):
    import contextlib
    import io

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([x[i:i + 1]] for i in range(len(x)))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    with contextlib.redirect_stdout(io.StringIO()):
        return conv.convert()


def _ops(model_bytes: bytes) -> set[str]:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=model_bytes)
    return {op["op_name"] for op in interp._get_ops_details()}


@pytest.mark.parametrize("name", [n for n in sorted(ARCHITECTURES) if n in MINE])
def test_architecture_exports_builtin_int8_batch1(name):
    cfg = preset(name)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 49, 10)).astype(np.float32)
    trained = build_model(cfg, (49, 10), 4)
    assert trained.input_shape == (None, 49, 10) and trained.output_shape == (None, 4)
    trained(x[:4], training=False)
    model = build_inference_model(cfg, (49, 10), 4, weights=trained)
    assert model.input_shape == (1, 49, 10)
    want = trained.predict(x[:2], verbose=0)
    got = np.concatenate([model.predict(x[i:i + 1], verbose=0) for i in range(2)])
    np.testing.assert_allclose(got, want, atol=1e-5)
    data = _int8_tflite(model, x)
    ops = _ops(data)
    assert ops <= ALLOWED_OPS, f"{name}: unexpected ops {ops - ALLOWED_OPS}"
    engine = Engine(data)
    assert engine.input.shape == (1, 49, 10) and engine.input.dtype == "int8"
    assert engine.run(x[:1])[0].shape == (1, 4)


def test_width_and_depth_change_the_ds_cnn():
    small = build_model(ModelConfig("ds_cnn", width=16, depth=2), (49, 10), 4)
    big = build_model(ModelConfig("ds_cnn", width=64, depth=4), (49, 10), 4)
    assert small.count_params() < big.count_params()
    assert build_model(ModelConfig("ds_cnn_mlperf", width=8, depth=1), (49, 10), 4).count_params() == \
        big.count_params()  # the preset ignores width/depth
