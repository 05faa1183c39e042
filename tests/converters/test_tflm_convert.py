"""kws-convert for a TFLite Micro profile: arenas measured in the real TFLM interpreter, parity, refusals.

Skipped, with the reason, where ``tflite-micro`` is absent; CI installs it (the ``train`` extra). The
runs are the tiny ones of tests/converters/test_convert_run.py (trained in seconds on synthetic features).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tflite_micro", reason="tflite-micro is not installed (pip install tflite-micro; it is in "
                                           "kws-edge's 'train' extra, which CI installs)")

from test_convert_run import cli, write_run  # noqa: E402

from kws_edge.bundle import load_bundle  # noqa: E402
from kws_edge.converters import tflm  # noqa: E402
from kws_edge.devices import load_profile  # noqa: E402
from kws_edge.training.config import ModelConfig  # noqa: E402

#: a small streamable model: the tcn architecture, 16 channels, 3 blocks
TCN = ModelConfig("tcn", width=16, depth=3, dropout=0.0)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    return write_run(tmp_path_factory.mktemp("runs") / "tiny-run")


@pytest.fixture(scope="module")
def m7_converted(tiny_run, tmp_path_factory):
    from kws_edge.converters.convert import convert_run

    return convert_run(tiny_run, device="cortex-m7", out_dir=tmp_path_factory.mktemp("b") / "m7", measure=False)


def small_arena_profile(tmp_path: Path, arena_bytes: int) -> Path:
    """The shipped Cortex-M7 profile with a firmware arena of ``arena_bytes`` (everything else as shipped)."""
    text = Path(load_profile("cortex-m7").path).read_text()
    assert "tensor_arena_bytes = 131072" in text
    path = tmp_path / "small-arena.toml"
    path.write_text(text.replace("tensor_arena_bytes = 131072", f"tensor_arena_bytes = {arena_bytes}"))
    return path


def test_cortex_m7_conversion_measures_the_arena_in_tflm(m7_converted):
    report = m7_converted
    (check,) = report.tflm
    assert check.file == "model.tflite" and check.seconds < 30
    assert check.arena.arena_bytes > report.analysis.peak_activation_bytes  # the static figure is a lower bound
    row = report.budgets.result("tensor_arena_bytes")
    margin = load_profile("cortex-m7").tflm.margin_fraction
    assert row.method == "tflm" and row.value == math.ceil(check.arena.arena_bytes * (1 + margin))
    assert row.passed and report.budgets.within_budget
    assert report.budgets.result("activation_bytes").method == "static"
    assert report.budgets.result("cpu_share").method == "estimated"
    assert check.parity.inputs.endswith("calibration clips") and check.parity.argmax_agreement >= 0.95
    manifest = load_bundle(report.bundle_dir).manifest
    entry = manifest.budgets.tflm
    assert entry.build == tflm.tflm_build()
    assert entry.models["model.tflite"].arena_bytes == check.arena.arena_bytes
    assert "TFLM model.tflite: arena" in report.summary().splitlines()[1]


def test_a_litert_profile_is_not_measured_in_tflm(tiny_run, tmp_path):
    from kws_edge.converters.convert import convert_run

    report = convert_run(tiny_run, device="raspberry-pi-4", out_dir=tmp_path / "b", measure=False)
    assert report.tflm == () and report.manifest.budgets.tflm is None
    assert "tensor_arena_bytes" not in {r.name for r in report.budgets.results}


def test_a_model_that_fits_litert_but_not_the_firmware_arena_is_refused(tiny_run, tmp_path, capsys, m7_converted):
    from kws_edge.engine import Engine

    model = load_bundle(m7_converted.bundle_dir).model_bytes
    engine = Engine(model)
    assert engine.predict(np.zeros(engine.input.shape, np.float32)).shape == (4,)  # LiteRT runs it
    assert not tflm.allocates(model, 2048)  # a 2 KiB arena really is too small for TFLM
    profile = small_arena_profile(tmp_path, 2048)
    code, out, err = cli([tiny_run, "--device", profile, "--out", tmp_path / "b", "--no-measure"], capsys)
    assert code == 1 and out == ""
    last = err.strip().splitlines()[-1]
    measured = m7_converted.tflm[0].arena.arena_bytes
    needed = m7_converted.budgets.result("tensor_arena_bytes").value
    assert last.startswith(f"error: the model is over the budgets of cortex-m7-tflm: TFLM tensor arena "
                           f"{needed:,} B > 2,048 B (measured in tflite-micro ")
    assert f"smallest working arena {measured:,} B" in last and "nothing written" in last
    assert "measured in TFLM" in err  # the table's how column
    assert not (tmp_path / "b").exists() and "Traceback" not in err


def test_allow_over_budget_records_the_arena_failure(tiny_run, tmp_path):
    from kws_edge.converters.convert import convert_run

    profile = small_arena_profile(tmp_path, 2048)
    convert_run(tiny_run, device=str(profile), out_dir=tmp_path / "b", measure=False, allow_over_budget=True)
    budgets = load_bundle(tmp_path / "b").manifest.budgets
    failed = [r.name for r in budgets.results if not r.passed]
    assert failed == ["tensor_arena_bytes"] and budgets.allowed_over_budget is True


def test_tflm_outputs_that_disagree_with_litert_are_refused(tiny_run, tmp_path, monkeypatch):
    """The parity through TFLM gates: a TFLM whose scores are rotated on every 10th call is refused."""
    from kws_edge.converters.convert import convert_run
    from kws_edge.errors import ConversionError

    real_run = tflm.TflmInterpreter.run_raw
    calls = []

    def skewed(self, *inputs):
        out = real_run(self, *inputs)
        calls.append(1)
        return [np.roll(o, 1, axis=-1) for o in out] if len(calls) % 10 == 0 else out

    monkeypatch.setattr(tflm.TflmInterpreter, "run_raw", skewed)
    with pytest.raises(ConversionError, match=r"TFLite Micro and ai_edge_litert .* disagree on model\.tflite: "
                                              r"argmax agrees on \d+/200 .*nothing written") as err:
        convert_run(tiny_run, device="cortex-m7", out_dir=tmp_path / "b", measure=False)
    assert err.value.exit_code == 1 and "\n" not in str(err.value)
    assert not (tmp_path / "b").exists()


@pytest.mark.slow
def test_kws_convert_streaming_on_cortex_m7_end_to_end(tmp_path, capsys):
    """`kws-convert RUN --device cortex-m7 --streaming` on a tiny tcn run: both arenas measured and gated."""
    run = write_run(tmp_path / "tcn-run", model_config=TCN)
    code, out, err = cli([run, "--device", "cortex-m7", "--streaming", "--out", tmp_path / "b", "--no-measure",
                          "--json"], capsys)
    assert code == 0, err
    data = json.loads(out)
    assert set(data["tflm"]) == {"model.tflite", "model_streaming.tflite"}
    for entry in data["tflm"].values():
        assert entry["seconds"] < 30 and entry["parity"]["argmax_agreement"] >= 0.95
    assert "closed-loop state" in data["tflm"]["model_streaming.tflite"]["parity"]["inputs"]
    rows = {r["name"]: r for r in data["budgets"]["results"]}
    assert rows["tensor_arena_bytes"]["method"] == rows["streaming_tensor_arena_bytes"]["method"] == "tflm"
    manifest = load_bundle(tmp_path / "b").manifest
    assert manifest.streaming_model is not None
    assert set(manifest.budgets.tflm.models) == {"model.tflite", "model_streaming.tflite"}

    # a firmware arena between the two models' needs: the window model fits, the streaming one is refused
    window, stream = rows["tensor_arena_bytes"]["value"], rows["streaming_tensor_arena_bytes"]["value"]
    assert window < stream
    profile = small_arena_profile(tmp_path, (window + stream) // 2)
    code, out, err = cli([run, "--device", profile, "--streaming", "--out", tmp_path / "refused", "--no-measure"],
                         capsys)
    assert code == 1
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: the model is over the budgets of cortex-m7-tflm: TFLM tensor arena, "
                           f"streaming model {stream:,} B > {(window + stream) // 2:,} B")
    assert not (tmp_path / "refused").exists()
