"""The training run directory (docs/ARCHITECTURE.md): names, reading, checks; the one reader of runs.

Writers: :mod:`kws_edge.training.fit`. Readers, all through :class:`RunDir`: ``kws-convert``, the
pipeline, distillation, ``kws evaluate``, the recipes. Everything here is TensorFlow-free except
:meth:`RunDir.load_keras_model` / :meth:`RunDir.load_inference_model`.
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
    "REQUIRED_FILES",
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
#: what a finished run must hold for kws-convert
REQUIRED_FILES = (RUN_JSON, CONFIG_JSON, MODEL_KERAS, NORMALIZATION_JSON, f"{ARRAYS}/representative.npz",
                  f"{ARRAYS}/test.npz")


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

    def require_complete(self, *, reader: str = "kws-edge") -> "RunDir":
        """The run, checked: a directory with a ``run.json`` of this format whose status is "complete".

        ``reader`` names the command in the format message (``kws-convert reads 1``).
        """
        if not self.path.exists():
            raise RunError(f"run directory {self.path} does not exist; train one with kws-train --out {self.path}")
        if not self.path.is_dir():
            raise RunError(f"{self.path} is not a directory; pass the directory kws-train wrote")
        if not (self.path / RUN_JSON).is_file():
            raise RunError(f"{self.path} is not a kws-train run directory (it has no {RUN_JSON})")
        run = self.run
        if not isinstance(run, dict):
            raise RunError(f"{self.path / RUN_JSON} must hold a JSON object; re-run kws-train")
        version = run.get("format_version")
        if version != FORMAT_VERSION or isinstance(version, bool):
            hint = ("upgrade kws-edge to read it" if isinstance(version, int) and version > FORMAT_VERSION
                    else "re-train it with this version of kws-train")
            raise RunError(f"run {self.path} has format_version {version!r} but this {reader} reads "
                           f"{FORMAT_VERSION}; {hint}")
        if run.get("status") != "complete":
            raise RunError(f"run {self.path} is {run.get('status', 'incomplete')!r}, not 'complete' (training was "
                           "interrupted or failed); re-run kws-train")
        return self

    def require_files(self, names: tuple[str, ...] = REQUIRED_FILES) -> "RunDir":
        """Raise ``RunError`` naming the files of ``names`` the run lacks."""
        missing = [name for name in names if not (self.path / name).is_file()]
        if missing:
            raise RunError(f"run {self.path} is incomplete: {', '.join(missing)} missing; re-run kws-train")
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

    def summary(self) -> dict[str, Any]:
        """``training_summary.json``: timings, feature-cache statistics, sample counts, parameter count."""
        return _read_json(self.path / SUMMARY_JSON)

    def arrays(self, name: str, *, features: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """``(x float32, y int64)`` of ``arrays/<name>.npz`` (representative, validation, test).

        With ``features`` (an :class:`~kws_edge.features.MfccConfig`) the shape is checked against it.
        """
        path = self.path / ARRAYS / f"{name}.npz"
        try:
            with np.load(path) as data:
                x, y = np.asarray(data["x"], np.float32), np.asarray(data["y"], np.int64)
        except FileNotFoundError:
            raise RunError(f"{path} is missing; the run is incomplete") from None
        except (KeyError, ValueError, OSError) as exc:
            raise RunError(f"{path} is unreadable or lacks x/y arrays ({exc}); re-run kws-train") from None
        if features is not None:
            want = (features.frames_per_clip, features.n_cepstra)
            if x.ndim != 3 or tuple(x.shape[1:]) != want or len(y) != len(x):
                raise RunError(
                    f"{path} holds x {list(x.shape)} / y {list(y.shape)}, expected (N, {want[0]}, {want[1]}) "
                    "features and N labels from the run's feature settings; re-run kws-train"
                )
        return x, y

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
