"""MFCC features: one implementation for training (batch) and the device (streaming).

The pipeline is python_speech_features' (psf) own: pre-emphasis of the whole
continuous signal, framing, a window function, the power spectrum, a mel
filterbank, log, DCT-II (orthonormal), cepstral liftering, and optionally the
log frame energy in place of c0. Two deliberate additions, both stored in the
configuration that travels inside every bundle:

* a floor on mel and frame energies (``energy_floor``) instead of psf's
  machine epsilon, so digital silence lands near the quietest real recordings
  rather than 15 decades below them;
* only complete frames are produced: a trailing partial frame is never padded
  with zeros. That is what makes the streaming path exact.

How streaming and batch agree: pre-emphasis is a first-order filter over the
continuous stream (``y[0] = x[0]``, ``y[n] = x[n] - a*x[n-1]``), exactly what
psf does to a whole signal. :class:`StreamingMfcc` keeps the last input sample
across chunks for the filter and the unconsumed tail of pre-emphasised samples
for framing, so for any chunking of a stream its frames equal
``mfcc(whole_stream)`` (golden test: within 1e-5, in practice ~1e-12).

Shapes: features are ``(n_frames, n_cepstra)`` float32; a 1000 ms clip at the
defaults gives 49 frames of 10 coefficients.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.fft

from .audio import INT16_SCALE, MAX_SAMPLE_RATE_HZ, to_float32
from .errors import AudioFormatError, ConfigError

__all__ = [
    "MS_PER_S",
    "MfccConfig",
    "Normalization",
    "mfcc",
    "StreamingMfcc",
    "n_complete_frames",
]

MS_PER_S = 1000.0
#: bounds a trained normalisation stays within (fit() floors std at 1e-6; MFCCs are tens, not millions)
MIN_NORMALIZATION_STD = 1e-6
MAX_NORMALIZATION_STD = 1e6
MAX_NORMALIZATION_MEAN = 1e6
#: feature settings no front end needs (a manifest beyond them is damaged): clip length, FFT, filters
MAX_CLIP_MS = 60_000.0
MAX_FFT_SIZE_SAMPLES = 65536
MAX_MEL_FILTERS = 512
_INT16_TO_FLOAT64 = 1.0 / INT16_SCALE


@dataclass(frozen=True)
class MfccConfig:
    """Complete MFCC configuration; stored in every run and bundle manifest.

    Defaults follow the MLPerf Tiny / ARM KWS reference front end (40 ms
    windows every 20 ms, 40 mel filters, 10 cepstra, 49 frames per second of
    audio), with a Hamming window (psf's default is rectangular), a
    1024-point FFT (the next power of two above the 640-sample window), band
    edges 20-7600 Hz, psf's pre-emphasis 0.97 and lifter 22, and c0 replaced by
    the log frame energy.
    """

    sample_rate_hz: int = 16000
    window_ms: float = 40.0
    hop_ms: float = 20.0
    n_cepstra: int = 10
    n_mel_filters: int = 40
    fft_size_samples: int = 1024
    low_freq_hz: float = 20.0
    high_freq_hz: float = 7600.0
    preemphasis: float = 0.97
    cepstral_lifter: int = 22
    append_energy: bool = True
    window_function: Literal["hamming", "hann", "rectangular"] = "hamming"
    energy_floor: float = 1e-9
    clip_ms: float = 1000.0

    def __post_init__(self) -> None:
        if not 0 < self.sample_rate_hz <= MAX_SAMPLE_RATE_HZ:
            raise ConfigError(f"sample_rate_hz={self.sample_rate_hz} must be in 1..{MAX_SAMPLE_RATE_HZ}")
        if not self.clip_ms <= MAX_CLIP_MS:
            raise ConfigError(f"clip_ms={self.clip_ms} must be <= {MAX_CLIP_MS:g}")
        if not 0 < self.fft_size_samples <= MAX_FFT_SIZE_SAMPLES:
            raise ConfigError(f"fft_size_samples={self.fft_size_samples} must be in 1..{MAX_FFT_SIZE_SAMPLES}")
        if not 0 < self.n_mel_filters <= MAX_MEL_FILTERS:
            raise ConfigError(f"n_mel_filters={self.n_mel_filters} must be in 1..{MAX_MEL_FILTERS}")
        if not 0 <= self.cepstral_lifter <= 10_000:
            raise ConfigError(f"cepstral_lifter={self.cepstral_lifter} must be in 0..10000")
        if not (self.window_ms > 0 and self.hop_ms > 0) or self.hop_samples < 1:
            raise ConfigError(f"window_ms={self.window_ms} and hop_ms={self.hop_ms} must be > 0")
        if self.hop_ms > self.window_ms:
            raise ConfigError(f"hop_ms={self.hop_ms} must not exceed window_ms={self.window_ms}")
        if self.fft_size_samples < self.window_samples:
            raise ConfigError(
                f"fft_size_samples={self.fft_size_samples} must be >= the window "
                f"({self.window_samples} samples), or frames would be truncated"
            )
        if not 0 < self.n_cepstra <= self.n_mel_filters:
            raise ConfigError(f"n_cepstra={self.n_cepstra} must be in 1..n_mel_filters={self.n_mel_filters}")
        if not 0 <= self.low_freq_hz < self.high_freq_hz <= self.sample_rate_hz / 2:
            raise ConfigError(
                f"band edges {self.low_freq_hz}-{self.high_freq_hz} Hz must satisfy "
                f"0 <= low < high <= {self.sample_rate_hz / 2} Hz"
            )
        if not 0 <= self.preemphasis < 1:
            raise ConfigError(f"preemphasis={self.preemphasis} must be in [0, 1)")
        if self.energy_floor <= 0:
            raise ConfigError(f"energy_floor={self.energy_floor} must be > 0")
        if self.clip_ms < self.window_ms:
            raise ConfigError(f"clip_ms={self.clip_ms} must be >= window_ms={self.window_ms}")
        if self.window_function not in ("hamming", "hann", "rectangular"):
            raise ConfigError(
                f"window_function={self.window_function!r} must be 'hamming', 'hann' or 'rectangular'"
            )

    @property
    def window_samples(self) -> int:
        return int(round(self.window_ms * self.sample_rate_hz / MS_PER_S))

    @property
    def hop_samples(self) -> int:
        return int(round(self.hop_ms * self.sample_rate_hz / MS_PER_S))

    @property
    def clip_samples(self) -> int:
        return int(round(self.clip_ms * self.sample_rate_hz / MS_PER_S))

    @property
    def frames_per_clip(self) -> int:
        return n_complete_frames(self.clip_samples, self)

    @property
    def hops_per_second(self) -> float:
        return self.sample_rate_hz / self.hop_samples


def n_complete_frames(n_samples: int, config: MfccConfig) -> int:
    """Number of complete frames in ``n_samples`` samples (no padding)."""
    if n_samples < config.window_samples:
        return 0
    return 1 + (n_samples - config.window_samples) // config.hop_samples


@dataclass(frozen=True)
class Normalization:
    """Per-coefficient mean and standard deviation from the training data."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.mean) != len(self.std):
            raise ConfigError(f"normalization mean ({len(self.mean)}) and std ({len(self.std)}) differ in length")
        if not all(math.isfinite(m) and abs(m) <= MAX_NORMALIZATION_MEAN for m in self.mean):
            raise ConfigError(f"normalization mean values must be finite and within +-{MAX_NORMALIZATION_MEAN:g} "
                              "(MFCCs are); the statistics are damaged: re-run kws-convert")
        if not all(MIN_NORMALIZATION_STD <= s <= MAX_NORMALIZATION_STD for s in self.std):
            raise ConfigError(f"normalization std values must be > 0, in [{MIN_NORMALIZATION_STD:g}, "
                              f"{MAX_NORMALIZATION_STD:g}] (Normalization.fit floors them at 1e-6); the statistics "
                              "are damaged: re-run kws-convert")

    @classmethod
    def fit(cls, features: np.ndarray) -> "Normalization":
        """Statistics over all frames of ``features`` [shape=(..., n_cepstra)]."""
        flat = np.asarray(features, dtype=np.float64).reshape(-1, features.shape[-1])
        std = np.maximum(flat.std(axis=0), 1e-6)
        return cls(mean=tuple(float(v) for v in flat.mean(axis=0)), std=tuple(float(v) for v in std))

    @functools.cached_property
    def _arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(self.mean, np.float32), (1.0 / np.asarray(self.std, np.float64)).astype(np.float32)

    def apply(self, features: np.ndarray) -> np.ndarray:
        """``(features - mean) / std`` as float32, same shape."""
        mean, inv_std = self._arrays
        return (np.asarray(features, np.float32) - mean) * inv_std


class _Plan:
    """Precomputed window, filterbank, DCT and lifter for one configuration."""

    def __init__(self, config: MfccConfig) -> None:
        from python_speech_features.base import get_filterbanks

        self.config = config
        n = config.window_samples
        windows = {"hamming": np.hamming, "hann": np.hanning, "rectangular": np.ones}
        self.window = windows[config.window_function](n).astype(np.float64)
        fbank = get_filterbanks(config.n_mel_filters, config.fft_size_samples, config.sample_rate_hz,
                                config.low_freq_hz, config.high_freq_hz)
        self.fbank_t = np.ascontiguousarray(fbank.T)  # (n_fft_bins, n_mel)
        # DCT-II with norm='ortho' as a matrix: identical to scipy.fftpack.dct(..., norm='ortho').
        m = config.n_mel_filters
        k = np.arange(config.n_cepstra)[:, None]
        j = np.arange(m)[None, :]
        dct = np.cos(np.pi * k * (2 * j + 1) / (2 * m)) * np.sqrt(2.0 / m)
        dct[0] *= np.sqrt(0.5)
        self.dct_t = np.ascontiguousarray(dct.T)  # (n_mel, n_cepstra)
        if config.cepstral_lifter > 0:
            L = config.cepstral_lifter
            self.lifter = 1 + (L / 2.0) * np.sin(np.pi * np.arange(config.n_cepstra) / L)
        else:
            self.lifter = np.ones(config.n_cepstra)
        self.log_floor = float(np.log(config.energy_floor))


@functools.lru_cache(maxsize=16)
def _plan(config: MfccConfig) -> _Plan:
    return _Plan(config)


def _cepstra(frames: np.ndarray, plan: _Plan) -> np.ndarray:
    """MFCC of pre-emphasised, un-windowed frames [shape=(n, window_samples), float64].

    ``frames`` may be any (strided) view. Windowed frames are written straight
    into a zero-padded FFT buffer: the same numbers as ``rfft(frames * window,
    fft_size)`` (bit for bit), without its padding copy, because this runs on
    every streaming block.
    """
    cfg = plan.config
    padded = np.zeros((len(frames), cfg.fft_size_samples), np.float64)
    np.multiply(frames, plan.window, out=padded[:, :frames.shape[1]])
    spec = scipy.fft.rfft(padded, overwrite_x=True)  # (n, nfft/2+1)
    # psf's powspec, 1/NFFT * |rfft|^2, written out: re^2 + im^2 instead of hypot()^2 (same to ~1 ulp)
    # and in place, because this runs on every streaming hop.
    power = spec.real ** 2
    power += spec.imag ** 2
    power *= 1.0 / cfg.fft_size_samples
    mel = power @ plan.fbank_t
    np.maximum(mel, cfg.energy_floor, out=mel)
    np.log(mel, out=mel)
    feat = mel @ plan.dct_t
    feat *= plan.lifter
    if cfg.append_energy:
        feat[:, 0] = np.log(np.maximum(power.sum(axis=1), cfg.energy_floor))
    return feat.astype(np.float32)


def _frame(signal: np.ndarray, n_frames: int, window_samples: int, hop_samples: int) -> np.ndarray:
    """Read-only view of ``n_frames`` overlapping frames of a contiguous 1-D array (no copy).

    Built with the ndarray constructor: a fraction of ``as_strided``'s Python overhead.
    """
    step = signal.strides[0]
    view = np.ndarray((n_frames, window_samples), signal.dtype, signal, 0, (hop_samples * step, step))
    view.flags.writeable = False
    return view


def mfcc(signal: np.ndarray, config: MfccConfig = MfccConfig()) -> np.ndarray:
    """Batch MFCC of a whole signal.

    Parameters
    ----------
    signal : np.ndarray [shape=(n_samples,), dtype=int16 or float in [-1, 1]]
        Mono audio at ``config.sample_rate_hz``.
    config : MfccConfig

    Returns
    -------
    np.ndarray [shape=(n_complete_frames, n_cepstra), dtype=float32]
        One row per complete frame; fewer samples than one window give 0 rows.
    """
    from python_speech_features.sigproc import preemphasis

    x = to_float32(np.asarray(signal)).astype(np.float64)
    if x.ndim != 1:
        raise AudioFormatError(f"signal must be mono (1-D), got shape {x.shape}")
    plan = _plan(config)
    n = n_complete_frames(len(x), config)
    if n == 0:
        return np.zeros((0, config.n_cepstra), np.float32)
    y = preemphasis(x, config.preemphasis)
    return _cepstra(_frame(np.ascontiguousarray(y), n, config.window_samples, config.hop_samples), plan)


class StreamingMfcc:
    """Incremental MFCC: each call computes only the frames that became complete.

    ``process(chunk)`` accepts any number of samples (int16 or float in
    [-1, 1]) and returns the new frames, ``(n_new, n_cepstra)`` float32. State
    is the last input sample (for pre-emphasis) and the pre-emphasised tail
    not yet consumed by a frame: at most one window of samples.
    """

    def __init__(self, config: MfccConfig = MfccConfig()) -> None:
        self.config = config
        self._plan = _plan(config)
        self._empty = np.zeros((0, config.n_cepstra), np.float32)
        self._window = config.window_samples
        self._hop = config.hop_samples
        self.reset()

    def reset(self) -> None:
        """Forget all audio; the next sample is the start of a new stream."""
        self._last_sample: float | None = None
        self._tail = np.zeros(0, np.float64)
        self.n_samples_seen = 0
        self.n_frames_emitted = 0

    def process(self, chunk: np.ndarray) -> np.ndarray:
        chunk = np.asarray(chunk)
        if chunk.ndim > 1 and chunk.size != max(chunk.shape):  # (n, 2) would interleave channels
            raise AudioFormatError(f"audio chunk must be mono (1-D), got shape {chunk.shape}")
        # float64 straight from int16 (exact: the same values as via float32)
        x = chunk.reshape(-1) * _INT16_TO_FLOAT64 if chunk.dtype == np.int16 else to_float32(chunk).astype(
            np.float64).reshape(-1)
        if x.size == 0:
            return self._empty
        a = self.config.preemphasis
        tail = self._tail
        # pre-emphasis written into the frame buffer after the unconsumed tail: one allocation, no copies
        buf = np.empty(tail.size + x.size, np.float64)
        buf[:tail.size] = tail
        y = buf[tail.size:]
        np.multiply(x[:-1], -a, out=y[1:])
        y[1:] += x[1:]
        y[0] = x[0] if self._last_sample is None else x[0] - a * self._last_sample
        self._last_sample = float(x[-1])
        self.n_samples_seen += x.size
        n = 0 if buf.size < self._window else 1 + (buf.size - self._window) // self._hop
        if n == 0:
            self._tail = buf
            return self._empty
        out = _cepstra(_frame(buf, n, self._window, self._hop), self._plan)
        self._tail = buf[n * self._hop:].copy()
        self.n_frames_emitted += n
        return out
