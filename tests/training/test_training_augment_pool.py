"""augment.pool_copies: a pool of augmented copies, a different share of it each epoch (tiny synthetic runs)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from kws_edge.errors import ConfigError
from kws_edge.training.config import AugmentConfig

pytest.importorskip("tensorflow")
pytest.importorskip("espeakng_loader")

from support.training_data import tiny_config  # noqa: E402

from kws_edge.training.fit import _rotation, train  # noqa: E402


def test_rotation_walks_through_the_pool():
    n, pool, copies = 3, 5, 2
    # clip-major pool: value = clip * 10 + copy
    x = np.array([[c * 10 + j for j in range(pool)] for c in range(n)], np.float32).reshape(n * pool, 1, 1)
    got = [_rotation(x, n, pool, copies, e).reshape(n, copies)[0].tolist() for e in range(4)]
    assert got == [[0, 1], [2, 3], [4, 0], [1, 2]]
    assert _rotation(x, n, pool, copies, 1).reshape(n, copies)[2].tolist() == [22, 23]


def test_pool_smaller_than_copies_is_refused():
    with pytest.raises(ConfigError, match="pool_copies"):
        AugmentConfig(copies=4, pool_copies=2)
    assert AugmentConfig().pool_copies == 0  # default: the fixed copies, as before


@pytest.fixture(scope="module")
def env(module_cache):
    return module_cache


def _weights(run):
    import keras

    return keras.saving.load_model(run.path / "model.keras", compile=False).get_weights()


@pytest.mark.slow
def test_pool_run_is_deterministic_and_trains_on_other_copies(env):
    cfg = tiny_config(env / "synthetic", epochs=3)
    pooled = dataclasses.replace(cfg, augment=dataclasses.replace(cfg.augment, copies=1, pool_copies=3))
    a = train(pooled, env / "a", workers=1)
    b = train(pooled, env / "b", workers=1)
    fixed = train(cfg, env / "fixed", workers=1)
    assert len(a.history()["loss"]) == 3
    assert a.metrics() == b.metrics()
    for wa, wb in zip(_weights(a), _weights(b)):
        np.testing.assert_allclose(wa, wb, atol=1e-6)
    # epoch 0 sees the same data as the fixed-copies run, later epochs other copies: other weights
    assert any(not np.allclose(wa, wf) for wa, wf in zip(_weights(a), _weights(fixed)))
