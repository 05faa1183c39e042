"""Shared fixtures: a seeded ``rng``, the tone test bundle, a ``tmp_wav`` factory, a virtual microphone.

The tone bundle (``tests/data/tone_bundle/``) is a tiny int8 model trained on
synthetic tone patterns by ``tests/make_tone_bundle.py``; tests use it for
detector and CLI behaviour without depending on the real default bundle.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import wave
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

TESTS_DIR = Path(__file__).resolve().parent
DATA_DIR = TESTS_DIR / "data"
TONE_BUNDLE = DATA_DIR / "tone_bundle"

if str(TESTS_DIR) not in sys.path:  # make_tone_bundle, tflite_builder
    sys.path.insert(0, str(TESTS_DIR))


@pytest.fixture
def rng() -> np.random.Generator:
    """A fresh generator with a fixed seed for every test."""
    return np.random.default_rng(440)


@pytest.fixture(scope="session")
def tone_bundle_path() -> Path:
    return TONE_BUNDLE


@pytest.fixture(scope="session")
def tone_bundle(tone_bundle_path):
    from kws_edge.bundle import load_bundle

    return load_bundle(tone_bundle_path)


@pytest.fixture
def tone_bundle_copy(tmp_path, tone_bundle_path) -> Path:
    """A private copy of the tone bundle that a test may damage."""
    dst = tmp_path / "bundle"
    shutil.copytree(tone_bundle_path, dst)
    return dst


WavFactory = Callable[..., Path]


@pytest.fixture
def tmp_wav(tmp_path) -> WavFactory:
    """``tmp_wav(samples, rate_hz=16000, subtype="PCM_16", name=None) -> Path``.

    ``samples``: float array in [-1, 1], shape (n,) or (n, channels).
    ``subtype``: a soundfile subtype (``PCM_16``, ``PCM_24``, ``PCM_32``, ``FLOAT``, ``DOUBLE``,
    ``PCM_U8``). Written with soundfile, independently of kws_edge.audio.
    """
    import soundfile as sf

    counter = iter(range(1_000_000))

    def make(samples, rate_hz: int = 16000, subtype: str = "PCM_16", name: str | None = None) -> Path:
        path = tmp_path / (name or f"clip{next(counter)}.wav")
        sf.write(str(path), np.asarray(samples), int(rate_hz), subtype=subtype, format="WAV")
        return path

    return make


def write_pcm16(path: Path, samples: np.ndarray, rate_hz: int = 16000) -> Path:
    """Plain 16-bit mono WAV with the standard library (for playing through paplay)."""
    pcm = np.clip(np.round(np.asarray(samples) * 32767), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as wf:
        wf.setnchannels(1)
        wf.setsampwidth(2)
        wf.setframerate(rate_hz)
        wf.writeframes(pcm.tobytes())
    return path


# -- virtual microphone: PulseAudio null sink, its monitor as the default source ---------------

VSINK = "vsink"


def _pactl(*args: str, check: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run(["pactl", *args], capture_output=True, text=True, timeout=10, check=check)


def _pulse_running() -> bool:
    try:
        return _pactl("info").returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="session")
def virtual_mic() -> Iterator[str]:
    """A running PulseAudio with a null sink ``vsink`` whose monitor is the default source.

    Whatever ``paplay --device=vsink`` plays comes out of the default input
    device of PortAudio (ALSA ``default`` -> pulse). Starts PulseAudio if it is
    not running and stops it afterwards; skips only when the binaries are absent.
    """
    for tool in ("pulseaudio", "pactl", "paplay"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (apt-get install pulseaudio pulseaudio-utils)")
    started = False
    if not _pulse_running():
        subprocess.run(
            ["pulseaudio", "-n", "--daemonize=yes", "--exit-idle-time=-1", "-L", "module-native-protocol-unix",
             "-L", f"module-null-sink sink_name={VSINK}", "-L", "module-always-sink"],
            capture_output=True, timeout=20, check=True,
        )
        started = True
        deadline = time.monotonic() + 10
        while not _pulse_running():
            if time.monotonic() > deadline:
                pytest.fail("pulseaudio was started but pactl cannot reach it")
            time.sleep(0.1)
    if VSINK not in _pactl("list", "short", "sinks").stdout:
        _pactl("load-module", "module-null-sink", f"sink_name={VSINK}", check=True)
    _pactl("set-default-source", f"{VSINK}.monitor", check=True)
    if "sounddevice" in sys.modules:  # PortAudio enumerates devices once: refresh after pulse started
        sd = sys.modules["sounddevice"]
        sd._terminate()
        sd._initialize()
    try:
        yield VSINK
    finally:
        if started:
            subprocess.run(["pulseaudio", "--kill"], capture_output=True, timeout=20)


def kws_subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS_DIR.parent), env.get("PYTHONPATH", "")) if p)
    return env
