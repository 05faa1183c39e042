"""distill_from: knowledge distillation from finished runs (the loss, the targets, the teacher checks, a tiny run)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from kws_edge.config import from_dict, to_dict
from kws_edge.errors import ConfigError
from kws_edge.features import Normalization
from kws_edge.training.config import TrainConfig

pytest.importorskip("tensorflow")
pytest.importorskip("espeakng_loader")

from support.training_data import tiny_config  # noqa: E402

from kws_edge.training import distill  # noqa: E402
from kws_edge.training.fit import train  # noqa: E402


def test_distill_settings_are_checked_and_round_trip():
    cfg = TrainConfig(distill_from=("a", "b"), distill_weight=0.7, distill_temperature=3.0)
    assert from_dict(TrainConfig, to_dict(cfg)) == cfg
    assert TrainConfig().distill_from == ()  # off by default
    with pytest.raises(ConfigError, match="distill_weight"):
        TrainConfig(distill_weight=0.0)
    with pytest.raises(ConfigError, match="distill_weight"):
        TrainConfig(distill_weight=1.5)
    with pytest.raises(ConfigError, match="distill_temperature"):
        TrainConfig(distill_temperature=0.0)
    with pytest.raises(ConfigError, match="label_smoothing"):
        TrainConfig(distill_from=("a",), label_smoothing=0.1)
    with pytest.raises(ConfigError, match="negative_class_weight"):
        TrainConfig(distill_from=("a",), negative_class_weight=2.0)


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def test_loss_is_the_weighted_sum_of_hard_and_tempered_soft_cross_entropy():
    import keras
    import tensorflow as tf

    rng = np.random.default_rng(0)
    logits = rng.standard_normal((6, 4)) * 2
    q = np.exp(_log_softmax(logits)).astype(np.float32)
    teacher_p = np.exp(_log_softmax(rng.standard_normal((6, 4)) * 2))
    labels = np.array([0, 1, 2, 3, 2, 1])
    w, t = 0.7, 3.0
    soft = distill._temper(teacher_p, t)
    np.testing.assert_allclose(soft, np.exp(_log_softmax(np.log(teacher_p) / t)), rtol=1e-6)
    packed = distill.pack_targets(labels, soft)
    assert packed.shape == (6, 5) and packed.dtype == np.float32
    np.testing.assert_array_equal(packed[:, 0], labels)

    loss = distill.distillation_loss(4, w, t, tf, keras)
    got = np.asarray(loss(tf.constant(packed), tf.constant(q)))
    hard = -np.log(q[np.arange(6), labels])
    student_t = _log_softmax(np.log(q) / t)  # softmax(log q / T) = softmax(logits / T)
    np.testing.assert_allclose(student_t, _log_softmax(logits / t), atol=1e-5)
    expected = (1 - w) * hard + w * t * t * -(soft * student_t).sum(axis=1)
    np.testing.assert_allclose(got, expected, rtol=1e-4)

    acc = distill.packed_accuracy(tf)
    assert acc.__name__ == "accuracy"  # run histories keep their "accuracy" / "val_accuracy" keys
    np.testing.assert_array_equal(np.asarray(acc(tf.constant(packed), tf.constant(q))),
                                  (q.argmax(1) == labels).astype(np.float32))


class _RecordingModel:
    """Stands in for a teacher's Keras model: returns fixed probabilities and keeps what it was given."""

    def __init__(self, probs: np.ndarray) -> None:
        self.probs, self.seen = probs, None

    def predict(self, x, batch_size=None, verbose=0):  # noqa: ANN001
        self.seen = np.array(x)
        return self.probs


def test_each_teacher_sees_the_features_under_its_own_normalisation_and_the_targets_are_their_mean():
    rng = np.random.default_rng(1)
    raw = rng.standard_normal((5, 3, 2)).astype(np.float32) * 4 + 1
    student = Normalization(mean=(1.0, -2.0), std=(2.0, 0.5))
    p1 = np.full((5, 4), 0.25)
    p2 = np.tile([0.7, 0.1, 0.1, 0.1], (5, 1))
    norms = [Normalization(mean=(0.0, 0.0), std=(1.0, 1.0)), Normalization(mean=(3.0, 1.0), std=(4.0, 2.0))]
    models = [_RecordingModel(p1), _RecordingModel(p2)]
    teachers = distill.Teachers([distill._Teacher(path=None, model=m, normalization=n, info={})
                                 for m, n in zip(models, norms)], temperature=1.0)
    soft = teachers.soft_targets(student.apply(raw), student)
    for m, n in zip(models, norms):
        np.testing.assert_allclose(m.seen, n.apply(raw), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(soft, (p1 + p2) / 2, rtol=1e-5)


@pytest.fixture(scope="module")
def teacher(module_cache):
    cfg = tiny_config(module_cache / "synthetic", epochs=2, average_last_epochs=0)
    return cfg, train(cfg, module_cache / "teacher", workers=1)


def test_a_distilled_run_learns_from_its_teacher_and_records_it(teacher, module_cache):
    cfg, run = teacher
    student_cfg = dataclasses.replace(cfg, distill_from=(str(run.path),), distill_weight=1.0, seed=7)
    a = train(student_cfg, module_cache / "student-a", workers=1)
    b = train(student_cfg, module_cache / "student-b", workers=1)
    plain = train(dataclasses.replace(student_cfg, distill_from=()), module_cache / "plain", workers=1)
    recorded = a.run["distilled_from"]
    assert [r["config_sha256"] for r in recorded] == [run.run["config_sha256"]]
    assert recorded[0]["validation_accuracy"] == run.metrics()["validation"]["accuracy"]
    assert a.config().distill_from == (run.path.name,)  # by name in config.json, as in run.json
    assert a.metrics() == b.metrics()  # deterministic
    assert a.history()["loss"] == b.history()["loss"]
    assert set(a.history()) == set(plain.history())  # same keys: loss, accuracy, val_loss, val_accuracy
    assert a.history()["loss"] != plain.history()["loss"]  # the teacher's term changes the training
    assert 0.0 <= a.history()["accuracy"][-1] <= 1.0


def test_distillation_follows_a_rotating_augmentation_pool(teacher, module_cache):
    # augment.pool_copies: every epoch trains on other augmented copies, which the teacher scores anew
    cfg, run = teacher
    pooled = dataclasses.replace(cfg, augment=dataclasses.replace(cfg.augment, copies=1, pool_copies=3), epochs=3)
    a = train(dataclasses.replace(pooled, distill_from=(str(run.path),)), module_cache / "pooled", workers=1)
    plain = train(pooled, module_cache / "pooled-plain", workers=1)
    assert len(a.history()["loss"]) == 3
    assert a.history()["loss"] != plain.history()["loss"]


def test_weight_averaging_with_teachers_asks_them_once_per_epoch(teacher, module_cache, monkeypatch):
    # the BatchNorm re-estimation after weight averaging reuses the last epoch's inputs: no extra teacher pass
    cfg, run = teacher
    calls = []
    original = distill.Teachers.soft_targets

    def counted(self, x, norm):  # noqa: ANN001
        calls.append(len(x))
        return original(self, x, norm)

    monkeypatch.setattr(distill.Teachers, "soft_targets", counted)
    pooled = dataclasses.replace(cfg, augment=dataclasses.replace(cfg.augment, copies=1, pool_copies=3), epochs=3,
                                 average_last_epochs=2, distill_from=(str(run.path),))
    a = train(pooled, module_cache / "pooled-averaged", workers=1)
    assert len(a.history()["loss"]) == 3
    assert len(calls) == 1 + 1 + 2  # the first epoch's arrays, the validation split, epochs 2 and 3


def test_a_teacher_that_saw_the_students_validation_or_held_out_words_is_refused(teacher, module_cache):
    cfg, run = teacher
    out = module_cache / "refused"
    leaky = dataclasses.replace(cfg, validation_percentage=30.0, distill_from=(str(run.path),))
    with pytest.raises(ConfigError, match="validation or test split"):
        train(leaky, out, workers=1)
    held_out = dataclasses.replace(cfg, exclude_words=("cat",), distill_from=(str(run.path),))
    with pytest.raises(ConfigError, match="cat"):
        train(held_out, out, workers=1)
    other_features = dataclasses.replace(cfg, features=dataclasses.replace(cfg.features, n_cepstra=12),
                                         distill_from=(str(run.path),))
    with pytest.raises(ConfigError, match="different features"):
        train(other_features, out, workers=1)
    assert not out.exists()  # refused before the run directory is made


def _toml(values: dict) -> str:
    """A TOML recipe of ``to_dict(config)`` (strings, numbers, booleans, lists and one level of tables)."""
    top = [f"{k} = {json.dumps(v)}" for k, v in values.items() if not isinstance(v, dict)]
    tables = [f"[{k}]\n" + "\n".join(f"{kk} = {json.dumps(vv)}" for kk, vv in v.items())
              for k, v in values.items() if isinstance(v, dict)]
    return "\n".join(top) + "\n\n" + "\n\n".join(tables) + "\n"


def test_cli_takes_teachers_and_reports_a_missing_one_in_one_line(teacher, module_cache, capsys):
    from kws_edge.training.cli import main

    cfg, run = teacher
    recipe = module_cache / "recipe.toml"
    recipe.write_text(_toml(to_dict(cfg)))
    with pytest.raises(SystemExit) as exc:
        main(["--data", "synthetic", "--config", str(recipe), "--out", str(module_cache / "cli-run"),
              "--distill-from", str(module_cache / "no-such-run"), "-q"])
    assert exc.value.code != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no-such-run" in err[0]
    assert not (module_cache / "cli-run").exists()
    with pytest.raises(SystemExit) as exc:
        main(["--data", "synthetic", "--config", str(recipe), "--out", str(module_cache / "cli-run"),
              "--distill-from", str(run.path), "-q", "--json"])
    assert exc.value.code == 0
    printed = json.loads(capsys.readouterr().out)
    # the teacher by name: run files hold no absolute path of this machine
    assert json.loads((module_cache / "cli-run" / "run.json").read_text())["distilled_from"][0]["path"] == run.path.name
    assert printed["metrics"]["validation"]["accuracy"] >= 0.0
