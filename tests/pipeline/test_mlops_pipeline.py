"""``kws pipeline`` on a tiny synthetic config: Ctrl-C, a failing stage, resume with reuse, reproducibility.

The whole sequence trains a tiny model three times (~1-3 min on 2 cores), so it is marked slow.
The fast tests check the configuration file handling and the ledger without training.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("tensorflow", reason="the pipeline needs the train extra")
pytest.importorskip("espeakng_loader", reason="the synthetic data needs the tts extra")

TINY = """
epochs = 2
batch_size = 32
representative_samples = 50
[model]
architecture = "ds_cnn"
width = 16
depth = 1
[augment]
copies = 0
[synthetic]
n_speakers = 24
keyword_repeats = 2
other_words_per_speaker = 4
noise_seconds = 6
[pipeline]
stream_minutes = 0.5
benchmark_seconds = 3
sample_words = ["yes", "no"]
"""

KWS = [sys.executable, "-c", "import sys; from kws_edge.cli import main; sys.argv[0] = 'kws'; main()"]


def _env(**extra: str) -> dict[str, str]:
    # a fixed code version: other edits in the source tree must not invalidate stages mid-test
    return {**os.environ, "KWS_PIPELINE_CODE_VERSION": "test", "TF_CPP_MIN_LOG_LEVEL": "3", **extra}


def _ledger(out: Path) -> dict:
    return json.loads((out / "pipeline.json").read_text())


def _status(out: Path) -> dict[str, str]:
    return {k: v.get("status") for k, v in _ledger(out)["stages"].items()}


def test_config_file_with_pipeline_table(tmp_path):
    from kws_edge.errors import ConfigError
    from kws_edge.pipeline.config import load_pipeline_config

    cfg = tmp_path / "c.toml"
    cfg.write_text(TINY)
    train, pipe = load_pipeline_config(cfg, data="synthetic", device="raspberry-pi-5")
    assert train.epochs == 2 and train.model.width == 16 and train.data == "synthetic"
    assert pipe.device == "raspberry-pi-5" and pipe.sample_words == ("yes", "no")
    cfg.write_text(TINY.replace("benchmark_seconds = 3", "benchmark_secs = 3"))
    with pytest.raises(ConfigError, match="benchmark_secs"):
        load_pipeline_config(cfg)
    with pytest.raises(ConfigError, match="no such folder"):
        load_pipeline_config(None, data=str(tmp_path / "nope"))


def test_unknown_data_folder_is_one_line(tmp_path):
    proc = subprocess.run([*KWS, "pipeline", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, env=_env(), timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: --data")
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_interrupt_fail_resume_reuse_and_reproducibility(tmp_path):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY)
    out = tmp_path / "out"
    args = [*KWS, "pipeline", "--config", str(cfg), "--out", str(out)]

    # 1. Ctrl-C during training: exit 130, the stage is marked interrupted, nothing half-written is reused
    # default SIGINT handling in the child even when this test runs as a background job (SIGINT ignored)
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if (out / "pipeline.json").exists() and _status(out).get("train") == "running" and (out / "run").exists():
            break
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    time.sleep(3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    st = _status(out)
    assert st["data"] == "done" and st["train"] == "interrupted"

    # 2. a failing stage: one line, exit 1, earlier outputs kept
    proc = subprocess.run(args, capture_output=True, text=True, env=_env(KWS_PIPELINE_FAIL_STAGE="evaluate"),
                          timeout=900)
    assert proc.returncode == 1, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: stage 'evaluate' failed:") and "Traceback" not in proc.stderr
    assert "[1/8] data            reused (inputs unchanged)" in proc.stderr
    st = _status(out)
    assert [st[s] for s in ("data", "train", "convert", "budget", "evaluate")] == ["done"] * 4 + ["failed"]
    assert json.loads((out / "run" / "run.json").read_text())["status"] == "complete"
    assert (out / "convert" / "bundle" / "model.tflite").exists()

    # 3. resume with --check-reproducible: finished stages reused, the rest run, training twice compares equal
    proc = subprocess.run([*args, "--check-reproducible"], capture_output=True, text=True, env=_env(), timeout=900)
    assert proc.returncode == 0, proc.stderr
    for s in ("data", "train", "convert", "budget"):
        assert f"{s:<15} reused (inputs unchanged)" in proc.stderr
    for s in ("reproducibility", "evaluate", "benchmark", "bundle", "report"):
        assert f"{s:<15} done in" in proc.stderr
    repro = json.loads((out / "repro" / "reproducibility.json").read_text())
    assert repro["reproducible"] is True and repro["max_weight_abs_diff"] <= repro["weight_tolerance"]
    assert "reproducible: max weight diff" in proc.stdout
    from kws_edge.bundle import load_bundle

    manifest = load_bundle(out / "bundle").manifest
    assert manifest.metrics.streaming is not None and manifest.metrics.benchmark is not None
    assert (out / "sample.wav").exists() and (out / "report" / "report.html").exists()
    html = (out / "report" / "report.html").read_text()
    acc = manifest.metrics.test.converted.accuracy
    assert f"{100 * acc:.2f}%" in html

    # the demo report and kws evaluate agree on the same bundle and stream: one streaming evaluation
    report = manifest.metrics.streaming.report
    assert report.split == "test" and report.detector == manifest.detector
    assert report.command.startswith("kws evaluate --bundle ") and report.command in html
    ev = subprocess.run([*KWS, *shlex.split(report.command)[1:], "--json"], cwd=out.parent, capture_output=True,
                        text=True, env=_env(), timeout=900)
    assert ev.returncode == 0, ev.stderr
    got = json.loads(ev.stdout)["streaming"]
    for key in ("duration_s", "n_keywords", "hits", "false_reject_rate", "false_accepts", "false_accepts_per_hour",
                "duplicates"):
        assert got[key] == getattr(report.score, key), key
    assert [p["false_reject_rate"] for p in got["det_curve"]] == [p.false_reject_rate for p in report.det_curve]
    assert f"{100 * report.score.false_reject_rate:.1f}%" in html
    # no absolute path of this machine in any manifest or run file the pipeline wrote
    from kws_edge.portable import absolute_paths_in

    for path in sorted(out.rglob("*.json")):
        assert absolute_paths_in(json.loads(path.read_text())) == [], path.relative_to(out)

    # 4. nothing changed: everything reused, quickly
    t0 = time.monotonic()
    proc = subprocess.run([*args, "--check-reproducible", "--json", "-q"], capture_output=True, text=True, env=_env(),
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["reused"] == ["data", "train", "reproducibility", "convert", "budget", "evaluate", "benchmark",
                                 "bundle", "report"]

    # 5. a pipeline setting changed: only the stages that depend on it run again
    #    (and with --mlflow-uri, a tracking stage logs the result to a real local MLflow store)
    cfg.write_text(TINY.replace('sample_words = ["yes", "no"]', 'sample_words = ["no", "yes", "no"]'))
    extra = []
    try:
        import mlflow  # noqa: F401

        extra = ["--mlflow-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"]
    except ImportError:
        pass
    proc = subprocess.run([*args, *extra, "--json", "-q"], capture_output=True, text=True, env=_env(), timeout=600,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["reused"] == ["data", "train", "convert", "budget", "evaluate", "benchmark"]
    if extra:
        assert summary["stages"]["track"]["model_version"] == "1"
    assert time.monotonic() - t0 < 600


# -- the stage display: progress with an ETA on a terminal, a line per epoch in a log ---------------------


def _train_events(clock: list[float]):
    from kws_edge.pipeline.ledger import StageEvent

    yield StageEvent("start", "train", 2, 8, "first run")
    clock[0] += 5.0
    yield StageEvent("progress", "train", 2, 8, "augment", done=10, of=10)
    for epoch in range(1, 5):
        clock[0] += 10.0  # each epoch takes 10 s
        yield StageEvent("progress", "train", 2, 8, "epoch", done=epoch, of=4)
    yield StageEvent("done", "train", 2, 8, "test accuracy 90%", seconds=45.0)


@pytest.mark.parametrize("tty", [False, True])
def test_training_stage_shows_epochs_and_eta(capsys, tty):
    from kws_edge.pipeline.cli import _StageDisplay

    clock = [100.0]
    display = _StageDisplay(quiet=False, tty=tty, clock=lambda: clock[0])
    for event in _train_events(clock):
        display(event)
    err = capsys.readouterr().err
    if tty:  # one live line, rewritten in place (click drops the erase-line code when stderr is captured)
        assert "\r[2/8] train           epoch 1/4, 10 s so far, ETA 30 s" in err
        assert "epoch 3/4, 30 s so far, ETA 10 s" in err
    else:  # a log: one plain line per epoch, no control characters
        lines = err.splitlines()
        assert "\r" not in err and "\033" not in err
        epochs = [line for line in lines if " epoch " in line]
        assert epochs == ["[2/8] train           epoch 1/4, 10 s so far, ETA 30 s",
                          "[2/8] train           epoch 2/4, 20 s so far, ETA 20 s",
                          "[2/8] train           epoch 3/4, 30 s so far, ETA 10 s",
                          "[2/8] train           epoch 4/4, 40 s"]
        assert lines[0] == "[2/8] train           running (first run) ..." and lines[-1].endswith("done in 45.0 s: test accuracy 90%")


def test_many_small_steps_give_a_line_per_tenth_in_a_log(capsys):
    from kws_edge.pipeline.cli import _StageDisplay
    from kws_edge.pipeline.ledger import StageEvent

    display = _StageDisplay(quiet=False, tty=False, clock=lambda: 0.0)
    for done in range(1, 1001):
        display(StageEvent("progress", "train", 2, 8, "features", done=done, of=1000))
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 11 and lines[0].endswith("features 1/1000") and lines[5].endswith("features 500/1000")
