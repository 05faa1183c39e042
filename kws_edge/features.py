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

from .audio import INT16_SCALE, MAX_SAMPLE_RATE_HZ, to_float32
from .errors import AudioFormatError, ConfigError

__all__ = [
    "MS_PER_S",
    "MfccConfig",
    "Normalization",
    "mfcc",
    "StreamingMfcc",
    "n_complete_frames",
    "mel_filterbank",
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
_INT16, _FLOAT32 = np.dtype(np.int16), np.dtype(np.float32)


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


def _hz_to_mel(hz):
    return 2595 * np.log10(1 + hz / 700.)


def _mel_to_hz(mel):
    return 700 * (10 ** (mel / 2595.0) - 1)


def mel_filterbank(n_filters: int, fft_size: int, sample_rate_hz: int, low_hz: float, high_hz: float) -> np.ndarray:
    """Triangular mel filters ``(n_filters, fft_size // 2 + 1)``: python_speech_features'
    ``get_filterbanks``, the same arithmetic written out (psf imports scipy, which the device does not
    need; tests/runtime/test_runtime_features.py checks the two are equal value for value)."""
    points = np.linspace(_hz_to_mel(low_hz), _hz_to_mel(high_hz), n_filters + 2)
    bins = np.floor((fft_size + 1) * _mel_to_hz(points) / sample_rate_hz)
    fbank = np.zeros([n_filters, fft_size // 2 + 1])
    for j in range(n_filters):
        for i in range(int(bins[j]), int(bins[j + 1])):
            fbank[j, i] = (i - bins[j]) / (bins[j + 1] - bins[j])
        for i in range(int(bins[j + 1]), int(bins[j + 2])):
            fbank[j, i] = (bins[j + 2] - i) / (bins[j + 2] - bins[j + 1])
    return fbank


class _Plan:
    """Precomputed windows and the two matrices of the MFCC for one configuration.

    psf's steps after the FFT, folded into two matrix products (fewer, larger
    numpy calls: this runs on every streaming block):

    * ``power_t`` ``(n_bins, n_mel + 1)``: the power spectrum ``re^2 + im^2``
      to the mel energies, with psf's ``1/NFFT`` folded in, and an extra last
      column (1/NFFT everywhere): the frame energy;
    * ``cepstra_t`` ``(n_mel + 1, n_cepstra)``: the log energies to cepstra:
      DCT-II (orthonormal, scipy.fftpack's ``dct(norm='ortho')`` as a matrix)
      times the lifter, with column 0 replaced by the log frame energy
      (``append_energy``) through a 1 in the last row (an exact copy: the
      other products in that column are zeros).

    ``window_int16`` is the window times 2**-15: int16 samples are pre-emphasised
    in sample units and scaled by the window product instead of before it.
    Scaling by a power of two is exact, so the products are the very numbers of
    ``(y * 2**-15) * window``, the features of ``x / 32768``.
    """

    def __init__(self, config: MfccConfig) -> None:
        self.config = config
        n = config.window_samples
        windows = {"hamming": np.hamming, "hann": np.hanning, "rectangular": np.ones}
        self.window = windows[config.window_function](n).astype(np.float64)
        self.window_int16 = self.window * _INT16_TO_FLOAT64
        fbank = mel_filterbank(config.n_mel_filters, config.fft_size_samples, config.sample_rate_hz,
                               config.low_freq_hz, config.high_freq_hz)
        m, n_bins = fbank.shape
        self.power_t = np.ascontiguousarray(np.vstack([fbank, np.ones((1, n_bins))]).T / config.fft_size_samples)
        k = np.arange(config.n_cepstra)[:, None]
        j = np.arange(m)[None, :]
        dct = np.cos(np.pi * k * (2 * j + 1) / (2 * m)) * np.sqrt(2.0 / m)
        dct[0] *= np.sqrt(0.5)
        if config.cepstral_lifter > 0:
            L = config.cepstral_lifter
            lifter = 1 + (L / 2.0) * np.sin(np.pi * np.arange(config.n_cepstra) / L)
        else:
            lifter = np.ones(config.n_cepstra)
        cep = np.zeros((m + 1, config.n_cepstra))
        cep[:m] = dct.T * lifter
        if config.append_energy:
            cep[:, 0] = 0.0
            cep[m, 0] = 1.0
        self.cepstra_t = cep
        self.n_bins = n_bins
        self.n_mel = m


@functools.lru_cache(maxsize=16)
def _plan(config: MfccConfig) -> _Plan:
    return _Plan(config)


#: frames per matrix product: OpenBLAS hands a product of more than about 24 rows (x 513 x 41) to its
#: worker thread, which then spins for a while (measured here: 50 rows cost 4x the process CPU of one
#: thread); a streaming interval is 10 rows, so only flush() and batch calls are split
_MAX_PRODUCT_ROWS = 16


class _Work:
    """Reusable buffers for :func:`_cepstra` (one per :class:`StreamingMfcc`; plans are shared)."""

    def __init__(self, plan: _Plan, n_frames: int) -> None:
        self.n_frames = n_frames
        self.windowed = np.empty((n_frames, plan.config.window_samples), np.float64)
        self.spec = np.empty((n_frames, plan.n_bins), np.complex128)
        pairs = self.spec.view(np.float64)  # (n, 2 * n_bins): re, im, re, im, ...
        self.pairs, self.re, self.im = pairs, pairs[:, 0::2], pairs[:, 1::2]
        self.power = np.empty((n_frames, plan.n_bins), np.float64)
        self.mel = np.empty((n_frames, plan.n_mel + 1), np.float64)
        #: pre-emphasised samples of one call (grows on demand)
        self.emphasised = np.empty(plan.config.window_samples + n_frames * plan.config.hop_samples, np.float64)


_RFFT_HAS_OUT = tuple(int(v) for v in np.__version__.split(".")[:1]) >= (2,)
try:  # numpy >= 2: np.fft.rfft's own kernel without its Python wrapper (the same numbers, fewer calls)
    from numpy.fft import _pocketfft_umath as _pfu

    _RFFT_EVEN = _pfu.rfft_n_even if _RFFT_HAS_OUT else None
except ImportError:  # pragma: no cover - another numpy layout
    _RFFT_EVEN = None


def _cepstra(frames: np.ndarray, plan: _Plan, work: _Work | None = None, *,
             window: np.ndarray | None = None) -> np.ndarray:
    """MFCC of pre-emphasised, un-windowed frames [shape=(n, window_samples), float64].

    ``frames`` may be any (strided) view. The FFT pads each windowed frame with
    zeros to ``fft_size`` itself (numpy's kernel takes the output length): the
    same numbers as ``rfft(frames * window, fft_size)``, bit for bit. With
    ``work`` (enough rows) no buffer is allocated but the result. ``window``: the plan's window
    (default), or ``plan.window_int16`` for frames in int16 sample units.
    """
    n = len(frames)
    if n > _MAX_PRODUCT_ROWS:
        return np.concatenate([_cepstra(frames[i:i + _MAX_PRODUCT_ROWS], plan, work, window=window)
                               for i in range(0, n, _MAX_PRODUCT_ROWS)])
    cfg = plan.config
    if work is None or work.n_frames < n:
        work = _Work(plan, max(n, 1))
    windowed = np.multiply(frames, plan.window if window is None else window, out=work.windowed[:n])
    if _RFFT_EVEN is not None and cfg.fft_size_samples % 2 == 0:
        _RFFT_EVEN(windowed, 1, out=work.spec[:n])  # the output length sets the FFT size: zero-padded
        pairs, re, im = work.pairs[:n], work.re[:n], work.im[:n]
    else:  # pragma: no cover - odd FFT sizes, numpy < 2 (Debian bullseye's python3-numpy)
        spec = np.fft.rfft(windowed, n=cfg.fft_size_samples, axis=1)
        pairs = spec.view(np.float64)
        re, im = pairs[:, 0::2], pairs[:, 1::2]
    np.multiply(pairs, pairs, out=pairs)
    power = np.add(re, im, out=work.power[:n])  # re^2 + im^2
    mel = np.matmul(power, plan.power_t, out=work.mel[:n])  # (n, n_mel + 1): mel energies, frame energy
    np.maximum(mel, cfg.energy_floor, out=mel)
    np.log(mel, out=mel)
    return (mel @ plan.cepstra_t).astype(np.float32)


def _frame(signal: np.ndarray, n_frames: int, window_samples: int, hop_samples: int, first: int = 0) -> np.ndarray:
    """View of ``n_frames`` overlapping frames of a contiguous 1-D array from sample ``first`` (no copy).

    Built with the ndarray constructor: a fraction of ``as_strided``'s Python overhead.
    """
    step = signal.strides[0]
    return np.ndarray((n_frames, window_samples), signal.dtype, signal, first * step, (hop_samples * step, step))


def _emphasised_cepstra(x: np.ndarray, n_frames: int, plan: _Plan, work: _Work | None = None) -> np.ndarray:
    """MFCC of the first ``n_frames`` frames of ``x[1:]``; ``x[0]`` is the sample before them.

    ``x`` is int16 (sample units) or float in [-1, 1]. Pre-emphasis
    ``y[i] = x[i] - a * x[i - 1]`` in float64, psf's filter over the whole
    signal: at the start of a stream ``x[0] = 0`` gives psf's ``y[0] = x[0]``
    (``x + (-a * 0)`` is exactly ``x``).
    """
    cfg = plan.config
    n_samples = cfg.window_samples + (n_frames - 1) * cfg.hop_samples
    if work is None or work.emphasised.size < n_samples:
        y = np.empty(n_samples, np.float64)
        if work is not None:
            work.emphasised = y
    else:
        y = work.emphasised[:n_samples]
    np.multiply(x[:n_samples], -cfg.preemphasis, out=y, dtype=np.float64)
    np.add(y, x[1:n_samples + 1], out=y, dtype=np.float64)
    frames = _frame(y, n_frames, cfg.window_samples, cfg.hop_samples)
    return _cepstra(frames, plan, work, window=plan.window_int16 if x.dtype == _INT16 else None)


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
    x = to_float32(np.asarray(signal))
    if x.ndim != 1:
        raise AudioFormatError(f"signal must be mono (1-D), got shape {x.shape}")
    n = n_complete_frames(len(x), config)
    if n == 0:
        return np.zeros((0, config.n_cepstra), np.float32)
    return _emphasised_cepstra(np.concatenate((np.zeros(1, x.dtype), x)), n, _plan(config))


class StreamingMfcc:
    """Incremental MFCC: each call computes only the frames that became complete.

    ``process(chunk)`` accepts any number of samples (int16 or float in
    [-1, 1]) and returns the new frames, ``(n_new, n_cepstra)`` float32; for
    any chunking of a stream they equal ``mfcc(whole_stream)``.
    :meth:`process_bytes` takes raw samples (what a caller that holds audio as
    ``bytes`` has), the cheapest way in.

    State: the raw samples not yet consumed by a frame (less than one window),
    preceded by the sample before them (for pre-emphasis), as bytes. int16
    streams stay int16 (pre-emphasis runs in sample units; the window product
    scales them exactly). A stream that switches to float continues in float32:
    int16 samples converted by ``/ 32768`` are exactly the same numbers.
    """

    def __init__(self, config: MfccConfig = MfccConfig()) -> None:
        self.config = config
        self._plan = _plan(config)
        self._empty = np.zeros((0, config.n_cepstra), np.float32)
        self._window = config.window_samples
        self._hop = config.hop_samples
        self._work = _Work(self._plan, _MAX_PRODUCT_ROWS)
        self.reset()

    def reset(self) -> None:
        """Forget all audio; the next sample is the start of a new stream."""
        self._tail = b""  # unconsumed raw samples, after the sample before them (b"": stream start)
        self._dtype: np.dtype | None = None  # sample type of _tail
        self.n_samples_seen = 0
        self.n_frames_emitted = 0

    @property
    def sample_dtype(self) -> np.dtype | None:
        """Sample type the stream is held in (int16 or float32; None before the first sample)."""
        return self._dtype

    def samples_until(self, n_frames: int) -> int:
        """Samples still to come before ``n_frames`` more frames are complete (0: they are)."""
        held = len(self._tail) // self._dtype.itemsize - 1 if self._tail else 0
        return max(0, self._window + (n_frames - 1) * self._hop - held)

    def process(self, chunk: np.ndarray) -> np.ndarray:
        chunk = np.asarray(chunk)
        if chunk.ndim > 1 and chunk.size != max(chunk.shape):  # (n, 2) would interleave channels
            raise AudioFormatError(f"audio chunk must be mono (1-D), got shape {chunk.shape}")
        x = chunk.reshape(-1)
        if not (x.dtype == _INT16 or x.dtype == _FLOAT32):
            x = to_float32(x)  # other floats are rounded to float32, as mfcc() does
        return self.process_bytes(x.tobytes(), x.dtype)

    def process_bytes(self, data: bytes, dtype: np.dtype) -> np.ndarray:
        """New frames of raw samples ``data`` (native byte order) of type ``dtype`` (int16 or float32).

        The caller vouches for the samples (int16, or finite float32 in about [-1, 1]):
        :func:`kws_edge.audio.validate_audio` checks chunks at the public entry points.
        """
        if not isinstance(dtype, np.dtype):
            dtype = np.dtype(dtype)
        tail = self._tail
        if dtype != self._dtype:
            if self._dtype is None:  # stream start: the sample before the first one is 0
                self._dtype, tail = dtype, bytes(dtype.itemsize)
            elif self._dtype == _INT16:  # int16 so far, float32 now: continue in float32
                tail = to_float32(np.frombuffer(tail, _INT16)).tobytes()
                self._dtype = _FLOAT32
            else:  # float32 so far, int16 now
                data, dtype = to_float32(np.frombuffer(data, dtype)).tobytes(), _FLOAT32
        size = dtype.itemsize
        seg = tail + data
        self.n_samples_seen += len(data) // size
        held = len(seg) // size - 1
        if held < self._window:  # no frame completes: keep the samples, return at once
            self._tail = seg
            return self._empty
        n = 1 + (held - self._window) // self._hop
        out = _emphasised_cepstra(np.frombuffer(seg, dtype), n, self._plan, self._work)
        self._tail = seg[n * self._hop * size:]
        self.n_frames_emitted += n
        return out
