"""kws_edge.budgets: static, estimated and measured checks against a device profile (no TensorFlow)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kws_edge.budgets import check_budgets
from kws_edge.config import to_dict
from kws_edge.limits import format_value
from kws_edge.devices import load_profile
from kws_edge.errors import ConfigError

SMALL = dict(model_bytes=20_000, activation_bytes=10_000, macs_per_inference=500_000, inferences_per_second=50.0)


def test_small_model_fits_a_pi4_with_every_budget_listed():
    report = check_budgets(load_profile("raspberry-pi-4"), **SMALL)
    assert report.device == "raspberry-pi-4b"
    assert report.within_budget
    assert [r.name for r in report.results] == [
        "model_bytes", "activation_bytes", "compute", "cpu_share", "hop_latency_p99_ms"]
    model = report.result("model_bytes")
    assert (model.value, model.limit, model.passed) == (20_000, 1_048_576, True)
    assert model.margin == pytest.approx((1_048_576 - 20_000) / 1_048_576)
    compute = report.result("compute")
    assert compute.value == 500_000 * 50
    assert compute.basis.startswith("static")


def test_estimates_follow_the_profile_throughput():
    profile = load_profile("raspberry-pi-4b")
    report = check_budgets(profile, **SMALL)
    est = profile.estimates
    inference_ms = 1000 * 500_000 / est.int8_macs_per_second
    cpu = report.result("cpu_share")
    assert cpu.value == pytest.approx((inference_ms * 50 + est.mfcc_ms_per_audio_second) / 1000)
    assert cpu.basis.startswith("estimated (")
    lat = report.result("hop_latency_p99_ms")
    assert lat.value == pytest.approx(2 * (inference_ms + est.mfcc_ms_per_audio_second / 50))
    assert "estimated" in lat.basis


def test_measured_values_count_only_on_the_target():
    profile = load_profile("raspberry-pi-4b")
    measured = {"cpu_share": 0.5, "hop_latency_p99_ms": 30.0}
    off = check_budgets(profile, **SMALL, measured=measured, measured_on_target=False)
    assert off.within_budget and off.result("cpu_share").basis.startswith("estimated")
    on = check_budgets(profile, **SMALL, measured=measured, measured_on_target=True)
    assert not on.within_budget
    assert {r.name for r in on.failures} == {"cpu_share", "hop_latency_p99_ms"}
    assert on.result("cpu_share").basis == "measured" and on.result("cpu_share").value == 0.5
    assert on.result("cpu_share").margin == pytest.approx((0.10 - 0.5) / 0.10)


def test_over_budget_table_json_and_summary():
    report = check_budgets(load_profile("cortex-m7-tflm"), model_bytes=3_000_000, activation_bytes=200_000,
                           macs_per_inference=2_700_000, inferences_per_second=50.0)
    assert not report.within_budget
    failed = {r.name for r in report.failures}
    assert {"model_bytes", "activation_bytes", "compute"} <= failed
    table = report.table()
    assert table.splitlines()[0] == "device cortex-m7-tflm: OVER BUDGET"
    assert "OVER" in table and "model size" in table and "2.86 MiB" in table
    data = json.loads(json.dumps(to_dict(report)))
    assert data["device"] == "cortex-m7-tflm" and data["within_budget"] is False
    assert {"name", "value", "limit", "unit", "margin", "passed", "basis"} <= set(data["results"][0])
    assert "model size" in report.summary()


def test_tflite_micro_operator_check_only_for_micro_targets():
    micro = check_budgets(load_profile("cortex-m7"), **SMALL, unsupported_operators=["GELU"])
    ops = micro.result("operators")
    assert (ops.value, ops.limit, ops.passed) == (1, 0, False) and "GELU" in ops.basis
    pi = check_budgets(load_profile("raspberry-pi-4"), **SMALL, unsupported_operators=["GELU"])
    with pytest.raises(KeyError):
        pi.result("operators")


def test_float32_models_use_the_float_speed_ratio():
    profile = load_profile("cortex-m7-tflm")
    int8 = check_budgets(profile, **SMALL).result("cpu_share").value
    f32 = check_budgets(profile, **SMALL, quantization="float32").result("cpu_share").value
    assert f32 > int8 * 5  # the M7 profile says float32 runs at a tenth of int8 speed


def test_bad_arguments():
    profile = load_profile("x86-64")
    with pytest.raises(ConfigError, match="unknown measured budget 'rss'"):
        check_budgets(profile, **SMALL, measured={"rss": 1.0}, measured_on_target=True)
    with pytest.raises(ConfigError, match="inferences_per_second"):
        check_budgets(profile, **{**SMALL, "inferences_per_second": 0})


def test_format_value_units():
    assert format_value(512, "B") == "512 B"
    assert format_value(2048, "B") == "2.0 KiB"
    assert format_value(3 * 1024 * 1024, "B") == "3.00 MiB"
    assert format_value(0.025, "share") == "2.50%"
    assert format_value(2.5e7, "MAC/s") == "25.0 M MAC/s"


def test_budgets_and_devices_do_not_import_tensorflow():
    code = ("import sys; sys.modules['tensorflow'] = None; sys.modules['keras'] = None\n"
            "import kws_edge.budgets, kws_edge.devices, kws_edge.converters\n"
            "print(kws_edge.devices.detect_local_profile() is not None or True)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         cwd=str(Path(__file__).resolve().parents[2]))
    assert out.returncode == 0, out.stderr
