"""`pip install .` from a checkout reads the tree and writes nothing into it; `pip install -e .` still works."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_SKIP = (".git", ".venv", "venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", "runs", "artifacts",
         "tests", "benchmarks", "examples", "docs")


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture
def checkout(tmp_path) -> Path:
    """A copy of the project's sources as a fresh checkout has them (no build outputs)."""
    src = tmp_path / "kws-edge"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(*_SKIP))
    return src


def test_pip_wheel_from_a_checkout_leaves_no_build_or_egg_info(checkout, tmp_path):
    pytest.importorskip("setuptools")
    before = _tree(checkout)
    wheels = tmp_path / "wheels"
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(wheels), "."], cwd=checkout, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert _tree(checkout) == before  # no build/, no kws_edge.egg-info, nothing else
    (wheel,) = wheels.glob("kws_edge-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("kws_edge/default_bundle/manifest.json", "kws_edge/micro_bundle/manifest.json",
                   "kws_edge/micro_bundle/model_streaming.tflite", "kws_edge/workstation/web/index.html",
                   "kws_edge/training/fit.py", "kws_edge/converters/cli.py", "kws_edge/devices/x86-64.toml",
                   "kws_edge/bundle/manifest.py", "kws_edge/pipeline/cli.py", "kws_edge/workstation/cli.py"):
        assert needed in names, needed
    assert not any(n.startswith("_packaging") for n in names)  # the build backend is not installed
    wheel_file = zipfile.ZipFile(wheel)
    meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
    metadata = wheel_file.read(meta).decode()
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    base = [line for line in requires if "extra ==" not in line]
    for library in ("filelock", "matplotlib", "aiohttp", "tensorflow"):  # a Pi installs none of these unasked
        assert not any(library in line for line in base), (library, base)
    assert any("filelock" in line and 'extra == "workstation"' in line for line in requires)
    entry_points = wheel_file.read(meta.replace("METADATA", "entry_points.txt")).decode()
    assert "[kws_edge.commands]" in entry_points  # commands of the rooms above the runtime, registered from above
    for line in ("registry = kws_edge.workstation.cli:registry", "pipeline = kws_edge.pipeline.cli:pipeline",
                 "evaluate = kws_edge.pipeline.cli:evaluate_command"):
        assert line in entry_points, line


def test_editable_builds_still_come_from_the_source_tree(checkout, tmp_path):
    """The editable hook (what examples/setup.sh's `pip install -e .` calls) still builds, in place."""
    pytest.importorskip("setuptools")
    code = ("import sys; sys.path.insert(0, '_packaging'); import kws_edge_build_backend as b; "
            f"print(b.build_editable({str(tmp_path / 'editable')!r}))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=checkout, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    name = proc.stdout.strip().splitlines()[-1]
    assert name.startswith("kws_edge-") and name.endswith(".whl")
    names = zipfile.ZipFile(tmp_path / "editable" / name).namelist()
    assert any(n.endswith(".pth") for n in names)  # points at the checkout
    pth = next(n for n in names if n.endswith(".pth"))
    assert str(checkout) in zipfile.ZipFile(tmp_path / "editable" / name).read(pth).decode() or any(
        "finder" in n for n in names)
