"""Opt-in: the emulated Raspberry Pi check (devices/emulate_pi.sh), and its comparison helper.

The emulation needs root, qemu-user-static, debootstrap and network access to
Debian and PyPI, and takes minutes: it runs only with ``KWS_PI_EMULATION=1``
and ``-m slow``. ``KWS_PI_VARIANT`` picks the variant (default bookworm-arm64).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "devices"))
import pi_check  # noqa: E402

sys.path.pop(0)


def _write(d: Path, classify: list[dict], detect: list[dict]) -> Path:
    d.mkdir()
    (d / "classify.jsonl").write_text("".join(json.dumps(r) + "\n" for r in classify))
    (d / "detect.jsonl").write_text("".join(json.dumps(r) + "\n" for r in detect))
    return d


CLASSIFY = [{"file": "/tmp/a/tone_yes.wav", "label": "yes", "score": 0.9,
             "scores": {"_silence_": 0.0, "_unknown_": 0.1, "yes": 0.9, "no": 0.0}}]
DETECT = [{"file": "stream.wav", "label": "yes", "score": 0.88, "time_s": 1.52}]


def test_compare_accepts_identical_results_whatever_the_paths(tmp_path):
    x86 = _write(tmp_path / "x86", CLASSIFY, DETECT)
    pi = _write(tmp_path / "pi", [{**CLASSIFY[0], "file": "audio/tone_yes.wav"}],
                [{**DETECT[0], "file": "/tmp/kws-check/audio/stream.wav"}])
    assert pi_check.compare(x86, pi) == []


def test_compare_reports_a_different_label_score_or_detection(tmp_path):
    x86 = _write(tmp_path / "x86", CLASSIFY, DETECT)
    wrong = {**CLASSIFY[0], "label": "no", "scores": {**CLASSIFY[0]["scores"], "yes": 0.5}}
    pi = _write(tmp_path / "pi", [wrong], [])
    problems = pi_check.compare(x86, pi)
    assert any("x86 yes vs Pi" in p for p in problems)
    assert any("yes: 0.9 vs 0.5" in p for p in problems)
    assert any("1 detections on x86, 0 on the Pi" in p for p in problems)


def test_cpuinfo_texts_look_like_a_pi():
    text = pi_check.cpuinfo("pi4")
    assert text.count("processor\t:") == 4 and "CPU part\t: 0xd08" in text
    assert "Model\t\t: Raspberry Pi 4 Model B" in text


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("KWS_PI_EMULATION") != "1", reason="set KWS_PI_EMULATION=1 to run (minutes, root)")
def test_emulated_pi_matches_x86(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("the emulation needs root")
    variant = os.environ.get("KWS_PI_VARIANT", "bookworm-arm64")
    proc = subprocess.run(["bash", str(REPO / "devices" / "emulate_pi.sh"), "--variant", variant,
                           "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=60 * 60)
    assert proc.returncode == 0, proc.stderr[-4000:] + proc.stdout[-2000:]
    assert "emulated Pi results match x86" in proc.stdout
    bench = json.loads((tmp_path / "out" / "pi" / "bench.json").read_text())
    assert bench["machine"]["machine"] in ("aarch64", "armv7l")
