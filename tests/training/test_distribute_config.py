"""TF_CONFIG parsing and validation, chief detection, strategy/TF_CONFIG mismatches, the per-worker paths.

No TensorFlow needed except for the last tests (the CLI one-line errors and
the resume test, which uses a one-replica MirroredStrategy in this process).
"""

from __future__ import annotations

import json

import pytest
from kws_edge.training.distribute import (
    Distribution,
    WorkerRole,
    backup_dir_for,
    parse_tf_config,
    worker_role,
)

from kws_edge.errors import ConfigError


def _tf_config(cluster, task) -> str:
    return json.dumps({"cluster": cluster, "task": task})


TWO = {"worker": ["10.0.0.1:2222", "10.0.0.2:2222"]}


def test_unset_or_empty_tf_config_is_a_single_worker():
    assert parse_tf_config(None) is None and parse_tf_config("  ") is None
    role = worker_role("multiworker", {})
    assert role == WorkerRole() and role.is_chief and role.num_workers == 1


def test_worker_zero_is_chief_without_a_chief_job():
    r0 = parse_tf_config(_tf_config(TWO, {"type": "worker", "index": 0}))
    r1 = parse_tf_config(_tf_config(TWO, {"type": "worker", "index": 1}))
    assert (r0.is_chief, r1.is_chief) == (True, False)
    assert r0.num_workers == r1.num_workers == 2 and r1.name == "worker-1"
    assert r0.addresses == ("10.0.0.1:2222", "10.0.0.2:2222")


def test_a_chief_job_is_the_chief_and_counts_as_a_worker():
    cluster = {"chief": ["c:2222"], "worker": ["w0:2222", "w1:2222"]}
    chief = parse_tf_config(_tf_config(cluster, {"type": "chief", "index": 0}))
    w0 = parse_tf_config(_tf_config(cluster, {"type": "worker", "index": 0}))
    assert chief.is_chief and not w0.is_chief and chief.num_workers == w0.num_workers == 3


@pytest.mark.parametrize("text, match", [
    ("{not json", "TF_CONFIG is not valid JSON"),
    (json.dumps({"task": {"type": "worker", "index": 0}}), 'needs a "cluster" object'),
    (_tf_config({"worker": ["a:1"], "ps": ["p:1"]}, {"type": "worker", "index": 0}), "'ps' jobs"),
    (_tf_config({"worker": "a:1"}, {"type": "worker", "index": 0}), "must be a list of 'host:port'"),
    (_tf_config({"worker": ["a"]}, {"type": "worker", "index": 0}), "address 'a' is not 'host:port'"),
    (_tf_config({"worker": ["a:70000"]}, {"type": "worker", "index": 0}), "port in 1..65535"),
    (_tf_config({"worker": ["a:1", "a:1"]}, {"type": "worker", "index": 0}), "lists 'a:1' twice"),
    (_tf_config({"chief": ["c:1", "d:1"]}, {"type": "chief", "index": 0}), "at most one"),
    (_tf_config({"worker": []}, {"type": "worker", "index": 0}), "lists no workers"),
    (_tf_config(TWO, {"type": "evaluator", "index": 0}), "expected 'chief' or 'worker'"),
    (_tf_config(TWO, {"type": "worker", "index": 2}), "task worker:2 is not in the cluster"),
    (_tf_config(TWO, {"type": "worker", "index": "1"}), "must be an integer"),
    (_tf_config(TWO, {"type": "chief", "index": 0}), "task chief:0 is not in the cluster"),
])
def test_bad_tf_config_is_one_clear_config_error(text, match):
    with pytest.raises(ConfigError, match=match) as exc:
        parse_tf_config(text)
    assert "\n" not in str(exc.value)


def test_strategy_names_and_mismatch_with_a_cluster():
    env = {"TF_CONFIG": _tf_config(TWO, {"type": "worker", "index": 1})}
    with pytest.raises(ConfigError, match="unknown strategy 'horovod'"):
        worker_role("horovod", {})
    for name in ("default", "mirrored"):
        with pytest.raises(ConfigError, match="2-worker cluster but --strategy is .*use --strategy multiworker"):
            worker_role(name, env)
    assert worker_role("multiworker", env).name == "worker-1"
    # a one-worker TF_CONFIG is harmless for the local strategies
    one = {"TF_CONFIG": _tf_config({"worker": ["localhost:1"]}, {"type": "worker", "index": 0})}
    assert worker_role("mirrored", one) == WorkerRole()


def test_write_dir_and_backup_dir_per_worker(tmp_path):
    chief = Distribution("multiworker", WorkerRole(), None)
    assert chief.write_dir(tmp_path / "run") == tmp_path / "run"
    other = Distribution("multiworker", WorkerRole(task_index=1, num_workers=2, is_chief=False), None)
    scratch = other.write_dir(tmp_path / "run")
    assert not str(scratch).startswith(str(tmp_path)) and scratch.parent.is_dir()
    scratch.mkdir()
    (scratch / "model.keras").write_bytes(b"x")
    other.cleanup()
    assert not scratch.parent.exists()
    # backups sit next to the run directory (which a restart resets), one folder per worker
    assert backup_dir_for(tmp_path / "run", other.role) == tmp_path / "run.backup" / "worker-1"
    assert other.saved_epoch() == 0


def test_global_batch_must_split_evenly_over_replicas():
    class TwoReplicas:
        num_replicas_in_sync = 2

    dist = Distribution("mirrored", WorkerRole(), TwoReplicas())
    with pytest.raises(ConfigError, match="batch_size=33 is the global batch and must be divisible by the 2"):
        dist.check_batch(33, 1000)
    with pytest.raises(ConfigError, match="only 10 training examples for a global batch of 32"):
        dist.check_batch(32, 10)
    dist.check_batch(32, 32)


# -- with TensorFlow -----------------------------------------------------------------------------

@pytest.mark.parametrize("tf_config, strategy, match", [
    ("{oops", "multiworker", "TF_CONFIG is not valid JSON"),
    (_tf_config(TWO, {"type": "worker", "index": 0}), "mirrored", "use --strategy multiworker"),
])
def test_cli_bad_cluster_is_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys, tf_config, strategy, match):
    pytest.importorskip("tensorflow")
    from kws_edge.training.cli import main

    monkeypatch.setenv("TF_CONFIG", tf_config)
    with pytest.raises(SystemExit) as exc:
        main(["--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run"), "--strategy", strategy, "-q"])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and match in err and "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


@pytest.mark.slow  # ~15 s of CPU, but 2 minutes wall on the shared 2-core box
def test_restarted_run_resumes_at_the_saved_epoch(tmp_path, monkeypatch):
    """BackupAndRestore: a run stopped after epoch 2 of 4 resumes at epoch 2 when started again."""
    pytest.importorskip("tensorflow")
    import dataclasses

    from support.training_data import make_folder
    from kws_edge.training.config import TrainConfig
    from kws_edge.training.fit import train
    from kws_edge.training.models import preset

    monkeypatch.delenv("TF_CONFIG", raising=False)
    monkeypatch.setenv("KWS_EDGE_CACHE", str(tmp_path / "cache"))
    data = make_folder(tmp_path / "data", n_speakers=12)
    cfg = TrainConfig(data=str(data), model=dataclasses.replace(preset("tiny_conv"), dropout=0.0), epochs=4,
                      batch_size=16, validation_percentage=25.0, testing_percentage=25.0, representative_samples=10,
                      augment=dataclasses.replace(TrainConfig().augment, copies=0))
    out = tmp_path / "run"

    def stop_after_two(stage, done, total):
        if stage == "epoch" and done == 3:  # epoch 3 ends: stop before its backup is written
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, out, workers=1, strategy="mirrored", progress=stop_after_two)
    meta = json.loads((tmp_path / "run.backup" / "worker-0" / "training_metadata.json").read_text())
    assert meta["epoch"] == 2 and json.loads((out / "run.json").read_text())["status"] == "incomplete"

    epochs_seen = []
    run = train(cfg, out, workers=1, strategy="mirrored",
                progress=lambda stage, done, total: epochs_seen.append(done) if stage == "epoch" else None)
    summary = json.loads((run.path / "training_summary.json").read_text())
    assert summary["distribution"]["resumed_from_epoch"] == 2 and summary["distribution"]["strategy"] == "mirrored"
    assert epochs_seen == [3, 4] and len(run.history()["loss"]) == 2
    assert run.is_complete and not (tmp_path / "run.backup").exists()
    assert summary["feature_cache"]["computed"] == 0  # the restart read every clean feature from the cache
