"""Cold start measures the fresh interpreter's own peak RSS, not the peak of the process that started it."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from kws_edge.bench import cold_start, peak_rss_bytes

BIG_BYTES = 400 * 2**20


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the inherited ru_maxrss is a Linux behaviour")
def test_cold_start_rss_is_the_childs_own_peak(tone_bundle_path):
    ballast = np.ones(BIG_BYTES // 8)  # touched: this process's peak is now above 400 MiB
    assert ballast.sum() == BIG_BYTES // 8
    parent_peak = peak_rss_bytes()
    assert parent_peak > BIG_BYTES
    cold = cold_start(tone_bundle_path)
    assert cold["peak_rss_source"] == "VmHWM"
    assert cold["tensorflow_imported"] is False
    # an interpreter with numpy, scipy and LiteRT loaded: tens of MiB, far below the parent's peak
    assert 10 * 2**20 < cold["peak_rss_bytes"] < parent_peak / 3, (cold["peak_rss_bytes"], parent_peak)
