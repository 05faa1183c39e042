"""Polyphase resampling with numpy alone: the device path does not need scipy.

:func:`resample_poly` is ``scipy.signal.resample_poly(x, up, down)`` with its
defaults (a Kaiser-windowed sinc low-pass, beta 5, ``10 * max(up, down)``
taps each side, cutoff at the lower Nyquist frequency, zero padding at both
ends), computed in float64: the filter is split into its ``up`` phases and
every output sample is one dot product of a phase with the input samples
under it. tests/runtime/test_runtime_audio.py checks it against scipy's (within
1e-6; scipy filters float32 input in float32).
"""

from __future__ import annotations

from math import gcd

import numpy as np

__all__ = ["resample_poly", "KAISER_BETA"]

#: scipy.signal.resample_poly's default window, ('kaiser', 5.0)
KAISER_BETA = 5.0

#: output samples computed per gather (bounds the temporary to about 8 MB whatever the input length)
_BLOCK_OUTPUTS = 16384


def _lowpass(n_taps: int, cutoff: float) -> np.ndarray:
    """scipy.signal.firwin(n_taps, cutoff, window=('kaiser', 5.0)): windowed sinc, unit gain at DC."""
    m = np.arange(n_taps) - (n_taps - 1) / 2.0
    h = cutoff * np.sinc(cutoff * m) * np.kaiser(n_taps, KAISER_BETA)
    return h / h.sum()


def resample_poly(samples: np.ndarray, up: int, down: int) -> np.ndarray:
    """Resample 1-D ``samples`` by ``up / down``; ``ceil(len * up / down)`` float32 samples out."""
    x = np.asarray(samples, np.float64).reshape(-1)
    g = gcd(int(up), int(down))
    up, down = int(up) // g, int(down) // g
    if up == down:
        return x.astype(np.float32)
    n_in = len(x)
    n_out = -(-n_in * up // down)
    max_rate = max(up, down)
    half_len = 10 * max_rate
    h = _lowpass(2 * half_len + 1, 1.0 / max_rate) * up
    # scipy's alignment: h is preceded by n_pre_pad zeros and the first n_pre_remove outputs are dropped
    n_pre_pad = down - half_len % down
    n_pre_remove = (half_len + n_pre_pad) // down
    n_phase_taps = -(-len(h) // up)
    phases = np.zeros((up, n_phase_taps))  # phases[p, j] = h[p + j * up]
    padded_h = np.zeros(up * n_phase_taps)
    padded_h[:len(h)] = h
    phases[:] = padded_h.reshape(n_phase_taps, up).T
    # input with n_phase_taps zeros on each side (scipy's constant-zero padding)
    xp = np.concatenate((np.zeros(n_phase_taps), x, np.zeros(n_phase_taps)))
    out = np.empty(n_out, np.float32)
    taps = np.arange(n_phase_taps)
    for start in range(0, n_out, _BLOCK_OUTPUTS):
        m = np.arange(start, min(n_out, start + _BLOCK_OUTPUTS))
        t = (m + n_pre_remove) * down - n_pre_pad  # position of output m in the filter's index space
        newest = t // up  # newest input sample under the filter
        idx = newest[:, None] - taps[None, :] + n_phase_taps
        np.clip(idx, 0, len(xp) - 1, out=idx)  # beyond the padding every tap weight is zero anyway
        out[start:start + len(m)] = np.einsum("ij,ij->i", xp[idx], phases[t % up])
    return out
