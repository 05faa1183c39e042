"""Training-time augmentation; every random choice comes from the caller's generator.

Audio domain (before features): optional speed perturbation, time shift, gain, background noise at a
random signal-to-noise ratio, and a small dither so digital silence never sits
exactly on the log floor of the features. Feature domain (after
normalisation): optional SpecAugment-style time and frequency masks.
"""

from __future__ import annotations

import numpy as np

from .config import AugmentConfig

__all__ = ["augment_audio", "spec_augment", "QUIET_REFERENCE_DBFS"]

#: clips quieter than this (silence, digital zero) get noise relative to this level instead of their own
QUIET_REFERENCE_DBFS = -60.0


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0


def _change_speed(audio: np.ndarray, factor: float) -> np.ndarray:
    """Speed perturbation (tempo and pitch together, as a faster or slower tape) about the clip's centre.

    ``factor`` > 1 is faster (shorter); the result keeps the length, zero-filled where the source ends.
    """
    n = len(audio)
    centre = (n - 1) / 2.0
    src = centre + (np.arange(n, dtype=np.float64) - centre) * factor
    return np.interp(src, np.arange(n), audio, left=0.0, right=0.0).astype(np.float32)


def augment_audio(audio: np.ndarray, rng: np.random.Generator, config: AugmentConfig, noise: list[np.ndarray],
                  *, sample_rate_hz: int) -> np.ndarray:
    """One augmented copy of a clip [shape=(n_samples,), float32 in [-1, 1]], same length."""
    n = len(audio)
    out = np.asarray(audio, np.float32).copy()
    lo, hi = config.speed_range
    if (lo, hi) != (1.0, 1.0):  # no draw otherwise: the copies of earlier recipes stay the same
        out = _change_speed(out, float(rng.uniform(lo, hi)))
    max_shift = int(config.time_shift_ms * sample_rate_hz / 1000.0)
    if max_shift:
        shift = int(rng.integers(-max_shift, max_shift + 1))
        if shift > 0:
            out = np.concatenate((np.zeros(shift, np.float32), out[:n - shift]))
        elif shift < 0:
            out = np.concatenate((out[-shift:], np.zeros(-shift, np.float32)))
    out *= np.float32(10 ** (rng.uniform(*config.gain_db) / 20.0))
    if noise and rng.random() < config.noise_probability:
        src = noise[int(rng.integers(len(noise)))]
        if len(src) > n:
            start = int(rng.integers(0, len(src) - n))
            crop = src[start:start + n]
            noise_rms = _rms(crop)
            if noise_rms > 0:
                ref = max(_rms(out), 10 ** (QUIET_REFERENCE_DBFS / 20.0))
                target = ref / (10 ** (rng.uniform(*config.noise_snr_db) / 20.0))
                out = out + crop * np.float32(target / noise_rms)
    if config.dither_dbfs > -200:
        out = out + rng.standard_normal(n).astype(np.float32) * np.float32(10 ** (config.dither_dbfs / 20.0))
    return np.clip(out, -1.0, 1.0).astype(np.float32)


def spec_augment(features: np.ndarray, rng: np.random.Generator, config: AugmentConfig,
                 fill: float = 0.0) -> np.ndarray:
    """Time and frequency masks on a batch of normalised features [shape=(n, frames, coeffs)], a copy."""
    out = np.array(features, np.float32, copy=True)
    if not config.spec_augment:
        return out
    n, frames, coeffs = out.shape
    for i in range(n):
        for _ in range(config.time_masks):
            w = int(rng.integers(0, config.time_mask_max_frames + 1))
            if w:
                t0 = int(rng.integers(0, frames - w + 1))
                out[i, t0:t0 + w, :] = fill
        for _ in range(config.freq_masks):
            w = int(rng.integers(0, config.freq_mask_max_bins + 1))
            if w:
                f0 = int(rng.integers(0, coeffs - w + 1))
                out[i, :, f0:f0 + w] = fill
    return out
