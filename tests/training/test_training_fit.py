"""kws-train end to end on a tiny synthetic set: run-directory contract, reproducibility, bad input.

Reproducibility tolerance: two runs with the same data, config and seed must
give identical metrics and weights equal within atol=1e-6 (in practice they
are bit-identical: TensorFlow op determinism is enabled and features are
seeded per clip).
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("espeakng_loader")

from support.training_data import tiny_config  # noqa: E402

from kws_edge.errors import RunError  # noqa: E402
from kws_edge.training import rundir  # noqa: E402
from kws_edge.training.cli import main as train_main  # noqa: E402
from kws_edge.training.fit import train  # noqa: E402

WEIGHT_ATOL = 1e-6


@pytest.fixture(scope="module")
def env(module_cache):
    return module_cache


@pytest.fixture(scope="module")
def first_run(env):
    cfg = tiny_config(env / "synthetic")
    return cfg, train(cfg, env / "run-a", workers=1)


def test_run_directory_follows_the_contract(first_run):
    cfg, run = first_run
    p = run.path
    info = json.loads((p / "run.json").read_text())
    assert info["status"] == "complete" and info["format_version"] == 1 and info["seed"] == cfg.seed
    assert set(info) >= {"kws_edge_version", "git_commit", "started_utc", "finished_utc", "config_sha256",
                         "data_sha256"}
    # the config as trained, paths of this machine by name (the synthetic cache folder here)
    assert run.config() == dataclasses.replace(cfg, synthetic=dataclasses.replace(cfg.synthetic, cache_dir="synthetic"))
    manifest = run.data_manifest()
    assert manifest["content_sha256"] == info["data_sha256"] and len(manifest["content_sha256"]) == 64
    assert all(set(f) >= {"path", "label", "speaker", "split", "sha256"} for f in manifest["files"])
    assert set(manifest["counts"]) == {"train", "validation", "test"}
    norm = run.normalization()
    assert len(norm.mean) == cfg.features.n_cepstra
    metrics = run.metrics()
    for split in ("validation", "test"):
        m = metrics[split]
        assert set(m) == {"n_clips", "labels", "accuracy", "recall", "keyword_false_accept_rate", "confusion_matrix"}
        assert m["labels"] == list(cfg.labels)
        assert m["n_clips"] == sum(manifest["counts"][split].values()) == sum(map(sum, m["confusion_matrix"]))
    x, y = run.arrays("representative")
    assert x.dtype == np.float32 and x.shape[1:] == (49, 10) and len(x) == len(y) <= cfg.representative_samples
    xv, yv = run.arrays("validation")
    assert len(xv) == metrics["validation"]["n_clips"]
    # raw (un-normalised) features: normalisation was fitted on them, so they are not ~N(0, 1)
    assert abs(float(np.mean(x[..., 0])) - norm.mean[0]) < 3 * norm.std[0]
    assert len(run.history()["loss"]) == cfg.epochs
    for png in ("training_curves.png", "confusion_matrix.png"):
        assert (p / "plots" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    model = run.load_inference_model()
    assert model.input_shape == (1, 49, 10)


def test_same_seed_same_metrics_and_weights(first_run, env):
    cfg, run_a = first_run
    run_b = train(cfg, env / "run-b", workers=1)
    assert run_b.metrics() == run_a.metrics()
    assert run_b.run["data_sha256"] == run_a.run["data_sha256"]
    for wa, wb in zip(run_a.load_keras_model().get_weights(), run_b.load_keras_model().get_weights(), strict=True):
        np.testing.assert_allclose(wa, wb, atol=WEIGHT_ATOL, rtol=0)
    xa, _ = run_a.arrays("representative")
    xb, _ = run_b.arrays("representative")
    np.testing.assert_array_equal(xa, xb)


def test_finished_run_is_refused_without_overwrite(first_run, capsys):
    cfg, run = first_run
    before = (run.path / "model.keras").stat().st_mtime_ns
    with pytest.raises(RunError, match="already holds a finished run; pass --overwrite"):
        train(cfg, run.path)
    code = None
    with pytest.raises(SystemExit) as exc:
        train_main(["--data", "synthetic", "--out", str(run.path), "-q"])
    code = exc.value.code
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "--overwrite" in err
    assert (run.path / "model.keras").stat().st_mtime_ns == before


def test_interrupted_run_stays_incomplete(env):
    cfg = tiny_config(env / "synthetic")

    def ctrl_c(stage, done, total):
        if stage == "epoch" and done == 1:
            raise KeyboardInterrupt

    out = env / "run-interrupted"
    with pytest.raises(KeyboardInterrupt):
        train(cfg, out, progress=ctrl_c, workers=1)
    assert json.loads((out / "run.json").read_text())["status"] == "incomplete"
    assert not (out / "model.keras").exists() and not (out / "metrics.json").exists()
    with pytest.raises(RunError, match="'incomplete'"):
        rundir.open_run(out)


@pytest.mark.parametrize("args, match", [
    (["--data", "/nonexistent/folder"], "does not exist"),
    (["--data", "synthetic", "--model", "nope"], "unknown model architecture"),
    (["--data", "synthetic", "--epochs", "0"], "epochs=0"),
])
def test_cli_bad_input_is_one_line(env, capsys, args, match):
    with pytest.raises(SystemExit) as exc:
        train_main(args + ["--out", str(env / "never"), "-q"])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and match in err and "\n" not in err and "Traceback" not in err
    assert not (env / "never").exists()


def test_cli_unknown_config_key(env, capsys, tmp_path):
    p = tmp_path / "r.toml"
    p.write_text("[model]\nfilters = 3\n")
    with pytest.raises(SystemExit) as exc:
        train_main(["--data", "synthetic", "--out", str(env / "never"), "--config", str(p), "-q"])
    assert exc.value.code == 2 and "unknown key 'model.filters'" in capsys.readouterr().err
