"""TensorFlow is imported quietly: none of its alarming stderr lines reach a user of kws-train or kws-convert."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from support.processes import kws_subprocess_env
from kws_edge.training.tf_import import TF_QUIET_LOG_LEVEL, quiet_tensorflow_logs

#: what TensorFlow 2.21 printed during the main job before (issue 23, item 5)
ALARMING = ("E0000", "I0000", "NodeDef", "use_unbounded_threadpool", "oneDNN", "absl::InitializeLog")


@pytest.mark.parametrize("before, after", [(None, TF_QUIET_LOG_LEVEL), ("2", TF_QUIET_LOG_LEVEL), ("0", "0"),
                                           ("1", "1"), ("3", "3")])
def test_log_level_is_raised_from_unset_or_2_and_left_alone_otherwise(monkeypatch, before, after):
    if before is None:
        monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    else:
        monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", before)
    quiet_tensorflow_logs()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == after


def _tool(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**kws_subprocess_env(), "TF_CPP_MIN_LOG_LEVEL": "2"}  # what the README tells users to export
    code = f"import sys; from kws_edge.{name}.cli import main; sys.argv[0] = 'x'; main()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=600,
                          env=env, cwd=cwd)


@pytest.mark.slow
def test_kws_train_and_kws_convert_print_no_tensorflow_noise(tmp_path):
    from support.training_data import make_folder

    data = make_folder(tmp_path / "data", n_speakers=20)
    recipe = tmp_path / "tiny.toml"
    recipe.write_text("epochs = 1\nbatch_size = 32\nvalidation_percentage = 20.0\ntesting_percentage = 20.0\n"
                      "representative_samples = 50\n[model]\narchitecture = \"tiny_conv\"\nwidth = 8\ndepth = 0\n"
                      "[augment]\ncopies = 1\n")
    train = _tool("training", "--data", str(data), "--config", str(recipe), "--out", str(tmp_path / "run"), "-q",
                  cwd=tmp_path)
    assert train.returncode == 0, train.stderr
    convert = _tool("converters", str(tmp_path / "run"), "--device", "raspberry-pi-4", "--out",
                    str(tmp_path / "bundle"), "--no-measure", cwd=tmp_path)
    assert convert.returncode == 0, convert.stderr
    for proc in (train, convert):
        noisy = [line for line in proc.stderr.splitlines() if any(a in line for a in ALARMING)]
        assert noisy == [], noisy
