"""``kws registry`` and ``kws monitor`` as a user runs them: output, exit status, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kws_edge.cli import cli, run_cli
from kws_edge.cli import commands  # noqa: F401  registers the subcommands

from test_mlops_registry import TONE_BUNDLE, make_bundle  # noqa: E402

pytestmark = pytest.mark.skipif(not (TONE_BUNDLE / "manifest.json").exists(), reason="tests/data/tone_bundle is missing")


def kws(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = run_cli(cli, list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_registry_commands(tmp_path, capsys):
    reg = str(tmp_path / "reg")
    a = make_bundle(tmp_path / "a", "1.0", accuracy=0.90)
    b = make_bundle(tmp_path / "b", "2.0", accuracy=0.95, epochs=30)
    rc, out, _ = kws(capsys, "registry", "--registry", reg, "add", str(a))
    assert rc == 0 and out.startswith("registered ")
    id_a = out.split()[1]
    rc, out, _ = kws(capsys, "registry", "--registry", reg, "add", str(a))
    assert rc == 0 and out.startswith(f"already registered {id_a}")
    rc, out, _ = kws(capsys, "registry", "--registry", reg, "add", str(b))
    id_b = out.split()[1]
    rc, out, _ = kws(capsys, "registry", "--registry", reg, "promote", id_a[:6], "--to", "production")
    assert rc == 0 and f"{id_a} is now production" in out
    rc, out, _ = kws(capsys, "registry", "--registry", reg, "promote", id_b)
    assert rc == 0 and f"replacing {id_a}" in out
    rc, out, _ = kws(capsys, "registry", "--registry", reg, "list")
    assert rc == 0
    lines = out.splitlines()
    assert any(line.startswith(id_a) and "archived" in line and "int8 acc 89.0%" in line for line in lines)
    assert any(line.startswith(id_b) and "production" in line for line in lines)
    rc, out, _ = kws(capsys, "registry", "--registry", reg, "show", "production")
    assert rc == 0 and id_b in out and "2.0" in out
    rc, out, _ = kws(capsys, "registry", "--registry", reg, "diff", id_a, "production")
    assert rc == 0
    assert "test.float_model.accuracy: 0.9 -> 0.95  (+0.05)" in out
    assert "epochs: 10 -> 30" in out and "data:   same" in out
    rc, out, _ = kws(capsys, "registry", "--registry", reg, "list", "--json")
    data = json.loads(out)
    assert {v["id"] for v in data["versions"]} == {id_a, id_b} and data["stages"]["production"] == id_b


def test_re_adding_a_registered_bundle_moves_no_stage_unless_asked(tmp_path, capsys):
    reg = str(tmp_path / "reg")
    old = make_bundle(tmp_path / "old", "1.0")
    new = make_bundle(tmp_path / "new", "2.0")
    rc, out, _ = kws(capsys, "registry", "--registry", reg, "add", str(old))
    id_old = out.split()[1]
    assert rc == 0 and out.rstrip().endswith("stages: candidate")
    rc, out, _ = kws(capsys, "registry", "--registry", reg, "add", str(new))  # the newer candidate
    id_new = out.split()[1]
    assert rc == 0 and out.rstrip().endswith("stages: candidate")
    rc, out, _ = kws(capsys, "registry", "--registry", reg, "add", str(old))  # again: nothing moves
    assert rc == 0 and out.startswith(f"already registered {id_old}") and "stages: none (unchanged;" in out
    from kws_edge.workstation.registry import ModelRegistry

    assert ModelRegistry(reg).stages() == {"candidate": id_new}
    rc, out, _ = kws(capsys, "registry", "--registry", reg, "add", str(old), "--stage", "candidate")  # asked
    assert rc == 0 and out.rstrip().endswith("stages: candidate")
    assert ModelRegistry(reg).stages() == {"candidate": id_old}


def test_registry_broken_entry_listed_and_bad_reference_is_one_line(tmp_path, capsys):
    reg = str(tmp_path / "reg")
    kws(capsys, "registry", "--registry", reg, "add", str(make_bundle(tmp_path / "a", "1")))
    rc, out, _ = kws(capsys, "registry", "--registry", reg, "add", str(make_bundle(tmp_path / "b", "2")))
    id_b = out.split()[1]
    model = Path(reg) / "versions" / id_b / "bundle" / "model.tflite"
    os.chmod(model, 0o644)
    model.write_bytes(b"garbage")
    rc, out, err = kws(capsys, "registry", "--registry", reg, "list")
    assert rc == 0
    assert f"{id_b}  BROKEN: bundle file model.tflite does not match" in out
    assert "1 broken version(s); the others are usable" in err
    rc, out, err = kws(capsys, "registry", "--registry", reg, "show", id_b)
    assert rc == 2 and err.count("\n") == 1 and err.startswith("error: registry version") and "broken" in err
    rc, out, err = kws(capsys, "registry", "--registry", reg, "show", "zzzz")
    assert rc == 2 and err.startswith("error: no version 'zzzz'")
    # and through the real console script: one line, no traceback
    code = "import sys; from kws_edge.cli import main; sys.argv[0] = 'kws'; main()"
    proc = subprocess.run([sys.executable, "-c", code, "registry", "--registry", reg, "promote", "nope"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "no version 'nope'" in proc.stderr


def _snapshots(tmp_path: Path, drifted: bool, truncated: bool) -> Path:
    from kws_edge.features import MfccConfig, Normalization, StreamingMfcc, mfcc
    from kws_edge.telemetry import DetectorTelemetry, JsonlSnapshotter

    from test_mlops_telemetry import speech_like

    base = speech_like(30, seed=0)
    norm = Normalization.fit(np.stack([mfcc(c) for c in base.reshape(30, 16000)]))
    tel = DetectorTelemetry(("_silence_", "_unknown_", "yes", "no"), ("yes", "no"), train_mean=norm.mean,
                            train_std=norm.std)
    audio = speech_like(12, seed=1)
    if drifted:
        audio = audio * 0.05
    path = tmp_path / "t.jsonl"
    sm = StreamingMfcc(MfccConfig())
    with JsonlSnapshotter(tel, path, interval_s=3600) as snap:
        for i in range(0, audio.size, 1600):
            part = audio[i:i + 1600]
            tel.observe(part, sm.process(part))
            if i % (16000 * 3) == 0:
                snap.write()
    if truncated:
        with path.open("a") as fh:
            fh.write('{"format_version": 1, "samples": 12')
    return path


def test_monitor_summarises_and_flags_drift(tmp_path, capsys):
    (tmp_path / "c").mkdir()
    clean = _snapshots(tmp_path / "c", drifted=False, truncated=True)
    rc, out, err = kws(capsys, "monitor", str(clean), "--fail-on-drift")
    assert rc == 0, err
    assert "drift: ok" in out and "audio: 0.2 min" in out
    assert "last line" in err and "truncated" in err
    (tmp_path / "d").mkdir()
    drifted = _snapshots(tmp_path / "d", drifted=True, truncated=False)
    png = tmp_path / "h.png"
    rc, out, err = kws(capsys, "monitor", str(drifted), "--plot", str(png), "--fail-on-drift")
    assert rc == 1
    assert "drift: DRIFT" in out and png.read_bytes()[:4] == b"\x89PNG"
    rc, out, _ = kws(capsys, "monitor", str(drifted), "--json")
    s = json.loads(out)
    assert s["drift_flag_last"] is True and s["samples"] == 12 * 16000
    rc, out, err = kws(capsys, "monitor", str(tmp_path / "missing.jsonl"))
    assert rc == 2 and err.startswith("error: telemetry file") and "does not exist" in err
