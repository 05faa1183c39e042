"""Feature cache, augmentation determinism, parity with the runtime feature function."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from support.training_data import make_folder

from kws_edge.features import mfcc
from kws_edge.training.augment import augment_audio, spec_augment
from kws_edge.training.config import AugmentConfig, TrainConfig
from kws_edge.training.dataset import NoiseBank, index_dataset, load_clip_audio
from kws_edge.training.featurize import FeatureStats, augmented_features, clean_features


@pytest.fixture
def indexed(tmp_path, monkeypatch):
    monkeypatch.setenv("KWS_EDGE_CACHE", str(tmp_path / "cache"))
    root = make_folder(tmp_path / "data", n_speakers=12)
    cfg = TrainConfig(data=str(root), validation_percentage=25, testing_percentage=25)
    return root, cfg, index_dataset(root, cfg)


def test_clean_features_equal_runtime_mfcc_and_hit_the_cache(indexed, tmp_path):
    root, cfg, idx = indexed
    clips = idx.split("train")
    first = FeatureStats()
    x = clean_features(root, clips, cfg, idx.noise_files, stats=first, workers=1)
    assert x.shape == (len(clips), 49, 10) and first.computed == len(clips) and first.cache_hits == 0
    bank = NoiseBank(root, idx.noise_files, cfg)
    for i in (0, len(clips) - 1):
        np.testing.assert_array_equal(x[i], mfcc(load_clip_audio(root, clips[i], cfg, bank), cfg.features))
    second = FeatureStats()
    y = clean_features(root, clips, cfg, idx.noise_files, stats=second, workers=1)
    assert second.cache_hits == len(clips) and second.computed == 0
    np.testing.assert_array_equal(x, y)
    assert any((tmp_path / "cache" / "features").rglob("*.npy"))
    # another feature configuration is another cache key
    other = dataclasses.replace(cfg, features=dataclasses.replace(cfg.features, n_cepstra=13))
    third = FeatureStats()
    z = clean_features(root, clips[:5], other, idx.noise_files, stats=third, workers=1)
    assert z.shape == (5, 49, 13) and third.computed == 5


def test_parallel_extraction_matches_in_process(indexed, monkeypatch):
    from kws_edge.training import featurize

    root, cfg, idx = indexed
    clips = idx.split("train")[:40]
    aug1 = augmented_features(root, clips, cfg, idx.noise_files, workers=1)
    monkeypatch.setattr(featurize, "_IN_PROCESS_BELOW", 0)  # force the process pool
    monkeypatch.setattr(featurize, "_CHUNK", 16)
    seen = []
    aug2 = augmented_features(root, clips, cfg, idx.noise_files, workers=2, progress=lambda d, t: seen.append((d, t)))
    n = len(clips) * cfg.augment.copies
    assert seen[-1] == (n, n) and len(seen) == -(-len(clips) // 16)
    np.testing.assert_array_equal(aug1, aug2)  # seeds are per clip and copy, not per worker
    assert aug1.shape == (len(clips) * cfg.augment.copies, 49, 10)


def test_augmentation_is_seeded():
    cfg = AugmentConfig()
    audio = np.sin(np.arange(16000) / 10).astype(np.float32) * 0.3
    noise = [np.random.default_rng(1).standard_normal(50000).astype(np.float32) * 0.1]
    a = augment_audio(audio, np.random.default_rng([5, 1]), cfg, noise, sample_rate_hz=16000)
    b = augment_audio(audio, np.random.default_rng([5, 1]), cfg, noise, sample_rate_hz=16000)
    c = augment_audio(audio, np.random.default_rng([5, 2]), cfg, noise, sample_rate_hz=16000)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.shape == audio.shape and a.dtype == np.float32 and np.abs(a).max() <= 1.0
    # digital zero gets dither, so features stay off the log floor
    z = augment_audio(np.zeros(16000, np.float32), np.random.default_rng(0),
                      dataclasses.replace(cfg, noise_probability=0.0), [], sample_rate_hz=16000)
    assert z.any() and np.abs(z).max() < 1e-3


def test_spec_augment_masks():
    cfg = AugmentConfig(spec_augment=True, time_masks=1, time_mask_max_frames=5, freq_masks=1, freq_mask_max_bins=2)
    x = np.ones((20, 49, 10), np.float32)
    y = spec_augment(x, np.random.default_rng(0), cfg)
    assert (y == 0).any() and (y == 1).any() and x.min() == 1  # a copy, input untouched
    per_clip_zeros = (y == 0).reshape(20, -1).sum(axis=1)
    assert per_clip_zeros.max() <= 5 * 10 + 2 * 49
    assert np.array_equal(spec_augment(x, np.random.default_rng(0), AugmentConfig()), x)
