"""Streaming inference: only the newest feature frames go through the model.

A bundle may carry, beside its window model, a *streaming model*
(``manifest.streaming_model``, written by ``kws-convert --streaming``). It is
the same network as the window model, rewritten with causal convolutions whose
ring buffers are an explicit state tensor (see
``kws_edge.training.streaming_model``):

* input 0, ``frames``: ``(1, context_frames + block_frames, n_cepstra)``, the
  newest ``block_frames`` normalised frames preceded by ``context_frames`` older
  ones;
* input 1, ``state``: ``(1, state_size)`` (``manifest.streaming_model.extra_inputs[0]``);
* output 0, probabilities ``(1, block_frames, n_labels)``, one row per new frame;
* output 1, the next state ``(1, state_size)``.

Inputs and outputs are told apart by rank, not by name (converter names are not
stable). Because every convolution is valid and causal, the row for frame
``t`` equals the window model's output for the window that ends at ``t``, once
``t >= frames_per_clip - 1`` (before that the zero state stands for audio that
was never heard, so those rows are dropped: the same warm-up as the window path).

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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .bundle import Bundle
from .engine import Engine, TensorInfo
from .audio import to_float32, validate_audio
from .errors import BundleError, ConfigError
from .features import MfccConfig, mfcc

if TYPE_CHECKING:  # pragma: no cover
    from .detector import KeywordDetector
    from .smoothing import Detection

__all__ = ["StreamingRunner", "EnergyGate", "StreamingStats", "gate_threshold_c0", "detect_frames"]


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

    While gated, the detector is fed the one-hot ``_silence_`` posterior (or
    nothing, if the model has no such label), which is what the window model
    gives on such input; when a loud frame arrives, the state is rebuilt by
    replaying the frame history, so detection resumes exactly.
    """

    level_dbfs: float = -60.0

    def __post_init__(self) -> None:
        if not -150.0 < self.level_dbfs < 0.0:
            raise ConfigError(f"gate level_dbfs={self.level_dbfs} must be between -150 and 0 dBFS")


class _IO:
    def __init__(self, engine: Engine) -> None:
        ins, outs = engine.inputs, engine.outputs
        if len(ins) != 2 or len(outs) != 2:
            raise BundleError(
                f"a streaming model has 2 inputs (frames, state) and 2 outputs (probabilities, state), "
                f"this one has {len(ins)} and {len(outs)}; re-run kws-convert --streaming"
            )
        try:
            self.frames: TensorInfo = next(t for t in ins if len(t.shape) == 3)
            self.state_in: TensorInfo = next(t for t in ins if len(t.shape) == 2)
            self.probs: TensorInfo = next(t for t in outs if len(t.shape) == 3)
            self.state_out: TensorInfo = next(t for t in outs if len(t.shape) == 2)
        except StopIteration:
            raise BundleError(
                "the streaming model's tensors do not have the expected ranks (frames 3-D, state 2-D, "
                "probabilities 3-D); re-run kws-convert --streaming"
            ) from None
        if self.state_in.shape != self.state_out.shape:
            raise BundleError(f"streaming state in {self.state_in.shape} and out {self.state_out.shape} differ")


class StreamingRunner:
    """Runs a bundle's streaming model over feature frames.

    Parameters
    ----------
    bundle : a bundle with ``manifest.streaming_model``
    num_threads, backend : passed to the interpreter
    gate : optional :class:`EnergyGate`
    blocks_per_call : hold audio until this many model blocks of new frames are complete, then run
        features and model on all of them in one go: fewer, larger calls (less CPU per second of
        audio), each detection later by up to ``blocks_per_call - 1`` blocks; the posteriors and
        detections are the same.
    """

    def __init__(self, bundle: Bundle, *, num_threads: int = 1, backend: str | None = None,
                 gate: EnergyGate | None = None, blocks_per_call: int = 1) -> None:
        if int(blocks_per_call) != blocks_per_call or blocks_per_call < 1:
            raise ConfigError(f"blocks_per_call={blocks_per_call} must be a whole number >= 1")
        self.blocks_per_call = int(blocks_per_call)
        m = bundle.manifest
        if m.streaming_model is None or bundle.streaming_model_bytes is None:
            raise BundleError(f"bundle {bundle.path} has no streaming model; convert with kws-convert --streaming")
        self.engine = Engine(bundle.streaming_model_bytes, num_threads=num_threads, backend=backend)
        io = _IO(self.engine)
        self._io = io
        features = m.features
        self.n_labels = len(m.labels)
        if io.frames.shape[2] != features.n_cepstra or io.probs.shape[2] != self.n_labels:
            raise BundleError(
                f"streaming model takes {io.frames.shape[2]} cepstra and gives {io.probs.shape[2]} classes, "
                f"the manifest says {features.n_cepstra} and {self.n_labels}; re-run kws-convert --streaming"
            )
        self.block_frames = int(io.probs.shape[1])
        self.context_frames = int(io.frames.shape[1]) - self.block_frames
        if self.context_frames < 0:
            raise BundleError("streaming model's frame input is shorter than its output block")
        self.window_frames = features.frames_per_clip
        self._window_samples = features.window_samples
        self._hop_samples = features.hop_samples
        self._no_frames = np.zeros((0, features.n_cepstra), np.float32)
        self.normalization = m.normalization
        self._mean, self._inv_std = (np.asarray(a, np.float32) for a in self.normalization._arrays)
        self._fq = io.frames
        self._frames_dtype = np.dtype(io.frames.dtype)
        self._state_dtype = np.dtype(io.state_in.dtype)
        self._same_state_q = (io.state_in.scale, io.state_in.zero_point, io.state_in.dtype) == (
            io.state_out.scale, io.state_out.zero_point, io.state_out.dtype)
        self._interp = self.engine._interp  # direct calls: this is the hot path
        # The interpreter's native wrapper (ai_edge_litert, tflite_runtime and tf.lite all keep it as
        # `_interpreter`): set_tensor/get_tensor/invoke are one-line Python wrappers around it, plus a
        # reference-count check that guards views from tensor(), which this runner never takes. Calling the
        # wrapper directly spares three Python frames per call, which count on a cold cache (issue 21).
        native = getattr(self._interp, "_interpreter", None)
        if all(callable(getattr(native, n, None)) for n in ("SetTensor", "GetTensor", "Invoke")):
            self._set_tensor, self._get_tensor, self._invoke = native.SetTensor, native.GetTensor, native.Invoke
        else:  # pragma: no cover - an interpreter without the usual native wrapper
            self._set_tensor, self._get_tensor, self._invoke = (self._interp.set_tensor, self._interp.get_tensor,
                                                                 self._interp.invoke)
        self._idx = (io.frames.index, io.state_in.index, io.probs.index, io.state_out.index)
        self._frames_shape = tuple(io.frames.shape)
        self._probs_q = io.probs
        q = io.frames
        if q.quantized:
            self._q_gain = (self._inv_std / np.float32(q.scale)).astype(np.float32)
            self._q_offset = (np.float32(q.zero_point) - self._mean * self._q_gain).astype(np.float32)
            info = np.iinfo(self._frames_dtype)
            self._q_min, self._q_max = float(info.min), float(info.max)
        self._probs_lut = None
        self._probs_dtype = np.dtype(io.probs.dtype)
        self._no_rows = (np.zeros((0, self.n_labels), np.float32), np.zeros(0, np.int64))
        if io.probs.quantized and np.dtype(io.probs.dtype).itemsize == 1:
            codes = np.arange(256, dtype=np.uint8).view(np.dtype(io.probs.dtype)).astype(np.float32)
            self._probs_lut = (codes - np.float32(io.probs.zero_point)) * np.float32(io.probs.scale)
        elif io.probs.quantized:
            raise BundleError(f"streaming model output type {io.probs.dtype} is not supported; use int8 or float32")
        self.gate = gate
        self._gate_c0 = gate_threshold_c0(gate.level_dbfs, features) if gate is not None else math.inf
        silence = m.labels.index("_silence_") if "_silence_" in m.labels else None
        self._silence_row = np.zeros(self.n_labels, np.float32)
        if silence is not None:
            self._silence_row[silence] = 1.0
        self._has_silence = silence is not None
        # frames kept for re-synchronising after a gated stretch: context + enough blocks to cover a window
        self._replay_blocks = -(-(self.window_frames - self.context_frames) // self.block_frames)
        # (plus one block and context of slack: a block may start in frames left over from an earlier chunk)
        self._history_frames = 2 * self.context_frames + (self._replay_blocks + 1) * self.block_frames
        self.stats = StreamingStats()
        self.reset()

    @property
    def state_size(self) -> int:
        return int(self._io.state_in.shape[1])

    @property
    def blocks_per_call(self) -> int:
        return self._blocks_per_call

    @blocks_per_call.setter
    def blocks_per_call(self, value: int) -> None:
        self._blocks_per_call = int(value)
        self._due_samples = None  # recomputed at the next chunk

    def detect(self, detector: "KeywordDetector", chunk: np.ndarray) -> list["Detection"]:
        """The detector's streaming branch for one chunk of audio (validated here).

        Audio is held back until the MFCC would complete ``blocks_per_call``
        whole blocks of new frames (MFCC is chunking-invariant, so this changes
        no result, only how many calls the features and the model take: one per
        ``blocks_per_call`` blocks, whatever the chunk size). Then frames -> model -> smoother, via
        :func:`detect_frames`.

        A chunk that completes no such interval costs only its validation and a copy (``bytes``: the
        caller may reuse its buffer) onto a list, with no numpy arithmetic: a microphone delivers one
        every 10-100 ms and the process sleeps in between, so each call starts on cold caches, where
        every numpy call costs tens of microseconds. int16 chunks are held as int16 (converting them is
        part of the MFCC's own pre-emphasis step).
        """
        audio = validate_audio(chunk, name="audio chunk", keep_int16=True)
        n = audio.size
        detector.n_samples += n
        parts = self._audio
        if not parts:
            self._audio_dtype = audio.dtype
        elif audio.dtype != self._audio_dtype:  # the stream switched sample type: hold float32
            held = to_float32(np.frombuffer(b"".join(parts), self._audio_dtype))
            parts[:] = [held.tobytes()]
            audio = to_float32(audio)
            self._audio_dtype = audio.dtype
        parts.append(audio.tobytes())
        held_samples = self._audio_samples = self._audio_samples + n
        due = self._due_samples
        if due is None:
            due = self._due_samples = self._samples_due(detector._mfcc)
        if held_samples < due:
            if detector.telemetry is not None:
                detector.telemetry.observe(to_float32(audio), self._no_frames)
            return []
        mf, tel = detector._mfcc, detector.telemetry
        joined = np.frombuffer(parts[0] if len(parts) == 1 else b"".join(parts), self._audio_dtype)
        parts.clear()
        self._audio_samples = 0
        found = detect_frames(detector, self, audio if tel is None else to_float32(audio), mf.process(joined))
        self._due_samples = self._samples_due(mf)
        return found

    def _samples_due(self, mf: Any) -> int:
        """Held samples after which the MFCC completes ``blocks_per_call`` blocks past the pending frames."""
        frames_needed = self.context_frames + self.block_frames * self._blocks_per_call - len(self._pending)
        if frames_needed <= 0:
            return 0
        total = self._window_samples + (mf.n_frames_emitted + frames_needed - 1) * self._hop_samples
        return max(0, total - mf.n_samples_seen)

    def reset(self) -> None:
        """Zero state; the next frame is the first of a new stream."""
        self._audio: list[bytes] = []  # validated audio held back until a block of frames completes
        self._audio_dtype = np.dtype(np.float32)  # sample type of the held audio (int16 or float32)
        self._audio_samples = 0
        self._due_samples: int | None = None  # held samples that complete the next interval (None: recompute)
        self._state = np.zeros(self._io.state_in.shape, self._state_dtype)
        self._zero_state = self._state.copy()
        self._zero_state.fill(self._io.state_in.zero_point if self._io.state_in.quantized else 0)
        self._state = self._zero_state.copy()
        # prepared frames not yet consumed (starts with `context_frames` already-processed ones)
        self._pending = np.zeros((0, self._frames_shape[2]), self._frames_dtype)
        self._history: deque[np.ndarray] = deque()  # the last >= history_frames prepared frames, by chunk
        self._history_len = 0
        self._n_frames = 0  # frames received
        self._quiet_run = 0  # consecutive quiet frames at the end of the received ones
        self._gated = False
        self.last_all_gated = False  # every row of the last process() call was a gated (silence) row
        self.stats = StreamingStats()

    def prepare(self, frames: np.ndarray) -> np.ndarray:
        """Normalise raw MFCC frames and quantise them to the frame input's storage type.

        ``round((x - mean) / std / scale) + zero_point`` folded into one multiply-add
        (equal to normalising, then :meth:`Engine.quantize`, up to float rounding).
        """
        if not self._fq.quantized:
            x = (np.asarray(frames, np.float32) - self._mean) * self._inv_std
            return x.astype(self._frames_dtype, copy=False)
        x = np.asarray(frames, np.float32) * self._q_gain
        x += self._q_offset
        np.rint(x, out=x)
        np.maximum(x, self._q_min, out=x)  # np.clip, without its Python-level overhead
        np.minimum(x, self._q_max, out=x)
        return x.astype(self._frames_dtype)

    def _invoke_blocks(self, buf: np.ndarray, n_calls: int, out: np.ndarray | None) -> None:
        set_tensor, get_tensor, invoke = self._set_tensor, self._get_tensor, self._invoke
        fi, si, pi, so = self._idx
        length = self.block_frames + self.context_frames
        block = self.block_frames
        shape = self._frames_shape
        state = self._state
        for i in range(n_calls):
            s = i * block
            set_tensor(fi, buf[s:s + length].reshape(shape))
            set_tensor(si, state)
            invoke()
            if out is not None:
                out[s:s + block] = get_tensor(pi)[0]
            state = get_tensor(so)
            if not self._same_state_q:
                state = self.engine.quantize(self.engine.dequantize(state, self._io.state_out), self._io.state_in)
        self._state = state
        self.stats.invocations += n_calls

    def _dequantize_probs(self, raw: np.ndarray) -> np.ndarray:
        if self._probs_lut is None:
            return raw.astype(np.float32, copy=False)
        return self._probs_lut.take(raw.view(np.uint8))  # one table look-up per value

    def process(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Feed raw MFCC frames ``(n, n_cepstra)``; return the rows that became available.

        Returns
        -------
        posteriors : np.ndarray [shape=(m, n_labels), float32]
        frame_counts : np.ndarray [shape=(m,), int64]
            For each row, the number of frames received up to and including its
            frame (the window ending there is complete: ``>= frames_per_clip``).
            Rows come in blocks, so up to ``block_frames - 1`` received frames
            wait for the next call.
        """
        frames = np.asarray(frames)
        n_new = len(frames)
        self.stats.frames_in += n_new
        self.last_all_gated = False
        if n_new == 0:
            return np.zeros((0, self.n_labels), np.float32), np.zeros(0, np.int64)
        q = self.prepare(frames)
        if self.gate is None:
            return self._run(q)
        return self._run_gated(q, np.asarray(frames[:, 0], np.float32))

    def _run(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Ungated: consume whole blocks of pending frames."""
        old = self._pending
        pending = np.concatenate((old, q)) if len(old) else q
        first = self._n_frames - len(old)  # stream index of pending[0]
        self._n_frames += len(q)
        ctx, block = self.context_frames, self.block_frames
        n_calls = (len(pending) - ctx) // block
        if n_calls <= 0:
            self._pending = pending
            return self._no_rows
        self._pending = pending[n_calls * block:]  # a view: `pending` is never written
        raw = np.empty((n_calls * block, self.n_labels), self._probs_dtype)
        self._invoke_blocks(pending, n_calls, raw)
        start = first + ctx + 1
        counts = np.arange(start, start + n_calls * block, dtype=np.int64)
        if start < self.window_frames:  # warm-up: drop rows whose window is not complete
            keep = counts >= self.window_frames
            raw, counts = raw[keep], counts[keep]
        self.stats.frames_out += len(counts)
        return self._dequantize_probs(raw), counts

    def _run_gated(self, q: np.ndarray, c0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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
            if self._gated and (len(self._pending) + len(q) - ctx) // block > 0:
                self._resync(self._pending_history(), self._n_frames + len(q),
                             self._n_frames - len(self._pending) + ctx)
            return self._run(q)
        if self._has_silence and self._quiet_run >= need + 1 + ctx and bool(quiet.all()):
            # fast path, the usual one in silence: every block that completes now is gated
            self._quiet_run += len(q)
            pending = np.concatenate((self._pending, q))
            first = self._n_frames - len(self._pending)
            self._n_frames += len(q)
            n_calls = (len(pending) - ctx) // block
            self._pending = pending[n_calls * block:] if n_calls > 0 else pending
            if n_calls <= 0:
                return self._no_rows
            self._gated = True
            self.last_all_gated = True
            self.stats.gated_frames += n_calls * block
            self.stats.frames_out += n_calls * block
            start = first + ctx + 1
            return (np.broadcast_to(self._silence_row, (n_calls * block, self.n_labels)),
                    np.arange(start, start + n_calls * block, dtype=np.int64))
        hist = self._pending_history()
        # quiet-run length at every new frame: frames since the last loud one (or carried over)
        idx = np.arange(len(q))
        last_loud = np.maximum.accumulate(np.where(quiet, -1, idx))
        runs = np.where(last_loud >= 0, idx - last_loud, idx + 1 + self._quiet_run)
        self._quiet_run = int(runs[-1])
        first = self._n_frames - len(self._pending)
        base = self._n_frames
        n_calls = (len(self._pending) + len(q) - ctx) // block
        if n_calls > 0:
            lasts = first + ctx + np.arange(1, n_calls + 1) * block - 1  # last frame of each block
            pos = lasts - base
            any_gated = bool(np.any((pos >= 0) & (runs[np.maximum(pos, 0)] >= self.window_frames + block - 1)))
        if n_calls <= 0 or not any_gated:  # nothing to skip in this call: the plain path
            if n_calls > 0 and self._gated:
                self._resync(hist, base + len(q), first + ctx)
            return self._run(q)
        pending = np.concatenate((self._pending, q)) if len(self._pending) else q
        self._n_frames += len(q)
        self._pending = pending[n_calls * block:]
        rows: list[np.ndarray] = []
        counts: list[np.ndarray] = []
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
                c = np.arange(first + ctx + i * block + 1, first + ctx + j * block + 1, dtype=np.int64)
                self.stats.gated_frames += n_skip
                self._gated = True
                if self._has_silence:
                    rows.append(np.broadcast_to(self._silence_row, (n_skip, self.n_labels)))
                    counts.append(c)
                i = j
                continue
            if self._gated:
                self._resync(hist, self._n_frames, first + ctx + i * block)
            computed = True
            s = i * block
            raw = np.empty((block, self.n_labels), np.dtype(self._probs_q.dtype))
            self._invoke_blocks(pending[s:s + block + ctx], 1, raw)
            rows.append(self._dequantize_probs(raw))
            counts.append(np.arange(first + ctx + s + 1, first + ctx + s + block + 1, dtype=np.int64))
            i += 1
        self.last_all_gated = n_calls > 0 and not computed and self._has_silence
        if not rows:
            return np.zeros((0, self.n_labels), np.float32), np.zeros(0, np.int64)
        post = np.concatenate(rows).astype(np.float32, copy=False)
        cnt = np.concatenate(counts)
        keep = cnt >= self.window_frames
        self.stats.frames_out += int(keep.sum())
        return post[keep], cnt[keep]

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
        self._state = self._zero_state.copy()
        seg = hist[start - hist_start:next_frame - hist_start]
        n_calls = max(0, (len(seg) - ctx) // block)
        if n_calls:
            self._invoke_blocks(seg, n_calls, None)


def detect_frames(detector: "KeywordDetector", runner: StreamingRunner, audio: np.ndarray,
                  frames: np.ndarray) -> list["Detection"]:
    """The detector's streaming branch: frames -> runner -> smoother -> detections and callbacks.

    Keeps the window path's contract: evaluated hops follow ``stride_hops``
    from the first complete window, each posterior is timed at the end of its
    window, and telemetry sees one observation per chunk.
    """
    posteriors, counts = runner.process(frames)
    detector._n_frames = runner._n_frames
    tel = detector.telemetry
    detections: list[Detection] = []
    if len(counts):
        stride = detector.config.stride_hops
        if stride > 1:
            keep = (counts - detector._n_window) % stride == 0
            posteriors, counts = posteriors[keep], counts[keep]
    if len(counts):
        smoother = detector._smoother
        if not (runner.last_all_gated and smoother.idle):  # silence rows into an idle smoother change nothing
            def end_s(counts=counts) -> np.ndarray:  # computed only when a row may fire
                return ((counts - 1) * detector._hop_samples + detector._window_samples) / detector.sample_rate_hz

            detections = smoother.update_many(posteriors, end_s)
        for hit in detections:
            for cb in detector._callbacks:
                cb(hit)
        detector.n_evaluations += len(counts)
        detector.last_posteriors = np.array(posteriors[-1], np.float32)
    if tel is not None:
        tel.observe(audio, frames, posteriors if len(counts) else None, detections)
    return detections
