"""Knowledge distillation: train a small model on the averaged predictions of finished runs.

``distill_from`` in :class:`~kws_edge.training.config.TrainConfig` names the
run directories of one or more *teachers* (finished ``kws-train`` runs of the
same labels and features, any architecture and size). For every training
example the student sees, each teacher scores the very same input (the same
augmented copy, the same SpecAugment masks) and the student learns from

    (1 - distill_weight) * CE(label, student)
      + distill_weight * T^2 * CE(teacher_T, student_T)

where ``teacher_T`` is the teachers' mean of ``softmax(log p / T)`` and
``student_T = softmax(log q / T)`` with ``T = distill_temperature`` (Hinton et
al. 2015; the ``T^2`` keeps the soft term's gradient scale independent of
``T``). Recomputing a softmax of log-probabilities at temperature ``T`` is the
same as a softmax of the logits at ``T``, so the models keep their softmax
output and nothing changes in conversion or the runtime.

The student's targets are packed as one float array per example: the integer
label in column 0, the tempered teacher distribution after it
(:func:`pack_targets`); :func:`distillation_loss` and :func:`packed_accuracy`
read that layout. A teacher must not have trained on what the student is
measured on: :func:`load_teachers` refuses one whose training split holds a
file of the student's validation or test split (by content hash) or that did
not hold out every word the student holds out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..features import Normalization
from ..portable import portable_path
from .config import TrainConfig
from .dataset import DatasetIndex
from .tf_import import import_keras

__all__ = ["Teachers", "load_teachers", "pack_targets", "distillation_loss", "packed_accuracy"]

#: the teacher settings that must equal the student's (the same inputs and outputs)
_MUST_MATCH = ("labels", "keywords", "features")

_PREDICT_BATCH = 1024


@dataclass
class _Teacher:
    path: Path
    model: Any  # keras.Model
    normalization: Normalization
    info: dict[str, Any]


class Teachers:
    """Finished runs whose mean tempered prediction the student learns from."""

    def __init__(self, teachers: list[_Teacher], temperature: float) -> None:
        self._teachers = teachers
        self.temperature = float(temperature)

    def __len__(self) -> int:
        return len(self._teachers)

    def describe(self) -> list[dict[str, Any]]:
        """What the run records about each teacher (path, hashes, seed, architecture, its validation accuracy)."""
        return [dict(t.info) for t in self._teachers]

    def soft_targets(self, x_normalized: np.ndarray, student_norm: Normalization) -> np.ndarray:
        """Mean over teachers of ``softmax(log p / T)`` for features normalised with the student's statistics.

        Each teacher gets the same features under its own normalisation (the map is affine, so SpecAugment's
        masks, filled with the student's mean, become the teacher's value for that mean).
        """
        raw = x_normalized * np.asarray(student_norm.std, np.float32) + np.asarray(student_norm.mean, np.float32)
        tempered = [_temper(np.asarray(t.model.predict(t.normalization.apply(raw), batch_size=_PREDICT_BATCH,
                                                       verbose=0), np.float64), self.temperature)
                    for t in self._teachers]
        return np.mean(tempered, axis=0).astype(np.float32)


def _temper(probs: np.ndarray, temperature: float) -> np.ndarray:
    logits = np.log(np.clip(probs, 1e-7, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)


def load_teachers(config: TrainConfig, index: DatasetIndex) -> Teachers | None:
    """The teachers of ``config.distill_from`` for a student on ``index`` (None if there are none).

    ``ConfigError`` for a teacher with other labels or features, one that trained on a file of the
    student's validation or test split, or one that did not hold out the student's ``exclude_words``;
    ``RunError`` for a missing or unfinished run.
    """
    if not config.distill_from:
        return None
    keras = import_keras()

    from ..config import to_dict
    from .rundir import open_run

    measured_on = {c.sha256 for c in index.clips if c.split in ("validation", "test") and not c.is_silence}
    teachers = []
    for name in config.distill_from:
        path = Path(name).expanduser()
        run = open_run(path)  # RunError: missing or unfinished run
        theirs = run.config()
        for key in _MUST_MATCH:
            if getattr(theirs, key) != getattr(config, key):
                raise ConfigError(f"distillation teacher {path} was trained with a different {key} "
                                  f"({to_dict(getattr(theirs, key))!r} against {to_dict(getattr(config, key))!r}); "
                                  "retrain it with the student's settings or leave it out of distill_from")
        missing = sorted(set(config.exclude_words) - set(theirs.exclude_words))
        if missing:
            raise ConfigError(f"distillation teacher {path} trained on {', '.join(missing)}, which this run holds "
                              "out (exclude_words): its predictions would leak the held-out words")
        seen = [f for f in run.data_manifest()["files"] if f["split"] == "train" and f["sha256"] in measured_on]
        if seen:
            raise ConfigError(f"distillation teacher {path} trained on {len(seen)} clips of this run's validation "
                              f"or test split (e.g. {seen[0]['path']}); use a teacher trained with the same split "
                              "settings on the same data")
        info = run.run
        teachers.append(_Teacher(
            path=path, model=keras.saving.load_model(path / "model.keras", compile=False),
            normalization=run.normalization(),
            info={"path": portable_path(path), "architecture": theirs.model.architecture, "width": theirs.model.width,
                  "seed": theirs.seed, "config_sha256": info.get("config_sha256", ""),
                  "data_sha256": info.get("data_sha256", ""), "git_commit": info.get("git_commit", ""),
                  "validation_accuracy": run.metrics()["validation"]["accuracy"]}))
    return Teachers(teachers, config.distill_temperature)


def pack_targets(labels: np.ndarray, soft: np.ndarray) -> np.ndarray:
    """``[label, soft_0, ..., soft_{n-1}]`` per example, float32 (the layout the loss and metric read)."""
    labels = np.asarray(labels).reshape(-1, 1).astype(np.float32)
    if len(labels) != len(soft):
        raise ValueError(f"{len(labels)} labels for {len(soft)} soft targets")
    return np.concatenate([labels, np.asarray(soft, np.float32)], axis=1)


def distillation_loss(n_labels: int, weight: float, temperature: float, tf, keras):  # noqa: ANN001
    """The Keras loss for :func:`pack_targets` targets and softmax outputs (formula in the module docstring)."""
    w, t = float(weight), float(temperature)

    def distillation_crossentropy(y_true, y_pred):
        label = tf.cast(y_true[:, 0], tf.int32)
        teacher = y_true[:, 1:]
        log_q = tf.math.log(tf.clip_by_value(y_pred, 1e-7, 1.0))
        hard = -tf.reduce_sum(tf.one_hot(label, n_labels) * log_q, axis=-1)
        soft = -tf.reduce_sum(teacher * tf.nn.log_softmax(log_q / t, axis=-1), axis=-1) * (t * t)
        return (1.0 - w) * hard + w * soft

    return distillation_crossentropy


def packed_accuracy(tf):  # noqa: ANN001
    """Accuracy against column 0 of packed targets, named ``accuracy`` so run histories keep their keys."""

    def accuracy(y_true, y_pred):
        label = tf.cast(y_true[:, 0], tf.int64)
        return tf.cast(tf.equal(tf.argmax(y_pred, axis=-1), label), tf.float32)

    return accuracy
