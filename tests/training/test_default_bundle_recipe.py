"""The shipped bundles' recipe (make_bundle.sh): refuses a dirty tree; the manifest clean-up script keeps every fact."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "training" / "recipes" / "make_bundle.sh"
CLEAN = REPO / "training" / "recipes" / "clean_manifest_paths.py"


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                   env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@t"})


@pytest.fixture
def recipe_repo(tmp_path):
    """A git repository holding the recipe, with stand-in kws-train/kws-convert that record being called."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    repo = tmp_path / "repo"
    (repo / "training" / "recipes").mkdir(parents=True)
    (repo / "kws_edge" / "default_bundle").mkdir(parents=True)
    shutil.copy(RECIPE, repo / "training" / "recipes" / RECIPE.name)
    (repo / "kws_edge" / "default_bundle" / "manifest.json").write_text("{}\n")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "init")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("kws-train", "kws-convert"):
        (bin_dir / tool).write_text(f"#!/bin/sh\necho {tool} >> {tmp_path / 'called'}\nexit 3\n")
        (bin_dir / tool).chmod(0o755)
    return repo, bin_dir, tmp_path / "called"


def _run(repo: Path, bin_dir: Path, tier: str = "default", **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "training/recipes/make_bundle.sh", tier, str(repo / "work")],
                          cwd=repo, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
                               "TEACHER_SEEDS": "", "DATA": str(repo / "data"), **env})


def test_recipe_refuses_a_dirty_tree_for_the_shipped_bundle(recipe_repo):
    repo, bin_dir, called = recipe_repo
    (repo / "kws_edge" / "default_bundle" / "manifest.json").write_text('{"changed": 1}\n')
    proc = _run(repo, bin_dir)
    assert proc.returncode == 2
    assert "uncommitted changes" in proc.stderr and "ALLOW_DIRTY=1" in proc.stderr
    assert not called.exists()  # nothing was trained
    proc = _run(repo, bin_dir, ALLOW_DIRTY="1")  # the explicit override goes on (to the stand-in trainer)
    assert proc.returncode == 3 and called.read_text().split() == ["kws-train"]


def test_recipe_refuses_a_dirty_tree_for_either_tier(recipe_repo):
    repo, bin_dir, called = recipe_repo
    (repo / "kws_edge" / "micro_bundle").mkdir()
    (repo / "kws_edge" / "micro_bundle" / "manifest.json").write_text('{"changed": 1}\n')
    _git(repo, "add", ".")
    (repo / "kws_edge" / "micro_bundle" / "manifest.json").write_text('{"changed": 2}\n')
    proc = _run(repo, bin_dir, tier="micro")
    assert proc.returncode == 2 and "uncommitted changes" in proc.stderr
    assert not called.exists()


def test_recipe_names_its_tiers(recipe_repo):
    repo, bin_dir, called = recipe_repo
    proc = _run(repo, bin_dir, tier="huge")
    assert proc.returncode == 2 and "usage: bash training/recipes/make_bundle.sh default|micro" in proc.stderr
    assert not called.exists()


def test_recipe_runs_on_a_clean_tree(recipe_repo):
    repo, bin_dir, called = recipe_repo
    proc = _run(repo, bin_dir)
    assert proc.returncode == 3 and called.read_text().split() == ["kws-train"], proc.stderr


def test_clean_manifest_paths_changes_only_absolute_paths(tmp_path):
    manifest = {"name": "x", "provenance": {"run_dir": "/build/box/ship/run", "git_commit": "abc+dirty",
                                            "run": {"distilled_from": [{"path": "/build/box/t1", "seed": 1}]},
                                            "config": {"data": "../shared/data/sc"}},
                "budgets": {"profile": {"path": "/src/devices/x86-64.toml", "name": "x86-64"}}}
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(manifest))
    proc = subprocess.run([sys.executable, str(CLEAN), str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "3 absolute paths replaced" in proc.stdout, proc.stderr
    cleaned = json.loads(path.read_text())
    assert cleaned["provenance"]["run_dir"] == "run"
    assert cleaned["provenance"]["run"]["distilled_from"] == [{"path": "t1", "seed": 1}]
    assert cleaned["provenance"]["git_commit"] == "abc+dirty"  # facts stay as recorded
    assert cleaned["provenance"]["config"]["data"] == "../shared/data/sc"  # relative: as given
    assert cleaned["budgets"]["profile"] == {"path": "x86-64.toml", "name": "x86-64"}
    proc = subprocess.run([sys.executable, str(CLEAN), str(path)], capture_output=True, text=True, timeout=60)
    assert "0 absolute paths replaced" in proc.stdout  # idempotent


@pytest.mark.parametrize("tier", ["default", "micro"])
def test_each_shipped_bundle_was_trained_with_its_recipe(tier):
    """The tier's recipe, as ``make_bundle.sh`` passes it to kws-train, is the training configuration the
    shipped bundle records (seed included: a recipe that named another seed reproduced another model)."""
    from kws_edge.bundle import load_bundle, shipped_bundle_path
    from kws_edge.config import from_dict, to_dict
    from kws_edge.training.config import TrainConfig, load_config

    manifest = load_bundle(shipped_bundle_path(tier)).manifest
    shipped = to_dict(from_dict(TrainConfig, manifest.provenance.config))
    recipe = to_dict(load_config(REPO / "training" / "recipes" / f"yes_no_{tier}.toml"))
    # make_bundle.sh gives the data folders and the teachers on the command line
    assert len(shipped.pop("data")) == 2 and recipe.pop("data") == "synthetic"
    assert len(shipped.pop("distill_from")) == 2 and recipe.pop("distill_from") == []
    assert shipped == recipe
    teacher = load_config(REPO / "training" / "recipes" / "yes_no_teacher.toml")
    teachers = manifest.provenance.run.distilled_from
    assert [t.seed for t in teachers] == [1, 2]  # make_bundle.sh's TEACHER_SEEDS
    assert {(t.architecture, t.width) for t in teachers} == {(teacher.model.architecture, teacher.model.width)}
