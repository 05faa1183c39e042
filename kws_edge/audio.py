"""Audio at the boundary: read and validate WAV files, convert sample formats.

Everything inside kws-edge works on mono float32 audio in [-1, 1] at the
feature configuration's sample rate. :func:`read_wav` and
:func:`validate_audio` are the only doors in, and they raise
:class:`~kws_edge.errors.AudioFormatError` with a message that says what is
wrong and what to do.
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from .atomic import atomic_write_bytes
from .errors import AudioFormatError

__all__ = [
    "INT16_SCALE",
    "WavAudio",
    "read_wav",
    "write_wav",
    "wav_bytes",
    "validate_audio",
    "to_float32",
    "to_int16",
    "resample",
    "BlockResampler",
    "WavHeader",
    "WavStream",
    "open_wav",
    "read_wav_header",
    "decode_wav",
    "MIN_SAMPLE_RATE_HZ",
    "MAX_SAMPLE_RATE_HZ",
    "MAX_CHANNELS",
    "MAX_DURATION_S",
]

#: the one scale between int16 samples and float samples in [-1, 1)
INT16_SCALE = 32768.0

_FLOAT32, _INT16 = np.dtype(np.float32), np.dtype(np.int16)


@dataclass(frozen=True)
class WavAudio:
    """Mono float32 samples read from a WAV file, plus what was done to them."""

    samples: np.ndarray
    sample_rate_hz: int
    source_rate_hz: int
    source_channels: int

    @property
    def resampled(self) -> bool:
        return self.sample_rate_hz != self.source_rate_hz

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate_hz


def to_float32(samples: np.ndarray) -> np.ndarray:
    """Convert integer PCM or float samples to float32 in [-1, 1]."""
    samples = np.asarray(samples)
    if samples.dtype == np.int16:
        return samples.astype(np.float32) / np.float32(INT16_SCALE)
    if samples.dtype == np.int32:  # 24- and 32-bit PCM as scipy returns them
        return (samples.astype(np.float64) / 2147483648.0).astype(np.float32)
    if samples.dtype == np.uint8:
        return (samples.astype(np.float32) - 128.0) / 128.0
    if np.issubdtype(samples.dtype, np.floating):
        return samples.astype(np.float32, copy=False)
    raise AudioFormatError(f"unsupported sample type {samples.dtype}; use int16 or float32 audio")


def to_int16(samples: np.ndarray) -> np.ndarray:
    """Convert float samples in [-1, 1] to int16 (clipping), int16 unchanged."""
    samples = np.asarray(samples)
    if samples.dtype == np.int16:
        return samples
    scaled = np.round(to_float32(samples).astype(np.float64) * INT16_SCALE)
    return np.clip(scaled, -32768, 32767).astype(np.int16)


def validate_audio(samples: np.ndarray, *, name: str = "audio", keep_int16: bool = False) -> np.ndarray:
    """Check a chunk of audio and return it as float32 in [-1, 1].

    Accepts a 1-D int16 or float array. Rejects more than one channel,
    NaN or infinite samples, and float audio far outside [-1, 1] (which
    usually means int16 values passed as floats). ``keep_int16``: a 1-D
    int16 array is returned as it is (always valid; for callers that convert later).
    """
    if type(samples) is np.ndarray and samples.ndim == 1 and samples.size:  # hot path: one call per chunk
        dtype = samples.dtype  # identity with numpy's canonical dtypes: no type conversion or cast lookup
        if dtype is _FLOAT32:
            # argmin/argmax point at a NaN if there is one (then a comparison fails and the checks below
            # explain); they cost a fraction of min()/max()'s reduction machinery on a cold cache
            if -4.0 <= samples[samples.argmin()] and samples[samples.argmax()] <= 4.0:
                return samples
        elif dtype is _INT16:
            return samples if keep_int16 else to_float32(samples)
    arr = np.asarray(samples)
    if arr.ndim == 2 and 1 in arr.shape:
        arr = arr.reshape(-1)
    if arr.ndim != 1:
        raise AudioFormatError(
            f"{name} must be mono (1-D), got shape {arr.shape}; mix the channels down first"
        )
    if not (arr.dtype == np.int16 or np.issubdtype(arr.dtype, np.floating)):
        raise AudioFormatError(f"{name} has sample type {arr.dtype}; pass int16 or float32 samples")
    out = to_float32(arr)
    if out.size and not np.all(np.isfinite(out)):
        bad = int(np.count_nonzero(~np.isfinite(out)))
        raise AudioFormatError(f"{name} contains {bad} NaN or infinite samples; clean the signal first")
    if out.size and float(np.max(np.abs(out))) > 4.0:
        raise AudioFormatError(
            f"{name} has float samples up to {float(np.max(np.abs(out))):.0f}; float audio must lie in "
            "[-1, 1] (pass int16 arrays as int16, or divide by 32768)"
        )
    return out


#: sample rates a WAV file may declare: below 4 kHz there is no speech band left; above 768 kHz no
#: recording interface records (a header outside this range is damaged or hostile)
MIN_SAMPLE_RATE_HZ = 4000
MAX_SAMPLE_RATE_HZ = 768_000
#: more channels than any recording interface writes to one file
MAX_CHANNELS = 64
#: a day of audio in one file; longer recordings are split before they are scanned
MAX_DURATION_S = 24 * 3600
#: the resampling ratio up/down (in lowest terms) may not exceed this on either side: the polyphase filter
#: has 20 * max(up, down) taps (44.1 kHz -> 16 kHz is 160/441; 44.056 kHz is 2000/5507)
MAX_RESAMPLE_FACTOR = 50_000
#: raw bytes read from a WAV file at a time: memory stays bounded whatever the file's length
BLOCK_BYTES = 256 * 1024
#: header chunks other than ``data`` (fmt, LIST, bext, ...) larger than this are refused
_MAX_HEADER_CHUNK_BYTES = 1 << 20

_PCM, _FLOAT, _EXTENSIBLE = 1, 3, 0xFFFE
_ENCODING_NAMES = {2: "MS ADPCM", 6: "A-law", 7: "mu-law", 17: "IMA ADPCM", 85: "MP3"}


def _resample_ratio(from_hz: int, to_hz: int) -> tuple[int, int]:
    from math import gcd

    g = gcd(int(from_hz), int(to_hz))
    return int(to_hz) // g, int(from_hz) // g


def resample(samples: np.ndarray, from_hz: int, to_hz: int) -> np.ndarray:
    """Polyphase resampling of float audio (kws_edge.resample: scipy.signal.resample_poly's filter, numpy only)."""
    if from_hz == to_hz:
        return samples
    from .resample import resample_poly  # numpy only (scipy.signal.resample_poly's filter)

    up, down = _resample_ratio(from_hz, to_hz)
    return resample_poly(samples, up, down).astype(np.float32)


class BlockResampler:
    """:func:`resample` over a stream of blocks, with the same output as on the whole signal.

    A polyphase FIR output sample at index ``k`` depends only on the input samples within the filter's
    half-length of ``k * down / up``, and shifting the input by a multiple of ``down`` shifts the output by
    the same multiple of ``up``. So each call resamples a buffer that starts at a multiple of ``down``, keeps
    the outputs whose filter support lies inside it, and drops the input no later output needs. Memory is
    one block plus ``down`` plus the filter's support, whatever the stream's length.
    """

    def __init__(self, from_hz: int, to_hz: int) -> None:
        self.from_hz, self.to_hz = int(from_hz), int(to_hz)
        self.up, self.down = _resample_ratio(from_hz, to_hz)
        # input samples each side of an output's centre that its filter reaches (half_len = 10 * max(up, down))
        self._context = (10 * max(self.up, self.down)) // self.up + 2
        self._buf = np.zeros(0, np.float32)
        self._buf_start = 0  # global input index of _buf[0], a multiple of down
        self._next_out = 0  # global index of the next output sample

    def process(self, block: np.ndarray) -> np.ndarray:
        """Resampled samples that are final once ``block`` is known (possibly none)."""
        self._buf = np.concatenate([self._buf, np.asarray(block, np.float32)])
        end = self._buf_start + len(self._buf)
        # outputs k with ceil(k * down / up) + context <= end have their whole filter support in the buffer
        last = ((end - self._context) * self.up) // self.down  # exclusive bound, conservative
        return self._emit(max(self._next_out, last), final=False)

    def flush(self) -> np.ndarray:
        """The remaining samples at the end of the stream."""
        n_in = self._buf_start + len(self._buf)
        n_out = -(-n_in * self.up // self.down)
        return self._emit(n_out, final=True)

    def _emit(self, stop: int, *, final: bool) -> np.ndarray:
        if stop <= self._next_out or not len(self._buf):
            return np.zeros(0, np.float32)
        y = resample(self._buf, self.from_hz, self.to_hz)
        offset = self._buf_start * self.up // self.down
        out = y[self._next_out - offset: stop - offset]
        self._next_out = stop
        if not final:
            keep_from = (self._next_out * self.down) // self.up - self._context
            keep_from = max(self._buf_start, (keep_from // self.down) * self.down)
            self._buf = self._buf[keep_from - self._buf_start:]
            self._buf_start = keep_from
        return out


@dataclass(frozen=True)
class WavHeader:
    """What a WAV file's header declares (checked against the limits above)."""

    sample_rate_hz: int
    channels: int
    bits_per_sample: int
    format_tag: int
    n_frames: int
    big_endian: bool = False

    @property
    def block_align_bytes(self) -> int:
        return self.channels * (self.bits_per_sample // 8)


def _read_full(fh: Any, n: int) -> bytes:
    """Up to ``n`` bytes; fewer only at the end of the file (pipes may return short reads)."""
    parts, got = [], 0
    while got < n:
        part = fh.read(n - got)
        if not part:
            break
        parts.append(part)
        got += len(part)
    return b"".join(parts)


def _skip(fh: Any, n: int) -> int:
    """Skip ``n`` bytes; returns how many were skipped (fewer at the end of the file)."""
    if n and getattr(fh, "seekable", lambda: False)():
        here = fh.tell()
        end = fh.seek(0, io.SEEK_END)
        fh.seek(min(end, here + n))
        return min(end, here + n) - here
    skipped = 0
    while skipped < n:
        part = fh.read(min(n - skipped, BLOCK_BYTES))
        if not part:
            break
        skipped += len(part)
    return skipped


def _stream_size(fh: Any) -> Optional[int]:
    """The size of a regular file or bytes buffer, None for pipes."""
    if isinstance(fh, io.BytesIO):
        return len(fh.getbuffer())
    try:
        st = os.fstat(fh.fileno())
    except (OSError, AttributeError, io.UnsupportedOperation):
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None


def _parse_fmt(body: bytes, endian: str, name: str) -> tuple[int, int, int, int, int]:
    tag, channels, rate, _byte_rate, block_align, bits = struct.unpack(endian + "HHIIHH", body[:16])
    if tag == _EXTENSIBLE:
        if len(body) < 26:
            raise AudioFormatError(f"{name} is a damaged WAV file (extensible fmt chunk of {len(body)} bytes); "
                                   "re-export it")
        tag = struct.unpack(endian + "H", body[24:26])[0]
    return tag, channels, rate, block_align, bits


def _check_fmt(tag: int, channels: int, rate: int, block_align: int, bits: int, name: str) -> None:
    if tag not in (_PCM, _FLOAT):
        kind = _ENCODING_NAMES.get(tag, f"format tag {tag}")
        raise AudioFormatError(f"{name} is a {kind} WAV file; kws-edge reads PCM and float WAVs "
                               "(convert with: sox in.wav -e signed -b 16 out.wav)")
    if (tag, bits) not in ((_PCM, 8), (_PCM, 16), (_PCM, 24), (_PCM, 32), (_FLOAT, 32), (_FLOAT, 64)):
        raise AudioFormatError(f"{name} has {bits}-bit {'float' if tag == _FLOAT else 'PCM'} samples; kws-edge "
                               "reads 8/16/24/32-bit PCM and 32/64-bit float (convert with: sox in.wav -b 16 out.wav)")
    if not 1 <= channels <= MAX_CHANNELS:
        raise AudioFormatError(f"{name} is a damaged WAV file: its header declares {channels} channels "
                               f"(1 to {MAX_CHANNELS} are accepted); re-export it")
    if not MIN_SAMPLE_RATE_HZ <= rate <= MAX_SAMPLE_RATE_HZ:
        raise AudioFormatError(f"{name} declares a sample rate of {rate} Hz; kws-edge reads "
                               f"{MIN_SAMPLE_RATE_HZ}-{MAX_SAMPLE_RATE_HZ} Hz (a damaged header? re-export it at "
                               "16 kHz: sox in.wav -r 16000 out.wav)")
    if block_align != channels * bits // 8:
        raise AudioFormatError(f"{name} is a damaged WAV file: block align {block_align} bytes does not match "
                               f"{channels} channel(s) of {bits} bits; re-export it")


def read_wav_header(fh: Any, *, name: str = "audio") -> WavHeader:
    """Parse a WAV header from ``fh`` (positioned at 0), leaving it at the first sample.

    Reads sequentially (works on pipes); refuses non-WAV, truncated and damaged headers, encodings other
    than PCM/float, and rates, channel counts and durations beyond the module's limits.
    """
    head = _read_full(fh, 12)
    if not head:
        raise AudioFormatError(f"{name} is empty (0 bytes); record or export the audio again")
    if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
        raise AudioFormatError(f"{name} is not a WAV file; convert it to 16 kHz mono 16-bit WAV")
    endian = ">" if head[:4] == b"RIFX" else "<"
    declared = struct.unpack(endian + "I", head[4:8])[0] + 8
    size = _stream_size(fh)
    if size is not None and declared > size + 1:
        raise AudioFormatError(
            f"{name} is a truncated WAV file ({size} of {declared} bytes); re-export or re-record it"
        )
    pos = 12
    fmt: Optional[tuple[int, int, int, int, int]] = None
    while True:
        chunk = _read_full(fh, 8)
        pos += len(chunk)
        if len(chunk) < 8:
            missing = "data" if fmt is not None else "fmt"
            reason = "truncated" if size is None or declared > pos else "corrupt"
            raise AudioFormatError(f"{name} is a {reason} WAV file (no {missing} chunk); re-export it")
        cid, n = chunk[:4], struct.unpack(endian + "I", chunk[4:8])[0]
        if cid == b"data":
            break
        if cid == b"fmt ":
            if not 16 <= n <= 4096:
                raise AudioFormatError(f"{name} is a damaged WAV file (fmt chunk of {n} bytes); re-export it")
            body = _read_full(fh, n + (n & 1))
            pos += len(body)
            if len(body) < n:
                raise AudioFormatError(f"{name} is a truncated WAV file (inside the fmt chunk); re-export it")
            fmt = _parse_fmt(body[:n], endian, name)
            _check_fmt(*fmt, name)
            continue
        if n > _MAX_HEADER_CHUNK_BYTES and size is None:
            raise AudioFormatError(f"{name} has a {n}-byte {cid!r} chunk before its samples; re-export it")
        skipped = _skip(fh, n + (n & 1))
        pos += skipped
        if skipped < n:
            raise AudioFormatError(f"{name} is a truncated WAV file (inside a {cid!r} chunk); re-export it")
    if fmt is None:
        raise AudioFormatError(f"{name} is a corrupt WAV file (its data chunk comes before any fmt chunk); "
                               "re-export it")
    tag, channels, rate, block_align, bits = fmt
    if size is not None and n > size - pos:
        raise AudioFormatError(
            f"{name} is a truncated WAV file: its data chunk declares {n:,} bytes but only {size - pos:,} "
            "follow; re-export or re-record it"
        )
    n_frames = n // block_align
    if n_frames == 0:
        raise AudioFormatError(f"{name} holds no samples; record or export the audio again")
    if n_frames > MAX_DURATION_S * rate:
        raise AudioFormatError(f"{name} declares {n_frames / rate / 3600:.1f} hours of audio; kws-edge reads up "
                               f"to {MAX_DURATION_S // 3600} hours per file (split it: sox in.wav out.wav trim 0 "
                               "3600 : newfile : restart)")
    return WavHeader(sample_rate_hz=rate, channels=channels, bits_per_sample=bits, format_tag=tag,
                     n_frames=n_frames, big_endian=endian == ">")


def _decode_frames(raw: bytes, header: WavHeader) -> np.ndarray:
    """Raw frames -> samples as scipy.io.wavfile returns them ([n] or [n, channels])."""
    e = ">" if header.big_endian else "<"
    bits, tag = header.bits_per_sample, header.format_tag
    if bits == 24:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3)
        if header.big_endian:
            b = b[:, ::-1]
        samples = ((b[:, 0].astype(np.int32) << 8) | (b[:, 1].astype(np.int32) << 16)
                   | (b[:, 2].astype(np.int32) << 24))  # left-justified, as scipy reads 24-bit PCM
    else:
        dtype = {(_PCM, 8): "u1", (_PCM, 16): "i2", (_PCM, 32): "i4", (_FLOAT, 32): "f4", (_FLOAT, 64): "f8"}
        samples = np.frombuffer(raw, np.dtype(e + dtype[(tag, bits)]))
        samples = samples.astype(samples.dtype.newbyteorder("="), copy=False)
    if header.channels > 1:
        samples = samples.reshape(-1, header.channels)
    return samples


class WavStream:
    """A WAV file read in blocks: mono float32 at ``sample_rate_hz``, validated block by block.

    Iterating yields blocks; the header is read (and checked) on construction. Memory is one block
    (:data:`BLOCK_BYTES` of the file) plus the resampler's context, whatever the file's length. A file
    that ends before its header says (possible only for pipes: regular files are checked up front), NaN
    samples or float samples far outside [-1, 1] raise :class:`AudioFormatError` while iterating.
    """

    def __init__(self, fh: Any, *, name: str = "audio", sample_rate_hz: int = 16000, allow_resample: bool = True,
                 allow_stereo: bool = False) -> None:
        self.name = name
        self._fh = fh
        self.header = read_wav_header(fh, name=name)
        h = self.header
        if h.channels > 1 and not allow_stereo:
            raise AudioFormatError(
                f"{name} has {h.channels} channels; kws-edge needs mono audio (convert with: sox in.wav -c 1 out.wav)"
            )
        self.sample_rate_hz = int(sample_rate_hz)
        if h.sample_rate_hz != self.sample_rate_hz:
            if not allow_resample:
                raise AudioFormatError(
                    f"{name} is sampled at {h.sample_rate_hz} Hz but the model needs {sample_rate_hz} Hz; "
                    f"resample it (sox in.wav -r {sample_rate_hz} out.wav)"
                )
            up, down = _resample_ratio(h.sample_rate_hz, self.sample_rate_hz)
            if max(up, down) > MAX_RESAMPLE_FACTOR:
                raise AudioFormatError(
                    f"{name} is sampled at {h.sample_rate_hz} Hz, which does not resample to {sample_rate_hz} Hz "
                    f"within a bounded filter (ratio {up}/{down}); resample it first "
                    f"(sox in.wav -r {sample_rate_hz} out.wav)"
                )

    @property
    def source_rate_hz(self) -> int:
        return self.header.sample_rate_hz

    @property
    def resampled(self) -> bool:
        return self.source_rate_hz != self.sample_rate_hz

    @property
    def n_samples(self) -> int:
        """Samples the stream yields in all (at ``sample_rate_hz``)."""
        up, down = _resample_ratio(self.source_rate_hz, self.sample_rate_hz)
        return -(-self.header.n_frames * up // down)

    @property
    def duration_s(self) -> float:
        return self.n_samples / self.sample_rate_hz

    def __iter__(self) -> Iterator[np.ndarray]:
        h = self.header
        frames_per_block = max(1, BLOCK_BYTES // h.block_align_bytes)
        resampler = BlockResampler(h.sample_rate_hz, self.sample_rate_hz) if self.resampled else None
        left = h.n_frames
        while left:
            n = min(left, frames_per_block)
            raw = _read_full(self._fh, n * h.block_align_bytes)
            if len(raw) < n * h.block_align_bytes:
                got = h.n_frames - left + len(raw) // h.block_align_bytes
                raise AudioFormatError(f"{self.name} is a truncated WAV file ({got:,} of {h.n_frames:,} sample "
                                       "frames); re-export or re-record it")
            left -= n
            block = self._check(_decode_frames(raw, h))
            if resampler is not None:
                block = resampler.process(block)
            if len(block):
                yield block
        if resampler is not None:
            tail = resampler.flush()
            if len(tail):
                yield tail

    def _check(self, samples: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore", invalid="ignore"):  # float64 beyond float32 becomes inf: refused below
            audio = to_float32(samples)
            if audio.ndim == 2:
                audio = audio.mean(axis=1).astype(np.float32)
        if not np.all(np.isfinite(audio)):
            raise AudioFormatError(f"{self.name} contains NaN or infinite samples; re-export it as 16-bit PCM")
        peak = float(np.max(np.abs(audio)))
        if peak > 4.0:  # float WAV holding int16-scale values, or garbage
            raise AudioFormatError(
                f"{self.name} is a float WAV with samples up to {peak:.0f}; float samples must lie in [-1, 1] "
                "(re-export it as 16-bit PCM)"
            )
        return audio

    def read_all(self) -> WavAudio:
        """The whole stream as one array."""
        blocks = list(self)
        audio = np.concatenate(blocks) if len(blocks) != 1 else blocks[0]
        return WavAudio(samples=audio, sample_rate_hz=self.sample_rate_hz, source_rate_hz=self.source_rate_hz,
                        source_channels=self.header.channels)

    def read_centre(self, n_samples: int) -> WavAudio:
        """The centre ``n_samples`` of the stream (all of it when shorter), reading block by block."""
        total = self.n_samples
        start = max(0, (total - n_samples) // 2)
        stop = start + min(n_samples, total)
        kept, pos = [], 0
        for block in self:
            lo, hi = max(start - pos, 0), min(stop - pos, len(block))
            if lo < hi:
                kept.append(block[lo:hi])
            pos += len(block)
        audio = np.concatenate(kept) if kept else np.zeros(0, np.float32)
        return WavAudio(samples=audio, sample_rate_hz=self.sample_rate_hz, source_rate_hz=self.source_rate_hz,
                        source_channels=self.header.channels)


#: how long opening a FIFO waits for its writer's first bytes
FIFO_WAIT_S = 5.0


def _open_input(path: Path) -> Any:
    """Open a WAV file for reading; a FIFO whose writer sends nothing in FIFO_WAIT_S is refused."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise AudioFormatError(f"{path}: no such file") from None
    except OSError as exc:
        raise AudioFormatError(f"{path}: cannot read ({exc.strerror})") from None
    if stat.S_ISDIR(st.st_mode):
        raise AudioFormatError(f"{path} is a directory, not a WAV file")
    try:
        if not stat.S_ISFIFO(st.st_mode):
            return open(path, "rb")  # noqa: SIM115 - the caller closes it
        import select

        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # does not wait for a writer
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        if not poller.poll(FIFO_WAIT_S * 1000):
            os.close(fd)
            raise AudioFormatError(f"{path} is a FIFO and nothing was written to it in {FIFO_WAIT_S:g} s; start "
                                   "the program that writes it first")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except OSError as exc:
        raise AudioFormatError(f"{path}: cannot read ({exc.strerror})") from None


@contextlib.contextmanager
def open_wav(path: str | Path, *, sample_rate_hz: int = 16000, allow_resample: bool = True,
             allow_stereo: bool = False) -> Iterator[WavStream]:
    """Open a WAV file as a :class:`WavStream` (the header is checked here), closing it afterwards."""
    path = Path(path)
    fh = _open_input(path)
    try:
        yield WavStream(fh, name=str(path), sample_rate_hz=sample_rate_hz, allow_resample=allow_resample,
                        allow_stereo=allow_stereo)
    except OSError as exc:
        raise AudioFormatError(f"{path}: cannot read ({exc.strerror or exc})") from None
    finally:
        fh.close()


def read_wav(
    path: str | Path,
    *,
    sample_rate_hz: int = 16000,
    allow_resample: bool = True,
    allow_stereo: bool = False,
) -> WavAudio:
    """Read a WAV file as mono float32 at ``sample_rate_hz``.

    Reads PCM 8/16/24/32-bit and float WAVs. A file at another rate is
    resampled when ``allow_resample`` (the result says so); a multi-channel
    file is refused unless ``allow_stereo`` (then channels are averaged).
    Empty, truncated, corrupt and non-WAV files raise ``AudioFormatError``.
    For long recordings use :func:`open_wav` and process the blocks.
    """
    with open_wav(path, sample_rate_hz=sample_rate_hz, allow_resample=allow_resample,
                  allow_stereo=allow_stereo) as stream:
        return stream.read_all()


def decode_wav(
    data: bytes,
    *,
    name: str = "audio",
    sample_rate_hz: int = 16000,
    allow_resample: bool = True,
    allow_stereo: bool = False,
) -> WavAudio:
    """Decode WAV bytes; see :func:`read_wav`."""
    return WavStream(io.BytesIO(data), name=name, sample_rate_hz=sample_rate_hz, allow_resample=allow_resample,
                     allow_stereo=allow_stereo).read_all()


def wav_bytes(samples: np.ndarray, sample_rate_hz: int) -> bytes:
    """Encode mono audio as 16-bit PCM WAV bytes."""
    import wave

    pcm = to_int16(np.asarray(samples))
    buf = io.BytesIO()
    with wave.open(buf, "wb") as wf:
        wf.setnchannels(1)
        wf.setsampwidth(2)
        wf.setframerate(int(sample_rate_hz))
        wf.writeframes(pcm.tobytes())
    return buf.getvalue()


def write_wav(path: str | Path, samples: np.ndarray, sample_rate_hz: int) -> None:
    """Write mono audio as a 16-bit PCM WAV file, atomically."""
    atomic_write_bytes(path, wav_bytes(samples, sample_rate_hz))
