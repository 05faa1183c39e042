"""Keras model -> TFLite flatbuffer (full-integer int8, or float32).

The recipe (measured in ../shared/ENVIRONMENT.md, TF 2.21 / Keras 3):

* convert a **batch-1 clone** of the trained model (weights copied with
  ``set_weights``): with a dynamic batch, Flatten/Reshape add SHAPE,
  STRIDED_SLICE and PACK operators a microcontroller does not want;
* ``TFLiteConverter.from_keras_model``; for int8 ``Optimize.DEFAULT``, a
  representative dataset of *normalised* features (exactly
  :meth:`kws_edge.features.Normalization.apply`, as the runtime feeds the
  model), ``TFLITE_BUILTINS_INT8`` only and int8 input and output, so an
  operator without an int8 kernel fails here rather than on the device;
* custom ops stay off (``allow_custom_ops = False``) for the same reason;
* weights are quantised per output channel (the converter's default) unless
  ``per_channel=False``: then one scale per weight tensor. Each per-channel
  tensor carries a float32 scale and an int64 zero point per channel, 12 bytes
  a channel: 7.3 KB (a third) of a 28-channel ``tcn``'s 22.5 KB file. LiteRT
  runs both (tested); TFLite's convolution kernels, shared with TFLite Micro
  (``PopulateConvolutionQuantizationParams``), take one scale or one per
  channel (not run on a microcontroller here). RESULTS.md, phase 5, has what
  it costs in accuracy.

``from_keras_model`` prints a large "Saved artifact at ..." block and the
TFLite C++ converter logs to stderr; both are captured and only shown (the
tail) when conversion fails. TensorFlow is imported inside the functions.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal, Optional

import numpy as np

from kws_edge.errors import ConfigError, ConversionError
from kws_edge.features import Normalization
from kws_edge.training.tf_import import captured_output, import_keras, import_tensorflow

__all__ = ["convert_keras", "batch1_clone", "QUANTIZE_MODES", "strip_tensor_names", "configure_int8"]

QUANTIZE_MODES = ("int8", "float32")


def batch1_clone(model: Any) -> Any:
    """The same graph with a fixed batch size of 1 and the trained weights copied across."""
    keras = import_keras("conversion")

    if len(model.inputs) != 1:
        raise ConversionError(f"the model has {len(model.inputs)} inputs; kws-convert handles one")
    shape = tuple(model.inputs[0].shape[1:])
    try:
        clone = keras.models.clone_model(model, input_tensors=keras.Input(shape=shape, batch_size=1))
        clone.set_weights(model.get_weights())
    except Exception as exc:  # Keras raises many types for graphs it cannot clone
        raise ConversionError(
            f"cannot build a batch-1 copy of the model ({type(exc).__name__}: {exc}); "
            "build it with kws_edge.training.models.build_inference_model instead"
        ) from None
    return clone


def _samples(x: np.ndarray, input_shape: tuple[int, ...]) -> np.ndarray:
    """(N, ...) features reshaped to N samples of the model's batch-1 input shape."""
    x = np.asarray(x, np.float32)
    per = int(np.prod(input_shape[1:]))
    if x.ndim < 2 or int(np.prod(x.shape[1:])) != per:
        raise ConversionError(
            f"features of shape {list(x.shape[1:])} do not fit the model input {list(input_shape[1:])}; "
            "the run's arrays and model come from different feature settings"
        )
    return x.reshape((x.shape[0], 1) + tuple(input_shape[1:]))


def configure_int8(converter: Any, representative: Any, *, per_channel: bool = True) -> None:
    """Set ``converter`` (a ``tf.lite.TFLiteConverter``) to full-integer int8 with int8 input and output.

    ``representative`` is the converter's representative-dataset callable. Builtin int8 kernels only, so
    an operator without one fails here, not on the device. ``per_channel=False`` gives every weight
    tensor one scale (``_experimental_disable_per_channel``: the converter's own switch, private in
    TF 2.21; tests/converters/test_quantize_per_tensor.py fails if it stops taking effect).
    """
    tf = import_tensorflow("conversion")

    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    converter._experimental_disable_per_channel = not per_channel


def convert_keras(
    model: Any,
    representative_x: Optional[np.ndarray],
    quantize: Literal["int8", "float32"] = "int8",
    *,
    normalization: Optional[Normalization] = None,
    clone: bool = True,
    strip_names: bool = False,
    per_channel: bool = True,
) -> bytes:
    """Convert a Keras model to a ``.tflite`` flatbuffer.

    Parameters
    ----------
    model : keras.Model with one input (a dynamic batch is fine: a batch-1 clone is converted)
    representative_x : np.ndarray [shape=(n, frames, n_cepstra), dtype=float32]
        Calibration features for int8; normalised already, or raw with ``normalization`` given.
        Not used for float32.
    quantize : "int8" (full integer, int8 input and output) or "float32"
    normalization : applied to ``representative_x`` when given (the runtime's exact transform)
    clone : convert a batch-1 clone (default) rather than ``model`` itself
    strip_names : blank every tensor name (see :func:`strip_tensor_names`)
    per_channel : int8 weights with one scale per output channel (default) or, if false, per tensor

    Returns
    -------
    bytes : the flatbuffer
    """
    if quantize not in QUANTIZE_MODES:
        raise ConfigError(f"quantize={quantize!r} must be one of {', '.join(QUANTIZE_MODES)}")
    tf = import_tensorflow("conversion")
    m = batch1_clone(model) if clone else model
    input_shape = tuple(int(d) if d is not None else 1 for d in m.inputs[0].shape)
    converter = tf.lite.TFLiteConverter.from_keras_model(m)
    converter.allow_custom_ops = False  # an op the device lacks must fail here, not on the device
    if quantize == "int8":
        if representative_x is None or len(representative_x) == 0:
            raise ConversionError(
                "int8 conversion needs a representative set of at least one clip; "
                "the run's arrays/representative.npz is empty (re-run training) or use --quantize float32"
            )
        x = np.asarray(representative_x, np.float32)
        if normalization is not None:
            x = normalization.apply(x)
        samples = _samples(x, input_shape)
        if not np.all(np.isfinite(samples)):
            raise ConversionError("the representative features contain NaN or infinite values")

        def representative() -> Iterator[list[np.ndarray]]:
            for sample in samples:
                yield [sample]

        configure_int8(converter, representative, per_channel=per_channel)
    import warnings

    with captured_output() as log, warnings.catch_warnings():
        # "Statistics for quantized inputs were expected, but not specified; continuing anyway." is harmless
        warnings.simplefilter("ignore")
        try:
            flatbuffer = converter.convert()
        except Exception as exc:
            error = exc
        else:
            error = None
    if error is not None:
        tail = " | ".join(line for line in log[0].splitlines()[-5:] if line.strip()) if log else ""
        raise ConversionError(
            f"TFLite conversion ({quantize}) failed: {type(error).__name__}: {str(error).strip()[:400]}"
            + (f" [converter log: {tail[:400]}]" if tail else "")
        ) from None
    return strip_tensor_names(bytes(flatbuffer)) if strip_names else bytes(flatbuffer)


def strip_tensor_names(flatbuffer: bytes) -> bytes:
    """The same model with every tensor name blanked.

    Names are debugging aids only: interpreters (LiteRT, TFLite Micro) address
    tensors by index and signatures keep their own keys. On a small model they
    are a large share of the file (about 4.7 KB of 27 KB for the 7k-parameter
    ``tcn`` of the default bundle).
    """
    # TensorFlow's copy of the flatbuffer tools (the converter has TensorFlow; the runtime's ai-edge-litert
    # 1.x, installed on devices for its size, has no tools package)
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(flatbuffer))
    for graph in model.subgraphs:
        for tensor in graph.tensors:
            tensor.name = ""
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))
