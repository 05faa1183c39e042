"""Indexing, speaker-disjoint splits, list files, silence, bad input (tone datasets, no TensorFlow)."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pytest
from support.training_data import make_folder

from kws_edge.errors import DataError
from kws_edge.training.config import TrainConfig
from kws_edge.training.dataset import NoiseBank, index_dataset, load_clip_audio, speaker_of, which_set


def _tf_which_set(filename, validation_percentage, testing_percentage):
    # the TensorFlow speech_commands formula, written out independently
    import os
    import re

    base_name = os.path.basename(filename)
    hash_name = re.sub(r"_nohash_.*$", "", base_name)
    h = hashlib.sha1(hash_name.encode()).hexdigest()
    p = (int(h, 16) % (2**27)) * (100.0 / (2**27 - 1))
    return "validation" if p < validation_percentage else "test" if p < validation_percentage + testing_percentage \
        else "train"


def test_which_set_matches_tensorflow_formula():
    for i in range(300):
        name = f"yes/{i * 104729:08x}_nohash_{i % 3}.wav"
        assert which_set(name, 10, 10) == _tf_which_set(name, 10, 10)
    assert speaker_of("no/0132a06d_nohash_3.wav") == "0132a06d"


@pytest.fixture
def folder(tmp_path):
    return make_folder(tmp_path / "data")


def test_index_is_speaker_disjoint_and_complete(folder):
    cfg = TrainConfig(data=str(folder), validation_percentage=20, testing_percentage=20)
    idx = index_dataset(folder, cfg)
    splits_of = {}
    for c in idx.clips:
        if not c.is_silence:
            splits_of.setdefault(c.speaker, set()).add(c.split)
    assert splits_of and all(len(s) == 1 for s in splits_of.values())
    counts = idx.counts()
    for split in ("train", "validation", "test"):
        assert counts[split]["yes"] > 0 and counts[split]["no"] > 0
        # silence and unknown follow the configured percentages of the keyword clips
        n_kw = counts[split]["yes"] + counts[split]["no"]
        assert counts[split]["_silence_"] == round(cfg.silence_percentage / 100 * n_kw)
        assert counts[split]["_unknown_"] == min(round(cfg.unknown_percentage / 100 * n_kw),
                                                 2 * counts[split]["yes"])
    m = idx.manifest()
    assert m["content_sha256"] == index_dataset(folder, cfg).content_sha256  # stable
    assert {f["label"] for f in m["files"]} == {"yes", "no", "_unknown_", "_background_noise_"}


def test_list_files_win_and_keep_speakers_together(folder):
    cfg = TrainConfig(data=str(folder), validation_percentage=20, testing_percentage=20)
    idx = index_dataset(folder, cfg)
    train_speaker = next(c.speaker for c in idx.clips if c.split == "train" and not c.is_silence)
    (folder / "testing_list.txt").write_text(f"yes/{train_speaker}_nohash_0.wav\n")
    (folder / "validation_list.txt").write_text("")
    idx2 = index_dataset(folder, cfg)
    splits = {c.split for c in idx2.clips if c.speaker == train_speaker}
    assert splits == {"test"}  # the listed file and the speaker's other files
    # speakers not listed keep their hash split
    before = {c.path: c.split for c in idx.clips if not c.is_silence and c.speaker != train_speaker}
    after = {c.path: c.split for c in idx2.clips if not c.is_silence and c.speaker != train_speaker}
    assert all(after[p] == before[p] for p in set(before) & set(after))


def test_silence_levels_and_digital_zero(folder):
    cfg = TrainConfig(data=str(folder), silence_percentage=100, silence_zero_share=0.2,
                      validation_percentage=20, testing_percentage=20)
    idx = index_dataset(folder, cfg)
    bank = NoiseBank(idx.root, idx.noise_files, cfg)
    silence = [c for c in idx.clips if c.is_silence]
    zeros = [c for c in silence if c.level_dbfs is None]
    assert zeros and len(zeros) < len(silence)
    for c in silence[:30]:
        audio = load_clip_audio(idx.root, c, cfg, bank)
        assert audio.shape == (16000,)
        if c.level_dbfs is None:
            assert not audio.any()
        else:
            rms_db = 20 * np.log10(np.sqrt(np.mean(audio.astype(np.float64) ** 2)))
            assert rms_db == pytest.approx(c.level_dbfs, abs=0.5)
            assert cfg.silence_levels_dbfs[0] <= c.level_dbfs <= cfg.silence_levels_dbfs[1]


def test_short_clips_are_padded_and_bad_files_skipped(folder):
    (folder / "yes" / "deadbeef_nohash_0.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    (folder / "no" / "deadbeef_nohash_1.wav").write_bytes(b"")
    cfg = TrainConfig(data=str(folder), validation_percentage=20, testing_percentage=20)
    idx = index_dataset(folder, cfg)
    assert {s["path"] for s in idx.skipped} == {"yes/deadbeef_nohash_0.wav", "no/deadbeef_nohash_1.wav"}
    assert all(s["reason"] for s in idx.skipped)
    assert idx.manifest()["skipped"] == idx.skipped
    short = next(c for c in idx.clips if c.path == "yes/00000000_nohash_0.wav")  # 0.6 s clip
    audio = load_clip_audio(idx.root, short, cfg, None)
    assert audio.shape == (16000,) and not audio[:1000].any() and audio[8000] != 0


def test_missing_folder_and_no_keywords(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        index_dataset(tmp_path / "nope", TrainConfig())
    (tmp_path / "words" / "up").mkdir(parents=True)
    with pytest.raises(DataError, match="no clips for keyword 'yes'"):
        index_dataset(tmp_path / "words", TrainConfig())
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(DataError, match="not a folder"):
        index_dataset(tmp_path / "file.txt", TrainConfig())


def test_too_few_speakers_is_a_clear_error(tmp_path):
    root = make_folder(tmp_path / "d", n_speakers=2)
    with pytest.raises(DataError, match="split .* has no keyword clips"):
        index_dataset(root, TrainConfig())


def test_folder_without_noise_uses_digital_zero(tmp_path):
    root = make_folder(tmp_path / "d", noise=False)
    cfg = dataclasses.replace(TrainConfig(), validation_percentage=20, testing_percentage=20)
    idx = index_dataset(root, cfg)
    assert all(c.level_dbfs is None for c in idx.clips if c.is_silence)
