"""Feature extraction for scale-out runs: clean features and augmented copies are cached, a second run computes nothing."""

from __future__ import annotations

import dataclasses

import numpy as np
from support.training_data import make_folder
from kws_edge.training.config import TrainConfig
from kws_edge.training.dataset import index_dataset
from kws_edge.training.featurize import FeatureStats, augmented_features, clean_features


def test_augmented_copies_are_cached_and_keyed_by_what_they_depend_on(tmp_path, monkeypatch):
    monkeypatch.setenv("KWS_EDGE_CACHE", str(tmp_path / "cache"))
    root = make_folder(tmp_path / "data", n_speakers=12)
    cfg = TrainConfig(data=str(root), validation_percentage=25, testing_percentage=25)
    idx = index_dataset(root, cfg)
    clips = idx.split("train")
    first, second = FeatureStats(), FeatureStats()
    a = augmented_features(root, clips, cfg, idx.noise_files, workers=1, stats=first, cache=True)
    b = augmented_features(root, clips, cfg, idx.noise_files, workers=1, stats=second, cache=True)
    n = len(clips) * cfg.augment.copies
    assert (first.augmented_computed, first.augmented_hits) == (n, 0)
    assert (second.augmented_computed, second.augmented_hits) == (0, n)
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.float32 and a.shape == (n, 49, 10)
    # training-only fields share the entry; the seed, the augmentation and the clip list do not
    for changed, hit in [({"epochs": 3, "batch_size": 8}, True), ({"seed": 99}, False),
                         ({"augment": dataclasses.replace(cfg.augment, gain_db=(-3.0, 3.0))}, False)]:
        stats = FeatureStats()
        augmented_features(root, clips, dataclasses.replace(cfg, **changed), idx.noise_files, workers=1, stats=stats, cache=True)
        assert (stats.augmented_hits == n) is hit, changed
    stats = FeatureStats()
    augmented_features(root, clips[:-1], cfg, idx.noise_files, workers=1, stats=stats, cache=True)
    assert stats.augmented_computed == n - cfg.augment.copies
    # no cache: computed, nothing read
    stats = FeatureStats()
    c = augmented_features(root, clips, cfg, idx.noise_files, workers=1, stats=stats, cache=False)
    assert stats.augmented_computed == n and stats.augmented_hits == 0
    np.testing.assert_array_equal(a, c)


def test_clean_features_of_a_second_run_are_all_cache_hits(tmp_path, monkeypatch):
    monkeypatch.setenv("KWS_EDGE_CACHE", str(tmp_path / "cache"))
    root = make_folder(tmp_path / "data", n_speakers=8)
    cfg = TrainConfig(data=str(root), validation_percentage=25, testing_percentage=25)
    idx = index_dataset(root, cfg)
    runs = [FeatureStats(), FeatureStats()]
    for stats in runs:
        for split in ("train", "validation", "test"):
            clean_features(root, idx.split(split), cfg, idx.noise_files, workers=1, stats=stats, cache=True)
    assert runs[0].computed == runs[0].n_clips > 0 and runs[1].cache_hits == runs[1].n_clips and runs[1].computed == 0
