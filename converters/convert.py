"""Training run directory -> deployable bundle for one device (the library behind ``kws-convert``).

:func:`convert_run` validates the run (:class:`kws_edge.training.rundir.RunDir`), converts its Keras
model (int8 by default) and, with ``streaming``, its streaming (stateful) form too; applies the
parity gate (:mod:`.parity`) to every converted model against the float Keras model on the run's
test split, through :class:`kws_edge.Engine` (the runtime's own interpreter path); analyses the
flatbuffers; checks the device's budgets on the model the detector will run (the streaming model
when there is one); measures it on the device when this machine is one (:func:`kws_edge.bench.measure_device`,
as ``kws bench`` does); and writes the bundle once, atomically. Every failure is a ``KwsError`` with
one actionable line; nothing is written unless every gate passes (or ``allow_over_budget`` records a
budget failure in the manifest).
"""

from __future__ import annotations

import dataclasses
import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from kws_edge import __version__
from kws_edge.budgets import arena_result, check_budgets
from kws_edge.bundle import MODEL_NAME, Manifest, ModelFile, save_bundle
from kws_edge.bundle.budgets import Budgets, ModelCost, ProfileRef
from kws_edge.bundle.metrics import Metrics, SplitMetrics
from kws_edge.bundle.provenance import ConversionRecord, Provenance, RunRecord, StreamingConversionRecord
from kws_edge.config import from_dict, to_dict
from kws_edge.errors import BudgetExceeded, ConfigError, ConversionError, KwsError, RunError
from kws_edge.portable import portable_path
from kws_edge.smoothing import DetectorConfig
from kws_edge.stamps import git_commit, utc_now
from kws_edge.training.models import streamable_architectures
from kws_edge.training.rundir import RunDir
from kws_edge.training.tf_import import captured_output, import_keras, import_tensorflow

from .analysis import ModelAnalysis, analyze_model
from .parity import ParityResult, keras_predict, parity, streaming_predict, window_predict
from .quantize import QUANTIZE_MODES, batch1_clone, convert_keras

__all__ = ["convert_run", "ConversionReport", "MEASURE_SECONDS"]

#: seconds of audio measured on the target (as ``kws bench --seconds``)
MEASURE_SECONDS = 5.0


@dataclass(frozen=True)
class ConversionReport:
    """Result of :func:`convert_run`."""

    bundle_dir: Path
    manifest: Manifest
    analysis: ModelAnalysis
    budgets: Budgets
    float_metrics: dict[str, Any]
    converted_metrics: dict[str, Any]
    argmax_agreement: float
    accuracy_drop_points: float
    n_representative: int
    #: models measured in TFLite Micro (profiles whose runtime is tflite-micro); see .tflm
    tflm: tuple[Any, ...] = ()
    #: the streaming model (``streaming=True``): its conversion, its analysis and its parity
    streaming: Any = None
    streaming_analysis: Optional[ModelAnalysis] = None
    streaming_parity: Optional[ParityResult] = None

    def summary(self) -> str:
        """The result in one line, then the streaming model's, then one line per model measured in TFLite Micro."""
        lines = [self._summary_line()]
        if self.streaming_parity is not None and self.manifest.streaming_model is not None:
            s = self.manifest.streaming_model
            lines.append(f"streaming model {s.file}: {s.size_bytes:,} B, peak activations {s.peak_activation_bytes:,} B, "
                         f"{s.macs_per_inference:,} MACs per call; accuracy "
                         f"{100 * self.streaming_parity.converted_metrics['accuracy']:.1f}% (argmax agreement "
                         f"{100 * self.streaming_parity.argmax_agreement:.1f}%); the detector runs it")
        return "\n".join(lines + [check.summary() for check in self.tflm])

    def _summary_line(self) -> str:
        m = self.manifest.model
        return (
            f"wrote {self.bundle_dir}: {m.quantization} {m.size_bytes:,} B, "
            f"peak activations {m.peak_activation_bytes:,} B, {m.macs_per_inference:,} MACs; "
            f"accuracy float {100 * self.float_metrics['accuracy']:.1f}% vs {m.quantization} "
            f"{100 * self.converted_metrics['accuracy']:.1f}% (argmax agreement "
            f"{100 * self.argmax_agreement:.1f}%); {self.budgets.summary()}"
        )


def _inference_model(run: RunDir, model: Any) -> Any:
    """Batch-1 graph: the training package's builder for the run's architecture."""
    from kws_edge.training.models import inference_clone

    try:
        return inference_clone(model, run.config().model)
    except (ImportError, ConfigError):
        return batch1_clone(model)


def _model_file(analysis: ModelAnalysis, file: str, quantize: str, **extra: Any) -> ModelFile:
    return ModelFile(file=file, sha256="", size_bytes=0, input=analysis.input, output=analysis.output,
                     quantization=quantize, peak_activation_bytes=analysis.peak_activation_bytes,
                     weight_bytes=analysis.weight_bytes, macs_per_inference=analysis.macs_per_inference,
                     operators=analysis.operators, **extra)


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
    streaming: bool = False,
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
        (for every converted model: the window model and, with ``streaming``, the streaming model)
    allow_over_budget : write the bundle even when a budget fails; the failure is recorded in the manifest
    measure : measure CPU share and hop latency on this machine; default: when it is the device
    stride_hops : the detector default written to the manifest: run the window model every N feature hops
        (inferences per second = hops per second / N, which the compute and CPU budgets use)
    name, version : manifest name and version (default: the run directory's name, the model hash)
    strip_names : blank the tensor names of the model file (smaller; names are only debugging aids)
    per_channel : int8 weights with one scale per output channel (default); false: one per tensor, a
        smaller file (12 bytes less per channel of every weight and bias tensor)
    streaming : also convert the streaming (stateful) form of a streamable architecture; the detector
        runs it, so budgets, the on-device measurement and the TFLite Micro arena are checked on it

    Raises
    ------
    RunError : the run is missing, incomplete, from another format version, or its arrays are empty
    ConfigError : an unknown device or a bad option
    ConversionError : TFLite conversion failed, a parity gate failed, or ``streaming`` for an architecture
        that cannot stream (exit status 1)
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
    run = RunDir(Path(run_dir).expanduser())
    if streaming:
        _require_streamable(run)
    run.require_complete(reader="kws-convert").require_files()
    config = run.config()
    normalization = run.normalization()
    fc = config.features
    if len(normalization.mean) != fc.n_cepstra:
        raise RunError(f"run {run.path}: normalization.json has {len(normalization.mean)} values for "
                       f"{fc.n_cepstra} cepstra; the run's files do not belong together, re-run kws-train")
    labels, keywords = tuple(config.labels), tuple(config.keywords)
    rep_x, _ = run.arrays("representative", features=fc)
    if len(rep_x) == 0 and quantize == "int8":
        raise RunError(f"{run.path / 'arrays/representative.npz'} holds no clips; int8 calibration needs some, "
                       "re-run kws-train (or use --quantize float32)")
    test_x, test_y = run.arrays("test", features=fc)
    if len(test_x) == 0:
        raise RunError(f"{run.path / 'arrays/test.npz'} holds no clips; the parity gate needs a test split")
    if test_y.min() < 0 or test_y.max() >= len(labels):
        raise RunError(f"{run.path / 'arrays/test.npz'} has labels outside 0..{len(labels) - 1}")
    rng = np.random.default_rng(config.seed)
    n_rep = min(representative_n, len(rep_x)) if quantize == "int8" else 0
    rep_idx = np.sort(rng.choice(len(rep_x), size=n_rep, replace=False))

    tf = import_tensorflow("conversion")
    import_keras("conversion")
    try:
        with captured_output():
            model = run.load_keras_model()
    except RunError:
        raise
    except Exception as exc:  # Keras raises ValueError, OSError, zipfile errors...
        raise RunError(f"{run.path / 'model.keras'} cannot be loaded ({type(exc).__name__}: {exc}); "
                       "re-run kws-train") from None
    n_out = int(model.outputs[0].shape[-1])
    if n_out != len(labels):
        raise RunError(f"model.keras has {n_out} outputs but config.json lists {len(labels)} labels")
    with captured_output():
        inference_model = _inference_model(run, model)
    model_bytes = convert_keras(inference_model, rep_x[rep_idx], quantize, normalization=normalization, clone=False,
                                strip_names=strip_names, per_channel=per_channel)

    # Parity: the float model as trained (Keras) against every converted model through the runtime's Engine.
    x_norm = normalization.apply(test_x)
    with captured_output():
        float_probs = keras_predict(model, x_norm)
    validation = None
    if (run.path / "arrays" / "validation.npz").is_file():  # more clips for the same comparison, when present
        val_x, _ = run.arrays("validation", features=fc)
        if len(val_x):
            val_norm = normalization.apply(val_x)
            with captured_output():
                validation = (keras_predict(model, val_norm), window_predict(model_bytes, val_norm))
    gate = dict(max_accuracy_drop_points=max_accuracy_drop_points, quantize=quantize,
                evaluated_on="arrays/test.npz of the run")
    window = parity(float_probs, window_predict(model_bytes, x_norm), test_y, labels, keywords,
                    converted_model=MODEL_NAME, validation=validation, **gate)
    stream = stream_parity = None
    if streaming:
        from .streaming import STREAMING_MODEL_NAME, StreamingConversionConfig, convert_streaming

        stream = convert_streaming(model, normalization.apply(rep_x), StreamingConversionConfig(
            quantize=quantize, per_channel=per_channel, strip_names=strip_names))
        stream_parity = parity(float_probs, streaming_predict(stream.model_bytes, x_norm), test_y, labels, keywords,
                               converted_model=STREAMING_MODEL_NAME, **gate)

    analysis = analyze_model(model_bytes)
    stream_analysis = analyze_model(stream.model_bytes) if stream is not None else None
    checks = _tflm_checks(profile, model_bytes, stream, normalization.apply(rep_x[rep_idx]) if n_rep else x_norm,
                          normalization.apply(rep_x) if len(rep_x) else x_norm, calibration=bool(n_rep))

    detector = DetectorConfig(thresholds={k: DetectorConfig().default_threshold for k in keywords},
                              stride_hops=stride_hops)
    window_spec = _model_file(analysis, MODEL_NAME, quantize)
    stream_spec = None
    if stream is not None:
        from .streaming import streaming_model_file

        stream_spec = dataclasses.replace(streaming_model_file(stream.model_bytes, quantization=stream.quantize),
                                          peak_activation_bytes=stream_analysis.peak_activation_bytes,
                                          weight_bytes=stream_analysis.weight_bytes,
                                          macs_per_inference=stream_analysis.macs_per_inference,
                                          operators=stream_analysis.operators)
    manifest = Manifest(
        name=name or run.path.resolve().name,
        version=version or hashlib.sha256(model_bytes).hexdigest()[:12],
        labels=labels, keywords=keywords, features=fc, normalization=normalization, model=window_spec,
        streaming_model=stream_spec, detector=detector,
        description=f"{'/'.join(keywords)} keyword spotter, {quantize}, checked against {profile.name}",
        provenance=_provenance(run, config, quantize, per_channel, n_rep, stream, tf),
        metrics=_metrics(window, stream_parity),
        attribution=("" if config.is_synthetic else "trained on the Speech Commands dataset (Warden 2018), CC BY 4.0"),
        created_utc=utc_now(),
    )

    local = detect_local_profile()
    on_target = local is not None and local.name == profile.name
    figures = None
    if measure if measure is not None else on_target:
        from kws_edge.bench import measure_device
        from kws_edge.bundle import load_bundle
        from kws_edge.detector import KeywordDetector

        with tempfile.TemporaryDirectory(prefix="kws-convert-") as tmp:
            save_bundle(Path(tmp) / "bundle", manifest, model_bytes,
                        streaming_model_bytes=stream.model_bytes if stream is not None else None)
            detector_here = KeywordDetector(load_bundle(Path(tmp) / "bundle"))
            figures = measure_device(detector_here, seconds=MEASURE_SECONDS, seed=config.seed)
    budgets = _budgets(profile, manifest, analysis, stream_analysis, checks, figures, on_target=on_target,
                       allow_over_budget=allow_over_budget)
    if not budgets.within_budget and not allow_over_budget:
        raise _budget_error(budgets)
    manifest = dataclasses.replace(manifest, budgets=budgets)
    written = save_bundle(out, manifest, model_bytes,
                          streaming_model_bytes=stream.model_bytes if stream is not None else None,
                          overwrite=overwrite)
    return ConversionReport(
        bundle_dir=out, manifest=written, analysis=analysis, budgets=written.budgets,
        float_metrics=window.float_metrics, converted_metrics=window.converted_metrics,
        argmax_agreement=window.argmax_agreement, accuracy_drop_points=window.accuracy_drop_points,
        n_representative=int(n_rep), tflm=checks, streaming=stream, streaming_analysis=stream_analysis,
        streaming_parity=stream_parity,
    )


def _require_streamable(run: RunDir) -> None:
    """Refuse ``--streaming`` for an architecture that cannot stream, before anything else is done.

    Only the run's configuration is read; a missing or broken run is left to the normal checks to report.
    """
    try:
        architecture = run.config().model.architecture
    except RunError:
        return
    if architecture not in streamable_architectures():
        raise ConversionError(
            f"--streaming needs a streamable model, but {run.path} trained {architecture!r}; train with "
            f"kws-train --model {' or --model '.join(streamable_architectures())} (or drop --streaming)")


def _tflm_checks(profile: Any, model_bytes: bytes, stream: Any, window_inputs: np.ndarray,
                 stream_features: np.ndarray, *, calibration: bool) -> tuple[Any, ...]:
    """For a TFLite Micro profile: every model that will run, measured in the real TFLM interpreter (arena,
    parity with LiteRT; a model whose parity fails is refused)."""
    if profile.runtime != "tflite-micro":
        return ()
    from .streaming import STREAMING_MODEL_NAME, TFLM_PARITY_CLIPS, pseudo_streams
    from .tflm import check_streaming_model, check_window_model, require_parity

    checks = [check_window_model(model_bytes, window_inputs, file=MODEL_NAME,
                                 inputs="calibration clips" if calibration else "test clips")]
    if stream is not None:
        streams = pseudo_streams(stream_features, n_streams=1, clips_per_stream=TFLM_PARITY_CLIPS, seed=0)
        checks.append(check_streaming_model(stream.model_bytes, streams, file=STREAMING_MODEL_NAME,
                                            inputs="long stream of calibration clips"))
    for check in checks:
        require_parity(check)
    return tuple(checks)


def _provenance(run: RunDir, config: Any, quantize: str, per_channel: bool, n_rep: int, stream: Any,
                tf: Any) -> Provenance:
    streaming = None
    if stream is not None:
        streaming = StreamingConversionRecord(block_frames=stream.block_frames, state_size=stream.state_size,
                                              n_calibration_pairs=stream.n_calibration)
    return Provenance(
        run_dir=run.path.resolve().name,  # the run's name; where it lay on this machine means nothing elsewhere
        run=from_dict(RunRecord, run.run),
        config=to_dict(config),
        conversion=ConversionRecord(
            kws_edge_version=__version__, git_commit=git_commit(), tensorflow_version=getattr(tf, "__version__", ""),
            quantize=quantize,
            weight_scales=("per-channel" if per_channel else "per-tensor") if quantize == "int8" else None,
            representative_clips=int(n_rep), representative_seed=int(config.seed),
            representative_source="arrays/representative.npz (train split), normalised with normalization.json",
            streaming=streaming),
    )


def _metrics(window: ParityResult, stream: Optional[ParityResult]) -> Metrics:
    float_metrics, converted = window.clip_metrics()
    return Metrics(
        headline="test",
        test=SplitMetrics(float_model=float_metrics, converted=converted,
                          streaming=stream.clip_metrics()[1] if stream is not None else None,
                          note="kws-convert's parity check on the run's test split"),
        parity=window.record, streaming_parity=stream.record if stream is not None else None)


def _budgets(profile: Any, manifest: Manifest, analysis: ModelAnalysis, stream_analysis: Optional[ModelAnalysis],
             checks: tuple[Any, ...], figures: Any, *, on_target: bool, allow_over_budget: bool) -> Budgets:
    """The device's budgets checked on the model the detector runs (the streaming model when there is one)."""
    from kws_edge.bench import MEASURE_HOW

    running, hops_per_inference = manifest.running_model()
    running_analysis = stream_analysis if running is manifest.streaming_model else analysis
    fc = manifest.features
    arenas = {check.file: check for check in checks}
    running_arena = arenas.get(running.file)
    budgets = check_budgets(
        profile,
        model_bytes=running_analysis.model_bytes,
        activation_bytes=running_analysis.peak_activation_bytes,
        macs_per_inference=running_analysis.macs_per_inference,
        inferences_per_second=fc.hops_per_second / hops_per_inference,
        measured=figures.measured() if figures is not None else None,
        measured_on_target=figures is not None and on_target,
        measured_how=MEASURE_HOW,
        hops_per_second=fc.hops_per_second,
        quantization=running.quantization,
        unsupported_operators=sorted(set(analysis.tflm_unsupported) | set(
            stream_analysis.tflm_unsupported if stream_analysis is not None else ())),
        tflm_arena_bytes=arenas[MODEL_NAME].arena.arena_bytes if MODEL_NAME in arenas else None,
        tflm_build=arenas[MODEL_NAME].build.describe() if MODEL_NAME in arenas else "",
    )
    results = budgets.results
    tflm = None
    if checks:
        from .tflm import tflm_record

        for check in checks:
            tflm = tflm_record(tflm, check)
        if running_arena is not None and running.file != MODEL_NAME:
            results += (arena_result(profile, running_arena.arena.arena_bytes, build=running_arena.build.describe(),
                                     streaming=True),)
    costs = {MODEL_NAME: from_dict(ModelCost, analysis.to_dict())}
    if stream_analysis is not None and manifest.streaming_model is not None:
        costs[manifest.streaming_model.file] = from_dict(ModelCost, stream_analysis.to_dict())
    budgets = dataclasses.replace(
        budgets, results=results, profile=ProfileRef(name=profile.name, description=profile.description,
                                                     path=portable_path(profile.path) if profile.path else "",
                                                     runtime=profile.runtime),
        analysis=costs, tflm=tflm,
        measured_here=figures.measured() if figures is not None and not on_target else {})
    return dataclasses.replace(budgets, allowed_over_budget=bool(allow_over_budget and not budgets.within_budget))


def _budget_error(report: Budgets) -> BudgetExceeded:
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
