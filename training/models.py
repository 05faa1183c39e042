"""Model architectures (Keras 3), one registry: :data:`ARCHITECTURES`.

Every model takes raw-shaped normalised features ``(frames, n_cepstra)`` and
adds the channel axis itself, ends in a softmax over the labels, and uses only
ops that convert to builtin int8 TFLite kernels (CONV_2D, DEPTHWISE_CONV_2D,
ADD, AVERAGE_POOL_2D, RESHAPE, FULLY_CONNECTED, SOFTMAX; BatchNorm folds into
the convolutions, Dropout disappears at inference).

Training uses a dynamic batch; export uses :func:`build_inference_model`
(same graph with ``batch_size=1``, so no SHAPE/STRIDED_SLICE/PACK ops appear)
and ``set_weights`` from the trained model (see ENVIRONMENT.md).

Architectures:

* ``ds_cnn``: depthwise-separable CNN (Zhang et al. 2017, MLPerf Tiny KWS):
  Conv 10x4 stride 2, then ``depth`` x [depthwise 3x3, pointwise 1x1], each with
  BatchNorm + ReLU, average pool, dense. ``width`` filters.
* ``ds_cnn_mlperf``: the MLPerf Tiny reference preset (64 filters, 4 blocks).
* ``tiny_conv``: the TensorFlow micro_speech model: one Conv 10x8 stride 2 with
  ``width`` (8) filters, ReLU, dense. About 18 KB int8.
* ``tc_resnet``: temporal-convolution ResNet (TC-ResNet, Choi et al. 2019):
  cepstra as channels, 9x1 convolutions over time, ``depth`` residual blocks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from .config import ModelConfig
from .tf_import import import_keras

__all__ = ["ArchitectureSpec", "ARCHITECTURES", "streamable_architectures", "build_model", "build_inference_model",
           "inference_clone", "preset"]


@dataclass(frozen=True)
class ArchitectureSpec:
    name: str
    builder: Callable[..., Any]
    preset: ModelConfig
    description: str
    #: whether ``kws-convert --streaming`` can make the stateful streaming form (converters.streaming)
    streamable: bool = False


#: faster-moving BatchNorm statistics than Keras' 0.99, so short runs (tests, tiny sets) evaluate sensibly
_BN_MOMENTUM = 0.9


def _keras():
    return import_keras("training")


def _bn_relu(L, x):
    return L.ReLU()(L.BatchNormalization(momentum=_BN_MOMENTUM)(x))


def _ds_cnn(cfg: ModelConfig, input_shape: tuple[int, int], n_classes: int, batch_size: int | None):
    keras = _keras()
    L = keras.layers
    frames, coeffs = input_shape
    inp = keras.Input(shape=(frames, coeffs), batch_size=batch_size, name="features")
    x = L.Reshape((frames, coeffs, 1))(inp)
    x = L.Conv2D(cfg.width, (10, 4), strides=(2, 2), padding="same", use_bias=False)(x)
    x = _bn_relu(L, x)
    x = L.Dropout(cfg.dropout)(x)
    for _ in range(cfg.depth):
        x = L.DepthwiseConv2D((3, 3), padding="same", use_bias=False)(x)
        x = _bn_relu(L, x)
        x = L.Conv2D(cfg.width, (1, 1), use_bias=False)(x)
        x = _bn_relu(L, x)
    x = L.Dropout(min(0.9, cfg.dropout * 2))(x)
    x = L.AveragePooling2D(pool_size=(x.shape[1], x.shape[2]))(x)
    x = L.Flatten()(x)
    x = L.Dense(n_classes)(x)
    return keras.Model(inp, L.Softmax()(x), name="ds_cnn")


def _tiny_conv(cfg: ModelConfig, input_shape: tuple[int, int], n_classes: int, batch_size: int | None):
    keras = _keras()
    L = keras.layers
    frames, coeffs = input_shape
    inp = keras.Input(shape=(frames, coeffs), batch_size=batch_size, name="features")
    x = L.Reshape((frames, coeffs, 1))(inp)
    x = L.Conv2D(cfg.width, (10, min(8, coeffs)), strides=(2, 2), padding="same", activation="relu")(x)
    x = L.Dropout(cfg.dropout)(x)
    x = L.Flatten()(x)
    x = L.Dense(n_classes)(x)
    return keras.Model(inp, L.Softmax()(x), name="tiny_conv")


def _tc_resnet(cfg: ModelConfig, input_shape: tuple[int, int], n_classes: int, batch_size: int | None):
    keras = _keras()
    L = keras.layers
    frames, coeffs = input_shape
    inp = keras.Input(shape=(frames, coeffs), batch_size=batch_size, name="features")
    x = L.Reshape((frames, 1, coeffs))(inp)  # time x 1 x cepstra-as-channels
    x = L.Conv2D(cfg.width, (3, 1), padding="same", use_bias=False)(x)
    channels = cfg.width
    for i in range(cfg.depth):
        channels = int(cfg.width * (1.5 + 0.5 * i))
        y = L.Conv2D(channels, (9, 1), strides=(2, 1), padding="same", use_bias=False)(x)
        y = _bn_relu(L, y)
        y = L.Conv2D(channels, (9, 1), padding="same", use_bias=False)(y)
        y = L.BatchNormalization(momentum=_BN_MOMENTUM)(y)
        s = L.Conv2D(channels, (1, 1), strides=(2, 1), padding="same", use_bias=False)(x)
        s = _bn_relu(L, s)
        x = L.ReLU()(L.Add()([y, s]))
    x = L.Dropout(cfg.dropout)(x)
    x = L.AveragePooling2D(pool_size=(x.shape[1], 1))(x)
    x = L.Flatten()(x)
    x = L.Dense(n_classes)(x)
    return keras.Model(inp, L.Softmax()(x), name="tc_resnet")


ARCHITECTURES: dict[str, ArchitectureSpec] = {
    "ds_cnn": ArchitectureSpec("ds_cnn", _ds_cnn, ModelConfig("ds_cnn", width=64, depth=4, dropout=0.2),
                               "depthwise-separable CNN, width/depth configurable"),
    "ds_cnn_mlperf": ArchitectureSpec("ds_cnn_mlperf", _ds_cnn,
                                      ModelConfig("ds_cnn_mlperf", width=64, depth=4, dropout=0.2),
                                      "MLPerf Tiny DS-CNN reference (64 filters, 4 blocks)"),
    "tiny_conv": ArchitectureSpec("tiny_conv", _tiny_conv, ModelConfig("tiny_conv", width=8, depth=0, dropout=0.1),
                                  "TensorFlow micro_speech tiny_conv (one conv, 8 filters)"),
    "tc_resnet": ArchitectureSpec("tc_resnet", _tc_resnet, ModelConfig("tc_resnet", width=16, depth=3, dropout=0.1),
                                  "temporal-convolution ResNet (TC-ResNet8-like)"),
}


def _tcn(cfg: ModelConfig, input_shape: tuple[int, int], n_classes: int, batch_size: int | None):
    from .streaming_model import keras_builder  # the streamable TCN (window form); converts to a streaming model

    return keras_builder(cfg, input_shape, n_classes, batch_size)


ARCHITECTURES["tcn"] = ArchitectureSpec(
    "tcn", _tcn, ModelConfig("tcn", width=32, depth=5, dropout=0.1),
    "streamable temporal convolution network (causal depthwise-separable, cepstra as channels)", streamable=True)


def streamable_architectures() -> tuple[str, ...]:
    """The architectures whose streaming form ``kws-convert --streaming`` makes."""
    return tuple(name for name, spec in ARCHITECTURES.items() if spec.streamable)


def _spec(cfg: ModelConfig) -> ArchitectureSpec:
    try:
        return ARCHITECTURES[cfg.architecture]
    except KeyError:
        raise ConfigError(
            f"unknown model architecture {cfg.architecture!r}; choose one of {', '.join(ARCHITECTURES)}"
        ) from None


def preset(name: str) -> ModelConfig:
    """The default :class:`ModelConfig` of architecture ``name``."""
    return _spec(ModelConfig(architecture=name)).preset


def build_model(cfg: ModelConfig, input_shape: tuple[int, int], n_classes: int = 4, *,
                batch_size: int | None = None):
    """A fresh (untrained, uncompiled) Keras model; dynamic batch unless ``batch_size``."""
    spec = _spec(cfg)
    if spec.name == "ds_cnn_mlperf":
        cfg = dataclasses.replace(spec.preset, dropout=cfg.dropout)
    return spec.builder(cfg, tuple(input_shape), int(n_classes), batch_size)


def build_inference_model(cfg: ModelConfig, input_shape: tuple[int, int], n_classes: int = 4, *, weights=None):
    """The batch-1 graph for conversion; ``weights`` (a list or a trained model) are copied in."""
    model = build_model(cfg, input_shape, n_classes, batch_size=1)
    if weights is not None:
        model.set_weights(weights.get_weights() if hasattr(weights, "get_weights") else weights)
    return model


def inference_clone(model, cfg: ModelConfig):
    """Batch-1 copy of a trained model (same architecture config), weights copied."""
    frames, coeffs = model.input_shape[1:3]
    return build_inference_model(cfg, (frames, coeffs), model.output_shape[-1], weights=model)
