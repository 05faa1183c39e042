"""TrainConfig: TOML, strict keys and types, overrides, presets; metrics on known confusion matrices."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kws_edge.config import from_dict, to_dict
from kws_edge.errors import ConfigError
from kws_edge.training.config import TrainConfig, load_config
from kws_edge.metrics import clip_metrics, confusion_matrix, from_confusion, metrics_table

LABELS = ("_silence_", "_unknown_", "yes", "no")


def test_round_trip_through_json():
    cfg = TrainConfig()
    again = from_dict(TrainConfig, json.loads(json.dumps(to_dict(cfg))))
    assert again == cfg


def test_toml_and_overrides(tmp_path):
    p = tmp_path / "r.toml"
    p.write_text('epochs = 3\nseed = 9\n[model]\narchitecture = "ds_cnn"\nwidth = 16\n'
                 '[augment]\nspec_augment = true\nnoise_snr_db = [5, 20]\n[features]\nn_cepstra = 13\n')
    cfg = load_config(p, data="/x", epochs=5, seed=None)
    assert cfg.epochs == 5 and cfg.seed == 9 and cfg.data == "/x"
    assert cfg.model.width == 16 and cfg.augment.spec_augment and cfg.augment.noise_snr_db == (5.0, 20.0)
    assert cfg.features.n_cepstra == 13
    tiny = load_config(None, model="tiny_conv")
    assert tiny.model.architecture == "tiny_conv" and tiny.model.width == 8


@pytest.mark.parametrize("text, match", [
    ("epoch = 3\n", "unknown key 'epoch'"),
    ("[model]\nwidht = 3\n", "unknown key 'model.widht'"),
    ("epochs = \"ten\"\n", "epochs must be an integer"),
    ("[augment]\ngain_db = 3\n", "augment.gain_db must be a list"),
    ("learning_rate = -1.0\n", "learning_rate=-1.0 must be > 0"),
    ("epochs = [\n", "not valid TOML"),
])
def test_bad_config_files(tmp_path, text, match):
    p = tmp_path / "bad.toml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_config(p)


def test_unknown_architecture_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="unknown model architecture 'resnet9000'"):
        load_config(None, model="resnet9000")
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml")


def test_metrics_on_a_known_confusion_matrix():
    cm = np.array([[8, 2, 0, 0],    # silence: 8 right, 2 called unknown
                   [1, 15, 3, 1],   # unknown: 4 false accepts (3 yes, 1 no)
                   [0, 1, 19, 0],
                   [0, 0, 1, 9]])
    m = from_confusion(cm, LABELS)
    assert m["n_clips"] == 60
    assert m["accuracy"] == pytest.approx(51 / 60)
    assert m["recall"] == pytest.approx({"_silence_": 0.8, "_unknown_": 0.75, "yes": 0.95, "no": 0.9})
    assert m["keyword_false_accept_rate"] == pytest.approx(4 / 30)
    assert m["confusion_matrix"] == cm.tolist()
    # the same from label vectors
    y_true = np.repeat(np.arange(4), cm.sum(axis=1))
    y_pred = np.concatenate([np.repeat(np.arange(4), row) for row in cm])
    assert clip_metrics(y_true, y_pred, LABELS) == m
    assert "keyword false-accept rate" in metrics_table(m, "x")


def test_metrics_edge_cases():
    perfect = clip_metrics([0, 1, 2, 3], [0, 1, 2, 3], LABELS)
    assert perfect["accuracy"] == 1.0 and perfect["keyword_false_accept_rate"] == 0.0
    only_kw = clip_metrics([2, 3], [3, 3], LABELS)
    assert only_kw["recall"]["_silence_"] is None and only_kw["keyword_false_accept_rate"] is None
    assert only_kw["recall"]["yes"] == 0.0
    with pytest.raises(ValueError):
        confusion_matrix([0, 5], [0, 1], 4)


def test_kws_train_help_lists_every_registered_architecture(capsys):
    from kws_edge.training.cli import main
    from kws_edge.training.models import ARCHITECTURES

    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    out = " ".join(capsys.readouterr().out.split())  # click re-wraps the help text
    assert exit_info.value.code == 0
    assert "tcn" in ARCHITECTURES
    for name in ARCHITECTURES:
        assert f" {name}," in out or f" {name}." in out, name
