"""Conversion of the streaming form of a streamable model (``tcn``), state included.

The window model converts as usual. Its streaming twin
(:func:`kws_edge.training.streaming_model.to_streaming`) has two inputs, the
newest frames with their context and the packed state, and two outputs, the
per-frame class probabilities and the next state. For full-integer int8 the
calibration needs realistic *states*, not only realistic frames: we run the
float streaming model (as a TFLite float model, which is fast) over long
pseudo-streams built by concatenating representative clips, record the
state fed to every call, and calibrate on a seeded sample of those
(frames, state) pairs. The state is one tensor of ReLU6 outputs, so one
int8 scale fits all of it; the converter gives the state input and the state
output the same scale, and the runtime copies the int8 state as is (it
requantises when they differ).

The result is a plain TFLite flatbuffer with builtin ops only: CONV_2D,
DEPTHWISE_CONV_2D, CONCATENATION, STRIDED_SLICE, RESHAPE, ADD,
AVERAGE_POOL_2D, SOFTMAX; no variables and no custom ops, so it runs on
ai_edge_litert, tflite_runtime and TFLite Micro alike.

TensorFlow is imported lazily.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Literal

import numpy as np

from kws_edge.bundle import MANIFEST_NAME, ModelFile, TensorSpec, load_bundle, save_bundle, sha256_bytes
from kws_edge.bundle.provenance import ConversionRecord, StreamingConversionRecord
from kws_edge.engine import Engine
from kws_edge.errors import ConversionError
from kws_edge.features import Normalization
from kws_edge.streaming import StreamingIO
from kws_edge.training.tf_import import captured_output, import_keras, import_tensorflow

__all__ = [
    "STREAMING_MODEL_NAME",
    "StreamingConversionConfig",
    "StreamingConversion",
    "config_from_model",
    "convert_streaming",
    "pseudo_streams",
    "streaming_model_file",
    "attach_streaming_model",
    "TFLM_PARITY_CLIPS",
]

STREAMING_MODEL_NAME = "model_streaming.tflite"


@dataclass(frozen=True)
class StreamingConversionConfig:
    """Settings of the streaming conversion.

    Attributes
    ----------
    quantize : "int8" (full integer, int8 in and out) or "float32"
    n_representative : (frames, state) pairs used to calibrate int8
    n_streams : pseudo-streams the states are gathered from
    clips_per_stream : clips concatenated into one pseudo-stream
    block_frames : new frames per streaming call (None: the model config's)
    seed : picks the clips, their order and the calibration pairs
    per_channel : int8 weights with one scale per output channel (default) or per tensor
    strip_names : blank the tensor names of the model file
    """

    quantize: Literal["int8", "float32"] = "int8"
    n_representative: int = 400
    n_streams: int = 8
    clips_per_stream: int = 12
    block_frames: int | None = None
    seed: int = 0
    per_channel: bool = True
    strip_names: bool = False

    def __post_init__(self) -> None:
        if self.quantize not in ("int8", "float32"):
            raise ConversionError(f"quantize={self.quantize!r} must be 'int8' or 'float32'")
        for name in ("n_representative", "n_streams", "clips_per_stream"):
            if getattr(self, name) < 1:
                raise ConversionError(f"{name}={getattr(self, name)} must be >= 1")
        if self.block_frames is not None and self.block_frames < 1:
            raise ConversionError(f"block_frames={self.block_frames} must be >= 1")


@dataclass(frozen=True)
class StreamingConversion:
    """A converted streaming model and what was measured while making it."""

    model_bytes: bytes
    float_model_bytes: bytes
    quantize: str
    n_calibration: int
    state_size: int
    block_frames: int
    context_frames: int
    #: the streaming model measured in TFLite Micro (a .tflm.TflmCheck), for tflite-micro profiles
    tflm: Any = None


#: calibration clips concatenated into the long stream the TFLM parity check runs closed-loop
TFLM_PARITY_CLIPS = 60


def config_from_model(model: Any, *, block_frames: int = 5) -> Any:
    """Recover the :class:`TcnConfig` of a trained ``tcn`` Keras model from its layers."""
    from kws_edge.training.streaming_model import TcnConfig

    try:
        first = model.get_layer("first_conv")
        classifier = model.get_layer("classifier")
    except ValueError:
        raise ConversionError(
            f"model {model.name!r} is not a streamable 'tcn' model (no first_conv/classifier layers); "
            "train with --model tcn to get a streaming model"
        ) from None
    kernels, dilations = [], []
    i = 0
    while True:
        try:
            dw = model.get_layer(f"block{i}_dw")
        except ValueError:
            break
        kernels.append(int(dw.kernel_size[0]))
        dilations.append(int(dw.dilation_rate[0]))
        i += 1
    n_frames, n_cepstra = (int(v) for v in model.inputs[0].shape[1:3])
    dropout = 0.0
    with contextlib.suppress(ValueError):
        dropout = float(model.get_layer("dropout").rate)
    filters, stem = int(first.filters), {}
    with contextlib.suppress(ValueError):  # a 2D stem: first_conv slides over the cepstra, stem_mix widens
        filters = int(model.get_layer("stem_mix").filters)
        stem = dict(stem_channels=int(first.filters), stem_cepstra=int(first.kernel_size[1]))
    return TcnConfig(
        n_frames=n_frames, n_cepstra=n_cepstra, n_labels=int(classifier.filters), filters=filters,
        first_kernel_frames=int(first.kernel_size[0]), block_kernel_frames=tuple(kernels),
        block_dilations=tuple(dilations), dropout=dropout, block_frames=block_frames, **stem,
    )


def pseudo_streams(features: np.ndarray, *, n_streams: int, clips_per_stream: int, seed: int) -> list[np.ndarray]:
    """Concatenate randomly chosen clips' frames into ``n_streams`` long feature sequences.

    ``features`` is ``(n_clips, frames, n_cepstra)`` (normalised); each stream
    is ``(clips_per_stream * frames, n_cepstra)``.
    """
    features = np.asarray(features, np.float32)
    if features.ndim != 3 or len(features) == 0:
        raise ConversionError(
            f"representative features must be a non-empty (clips, frames, cepstra) array, got {features.shape}"
        )
    rng = np.random.default_rng(seed)
    return [features[rng.integers(0, len(features), clips_per_stream)].reshape(-1, features.shape[-1])
            for _ in range(n_streams)]


def _quiet_convert(converter: Any) -> bytes:
    """Convert without noise: Keras 3 prints a "Saved artifact at ..." block, the converter's C++ logs
    "fully_quantize: ..." and calibration warns that tf.lite.Interpreter is deprecated; library code does
    not print. On failure the last lines of that log go into the ConversionError."""
    import warnings

    with captured_output() as log, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return converter.convert()
        except Exception as exc:  # the converter raises many types; report one
            error = exc
    tail = " | ".join(line for line in (log[0] if log else "").splitlines()[-5:] if line.strip())
    raise ConversionError(f"TFLite conversion of the streaming model failed: {type(error).__name__}: "
                          f"{str(error).strip()[:400]}" + (f" [converter log: {tail[:400]}]" if tail else ""))


def _float_tflite(stream_model: Any) -> bytes:
    tf = import_tensorflow("conversion")

    converter = tf.lite.TFLiteConverter.from_keras_model(stream_model)
    return _quiet_convert(converter)


def gather_calibration(float_bytes: bytes, streams: list[np.ndarray], *, block_frames: int, context_frames: int,
                       n_pairs: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Run the float streaming model over ``streams``; sample ``n_pairs`` (frames, state) inputs it saw."""
    engine = Engine(float_bytes)
    io_ = StreamingIO(engine, error=ConversionError)
    pairs = []
    for stream in streams:
        state = np.zeros(io_.state_in.shape, np.float32)
        n_calls = (len(stream) - context_frames) // block_frames
        for i in range(n_calls):
            start = i * block_frames
            frames = stream[start:start + block_frames + context_frames].reshape(io_.frames.shape)
            pairs.append((frames.astype(np.float32), state))
            out = engine.run(*(frames if t is io_.frames else state for t in engine.inputs))
            state = out[engine.outputs.index(io_.state_out)].reshape(io_.state_in.shape)
    if not pairs:
        raise ConversionError("the representative streams are shorter than one streaming block")
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(pairs), size=min(n_pairs, len(pairs)), replace=False)
    return [pairs[i] for i in sorted(pick)]


def convert_streaming(window_model: Any, representative_features: np.ndarray,
                      config: StreamingConversionConfig = StreamingConversionConfig()) -> StreamingConversion:
    """Convert a trained ``tcn`` window model's streaming form to TFLite.

    Parameters
    ----------
    window_model : the trained Keras window model (any batch size)
    representative_features : np.ndarray [shape=(n_clips, frames, n_cepstra), normalised float32]
        Training clips in the same feature path as the runtime (already normalised).
    config : StreamingConversionConfig
    """
    tf = import_tensorflow("conversion")

    from kws_edge.training.streaming_model import layout, to_streaming

    from .quantize import configure_int8, strip_tensor_names

    tcn = config_from_model(window_model, block_frames=config.block_frames or 5)
    stream_model = to_streaming(window_model, tcn)
    float_bytes = _float_tflite(stream_model)
    if config.quantize == "float32":
        model_bytes = strip_tensor_names(float_bytes) if config.strip_names else float_bytes
        return StreamingConversion(model_bytes, float_bytes, "float32", 0, layout(tcn).state_size,
                                   tcn.block_frames, tcn.context_frames)
    streams = pseudo_streams(representative_features, n_streams=config.n_streams,
                             clips_per_stream=config.clips_per_stream, seed=config.seed)
    pairs = gather_calibration(float_bytes, streams, block_frames=tcn.block_frames,
                               context_frames=tcn.context_frames, n_pairs=config.n_representative, seed=config.seed)
    names = [t.name for t in stream_model.inputs]  # Keras input order: frames, state

    def representative() -> Iterator[dict[str, np.ndarray]]:
        for frames, state in pairs:
            yield dict(zip(names, (frames, state), strict=True))

    converter = tf.lite.TFLiteConverter.from_keras_model(stream_model)
    configure_int8(converter, representative, per_channel=config.per_channel)
    model_bytes = _quiet_convert(converter)
    if config.strip_names:
        model_bytes = strip_tensor_names(model_bytes)
    return StreamingConversion(model_bytes, float_bytes, "int8", len(pairs), layout(tcn).state_size,
                               tcn.block_frames, tcn.context_frames)


def _spec(info: Any) -> TensorSpec:
    return TensorSpec(shape=tuple(info.shape), dtype=info.dtype, scale=info.scale, zero_point=info.zero_point)


def streaming_model_file(model_bytes: bytes, *, file: str = STREAMING_MODEL_NAME, quantization: str = "int8") -> ModelFile:
    """The manifest entry of a streaming model: frames in, probabilities out, state as the extra input."""
    engine = Engine(model_bytes)
    io_ = StreamingIO(engine, error=ConversionError)
    return ModelFile(
        file=file, sha256=sha256_bytes(model_bytes), size_bytes=len(model_bytes),
        input=_spec(io_.frames), output=_spec(io_.probs), quantization=quantization,
        extra_inputs=(_spec(io_.state_in),),
    )


def attach_streaming_model(bundle_dir: str | Path, model_bytes: bytes, *, out_dir: str | Path | None = None,
                           quantization: str = "int8", record: StreamingConversionRecord | None = None,
                           overwrite: bool = False) -> Path:
    """Write a bundle that carries ``model_bytes`` as its streaming model (atomically).

    For a streaming model converted outside ``kws-convert --streaming`` (which writes both models at once).
    ``out_dir`` defaults to ``bundle_dir`` itself (replaced in place); ``record`` goes into
    ``provenance.conversion.streaming``. The budgets stay the window model's: check the bundle again
    (``kws bench``) for the model that now runs.
    """
    from .analysis import analyze_model

    bundle = load_bundle(bundle_dir)
    cost = analyze_model(model_bytes)
    spec = dataclasses.replace(streaming_model_file(model_bytes, quantization=quantization),
                               peak_activation_bytes=cost.peak_activation_bytes, weight_bytes=cost.weight_bytes,
                               macs_per_inference=cost.macs_per_inference, operators=cost.operators)
    engine = Engine(model_bytes)
    io_ = StreamingIO(engine, error=ConversionError)
    n_cepstra = bundle.manifest.features.n_cepstra
    if io_.frames.shape[2] != n_cepstra:
        raise ConversionError(
            f"streaming model takes {io_.frames.shape[2]} cepstra per frame but the bundle's features give "
            f"{n_cepstra}; convert the streaming model from the same run as the bundle"
        )
    provenance = bundle.manifest.provenance
    if record is not None:
        conversion = provenance.conversion or ConversionRecord()
        provenance = dataclasses.replace(provenance, conversion=dataclasses.replace(conversion, streaming=record))
    manifest = dataclasses.replace(bundle.manifest, streaming_model=spec, provenance=provenance)
    target = Path(out_dir) if out_dir is not None else Path(bundle_dir)
    in_place = target.resolve() == Path(bundle_dir).resolve()
    extra = {}
    for p in Path(bundle_dir).iterdir():
        if p.is_file() and p.name not in (MANIFEST_NAME, bundle.manifest.model.file, spec.file):
            extra[p.name] = p.read_bytes()
    save_bundle(target, manifest, bundle.model_bytes, streaming_model_bytes=model_bytes, extra_files=extra,
                overwrite=overwrite or in_place)
    return target
