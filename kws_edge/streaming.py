"""The streaming scorer: only the newest feature frames go through the model.

A bundle may carry, beside its window model, a *streaming model*
(``manifest.streaming_model``, written by ``kws-convert --streaming``). It is
the same network as the window model, rewritten with causal convolutions whose
ring buffers are an explicit state tensor (see
``kws_edge.training.streaming_model``). Its I/O contract, :class:`StreamingIO`
(the converter reads it from here too):

* input ``frames``: ``(1, context_frames + block_frames, n_cepstra)``, the
  newest ``block_frames`` prepared frames preceded by ``context_frames`` older
  ones;
* input ``state``: ``(1, state_size)`` (``manifest.streaming_model.extra_inputs[0]``);
* output probabilities ``(1, block_frames, n_labels)``, one row per new frame;
* output the next state ``(1, state_size)``, fed back as the next call's state
  (re-quantised when the two state tensors are quantised differently).

Inputs and outputs are told apart by rank, not by name (converter names are not
stable). ``block_frames`` is set at conversion (``StreamingConversionConfig.block_frames``);
the scorer works with any. Because every convolution is valid and causal, the
row for frame ``t`` equals the window model's output for the window that ends
at ``t``, once ``t >= frames_per_clip - 1`` (before that the zero state stands
for audio that was never heard, so those rows are dropped: the same warm-up as
the window path).

Cost: one ``invoke`` per ``block_frames`` hops instead of one full-window
``invoke`` per hop. :class:`EnergyGate` optionally skips the model while the
whole receptive field is quiet and re-synchronises the state from the frame
history when sound returns, so the outputs after a gap are exactly those of an
ungated run.

The runtime never imports TensorFlow; this module needs only NumPy and an
interpreter.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .bundle import Bundle
from .engine import Engine, TensorInfo
from .errors import BundleError, ConfigError, KwsError
from .features import MfccConfig, mfcc
from .scoring import FrameQuantizer, Scores, bind_tensors, dequantize_table

__all__ = ["StreamingScorer", "StreamingIO", "tensor_roles", "EnergyGate", "StreamingStats", "gate_threshold_c0"]


@dataclass
class StreamingStats:
    """Counters of one runner since its last reset (``invocations`` includes re-sync replays)."""

    frames_in: int = 0
    frames_out: int = 0
    invocations: int = 0
    gated_frames: int = 0
    resyncs: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def gated_share(self) -> float:
        """Share of the frames whose model call the gate skipped."""
        return self.gated_frames / self.frames_in if self.frames_in else 0.0


def gate_threshold_c0(level_dbfs: float, config: MfccConfig) -> float:
    """The first cepstral value (log frame energy) of white noise at ``level_dbfs`` RMS.

    A frame whose c0 is below it is quieter than that noise. Computed once
    through :func:`kws_edge.features.mfcc`, so it follows the feature
    configuration (energy floor, FFT size, pre-emphasis).
    """
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(config.clip_samples)
    noise *= 10 ** (level_dbfs / 20.0) / np.sqrt(np.mean(noise ** 2))
    return float(np.median(mfcc(noise.astype(np.float32), config)[:, 0]))


@dataclass(frozen=True)
class EnergyGate:
    """Skip the model while every frame of the receptive field is below ``level_dbfs``.

    While gated, the detector is fed the one-hot ``_silence_`` posterior, which
    is what the window model gives on such input (a model without a
    ``_silence_`` label cannot be gated); when a loud frame arrives, the state
    is rebuilt by replaying the frame history, so detection resumes exactly.
    """

    level_dbfs: float = -60.0

    def __post_init__(self) -> None:
        if not -150.0 < self.level_dbfs < 0.0:
            raise ConfigError(f"gate level_dbfs={self.level_dbfs} must be between -150 and 0 dBFS")


def tensor_roles(input_shapes: Sequence[Sequence[int]], output_shapes: Sequence[Sequence[int]], *,
                 error: type[KwsError] = BundleError) -> tuple[int, int, int, int]:
    """Positions of (frames in, state in, probabilities out, state out) among a streaming model's
    inputs and outputs, told apart by rank (frames and probabilities 3-D, state 2-D)."""
    if len(input_shapes) != 2 or len(output_shapes) != 2:
        raise error(
            f"a streaming model has 2 inputs (frames, state) and 2 outputs (probabilities, state), "
            f"this one has {len(input_shapes)} and {len(output_shapes)}; re-run kws-convert --streaming"
        )
    try:
        return (next(i for i, s in enumerate(input_shapes) if len(s) == 3),
                next(i for i, s in enumerate(input_shapes) if len(s) == 2),
                next(i for i, s in enumerate(output_shapes) if len(s) == 3),
                next(i for i, s in enumerate(output_shapes) if len(s) == 2))
    except StopIteration:
        raise error(
            "the streaming model's tensors do not have the expected ranks (frames 3-D, state 2-D, "
            "probabilities 3-D); re-run kws-convert --streaming"
        ) from None


class StreamingIO:
    """The streaming model's I/O contract, read from the model itself.

    Parameters
    ----------
    engine : the loaded streaming model
    error : the exception raised when the model does not keep the contract
        (:class:`BundleError` when loading a bundle; the converter passes its own)

    Attributes
    ----------
    frames, state_in, probs, state_out : the four tensors (told apart by rank)
    block_frames : new frames per call (rows out)
    context_frames : older frames each call sees before the new ones
    state_size : values in the state
    same_state_quantization : the next state can be fed back as it is (the converter gives both state
        tensors one scale); otherwise :meth:`next_state` re-quantises it
    """

    def __init__(self, engine: Engine, *, error: type[KwsError] = BundleError) -> None:
        ins, outs = engine.inputs, engine.outputs
        fr, si, po, so = tensor_roles([t.shape for t in ins], [t.shape for t in outs], error=error)
        self.frames: TensorInfo = ins[fr]
        self.state_in: TensorInfo = ins[si]
        self.probs: TensorInfo = outs[po]
        self.state_out: TensorInfo = outs[so]
        if self.state_in.shape != self.state_out.shape:
            raise error(f"streaming state in {self.state_in.shape} and out {self.state_out.shape} differ")
        self.engine = engine
        self.block_frames = int(self.probs.shape[1])
        self.context_frames = int(self.frames.shape[1]) - self.block_frames
        if self.context_frames < 0:
            raise error("streaming model's frame input is shorter than its output block")
        self.state_size = int(self.state_in.shape[1])
        self.same_state_quantization = (self.state_in.scale, self.state_in.zero_point, self.state_in.dtype) == (
            self.state_out.scale, self.state_out.zero_point, self.state_out.dtype)

    def zero_state(self) -> np.ndarray:
        """The state of a new stream (all zeros, in the state input's storage type)."""
        state = np.zeros(self.state_in.shape, np.dtype(self.state_in.dtype))
        state.fill(self.state_in.zero_point if self.state_in.quantized else 0)
        return state

    def next_state(self, state_out: np.ndarray) -> np.ndarray:
        """The state input of the next call for a call's state output (storage types)."""
        if self.same_state_quantization:
            return np.asarray(state_out).reshape(self.state_in.shape)
        e = self.engine
        return e.quantize(e.dequantize(state_out, self.state_out), self.state_in).reshape(self.state_in.shape)


class StreamingScorer:
    """A :class:`~kws_edge.scoring.Scorer` running a bundle's streaming model over feature frames.

    Parameters
    ----------
    bundle : a bundle with ``manifest.streaming_model``
    num_threads, backend : passed to the interpreter
    gate : optional :class:`EnergyGate`
    blocks_per_call : how many model blocks of new frames its caller gathers per :meth:`score` call
        (:meth:`frames_due`): fewer, larger calls cost less CPU per second of audio; the rows are the
        same whatever the frames per call.
    """

    def __init__(self, bundle: Bundle, *, num_threads: int = 1, backend: str | None = None,
                 gate: EnergyGate | None = None, blocks_per_call: int = 1) -> None:
        self.blocks_per_call = blocks_per_call
        m = bundle.manifest
        if m.streaming_model is None or bundle.streaming_model_bytes is None:
            raise BundleError(f"bundle {bundle.path} has no streaming model; convert with kws-convert --streaming")
        self.engine = Engine(bundle.streaming_model_bytes, num_threads=num_threads, backend=backend)
        self.io = io = StreamingIO(self.engine)
        features = m.features
        self.labels = tuple(m.labels)
        self.n_labels = len(self.labels)
        if io.frames.shape[2] != features.n_cepstra or io.probs.shape[2] != self.n_labels:
            raise BundleError(
                f"streaming model takes {io.frames.shape[2]} cepstra and gives {io.probs.shape[2]} classes, "
                f"the manifest says {features.n_cepstra} and {self.n_labels}; re-run kws-convert --streaming"
            )
        self.block_frames, self.context_frames = io.block_frames, io.context_frames
        self.window_frames = features.frames_per_clip
        self.normalization = m.normalization
        self.quantizer = FrameQuantizer(m.normalization, io.frames)
        (frames_in, state_in, probs, state_out), self._invoke = bind_tensors(
            self.engine, io.frames, io.state_in, io.probs, io.state_out)
        self._frames_in = frames_in.reshape(frames_in.shape[1:])  # (context + block, n_cepstra), the same buffer
        self._state_in, self._state_out = state_in, state_out
        self._table = dequantize_table(io.probs)
        self._probs = probs[0] if self._table is None else probs[0].view(np.uint8)  # (block, n_labels)
        self._zero_state = io.zero_state()
        self.gate = gate
        silence = m.labels.index("_silence_") if "_silence_" in m.labels else None
        if gate is not None and silence is None:
            raise ConfigError("the energy gate needs a model with a '_silence_' label (its output while gated)")
        self._gate_c0 = gate_threshold_c0(gate.level_dbfs, features) if gate is not None else math.inf
        self._silence_row = np.zeros(self.n_labels, np.float32)
        if silence is not None:
            self._silence_row[silence] = 1.0
        # frames kept for re-synchronising after a gated stretch: context + enough blocks to cover a window
        self._replay_blocks = -(-(self.window_frames - self.context_frames) // self.block_frames)
        # (plus one block and context of slack: a block may start in frames left over from an earlier chunk)
        self._history_frames = 2 * self.context_frames + (self._replay_blocks + 1) * self.block_frames
        # prepared frames not yet consumed, from the `context_frames` already-processed ones on: _buf[:_n_buf]
        self._buf = np.zeros((self.context_frames + self.block_frames * (self._blocks_per_call + 2),
                              features.n_cepstra), self.quantizer.dtype)
        self._no_rows = np.zeros((0, self.n_labels), np.float32)
        self.stats = StreamingStats()
        self.reset()

    @property
    def state_size(self) -> int:
        return self.io.state_size

    @property
    def blocks_per_call(self) -> int:
        return self._blocks_per_call

    @blocks_per_call.setter
    def blocks_per_call(self, value: int) -> None:
        if int(value) != value or value < 1:
            raise ConfigError(f"blocks_per_call={value} must be a whole number >= 1")
        self._blocks_per_call = int(value)

    def frames_due(self) -> int:
        """New frames that complete ``blocks_per_call`` blocks past the buffered ones (>= 1)."""
        return max(1, self.context_frames + self.block_frames * self._blocks_per_call - self._n_buf)

    def reset(self) -> None:
        """Zero state; the next frame is the first of a new stream."""
        self._state_in[...] = self._zero_state
        self._n_buf = 0
        self._history: deque[np.ndarray] = deque()  # the last >= history_frames prepared frames, by chunk
        self._history_len = 0
        self._n_frames = 0  # frames received
        self._quiet_run = 0  # consecutive quiet frames at the end of the received ones
        self._gated = False
        self.stats = StreamingStats()

    @property
    def _pending(self) -> np.ndarray:
        """Prepared frames not yet consumed (a view; from the context frames of the next block on)."""
        return self._buf[:self._n_buf]

    def _set_pending(self, rows: np.ndarray) -> None:
        self._reserve(len(rows))
        self._buf[:len(rows)] = rows
        self._n_buf = len(rows)

    def _reserve(self, n_rows: int) -> None:
        if n_rows > len(self._buf):
            grown = np.zeros((2 * n_rows, self._buf.shape[1]), self._buf.dtype)
            grown[:self._n_buf] = self._buf[:self._n_buf]
            self._buf = grown

    def prepare(self, frames: np.ndarray) -> np.ndarray:
        """Normalise raw MFCC frames and quantise them to the frame input's storage type."""
        return self.quantizer(frames)

    def _invoke_blocks(self, buf: np.ndarray, n_calls: int, out: np.ndarray | None) -> None:
        """Run ``n_calls`` blocks over prepared frames ``buf`` (context first); rows into ``out``."""
        invoke, frames_in, probs, state_in, state_out = (self._invoke, self._frames_in, self._probs,
                                                         self._state_in, self._state_out)
        table = self._table
        length, block = self.block_frames + self.context_frames, self.block_frames
        same_state = self.io.same_state_quantization
        for i in range(n_calls):
            s = i * block
            frames_in[...] = buf[s:s + length]
            invoke()
            if out is not None:
                if table is None:
                    out[s:s + block] = probs
                else:  # one look-up per value; 'clip' spares take() the buffering its bounds check needs
                    table.take(probs, out=out[s:s + block], mode="clip")
            state_in[...] = state_out if same_state else self.io.next_state(state_out)
        self.stats.invocations += n_calls
        self.engine.n_invocations += n_calls

    def score(self, frames: np.ndarray) -> Scores:
        """Feed raw MFCC frames ``(n, n_cepstra)``; return the rows that became available.

        Rows come in blocks, so up to ``block_frames - 1`` received frames wait
        for the next call; rows before the first complete window are dropped.
        """
        n_new = len(frames)
        self.stats.frames_in += n_new
        if n_new == 0:
            return Scores(self._no_rows, self._n_frames + 1)
        if self.gate is not None:
            return self._run_gated(self.quantizer(frames), np.asarray(frames[:, 0], np.float32))
        end = self._n_buf + n_new
        if end > len(self._buf):
            self._reserve(end)
        self.quantizer(frames, out=self._buf[self._n_buf:end])
        self._n_buf = end
        self._n_frames += n_new
        return self._run_buffered()

    def _run(self, q: np.ndarray) -> Scores:
        """Ungated: add prepared frames, consume whole blocks."""
        end = self._n_buf + len(q)
        self._reserve(end)
        self._buf[self._n_buf:end] = q
        self._n_buf = end
        self._n_frames += len(q)
        return self._run_buffered()

    def _run_buffered(self) -> Scores:
        ctx, block, n_buf = self.context_frames, self.block_frames, self._n_buf
        n_calls = (n_buf - ctx) // block
        if n_calls <= 0:
            return Scores(self._no_rows, self._n_frames + 1)
        first = self._n_frames - n_buf + ctx + 1  # frame count of the first row
        used = n_calls * block
        post = np.empty((used, self.n_labels), np.float32)
        buf = self._buf
        self._invoke_blocks(buf, n_calls, post)
        buf[:n_buf - used] = buf[used:n_buf]  # the next block's context and the frames after it
        self._n_buf = n_buf - used
        if first < self.window_frames:  # warm-up: drop rows whose window is not complete
            skip = min(used, self.window_frames - first)
            post, first = post[skip:], first + skip
        self.stats.frames_out += len(post)
        return Scores(post, first)

    def _run_gated(self, q: np.ndarray, c0: np.ndarray) -> Scores:
        """Gated: blocks whose receptive field is quiet skip the model."""
        # frame history for re-synchronising: recent chunks, joined only when needed
        history = self._history
        history.append(q)
        self._history_len += len(q)
        while self._history_len - len(history[0]) - len(q) >= self._history_frames:  # keep H frames before q
            self._history_len -= len(history.popleft())
        ctx, block = self.context_frames, self.block_frames
        quiet = c0 < self._gate_c0
        need = self.window_frames + block - 1
        if self._quiet_run + len(q) < need:  # loud lately: no block can be gated in this call
            loud_at = np.flatnonzero(~quiet)
            self._quiet_run = len(q) - 1 - int(loud_at[-1]) if loud_at.size else self._quiet_run + len(q)
            if self._gated and (self._n_buf + len(q) - ctx) // block > 0:
                self._resync(self._pending_history(), self._n_frames + len(q),
                             self._n_frames - self._n_buf + ctx)
            return self._run(q)
        if self._quiet_run >= need + 1 + ctx and bool(quiet.all()):
            # fast path, the usual one in silence: every block that completes now is gated
            self._quiet_run += len(q)
            pending = np.concatenate((self._pending, q))
            first = self._n_frames - self._n_buf
            self._n_frames += len(q)
            n_calls = (len(pending) - ctx) // block
            self._set_pending(pending[n_calls * block:] if n_calls > 0 else pending)
            if n_calls <= 0:
                return Scores(self._no_rows, self._n_frames + 1)
            self._gated = True
            self.stats.gated_frames += n_calls * block
            self.stats.frames_out += n_calls * block
            return Scores(np.broadcast_to(self._silence_row, (n_calls * block, self.n_labels)), first + ctx + 1,
                          1, True)
        hist = self._pending_history()
        # quiet-run length at every new frame: frames since the last loud one (or carried over)
        idx = np.arange(len(q))
        last_loud = np.maximum.accumulate(np.where(quiet, -1, idx))
        runs = np.where(last_loud >= 0, idx - last_loud, idx + 1 + self._quiet_run)
        self._quiet_run = int(runs[-1])
        first = self._n_frames - self._n_buf
        base = self._n_frames
        n_calls = (self._n_buf + len(q) - ctx) // block
        if n_calls > 0:
            lasts = first + ctx + np.arange(1, n_calls + 1) * block - 1  # last frame of each block
            pos = lasts - base
            any_gated = bool(np.any((pos >= 0) & (runs[np.maximum(pos, 0)] >= self.window_frames + block - 1)))
        if n_calls <= 0 or not any_gated:  # nothing to skip in this call: the plain path
            if n_calls > 0 and self._gated:
                self._resync(hist, base + len(q), first + ctx)
            return self._run(q)
        pending = np.concatenate((self._pending, q)) if self._n_buf else q
        self._n_frames += len(q)
        self._set_pending(pending[n_calls * block:])
        rows: list[np.ndarray] = []
        computed = False  # did any block of this call go through the model?
        i = 0
        while i < n_calls:
            last = first + ctx + (i + 1) * block - 1  # stream index of the block's last frame
            quiet_block = runs[last - base] >= self.window_frames + block - 1 if last >= base else False
            if quiet_block:
                # gated: every window ending in this block is quiet
                j = i
                while j < n_calls:
                    lj = first + ctx + (j + 1) * block - 1
                    if not (lj >= base and runs[lj - base] >= self.window_frames + block - 1):
                        break
                    j += 1
                n_skip = (j - i) * block
                self.stats.gated_frames += n_skip
                self._gated = True
                rows.append(np.broadcast_to(self._silence_row, (n_skip, self.n_labels)))
                i = j
                continue
            if self._gated:
                self._resync(hist, self._n_frames, first + ctx + i * block)
            computed = True
            s = i * block
            out = np.empty((block, self.n_labels), np.float32)
            self._invoke_blocks(pending[s:s + block + ctx], 1, out)
            rows.append(out)
            i += 1
        post = np.concatenate(rows).astype(np.float32, copy=False)
        start = first + ctx + 1  # frame count of the first row
        if start < self.window_frames:
            skip = min(len(post), self.window_frames - start)
            post, start = post[skip:], start + skip
        self.stats.frames_out += len(post)
        return Scores(post, start, 1, not computed)

    def _pending_history(self) -> np.ndarray:
        history = self._history
        if len(history) > 1:
            joined = np.concatenate(list(history))
            history.clear()
            history.append(joined)
        return history[0]

    def _resync(self, hist: np.ndarray, hist_end: int, next_frame: int) -> None:
        """Rebuild the state before stream frame ``next_frame`` after a gated stretch.

        Replays, from the zero state, the ``replay_blocks`` blocks of history that
        end just before ``next_frame``: they cover the whole receptive field, so
        the rebuilt state equals the state of an ungated run.
        """
        self._gated = False
        self.stats.resyncs += 1
        ctx, block = self.context_frames, self.block_frames
        hist_start = hist_end - len(hist)  # stream index of hist[0] (hist_end: one past its last frame)
        start = next_frame - ctx - self._replay_blocks * block
        while start < max(0, hist_start):
            start += block
        self._state_in[...] = self._zero_state
        seg = hist[start - hist_start:next_frame - hist_start]
        n_calls = max(0, (len(seg) - ctx) // block)
        if n_calls:
            self._invoke_blocks(seg, n_calls, None)
