"""examples/listen_yes_no.py on a real (virtual) microphone: PulseAudio's null sink monitor is the
default input, ``paplay`` speaks a tone-"yes" then a tone-"no" into it, and the example must call
its yes action then its no action. The GPIO branch runs on gpiozero's mock pin factory when
gpiozero is installed (the dev extra has it); otherwise the printing stand-in is used.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from support import tone_bundle as tones
from kws_edge.audio import write_wav

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "listen_yes_no.py"
TONE_BUNDLE = ROOT / "tests" / "data" / "tone_bundle"
HAVE_GPIOZERO = importlib.util.find_spec("gpiozero") is not None


def load_example():
    spec = importlib.util.spec_from_file_location("listen_yes_no", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_open_led_falls_back_to_printing_without_gpio(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gpiozero", None)  # as if gpiozero were not installed
    led = load_example().open_led(17)
    assert type(led).__name__ == "PrintedLed" and led.pin == "GPIO17"
    led.on()
    assert led.is_lit
    assert capsys.readouterr().out.startswith("output: printing only (ModuleNotFoundError")


@pytest.mark.skipif(not HAVE_GPIOZERO, reason="gpiozero is not installed (dev extra)")
def test_open_led_drives_a_gpiozero_pin(monkeypatch, capsys):
    from gpiozero import Device
    from gpiozero.pins.mock import MockFactory

    monkeypatch.setattr(Device, "pin_factory", MockFactory())
    led = load_example().open_led(27)
    try:
        assert capsys.readouterr().out == "output: gpiozero LED on GPIO27\n"
        led.on()
        assert Device.pin_factory.pin(27).state == 1
        led.off()
        assert Device.pin_factory.pin(27).state == 0
    finally:
        led.close()


@pytest.mark.mic
@pytest.mark.skipif(not (TONE_BUNDLE / "manifest.json").exists(), reason="tests/data/tone_bundle is missing")
def test_listener_calls_yes_then_no_from_the_virtual_microphone(virtual_mic, tmp_path):
    speech = tmp_path / "yes_then_no.wav"
    write_wav(speech, tones.stream([("yes", 0.5), ("no", 2.5)], 4.0, np.random.default_rng(11)), 16000)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    if HAVE_GPIOZERO:
        env["GPIOZERO_PIN_FACTORY"] = "mock"
    proc = subprocess.Popen([sys.executable, str(EXAMPLE), "--bundle", str(TONE_BUNDLE), "--seconds", "9"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        lines = []
        deadline = time.monotonic() + 60
        while not (lines and lines[-1].startswith("listening on")):
            line = proc.stdout.readline()
            if not line or time.monotonic() > deadline:
                raise AssertionError(f"the listener did not start: {lines} {proc.stderr.read()}")
            lines.append(line.rstrip("\n"))
        subprocess.run(["paplay", f"--device={virtual_mic}", str(speech)], check=True, timeout=30)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    lines += out.strip().splitlines()
    assert proc.returncode == 0, err
    assert lines[0] == ("output: gpiozero LED on GPIO17" if HAVE_GPIOZERO else lines[0])
    actions = [line for line in lines if line.startswith(("yes", "no"))]
    assert len(actions) == 2, lines
    assert actions[0].startswith("yes  (score ") and actions[0].endswith("-> GPIO17 on")
    assert actions[1].startswith("no   (score ") and actions[1].endswith("-> GPIO17 off")
    assert "stopped after 9.0 s; capture:" in err and "LOST AUDIO" not in err
