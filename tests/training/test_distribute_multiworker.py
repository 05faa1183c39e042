"""Scale-out training: two MultiWorkerMirroredStrategy workers on 127.0.0.1 against a one-worker run.

Three ``kws-train --strategy multiworker`` processes train the same recipe on
a small tone dataset written by the test (support.training_data): first a
one-worker reference (no TF_CONFIG), then two workers at once, each with its
own TF_CONFIG on free local ports and its own TMPDIR.

Tolerance (why not bit-exact): both runs see the same global batches (same
seeded shuffle, auto-shard policy DATA), and the model has neither BatchNorm
nor dropout, so the only difference is float summation order: one replica
averages the loss over 32 examples, two replicas average 16 each, scale by 1/2
and all-reduce the gradients. That rounding (~1e-7 relative per step) is
amplified a little by Adam over the steps; the weights must agree within
``WEIGHT_ATOL`` and the predicted classes of every validation and test clip
must be identical. The recipe keeps the default negative_class_weight (2.0),
which a distributed run applies as per-example sample weights.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytestmark = pytest.mark.slow  # three kws-train processes: ~45 s of CPU, 4-6 min wall on the shared 2-core box

from support.training_data import make_folder
from support.processes import kws_subprocess_env

WEIGHT_ATOL = 1e-5  # measured: 2e-7 largest difference after 3 epochs (9 steps)
TIMEOUT_S = 600

RECIPE = """\
epochs = 3
batch_size = 32
seed = 7
validation_percentage = 20.0
testing_percentage = 20.0
representative_samples = 50
[model]
architecture = "tiny_conv"
width = 8
depth = 1
dropout = 0.0
[augment]
copies = 1
"""


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _kws_train(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    cmd = [sys.executable, "-c", "from kws_edge.training.cli import main; main()", *args]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(procs: list[subprocess.Popen]) -> list[tuple[int, str, str]]:
    deadline = time.monotonic() + TIMEOUT_S
    out = []
    try:
        for p in procs:
            so, se = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
            out.append((p.returncode, so, se))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("distribute")
    data = make_folder(base / "data", n_speakers=30)
    recipe = base / "recipe.toml"
    recipe.write_text(RECIPE)
    env = kws_subprocess_env()
    env.pop("TF_CONFIG", None)
    env["KWS_EDGE_CACHE"] = str(base / "cache")
    common = ["--data", str(data), "--config", str(recipe), "--strategy", "multiworker", "-q", "--workers", "1"]

    t0 = time.monotonic()
    (ref,) = _finish([_kws_train(common + ["--out", str(base / "single")], env)])
    assert ref[0] == 0, ref[2][-3000:]
    t_single = time.monotonic() - t0

    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for i in range(2):
        wenv = dict(env)
        wenv["TF_CONFIG"] = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})
        (base / f"tmp{i}").mkdir()
        wenv["TMPDIR"] = str(base / f"tmp{i}")
        procs.append(_kws_train(common + ["--out", str(base / "multi")], wenv))
    t0 = time.monotonic()
    workers = _finish(procs)
    t_multi = time.monotonic() - t0
    for code, so, se in workers:
        assert code == 0, se[-3000:]
    print(f"\none-worker run {t_single:.0f} s, two-worker run {t_multi:.0f} s (wall, this machine)")
    return base, workers


def _load(run_dir: Path):
    from kws_edge.training.rundir import open_run

    return open_run(run_dir)


def test_both_workers_finish_and_only_the_chief_writes(runs):
    base, workers = runs
    assert "worker-1 of 2 finished; the chief writes the run directory" in workers[1][1]
    assert "validation" in workers[0][1]  # the chief prints the metrics table
    run = _load(base / "multi")
    summary = json.loads((run.path / "training_summary.json").read_text())
    assert summary["distribution"] == {"strategy": "multiworker", "num_replicas_in_sync": 2, "task_type": "worker",
                                       "task_index": 0, "num_workers": 2, "is_chief": True,
                                       "resumed_from_epoch": 0}
    # the non-chief wrote into its TMPDIR only, and removed it; the backups are gone after fit
    for i in range(2):
        assert list((base / f"tmp{i}").iterdir()) == []
    assert not (base / "multi.backup").exists() and not (base / "single.backup").exists()
    assert len(run.history()["loss"]) == 3


def test_two_workers_match_one_worker_with_the_same_global_batch(runs):
    base, _ = runs
    single, multi = _load(base / "single"), _load(base / "multi")
    ws, wm = single.load_keras_model().get_weights(), multi.load_keras_model().get_weights()
    for a, b in zip(ws, wm, strict=True):
        np.testing.assert_allclose(a, b, atol=WEIGHT_ATOL, rtol=0)
    max_diff = max(float(np.max(np.abs(a - b))) for a, b in zip(ws, wm))
    print(f"\nlargest weight difference, 2 workers vs 1: {max_diff:.2e}")
    for split in ("validation", "test"):
        assert multi.metrics()[split]["confusion_matrix"] == single.metrics()[split]["confusion_matrix"]
    assert multi.run["data_sha256"] == single.run["data_sha256"]


def test_second_run_reads_every_feature_from_the_cache(runs):
    base, _ = runs
    first = json.loads((base / "single" / "training_summary.json").read_text())["feature_cache"]
    again = json.loads((base / "multi" / "training_summary.json").read_text())["feature_cache"]
    assert first["computed"] == first["clips"] > 0 and first["hits"] == 0
    assert first["augmented_computed"] > 0 and first["augmented_hits"] == 0
    assert again == {"clips": first["clips"], "hits": first["clips"], "computed": 0,
                     "augmented_hits": first["augmented_computed"], "augmented_computed": 0}


def test_killed_cluster_resumes_from_each_workers_backup(runs):
    """Both workers are killed (SIGKILL) once epoch 2 is backed up, then restarted: they resume at epoch 2."""
    base, _ = runs
    recipe = base / "recipe8.toml"
    recipe.write_text(RECIPE.replace("epochs = 3", "epochs = 8"))
    env = kws_subprocess_env()
    env["KWS_EDGE_CACHE"] = str(base / "cache")
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    args = ["--data", str(base / "data"), "--config", str(recipe), "--strategy", "multiworker", "-q",
            "--workers", "1", "--out", str(base / "killed")]
    envs = [dict(env, TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}))
            for i in range(2)]
    metas = [base / "killed.backup" / f"worker-{i}" / "training_metadata.json" for i in range(2)]

    def saved(path: Path) -> int:
        try:
            return json.loads(path.read_text())["epoch"]
        except (OSError, ValueError, KeyError):
            return 0

    procs = [_kws_train(args, e) for e in envs]
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while min(saved(m) for m in metas) < 2:
            assert all(p.poll() is None for p in procs), "a worker ended before epoch 2 was backed up"
            assert time.monotonic() < deadline, "no backup of epoch 2 in time"
            time.sleep(0.2)
    finally:
        for p in procs:
            p.kill()
            p.communicate()
    epoch = min(saved(m) for m in metas)
    assert 2 <= epoch < 8 and json.loads((base / "killed" / "run.json").read_text())["status"] == "incomplete"
    results = _finish([_kws_train(args, e) for e in envs])
    assert [r[0] for r in results] == [0, 0], results[0][2][-3000:] + results[1][2][-3000:]
    run = _load(base / "killed")
    summary = json.loads((run.path / "training_summary.json").read_text())
    assert summary["distribution"]["resumed_from_epoch"] == epoch
    assert len(run.history()["loss"]) == 8 - epoch
    assert not (base / "killed.backup").exists()
