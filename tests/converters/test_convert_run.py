"""convert_run / kws-convert on a small trained run that the tests make themselves.

The run: a tiny Keras model (the training registry's tiny_conv, 4 filters) trained a few epochs on
synthetic "MFCC" features, four classes with distinct patterns plus noise,
written in the run-directory format of docs/ARCHITECTURE.md. One training per
session (about 10 s with the TensorFlow import); each conversion takes a few seconds.
"""

from __future__ import annotations

import errno
import json
import pathlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from kws_edge.atomic import DiskFullError
from kws_edge.bundle import load_bundle
from kws_edge.config import from_dict, to_dict
from kws_edge.errors import BudgetExceeded, ConfigError, ConversionError, KwsError, RunError
from kws_edge.features import MfccConfig, Normalization
from kws_edge.training.config import ModelConfig

LABELS = ["_silence_", "_unknown_", "yes", "no"]
#: the micro_speech "tiny_conv" architecture with 4 filters: Conv2D 10x8 stride 2 -> Flatten -> Dense
MODEL = ModelConfig(architecture="tiny_conv", width=4, depth=1, dropout=0.0)
KEYWORDS = ["yes", "no"]

TINY_PROFILE = """
name = "tiny-board"
description = "a board far too small for any model (test)"
cpu = "test"
cores = 1
clock_mhz = 10
ram_bytes = 4096
flash_bytes = 4096
[budgets]
model_bytes = 1000
activation_bytes = 100
macs_per_second = 1000
cpu_share = 0.5
hop_latency_p99_ms = 20.0
[estimates]
int8_macs_per_second = 1e9
mfcc_ms_per_audio_second = 1.0
[sources]
cores = "test"
clock_mhz = "test"
ram_bytes = "test"
flash_bytes = "test"
"budgets.model_bytes" = "test"
"budgets.activation_bytes" = "test"
"budgets.macs_per_second" = "test"
"budgets.cpu_share" = "test"
"budgets.hop_latency_p99_ms" = "test"
"estimates.int8_macs_per_second" = "test"
"estimates.mfcc_ms_per_audio_second" = "test"
"estimates.float32_speed_ratio" = "test"
"""


def synthetic_features(rng: np.random.Generator, n: int, patterns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.arange(n) % len(patterns)
    rng.shuffle(y)
    x = patterns[y] + rng.normal(0.0, 1.0, (n,) + patterns.shape[1:])
    return (x + 7.0).astype(np.float32), y.astype(np.int64)  # raw, un-normalised scale


def write_run(path: Path, *, seed: int = 0, epochs: int = 4, model_config: ModelConfig = MODEL) -> Path:
    """Train a tiny model (``model_config``, default tiny_conv) and write a complete run directory at ``path``."""
    import keras

    from kws_edge.training.models import build_model

    features = MfccConfig()
    shape = (features.frames_per_clip, features.n_cepstra)
    rng = np.random.default_rng(seed)
    patterns = rng.normal(0.0, 1.5, (len(LABELS),) + shape)
    x_train, y_train = synthetic_features(rng, 400, patterns)
    x_test, y_test = synthetic_features(rng, 200, patterns)
    norm = Normalization.fit(x_train)
    keras.utils.set_random_seed(seed)
    model = build_model(model_config, shape, len(LABELS))  # the training package's registry, dynamic batch
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(norm.apply(x_train), y_train, epochs=epochs, batch_size=32, verbose=0)

    path.mkdir(parents=True)
    (path / "arrays").mkdir()
    model.save(path / "model.keras")
    np.savez(path / "arrays" / "representative.npz", x=x_train[:200], y=y_train[:200])
    np.savez(path / "arrays" / "test.npz", x=x_test, y=y_test)
    (path / "normalization.json").write_text(json.dumps(to_dict(norm)))
    config = {"data": "synthetic", "labels": LABELS, "keywords": KEYWORDS, "features": to_dict(features),
              "model": to_dict(model_config), "seed": seed}
    (path / "config.json").write_text(json.dumps(config))
    (path / "metrics.json").write_text(json.dumps({}))
    run = {"format_version": 1, "status": "complete", "kws_edge_version": "0.1.0", "git_commit": "test",
           "started_utc": "2026-01-01T00:00:00Z", "finished_utc": "2026-01-01T00:01:00Z", "seed": seed,
           "config_sha256": "c" * 64, "data_sha256": "d" * 64}
    (path / "run.json").write_text(json.dumps(run))
    return path


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory) -> Path:
    return write_run(tmp_path_factory.mktemp("runs") / "tiny-run")


@pytest.fixture
def run_copy(run_dir, tmp_path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(run_dir, dst)
    return dst


def edit_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


@pytest.fixture(scope="session")
def converted(run_dir, tmp_path_factory):
    from kws_edge.converters.convert import convert_run

    out = tmp_path_factory.mktemp("bundles") / "pi4"
    return convert_run(run_dir, device="raspberry-pi-4", out_dir=out, measure=False)


# ---------------------------------------------------------------- success


def test_int8_bundle_loads_and_records_everything(converted, run_dir):
    report = converted
    bundle = load_bundle(report.bundle_dir)
    m = bundle.manifest
    assert m.model.quantization == "int8"
    assert m.model.input.dtype == "int8" and m.model.output.dtype == "int8"
    assert m.model.input.scale > 0 and m.model.output.scale == pytest.approx(1 / 256)
    assert m.model.size_bytes == len(bundle.model_bytes) == report.analysis.model_bytes
    assert m.model.macs_per_inference == report.analysis.macs_per_inference > 0
    assert m.model.peak_activation_bytes == report.analysis.peak_activation_bytes > 0
    assert m.model.weight_bytes > 0
    assert "CONV_2D" in m.model.operators and "FULLY_CONNECTED" in m.model.operators
    assert not {"SHAPE", "STRIDED_SLICE", "PACK"} & set(m.model.operators)  # batch-1 graph
    assert m.labels == tuple(LABELS) and m.keywords == tuple(KEYWORDS)
    assert m.normalization == from_dict(Normalization, json.loads((run_dir / "normalization.json").read_text()))
    assert m.detector.thresholds == {"yes": 0.8, "no": 0.8}
    assert m.provenance.run.data_sha256 == "d" * 64 and m.provenance.data_sha256 == "d" * 64
    assert m.provenance.config["seed"] == 0
    assert m.provenance.conversion.representative_clips == 200
    assert m.provenance.conversion.weight_scales == "per-channel"
    assert None not in (m.metrics.test.float_model, m.metrics.test.converted, m.metrics.parity)
    assert m.metrics.test.converted.n_clips == 200
    assert m.budgets.device == "raspberry-pi-4b" and m.budgets.within_budget is True
    assert m.budgets.allowed_over_budget is False
    assert {r.name for r in m.budgets.results} >= {"model_bytes", "activation_bytes", "compute"}


def test_manifest_holds_no_absolute_path_of_this_machine(converted, run_dir):
    from kws_edge.portable import absolute_paths_in

    text = (converted.bundle_dir / "manifest.json").read_text()
    assert absolute_paths_in(json.loads(text)) == []
    assert str(run_dir.parent) not in text
    m = load_bundle(converted.bundle_dir).manifest
    assert m.provenance.run_dir == "tiny-run"  # the run's name
    assert m.budgets.profile.path in (None, "", "raspberry-pi-4b.toml")


def test_int8_agrees_with_float_on_at_least_98_percent_of_test_clips(converted):
    assert converted.float_metrics["accuracy"] > 0.9  # the tiny model did learn the task
    assert converted.argmax_agreement >= 0.98
    assert converted.accuracy_drop_points <= 1.0


def test_bundle_scores_like_the_report_through_the_runtime(converted, run_dir):
    """The written bundle, used through KwsModel (the runtime path), reproduces the int8 accuracy."""
    from kws_edge.model import KwsModel

    model = KwsModel(load_bundle(converted.bundle_dir))
    with np.load(run_dir / "arrays" / "test.npz") as data:
        x, y = data["x"], data["y"]
    pred = np.array([model.scores_features(clip).argmax() for clip in x])
    assert np.mean(pred == y) == pytest.approx(converted.converted_metrics["accuracy"])


def test_analysis_of_the_converted_model_matches_its_shapes(converted):
    """Conv2D 4 filters 10x8 stride 2 'same' over (49, 10, 1): output (25, 5, 4); dense 500 -> 4."""
    macs = converted.analysis.macs_by_operator
    assert macs["CONV_2D"] == 25 * 5 * 4 * (10 * 8 * 1)
    assert macs["FULLY_CONNECTED"] == (25 * 5 * 4) * 4
    # ops: RESHAPE (490 -> 490 B), CONV_2D (490 -> 500), RESHAPE/Flatten (500 -> 500), FULLY_CONNECTED (500 -> 4),
    # SOFTMAX (4 -> 4); int8, one byte per value: the largest live pair is the flatten's input and output
    assert converted.analysis.operators == ("RESHAPE", "CONV_2D", "RESHAPE", "FULLY_CONNECTED", "SOFTMAX")
    assert converted.analysis.peak_activation_bytes == 2 * 25 * 5 * 4
    assert converted.analysis.peak_operator_index == 2


def test_float32_bundle(run_dir, tmp_path):
    from kws_edge.converters.convert import convert_run

    report = convert_run(run_dir, device="raspberry-pi-4b", out_dir=tmp_path / "f32", quantize="float32",
                         measure=False)
    m = load_bundle(tmp_path / "f32").manifest
    assert m.model.quantization == "float32" and m.model.input.dtype == "float32"
    assert m.metrics.test.float_model is not None and m.metrics.test.converted is not None
    assert report.argmax_agreement >= 0.99


def test_on_the_target_cpu_and_latency_are_measured(run_dir, tmp_path):
    from kws_edge.converters.convert import convert_run
    from kws_edge.devices import detect_local_profile

    local = detect_local_profile()
    if local is None:
        pytest.skip("no shipped profile matches this machine")
    # allow_over_budget: a p99 latency measured on a busy shared CI machine may exceed the budget
    report = convert_run(run_dir, device=local.name, out_dir=tmp_path / "here", allow_over_budget=True)
    assert report.budgets.measured_on_target
    assert report.budgets.result("cpu_share").basis.startswith("measured (int16 blocks of 100 ms through KeywordDetector")
    assert report.budgets.result("hop_latency_p99_ms").basis.startswith("measured")
    assert 0 < report.budgets.result("cpu_share").value < 1


def test_generic_batch1_clone_keeps_weights_and_outputs(rng):
    """Runs whose config names no registry architecture get a generic Keras clone with batch size 1."""
    import keras

    from kws_edge.converters.quantize import batch1_clone

    inp = keras.Input(shape=(49, 10))
    out = keras.layers.Dense(4, activation="softmax")(keras.layers.Flatten()(inp))
    model = keras.Model(inp, out)
    clone = batch1_clone(model)
    assert tuple(clone.inputs[0].shape) == (1, 49, 10)
    x = rng.normal(size=(1, 49, 10)).astype(np.float32)
    np.testing.assert_allclose(clone.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


# ---------------------------------------------------------------- failures


def test_missing_run_directory(tmp_path):
    from kws_edge.converters.convert import convert_run

    with pytest.raises(RunError, match="does not exist; train one with kws-train"):
        convert_run(tmp_path / "nope", device="raspberry-pi-4", out_dir=tmp_path / "b")


def test_incomplete_run(run_copy, tmp_path):
    from kws_edge.converters.convert import convert_run

    edit_json(run_copy / "run.json", status="incomplete")
    with pytest.raises(RunError, match="'incomplete', not 'complete'.*re-run kws-train"):
        convert_run(run_copy, device="raspberry-pi-4", out_dir=tmp_path / "b")
    assert not (tmp_path / "b").exists()


def test_run_missing_a_file(run_copy, tmp_path):
    from kws_edge.converters.convert import convert_run

    (run_copy / "arrays" / "test.npz").unlink()
    with pytest.raises(RunError, match="arrays/test.npz missing"):
        convert_run(run_copy, device="raspberry-pi-4", out_dir=tmp_path / "b")


@pytest.mark.parametrize("version, hint", [(2, "upgrade kws-edge"), (0, "re-train it"), (None, "re-train it")])
def test_incompatible_run_format_version(run_copy, tmp_path, version, hint):
    from kws_edge.converters.convert import convert_run

    edit_json(run_copy / "run.json", format_version=version)
    with pytest.raises(RunError, match=f"format_version {version!r} but this kws-convert reads 1; {hint}"):
        convert_run(run_copy, device="raspberry-pi-4", out_dir=tmp_path / "b")


def test_unknown_device_lists_known_ones(run_dir, tmp_path):
    from kws_edge.converters.convert import convert_run

    with pytest.raises(ConfigError, match="unknown device 'toaster'.*raspberry-pi-4b"):
        convert_run(run_dir, device="toaster", out_dir=tmp_path / "b")


def test_empty_representative_set(run_copy, tmp_path):
    from kws_edge.converters.convert import convert_run

    np.savez(run_copy / "arrays" / "representative.npz", x=np.zeros((0, 49, 10), np.float32),
             y=np.zeros(0, np.int64))
    with pytest.raises(RunError, match="representative.npz holds no clips.*--quantize float32"):
        convert_run(run_copy, device="raspberry-pi-4", out_dir=tmp_path / "b")
    assert not (tmp_path / "b").exists()
    # float32 needs no calibration, as the message says
    report = convert_run(run_copy, device="raspberry-pi-4", out_dir=tmp_path / "f", quantize="float32",
                         measure=False)
    assert report.manifest.provenance.conversion.representative_clips == 0


def test_arrays_from_other_feature_settings(run_copy, tmp_path):
    from kws_edge.converters.convert import convert_run

    np.savez(run_copy / "arrays" / "test.npz", x=np.zeros((5, 49, 13), np.float32), y=np.zeros(5, np.int64))
    with pytest.raises(RunError, match=r"expected \(N, 49, 10\)"):
        convert_run(run_copy, device="raspberry-pi-4", out_dir=tmp_path / "b")


def test_existing_output_is_not_replaced_without_overwrite(run_dir, tmp_path):
    from kws_edge.converters.convert import convert_run

    out = tmp_path / "b"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(KwsError, match="already exists.*--overwrite"):
        convert_run(run_dir, device="raspberry-pi-4", out_dir=out)
    assert (out / "keep.txt").read_text() == "mine"


def test_over_budget_raises_and_writes_nothing(run_dir, tmp_path):
    from kws_edge.converters.convert import convert_run

    profile = tmp_path / "tiny.toml"
    profile.write_text(TINY_PROFILE)
    out = tmp_path / "b"
    with pytest.raises(BudgetExceeded, match="over the budgets of tiny-board.*nothing written") as err:
        convert_run(run_dir, device=str(profile), out_dir=out, measure=False)
    assert err.value.exit_code == 1
    assert "OVER" in err.value.report.table()
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["tiny.toml"]  # no temporary leftovers


def test_allow_over_budget_records_the_failure(run_dir, tmp_path):
    from kws_edge.converters.convert import convert_run

    profile = tmp_path / "tiny.toml"
    profile.write_text(TINY_PROFILE)
    report = convert_run(run_dir, device=str(profile), out_dir=tmp_path / "b", allow_over_budget=True,
                         measure=False)
    budgets = load_bundle(tmp_path / "b").manifest.budgets
    assert budgets.within_budget is False and budgets.allowed_over_budget is True
    failed = {r.name for r in budgets.results if not r.passed}
    assert {"model_bytes", "activation_bytes", "compute"} <= failed
    assert not report.budgets.within_budget


def test_parity_gate_failure_writes_nothing(run_dir, tmp_path, monkeypatch):
    """A converted model that disagrees with the float model fails the gate (exit status 1)."""
    from kws_edge.converters import convert

    real = convert.window_predict

    def worse(model_bytes, x):
        probs = real(model_bytes, x)
        probs[::10] = np.roll(probs[::10], 1, axis=1)  # every 10th clip now predicts another class
        return probs

    monkeypatch.setattr(convert, "window_predict", worse)
    with pytest.raises(ConversionError, match="points below the float model") as err:
        convert.convert_run(run_dir, device="raspberry-pi-4", out_dir=tmp_path / "b", measure=False)
    assert err.value.exit_code == 1
    assert not (tmp_path / "b").exists()


def test_disk_full_leaves_no_partial_bundle(run_dir, tmp_path, monkeypatch):
    from kws_edge.converters.convert import convert_run

    real_write_text = pathlib.Path.write_text

    def full(self, *args, **kwargs):
        if self.name == "manifest.json":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write_text(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "write_text", full)
    out = tmp_path / "bundles" / "b"
    with pytest.raises(DiskFullError, match="no space left"):
        convert_run(run_dir, device="raspberry-pi-4", out_dir=out, measure=False)
    assert not out.exists()
    assert list((tmp_path / "bundles").iterdir()) == []  # the temporary directory was removed too


def test_bad_options(run_dir, tmp_path):
    from kws_edge.converters.convert import convert_run

    with pytest.raises(ConfigError, match="quantize"):
        convert_run(run_dir, device="raspberry-pi-4", out_dir=tmp_path / "b", quantize="int4")
    with pytest.raises(ConfigError, match="representative"):
        convert_run(run_dir, device="raspberry-pi-4", out_dir=tmp_path / "b", representative_n=0)


# ---------------------------------------------------------------- CLI


def cli(argv, capsys):
    from kws_edge.cli import run_cli
    from kws_edge.converters.cli import convert_command

    code = run_cli(convert_command, [str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_success_prints_one_line(run_dir, tmp_path, capsys):
    code, out, err = cli([run_dir, "--device", "raspberry-pi-4", "--out", tmp_path / "b", "--representative",
                          "50", "--no-measure"], capsys)
    assert code == 0, err
    assert out.startswith(f"wrote {tmp_path / 'b'}: int8 ") and len(out.strip().splitlines()) == 1
    assert "Saved artifact" not in out + err and "Traceback" not in err
    assert load_bundle(tmp_path / "b").manifest.provenance.conversion.representative_clips == 50


def test_cli_per_tensor_is_smaller_and_recorded(run_dir, tmp_path, capsys, converted):
    code, out, err = cli([run_dir, "--device", "raspberry-pi-4", "--out", tmp_path / "b", "--no-measure",
                          "--per-tensor"], capsys)
    assert code == 0, err
    bundle = load_bundle(tmp_path / "b")
    assert bundle.manifest.provenance.conversion.weight_scales == "per-tensor"
    assert len(bundle.model_bytes) < converted.analysis.model_bytes
    assert bundle.manifest.metrics.parity.argmax_agreement >= 0.98


def test_cli_over_budget_exit_1_with_table(run_dir, tmp_path, capsys):
    profile = tmp_path / "tiny.toml"
    profile.write_text(TINY_PROFILE)
    code, out, err = cli([run_dir, "--device", profile, "--out", tmp_path / "b", "--no-measure"], capsys)
    assert code == 1
    assert "device tiny-board: OVER BUDGET" in err and "model size" in err
    assert err.strip().splitlines()[-1].startswith("error: the model is over the budgets of tiny-board")
    assert not (tmp_path / "b").exists() and "Traceback" not in err


def test_cli_unknown_device_and_missing_run_exit_2(run_dir, tmp_path, capsys):
    code, out, err = cli([run_dir, "--device", "toaster", "--out", tmp_path / "b"], capsys)
    assert code == 2 and err.count("\n") == 1 and "known devices: " in err
    code, out, err = cli([tmp_path / "nope", "--device", "pi4", "--out", tmp_path / "b"], capsys)
    assert code == 2 and err.startswith("error: run directory") and err.count("\n") == 1


def test_without_tensorflow_the_cli_says_how_to_install_it(run_dir, tmp_path):
    """On a runtime-only install kws-convert fails with one line and the pip command (exit status 2)."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['tensorflow'] = None; sys.modules['keras'] = None\n"
            "from kws_edge.converters.cli import main\n"
            f"main([{str(run_dir)!r}, '--device', 'pi4', '--out', {str(tmp_path / 'b')!r}])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip() == "error: conversion needs TensorFlow; pip install 'kws-edge[train]'"
    assert not (tmp_path / "b").exists()


def test_cli_json_report(run_dir, tmp_path, capsys):
    code, out, err = cli([run_dir, "--device", "pi4", "--out", tmp_path / "b", "--no-measure", "--json"], capsys)
    assert code == 0, err
    data = json.loads(out)
    assert data["bundle"] == str(tmp_path / "b")
    assert data["budgets"]["device"] == "raspberry-pi-4b" and data["budgets"]["within_budget"] is True
    assert data["model"]["macs_per_inference"] > 0 and data["metrics"]["test"]["converted"]["n_clips"] > 0
    assert data["metrics"]["parity"]["argmax_agreement"] > 0


def test_stride_hops_lowers_the_compute_rate(run_dir, tmp_path, converted):
    from kws_edge.converters.convert import convert_run

    report = convert_run(run_dir, device="raspberry-pi-4", out_dir=tmp_path / "b", stride_hops=5, measure=False)
    assert load_bundle(tmp_path / "b").manifest.detector.stride_hops == 5
    assert report.budgets.result("compute").value == pytest.approx(converted.budgets.result("compute").value / 5)
    with pytest.raises(ConfigError, match="stride-hops"):
        convert_run(run_dir, device="raspberry-pi-4", out_dir=tmp_path / "c", stride_hops=0)
