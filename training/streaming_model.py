"""A streamable keyword model, written once, built in two modes.

The architecture (``tcn``: a temporal convolution network) uses only valid,
causal convolutions along time, so the output at frame ``t`` depends on the
frames ``t - receptive_field + 1 .. t`` and on nothing else. That one property
gives two forms with the same weights:

* :attr:`Mode.NON_STREAM`: the normal window model, input
  ``(batch, frames_per_clip, n_cepstra)`` -> class probabilities
  ``(batch, n_labels)``. It trains, converts and runs like any other model of
  the project (the receptive field is exactly one clip).
* :attr:`Mode.STREAM_EXTERNAL`: the streaming model. Inputs: the newest
  ``block_frames`` feature frames preceded by ``first_kernel_frames - 1``
  frames of context, ``(1, block_frames + context_frames, n_cepstra)``, and
  the packed state ``(1, state_size)``. Outputs: class probabilities for each
  of the ``block_frames`` new frames ``(1, block_frames, n_labels)`` and the
  new packed state ``(1, state_size)``. The state is every layer's ring buffer
  (the last ``(kernel - 1) * dilation`` frames of its input) flattened and
  concatenated into ONE tensor, so the runtime copies one array per call and
  the model runs on every interpreter (no variables, no custom ops).

Layout (time is the height axis, width 1, features are channels)::

    frames (T+k0-1, C) -> reshape (T+k0-1, C, 1)
      -> Conv2D (k0 x C, valid) -> BN -> ReLU6                     [no state: the runtime keeps k0-1 frames]
      -> n x [DepthwiseConv2D (k x 1, dilation d, valid) -> BN -> ReLU6
              -> Conv2D 1x1 -> BN -> (+ input) -> ReLU6]           [state: (k-1)*d frames x channels]
      -> AveragePooling over the remaining P frames                [state: P-1 frames x channels]
      -> Conv2D 1x1 -> n_labels logits -> softmax

ReLU6 bounds every buffered activation to [0, 6], so one int8 scale serves the
whole packed state (which is why the head averages features, not logits); the
first layer's context (normalised MFCC, another range) is kept by the runtime
instead of the state.

TensorFlow is imported lazily inside the functions.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

import numpy as np

from kws_edge.errors import ConfigError
from .tf_import import import_keras

__all__ = [
    "Mode",
    "TcnConfig",
    "LayerState",
    "StreamingLayout",
    "layout",
    "build",
    "build_window_model",
    "build_streaming_model",
    "to_streaming",
    "run_streaming_keras",
    "ARCHITECTURE_NAME",
    "tcn_config",
    "keras_builder",
    "initial_state",
    "to_window",
]

ARCHITECTURE_NAME = "tcn"


class Mode(enum.Enum):
    """How a model is built (the kws_streaming modes that apply here)."""

    TRAINING = "training"
    NON_STREAM = "non_stream"
    STREAM_EXTERNAL = "stream_external"


@dataclass(frozen=True)
class TcnConfig:
    """Hyper-parameters of the streamable temporal convolution network.

    Attributes
    ----------
    n_frames : frames per clip (window model input length); 49 at the default features
    n_cepstra : coefficients per frame
    n_labels : output classes
    filters : channels of every convolution
    first_kernel_frames : time extent of the first (full-width) convolution
    block_kernel_frames : time kernel of each depthwise block
    block_dilations : time dilation of each depthwise block (same length as block_kernel_frames)
    dropout : dropout before the classifier (training only)
    block_frames : new frames per streaming call (the streaming model's time step)
    stem_channels : 0 (default): the first convolution spans all cepstra. Otherwise a 2D stem: the first
        convolution (``first_kernel_frames`` x ``stem_cepstra``, ``stem_channels`` filters) slides over
        the cepstra too, and a ``stem_mix`` convolution (1 frame x the remaining positions) maps its
        output to ``filters`` channels. Time kernel 1 after the first convolution, so the streaming
        form needs no state for it.
    stem_cepstra : the stem's kernel along the cepstra
    """

    n_frames: int = 49
    n_cepstra: int = 10
    n_labels: int = 4
    filters: int = 64
    first_kernel_frames: int = 5
    block_kernel_frames: tuple[int, ...] = (3, 3, 3, 3, 3)
    block_dilations: tuple[int, ...] = (1, 2, 4, 4, 4)
    dropout: float = 0.1
    block_frames: int = 5
    stem_channels: int = 0
    stem_cepstra: int = 3

    def __post_init__(self) -> None:
        if len(self.block_kernel_frames) != len(self.block_dilations):
            raise ConfigError(
                f"block_kernel_frames ({len(self.block_kernel_frames)}) and block_dilations "
                f"({len(self.block_dilations)}) must have the same length"
            )
        for name in ("n_frames", "n_cepstra", "n_labels", "filters", "first_kernel_frames", "block_frames"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)} must be >= 1")
        if any(k < 1 for k in self.block_kernel_frames) or any(d < 1 for d in self.block_dilations):
            raise ConfigError("block kernels and dilations must all be >= 1")
        if self.pool_frames < 1:
            raise ConfigError(
                f"the convolutions see {self.conv_receptive_field_frames} frames, more than the clip's "
                f"{self.n_frames}; use smaller kernels or dilations"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout={self.dropout} must be in [0, 1)")
        if self.stem_channels < 0 or not 1 <= self.stem_cepstra <= self.n_cepstra:
            raise ConfigError(f"stem_channels={self.stem_channels} must be >= 0 and stem_cepstra="
                              f"{self.stem_cepstra} within 1..n_cepstra ({self.n_cepstra})")

    @property
    def conv_receptive_field_frames(self) -> int:
        return self.first_kernel_frames + sum(
            (k - 1) * d for k, d in zip(self.block_kernel_frames, self.block_dilations, strict=True)
        )

    @property
    def pool_frames(self) -> int:
        """Frames of the last feature map averaged by the head (makes the receptive field one clip)."""
        return self.n_frames - self.conv_receptive_field_frames + 1

    @property
    def receptive_field_frames(self) -> int:
        return self.conv_receptive_field_frames + self.pool_frames - 1

    @property
    def context_frames(self) -> int:
        """Old frames the streaming model's frame input carries before the new ones."""
        return self.first_kernel_frames - 1


@dataclass(frozen=True)
class LayerState:
    """One ring buffer inside the packed state."""

    name: str
    frames: int
    channels: int
    offset: int

    @property
    def size(self) -> int:
        return self.frames * self.channels


@dataclass(frozen=True)
class StreamingLayout:
    """Where each layer's buffer lives in the packed state vector."""

    buffers: tuple[LayerState, ...]

    @property
    def state_size(self) -> int:
        return sum(b.size for b in self.buffers)


def layout(config: TcnConfig) -> StreamingLayout:
    """The packed-state layout of ``config``'s streaming model."""
    buffers = []
    offset = 0
    for i, (k, d) in enumerate(zip(config.block_kernel_frames, config.block_dilations, strict=True)):
        n = (k - 1) * d
        if n:
            buffers.append(LayerState(f"block{i}_dw", n, config.filters, offset))
            offset += n * config.filters
    if config.pool_frames > 1:
        buffers.append(LayerState("head_pool", config.pool_frames - 1, config.filters, offset))
    return StreamingLayout(tuple(buffers))


def _time_slice(x: Any, start: int | None, stop: int | None) -> Any:
    return x[:, start:stop]


def build(config: TcnConfig, mode: Mode = Mode.NON_STREAM, *, batch_size: int | None = None) -> Any:
    """Build the Keras model of ``config`` in ``mode``.

    ``TRAINING`` and ``NON_STREAM`` give the same graph (dropout is active only
    while fitting); ``batch_size=1`` gives the batch-1 graph the converter wants.
    ``STREAM_EXTERNAL`` always has batch size 1.
    """
    keras = import_keras()
    from keras import layers

    stream = mode is Mode.STREAM_EXTERNAL
    c = config
    if stream:
        n_in = c.block_frames + c.context_frames
        frames_in = keras.Input(shape=(n_in, c.n_cepstra), batch_size=1, name="frames")
        state_in = keras.Input(shape=(layout(c).state_size,), batch_size=1, name="state")
        states = {b.name: b for b in layout(c).buffers}
        new_states: list[Any] = []
    else:
        n_in = c.n_frames
        frames_in = keras.Input(shape=(n_in, c.n_cepstra), batch_size=batch_size, name="features")

    def streamed(x: Any, name: str) -> Any:
        """Prepend the layer's ring buffer to ``x`` and record its next content."""
        if not stream or name not in states:
            return x
        b = states[name]
        buf = layers.Reshape((b.frames, 1, b.channels), name=f"{name}_state_in")(
            state_in[:, b.offset:b.offset + b.size])
        joined = layers.Concatenate(axis=1, name=f"{name}_join")([buf, x])
        new_states.append(layers.Reshape((b.size,), name=f"{name}_state_out")(joined[:, -b.frames:]))
        return joined

    x = layers.Reshape((n_in, c.n_cepstra, 1), name="channel_axis")(frames_in)
    if c.stem_channels:
        x = layers.Conv2D(c.stem_channels, (c.first_kernel_frames, c.stem_cepstra), padding="valid",
                          use_bias=False, name="first_conv")(x)
        x = layers.BatchNormalization(name="stem_bn")(x)
        x = layers.ReLU(max_value=6.0, name="stem_relu")(x)
        x = layers.Conv2D(c.filters, (1, c.n_cepstra - c.stem_cepstra + 1), padding="valid", use_bias=False,
                          name="stem_mix")(x)
    else:
        x = layers.Conv2D(c.filters, (c.first_kernel_frames, c.n_cepstra), padding="valid", use_bias=False,
                          name="first_conv")(x)
    x = layers.BatchNormalization(name="first_bn")(x)
    x = layers.ReLU(max_value=6.0, name="first_relu")(x)
    for i, (k, d) in enumerate(zip(c.block_kernel_frames, c.block_dilations, strict=True)):
        shortcut = x
        y = streamed(x, f"block{i}_dw")
        y = layers.DepthwiseConv2D((k, 1), dilation_rate=(d, 1), padding="valid", use_bias=False,
                                   name=f"block{i}_dw")(y)
        y = layers.BatchNormalization(name=f"block{i}_dw_bn")(y)
        y = layers.ReLU(max_value=6.0, name=f"block{i}_dw_relu")(y)
        y = layers.Conv2D(c.filters, 1, use_bias=False, name=f"block{i}_pw")(y)
        y = layers.BatchNormalization(name=f"block{i}_pw_bn")(y)
        trim = (k - 1) * d
        if not stream and trim:
            shortcut = shortcut[:, trim:]
        y = layers.Add(name=f"block{i}_add")([y, shortcut])
        x = layers.ReLU(max_value=6.0, name=f"block{i}_relu")(y)
    if c.dropout and not stream:
        x = layers.Dropout(c.dropout, name="dropout")(x)
    x = streamed(x, "head_pool")
    pooled = layers.AveragePooling2D((c.pool_frames, 1), strides=(1, 1), padding="valid", name="head_pool")(x)
    pooled = layers.Conv2D(c.n_labels, 1, name="classifier")(pooled)
    if stream:
        probs = layers.Softmax(name="probs")(layers.Reshape((c.block_frames, c.n_labels), name="per_frame")(pooled))
        if len(new_states) > 1:
            state_out = layers.Concatenate(axis=1, name="state_out")(new_states)
        else:
            state_out = layers.Identity(name="state_out")(new_states[0])
        return keras.Model([frames_in, state_in], [probs, state_out], name=f"{ARCHITECTURE_NAME}_stream")
    probs = layers.Softmax(name="probs")(layers.Flatten(name="flatten")(pooled))
    return keras.Model(frames_in, probs, name=ARCHITECTURE_NAME)


def tcn_config(width: int, depth: int, dropout: float, input_shape: tuple[int, int], n_classes: int,
               *, block_frames: int = 5, stem_channels: int = 0) -> TcnConfig:
    """The ``tcn`` configuration for the training registry's (width, depth, dropout) knobs.

    ``depth`` blocks of kernel 3 with dilations 1, 2, 4, 4, ... (capped so the
    convolutions never see more than about two thirds of the clip).
    """
    frames, coeffs = (int(v) for v in input_shape)
    first = 5
    dilations: list[int] = []
    rf = first
    for i in range(depth):
        d = min(2 ** i, 4)
        while d > 1 and rf + 2 * d > (2 * frames) // 3:
            d //= 2
        if rf + 2 * d > frames:
            raise ConfigError(f"depth={depth} blocks do not fit a clip of {frames} frames; use a smaller depth")
        dilations.append(d)
        rf += 2 * d
    return TcnConfig(n_frames=frames, n_cepstra=coeffs, n_labels=int(n_classes), filters=int(width),
                     first_kernel_frames=first, block_kernel_frames=(3,) * depth, block_dilations=tuple(dilations),
                     dropout=float(dropout), block_frames=block_frames, stem_channels=int(stem_channels))


def keras_builder(cfg: Any, input_shape: tuple[int, int], n_classes: int, batch_size: int | None) -> Any:
    """Builder with the signature of ``kws_edge.training.models.ARCHITECTURES`` (``ModelConfig`` knobs)."""
    return build(tcn_config(cfg.width, cfg.depth, cfg.dropout, input_shape, n_classes,
                            stem_channels=cfg.stem_channels), Mode.NON_STREAM, batch_size=batch_size)


def build_window_model(config: TcnConfig, *, batch_size: int | None = None) -> Any:
    return build(config, Mode.NON_STREAM, batch_size=batch_size)


def build_streaming_model(config: TcnConfig) -> Any:
    return build(config, Mode.STREAM_EXTERNAL)


def _copy_weights(src: Any, dst: Any) -> None:
    copied = 0
    for layer in dst.layers:
        if not layer.weights:
            continue
        layer.set_weights(src.get_layer(layer.name).get_weights())
        copied += 1
    if copied == 0:
        raise ConfigError("no weights were copied; the two models do not share layer names")


def to_streaming(window_model: Any, config: TcnConfig) -> Any:
    """The streaming model of a trained window model: same layers, weights copied by name."""
    model = build_streaming_model(config)
    _copy_weights(window_model, model)
    return model


def to_window(model: Any, config: TcnConfig, *, batch_size: int | None = 1) -> Any:
    """A (batch-1) clone of a trained window model, for conversion."""
    clone = build_window_model(config, batch_size=batch_size)
    _copy_weights(model, clone)
    return clone


def initial_state(config: TcnConfig) -> np.ndarray:
    """The zero state the streaming model starts from, ``(1, state_size)`` float32."""
    return np.zeros((1, layout(config).state_size), np.float32)


def run_streaming_keras(stream_model: Any, features: np.ndarray, config: TcnConfig,
                        *, return_states: bool = False) -> Any:
    """Run a float streaming Keras model over a feature sequence, block by block.

    Parameters
    ----------
    features : np.ndarray [shape=(n_frames, n_cepstra), normalised]
        The whole stream; only complete blocks are processed.

    Returns
    -------
    np.ndarray [shape=(n_blocks * block_frames, n_labels)]
        Row ``t`` is the output for frame ``t + context_frames`` of ``features``
        (valid once ``t + context_frames >= n_frames - 1``). With
        ``return_states``, also the list of states fed to each call.
    """
    c = config
    n = (len(features) - c.context_frames) // c.block_frames
    state = initial_state(c)
    outs, states = [], []
    for i in range(n):
        start = i * c.block_frames
        frames = features[start:start + c.block_frames + c.context_frames][None, :, :, None].astype(np.float32)
        states.append(state)
        probs, state = stream_model([frames, state], training=False)
        probs, state = np.asarray(probs), np.asarray(state)
        outs.append(probs[0])
    result = np.concatenate(outs) if outs else np.zeros((0, c.n_labels), np.float32)
    return (result, states) if return_states else result
