"""Scale-out training on TensorFlow's own distribution engine (``tf.distribute``).

Strategies (``kws-train --strategy``):

* ``default``: no distribution; ``model.fit`` on NumPy arrays exactly as before.
* ``mirrored``: :class:`tf.distribute.MirroredStrategy` over the local devices
  (several GPUs; on a CPU-only host it is one replica and only useful to check a
  recipe).
* ``multiworker``: :class:`tf.distribute.MultiWorkerMirroredStrategy` across
  processes or machines, configured the standard way by the ``TF_CONFIG``
  environment variable (one per worker, same ``cluster``, own ``task``). Without
  ``TF_CONFIG`` it is a one-worker cluster, which trains the same batches as a
  two-worker one (the reference a multi-worker run is compared with).

What a distributed run does (everything here is TensorFlow's, nothing home-made):

* The strategy is created first, before any other TensorFlow call (a
  requirement of ``MultiWorkerMirroredStrategy``).
* Every worker builds the same features (the clean ones from the local,
  content-keyed feature cache; see :mod:`kws_edge.training.featurize`) and the
  same seeded ``tf.data`` pipeline: shuffle with the config seed, batch with the
  *global* batch (``config.batch_size``, remainder dropped), then
  ``strategy.experimental_distribute_dataset`` with auto-shard policy ``DATA``:
  each global batch is split into per-replica batches and every worker keeps its
  own share, so the union of one step's shards is the global batch a single
  worker would see. Gradients are all-reduced (sum of per-replica means scaled
  by 1/replicas, i.e. the global-batch mean).
* Checkpoints: :class:`keras.callbacks.BackupAndRestore` writes the weights,
  optimizer state and epoch at the end of every epoch into a per-worker folder
  (``<out>.backup/<task>-<index>/``, outside the run directory, which a restart
  wipes). A restarted run (all workers restarted, as ``MultiWorkerMirroredStrategy``
  needs) resumes at the saved epoch; the folder is removed when fit ends.
* Only the chief (task ``chief``, or ``worker`` 0 when the cluster has no chief)
  writes the run directory. Other workers write into a temporary directory that
  is removed when they finish (the documented multi-worker saving pattern).
* After fit, every worker copies the weights into a plain, undistributed model
  for saving and evaluation, so nothing after training needs collectives.

Known limits: each worker resumes from its own backup, so a worker killed in
the few milliseconds between two workers' end-of-epoch saves can leave backups
one epoch apart, and the restarted cluster then fails (TODO: agree on the
smallest saved epoch with a collective before fit). A chief that fails before
training (e.g. a finished --out without --overwrite) leaves the other workers
waiting until the coordination heartbeat times out (``HEARTBEAT_TIMEOUT_S``).
The training arrays are held in memory on every worker. BatchNorm statistics
are per replica and dropout masks are drawn per replica, so models with BatchNorm or dropout match a one-worker run only
statistically; without them (e.g. ``tiny_conv`` with ``dropout = 0``) they match
within float summation order (tests/training/test_distribute_multiworker.py).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from .tf_import import import_keras, import_tensorflow

__all__ = [
    "STRATEGIES",
    "Distribution",
    "WorkerRole",
    "backup_dir_for",
    "parse_tf_config",
    "setup_distribution",
    "worker_role",
]

STRATEGIES = ("default", "mirrored", "multiworker")
_WORKER_TYPES = ("chief", "worker")
#: how long the coordination service waits for a worker's heartbeat before failing the cluster
#: (TensorFlow's default is 10 s, which a busy machine can miss while tracing; a dead worker is
#: still detected, just later)
HEARTBEAT_TIMEOUT_S = 120
_ADDRESS = re.compile(r"^\[?[A-Za-z0-9_.:\-]+\]?:(\d{1,5})$")


@dataclass(frozen=True)
class WorkerRole:
    """This process's place in the cluster (``TF_CONFIG``), or a one-worker cluster."""

    task_type: str = "worker"
    task_index: int = 0
    num_workers: int = 1
    is_chief: bool = True
    addresses: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.task_type}-{self.task_index}"

    def to_dict(self) -> dict[str, Any]:
        return {"task_type": self.task_type, "task_index": self.task_index, "num_workers": self.num_workers,
                "is_chief": self.is_chief}


def parse_tf_config(text: str | None) -> WorkerRole | None:
    """Validate a ``TF_CONFIG`` value and return this worker's role; ``None`` when unset or empty.

    Accepts the cluster keys ``chief`` (at most one address) and ``worker``;
    ``ps`` and ``evaluator`` (parameter-server training, side-car evaluation)
    are refused with a ConfigError, as is anything malformed.
    """
    if text is None or not text.strip():
        return None
    try:
        cfg = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"TF_CONFIG is not valid JSON ({exc.msg} at character {exc.pos}); expected "
                          '{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": 0}}') \
            from None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("cluster"), dict) or not isinstance(cfg.get("task"), dict):
        raise ConfigError('TF_CONFIG needs a "cluster" object and a "task" object, e.g. {"cluster": {"worker": '
                          '["w0:2222", "w1:2222"]}, "task": {"type": "worker", "index": 0}}')
    cluster, task = cfg["cluster"], cfg["task"]
    extra = sorted(set(cluster) - set(_WORKER_TYPES))
    if extra:
        raise ConfigError(f"TF_CONFIG cluster has {extra[0]!r} jobs; kws-train --strategy multiworker supports only "
                          "'chief' and 'worker' (synchronous data-parallel training)")
    jobs: dict[str, list[str]] = {}
    for job in _WORKER_TYPES:
        addrs = cluster.get(job, [])
        if not isinstance(addrs, list) or not all(isinstance(a, str) for a in addrs):
            raise ConfigError(f"TF_CONFIG cluster.{job} must be a list of 'host:port' strings")
        for a in addrs:
            m = _ADDRESS.match(a)
            if not m or not 0 < int(m.group(1)) < 65536:
                raise ConfigError(f"TF_CONFIG cluster.{job} address {a!r} is not 'host:port' with a port in 1..65535")
        jobs[job] = addrs
    if len(jobs["chief"]) > 1:
        raise ConfigError(f"TF_CONFIG cluster.chief has {len(jobs['chief'])} addresses; it may have at most one")
    everyone = jobs["chief"] + jobs["worker"]
    if not everyone:
        raise ConfigError("TF_CONFIG cluster lists no workers; give cluster.worker a list of 'host:port'")
    dupes = sorted({a for a in everyone if everyone.count(a) > 1})
    if dupes:
        raise ConfigError(f"TF_CONFIG cluster lists {dupes[0]!r} twice; every task needs its own host:port")
    ttype, index = task.get("type"), task.get("index", 0)
    if ttype not in _WORKER_TYPES:
        raise ConfigError(f"TF_CONFIG task.type is {ttype!r}; expected 'chief' or 'worker'")
    if isinstance(index, bool) or not isinstance(index, int):
        raise ConfigError(f"TF_CONFIG task.index must be an integer, got {index!r}")
    if not 0 <= index < len(jobs[ttype]):
        raise ConfigError(f"TF_CONFIG task {ttype}:{index} is not in the cluster, which has {len(jobs[ttype])} "
                          f"{ttype} address(es); indices start at 0")
    is_chief = ttype == "chief" or (not jobs["chief"] and index == 0)
    return WorkerRole(task_type=ttype, task_index=index, num_workers=len(everyone), is_chief=is_chief,
                      addresses=tuple(everyone))


def worker_role(strategy: str, environ: Mapping[str, str] | None = None) -> WorkerRole:
    """The role of this process for ``strategy``; raises ConfigError for a strategy/TF_CONFIG mismatch."""
    if strategy not in STRATEGIES:
        raise ConfigError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    env = os.environ if environ is None else environ
    role = parse_tf_config(env.get("TF_CONFIG"))
    if strategy != "multiworker":
        if role is not None and role.num_workers > 1:
            raise ConfigError(f"TF_CONFIG describes a {role.num_workers}-worker cluster but --strategy is "
                              f"{strategy!r}; use --strategy multiworker (or unset TF_CONFIG)")
        return WorkerRole()
    return role or WorkerRole()


def backup_dir_for(out_dir: str | Path, role: WorkerRole) -> Path:
    """Per-worker BackupAndRestore folder: ``<out>.backup/<task>-<index>`` (survives the run dir being reset)."""
    out = Path(out_dir).expanduser().absolute()
    return out.parent / f"{out.name}.backup" / role.name


class Distribution:
    """A strategy and what a run needs from it: scope, input pipeline, checkpoints, the write directory.

    Build it with :func:`setup_distribution` at the very start of a run.
    """

    def __init__(self, name: str, role: WorkerRole, strategy: Any | None) -> None:
        self.name = name
        self.role = role
        self.strategy = strategy
        self._scratch: Path | None = None
        #: the run directory the user asked for (set by :meth:`write_dir`); backups live next to it
        self.out_dir: Path | None = None

    @property
    def is_default(self) -> bool:
        return self.name == "default"

    @property
    def is_chief(self) -> bool:
        return self.role.is_chief

    @property
    def num_replicas(self) -> int:
        return 1 if self.strategy is None else int(self.strategy.num_replicas_in_sync)

    def describe(self) -> dict[str, Any]:
        """For ``training_summary.json``."""
        return {"strategy": self.name, "num_replicas_in_sync": self.num_replicas, **self.role.to_dict()}

    # -- where this worker writes ----------------------------------------------------------------

    def write_dir(self, out_dir: str | Path) -> Path:
        """``out_dir`` on the chief; a fresh temporary directory on any other worker (see :meth:`cleanup`)."""
        self.out_dir = Path(out_dir)
        if self.is_chief:
            return Path(out_dir)
        if self._scratch is None:
            self._scratch = Path(tempfile.mkdtemp(prefix=f"kws-train-{self.role.name}-"))
        return self._scratch / "run"

    def cleanup(self) -> None:
        """Remove a non-chief worker's temporary directory (no-op on the chief)."""
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    # -- training ----------------------------------------------------------------------------------

    def scope(self):
        import contextlib

        return contextlib.nullcontext() if self.strategy is None else self.strategy.scope()

    def check_batch(self, global_batch_size: int, n_examples: int) -> None:
        if global_batch_size % self.num_replicas:
            raise ConfigError(f"batch_size={global_batch_size} is the global batch and must be divisible by the "
                              f"{self.num_replicas} replicas of strategy {self.name!r}")
        if n_examples < global_batch_size:
            raise ConfigError(f"only {n_examples} training examples for a global batch of {global_batch_size}; "
                              "lower batch_size (distributed training drops the last partial batch)")

    def dataset(self, x: np.ndarray, y: np.ndarray, *, global_batch_size: int, seed: int,
                class_weight: Mapping[int, float] | None = None):
        """Seeded shuffle, global batches (remainder dropped), distributed with auto-shard policy DATA.

        ``class_weight`` becomes a per-example sample weight (what Keras does
        with ``class_weight`` for arrays), so weighted losses stay exact.
        """
        tf = import_tensorflow("training")
        self.check_batch(global_batch_size, len(x))
        if class_weight:
            w = np.array([class_weight.get(int(c), 1.0) for c in y], np.float32)
            ds = tf.data.Dataset.from_tensor_slices((x, y, w))
        else:
            ds = tf.data.Dataset.from_tensor_slices((x, y))
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
        ds = ds.batch(global_batch_size, drop_remainder=True).prefetch(2)
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        options.deterministic = True
        ds = ds.with_options(options)
        return self.strategy.experimental_distribute_dataset(ds)

    def _backup_dir(self) -> Path:
        if self.out_dir is None:
            raise RuntimeError("call write_dir(out_dir) first")
        return backup_dir_for(self.out_dir, self.role)

    def callbacks(self) -> list:
        """``BackupAndRestore`` into this worker's own folder, :func:`backup_dir_for` the requested run dir.

        (Also on non-chief workers, whose temporary write directory does not
        survive a restart.) Keras removes the folder when fit completes.
        """
        keras = import_keras()

        return [keras.callbacks.BackupAndRestore(str(self._backup_dir()), save_freq="epoch",
                                                 double_checkpoint=True)]

    def saved_epoch(self) -> int:
        """Epochs already done according to this worker's backup (0 = a fresh start)."""
        meta = self._backup_dir() / "training_metadata.json"
        try:
            return int(json.loads(meta.read_text(encoding="utf-8"))["epoch"])
        except (OSError, ValueError, KeyError, TypeError):
            return 0

    def fit(self, model, x: np.ndarray, y: np.ndarray, *, global_batch_size: int, seed: int, epochs: int,
            validation_data, callbacks: list, class_weight: Mapping[int, float] | None = None):
        """``model.fit`` on :meth:`dataset` with :meth:`callbacks`; ``model`` was built and compiled in :meth:`scope`.

        Two work-arounds for Keras 3 (3.15) with MultiWorkerMirroredStrategy
        (keras-team/keras#20585, tensorflow/tensorflow#72388), whose ``fit``
        otherwise fails in multi-worker mode: (1) Keras' eager "symbolic build"
        calls ``strategy.reduce`` on a per-replica batch, which multi-worker
        mode cannot convert; it is skipped by clearing the model's captured
        strategy and calling fit inside ``strategy.scope()`` (Keras then takes
        the strategy from the scope and builds while tracing, as it does
        without a strategy); the optimizer is built in the scope first.
        (2) Keras reduces each step's logs with ``strategy.reduce("MEAN", v,
        axis=0)``, which fails on scalar metrics; the step functions return
        them with shape (1,), so the reduction is the mean over replicas (the
        global-batch mean: every replica has the same per-replica batch).
        """
        data = self.dataset(x, y, global_batch_size=global_batch_size, seed=seed, class_weight=class_weight)
        with self.scope():
            model.optimizer.build(model.trainable_variables)
        if self.name == "multiworker":
            model._distribute_strategy = None  # work-around (1), see above
            if self.role.num_workers > 1:  # work-around (2)
                for name in ("train_step", "test_step"):
                    setattr(model, name, _logs_as_vectors(getattr(model, name)))
        with self.scope():
            history = model.fit(data, epochs=epochs, validation_data=validation_data, verbose=0, shuffle=False,
                                callbacks=list(callbacks) + self.callbacks())  # the dataset shuffles
        try:  # Keras removed this worker's backup folder; drop the shared parent once it is empty
            self._backup_dir().parent.rmdir()
        except OSError:
            pass
        return history

    @staticmethod
    def local_copy(model, build):
        """The trained weights in a plain (undistributed) model from ``build()``, for saving and evaluation."""
        plain = build()
        plain.set_weights([np.asarray(w) for w in model.get_weights()])
        return plain


def _logs_as_vectors(step):
    """Wrap a Keras step function so its logs have shape (1,) (see :meth:`Distribution.fit`)."""
    tf = import_tensorflow("training")

    def wrapped(data):
        return tf.nest.map_structure(lambda v: tf.reshape(v, [1]), step(data))

    return wrapped


def setup_distribution(strategy: str = "default") -> Distribution:
    """Validate ``strategy`` against ``TF_CONFIG`` and create the ``tf.distribute`` strategy.

    Call this before any other TensorFlow work in the process. ``default``
    imports nothing. Raises ConfigError for a bad strategy or ``TF_CONFIG``,
    BackendUnavailableError without TensorFlow.
    """
    role = worker_role(strategy)  # TensorFlow itself reads os.environ["TF_CONFIG"]
    if strategy == "default":
        return Distribution(strategy, role, None)
    tf = import_tensorflow("training")
    if strategy == "mirrored":
        return Distribution(strategy, role, tf.distribute.MirroredStrategy())
    options = tf.distribute.experimental.CommunicationOptions(
        implementation=tf.distribute.experimental.CommunicationImplementation.RING)
    if role.num_workers > 1:
        _configure_coordination(tf, role)
    try:
        strat = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    except (RuntimeError, ValueError) as exc:
        raise ConfigError(f"cannot start MultiWorkerMirroredStrategy as {role.name} of {role.num_workers} "
                          f"({exc}); check TF_CONFIG and that this process is the first to use TensorFlow") from None
    return Distribution(strategy, role, strat)


def _configure_coordination(tf, role: WorkerRole) -> None:
    """Configure TensorFlow's coordination service as MultiWorkerMirroredStrategy would, with a longer heartbeat.

    Uses the same (internal) call the strategy makes when the service is not
    configured yet; if that API moves, the strategy's own defaults apply.
    """
    try:
        from tensorflow.core.protobuf import coordination_config_pb2
        from tensorflow.python.eager import context

        jobs = {}
        cluster = json.loads(os.environ["TF_CONFIG"])["cluster"]
        for job in _WORKER_TYPES:
            if cluster.get(job):
                jobs[job] = len(cluster[job])
        leader = "/job:chief/replica:0/task:0" if "chief" in jobs else "/job:worker/replica:0/task:0"
        if context.context().coordination_service is None:
            context.context().configure_coordination_service(
                service_type="standalone", service_leader=leader,
                heartbeat_timeout_in_ms=HEARTBEAT_TIMEOUT_S * 1000,
                coordinated_jobs=[coordination_config_pb2.CoordinatedJob(name=j, num_tasks=n) for j, n in jobs.items()])
    except (ImportError, AttributeError, TypeError, KeyError, ValueError):  # pragma: no cover - TF internals moved
        return
