"""Local model registry: content addressing, stages, diff, broken entries, two concurrent processes."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kws_edge.bundle import Budgets, Metrics, Provenance, load_bundle, save_bundle
from kws_edge.bundle.metrics import SplitMetrics
from kws_edge.bundle.provenance import RunRecord
from kws_edge.metrics import ClipMetrics
from kws_edge.errors import RegistryError
from kws_edge.workstation.registry import ModelRegistry

TONE_BUNDLE = Path(__file__).resolve().parents[1] / "data" / "tone_bundle"
pytestmark = pytest.mark.skipif(not (TONE_BUNDLE / "manifest.json").exists(),
                                reason="tests/data/tone_bundle is missing (cd tests && python -m support.tone_bundle)")


def make_bundle(out: Path, version: str, *, accuracy: float = 0.9, data_sha: str = "d" * 64,
                epochs: int = 10) -> Path:
    """A real bundle (the tone model) with its own version, metrics and provenance."""
    b = load_bundle(TONE_BUNDLE)
    manifest = dataclasses.replace(
        b.manifest,
        version=version,
        metrics=Metrics(test=SplitMetrics(
            float_model=ClipMetrics(accuracy=accuracy, recall={"yes": accuracy - 0.05}),
            converted=ClipMetrics(accuracy=accuracy - 0.01, confusion_matrix=((1, 0), (0, 1))))),
        provenance=Provenance(run=RunRecord(git_commit="abc123", data_sha256=data_sha, seed=1),
                              config={"epochs": epochs, "model": {"name": "ds_cnn"}}),
        budgets=Budgets(device="raspberry-pi-4b"),
    )
    save_bundle(out, manifest, b.model_bytes, overwrite=True)
    return out


def test_add_is_content_addressed_and_idempotent(tmp_path):
    reg = ModelRegistry(tmp_path / "reg")
    b1 = make_bundle(tmp_path / "b1", "1.0.0")
    e1, created = reg.add(b1)
    assert created and len(e1.id) == 16
    e1b, created_again = reg.add(b1)
    assert e1b.id == e1.id and not created_again
    b2 = make_bundle(tmp_path / "b2", "1.0.1")
    e2, _ = reg.add(b2, stage="candidate")
    assert e2.id != e1.id and e2.stages == ("candidate",)
    listing = reg.list()
    assert [e.id for e in listing.entries] == [e1.id, e2.id] and not listing.broken
    # the registered copy is byte-identical, read-only, and loads as a bundle
    assert load_bundle(e1.bundle_path).manifest.version == "1.0.0"
    assert not os.access(e1.bundle_path / "model.tflite", os.W_OK) or os.geteuid() == 0
    assert oct((e1.bundle_path / "model.tflite").stat().st_mode & 0o777) == "0o444"
    # references: prefix, stage, name@version
    assert reg.resolve(e1.id[:6]) == e1.id
    assert reg.resolve("candidate") == e2.id
    assert reg.resolve("tone-test@1.0.0") == e1.id


def test_promote_moves_previous_production_to_archived(tmp_path):
    reg = ModelRegistry(tmp_path / "reg")
    e1, _ = reg.add(make_bundle(tmp_path / "b1", "1"))
    e2, _ = reg.add(make_bundle(tmp_path / "b2", "2"), stage="candidate")
    assert reg.promote(e1.id, "production") is None
    assert reg.promote("candidate", "production") == e1.id
    assert reg.stages() == {"production": e2.id, "archived": e1.id}
    events = [h["event"] for h in reg.history()]
    assert events.count("add") == 2 and events.count("promote") == 3
    with pytest.raises(RegistryError, match="unknown stage"):
        reg.promote(e1.id, "staging")
    with pytest.raises(RegistryError, match="no version is in stage 'candidate'"):
        reg.get("candidate")


def test_diff_reports_metrics_config_and_data(tmp_path):
    reg = ModelRegistry(tmp_path / "reg")
    a, _ = reg.add(make_bundle(tmp_path / "a", "1", accuracy=0.90, epochs=10))
    b, _ = reg.add(make_bundle(tmp_path / "b", "2", accuracy=0.95, epochs=20, data_sha="e" * 64))
    d = reg.diff(a.id, b.id)
    acc = {m["key"]: m for m in d["metrics"]}
    key = "test.float_model.accuracy"  # the same figure has the same path in every manifest (typed metrics)
    assert acc[key]["a"] == 0.90 and acc[key]["b"] == 0.95
    assert acc[key]["delta"] == pytest.approx(0.05)
    assert not any("confusion" in k for k in acc)
    assert {"key": "epochs", "a": 10, "b": 20} in d["config"]
    assert all(c["key"] != "model.name" for c in d["config"])  # unchanged keys are left out
    assert d["data"] == {"a": "d" * 64, "b": "e" * 64, "same": False}
    assert reg.diff(a.id, a.id)["identical"] is True


def test_tampered_bundle_is_refused(tmp_path):
    b = make_bundle(tmp_path / "b", "1")
    (b / "model.tflite").write_bytes((b / "model.tflite").read_bytes()[:-1] + b"\0")
    with pytest.raises(RegistryError, match="cannot register"):
        ModelRegistry(tmp_path / "reg").add(b)


@pytest.mark.parametrize("damage", ["edited model", "deleted entry.json", "garbage entry.json", "missing bundle"])
def test_broken_entry_is_reported_not_fatal(tmp_path, damage):
    reg = ModelRegistry(tmp_path / "reg")
    good, _ = reg.add(make_bundle(tmp_path / "g", "1"))
    bad, _ = reg.add(make_bundle(tmp_path / "b", "2"), stage="candidate")
    target = bad.path
    if damage == "edited model":
        p = target / "bundle" / "model.tflite"
        os.chmod(p, 0o644)
        p.write_bytes(p.read_bytes() + b"x")
    elif damage == "deleted entry.json":
        os.chmod(target / "entry.json", 0o644)
        (target / "entry.json").unlink()
    elif damage == "garbage entry.json":
        os.chmod(target / "entry.json", 0o644)
        (target / "entry.json").write_text("{trunc")
    else:
        import shutil

        shutil.rmtree(target / "bundle")
    listing = reg.list()
    assert [e.id for e in listing.entries] == [good.id]
    assert [b.id for b in listing.broken] == [bad.id]
    assert listing.broken[0].reason and listing.broken[0].stages == ("candidate",)
    with pytest.raises(RegistryError, match="is broken"):
        reg.get(bad.id)
    with pytest.raises(RegistryError, match="is broken"):
        reg.promote(bad.id, "production")
    assert reg.get(good.id).id == good.id
    reg.promote(good.id, "production")
    # re-adding the same content repairs a damaged version (the wreck is moved aside)
    e, created = reg.add(tmp_path / "b")
    assert created and e.id == bad.id and not reg.list().broken


WORKER = textwrap.dedent("""
    import sys, json
    sys.path.insert(0, {tests!r})
    from pathlib import Path
    from test_mlops_registry import make_bundle
    from kws_edge.workstation.registry import ModelRegistry
    reg = ModelRegistry(sys.argv[1]); tag = sys.argv[2]; work = Path(sys.argv[3])
    ids = []
    for i in range(int(sys.argv[4])):
        b = make_bundle(work / f"{{tag}}-{{i}}", f"{{tag}}.{{i}}", accuracy=0.5 + i / 100)
        e, created = reg.add(b, stage="candidate")
        assert created
        reg.promote(e.id, "production")
        ids.append(e.id)
    print(json.dumps(ids))
""")


def test_two_processes_write_concurrently_without_corruption(tmp_path):
    root = tmp_path / "reg"
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(tests=str(Path(__file__).resolve().parent)))
    n = 8
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    procs = [subprocess.Popen([sys.executable, str(script), str(root), tag, str(tmp_path), str(n)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for tag in ("a", "b")]
    outs = [p.communicate(timeout=180) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
    ids = [i for out, _ in outs for i in json.loads(out)]
    assert len(set(ids)) == 2 * n
    reg = ModelRegistry(root)
    listing = reg.list()
    assert not listing.broken
    assert sorted(e.id for e in listing.entries) == sorted(ids)
    data = json.loads((root / "stages.json").read_text())
    events = data["history"]
    assert sum(e["event"] == "add" for e in events) == 2 * n
    assert sum(e["event"] == "promote" for e in events) == 4 * n  # candidate + production for each
    assert data["stages"]["production"] in ids
    assert not [p for p in (root / "versions").iterdir() if p.name.startswith(".")]  # no temp leftovers
