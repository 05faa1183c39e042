"""The training run directory (docs/ARCHITECTURE.md): names, reading, checks.

Writers: :mod:`kws_edge.training.fit`. Readers: ``kws-convert``, the pipeline,
the registry, ``kws evaluate``. Everything here is TensorFlow-free except
:func:`load_keras_model` / :func:`load_inference_model`.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config import from_dict
from ..errors import ConfigError, RunError
from ..features import Normalization
from .config import TrainConfig
from .tf_import import import_keras

__all__ = [
    "FORMAT_VERSION",
    "RUN_JSON",
    "RunDir",
    "open_run",
    "prepare_run_dir",
    "check_run_dir",
]

FORMAT_VERSION = 1
RUN_JSON = "run.json"
CONFIG_JSON = "config.json"
DATA_MANIFEST_JSON = "data_manifest.json"
MODEL_KERAS = "model.keras"
NORMALIZATION_JSON = "normalization.json"
HISTORY_JSON = "history.json"
METRICS_JSON = "metrics.json"
SUMMARY_JSON = "training_summary.json"
ARRAYS = "arrays"
PLOTS = "plots"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(f"{path} is missing; the run directory is incomplete or not a kws-train run") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunError(f"{path} is not valid JSON ({exc}); re-run kws-train") from None


@dataclass(frozen=True)
class RunDir:
    """A training run directory on disk."""

    path: Path

    @property
    def run(self) -> dict[str, Any]:
        return _read_json(self.path / RUN_JSON)

    @property
    def status(self) -> str:
        return str(self.run.get("status", "incomplete"))

    @property
    def is_complete(self) -> bool:
        return (self.path / RUN_JSON).is_file() and self.status == "complete"

    def require_complete(self) -> "RunDir":
        if not self.path.is_dir():
            raise RunError(f"run directory {self.path} does not exist; train one with kws-train --out {self.path}")
        if not (self.path / RUN_JSON).is_file():
            raise RunError(f"{self.path} is not a kws-train run directory (no {RUN_JSON})")
        if self.status != "complete":
            raise RunError(f"run {self.path} is {self.status!r} (interrupted or failed); re-run kws-train")
        return self

    def config(self) -> TrainConfig:
        try:
            return from_dict(TrainConfig, _read_json(self.path / CONFIG_JSON))
        except ConfigError as exc:
            raise RunError(f"{self.path / CONFIG_JSON} is invalid: {exc}") from None

    def normalization(self) -> Normalization:
        try:
            return from_dict(Normalization, _read_json(self.path / NORMALIZATION_JSON))
        except ConfigError as exc:
            raise RunError(f"{self.path / NORMALIZATION_JSON} is invalid: {exc}") from None

    def metrics(self) -> dict[str, Any]:
        return _read_json(self.path / METRICS_JSON)

    def data_manifest(self) -> dict[str, Any]:
        return _read_json(self.path / DATA_MANIFEST_JSON)

    def history(self) -> dict[str, Any]:
        return _read_json(self.path / HISTORY_JSON)

    def arrays(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(x, y)`` of ``arrays/<name>.npz`` (representative, validation, test)."""
        path = self.path / ARRAYS / f"{name}.npz"
        try:
            with np.load(path) as data:
                return data["x"], data["y"]
        except FileNotFoundError:
            raise RunError(f"{path} is missing; the run is incomplete") from None

    def load_keras_model(self):
        """The float Keras model (dynamic batch); imports TensorFlow."""
        keras = import_keras()

        path = self.path / MODEL_KERAS
        if not path.is_file():
            raise RunError(f"{path} is missing; the run is incomplete")
        return keras.saving.load_model(path, compile=False)

    def load_inference_model(self):
        """Batch-1 clone of the trained model, for conversion; imports TensorFlow."""
        from .models import inference_clone

        return inference_clone(self.load_keras_model(), self.config().model)


def open_run(path: str | Path, *, require_complete: bool = True) -> RunDir:
    run = RunDir(Path(path))
    return run.require_complete() if require_complete else run


def check_run_dir(path: str | Path, *, overwrite: bool) -> None:
    """Raise ``RunError`` if ``path`` cannot receive a new run (see :func:`prepare_run_dir`); changes nothing."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise RunError(f"--out {path} is a file; choose a directory")
    if path.is_dir() and any(path.iterdir()):
        if not (path / RUN_JSON).is_file():
            raise RunError(f"{path} is not empty and is not a kws-train run directory; choose another --out")
        if RunDir(path).is_complete and not overwrite:
            raise RunError(f"{path} already holds a finished run; pass --overwrite to replace it, "
                           "or choose another --out")


def prepare_run_dir(path: str | Path, *, overwrite: bool, run_json: dict[str, Any]) -> RunDir:
    """Make ``path`` a fresh run directory holding only ``run_json`` (status "incomplete").

    A finished run is refused unless ``overwrite``; an interrupted
    (incomplete) run is replaced without asking; a non-empty folder that is
    not a run directory is refused. ``run.json`` is rewritten first, so the
    old run never looks complete while its files are being removed.
    """
    from ..atomic import atomic_write_json

    check_run_dir(path, overwrite=overwrite)

    path = Path(path).expanduser()
    if path.is_dir() and any(path.iterdir()):
        atomic_write_json(path / RUN_JSON, run_json)
        for child in path.iterdir():
            if child.name == RUN_JSON:
                continue
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
    path.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path / RUN_JSON, run_json)
    return RunDir(path)
