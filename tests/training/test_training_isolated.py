"""Isolated keywords (issue 18): each keyword clip alone in noise, fresh detector, process + flush."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from support.tone_bundle import clip as tone_clip

from kws_edge.audio import write_wav
from kws_edge.errors import ConfigError
from kws_edge.training.config import TrainConfig
from kws_edge.training.dataset import NoiseBank, index_dataset
from kws_edge.training.streaming_eval import IsolatedConfig, isolated_detection

SR = 16000
#: the tone bundle was trained on quiet backgrounds: at 20-30 dB SNR it hears every pattern
QUIET = IsolatedConfig(snr_db=(20.0, 30.0))


@pytest.fixture(scope="module")
def tone_data(tmp_path_factory):
    """A Speech Commands-layout folder of the tone bundle's own patterns, with a noise recording."""
    root = tmp_path_factory.mktemp("tones") / "data"
    rng = np.random.default_rng(5)
    for s in range(16):
        for label, folder in (("yes", "yes"), ("no", "no"), ("_unknown_", "other")):
            write_wav(root / folder / f"{s * 7919:08x}_nohash_0.wav", tone_clip(label, rng), SR)
    write_wav(root / "_background_noise_" / "n.wav", (0.01 * rng.standard_normal(30 * SR)).astype(np.float32), SR)
    cfg = TrainConfig(data=str(root), validation_percentage=30, testing_percentage=30)
    idx = index_dataset(root, cfg)
    return root, cfg, idx, NoiseBank(root, idx.noise_files, cfg)


def test_the_tone_bundle_hears_its_isolated_keywords(tone_bundle, tone_data):
    root, cfg, idx, noise = tone_data
    clips = idx.split("validation") + idx.split("test")
    r = isolated_detection(tone_bundle, root, clips, cfg, noise, QUIET, split="test")
    n_kw = sum(c.label in ("yes", "no") for c in clips)
    assert r["n_clips"] == n_kw > 6
    assert r["per_keyword"]["yes"]["n"] + r["per_keyword"]["no"]["n"] == n_kw
    assert r["detection_rate"] == 1.0, r
    assert r["per_keyword"]["yes"]["wrong"] == r["per_keyword"]["no"]["wrong"] == 0
    # the noise is scaled to the SNR: buried 10 dB under it, the patterns are lost
    loud = isolated_detection(tone_bundle, root, clips, cfg, noise, IsolatedConfig(snr_db=(-10.0, -10.0)),
                              split="test")
    assert loud["detection_rate"] < 0.5
    assert len(loud["missed"]) == n_kw - sum(v["detected"] for v in loud["per_keyword"].values())
    # the same seed gives the same recordings and figures
    again = isolated_detection(tone_bundle, root, clips, cfg, noise, IsolatedConfig(snr_db=(-10.0, -10.0)),
                               split="test")
    assert again["per_keyword"] == loud["per_keyword"] and again["missed"] == loud["missed"]


def test_a_detector_that_asks_too_much_hears_fewer(tone_bundle, tone_data):
    root, cfg, idx, noise = tone_data
    clips = idx.split("validation") + idx.split("test")
    strict = dataclasses.replace(tone_bundle.manifest.detector, min_count=10_000)
    r = isolated_detection(tone_bundle, root, clips, cfg, noise, QUIET, detector_config=strict, split="test")
    assert r["detection_rate"] == 0.0
    assert len(r["missed"]) == r["n_clips"] and all(m["heard"] == [] for m in r["missed"])
    assert all(20.0 <= m["snr_db"] <= 30.0 for m in r["missed"])


def test_a_keyword_at_the_very_end_of_input_is_heard_through_flush(tone_bundle, tone_data):
    """No noise after the clip: only the end-of-input flush lets the smoothing count the last word."""
    from kws_edge.detector import KeywordDetector
    from kws_edge.training.dataset import load_clip_audio

    root, cfg, idx, noise = tone_data
    clips = [c for c in idx.split("validation") + idx.split("test") if c.label in ("yes", "no")]
    r = isolated_detection(tone_bundle, root, clips, cfg, noise, IsolatedConfig(pad_s=0.0, snr_db=(20.0, 30.0)),
                           split="test")
    assert r["detection_rate"] == 1.0
    det = KeywordDetector(tone_bundle)
    unflushed = 0
    for c in clips:
        det.reset()
        unflushed += any(d.label == c.label for d in det.process(load_clip_audio(root, c, cfg, noise)))
    assert unflushed < r["detection_rate"] * len(clips)


def test_isolated_config_is_checked():
    with pytest.raises(ConfigError):
        IsolatedConfig(pad_s=-1.0)
    with pytest.raises(ConfigError):
        IsolatedConfig(snr_db=(30.0, 10.0))
