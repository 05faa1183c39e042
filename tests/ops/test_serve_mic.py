"""kws serve --source mic on the PulseAudio virtual microphone: a tone-"yes" played into the null
sink shows up in the live state, and the server stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("aiohttp", reason="kws serve needs the serve extra (aiohttp)")

from support import tone_bundle as tones  # noqa: E402
from kws_edge.audio import write_wav  # noqa: E402

TONE_BUNDLE = Path(__file__).resolve().parents[1] / "data" / "tone_bundle"


@pytest.mark.mic
@pytest.mark.skipif(not (TONE_BUNDLE / "manifest.json").exists(), reason="tests/data/tone_bundle is missing")
def test_serve_from_the_virtual_microphone_shows_the_yes(virtual_mic, tmp_path):
    speech = tmp_path / "yes.wav"
    write_wav(speech, tones.stream([("yes", 0.5)], 2.0, np.random.default_rng(12)), 16000)
    proc = subprocess.Popen([sys.executable, "-c", "from kws_edge.cli import main; main()", "serve", "--port", "0",
                             "--bundle", str(TONE_BUNDLE), "--source", "mic"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = None
        deadline = time.monotonic() + 60
        while url is None:
            line = proc.stdout.readline()
            if (not line and proc.poll() is not None) or time.monotonic() > deadline:
                raise AssertionError(f"kws serve did not start: {proc.stderr.read() if proc.poll() is not None else ''}")
            if line.startswith("open "):
                url = line.split()[1]
        subprocess.run(["paplay", f"--device={virtual_mic}", str(speech)], check=True, timeout=30)
        state = {}
        for _ in range(100):
            state = json.load(urllib.request.urlopen(url + "api/state", timeout=10))
            if state["detections"]:
                break
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert state["source"].startswith("microphone")
    assert [d["label"] for d in state["detections"]] == ["yes"]
    assert state["status"]["state"] == "live"
    assert state["counters"]["source_overflows"] == 0 and state["counters"]["audio_s"] > 1.0
    assert proc.returncode == 0, err
