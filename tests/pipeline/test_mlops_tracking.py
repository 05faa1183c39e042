"""MLflow tracking against a real local store (sqlite in a temporary folder)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("mlflow", reason="needs the mlflow extra: pip install 'kws-edge[mlflow]'")

from test_mlops_report import TONE_BUNDLE, make_pipeline_folder  # noqa: E402

pytestmark = pytest.mark.skipif(not (TONE_BUNDLE / "manifest.json").exists(), reason="tests/data/tone_bundle is missing")


@pytest.mark.slow  # ~12 s of CPU, but creating the sqlite store (alembic migrations) took 48-135 s wall on a busy disk
def test_log_pipeline_to_sqlite_store(tmp_path, monkeypatch):
    import mlflow
    from mlflow.tracking import MlflowClient

    from kws_edge.pipeline.tracking import log_pipeline

    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)  # artifacts must go beside the database, not into the current directory
    out = make_pipeline_folder(tmp_path / "out")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    first = log_pipeline(out, uri)
    second = log_pipeline(out, uri)
    assert first["model_version"] == "1" and second["model_version"] == "2"

    mlflow.set_tracking_uri(uri)
    client = MlflowClient()
    run = client.get_run(first["run_id"])
    assert run.data.params["seed"] == "1234"
    assert run.data.params["model.architecture"] == "ds_cnn"
    assert run.data.params["data_sha256"] == "d" * 64
    assert run.data.metrics["int8.test_accuracy"] == pytest.approx(0.9087)
    assert run.data.metrics["float.test_accuracy"] == pytest.approx(0.9123)
    assert run.data.metrics["streaming.false_accepts_per_hour"] == pytest.approx(1.5)
    assert run.data.metrics["benchmark.cpu_ms_per_audio_s"] == pytest.approx(4.321)
    history = client.get_metric_history(first["run_id"], "train.val_accuracy")
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == pytest.approx([0.6, 0.82, 0.9])
    artifacts = {a.path for a in client.list_artifacts(first["run_id"], "bundle")}
    assert {"bundle/model.tflite", "bundle/manifest.json"} <= artifacts
    local = Path(mlflow.artifacts.download_artifacts(run_id=first["run_id"], artifact_path="bundle",
                                                     dst_path=str(tmp_path / "dl")))
    from kws_edge.bundle import load_bundle

    assert load_bundle(local).manifest.version == "1.2.3"  # the logged bundle verifies byte for byte
    versions = client.search_model_versions("name='demo'")
    assert sorted(str(v.version) for v in versions) == ["1", "2"]
    assert {v.run_id for v in versions} == {first["run_id"], second["run_id"]}
    assert (tmp_path / "mlartifacts").is_dir() and not any(cwd.iterdir())


def test_missing_bundle_is_one_clear_error(tmp_path):
    from kws_edge.errors import KwsError
    from kws_edge.pipeline.tracking import log_pipeline

    with pytest.raises(KwsError, match="run the pipeline up to the bundle stage"):
        log_pipeline(tmp_path, f"sqlite:///{tmp_path / 'm.db'}")
