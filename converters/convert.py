"""Training run directory -> deployable bundle for one device (the library behind ``kws-convert``).

:func:`convert_run` validates the run, converts its Keras model (int8 by
default), evaluates the float Keras model and the converted model on the run's
test split through :class:`kws_edge.Engine` (the runtime's own interpreter
path), applies the accuracy parity gate, analyses the flatbuffer, checks the
device's budgets and writes the bundle atomically. Every failure is a
``KwsError`` with one actionable line; nothing is written unless every gate
passes (or ``allow_over_budget`` records a budget failure in the manifest).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from kws_edge.budgets import BudgetReport, check_budgets
from kws_edge.bundle import MODEL_NAME, Manifest, ModelFile, save_bundle
from kws_edge.config import from_dict
from kws_edge.errors import BudgetExceeded, ConfigError, ConversionError, KwsError, RunError
from kws_edge.features import MfccConfig, Normalization
from kws_edge.portable import portable_path
from kws_edge.smoothing import DetectorConfig
from kws_edge.training.tf_import import import_keras

from .analysis import ModelAnalysis, analyze_model
from .quantize import QUANTIZE_MODES, batch1_clone, captured_output, convert_keras, import_tensorflow

__all__ = ["convert_run", "ConversionReport", "RunInputs", "read_run", "RUN_FORMAT_VERSION", "REQUIRED_FILES"]

#: the run directory format this converter reads (docs/ARCHITECTURE.md)
RUN_FORMAT_VERSION = 1
REQUIRED_FILES = (
    "run.json", "config.json", "model.keras", "normalization.json",
    "arrays/representative.npz", "arrays/test.npz",
)
#: seconds of audio streamed per round of the on-target measurement, and rounds (the best one counts)
MEASURE_SECONDS = 5.0
MEASURE_ROUNDS = 5


@dataclass(frozen=True)
class RunInputs:
    """What the converter takes from a run directory (validated)."""

    path: Path
    run: dict[str, Any]
    config: dict[str, Any]
    features: MfccConfig
    labels: tuple[str, ...]
    keywords: tuple[str, ...]
    normalization: Normalization
    seed: int


@dataclass(frozen=True)
class ConversionReport:
    """Result of :func:`convert_run`."""

    bundle_dir: Path
    manifest: Manifest
    analysis: ModelAnalysis
    budgets: BudgetReport
    float_metrics: dict[str, Any]
    converted_metrics: dict[str, Any]
    argmax_agreement: float
    accuracy_drop_points: float
    n_representative: int
    #: models measured in TFLite Micro (profiles whose runtime is tflite-micro); see .tflm
    tflm: tuple[Any, ...] = ()

    def summary(self) -> str:
        """The result in one line, then one line per model measured in TFLite Micro."""
        return "\n".join([self._summary_line()] + [check.summary() for check in self.tflm])

    def _summary_line(self) -> str:
        m = self.manifest.model
        return (
            f"wrote {self.bundle_dir}: {m.quantization} {m.size_bytes:,} B, "
            f"peak activations {m.peak_activation_bytes:,} B, {m.macs_per_inference:,} MACs; "
            f"accuracy float {100 * self.float_metrics['accuracy']:.1f}% vs {m.quantization} "
            f"{100 * self.converted_metrics['accuracy']:.1f}% (argmax agreement "
            f"{100 * self.argmax_agreement:.1f}%); {self.budgets.summary()}"
        )


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunError(f"{path} is not valid JSON ({exc}); re-run kws-train") from None


def read_run(run_dir: str | Path) -> RunInputs:
    """Check that ``run_dir`` is a complete run of a format this converter reads."""
    path = Path(run_dir).expanduser()
    if not path.exists():
        raise RunError(f"run directory {path} does not exist; train one with kws-train --out {path}")
    if not path.is_dir():
        raise RunError(f"{path} is not a directory; pass the directory kws-train wrote")
    if not (path / "run.json").is_file():
        raise RunError(f"{path} is not a kws-train run directory (it has no run.json)")
    run = _read_json(path / "run.json")
    if not isinstance(run, dict):
        raise RunError(f"{path / 'run.json'} must hold a JSON object; re-run kws-train")
    version = run.get("format_version")
    if version != RUN_FORMAT_VERSION:
        hint = ("upgrade kws-edge to convert it" if isinstance(version, int) and version > RUN_FORMAT_VERSION
                else "re-train it with this version of kws-train")
        raise RunError(
            f"run {path} has format_version {version!r} but this kws-convert reads {RUN_FORMAT_VERSION}; {hint}"
        )
    if run.get("status") != "complete":
        raise RunError(
            f"run {path} is {run.get('status', 'incomplete')!r}, not 'complete' (training was interrupted "
            "or failed); re-run kws-train"
        )
    missing = [name for name in REQUIRED_FILES if not (path / name).is_file()]
    if missing:
        raise RunError(f"run {path} is incomplete: {', '.join(missing)} missing; re-run kws-train")
    config = _read_json(path / "config.json")
    if not isinstance(config, dict):
        raise RunError(f"{path / 'config.json'} must hold a JSON object")
    try:
        features = from_dict(MfccConfig, config.get("features", {}), where="features.")
        normalization = from_dict(Normalization, _read_json(path / "normalization.json"))
    except ConfigError as exc:
        raise RunError(f"run {path}: {exc}") from None
    labels = tuple(config.get("labels") or ())
    keywords = tuple(config.get("keywords") or ())
    if not labels or not keywords or any(k not in labels for k in keywords):
        raise RunError(f"{path / 'config.json'} must list labels and keywords (keywords among the labels)")
    if len(normalization.mean) != features.n_cepstra:
        raise RunError(
            f"run {path}: normalization.json has {len(normalization.mean)} values for {features.n_cepstra} "
            "cepstra; the run's files do not belong together, re-run kws-train"
        )
    seed = config.get("seed", run.get("seed", 0))
    return RunInputs(path=path, run=run, config=config, features=features, labels=labels, keywords=keywords,
                     normalization=normalization, seed=int(seed) if isinstance(seed, int) else 0)


def _arrays(run: RunInputs, name: str) -> tuple[np.ndarray, np.ndarray]:
    path = run.path / "arrays" / f"{name}.npz"
    try:
        with np.load(path) as data:
            x, y = np.asarray(data["x"], np.float32), np.asarray(data["y"], np.int64)
    except (KeyError, ValueError, OSError) as exc:
        raise RunError(f"{path} is unreadable or lacks x/y arrays ({exc}); re-run kws-train") from None
    want = (run.features.frames_per_clip, run.features.n_cepstra)
    if x.ndim != 3 or tuple(x.shape[1:]) != want or len(y) != len(x):
        raise RunError(
            f"{path} holds x {list(x.shape)} / y {list(y.shape)}, expected (N, {want[0]}, {want[1]}) features "
            "and N labels from the run's feature settings; re-run kws-train"
        )
    return x, y


def _clip_metrics(y_true: np.ndarray, y_pred: np.ndarray, labels: tuple[str, ...],
                  keywords: tuple[str, ...]) -> dict[str, Any]:
    from kws_edge.metrics import clip_metrics

    return clip_metrics(y_true, y_pred, labels, keywords)


def _inference_model(run: RunInputs, model: Any) -> Any:
    """Batch-1 graph: the training package's builder when the run names its architecture."""
    if "model" in run.config:
        try:
            from kws_edge.training.config import ModelConfig
            from kws_edge.training.models import inference_clone

            return inference_clone(model, from_dict(ModelConfig, run.config["model"]))
        except (ImportError, ConfigError):
            pass
    return batch1_clone(model)


def _keras_predict(model: Any, x: np.ndarray) -> np.ndarray:
    shape = (len(x),) + tuple(int(d) for d in model.inputs[0].shape[1:])
    return np.asarray(model.predict(x.reshape(shape), batch_size=256, verbose=0))


def _engine_predict(model_bytes: bytes, x: np.ndarray) -> np.ndarray:
    from kws_edge.engine import Engine

    engine = Engine(model_bytes, num_threads=1)
    return np.stack([engine.predict(clip) for clip in x]) if len(x) else np.zeros((0, 0), np.float32)


def _git_commit() -> str:
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        if out.returncode != 0:
            return ""
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD"], cwd=here, capture_output=True, timeout=10)
        return out.stdout.strip() + ("+dirty" if dirty.returncode == 1 else "")
    except (OSError, subprocess.SubprocessError):
        return ""


def measure_streaming(bundle_dir: Path, *, seconds: float = MEASURE_SECONDS, rounds: int = MEASURE_ROUNDS,
                      seed: int = 0) -> dict[str, float]:
    """CPU share of one core and per-hop latency p99 of the whole streaming path on this machine.

    Streams ``seconds`` of seeded noise through :class:`kws_edge.KeywordDetector`
    one hop at a time (after one clip of warm-up), ``rounds`` times, and keeps
    the best round of each figure: other processes on a shared machine only
    ever make a round slower, so the best round is the closest to the
    detector's own cost.
    """
    from kws_edge.detector import KeywordDetector

    det = KeywordDetector.from_bundle(bundle_dir)
    fc = det.model.features
    hop = fc.hop_samples
    rng = np.random.default_rng(seed)
    n_warm = fc.clip_samples // hop + 1
    n_hops = max(10, int(seconds * fc.sample_rate_hz / hop))
    audio = (rng.normal(0, 0.05, (n_warm + n_hops) * hop)).astype(np.float32)
    audio_s = n_hops * hop / fc.sample_rate_hz
    cpu_shares, p99s = [], []
    for _ in range(max(1, rounds)):
        det.reset()
        for i in range(n_warm):
            det.process(audio[i * hop:(i + 1) * hop])
        times = np.empty(n_hops)
        cpu0 = time.process_time()
        for j in range(n_hops):
            i = n_warm + j
            t0 = time.perf_counter()
            det.process(audio[i * hop:(i + 1) * hop])
            times[j] = time.perf_counter() - t0
        cpu_shares.append((time.process_time() - cpu0) / audio_s)
        p99s.append(float(np.percentile(times, 99) * 1000.0))
    return {"cpu_share": min(cpu_shares), "hop_latency_p99_ms": min(p99s)}


def convert_run(
    run_dir: str | Path,
    *,
    device: Any,
    out_dir: str | Path,
    quantize: str = "int8",
    representative_n: int = 500,
    max_accuracy_drop_points: float = 1.0,
    allow_over_budget: bool = False,
    overwrite: bool = False,
    measure: Optional[bool] = None,
    stride_hops: int = 1,
    strip_names: bool = False,
    per_channel: bool = True,
    name: Optional[str] = None,
    version: Optional[str] = None,
) -> ConversionReport:
    """Convert a complete training run into a bundle for ``device``.

    Parameters
    ----------
    run_dir : a directory written by ``kws-train`` (docs/ARCHITECTURE.md)
    device : a profile name, alias, ``.toml`` path or :class:`kws_edge.devices.DeviceProfile`
    out_dir : the bundle directory to write (refused if it exists, unless ``overwrite``)
    quantize : "int8" (full integer, int8 input/output) or "float32"
    representative_n : calibration clips drawn (seeded by the run's seed) from arrays/representative.npz
    max_accuracy_drop_points : parity gate, float minus converted test accuracy in percentage points
    allow_over_budget : write the bundle even when a budget fails; the failure is recorded in the manifest
    measure : measure CPU share and hop latency on this machine; default: when it is the device
    stride_hops : the detector default written to the manifest: run the model every N feature hops
        (inferences per second = hops per second / N, which the compute and CPU budgets use)
    name, version : manifest name and version (default: the run directory's name, the model hash)
    strip_names : blank the tensor names of the model file (smaller; names are only debugging aids)
    per_channel : int8 weights with one scale per output channel (default); false: one per tensor, a
        smaller file (12 bytes less per channel of every weight and bias tensor)

    Raises
    ------
    RunError : the run is missing, incomplete, from another format version, or its arrays are empty
    ConfigError : an unknown device or a bad option
    ConversionError : TFLite conversion failed, or the parity gate failed (exit status 1)
    BudgetExceeded : a budget failed and ``allow_over_budget`` is false (exit status 1; nothing written)
    DiskFullError : the disk filled up while writing (no partial bundle is left)
    """
    from kws_edge.devices import detect_local_profile, load_profile

    if quantize not in QUANTIZE_MODES:
        raise ConfigError(f"--quantize {quantize!r} must be one of {', '.join(QUANTIZE_MODES)}")
    if stride_hops < 1:
        raise ConfigError(f"--stride-hops {stride_hops} must be >= 1")
    if representative_n < 1:
        raise ConfigError(f"--representative {representative_n} must be >= 1")
    if not max_accuracy_drop_points >= 0:
        raise ConfigError(f"--max-accuracy-drop {max_accuracy_drop_points} must be >= 0 percentage points")
    profile = load_profile(device)
    out = Path(out_dir).expanduser()
    if out.exists() and not overwrite:
        raise KwsError(f"{out} already exists; choose another --out or pass --overwrite")
    run = read_run(run_dir)
    rep_x, _ = _arrays(run, "representative")
    if len(rep_x) == 0 and quantize == "int8":
        raise RunError(f"{run.path / 'arrays/representative.npz'} holds no clips; int8 calibration needs some, "
                       "re-run kws-train (or use --quantize float32)")
    test_x, test_y = _arrays(run, "test")
    if len(test_x) == 0:
        raise RunError(f"{run.path / 'arrays/test.npz'} holds no clips; the parity gate needs a test split")
    if test_y.min() < 0 or test_y.max() >= len(run.labels):
        raise RunError(f"{run.path / 'arrays/test.npz'} has labels outside 0..{len(run.labels) - 1}")
    rng = np.random.default_rng(run.seed)
    n_rep = min(representative_n, len(rep_x)) if quantize == "int8" else 0
    rep_idx = np.sort(rng.choice(len(rep_x), size=n_rep, replace=False))

    tf = import_tensorflow()
    keras = import_keras("conversion")

    try:
        with captured_output():
            model = keras.saving.load_model(run.path / "model.keras", compile=False)
    except Exception as exc:  # Keras raises ValueError, OSError, zipfile errors...
        raise RunError(f"{run.path / 'model.keras'} cannot be loaded ({type(exc).__name__}: {exc}); "
                       "re-run kws-train") from None
    n_out = int(model.outputs[0].shape[-1])
    if n_out != len(run.labels):
        raise RunError(f"model.keras has {n_out} outputs but config.json lists {len(run.labels)} labels")
    with captured_output():
        inference_model = _inference_model(run, model)
    model_bytes = convert_keras(inference_model, rep_x[rep_idx], quantize,
                                normalization=run.normalization, clone=False, strip_names=strip_names,
                                per_channel=per_channel)

    # Evaluation: the float model as trained (Keras) against the converted model through the runtime's Engine.
    x_norm = run.normalization.apply(test_x)
    with captured_output():
        float_probs = _keras_predict(model, x_norm)
    conv_probs = _engine_predict(model_bytes, x_norm)
    float_pred, conv_pred = float_probs.argmax(axis=1), conv_probs.argmax(axis=1)
    float_metrics = _clip_metrics(test_y, float_pred, run.labels, run.keywords)
    conv_metrics = _clip_metrics(test_y, conv_pred, run.labels, run.keywords)
    agreement = float(np.mean(float_pred == conv_pred))
    drop = 100.0 * (float_metrics["accuracy"] - conv_metrics["accuracy"])
    if drop > max_accuracy_drop_points:
        raise ConversionError(
            f"{quantize} accuracy {100 * conv_metrics['accuracy']:.2f}% is {drop:.2f} points below the float "
            f"model's {100 * float_metrics['accuracy']:.2f}% on {len(test_y)} test clips (limit "
            f"{max_accuracy_drop_points:g}); nothing written. Try more --representative clips, --quantize "
            "float32, or raise --max-accuracy-drop"
        )

    validation_agreement = None
    if (run.path / "arrays" / "validation.npz").is_file():  # more clips for the same comparison, when present
        val_x, _ = _arrays(run, "validation")
        if len(val_x):
            val_norm = run.normalization.apply(val_x)
            with captured_output():
                val_float = _keras_predict(model, val_norm).argmax(axis=1)
            validation_agreement = float(np.mean(val_float == _engine_predict(model_bytes, val_norm).argmax(axis=1)))

    analysis = analyze_model(model_bytes)
    tflm_check = None
    if profile.runtime == "tflite-micro":  # the arena and parity in the real TFLite Micro interpreter
        from .tflm import check_window_model, require_parity

        calibration = run.normalization.apply(rep_x[rep_idx]) if n_rep else x_norm
        tflm_check = check_window_model(model_bytes, calibration, file=MODEL_NAME,
                                        inputs="calibration clips" if n_rep else "test clips")
        require_parity(tflm_check)
    detector = DetectorConfig(thresholds={k: DetectorConfig().default_threshold for k in run.keywords},
                              stride_hops=stride_hops)
    inferences_per_second = run.features.hops_per_second / detector.stride_hops
    key = "int8" if quantize == "int8" else "float32"
    metrics = {
        "float": float_metrics,
        key: conv_metrics,
        "parity": {
            "evaluated_on": "arrays/test.npz of the run",
            "float_model": "model.keras (Keras)",
            "converted_model": f"{MODEL_NAME} through kws_edge.Engine",
            "argmax_agreement": round(agreement, 6),
            "accuracy_drop_points": round(drop, 4),
            "max_accuracy_drop_points": max_accuracy_drop_points,
            "validation_argmax_agreement": (round(validation_agreement, 6)
                                            if validation_agreement is not None else None),
        },
    }
    run_json = dict(run.run)
    from kws_edge import __version__

    provenance = {
        "run_dir": run.path.resolve().name,  # the run's name; where it lay on this machine means nothing elsewhere
        "run": run_json,
        "config": run.config,
        "seed": run.seed,
        "data_sha256": run_json.get("data_sha256", ""),
        "conversion": {
            "kws_edge_version": __version__,
            "git_commit": _git_commit(),
            "tensorflow_version": getattr(tf, "__version__", ""),
            "quantize": quantize,
            "weight_scales": ("per-channel" if per_channel else "per-tensor") if quantize == "int8" else None,
            "representative_clips": int(n_rep),
            "representative_seed": run.seed,
            "representative_source": "arrays/representative.npz (train split), normalised with normalization.json",
        },
    }
    spec = ModelFile(
        file=MODEL_NAME, sha256="", size_bytes=0, input=analysis.input, output=analysis.output,
        quantization=quantize, peak_activation_bytes=analysis.peak_activation_bytes,
        weight_bytes=analysis.weight_bytes, macs_per_inference=analysis.macs_per_inference,
        operators=analysis.operators,
    )
    data_name = str(run.config.get("data", ""))
    attribution = ("" if data_name in ("", "synthetic") else
                   "trained on the Speech Commands dataset (Warden 2018), CC BY 4.0")
    import hashlib

    manifest = Manifest(
        name=name or run.path.resolve().name,
        version=version or hashlib.sha256(model_bytes).hexdigest()[:12],
        labels=run.labels,
        keywords=run.keywords,
        features=run.features,
        normalization=run.normalization,
        model=spec,
        detector=detector,
        description=f"{'/'.join(run.keywords)} keyword spotter, {quantize}, checked against {profile.name}",
        provenance=provenance,
        metrics=metrics,
        attribution=attribution,
        created_utc=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )

    local = detect_local_profile()
    on_target = local is not None and local.name == profile.name
    measured = None
    if measure if measure is not None else on_target:
        with tempfile.TemporaryDirectory(prefix="kws-convert-") as tmp:
            save_bundle(Path(tmp) / "bundle", manifest, model_bytes)
            measured = measure_streaming(Path(tmp) / "bundle", seed=run.seed)
    budgets = check_budgets(
        profile,
        model_bytes=len(model_bytes),
        activation_bytes=analysis.peak_activation_bytes,
        macs_per_inference=analysis.macs_per_inference,
        inferences_per_second=inferences_per_second,
        measured=measured,
        measured_on_target=bool(measured) and on_target,
        measured_how=(f"best of {MEASURE_ROUNDS} rounds of {MEASURE_SECONDS:g} s of audio through "
                      "KeywordDetector on this machine"),
        hops_per_second=run.features.hops_per_second,
        quantization=quantize,
        unsupported_operators=analysis.tflm_unsupported,
        tflm_arena_bytes=tflm_check.arena.arena_bytes if tflm_check else None,
        tflm_build=tflm_check.build.describe() if tflm_check else "",
    )
    budgets_json = budgets.to_dict()
    budgets_json["allowed_over_budget"] = bool(allow_over_budget and not budgets.within_budget)
    budgets_json["profile"] = {"name": profile.name, "description": profile.description,
                               "path": portable_path(profile.path) if profile.path else profile.path,
                               "runtime": profile.runtime}
    budgets_json["analysis"] = analysis.to_dict()
    if tflm_check is not None:
        from .tflm import tflm_manifest_entry

        budgets_json["tflm"] = tflm_manifest_entry(None, tflm_check)
    if measured is not None and not on_target:
        budgets_json["measured_here"] = measured
    if not budgets.within_budget and not allow_over_budget:
        raise _budget_error(budgets)
    manifest = dataclasses.replace(manifest, budgets=budgets_json)
    written = save_bundle(out, manifest, model_bytes, overwrite=overwrite)
    return ConversionReport(
        bundle_dir=out, manifest=written, analysis=analysis, budgets=budgets, float_metrics=float_metrics,
        converted_metrics=conv_metrics, argmax_agreement=agreement, accuracy_drop_points=drop,
        n_representative=int(n_rep), tflm=(tflm_check,) if tflm_check else (),
    )


def _budget_error(report: BudgetReport) -> BudgetExceeded:
    """A one-line refusal naming each failing budget's figure and limit; the report rides along for the table."""
    hint = ""
    if any(r.method == "host" for r in report.failures):
        hint = ("; measured figures suffer when other processes load this machine: re-run when it is idle, "
                "or --no-measure to check the profile's estimates")
    exc = BudgetExceeded(
        f"the model is {report.summary()}; nothing written (pass --allow-over-budget to write it anyway){hint}"
    )
    exc.report = report  # the CLI prints report.table()
    return exc
