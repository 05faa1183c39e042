"""average_last_epochs: tail-averaged weights with re-estimated BatchNorm statistics (tiny runs)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from kws_edge.config import from_dict, to_dict
from kws_edge.errors import ConfigError
from kws_edge.training.config import ModelConfig, TrainConfig

pytest.importorskip("tensorflow")
pytest.importorskip("espeakng_loader")

from support.training_data import tiny_config  # noqa: E402

from kws_edge.training.fit import recalibrate_batchnorm, train  # noqa: E402


def test_average_last_epochs_is_checked_and_round_trips():
    assert TrainConfig().average_last_epochs >= 0
    assert TrainConfig(epochs=2, average_last_epochs=3).average_last_epochs == 3  # then all epochs are averaged
    with pytest.raises(ConfigError, match="average_last_epochs"):
        TrainConfig(average_last_epochs=-1)
    with pytest.raises(ConfigError, match="averaging_lr_fraction"):
        TrainConfig(averaging_lr_fraction=1.5)
    cfg = TrainConfig(epochs=6, average_last_epochs=2, averaging_lr_fraction=0.1)
    assert from_dict(TrainConfig, to_dict(cfg)) == cfg


def test_recalibration_sets_the_moving_statistics_to_the_data_statistics():
    import keras

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(3, use_bias=False, kernel_initializer="identity"),
                              keras.layers.BatchNormalization(momentum=0.9)])
    bn = model.layers[-1]
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((4000, 3)) * [1.0, 2.0, 0.5] + [1.0, -2.0, 3.0]).astype(np.float32)
    n_batches = recalibrate_batchnorm(model, x, 64, np.random.default_rng(1))
    assert n_batches == int(np.ceil(4000 / 64))
    np.testing.assert_allclose(bn.moving_mean.numpy(), x.mean(axis=0), atol=0.02)
    np.testing.assert_allclose(bn.moving_variance.numpy(), x.var(axis=0), rtol=0.03)
    assert bn.momentum == 0.9  # restored
    # inference now normalises the data: mean 0, variance 1 per feature
    y = model.predict(x, verbose=0)
    np.testing.assert_allclose(y.mean(axis=0), 0.0, atol=0.02)
    np.testing.assert_allclose(y.var(axis=0), 1.0, rtol=0.03)


@pytest.fixture(scope="module")
def env(module_cache):
    return module_cache


def _model(run):
    import keras

    return keras.saving.load_model(run.path / "model.keras", compile=False)


@pytest.mark.slow
def test_averaged_run_is_deterministic_and_its_metrics_are_the_averaged_model(env):
    cfg = tiny_config(env / "synthetic", epochs=3, model=ModelConfig("ds_cnn", width=8, depth=1, dropout=0.1),
                      average_last_epochs=0)
    averaged = dataclasses.replace(cfg, average_last_epochs=2)
    a = train(averaged, env / "a", workers=1)
    b = train(averaged, env / "b", workers=1)
    plain = train(cfg, env / "plain", workers=1)
    assert a.config().average_last_epochs == 2
    assert a.metrics() == b.metrics()
    for wa, wb in zip(_model(a).get_weights(), _model(b).get_weights()):
        np.testing.assert_allclose(wa, wb, atol=1e-6)
    # same training trajectory (history), different final weights
    assert a.history()["loss"] == plain.history()["loss"]
    assert any(not np.allclose(wa, wp) for wa, wp in zip(_model(a).get_weights(), _model(plain).get_weights()))
    # the saved (averaged) model is the one the metrics describe
    x, y = a.arrays("validation")
    pred = _model(a).predict(a.normalization().apply(x), verbose=0).argmax(-1)
    assert float(np.mean(pred == y)) == pytest.approx(a.metrics()["validation"]["accuracy"])


def test_focal_loss_scales_cross_entropy_by_the_miss_probability():
    import keras
    import tensorflow as tf

    from kws_edge.training.fit import _loss

    assert _loss(TrainConfig(), tf, keras) == "sparse_categorical_crossentropy"  # default: plain
    with pytest.raises(ConfigError, match="focal_gamma"):
        TrainConfig(focal_gamma=-1.0)
    focal = _loss(TrainConfig(focal_gamma=2.0), tf, keras)
    y = np.array([0, 3])
    p = np.array([[0.9, 0.05, 0.03, 0.02], [0.1, 0.5, 0.1, 0.3]], np.float32)
    expected = [-(0.1 ** 2) * np.log(0.9), -(0.7 ** 2) * np.log(0.3)]
    np.testing.assert_allclose(np.asarray(focal(y, p)), expected, rtol=1e-4)
