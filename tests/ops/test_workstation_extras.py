"""Commands of the rooms above the runtime come through entry points; without their extra, one line says which."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

BLOCK = ("import sys\n"
         "for name in {names!r}:\n"
         "    sys.modules[name] = None\n"
         "from kws_edge.cli import main\n"
         "main()\n")


def _kws(*args: str, block: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    code = BLOCK.format(names=list(block))
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, timeout=120)


def test_every_command_is_listed_without_any_extra():
    proc = _kws("--help", block=("tensorflow", "keras", "matplotlib", "filelock", "aiohttp", "mlflow"))
    assert proc.returncode == 0, proc.stderr
    for command in ("detect", "classify", "listen", "info", "bench", "evaluate", "pipeline", "registry", "monitor",
                    "serve"):
        assert f"  {command} " in proc.stdout, command


def test_registry_without_filelock_names_the_extra(tmp_path):
    proc = _kws("registry", "--registry", tmp_path / "reg", "list", block=("filelock",))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        'error: the model registry needs the workstation extra (filelock): pip install "kws-edge[workstation]"']


def test_monitor_plot_without_matplotlib_names_the_extra(tmp_path):
    snapshot = {"format_version": 1, "time_utc": "2026-01-01T00:00:00.000000Z", "started_utc": "s", "samples": 16000,
                "stream_time_s": 1.0, "hops": 50, "evaluations": 50, "overflows": 0, "detections": {},
                "input": {"rms_dbfs": -30.0, "clipped_samples": 0},
                "drift": {"score": None, "flag": False, "threshold": 0.3}}
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(snapshot) + "\n")
    proc = _kws("monitor", path, "--plot", tmp_path / "p.png", block=("matplotlib",))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        'error: plotting needs the workstation extra (matplotlib): pip install "kws-edge[workstation]"')
    assert not (tmp_path / "p.png").exists()
    assert _kws("monitor", path, block=("matplotlib",)).returncode == 0  # the summary needs no extra


def test_pipeline_and_evaluate_without_tensorflow_name_the_train_extra(tmp_path):
    for args in (("pipeline", "--out", tmp_path / "o"), ("evaluate", "--data", "synthetic", "--bundle", tmp_path)):
        proc = _kws(*args, block=("tensorflow",))
        assert proc.returncode == 2, proc.stderr
        line, = proc.stderr.strip().splitlines()
        assert line.startswith(f"error: kws {args[0]} needs the train extra") and "kws-edge[train" in line


def test_the_runtime_cli_loads_no_command_from_above_until_one_is_called():
    code = textwrap.dedent("""
        import sys
        import kws_edge.cli.commands
        from click.testing import CliRunner
        from kws_edge.cli import cli
        result = CliRunner().invoke(cli, ["info", "--json"])
        assert result.exit_code == 0, result.output
        print(sorted(m for m in sys.modules if m.startswith(("kws_edge.pipeline", "kws_edge.workstation"))))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"
