"""Device profiles: shipped TOMLs, sources for every number, user profiles, local detection."""

from __future__ import annotations

from pathlib import Path

import pytest

from kws_edge.devices import DeviceProfile, detect_local_profile, list_profiles, load_profile, profile_names
from kws_edge.errors import ConfigError

SHIPPED = {"raspberry-pi-zero-2-w", "raspberry-pi-3b", "raspberry-pi-4b", "raspberry-pi-5", "x86-64", "cortex-m7-tflm"}


def test_every_required_profile_ships_and_sources_every_number():
    profiles = {p.name: p for p in list_profiles()}
    assert SHIPPED <= set(profiles)
    for p in profiles.values():
        for key in DeviceProfile.numbers():
            assert p.source(key).strip(), f"{p.name}: no source for {key}"
        assert p.path and Path(p.path).is_file()
        assert p.budgets.model_bytes > 0 and 0 < p.budgets.cpu_share <= 1


def test_compute_budget_is_derived_as_its_source_says():
    """Where the source says 'derived: 0.8 x cpu_share x int8 throughput', the number must match."""
    for p in list_profiles():
        if p.source("budgets.macs_per_second").startswith("derived: 0.8 x budgets.cpu_share"):
            assert p.budgets.macs_per_second == pytest.approx(0.8 * p.budgets.cpu_share
                                                              * p.estimates.int8_macs_per_second, rel=1e-6)


def test_microcontroller_example_matches_the_issue():
    m7 = load_profile("cortex-m7")
    assert m7.name == "cortex-m7-tflm"
    assert m7.ram_bytes == 512 * 1024 and m7.flash_bytes == 2 * 1024 * 1024
    assert m7.runtime == "tflite-micro" and m7.cores == 1
    assert m7.budgets.activation_bytes < m7.ram_bytes and m7.budgets.model_bytes < m7.flash_bytes


def test_aliases():
    assert load_profile("raspberry-pi-4").name == "raspberry-pi-4b"
    assert load_profile("raspberry-pi-4b").name == "raspberry-pi-4b"
    assert "raspberry-pi-4" in profile_names()


def test_unknown_device_lists_the_known_ones():
    with pytest.raises(ConfigError) as err:
        load_profile("raspberry-pi-9")
    msg = str(err.value)
    assert "unknown device 'raspberry-pi-9'" in msg
    for name in SHIPPED:
        assert name in msg
    assert "\n" not in msg


USER_PROFILE = """
name = "my-board"
description = "a user's board"
cpu = "something"
cores = 2
clock_mhz = 800
ram_bytes = 268435456
flash_bytes = 0
[budgets]
model_bytes = 100000
activation_bytes = 50000
macs_per_second = 10000000
cpu_share = 0.3
hop_latency_p99_ms = 20.0
[estimates]
int8_macs_per_second = 5e8
mfcc_ms_per_audio_second = 40.0
[sources]
cores = "datasheet"
clock_mhz = "datasheet"
ram_bytes = "datasheet"
flash_bytes = "datasheet"
"budgets.model_bytes" = "policy"
"budgets.activation_bytes" = "policy"
"budgets.macs_per_second" = "policy"
"budgets.cpu_share" = "policy"
"budgets.hop_latency_p99_ms" = "policy"
"estimates.int8_macs_per_second" = "measured: kws bench"
"estimates.mfcc_ms_per_audio_second" = "measured: kws bench"
"estimates.float32_speed_ratio" = "guess"
"""


def test_user_profile_by_path(tmp_path):
    path = tmp_path / "board.toml"
    path.write_text(USER_PROFILE)
    p = load_profile(str(path))
    assert p.name == "my-board" and p.budgets.model_bytes == 100000 and p.path == str(path)
    assert load_profile(path).name == "my-board"


@pytest.mark.parametrize("edit, match", [
    (lambda t: t.replace('"budgets.cpu_share" = "policy"\n', ""), "no source for budgets.cpu_share"),
    (lambda t: t.replace("cores = 2", "cores = 2\nfrobs = 1"), "unknown key 'frobs'"),
    (lambda t: t.replace("cpu_share = 0.3", "cpu_share = 3.0"), "cpu_share"),
    (lambda t: t.replace("model_bytes = 100000", 'model_bytes = "big"'), "model_bytes must be an integer"),
    (lambda t: t + "\n[[[", "not valid TOML"),
])
def test_bad_user_profiles_are_refused_with_a_reason(tmp_path, edit, match):
    path = tmp_path / "bad.toml"
    path.write_text(edit(USER_PROFILE))
    with pytest.raises(ConfigError, match=match):
        load_profile(str(path))


def test_missing_profile_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_profile(str(tmp_path / "nope.toml"))


@pytest.mark.parametrize("model, expected", [
    ("Raspberry Pi 4 Model B Rev 1.4", "raspberry-pi-4b"),
    ("Raspberry Pi 5 Model B Rev 1.0", "raspberry-pi-5"),
    ("Raspberry Pi 3 Model B Rev 1.2", "raspberry-pi-3b"),
    ("Raspberry Pi 3 Model B Plus Rev 1.3", "raspberry-pi-3b"),
    ("Raspberry Pi Zero 2 W Rev 1.0", "raspberry-pi-zero-2-w"),
])
def test_detect_raspberry_pi_from_device_tree(tmp_path, model, expected):
    dt = tmp_path / "model"
    dt.write_bytes(model.encode() + b"\x00")  # the device tree string is NUL-terminated
    found = detect_local_profile(device_tree_model_path=dt, cpuinfo_path=tmp_path / "none", machine="aarch64")
    assert found is not None and found.name == expected


def test_detect_from_cpuinfo_model_line_on_old_kernels(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nHardware\t: BCM2835\nModel\t\t: Raspberry Pi 4 Model B Rev 1.1\n")
    found = detect_local_profile(device_tree_model_path=tmp_path / "none", cpuinfo_path=cpuinfo, machine="armv7l")
    assert found is not None and found.name == "raspberry-pi-4b"


def test_detect_x86_and_unknown(tmp_path):
    none = tmp_path / "none"
    assert detect_local_profile(device_tree_model_path=none, cpuinfo_path=none, machine="x86_64").name == "x86-64"
    assert detect_local_profile(device_tree_model_path=none, cpuinfo_path=none, machine="riscv64") is None
    other = tmp_path / "model"
    other.write_text("Pine64 RockPro64")
    assert detect_local_profile(device_tree_model_path=other, cpuinfo_path=none, machine="aarch64") is None
