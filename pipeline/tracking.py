"""Optional experiment tracking with MLflow (the ``mlflow`` extra).

:func:`log_pipeline` logs one pipeline output folder as an MLflow run:
parameters (the resolved training configuration, flattened; seed, device,
data and config hashes, code version), metrics (clip metrics of the float
and int8 models, streaming FRR and FA/h, model size and memory, benchmark
figures, reproducibility), artifacts (the bundle, the report, the ledger,
the evaluation) and a registered model version whose source is the logged
bundle. Works with any tracking URI MLflow accepts (``sqlite:///mlflow.db``,
``file:///path/mlruns``, ``http://server:5000``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from ..bundle import load_bundle
from ..config import flatten, to_dict
from ..errors import BackendUnavailableError, KwsError
from ..training.rundir import RunDir
from .ledger import read_json

__all__ = ["log_pipeline", "DEFAULT_EXPERIMENT", "flatten_params"]

DEFAULT_EXPERIMENT = "kws-edge"
_MAX_PARAM_LEN = 500


def _import_mlflow():
    try:
        import mlflow  # noqa: F401
        from mlflow.tracking import MlflowClient  # noqa: F401
    except ImportError:
        raise BackendUnavailableError("--mlflow-uri needs MLflow: pip install \"kws-edge[mlflow]\"") from None
    import mlflow

    return mlflow


def flatten_params(d: Any) -> dict[str, str]:
    """Nested config -> ``{"model.width": "64", ...}`` (lists as JSON, long values cut)."""
    return {k: (json.dumps(v) if isinstance(v, list) else str(v))[:_MAX_PARAM_LEN] for k, v in flatten(d).items()}


def _metric_name(text: str) -> str:
    return "".join(c if c.isalnum() or c in "_-./ " else "_" for c in text)


def log_pipeline(out_dir: str | Path, tracking_uri: Optional[str], *, experiment: str = DEFAULT_EXPERIMENT,
                 model_name: Optional[str] = None) -> dict[str, Any]:
    """Log a finished pipeline folder to MLflow; returns run id, experiment id and model version."""
    mlflow = _import_mlflow()
    from mlflow.tracking import MlflowClient

    out = Path(out_dir)
    try:
        m = load_bundle(out / "bundle").manifest
    except KwsError:
        raise KwsError(f"{out / 'bundle'} has no valid bundle; run the pipeline up to the bundle stage first") from None
    manifest = to_dict(m)
    ledger = read_json(out / "pipeline.json", {}) or {}
    run_dir = RunDir(out / "run")
    run_json, config = run_dir.run, to_dict(run_dir.config())
    report = m.metrics.streaming.report if m.metrics.streaming is not None else None
    streaming = to_dict(report.score) if report is not None else {}
    bench = (read_json(out / "benchmark.json", {}) or {}).get("hop", {})
    repro = read_json(out / "repro" / "reproducibility.json", None)
    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    try:
        if tracking_uri and tracking_uri.startswith("sqlite:///") and mlflow.get_experiment_by_name(experiment) is None:
            # keep a local store's artifacts beside its database, not in the current directory
            db = Path(tracking_uri[len("sqlite:///"):]).expanduser().resolve()
            mlflow.create_experiment(experiment, artifact_location=(db.parent / "mlartifacts").as_uri())
        mlflow.set_experiment(experiment)
    except Exception as exc:  # MLflow raises its own exception types for a bad store
        raise KwsError(f"cannot use MLflow tracking URI {tracking_uri!r}: {exc}") from None

    params = flatten_params(config)
    params.update({
        "pipeline.device": str((ledger.get("pipeline") or {}).get("device", "")),
        "pipeline.code_version": str(ledger.get("code_version", "")),
        "data_sha256": str(run_json.get("data_sha256", "")),
        "config_sha256": str(run_json.get("config_sha256", "")),
        "git_commit": str(run_json.get("git_commit", "")),
    })
    metrics: dict[str, float] = {}
    test = m.metrics.test
    for kind, clips in (("float", test.float_model if test else None),
                        (m.model.quantization, test.converted if test else None)):
        if clips is None:
            continue
        if clips.accuracy is not None:
            metrics[f"{kind}.test_accuracy"] = float(clips.accuracy)
        if clips.keyword_false_accept_rate is not None:
            metrics[f"{kind}.keyword_false_accept_rate"] = float(clips.keyword_false_accept_rate)
        for label, r in clips.recall.items():
            if r is not None:
                metrics[_metric_name(f"{kind}.recall.{label}")] = float(r)
    for key in ("false_reject_rate", "false_accepts_per_hour"):
        if isinstance(streaming.get(key), (int, float)):
            metrics[f"streaming.{key}"] = float(streaming[key])
    model = manifest["model"]
    for key in ("size_bytes", "peak_activation_bytes", "macs_per_inference"):
        if isinstance(model.get(key), (int, float)):
            metrics[f"model.{key}"] = float(model[key])
    for key in ("cpu_ms_per_audio_s", "hop_latency_median_ms", "hop_latency_p99_ms"):
        if isinstance(bench.get(key), (int, float)):
            metrics[f"benchmark.{key}"] = float(bench[key])
    if repro:
        metrics["reproducibility.max_weight_abs_diff"] = float(repro.get("max_weight_abs_diff", float("nan")))
        metrics["reproducibility.reproducible"] = 1.0 if repro.get("reproducible") else 0.0
    name = model_name or str(m.name or "kws-edge")

    with mlflow.start_run(run_name=f"{m.name}-{m.version}") as run:
        mlflow.log_params(params)
        mlflow.log_metrics(metrics)
        history = run_dir.history()
        for key, values in history.items():
            if isinstance(values, list):
                for step, v in enumerate(values):
                    if isinstance(v, (int, float)):
                        mlflow.log_metric(_metric_name(f"train.{key}"), float(v), step=step)
        mlflow.set_tags({"kws_edge.model_sha256": str(model.get("sha256", "")),
                         "kws_edge.bundle_version": m.version,
                         "kws_edge.out_dir": str(out.resolve())})
        mlflow.log_artifacts(str(out / "bundle"), artifact_path="bundle")
        if (out / "report").is_dir():
            mlflow.log_artifacts(str(out / "report"), artifact_path="report")
        if (out / "evaluation").is_dir():
            mlflow.log_artifacts(str(out / "evaluation"), artifact_path="evaluation")
        if (out / "pipeline.json").is_file():
            mlflow.log_artifact(str(out / "pipeline.json"))
        run_id = run.info.run_id
        experiment_id = run.info.experiment_id
        source = f"{run.info.artifact_uri.rstrip('/')}/bundle"

    client = MlflowClient()
    try:
        client.get_registered_model(name)
    except Exception:  # not registered yet
        client.create_registered_model(name, description="kws-edge keyword-spotting bundles")
    version = client.create_model_version(name, source=source, run_id=run_id,
                                          tags={"model_sha256": str(model.get("sha256", ""))})
    return {"run_id": run_id, "experiment_id": experiment_id, "model_name": name, "model_version": str(version.version),
            "tracking_uri": mlflow.get_tracking_uri(), "n_params": len(params), "n_metrics": len(metrics),
            "headline": f"MLflow run {run_id[:8]}, model {name} version {version.version}"}
