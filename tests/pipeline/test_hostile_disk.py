"""A full disk (issue 22, cases 9 and 10): one DiskFullError line (exit 1) naming the file, nothing left behind.

Also the pipeline ledger: a stage whose process died is not left saying ``running``, and a ledger that cannot
be written (the disk is full) does not hide the stage's own error.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from support.hostile import fill, small_disk  # noqa: F401 (fixture)
from kws_edge.errors import KwsError


def test_case09_keras_model_save_on_a_full_disk(small_disk):
    tf = pytest.importorskip("tensorflow")
    from kws_edge.training.fit import save_model_atomic

    model = tf.keras.Sequential([tf.keras.Input((49, 10)), tf.keras.layers.Flatten(),
                                 tf.keras.layers.Dense(64), tf.keras.layers.Dense(4)])  # ~125 KB of weights
    run = small_disk / "run"
    run.mkdir()
    fill(small_disk, 40 * 1024)
    with pytest.raises(KwsError, match="no space left on the device while writing .*model.keras") as exc:
        save_model_atomic(model, run / "model.keras")
    assert exc.value.exit_code == 1
    assert sorted(p.name for p in run.iterdir()) == [], "no model, no temporary model left behind"


def test_case10_report_on_a_full_disk_leaves_no_empty_png(small_disk, tmp_path):
    from kws_edge.pipeline.report import write_report

    png = b"\x89PNG\r\n\x1a\n" + np.random.default_rng(0).integers(0, 255, 40_000, dtype=np.uint8).tobytes()

    def pipeline_folder(root):
        (root / "run" / "plots").mkdir(parents=True)
        (root / "run" / "plots" / "confusion_matrix.png").write_bytes(png)
        return root

    roomy = write_report(pipeline_folder(tmp_path / "roomy"))  # how much the HTML page takes (images inlined)
    html_bytes = roomy["html"].stat().st_size
    out = pipeline_folder(small_disk / "pipeline")
    fill(small_disk, html_bytes + 12 * 1024)  # room for the page, not for the PNG copy next to it
    with pytest.raises(KwsError, match="no space left") as exc:
        write_report(out)
    assert exc.value.exit_code == 1 and "confusion_matrix.png" in str(exc.value)
    report = out / "report"
    left = sorted(p.name for p in report.iterdir()) if report.exists() else []
    assert not any(name.endswith((".png", ".tmp")) for name in left), left  # no 0-byte or partial PNG


def test_stage_of_a_dead_process_is_not_left_running(tmp_path):
    from kws_edge.training.config import TrainConfig
    from kws_edge.pipeline.config import PipelineConfig
    from kws_edge.pipeline.ledger import LEDGER_NAME
    from kws_edge.pipeline.stages import _Pipeline

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    (tmp_path / LEDGER_NAME).write_text(json.dumps({"format_version": 1, "stages": {
        "train": {"status": "running", "key": "k", "pid": proc.pid},
        "data": {"status": "running", "key": "k"},  # written before pids were recorded (Ctrl-C twice, kill -9)
        "convert": {"status": "done", "key": "k"}}}))
    p = _Pipeline(tmp_path, TrainConfig(), PipelineConfig(), check_reproducible=False, mlflow_uri=None,
                  progress=None, code="test", force=(), fail_stage=None)
    stages = p.ledger["stages"]
    assert stages["train"]["status"] == stages["data"]["status"] == "interrupted"
    assert stages["convert"]["status"] == "done"


def test_unwritable_ledger_does_not_hide_the_stage_error(tmp_path, monkeypatch):
    import kws_edge.pipeline.stages as pl
    from kws_edge.pipeline.config import PipelineConfig
    from kws_edge.pipeline.ledger import PipelineStageError
    from kws_edge.atomic import DiskFullError
    from kws_edge.training.config import TrainConfig

    p = pl._Pipeline(tmp_path, TrainConfig(), PipelineConfig(), check_reproducible=False, mlflow_uri=None,
                     progress=None, code="test", force=(), fail_stage=None)
    calls = []

    def save_ledger():
        calls.append(1)
        if len(calls) > 1:  # the stage's start was recorded; then the disk is full
            raise DiskFullError("no space left on the device while writing pipeline.json; free some space and retry")

    monkeypatch.setattr(p, "_save_ledger", save_ledger)

    def body(tick):
        raise DiskFullError("no space left on the device while writing report/confusion_matrix.png; free some space")

    with pytest.raises(PipelineStageError, match="confusion_matrix.png"):
        p._run_stage("report", {}, lambda: False, body)
