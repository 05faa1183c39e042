"""Audio at the boundary: read and validate WAV files, convert sample formats.

Everything inside kws-edge works on mono float32 audio in [-1, 1] at the
feature configuration's sample rate. :func:`read_wav` and
:func:`validate_audio` are the only doors in, and they raise
:class:`~kws_edge.errors.AudioFormatError` with a message that says what is
wrong and what to do.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic import atomic_write_bytes
from .errors import AudioFormatError, BackendUnavailableError

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


def resample(samples: np.ndarray, from_hz: int, to_hz: int) -> np.ndarray:
    """Polyphase resampling of float audio (scipy.signal.resample_poly)."""
    if from_hz == to_hz:
        return samples
    from math import gcd

    from .resample import resample_poly  # numpy only (scipy.signal.resample_poly's filter)

    g = gcd(int(from_hz), int(to_hz))
    return resample_poly(samples, int(to_hz) // g, int(from_hz) // g).astype(np.float32)


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
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise AudioFormatError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise AudioFormatError(f"{path} is a directory, not a WAV file") from None
    except OSError as exc:
        raise AudioFormatError(f"{path}: cannot read ({exc.strerror})") from None
    return decode_wav(data, name=str(path), sample_rate_hz=sample_rate_hz,
                      allow_resample=allow_resample, allow_stereo=allow_stereo)


def decode_wav(
    data: bytes,
    *,
    name: str = "audio",
    sample_rate_hz: int = 16000,
    allow_resample: bool = True,
    allow_stereo: bool = False,
) -> WavAudio:
    """Decode WAV bytes; see :func:`read_wav`."""
    try:
        from scipy.io import wavfile
    except ImportError:  # scipy left the required dependencies (issue 21): the device path needs none
        raise BackendUnavailableError("reading WAV files needs scipy: pip install 'kws-edge[wav]'") from None

    if len(data) == 0:
        raise AudioFormatError(f"{name} is empty (0 bytes); record or export the audio again")
    if len(data) < 12 or data[:4] not in (b"RIFF", b"RIFX") or data[8:12] != b"WAVE":
        raise AudioFormatError(f"{name} is not a WAV file; convert it to 16 kHz mono 16-bit WAV")
    declared = int.from_bytes(data[4:8], "little") + 8
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", wavfile.WavFileWarning)
        try:
            rate, samples = wavfile.read(io.BytesIO(data))
        except Exception as exc:  # noqa: BLE001 - any failure to parse untrusted bytes means a bad file
            # (scipy raises ValueError, EOFError, struct.error, and UnboundLocalError when chunks are missing)
            reason = "truncated" if declared > len(data) else "corrupt"
            detail = exc if not isinstance(exc, NameError) else "no fmt or data chunk"
            raise AudioFormatError(f"{name} is a {reason} WAV file ({detail}); re-export it") from None
    for w in caught:
        if not issubclass(w.category, wavfile.WavFileWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            continue
        text = str(w.message)
        if "not understood" in text:
            continue  # extra chunks (PEAK, cue, bext, smpl...) that writers add: harmless
        if "EOF prematurely" in text or "Incomplete chunk" in text:
            raise AudioFormatError(f"{name} is a truncated WAV file ({text}); re-export or re-record it")
        raise AudioFormatError(f"{name} is a damaged WAV file ({text}); re-export it")
    if declared > len(data) + 1:
        raise AudioFormatError(
            f"{name} is a truncated WAV file ({len(data)} of {declared} bytes); re-export or re-record it"
        )
    channels = 1 if samples.ndim == 1 else samples.shape[1]
    if samples.ndim == 2 and channels > 1 and not allow_stereo:
        raise AudioFormatError(
            f"{name} has {channels} channels; kws-edge needs mono audio "
            f"(convert with: sox in.wav -c 1 out.wav)"
        )
    audio = to_float32(samples)
    if audio.ndim == 2:
        audio = audio.mean(axis=1).astype(np.float32)
    if audio.size == 0:
        raise AudioFormatError(f"{name} holds no samples; record or export the audio again")
    if not np.all(np.isfinite(audio)):
        raise AudioFormatError(f"{name} contains NaN or infinite samples; re-export it as 16-bit PCM")
    peak = float(np.max(np.abs(audio)))
    if peak > 4.0:  # float WAV holding int16-scale values, or garbage
        raise AudioFormatError(
            f"{name} is a float WAV with samples up to {peak:.0f}; float samples must lie in [-1, 1] "
            "(re-export it as 16-bit PCM)"
        )
    if rate != sample_rate_hz:
        if not allow_resample:
            raise AudioFormatError(
                f"{name} is sampled at {rate} Hz but the model needs {sample_rate_hz} Hz; "
                f"resample it (sox in.wav -r {sample_rate_hz} out.wav)"
            )
        audio = resample(audio, rate, sample_rate_hz)
    return WavAudio(samples=audio, sample_rate_hz=sample_rate_hz, source_rate_hz=int(rate),
                    source_channels=channels)


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
