"""``kws-convert --per-tensor``: one int8 scale per weight tensor, a smaller file, the same model."""

from __future__ import annotations

import numpy as np
import pytest

from kws_edge.engine import Engine


def _weight_scale_counts(model_bytes: bytes) -> list[int]:
    """Scale counts of every constant multi-dimensional int8 tensor (the convolution weights)."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(model_bytes))
    int8 = 9  # schema TensorType.INT8
    counts = []
    for graph in model.subgraphs:
        for tensor in graph.tensors:
            constant = len(model.buffers[tensor.buffer].data if model.buffers[tensor.buffer].data is not None
                           else []) > 0
            if constant and tensor.type == int8 and len(tensor.shape) == 4:
                counts.append(len(tensor.quantization.scale))
    return counts


@pytest.fixture(scope="module")
def small_tcn():
    from kws_edge.training.streaming_model import TcnConfig, build_window_model

    import keras

    keras.utils.set_random_seed(0)
    config = TcnConfig(n_frames=49, n_cepstra=10, n_labels=4, filters=12, block_kernel_frames=(3, 3),
                       block_dilations=(1, 2), dropout=0.0)
    model = build_window_model(config, batch_size=1)
    # BatchNorm at its initial identity would give every channel the same range; spread them apart
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.3, 3.0, gamma.shape).astype(np.float32), beta, mean, var])
    features = rng.normal(size=(64, 49, 10)).astype(np.float32)
    return model, features


def test_per_tensor_window_model_is_smaller_with_one_scale_per_weight_tensor(small_tcn):
    from kws_edge.converters.quantize import convert_keras

    model, features = small_tcn
    per_channel = convert_keras(model, features, "int8", clone=False, strip_names=True)
    per_tensor = convert_keras(model, features, "int8", clone=False, strip_names=True, per_channel=False)
    channel_counts, tensor_counts = _weight_scale_counts(per_channel), _weight_scale_counts(per_tensor)
    assert len(channel_counts) == len(tensor_counts) >= 5
    assert max(channel_counts) == 12 and set(tensor_counts) == {1}
    # 12 bytes (float32 scale + int64 zero point) per channel saved on each weight tensor, and as much on biases
    assert len(per_channel) - len(per_tensor) >= 12 * sum(c - 1 for c in channel_counts)
    # the flatbuffer analysis (kws-convert's report) tells the two apart and counts those bytes
    from kws_edge.converters.analysis import analyze_model

    a_channel, a_tensor = analyze_model(per_channel), analyze_model(per_tensor)
    assert (a_channel.max_weight_scales, a_tensor.max_weight_scales) == (12, 1)
    saved = a_channel.quantization_param_bytes - a_tensor.quantization_param_bytes
    assert saved >= 12 * sum(c - 1 for c in channel_counts)
    assert saved <= len(per_channel) - len(per_tensor)
    # the same model: both int8 files against the float one on held-out inputs
    x = np.random.default_rng(1).normal(size=(32, 49, 10)).astype(np.float32)
    expected = model.predict(x, verbose=0)
    for model_bytes in (per_channel, per_tensor):
        engine = Engine(model_bytes)
        got = np.stack([engine.run(sample.reshape(engine.input.shape))[0].reshape(-1) for sample in x])
        assert np.abs(got - expected).max() < 0.1
        assert np.mean(got.argmax(1) == expected.argmax(1)) >= 0.9


def test_per_tensor_streaming_model_with_names_stripped(small_tcn):
    from kws_edge.converters.streaming import StreamingConversionConfig, convert_streaming

    model, features = small_tcn
    default = convert_streaming(model, features, StreamingConversionConfig(n_representative=50))
    small = convert_streaming(model, features, StreamingConversionConfig(n_representative=50, per_channel=False,
                                                                         strip_names=True))
    assert set(_weight_scale_counts(small.model_bytes)) == {1}
    assert max(_weight_scale_counts(default.model_bytes)) == 12
    assert len(small.model_bytes) < len(default.model_bytes)
    engine = Engine(small.model_bytes)
    assert all(t.name == "" for t in list(engine.inputs) + list(engine.outputs))
    assert (small.state_size, small.block_frames) == (default.state_size, default.block_frames)
    # --strip-names applies to a float32 streaming model too
    floats = convert_streaming(model, features, StreamingConversionConfig(quantize="float32", strip_names=True))
    assert len(floats.model_bytes) < len(floats.float_model_bytes)
    assert all(t.name == "" for t in list(Engine(floats.model_bytes).inputs) + list(Engine(floats.model_bytes).outputs))
