"""Several dataset folders as one dataset: one speaker-hash split, per-folder hashes, no absolute paths."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from support.training_data import SR, make_folder, tone

from kws_edge.audio import write_wav
from kws_edge.config import from_dict, to_dict
from kws_edge.errors import ConfigError, DataError
from kws_edge.training.config import TrainConfig
from kws_edge.training.dataset import NoiseBank, index_dataset, load_clip_audio, speaker_of


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KWS_EDGE_CACHE", str(tmp_path / "cache"))


def _more(root, speakers):
    """A second folder without keywords or noise (like speech_commands_more): 'go' and 'left' clips."""
    for i, speaker in enumerate(speakers):
        for j, (word, f) in enumerate((("go", 500.0), ("left", 1300.0))):
            write_wav(root / word / f"{speaker}_nohash_1.wav", tone(f, 1.0, 1000 + 2 * i + j), SR)
    return root


@pytest.fixture
def folders(tmp_path):
    first = make_folder(tmp_path / "a" / "subset")
    # half the speakers of the first folder, plus speakers of its own
    shared = [f"{s * 7919:08x}" for s in range(0, 30, 2)]
    own = [f"{s * 104729:08x}" for s in range(1, 21)]
    second = _more(tmp_path / "b" / "more", shared + own)
    return first, second


def _config(*data, **kw):
    return TrainConfig(data=tuple(str(d) for d in data), validation_percentage=20, testing_percentage=20,
                       unknown_percentage=1000.0, **kw)


def test_one_split_across_folders_and_clips_named_by_folder(folders):
    first, second = folders
    idx = index_dataset(folders, _config(*folders))
    words = [c for c in idx.clips if not c.is_silence]
    assert {c.path.split("/", 1)[0] for c in words} == {"subset", "more"}
    assert {c.word for c in words if c.path.startswith("more/")} == {"go", "left"}
    assert all(c.label == "_unknown_" for c in words if c.path.startswith("more/"))
    split_of = {}
    for c in words:
        split_of.setdefault(c.speaker, set()).add(c.split)
    assert all(len(s) == 1 for s in split_of.values()), "a speaker in both folders landed in two splits"
    in_both = {speaker_of(c.path) for c in words if c.path.startswith("more/")} & \
        {speaker_of(c.path) for c in words if c.path.startswith("subset/")}
    assert len(in_both) >= 10
    # every clip reads back through the one root, with the noise of the first folder
    bank = NoiseBank(idx.root, idx.noise_files, idx_config := _config(*folders))
    for c in idx.clips[:: max(1, len(idx.clips) // 25)]:
        audio = load_clip_audio(idx.root, c, idx_config, bank)
        assert audio.shape == (SR,) and np.isfinite(audio).all()
    assert [n["path"] for n in idx.noise_files] == ["subset/_background_noise_/white.wav"]


def test_lists_of_one_folder_take_that_speakers_clips_in_the_other(folders, tmp_path):
    first, second = folders
    speaker = f"{4 * 7919:08x}"  # in both folders
    cfg = _config(*folders)
    before = {c.split for c in index_dataset(folders, cfg).clips if c.speaker == speaker}
    target = "test" if before != {"test"} else "validation"
    listed = "testing_list.txt" if target == "test" else "validation_list.txt"
    (first / listed).write_text(f"yes/{speaker}_nohash_0.wav\n")
    after = {c.path: c.split for c in index_dataset(folders, cfg).clips if c.speaker == speaker}
    assert any(p.startswith("more/") for p in after)
    assert set(after.values()) == {target}


def test_manifest_has_each_folders_hash_and_no_absolute_path(folders, tmp_path):
    first, second = folders
    cfg = _config(*folders)
    m = index_dataset(folders, cfg).manifest()
    assert [f["name"] for f in m["folders"]] == ["subset", "more"]
    assert all(len(f["content_sha256"]) == 64 for f in m["folders"])
    assert str(tmp_path) not in json.dumps(m)
    # a change in the second folder changes its hash and the whole hash, not the first folder's
    write_wav(second / "go" / f"{5 * 104729:08x}_nohash_1.wav", tone(510.0, 1.0, 7), SR)
    m2 = index_dataset(folders, cfg).manifest()
    assert m2["folders"][0] == m["folders"][0]
    assert m2["folders"][1]["content_sha256"] != m["folders"][1]["content_sha256"]
    assert m2["content_sha256"] != m["content_sha256"]


def test_one_folder_indexes_as_before(folders):
    first, _ = folders
    one = index_dataset(first, TrainConfig(data=str(first), validation_percentage=20, testing_percentage=20))
    listed = index_dataset([first], TrainConfig(data=(str(first),), validation_percentage=20, testing_percentage=20))
    assert one.content_sha256 == listed.content_sha256 and one.root == listed.root
    assert not one.folder_names and "folders" not in one.manifest()
    assert all(not c.path.startswith("subset/") for c in one.clips)


def test_config_takes_a_list_and_refuses_bad_ones(folders):
    a, b = (str(f) for f in folders)
    cfg = from_dict(TrainConfig, {"data": [a, b]})
    assert cfg.data == (a, b) and cfg.data_folders == (a, b)
    assert from_dict(TrainConfig, to_dict(cfg)) == cfg
    assert from_dict(TrainConfig, {"data": [a]}).data == a  # one folder is stored as that folder
    for bad, words in (([], "empty"), (["synthetic", a], "cannot be combined"), ([a, a], "twice")):
        with pytest.raises(ConfigError, match=words):
            from_dict(TrainConfig, {"data": bad})


def test_two_folders_of_one_name_or_no_keywords_are_refused(tmp_path):
    a = make_folder(tmp_path / "x" / "data")
    b = _more(tmp_path / "y" / "data", ["0000aaaa"])
    with pytest.raises(DataError, match="both named 'data'"):
        index_dataset([a, b], _config(a, b))
    c = _more(tmp_path / "z" / "more", ["0000bbbb"])
    with pytest.raises(DataError, match="no clips for keyword 'yes'"):
        index_dataset([b, c], _config(b, c))
    with pytest.raises(DataError, match="does not exist"):
        index_dataset([a, tmp_path / "nope"], _config(a, tmp_path / "nope"))


def test_kws_train_takes_data_twice(folders, tmp_path):
    pytest.importorskip("tensorflow")
    from click.testing import CliRunner

    from kws_edge.training.cli import train_command

    first, second = folders
    recipe = tmp_path / "tiny.toml"
    recipe.write_text('epochs = 1\nbatch_size = 32\nvalidation_percentage = 20.0\ntesting_percentage = 20.0\n'
                      'representative_samples = 20\n[model]\narchitecture = "tiny_conv"\nwidth = 4\n'
                      '[augment]\ncopies = 0\n')
    out = tmp_path / "run"
    res = CliRunner().invoke(train_command, ["--data", str(first), "--data", str(second), "--out", str(out),
                                             "--config", str(recipe), "--quiet", "--json"])
    assert res.exit_code == 0, res.output
    config = json.loads((out / "config.json").read_text())
    assert first.is_absolute() and config["data"] == ["subset", "more"]  # by name: no path of this machine
    from kws_edge.config import config_hash
    from kws_edge.portable import absolute_paths_in

    assert json.loads((out / "run.json").read_text())["config_sha256"] == config_hash(config)
    for path in sorted(out.rglob("*.json")):
        assert absolute_paths_in(json.loads(path.read_text())) == [], path.relative_to(out)
    manifest = json.loads((out / "data_manifest.json").read_text())
    assert [f["name"] for f in manifest["folders"]] == ["subset", "more"]
    assert any(f["path"].startswith("more/go/") for f in manifest["files"])
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["data_root"] == "subset+more"
