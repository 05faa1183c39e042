"""The parity gate: the float model as trained against a converted model, on the same clips.

Predictions come from the Keras model (:func:`keras_predict`) and from the converted TFLite model
through the runtime's own :class:`kws_edge.Engine`: the window model clip by clip
(:func:`window_predict`), the streaming model fed each clip's frames block by block from its zero
state, closed loop, the last frame's probabilities being the clip's (:func:`streaming_predict`; the
streaming model's receptive field is one clip, so that row sees exactly the clip). :func:`parity`
scores both with :func:`kws_edge.metrics.clip_metrics` and refuses a converted model whose accuracy
drops more than the gate allows.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from kws_edge.bundle.metrics import Parity
from kws_edge.config import from_dict
from kws_edge.engine import Engine
from kws_edge.errors import ConversionError
from kws_edge.metrics import ClipMetrics, clip_metrics

__all__ = ["keras_predict", "window_predict", "streaming_predict", "parity", "ParityResult"]


def keras_predict(model: Any, x: np.ndarray) -> np.ndarray:
    """Class probabilities of a Keras model for normalised clips ``x`` (n, frames, cepstra)."""
    shape = (len(x),) + tuple(int(d) for d in model.inputs[0].shape[1:])
    return np.asarray(model.predict(x.reshape(shape), batch_size=256, verbose=0))


def window_predict(model_bytes: bytes, x: np.ndarray) -> np.ndarray:
    """Class probabilities of a converted window model, clip by clip through the runtime's Engine."""
    engine = Engine(model_bytes, num_threads=1)
    return np.stack([engine.predict(clip) for clip in x]) if len(x) else np.zeros((0, 0), np.float32)


def streaming_predict(model_bytes: bytes, x: np.ndarray) -> np.ndarray:
    """Class probabilities of a converted streaming model at the last frame of each clip, from zero state."""
    from kws_edge.errors import ConversionError
    from kws_edge.streaming import StreamingIO

    engine = Engine(model_bytes, num_threads=1)
    io_ = StreamingIO(engine, error=ConversionError)
    block, context = io_.block_frames, io_.context_frames
    out = []
    for clip in np.asarray(x, np.float32):
        pad = (block - (len(clip) - context) % block) % block  # the last call must end on the clip's last frame
        frames = np.concatenate([np.zeros((pad, clip.shape[1]), np.float32), clip]) if pad else clip
        state = np.zeros(io_.state_in.shape, np.float32)
        probs = None
        for start in range(0, len(frames) - context, block):
            piece = frames[start:start + block + context].reshape(io_.frames.shape)
            result = engine.run(*(piece if t is io_.frames else state for t in engine.inputs))
            probs = result[engine.outputs.index(io_.probs)]
            state = result[engine.outputs.index(io_.state_out)].reshape(io_.state_in.shape)
        out.append(np.asarray(probs).reshape(block, -1)[-1])
    return np.stack(out) if out else np.zeros((0, 0), np.float32)


class ParityResult:
    """Clip metrics of both models and the :class:`~kws_edge.bundle.metrics.Parity` record."""

    def __init__(self, float_metrics: dict[str, Any], converted_metrics: dict[str, Any], record: Parity) -> None:
        self.float_metrics = float_metrics
        self.converted_metrics = converted_metrics
        self.record = record

    @property
    def argmax_agreement(self) -> float:
        return float(self.record.argmax_agreement or 0.0)

    @property
    def accuracy_drop_points(self) -> float:
        return float(self.record.accuracy_drop_points or 0.0)

    def clip_metrics(self) -> tuple[ClipMetrics, ClipMetrics]:
        return from_dict(ClipMetrics, self.float_metrics), from_dict(ClipMetrics, self.converted_metrics)


def parity(float_probs: np.ndarray, converted_probs: np.ndarray, y: np.ndarray, labels: Sequence[str],
           keywords: Sequence[str], *, max_accuracy_drop_points: float, quantize: str, converted_model: str,
           evaluated_on: str, validation: tuple[np.ndarray, np.ndarray] | None = None) -> ParityResult:
    """Score both models on ``y``; raise ``ConversionError`` (nothing written) when the drop is too large.

    ``validation`` (float and converted probabilities on more clips) adds their argmax agreement.
    """
    float_pred, conv_pred = float_probs.argmax(axis=1), converted_probs.argmax(axis=1)
    float_metrics = clip_metrics(y, float_pred, labels, keywords)
    conv_metrics = clip_metrics(y, conv_pred, labels, keywords)
    agreement = float(np.mean(float_pred == conv_pred))
    drop = 100.0 * (float_metrics["accuracy"] - conv_metrics["accuracy"])
    if drop > max_accuracy_drop_points:
        raise ConversionError(
            f"{quantize} {converted_model} accuracy {100 * conv_metrics['accuracy']:.2f}% is {drop:.2f} points below "
            f"the float model's {100 * float_metrics['accuracy']:.2f}% on {len(y)} test clips (limit "
            f"{max_accuracy_drop_points:g}); nothing written. Try more --representative clips, --quantize "
            "float32, or raise --max-accuracy-drop"
        )
    val_agreement = None
    if validation is not None and len(validation[0]):
        val_agreement = round(float(np.mean(validation[0].argmax(axis=1) == validation[1].argmax(axis=1))), 6)
    record = Parity(evaluated_on=evaluated_on, float_model="model.keras (Keras)",
                    converted_model=f"{converted_model} through kws_edge.Engine",
                    argmax_agreement=round(agreement, 6), accuracy_drop_points=round(drop, 4),
                    max_accuracy_drop_points=max_accuracy_drop_points, validation_argmax_agreement=val_agreement)
    return ParityResult(float_metrics, conv_metrics, record)
