"""The microphone source: missing backends, overflow accounting, and a real capture through PortAudio.

The capture tests use PulseAudio with a null sink as a virtual microphone
(``virtual_mic`` in conftest): ``paplay`` plays a WAV into the sink, and the
sink's monitor is the default input that PortAudio opens.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest

from support import tone_bundle as tones
from support.processes import kws_subprocess_env, write_pcm16
from kws_edge import microphone
from kws_edge.errors import BackendUnavailableError, ConfigError
from kws_edge.microphone import CaptureStats, MicrophoneSource


class _Status:
    """Stand-in for sounddevice.CallbackFlags."""

    def __init__(self, input_overflow=False, other=False):
        self.input_overflow = input_overflow
        self._other = other

    def __bool__(self):
        return self.input_overflow or self._other


def test_missing_sounddevice_says_pip_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sounddevice", None)
    with pytest.raises(BackendUnavailableError, match=r'pip install "kws-edge\[audio\]"'):
        MicrophoneSource().start()


def test_missing_portaudio_says_apt_get(monkeypatch):
    def no_portaudio(name):
        raise OSError("PortAudio library not found")

    monkeypatch.setattr(microphone, "importlib", types.SimpleNamespace(import_module=no_portaudio))
    with pytest.raises(BackendUnavailableError, match="apt-get install libportaudio2"):
        microphone.list_input_devices()


def test_bad_settings():
    with pytest.raises(ConfigError, match="dtype"):
        MicrophoneSource(dtype="int8")
    with pytest.raises(ConfigError, match="queue_blocks"):
        MicrophoneSource(queue_blocks=0)


def test_full_queue_and_input_overflow_are_counted_not_silent():
    told: list[CaptureStats] = []
    src = MicrophoneSource(block_samples=4, queue_blocks=2, on_overflow=told.append)
    block = np.arange(4, dtype=np.int16).reshape(4, 1)
    for _ in range(5):  # nobody reads: 2 fit, 3 are dropped
        src._callback(block, 4, None, _Status())
    src._callback(block, 4, None, _Status(input_overflow=True))
    src._callback(block, 4, None, _Status(other=True))
    s = src.stats
    assert (s.blocks, s.samples) == (2, 8)
    assert (s.dropped_blocks, s.dropped_samples) == (5, 20)
    assert s.input_overflows == 1 and s.other_status == 1
    assert s.lost_audio and "LOST AUDIO" in s.summary()
    assert len(told) == 5  # 3 drops + the overflowed block (itself dropped) + the flagged-other block dropped
    # queued blocks are independent copies, in order, one channel
    first = src._queue.get_nowait()
    block[:] = 99
    assert first.tolist() == [0, 1, 2, 3]
    # a stopped source hands out what is queued, then ends instead of waiting
    assert src.read().tolist() == [0, 1, 2, 3]
    with pytest.raises(StopIteration):
        src.read()


# -- real capture through PortAudio and a PulseAudio virtual microphone ---------------------------------


def _ncc_peak(captured: np.ndarray, reference: np.ndarray) -> float:
    """Largest normalised cross-correlation of ``reference`` anywhere in ``captured``."""
    from scipy.signal import correlate

    cap = captured.astype(np.float64)
    ref = reference.astype(np.float64)
    c = correlate(cap, ref, mode="valid")
    cs = np.concatenate([[0.0], np.cumsum(cap ** 2)])
    energy = cs[len(ref):] - cs[:-len(ref)]
    return float(np.max(c / (np.sqrt(np.maximum(energy, 1e-12)) * np.linalg.norm(ref))))


def _chirp(n=8000, rate=16000):
    t = np.arange(n) / rate
    return (0.5 * np.sin(2 * np.pi * (300 * t + 2000 * t ** 2))).astype(np.float32)


@pytest.mark.mic
@pytest.mark.parametrize("dtype", ["int16", "float32"])
def test_capture_contains_the_played_signal(virtual_mic, tmp_path, dtype):
    chirp = _chirp()
    played = np.concatenate([np.zeros(4000, np.float32), chirp, np.zeros(4000, np.float32)])
    wav = write_pcm16(tmp_path / "chirp.wav", played)
    with MicrophoneSource(sample_rate_hz=16000, block_samples=1600, dtype=dtype, timeout_s=5.0) as mic:
        player = subprocess.Popen(["paplay", f"--device={virtual_mic}", str(wav)])
        blocks = [mic.read() for _ in range(25)]  # 2.5 s
        player.wait(timeout=20)
    assert not mic.running
    captured = np.concatenate(blocks)
    assert captured.dtype == np.dtype(dtype) and captured.ndim == 1 and len(captured) == 40000
    level = captured.astype(np.float64) / (32768.0 if dtype == "int16" else 1.0)
    assert 0.3 < np.abs(level).max() < 0.7  # the chirp's amplitude is 0.5
    assert _ncc_peak(level, chirp) > 0.9
    assert mic.stats.blocks >= 25 and not mic.stats.lost_audio


@pytest.mark.mic
def test_slow_consumer_drops_are_counted(virtual_mic):
    with MicrophoneSource(block_samples=160, queue_blocks=3) as mic:  # 10 ms blocks, 30 ms of queue
        deadline = time.monotonic() + 10
        while mic.stats.blocks + mic.stats.dropped_blocks < 20 and time.monotonic() < deadline:
            time.sleep(0.05)  # a consumer that does not read
        drained = 0
        while True:
            try:
                mic._queue.get_nowait()
                drained += 1
            except Exception:
                break
    assert mic.stats.dropped_blocks > 0 and mic.stats.lost_audio
    assert drained <= 3


@pytest.mark.mic
def test_unknown_device_is_a_config_error(virtual_mic):
    with pytest.raises(ConfigError, match="no input device 'no-such-microphone'"):
        MicrophoneSource(device="no-such-microphone").start()


def _start_listen(bundle, *extra):
    proc = subprocess.Popen(
        [sys.executable, "-c", "from kws_edge.cli import main; main()", "listen", "--bundle", str(bundle), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=kws_subprocess_env(),
    )
    first = proc.stderr.readline()  # "listening on ..." once the stream runs
    assert first.startswith("listening on"), first + proc.stderr.read()
    return proc


@pytest.mark.mic
def test_kws_listen_hears_a_played_keyword(virtual_mic, tone_bundle_path, tmp_path):
    audio = tones.stream([("yes", 0.5)], 2.0, np.random.default_rng(0))
    wav = write_pcm16(tmp_path / "yes_stream.wav", audio)
    proc = _start_listen(tone_bundle_path, "--seconds", "4", "--json")
    subprocess.run(["paplay", f"--device={virtual_mic}", str(wav)], timeout=20, check=True)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["label"] for r in rows] == ["yes"], (out, err)
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("listened 4.0 s: 1 detections")


@pytest.mark.mic
def test_kws_listen_interval_ms_with_a_streaming_bundle(virtual_mic, tmp_path):
    streaming_bundle = Path(__file__).resolve().parents[1] / "data" / "tone_tcn_bundle"
    audio = tones.stream([("no", 0.5)], 2.0, np.random.default_rng(1))
    wav = write_pcm16(tmp_path / "no_stream.wav", audio)
    proc = _start_listen(streaming_bundle, "--seconds", "4", "--json", "--interval-ms", "200")
    subprocess.run(["paplay", f"--device={virtual_mic}", str(wav)], timeout=20, check=True)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert [json.loads(line)["label"] for line in out.splitlines()] == ["no"], (out, err)


@pytest.mark.mic
def test_kws_listen_ctrl_c_ends_cleanly(virtual_mic, tone_bundle_path):
    proc = _start_listen(tone_bundle_path)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("interrupted; listened ")


def test_kws_listen_without_any_input_device_is_one_line(tone_bundle_path, tmp_path):
    env = kws_subprocess_env()
    env.update(PULSE_RUNTIME_PATH=str(tmp_path), PULSE_SERVER=f"unix:{tmp_path}/no-daemon")  # no PulseAudio
    proc = subprocess.run(
        [sys.executable, "-c", "from kws_edge.cli import main; main()", "listen", "--bundle", str(tone_bundle_path),
         "--seconds", "0.5"], capture_output=True, text=True, timeout=60, env=env)
    if proc.returncode == 0:
        pytest.skip("this machine has a real input device")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "device" in lines[0], proc.stderr
