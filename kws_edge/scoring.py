"""Scorers: raw MFCC frames in, class posteriors and the frames they end at out.

A :class:`Scorer` turns a stream of raw (un-normalised) MFCC frames into class
posteriors. Two implementations share one contract, so the detector, the
evaluators and the benchmarks treat them alike:

* :class:`WindowScorer` runs the bundle's window model on the last
  ``frames_per_clip`` frames every ``stride_hops`` frames;
* :class:`kws_edge.streaming.StreamingScorer` runs the bundle's stateful
  streaming model on blocks of new frames (optionally behind an energy gate).

Each call returns a :class:`Scores`: the posterior rows that became available
and, for each row, the number of frames received up to and including the last
frame of its window (its *frame count*). Row ``i`` belongs to frame count
``first_frame + i * step_frames``; the window ending there covers stream samples
up to ``(count - 1) * hop + window`` (:meth:`Scores.end_samples`). Rows start
at the first complete window (``frame count == frames_per_clip``).

Model input preparation (normalise with the bundle's statistics, then quantise
to the input tensor's storage type) is :class:`FrameQuantizer`, defined here
once for both models; the converter's parity checks use it too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple, Protocol, runtime_checkable

import numpy as np

from .engine import Engine, TensorInfo
from .errors import BundleError, ConfigError
from .features import Normalization

if TYPE_CHECKING:  # pragma: no cover
    from .model import KwsModel

__all__ = ["Scorer", "Scores", "FrameQuantizer", "WindowScorer", "dequantize_table", "bind_tensors"]

try:  # numpy >= 1.17 has clip as a ufunc: one call instead of np.clip's Python layers
    from numpy._core.umath import clip as _clip
except ImportError:  # pragma: no cover - numpy < 2
    try:
        from numpy.core.umath import clip as _clip
    except ImportError:
        _clip = None


class Scores(NamedTuple):
    """Posterior rows from one :meth:`Scorer.score` call.

    Attributes
    ----------
    posteriors : np.ndarray [shape=(m, n_labels), float32]
        Class probabilities, one row per evaluated window (a view the scorer does not write again).
    first_frame : int
        Frame count of row 0: frames received up to and including the last frame of its window.
    step_frames : int
        Frames between consecutive rows (1 for the streaming model, ``stride_hops`` for the window model).
    silence_only : bool
        Every row is the one-hot ``_silence_`` row of an energy gate (the model did not run).
    """

    posteriors: np.ndarray
    first_frame: int
    step_frames: int = 1
    silence_only: bool = False

    @property
    def frame_counts(self) -> np.ndarray:
        """Frame count of every row [shape=(m,), int64]."""
        return self.first_frame + self.step_frames * np.arange(len(self.posteriors), dtype=np.int64)

    def end_samples(self, *, window_samples: int, hop_samples: int) -> np.ndarray:
        """Stream sample at which each row's window ends (exclusive) [shape=(m,), int64]."""
        return (self.frame_counts - 1) * hop_samples + window_samples

    def every(self, stride: int, *, first_window_frames: int) -> "Scores":
        """The rows whose frame count is ``first_window_frames + k * stride`` (the detector's evaluated hops)."""
        if stride == 1 or self.step_frames == stride or not len(self.posteriors):
            return self
        if self.step_frames != 1:
            raise ConfigError(f"cannot take every {stride}th row of rows {self.step_frames} frames apart")
        skip = (first_window_frames - self.first_frame) % stride
        return Scores(self.posteriors[skip::stride], self.first_frame + skip, stride, self.silence_only)


@runtime_checkable
class Scorer(Protocol):
    """What the detector needs of a model runner.

    Attributes
    ----------
    labels : class names in output order
    window_frames : frames of one complete window (the frame count of the first row)
    engine : the :class:`~kws_edge.engine.Engine` that runs (its ``backend`` names the interpreter)
    """

    labels: tuple[str, ...]
    window_frames: int
    engine: Engine

    def score(self, frames: np.ndarray) -> Scores:
        """Feed raw MFCC frames ``(n, n_cepstra)`` (float32); return the rows that became available."""
        ...

    def frames_due(self) -> int:
        """New frames that complete the scorer's next call's worth of rows (>= 1).

        A caller may hold audio until the MFCC completes them: fewer, larger
        calls; the rows are the same whatever the frames per call.
        """
        ...

    def reset(self) -> None:
        """Forget every frame; the next one starts a new stream."""
        ...


class FrameQuantizer:
    """Model input preparation, defined once: normalise raw MFCC frames, quantise them to the input's type.

    ``round((x - mean) / std / scale) + zero_point``, clipped to the type's range,
    for int8/int16 inputs; ``(x - mean) / std`` for float inputs. The
    normalise-and-quantise steps are folded into one multiply-add in float32
    (``x * gain + offset``): fewer numpy calls, the same numbers as the two
    steps up to float32 rounding at a half step.

    Parameters
    ----------
    normalization : the bundle's statistics
    tensor : the model input it feeds (scale, zero point and type read from the model)
    """

    def __init__(self, normalization: Normalization, tensor: TensorInfo) -> None:
        mean, inv_std = (np.asarray(a, np.float32) for a in normalization._arrays)
        self.tensor = tensor
        self.dtype = np.dtype(tensor.dtype)
        self.quantized = tensor.quantized
        if self.quantized:
            self._gain = (inv_std / np.float32(tensor.scale)).astype(np.float32)
            self._offset = (np.float32(tensor.zero_point) - mean * self._gain).astype(np.float32)
            info = np.iinfo(self.dtype)
            self._low, self._high = float(info.min), float(info.max)
        else:
            self._mean, self._inv_std = mean, inv_std
        self._scratch = np.empty((16, len(mean)), np.float32)

    def __call__(self, frames: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Prepared frames, same shape, in the input's storage type (written into ``out`` when given)."""
        frames = np.asarray(frames, np.float32)
        if not self.quantized:
            x = (frames - self._mean) * self._inv_std
            if out is None:
                return x.astype(self.dtype, copy=False)
            out[...] = x
            return out
        n = len(frames)
        if n > len(self._scratch):
            self._scratch = np.empty((2 * n, frames.shape[1]), np.float32)
        x = np.multiply(frames, self._gain, out=self._scratch[:n])
        np.add(x, self._offset, out=x)
        np.rint(x, out=x)
        if out is None:
            out = np.empty(frames.shape, self.dtype)
        if _clip is not None:  # clip and store in one call (the values are whole numbers in range: exact)
            _clip(x, self._low, self._high, out=out, casting="unsafe")
        else:  # pragma: no cover - numpy without the clip ufunc
            np.maximum(x, self._low, out=x)
            np.minimum(x, self._high, out=x)
            out[...] = x
        return out


def dequantize_table(tensor: TensorInfo) -> np.ndarray | None:
    """float32 value of each of the 256 codes of an 8-bit quantised tensor, indexed by the code as uint8.

    ``table.take(raw.view(np.uint8))`` dequantises ``raw`` with one look-up per
    value (the values of :meth:`Engine.dequantize`). None for other tensors.
    """
    dtype = np.dtype(tensor.dtype)
    if not tensor.quantized:
        return None
    if dtype.itemsize != 1:
        raise BundleError(f"model output type {tensor.dtype} is not supported; use int8 or float32")
    codes = np.arange(256, dtype=np.uint8).view(dtype).astype(np.float32)
    return (codes - np.float32(tensor.zero_point)) * np.float32(tensor.scale)


def bind_tensors(engine: Engine, *tensors: TensorInfo) -> tuple[tuple[np.ndarray, ...], object]:
    """numpy views of the interpreter's own buffers for ``tensors``, and its native ``Invoke``.

    The hot loops write inputs into these views and read outputs from them
    (one numpy copy each) instead of ``set_tensor``/``get_tensor`` (Python and
    pybind11 layers, a new array per output). The buffers stay where they are
    for the interpreter's life: it is never resized or re-allocated after
    loading. ``invoke`` skips the Python wrapper's check for outstanding views
    (these are the views it would complain about). Falls back to copies through
    ``get_tensor``/``set_tensor`` where an interpreter has no ``tensor()`` views.
    """
    interp = engine._interp
    native = getattr(interp, "_interpreter", None)
    invoke = getattr(native, "Invoke", None)
    if not callable(invoke) or not callable(getattr(interp, "tensor", None)):  # pragma: no cover
        raise BundleError(f"the {engine.backend} interpreter offers no tensor views; use ai-edge-litert")
    return tuple(interp.tensor(t.index)() for t in tensors), invoke


class WindowScorer:
    """The bundle's window model on the last ``window_frames`` frames, every ``stride_hops`` frames.

    Frames are prepared (:class:`FrameQuantizer`) once, as they arrive, into a
    ring buffer written twice, so the latest window is always one contiguous
    slice, copied into the interpreter's input.

    Parameters
    ----------
    model : the bundle's :class:`~kws_edge.model.KwsModel`
    stride_hops : evaluate every this many frames, from the first complete window
    """

    def __init__(self, model: "KwsModel", *, stride_hops: int = 1) -> None:
        if int(stride_hops) != stride_hops or stride_hops < 1:
            raise ConfigError(f"stride_hops={stride_hops} must be a whole number >= 1")
        self.model = model
        self.engine = model.engine
        self.labels = tuple(model.labels)
        self.window_frames = model.window_frames
        self.stride_hops = int(stride_hops)
        self.quantizer = model.quantizer
        n_cepstra = model.features.n_cepstra
        self._ring = np.zeros((2 * self.window_frames, n_cepstra), self.quantizer.dtype)
        (self._input, self._output), self._invoke = bind_tensors(self.engine, model.input, model.output)
        self._input_rows = self._input.reshape(self.window_frames, n_cepstra)  # a view of the same buffer
        self._output_row = self._output.reshape(-1)
        table = dequantize_table(model.output)
        self._table = table
        self._no_rows = np.zeros((0, len(self.labels)), np.float32)
        self.reset()

    def reset(self) -> None:
        self._ring[:] = 0
        self._n_frames = 0

    def frames_due(self) -> int:
        n, stride = self.window_frames, self.stride_hops
        if self._n_frames < n:
            return n - self._n_frames
        return stride - (self._n_frames - n) % stride

    def score(self, frames: np.ndarray) -> Scores:
        n_new = len(frames)
        if not n_new:
            return Scores(self._no_rows, self._n_frames + 1, self.stride_hops)
        prepared = self.quantizer(frames)
        n, ring, stride = self.window_frames, self._ring, self.stride_hops
        rows = []
        first = 0
        invoke, window_in, out = self._invoke, self._input_rows, self._output_row
        count = self._n_frames
        for row in prepared:
            pos = count % n
            ring[pos] = row
            ring[pos + n] = row
            count += 1
            if count < n or (count - n) % stride:
                continue
            window_in[...] = ring[pos + 1:pos + 1 + n]
            invoke()
            if not rows:
                first = count
            rows.append(out.copy())
        self._n_frames = count
        self.engine.n_invocations += len(rows)
        if not rows:
            return Scores(self._no_rows, count + 1, stride)
        raw = np.stack(rows)
        post = self._table.take(raw.view(np.uint8)) if self._table is not None else raw.astype(np.float32)
        return Scores(post, first, stride)
