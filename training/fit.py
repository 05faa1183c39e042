"""Train a model and write a run directory (the contract in docs/ARCHITECTURE.md).

:func:`train` does, in order: write ``run.json`` with status "incomplete" and
the resolved ``config.json``; make or find the data (the synthetic set is
generated into its cache); index it and write ``data_manifest.json``; compute
features (clean ones cached, augmented copies seeded); fit the normalisation
on clean training features; write the feature arrays; train deterministically
(``keras.utils.set_random_seed`` + ``tf.config.experimental.enable_op_determinism``);
write the model, history, metrics and plots; and only then set ``run.json`` to
"complete". Ctrl-C (or any error) at any point leaves "incomplete".

Extra file (beyond the contract): ``training_summary.json`` with timings,
feature-cache statistics, sample counts, parameter count and versions.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..atomic import atomic_write_bytes, atomic_write_json
from ..config import config_hash, to_dict
from ..features import Normalization
from ..portable import portable_json, portable_path
from ..stamps import git_commit, utc_now
from . import rundir as rd
from .augment import spec_augment
from .config import SILENCE_LABEL, UNKNOWN_LABEL, TrainConfig
from .dataset import DatasetIndex, index_dataset
from .featurize import FeatureStats, augmented_features, clean_features
from ..metrics import clip_metrics
from .tf_import import import_keras, import_tensorflow

__all__ = ["train", "Progress", "resolve_data"]

#: ``progress(stage, done, total)``; stages: synthesize, features, augment, epoch
Progress = Callable[[str, int, int], None]


def resolve_data(config: TrainConfig, progress: Progress | None = None) -> Path | tuple[Path, ...]:
    """The dataset folder of ``config`` (a tuple for several), or the (cached) synthetic set."""
    if not config.is_synthetic:
        folders = tuple(Path(d).expanduser() for d in config.data_folders)
        return folders[0] if len(folders) == 1 else folders
    from .synthetic import generate_synthetic_dataset

    cb = (lambda d, t: progress("synthesize", d, t)) if progress else None
    return generate_synthetic_dataset(config.synthetic, seed=config.seed, keywords=config.keywords,
                                      sample_rate_hz=config.features.sample_rate_hz, progress=cb)


def _labels_of(clips, config: TrainConfig) -> np.ndarray:
    index = {label: i for i, label in enumerate(config.labels)}
    return np.array([index[c.label] for c in clips], np.int64)


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def _loss(config: TrainConfig, tf, keras):
    """Sparse categorical cross-entropy, with ``config.label_smoothing`` if set; focal if ``config.focal_gamma``."""
    if config.label_smoothing == 0 and config.focal_gamma == 0:
        return "sparse_categorical_crossentropy"
    n, smoothing, gamma = len(config.labels), float(config.label_smoothing), float(config.focal_gamma)

    def smoothed_sparse_categorical_crossentropy(y_true, y_pred):
        one_hot = tf.one_hot(tf.cast(tf.reshape(y_true, [-1]), tf.int32), n)
        return keras.losses.categorical_crossentropy(one_hot, y_pred, label_smoothing=smoothing)

    def sparse_categorical_focal_crossentropy(y_true, y_pred):
        one_hot = tf.one_hot(tf.cast(tf.reshape(y_true, [-1]), tf.int32), n)
        return keras.losses.categorical_focal_crossentropy(one_hot, y_pred, alpha=1.0, gamma=gamma,
                                                           label_smoothing=smoothing)

    return sparse_categorical_focal_crossentropy if gamma > 0 else smoothed_sparse_categorical_crossentropy


def _rotation(x_pool: np.ndarray, n_clips: int, pool: int, copies: int, epoch: int) -> np.ndarray:
    """Epoch ``epoch``'s ``copies`` augmented copies per clip out of a clip-major pool of ``pool`` copies."""
    idx = [(epoch * copies + j) % pool for j in range(copies)]
    return x_pool.reshape((n_clips, pool) + x_pool.shape[1:])[:, idx].reshape((-1,) + x_pool.shape[1:])


def _fit_keras(config: TrainConfig, x_train, y_train, x_val, y_val, progress: Progress | None, dist=None,
               epoch_data: Callable[[int], tuple[np.ndarray, np.ndarray]] | None = None):
    """Fit; ``epoch_data(epoch)`` (if given, default strategy only) replaces the training arrays per epoch."""
    tf = import_tensorflow("training")
    keras = import_keras()

    from .models import build_model

    keras.utils.set_random_seed(config.seed)
    tf.config.experimental.enable_op_determinism()
    fc = config.features

    def build():
        return build_model(config.model, (fc.frames_per_clip, fc.n_cepstra), len(config.labels))

    distributed = dist is not None and not dist.is_default  # see kws_edge.training.distribute
    x_last = x_train  # what the BatchNorm re-estimation after weight averaging sees: the last epoch's inputs
    with dist.scope() if distributed else contextlib.nullcontext():
        model = build()
        steps = int(np.ceil(len(x_train) / config.batch_size)) * config.epochs
        alpha = 0.02
        if config.average_last_epochs and config.averaging_lr_fraction > 0:
            # stochastic weight averaging: cosine decay before the averaging window, then a constant rate
            steps = steps * max(1, config.epochs - config.average_last_epochs) // config.epochs
            alpha = config.averaging_lr_fraction
        schedule = keras.optimizers.schedules.CosineDecay(config.learning_rate, decay_steps=max(1, steps),
                                                          alpha=alpha)
        if config.weight_decay > 0:
            optimizer = keras.optimizers.AdamW(schedule, weight_decay=config.weight_decay)
        else:
            optimizer = keras.optimizers.Adam(schedule)
        if config.distill_from:
            from .distill import distillation_loss, packed_accuracy

            model.compile(optimizer=optimizer, metrics=[packed_accuracy(tf)],
                          loss=distillation_loss(len(config.labels), config.distill_weight,
                                                 config.distill_temperature, tf, keras))
        else:
            model.compile(optimizer=optimizer, loss=_loss(config, tf, keras), metrics=["accuracy"])

    class _Report(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if progress:
                progress("epoch", epoch + 1, config.epochs)

    first_averaged_epoch = max(0, config.epochs - config.average_last_epochs)

    class _TailAverage(keras.callbacks.Callback):
        """Running sum of the trainable weights after every step of the last ``average_last_epochs`` epochs."""

        def __init__(self):
            super().__init__()
            self.epoch, self.n, self.sums = 0, 0, None

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            if self.epoch < first_averaged_epoch:
                return
            values = [np.asarray(v.numpy(), np.float64) for v in self.model.trainable_weights]
            if self.sums is None:
                self.sums = values
            else:
                for total, v in zip(self.sums, values):
                    total += v
            self.n += 1

    callbacks = [_Report()]
    averager = _TailAverage() if config.average_last_epochs > 0 else None
    if averager is not None:
        callbacks.append(averager)

    class_weight = None
    if config.negative_class_weight != 1.0:
        class_weight = {i: (config.negative_class_weight if label in (SILENCE_LABEL, UNKNOWN_LABEL) else 1.0)
                        for i, label in enumerate(config.labels)}
    if distributed:
        hist = dist.fit(model, x_train, y_train, global_batch_size=config.batch_size, seed=config.seed,
                        epochs=config.epochs, validation_data=(x_val, y_val), callbacks=callbacks,
                        class_weight=class_weight)
        model = dist.local_copy(model, build)  # saving and evaluation (and the weight average) need no collectives
    elif epoch_data is None:
        hist = model.fit(x_train, y_train, batch_size=config.batch_size, epochs=config.epochs,
                         validation_data=(x_val, y_val), shuffle=True, verbose=0, callbacks=callbacks,
                         class_weight=class_weight)
    else:
        merged: dict[str, list[float]] = {}
        for epoch in range(config.epochs):
            x_e, y_e = epoch_data(epoch)
            x_last = x_e  # kept, so the re-estimation needs no second teacher pass over the last epoch
            h = model.fit(x_e, y_e, batch_size=config.batch_size, initial_epoch=epoch, epochs=epoch + 1,
                          validation_data=(x_val, y_val), shuffle=True, verbose=0, callbacks=callbacks,
                          class_weight=class_weight)
            for k, vals in h.history.items():
                merged.setdefault(k, []).extend(vals)
        hist = None
    if averager is not None and averager.n:
        for var, total in zip(model.trainable_weights, averager.sums):
            var.assign((total / averager.n).astype(np.float32))
        recalibrate_batchnorm(model, x_last, config.batch_size, np.random.default_rng([config.seed, 11]))
    if hist is None:
        return model, {k: [float(v) for v in vals] for k, vals in merged.items()}
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    return model, history


#: at most this many training samples re-estimate the BatchNorm statistics after weight averaging
_BN_RECALIBRATION_SAMPLES = 16384


def _batchnorm_layers(layer) -> list:
    keras = import_keras()

    found = []
    for sub in getattr(layer, "layers", []):
        if isinstance(sub, keras.layers.BatchNormalization):
            found.append(sub)
        found.extend(_batchnorm_layers(sub))
    return found


def recalibrate_batchnorm(model, x: np.ndarray, batch_size: int, rng: np.random.Generator) -> int:
    """Set every BatchNorm layer's moving mean and variance to the mean of its batch statistics over ``x``.

    Forward passes in training mode (as during training: batch statistics, dropout on) over up to
    :data:`_BN_RECALIBRATION_SAMPLES` shuffled samples, with the momentum of batch ``k`` set to
    ``k / (k + 1)`` so the moving statistics become a plain average. Only the moving statistics
    change. Returns the number of batches used.
    """
    layers = _batchnorm_layers(model)
    if not layers or len(x) == 0:
        return 0
    order = rng.permutation(len(x))[:_BN_RECALIBRATION_SAMPLES]
    momenta = [layer.momentum for layer in layers]
    k = 0
    try:
        for start in range(0, len(order), batch_size):
            for layer in layers:
                layer.momentum = k / (k + 1.0)
            model(x[np.sort(order[start:start + batch_size])], training=True)
            k += 1
    finally:
        for layer, m in zip(layers, momenta):
            layer.momentum = m
    return k


def _predict(model, x: np.ndarray) -> np.ndarray:
    if len(x) == 0:
        return np.zeros(0, np.int64)
    return np.argmax(model.predict(x, batch_size=256, verbose=0), axis=-1)


def train(config: TrainConfig, out_dir: str | Path, *, overwrite: bool = False, progress: Progress | None = None,
          workers: int | None = None, feature_cache: bool = True, strategy: str = "default") -> rd.RunDir:
    """Run the whole recipe and return the run directory (see :func:`_train`).

    ``strategy`` (``default``, ``mirrored``, ``multiworker``; see
    :mod:`kws_edge.training.distribute`) is set up before anything else. With
    ``multiworker`` every worker runs this same call; only the chief writes
    ``out_dir``, the others write to a temporary directory that is removed.
    """
    from .distribute import setup_distribution

    dist = setup_distribution(strategy)  # ConfigError for a bad strategy / TF_CONFIG
    write_dir = dist.write_dir(out_dir)
    try:
        run = _train(config, write_dir, overwrite=overwrite or not dist.is_chief, progress=progress,
                     workers=workers, feature_cache=feature_cache, dist=dist)
    finally:
        dist.cleanup()
    return run if dist.is_chief else rd.RunDir(Path(out_dir).expanduser())


def _train(config: TrainConfig, out_dir: str | Path, *, overwrite: bool = False, progress: Progress | None = None,
           workers: int | None = None, feature_cache: bool = True, dist=None) -> rd.RunDir:
    """Run the whole recipe and return the complete run directory.

    Raises ``RunError`` (finished run without ``overwrite``), ``DataError``
    (missing or unusable data), ``ConfigError``; ``KeyboardInterrupt``
    propagates and leaves the run "incomplete".
    """
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    # config.json as written: no path of this machine (data folders and teachers given as absolute paths
    # are recorded by name, as in every run file), and the run's config hash is that file's
    config_json = portable_json(to_dict(config))
    run_info: dict[str, Any] = {
        "format_version": rd.FORMAT_VERSION, "status": "incomplete", "kws_edge_version": __version__,
        "git_commit": git_commit(), "started_utc": utc_now(), "finished_utc": "", "seed": config.seed,
        "config_sha256": config_hash(config_json), "data_sha256": "",
    }
    # check the model name before touching anything on disk
    from .models import ARCHITECTURES
    from ..errors import ConfigError

    if config.model.architecture not in ARCHITECTURES:
        raise ConfigError(f"unknown model architecture {config.model.architecture!r}; "
                          f"choose one of {', '.join(ARCHITECTURES)}")
    if config.augment.pool_copies and dist is not None and not dist.is_default:
        raise ConfigError("augment.pool_copies needs the default strategy (one process); set it to 0 to distribute")
    if config.distill_from and dist is not None and not dist.is_default:
        raise ConfigError("distill_from needs the default strategy (one process); leave it empty to distribute")
    rd.check_run_dir(out_dir, overwrite=overwrite)
    index = index_dataset(resolve_data(config, progress), config)  # DataError before the run directory is touched
    negatives = _add_synthetic_negatives(index, config, progress)
    from .distill import load_teachers

    teachers = load_teachers(config, index)  # ConfigError / RunError before the run directory is touched
    if teachers is not None:
        run_info["distilled_from"] = teachers.describe()
    run = rd.prepare_run_dir(out_dir, overwrite=overwrite, run_json=run_info)
    out = run.path
    atomic_write_json(out / rd.CONFIG_JSON, config_json)
    timings["data_s"] = time.perf_counter() - t_start
    manifest = portable_json(index.manifest())  # no path of this machine in a run file
    atomic_write_json(out / rd.DATA_MANIFEST_JSON, manifest)
    run_info["data_sha256"] = manifest["content_sha256"]
    atomic_write_json(out / rd.RUN_JSON, run_info)

    t0 = time.perf_counter()
    stats = FeatureStats()
    splits = {s: index.split(s) for s in ("train", "validation", "test")}
    n_all = sum(len(c) for c in splits.values())
    done_before = 0
    feats: dict[str, np.ndarray] = {}
    for s, clips in splits.items():
        base = done_before
        cb = (lambda d, t, b=base: progress("features", b + d, n_all)) if progress else None
        feats[s] = clean_features(index.root, clips, config, index.noise_files, cache=feature_cache,
                                  workers=workers, progress=cb, stats=stats)
        done_before += len(clips)
    labels = {s: _labels_of(clips, config) for s, clips in splits.items()}
    cb = (lambda d, t: progress("augment", d, t)) if progress else None
    pool, copies = config.augment.pool_copies, config.augment.copies
    rotating = pool > copies > 0  # augment.pool_copies: a pool of copies, a different share each epoch
    aug_config = (dataclasses.replace(config, augment=dataclasses.replace(config.augment, copies=pool))
                  if rotating else config)
    x_aug = augmented_features(index.root, splits["train"], aug_config, index.noise_files, workers=workers,
                               progress=cb, cache=feature_cache, stats=stats)
    if rotating:
        x_pool, x_aug = x_aug, _rotation(x_aug, len(splits["train"]), pool, copies, 0)
    y_aug = np.repeat(labels["train"], config.augment.copies)
    timings["features_s"] = time.perf_counter() - t0

    norm = Normalization.fit(feats["train"])
    atomic_write_json(out / rd.NORMALIZATION_JSON, to_dict(norm))
    rng = np.random.default_rng(config.seed)
    n_rep = min(config.representative_samples, len(feats["train"]))
    rep = np.sort(rng.choice(len(feats["train"]), size=n_rep, replace=False))
    (out / rd.ARRAYS).mkdir(exist_ok=True)
    _save_npz(out / rd.ARRAYS / "representative.npz", x=feats["train"][rep], y=labels["train"][rep])
    for s in ("validation", "test"):
        _save_npz(out / rd.ARRAYS / f"{s}.npz", x=feats[s], y=labels[s])

    x_train = norm.apply(np.concatenate([feats["train"], x_aug]))
    if config.augment.spec_augment and len(x_aug):
        n_clean = len(feats["train"])
        x_train[n_clean:] = spec_augment(x_train[n_clean:], np.random.default_rng([config.seed, 7]), config.augment)
    y_train = np.concatenate([labels["train"], y_aug])
    x_val, x_test = norm.apply(feats["validation"]), norm.apply(feats["test"])

    t0 = time.perf_counter()
    resumed_from_epoch = dist.saved_epoch() if dist is not None and not dist.is_default else 0
    epoch_data = None
    if rotating:
        x_clean = x_train[:len(feats["train"])].copy()

        def epoch_data(epoch: int) -> tuple[np.ndarray, np.ndarray]:
            if epoch == 0:
                return x_train, y_train
            x_e = norm.apply(_rotation(x_pool, len(feats["train"]), pool, copies, epoch))
            if config.augment.spec_augment:
                x_e = spec_augment(x_e, np.random.default_rng([config.seed, 7, epoch]), config.augment)
            return np.concatenate([x_clean, x_e]), y_train

    y_fit, y_val_fit, fit_epoch_data = y_train, labels["validation"], epoch_data
    if teachers is not None:  # targets become [label, teacher distribution] (kws_edge.training.distill)
        y_fit, y_val_fit, fit_epoch_data = _with_teacher_targets(teachers, norm, x_train, y_train, x_val,
                                                                 labels["validation"], epoch_data)
    model, history = _fit_keras(config, x_train, y_fit, x_val, y_val_fit, progress, dist, fit_epoch_data)
    timings["fit_s"] = time.perf_counter() - t0

    save_model_atomic(model, out / rd.MODEL_KERAS)
    atomic_write_json(out / rd.HISTORY_JSON, history)
    metrics = {
        "validation": clip_metrics(labels["validation"], _predict(model, x_val), config.labels, config.keywords),
        "test": clip_metrics(labels["test"], _predict(model, x_test), config.labels, config.keywords),
    }
    atomic_write_json(out / rd.METRICS_JSON, metrics)
    from .plots import plot_confusion_matrix, plot_training_curves

    plot_training_curves(history, out / rd.PLOTS / "training_curves.png")
    plot_confusion_matrix(metrics["validation"], out / rd.PLOTS / "confusion_matrix.png",
                          title=f"validation: accuracy {100 * metrics['validation']['accuracy']:.1f}%")
    plot_confusion_matrix(metrics["test"], out / rd.PLOTS / "confusion_matrix_test.png",
                          title=f"test: accuracy {100 * metrics['test']['accuracy']:.1f}%")
    timings["total_s"] = time.perf_counter() - t_start
    _write_summary(out, config, index, stats, timings, model, len(x_train), negatives,
                   {**dist.describe(), "resumed_from_epoch": resumed_from_epoch} if dist is not None else None)
    run_info.update(status="complete", finished_utc=utc_now())
    atomic_write_json(out / rd.RUN_JSON, run_info)
    return run


def save_model_atomic(model: Any, path: Path) -> None:
    """``model.save`` to a temporary sibling, then rename; a failure (a full disk) leaves neither file behind."""
    from ..atomic import disk_full_error, is_disk_full

    tmp = path.with_name(f".{path.stem}-tmp-{os.getpid()}{path.suffix}")
    try:
        model.save(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if is_disk_full(exc):
            raise disk_full_error(path) from None
        raise


def _with_teacher_targets(teachers, norm: Normalization, x_train: np.ndarray, y_train: np.ndarray,
                          x_val: np.ndarray, y_val: np.ndarray, epoch_data):
    """Packed distillation targets for the first epoch's arrays, the validation split and every later epoch."""
    from .distill import pack_targets

    def packed(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return pack_targets(y, teachers.soft_targets(x, norm))

    if epoch_data is None:
        return packed(x_train, y_train), packed(x_val, y_val), None
    first = packed(x_train, y_train)

    def teacher_epoch_data(epoch: int) -> tuple[np.ndarray, np.ndarray]:
        x_e, y_e = epoch_data(epoch)
        return x_e, (first if epoch == 0 else packed(x_e, y_e))

    return first, packed(x_val, y_val), teacher_epoch_data


def _add_synthetic_negatives(index: DatasetIndex, config: TrainConfig, progress: Progress | None) -> dict[str, Any]:
    """Mix synthetic confusable words into the training split of a real dataset (``synthetic_negatives``)."""
    if config.is_synthetic or config.synthetic_negatives == 0:
        return {"requested": 0, "added": 0}
    import dataclasses
    import importlib.util

    if importlib.util.find_spec("espeakng_loader") is None:
        return {"requested": config.synthetic_negatives, "added": 0,
                "skipped": "espeakng-loader is not installed (pip install 'kws-edge[tts]')"}
    from .dataset import synthetic_negative_clips
    from .synthetic import generate_word_folder

    # every speaker says every other word: generate only as many speakers as the draw needs
    words = [w for w in config.synthetic.other_words if w not in config.keywords and w not in config.exclude_words]
    n_speakers = max(3, -(-config.synthetic_negatives // max(1, len(words))))
    syn = dataclasses.replace(config.synthetic, n_speakers=n_speakers)
    cb = (lambda d, t: progress("synthesize", d, t)) if progress else None
    folder = generate_word_folder(syn, seed=config.seed, sample_rate_hz=config.features.sample_rate_hz, progress=cb)
    clips = synthetic_negative_clips(folder, config)
    index.clips += clips
    return {"requested": config.synthetic_negatives, "added": len(clips), "folder": portable_path(folder)}


def _write_summary(out: Path, config: TrainConfig, index: DatasetIndex, stats: FeatureStats,
                   timings: dict[str, float], model, n_train_samples: int, negatives: dict[str, Any],
                   distribution: dict[str, Any] | None = None) -> None:
    keras = import_keras()
    tf = import_tensorflow()

    atomic_write_json(out / rd.SUMMARY_JSON, {
        "data_root": portable_path(index.root_name),
        "counts": index.counts(),
        "n_skipped": len(index.skipped),
        "synthetic_negatives": negatives,
        "distribution": distribution or {"strategy": "default"},
        "n_train_samples": int(n_train_samples),
        "augmented_copies": config.augment.copies,
        "feature_cache": {"clips": stats.n_clips, "hits": stats.cache_hits, "computed": stats.computed,
                          "augmented_hits": stats.augmented_hits, "augmented_computed": stats.augmented_computed},
        "model": {"architecture": config.model.architecture, "parameters": int(model.count_params())},
        "timings_s": {k: round(v, 2) for k, v in timings.items()},
        "versions": {"kws_edge": __version__, "tensorflow": tf.__version__, "keras": keras.__version__,
                     "numpy": np.__version__},
    })
