"""The examples in examples/ run as a user would run them (a subprocess each), on real WAV files
and the tone test bundle, so they cannot silently rot. The microphone example is in
test_examples_mic.py (virtual microphone through PulseAudio).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from support import tone_bundle as tones
from kws_edge.audio import write_wav

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
TONE_BUNDLE = ROOT / "tests" / "data" / "tone_bundle"
pytestmark = pytest.mark.skipif(not (TONE_BUNDLE / "manifest.json").exists(), reason="tests/data/tone_bundle is missing")


def run_example(name: str, *args: str, timeout_s: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, str(EXAMPLES / name), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout_s, env=env, cwd=ROOT)


def wav(path: Path, events: list[tuple[str, float]], duration_s: float, seed: int, rate_hz: int = 16000) -> Path:
    x = tones.stream(events, duration_s, np.random.default_rng(seed))
    if rate_hz != 16000:
        from kws_edge.audio import resample

        x = resample(x, 16000, rate_hz)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_wav(path, x, rate_hz)
    return path


@pytest.fixture(scope="module")
def recordings(tmp_path_factory) -> Path:
    """A folder as a user would have it: nested, one file at 44.1 kHz, one without keywords."""
    root = tmp_path_factory.mktemp("recordings")
    wav(root / "kitchen.wav", [("yes", 1.0), ("no", 3.0)], 5.0, seed=1)
    wav(root / "day2" / "hall.wav", [("_unknown_", 1.0), ("_unknown_", 2.5)], 4.0, seed=2)
    wav(root / "day2" / "porch.wav", [("no", 1.5)], 3.0, seed=3, rate_hz=44100)
    (root / "notes.txt").write_text("not audio, not a .wav: ignored")
    return root


# ---------------------------------------------------------------- scan_recordings.py
def test_scan_writes_a_csv_of_detections_with_times(recordings, tmp_path):
    out = tmp_path / "detections.csv"
    r = run_example("scan_recordings.py", recordings, "--out", out, "--bundle", TONE_BUNDLE)
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(out.open()))
    assert [(row["file"], row["label"]) for row in rows] == [
        ("day2/porch.wav", "no"), ("kitchen.wav", "yes"), ("kitchen.wav", "no")]
    times = {(row["file"], row["label"]): float(row["time_s"]) for row in rows}
    # time_s is the end of the window that fired: within a second after the word's start
    assert 1.0 < times[("kitchen.wav", "yes")] < 2.2
    assert 3.0 < times[("kitchen.wav", "no")] < 4.2
    assert 1.5 < times[("day2/porch.wav", "no")] < 2.7
    assert all(0.8 <= float(row["score"]) <= 1.0 for row in rows)
    assert r.stderr.strip().splitlines()[-1] == (
        f"3 detection(s) in 3 file(s), 12.0 s of audio; 0 file(s) skipped -> {out}")


def test_scan_skips_a_broken_file_reports_it_and_exits_1(recordings, tmp_path):
    folder = tmp_path / "mixed"
    wav(folder / "good.wav", [("yes", 1.0)], 3.0, seed=4)
    (folder / "broken.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt ")
    out = tmp_path / "out.csv"
    r = run_example("scan_recordings.py", folder, "--out", out, "--bundle", TONE_BUNDLE)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"skipped: {folder / 'broken.wav'} is a ")
    rows = list(csv.DictReader(out.open()))  # the good file still counts
    assert {(row["file"], row["label"]) for row in rows} == {("good.wav", "yes")}
    assert 1.0 < float(rows[0]["time_s"]) < 2.2


def test_scan_threshold_override_and_bad_arguments(recordings, tmp_path):
    out = tmp_path / "strict.csv"
    r = run_example("scan_recordings.py", recordings, "--out", out, "--bundle", TONE_BUNDLE, "--threshold", "1.0")
    assert r.returncode == 0, r.stderr
    assert len(list(csv.DictReader(out.open()))) < 3  # a stricter threshold can only remove detections
    r = run_example("scan_recordings.py", tmp_path / "nope", "--bundle", TONE_BUNDLE)
    assert (r.returncode, r.stderr.strip()) == (2, f"error: {tmp_path / 'nope'} is not a folder; "
                                                   "pass the folder that holds the recordings")
    r = run_example("scan_recordings.py", recordings, "--bundle", TONE_BUNDLE, "--threshold", "1.5")
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "error: threshold for 'yes' is 1.5; it must be in (0, 1]"]


# ---------------------------------------------------------------- asyncio_app.py
def test_asyncio_app_gets_detections_while_its_loop_keeps_ticking(tmp_path):
    rec = wav(tmp_path / "two.wav", [("yes", 1.0), ("no", 3.0)], 4.5, seed=5)
    r = run_example("asyncio_app.py", "--wav", rec, "--bundle", TONE_BUNDLE)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[0] == f"playing {rec} (4.5 s)"
    hits = [line for line in lines if line.startswith(("yes", "no"))]
    assert [h.split()[0] for h in hits] == ["yes", "no"]
    # the heartbeat coroutine ran between the two detections: the detector never blocked the loop
    ticks = [int(h.rsplit(":", 1)[1].rstrip(")")) for h in hits]
    assert 0 < ticks[0] < ticks[1]
    assert lines[-1].startswith("done: 2 detection(s); the event loop ticked")


def test_asyncio_app_reports_a_bad_file_in_one_line(tmp_path):
    bad = tmp_path / "empty.wav"
    bad.write_bytes(b"")
    r = run_example("asyncio_app.py", "--wav", bad, "--bundle", TONE_BUNDLE)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [f"error: {bad} is empty (0 bytes); record or export the audio again"]


# ---------------------------------------------------------------- bring_your_own_model.py
def test_bring_your_own_model_overrides_thresholds_and_reads_telemetry(tmp_path):
    rec = wav(tmp_path / "rec.wav", [("yes", 1.0), ("no", 3.0)], 5.0, seed=6)
    jsonl = tmp_path / "telemetry.jsonl"
    r = run_example("bring_your_own_model.py", TONE_BUNDLE, rec, "--threshold", "yes=0.95", "--threshold", "no=0.85",
                    "--suppression-ms", "1500", "--telemetry-jsonl", jsonl)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "model: tone-test 1.0.0" in out
    assert "threshold yes: 0.95 (bundle default 0.80)" in out and "threshold no: 0.85 (bundle default 0.80)" in out
    assert "suppression: 1500 ms (bundle default 1000 ms)" in out
    hits = [line.split()[0] for line in out.splitlines() if line.startswith(("yes ", "no "))]
    assert hits == ["yes", "no"]
    assert "detections {'yes': 1, 'no': 1}" in out
    assert "feature drift vs training: " in out and "dBFS rms" in out
    snaps = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert len(snaps) == 1 and snaps[0]["detections"] == {"yes": 1, "no": 1}
    assert snaps[0]["stream_time_s"] == pytest.approx(6.0)  # 5 s recording + 1 s of flush silence


def test_bring_your_own_model_threshold_too_high_for_the_word_hears_nothing(tmp_path):
    rec = wav(tmp_path / "rec.wav", [("yes", 1.0)], 3.0, seed=7)
    r = run_example("bring_your_own_model.py", TONE_BUNDLE, rec, "--threshold", "1.0")
    assert r.returncode == 0, r.stderr
    assert "threshold yes: 1.00" in r.stdout and "threshold no: 1.00" in r.stdout


@pytest.mark.parametrize("args, message", [
    (["{tmp}/no_bundle", "{rec}"], "error: bundle {tmp}/no_bundle does not exist"),
    (["{bundle}", "{rec}", "--threshold", "maybe=0.9"], "error: threshold given for 'maybe', which is not a keyword"),
    (["{bundle}", "{rec}", "--threshold", "yes=high"], "error: --threshold 'yes=high': expected KEYWORD=NUMBER"),
    (["{bundle}", "{rec}", "--threshold", "0.9", "--threshold", "no=0.5"], "error: give either one threshold"),
])
def test_bring_your_own_model_bad_input_is_one_line(tmp_path, args, message):
    rec = wav(tmp_path / "rec.wav", [("yes", 1.0)], 2.0, seed=8)
    fill = {"tmp": tmp_path, "rec": rec, "bundle": TONE_BUNDLE}
    r = run_example("bring_your_own_model.py", *[a.format(**fill) for a in args])
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message.format(**fill)), r.stderr


@pytest.mark.parametrize("name", ["listen_yes_no.py", "scan_recordings.py", "asyncio_app.py",
                                  "bring_your_own_model.py"])
def test_every_example_has_working_help(name):
    r = run_example(name, "--help")
    assert r.returncode == 0 and r.stdout.startswith("usage: ") and "bundle" in r.stdout, r.stderr


def test_main_job_prints_what_was_said_as_words(tmp_path):
    """The main job's "what was said" lines, run as main_job.sh prints them, on a pipeline-style sample.json."""
    script = (EXAMPLES / "main_job.sh").read_text().splitlines()
    said_lines = [line for line in script if line.startswith("said=") or "what was said" in line]
    assert len(said_lines) == 2, said_lines
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "python").symlink_to(sys.executable)
    out = tmp_path / "demo"
    out.mkdir()
    words = [{"word": w, "start_s": 0.5 + 1.7 * i, "end_s": 1.1 + 1.7 * i} for i, w in enumerate(["yes", "up", "no"])]
    (out / "sample.json").write_text(json.dumps({"words": words, "detections": [], "command": "kws detect"}, indent=2))
    proc = subprocess.run(["bash", "-c", "set -euo pipefail\n" + "\n".join(said_lines)], cwd=tmp_path,
                          env={**os.environ, "out": str(out)}, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"== what was said in {out}/sample.wav: yes at 0.50 s, up at 2.20 s, no at 3.90 s"
