"""Shared fixtures: a seeded ``rng``, the tone test bundle, a ``tmp_wav`` factory, a virtual microphone.

The tests lie in folders by room (runtime, training, converters, ops, pipeline); shared builders and
helpers are the ``support`` package (``tests/support``, on the path through pytest's ``pythonpath``).
The tone bundle (``tests/data/tone_bundle/``) is a tiny int8 model trained on
synthetic tone patterns by ``support.tone_bundle``; tests use it for
detector and CLI behaviour without depending on the real default bundle.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from support import DATA_DIR

TONE_BUNDLE = DATA_DIR / "tone_bundle"


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


@pytest.fixture(scope="module")
def module_cache(tmp_path_factory, request) -> Iterator[Path]:
    """A folder of the module's own, with ``KWS_EDGE_CACHE`` pointing into it (features, synthetic sets)."""
    mp = pytest.MonkeyPatch()
    base = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])
    mp.setenv("KWS_EDGE_CACHE", str(base / "cache"))
    yield base
    mp.undo()


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


# -- virtual microphone: PulseAudio null sink, its monitor as the default source ---------------

VMIC_SINK = "kws_vmic"


def _pulse(*args: str, tool: str = "pactl", check: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=20, check=check)


@pytest.fixture(scope="session")
def virtual_mic(tmp_path_factory) -> Iterator[str]:
    """A private PulseAudio daemon with a null sink whose monitor is the default input.

    Whatever ``paplay --device=<sink>`` plays comes out of PortAudio's default
    input device (ALSA ``default`` -> pulse plugin -> the sink's monitor). The
    daemon is this test session's own (``PULSE_RUNTIME_PATH`` points at a
    private folder, inherited by subprocesses), so other PulseAudio users on the
    machine neither leak into the capture nor stop it. Skips only when the
    PulseAudio binaries are absent; the daemon is stopped afterwards.
    """
    for tool in ("pulseaudio", "pactl", "paplay"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (apt-get install pulseaudio pulseaudio-utils)")
    runtime = tmp_path_factory.mktemp("pulse")
    saved = {k: os.environ.get(k) for k in ("PULSE_RUNTIME_PATH", "PULSE_STATE_PATH", "PULSE_SERVER",
                                             "PULSE_SOURCE", "PULSE_SINK")}
    for k in saved:
        os.environ.pop(k, None)
    os.environ["PULSE_RUNTIME_PATH"] = str(runtime)
    os.environ["PULSE_STATE_PATH"] = str(runtime / "state")
    try:
        proc = _pulse("-n", "--daemonize=yes", "--exit-idle-time=-1", "-L", "module-native-protocol-unix",
                      "-L", f"module-null-sink sink_name={VMIC_SINK}", "-L", "module-always-sink",
                      tool="pulseaudio")
        if proc.returncode != 0:
            pytest.fail(f"cannot start pulseaudio: {proc.stderr.strip()}")
        deadline = time.monotonic() + 10
        while _pulse("info").returncode != 0:
            if time.monotonic() > deadline:
                pytest.fail("pulseaudio was started but pactl cannot reach it")
            time.sleep(0.1)
        _pulse("set-default-source", f"{VMIC_SINK}.monitor", check=True)
        if "sounddevice" in sys.modules:  # PortAudio enumerates devices once: refresh now pulse runs
            sd = sys.modules["sounddevice"]
            sd._terminate()
            sd._initialize()
        yield VMIC_SINK
    finally:
        _pulse("--kill", tool="pulseaudio")
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
