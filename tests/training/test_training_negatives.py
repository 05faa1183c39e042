"""Held-out words (``exclude_words``) and synthetic confusable negatives mixed into real data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kws_edge.audio import write_wav
from kws_edge.errors import ConfigError
from kws_edge.training.config import UNKNOWN_LABEL, TrainConfig
from kws_edge.training.dataset import index_dataset, synthetic_negative_clips

SPEAKERS = [f"{i:08x}" for i in range(0, 0xFFFFFFF, 0xFFFFFFF // 40)][:40]


def _folder(root: Path, words: tuple[str, ...], speakers: list[str]) -> Path:
    rng = np.random.default_rng(0)
    for w in words:
        for s in speakers:
            write_wav(root / w / f"{s}_nohash_0.wav", rng.normal(0, 0.05, 4000).astype(np.float32), 16000)
    return root


def test_exclude_words_are_in_no_split(tmp_path):
    root = _folder(tmp_path / "data", ("yes", "no", "bed", "up"), SPEAKERS)
    cfg = TrainConfig(data=str(root), exclude_words=("bed",), silence_percentage=0.0)
    index = index_dataset(root, cfg)
    words = {c.word for c in index.clips}
    assert "bed" not in words
    assert {"yes", "no", "up"} <= words
    assert not any("bed/" in f["path"] for f in index.files())
    # without the option the word is there
    assert "bed" in {c.word for c in index_dataset(root, TrainConfig(data=str(root))).clips}


def test_a_keyword_cannot_be_held_out():
    with pytest.raises(ConfigError, match="keyword 'yes'"):
        TrainConfig(exclude_words=("yes",))


def test_synthetic_negatives_skip_keywords_and_held_out_words(tmp_path):
    folder = _folder(tmp_path / "tts", ("go", "bed", "yes", "so"), SPEAKERS[:5])
    cfg = TrainConfig(data="x", exclude_words=("bed",), synthetic_negatives=7, seed=3)
    clips = synthetic_negative_clips(folder, cfg)
    assert len(clips) == 7
    assert {c.word for c in clips} <= {"go", "so"}
    assert all(c.label == UNKNOWN_LABEL and c.split == "train" and Path(c.path).is_absolute() for c in clips)
    assert all(len(c.sha256) == 64 for c in clips)
    assert [c.path for c in synthetic_negative_clips(folder, cfg)] == [c.path for c in clips]  # seeded
    many = synthetic_negative_clips(folder, TrainConfig(data="x", exclude_words=("bed",), synthetic_negatives=999))
    assert len(many) == 10  # capped by what the folder holds


def test_data_hash_does_not_depend_on_where_the_synthetic_cache_lives(tmp_path):
    import dataclasses
    import shutil

    root = _folder(tmp_path / "data", ("yes", "no", "up"), SPEAKERS)
    a = _folder(tmp_path / "cache_a" / "k1", ("go", "so"), SPEAKERS[:5])
    b = tmp_path / "elsewhere" / "deeper" / "k1"
    shutil.copytree(a, b)
    cfg = TrainConfig(data=str(root), synthetic_negatives=4, seed=2, silence_percentage=0.0)
    index = index_dataset(root, cfg)
    one = dataclasses.replace(index, clips=index.clips + synthetic_negative_clips(a, cfg))
    two = dataclasses.replace(index, clips=index.clips + synthetic_negative_clips(b, cfg))
    assert [c.path for c in one.clips] != [c.path for c in two.clips]  # the manifest keeps where they were
    assert one.content_sha256 == two.content_sha256
    # and the content still counts: a different draw of negatives is a different hash
    three = dataclasses.replace(index, clips=index.clips + synthetic_negative_clips(a, dataclasses.replace(cfg, seed=5)))
    assert three.content_sha256 != one.content_sha256


def test_tcn_is_in_the_model_registry():
    from kws_edge.training.config import ModelConfig
    from kws_edge.training.models import ARCHITECTURES, build_model

    assert "tcn" in ARCHITECTURES
    model = build_model(ModelConfig("tcn", width=8, depth=2, dropout=0.0), (49, 10), 4)
    assert tuple(model.output_shape) == (None, 4)
