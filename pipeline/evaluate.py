"""``kws evaluate`` as a library: clip metrics and the streaming test of a bundle or a run.

A run is evaluated through a float32 TFLite conversion of its model (a
temporary bundle), so both go through the runtime's own ``KwsModel`` and
``KeywordDetector``: the same features, normalisation and smoothing as on the
device. The streaming test is :func:`kws_edge.training.streaming_eval.evaluate_stream`,
scored by :mod:`kws_edge.metrics`: the one streaming evaluation, which the
pipeline's evaluate stage calls through :func:`evaluate` too. Outputs (when
``out_dir`` is given): ``evaluation.json``, ``det_curve.json``,
``det_curve.png``, ``confusion_matrix.png``.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_write_json
from ..bundle import Bundle, Manifest, ModelFile, TensorSpec, load_bundle, save_bundle
from ..bundle.provenance import Provenance, RunRecord
from ..config import from_dict, to_dict
from ..errors import ConfigError, RunError
from ..metrics import SILENCE_LABEL, StreamConfig, clip_metrics
from ..model import KwsModel
from ..portable import portable_path
from ..smoothing import DetectorConfig
from ..training.config import TrainConfig
from ..training.dataset import NoiseBank, index_dataset
from ..training.featurize import clean_features
from ..training.fit import resolve_data
from ..training.rundir import RunDir, open_run
from ..training.streaming_eval import build_stream, evaluate_stream

__all__ = ["float_bundle_from_run", "evaluate", "config_for_bundle", "evaluate_command_line"]


def float_bundle_from_run(run: RunDir | str | Path, out_dir: str | Path) -> Bundle:
    """Write a float32 TFLite bundle of a complete run to ``out_dir`` and load it."""
    from ..converters.quantize import convert_keras

    run = open_run(run) if not isinstance(run, RunDir) else run.require_complete()

    cfg = run.config()
    model_bytes = convert_keras(run.load_keras_model(), None, "float32")
    fc = cfg.features
    manifest = Manifest(
        name=f"{run.path.name}-float", version="0", labels=tuple(cfg.labels), keywords=tuple(cfg.keywords),
        features=fc, normalization=run.normalization(),
        model=ModelFile(file="model.tflite", sha256="", size_bytes=0, quantization="float32",
                        input=TensorSpec(shape=(1, fc.frames_per_clip, fc.n_cepstra), dtype="float32"),
                        output=TensorSpec(shape=(1, len(cfg.labels)), dtype="float32")),
        provenance=Provenance(run_dir=run.path.resolve().name, run=from_dict(RunRecord, run.run), config=to_dict(cfg)),
        description="float32 evaluation bundle of a run",
    )
    save_bundle(out_dir, manifest, model_bytes, overwrite=True)
    return load_bundle(out_dir)


def config_for_bundle(bundle: Bundle) -> TrainConfig:
    """The training config stored in a bundle's provenance, else defaults with its features and labels."""
    m = bundle.manifest
    stored = m.provenance.config
    if stored:
        try:
            config = from_dict(TrainConfig, stored)
        except ConfigError:
            pass
        else:
            return _this_machines_cache(config)
    return TrainConfig(labels=tuple(m.labels), keywords=tuple(m.keywords), features=m.features)


def _this_machines_cache(config: TrainConfig) -> TrainConfig:
    """``config`` with the synthetic set cached where this machine caches it: where it was cached is the
    training machine's business, not the recipe's (run files and manifests keep only a path's name, see
    kws_edge.portable)."""
    return dataclasses.replace(config, synthetic=dataclasses.replace(config.synthetic, cache_dir=""))


def evaluate(*, data: str | tuple[str, ...], bundle: str | Path | None = None, run: str | Path | None = None,
             stream: StreamConfig = StreamConfig(), split: str = "test", out_dir: str | Path | None = None,
             target_fa_per_hour: float | None = None, detector: DetectorConfig | None = None,
             progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """Clip-level metrics and streaming FRR / FA/h / DET of a bundle or a run on ``data``'s ``split``.

    ``detector`` scores the stream with other detector settings than the bundle's (the pipeline scores
    the settings it tuned, which its final bundle then carries).
    """
    if (bundle is None) == (run is None):
        raise ConfigError("give exactly one of --bundle DIR or --run RUN_DIR")
    if split not in ("train", "validation", "test"):
        raise ConfigError(f"split {split!r} must be train, validation or test")
    with tempfile.TemporaryDirectory(prefix="kws-evaluate-") as tmp:
        if run is not None:
            run_dir = open_run(run)
            config = _this_machines_cache(run_dir.config())
            b = float_bundle_from_run(run_dir, Path(tmp) / "bundle")
            source = {"run": portable_path(run_dir.path)}
        else:
            b = load_bundle(bundle)
            config = config_for_bundle(b)
            source = {"bundle": portable_path(b.path), "name": b.manifest.name, "version": b.manifest.version}
        config = dataclasses.replace(config, data=data)
        if tuple(config.labels) != tuple(b.manifest.labels) or config.features != b.manifest.features:
            raise RunError("the bundle's labels or features differ from its training config; re-convert it")
        root = resolve_data(config, progress)
        index = index_dataset(root, config)
        clips = index.split(split)
        cb = (lambda d, t: progress("features", d, t)) if progress else None
        feats = clean_features(index.root, clips, config, index.noise_files, progress=cb)
        model = KwsModel(b)
        y_pred = np.array([int(np.argmax(model.scores_features(f))) for f in feats], np.int64)
        label_index = {label: i for i, label in enumerate(config.labels)}
        y_true = np.array([label_index[c.label] for c in clips], np.int64)
        clip = clip_metrics(y_true, y_pred, config.labels, config.keywords)
        noise = NoiseBank(index.root, index.noise_files, config) if index.noise_files else None
        words = [c for c in clips if c.label != SILENCE_LABEL]
        ts = build_stream(index.root, words, config, noise, stream, split=split)
        if progress:
            progress("streaming", 0, 1)
        streaming = evaluate_stream(b, ts, config=detector, tolerance_ms=stream.tolerance_ms,
                                    target_fa_per_hour=target_fa_per_hour)
        if progress:
            progress("streaming", 1, 1)
    result = {"source": source, "data": portable_path(index.root_name), "split": split, "data_sha256": index.content_sha256,
              "clip": clip, "streaming": streaming, "stream_config": to_dict(stream)}
    if out_dir is not None:
        _write_outputs(Path(out_dir), result)
    return result


def evaluate_command_line(*, bundle: str | Path, data: str | tuple[str, ...], split: str, stream: StreamConfig) -> str:
    """The ``kws evaluate`` command that measures ``bundle`` on this stream (what a report tells its reader)."""
    folders = (data,) if isinstance(data, str) else tuple(data)
    return (f"kws evaluate --bundle {portable_path(bundle)} "
            + " ".join(f"--data {portable_path(d)}" for d in folders)
            + f" --split {split} --stream-minutes {stream.minutes:g} --seed {stream.seed}")


def _write_outputs(out: Path, result: dict[str, Any]) -> None:
    from ..training.plots import plot_confusion_matrix, plot_det_curve

    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "evaluation.json", result)
    s = result["streaming"]
    if "det_curve" in s:
        atomic_write_json(out / "det_curve.json", {"tolerance_ms": s["tolerance_ms"], "duration_s": s["duration_s"],
                                                    "n_keywords": s["n_keywords"], "points": s["det_curve"]})
        plot_det_curve(s["det_curve"], out / "det_curve.png",
                       title=f"DET, {s['duration_s'] / 60:.0f} min stream, {s['n_keywords']} keywords")
    plot_confusion_matrix(result["clip"], out / "confusion_matrix.png", title=f"{result['split']} clips")
