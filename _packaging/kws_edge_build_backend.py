"""In-tree PEP 517 backend: setuptools, but a wheel or sdist is built from a temporary copy of the tree.

setuptools writes ``build/`` and ``kws_edge.egg-info/`` next to ``pyproject.toml``, and since
pip 21.3 builds in place, ``pip install .`` from a checkout left both in the source tree (stale
egg-info then shadows the real metadata). Here every non-editable hook runs in a copy of the
project in a temporary folder, which is deleted afterwards; the source tree is only read.
Editable installs (``pip install -e .``, used by examples/setup.sh) must point at the source
tree, so they go straight to setuptools.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from setuptools import build_meta as _setuptools

#: never copied: version control, virtualenvs, build outputs, caches and run outputs
_IGNORED = (".git", ".venv", "venv", "build", "dist", "*.egg-info", "__pycache__", "*.pyc", ".pytest_cache",
            ".benchmarks", "runs", "out", "artifacts", ".kws-cache", "mlruns", "mlartifacts", "mlflow.db",
            "node_modules")


@contextlib.contextmanager
def _in_copy():
    source = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="kws-edge-build-") as tmp:
        copy = Path(tmp) / source.name
        shutil.copytree(source, copy, ignore=shutil.ignore_patterns(*_IGNORED), symlinks=True)
        os.chdir(copy)
        try:
            yield
        finally:
            os.chdir(source)


def _abs(directory: str) -> str:
    return str(Path(directory).resolve())


def get_requires_for_build_wheel(config_settings=None):
    with _in_copy():
        return _setuptools.get_requires_for_build_wheel(config_settings)


def get_requires_for_build_sdist(config_settings=None):
    with _in_copy():
        return _setuptools.get_requires_for_build_sdist(config_settings)


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    metadata_directory = _abs(metadata_directory)
    with _in_copy():
        return _setuptools.prepare_metadata_for_build_wheel(metadata_directory, config_settings)


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    wheel_directory = _abs(wheel_directory)
    metadata_directory = _abs(metadata_directory) if metadata_directory else None
    with _in_copy():
        return _setuptools.build_wheel(wheel_directory, config_settings, metadata_directory)


def build_sdist(sdist_directory, config_settings=None):
    sdist_directory = _abs(sdist_directory)
    with _in_copy():
        return _setuptools.build_sdist(sdist_directory, config_settings)


# editable installs: in place, as setuptools does them
get_requires_for_build_editable = _setuptools.get_requires_for_build_editable
prepare_metadata_for_build_editable = _setuptools.prepare_metadata_for_build_editable
build_editable = _setuptools.build_editable
