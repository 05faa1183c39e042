"""The numpy resampler equals scipy.signal.resample_poly; WAV reading without scipy says what to install."""

from __future__ import annotations

import sys
from math import gcd

import numpy as np
import pytest

from kws_edge.audio import read_wav, resample
from kws_edge.resample import resample_poly


@pytest.mark.parametrize("from_hz, to_hz", [(8000, 16000), (22050, 16000), (44100, 16000), (48000, 16000),
                                            (16000, 8000), (11025, 16000)])
@pytest.mark.parametrize("n", [1, 7, 1000, 22050 + 13])
def test_resample_poly_equals_scipy(rng, from_hz, to_hz, n):
    from scipy.signal import resample_poly as scipy_resample_poly

    x = (0.5 * rng.standard_normal(n)).astype(np.float32)
    g = gcd(from_hz, to_hz)
    ref = scipy_resample_poly(x.astype(np.float64), to_hz // g, from_hz // g)
    ours = resample_poly(x, to_hz // g, from_hz // g)
    assert ours.dtype == np.float32 and ours.shape == ref.shape == (-(-n * to_hz // from_hz),)
    np.testing.assert_allclose(ours, ref, atol=1e-6, rtol=0)
    # and what kws_edge.audio.resample (used for WAVs at other rates) returns
    np.testing.assert_array_equal(resample(x, from_hz, to_hz), ours)


def test_resample_same_rate_is_identity(rng):
    x = rng.standard_normal(100).astype(np.float32)
    assert resample(x, 16000, 16000) is x
    np.testing.assert_array_equal(resample_poly(x, 3, 3), x)


def test_long_input_is_resampled_in_blocks(rng):
    """More outputs than one gather block: the blocks join without a seam."""
    x = (0.3 * rng.standard_normal(3 * 22050)).astype(np.float32)
    whole = resample_poly(x, 320, 441)
    from scipy.signal import resample_poly as scipy_resample_poly

    np.testing.assert_allclose(whole, scipy_resample_poly(x.astype(np.float64), 320, 441), atol=1e-6, rtol=0)


def test_reading_a_wav_needs_no_scipy(tmp_wav, monkeypatch):
    x = (0.3 * np.sin(np.arange(22050) / 7)).astype(np.float32)
    path = tmp_wav(x, rate_hz=22050)
    for name in ("scipy", "scipy.io", "scipy.signal"):
        monkeypatch.setitem(sys.modules, name, None)  # any scipy import now fails
    wav = read_wav(path)  # kws_edge.audio's own WAV reader and kws_edge.resample (issue 22)
    assert wav.resampled and len(wav.samples) == 16000
