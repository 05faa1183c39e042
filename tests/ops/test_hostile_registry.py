"""Registry faults (issue 22, cases 11-13 and the lesser registry items).

11: ``kws registry add`` on a full disk: one line, the documented disk-full exit status 1, nothing left.
12: a ``stages.json`` with the wrong types: one line, exit 2, no traceback.
13: the folders of adds killed midway are removed by the next command.
Lesser: a stage pointing at a missing version is flagged by ``list``; a Ctrl-C after an add committed
is not reported as ``interrupted``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support.hostile import assert_one_error_line, fill, run_kws, small_disk  # noqa: F401 (fixture)


@pytest.fixture
def registry(tmp_path) -> Path:
    return tmp_path / "registry"


def _add(capfd, registry, bundle):
    return run_kws(capfd, "registry", "--registry", registry, "add", bundle)


# ---------------------------------------------------------------- case 12: stages.json validated strictly
@pytest.mark.parametrize("stages", [
    {"format_version": 1, "stages": {"production": ["a", "b"]}, "history": []},
    {"format_version": 1, "stages": {}, "history": "a string"},
    {"format_version": 1, "stages": {}, "history": [1, 2]},
    {"format_version": 1, "stages": {"production": 7}, "history": []},
    {"format_version": 1, "stages": {"nightly": "0123456789abcdef"}, "history": []},
    {"format_version": "1", "stages": {}, "history": []},
    [1, 2, 3],
])
@pytest.mark.parametrize("command", [["list"], ["promote", "candidate"], ["show", "production"], ["add", "BUNDLE"]])
def test_case12_stages_json_with_wrong_types(capfd, registry, tone_bundle_path, stages, command):
    registry.mkdir()
    (registry / "stages.json").write_text(json.dumps(stages))
    argv = [str(tone_bundle_path) if a == "BUNDLE" else a for a in command]
    code, out, err = run_kws(capfd, "registry", "--registry", registry, *argv)
    assert_one_error_line(code, err, "stages.json is damaged")


# ---------------------------------------------------------------- case 13: leftovers of killed adds
def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_case13_leftovers_of_killed_adds_are_removed_by_the_next_command(capfd, registry, tone_bundle_path):
    code, out, err = _add(capfd, registry, tone_bundle_path)
    assert code == 0, err
    versions = registry / "versions"
    dead = _dead_pid()
    # what `kill -9` during the copy leaves: a half-copied bundle in a temporary folder of the dead process
    leftovers = [versions / f".add-0123456789abcdef-{dead}-k{i}" for i in range(3)]
    for d in leftovers:
        shutil.copytree(tone_bundle_path, d / "bundle")
    alive = versions / f".add-fedcba9876543210-{os.getpid()}-live"  # a concurrent add still running: kept
    alive.mkdir()
    code, out, err = run_kws(capfd, "registry", "--registry", registry, "list")
    assert code == 0, err
    assert not any(d.exists() for d in leftovers) and alive.exists()
    assert err.count("leftover of an interrupted add") == 3
    # and an add cleans them too
    for d in leftovers:
        shutil.copytree(tone_bundle_path, d / "bundle")
    code, out, err = _add(capfd, registry, tone_bundle_path.parent / "tone_tcn_bundle")
    assert code == 0, err
    assert not any(d.exists() for d in leftovers)


# ---------------------------------------------------------------- lesser: dangling stage
def test_stage_pointing_at_a_missing_version_is_flagged(capfd, registry, tone_bundle_path):
    code, out, err = run_kws(capfd, "registry", "--registry", registry, "add", tone_bundle_path, "--stage",
                             "production")
    assert code == 0, err
    vid = json.loads((registry / "stages.json").read_text())["stages"]["production"]
    shutil.rmtree(registry / "versions" / vid, onerror=lambda f, p, e: (os.chmod(p, 0o700), f(p)))
    code, out, err = run_kws(capfd, "registry", "--registry", registry, "list")
    assert f"stage production points at {vid}" in err and "not in the registry" in err
    code, out, err = run_kws(capfd, "registry", "--registry", registry, "list", "--json")
    assert json.loads(out)["dangling_stages"] == {"production": vid}


# ---------------------------------------------------------------- lesser: SIGINT after the commit
def test_ctrl_c_after_the_add_committed_is_not_reported_as_interrupted(capfd, registry, tone_bundle_path,
                                                                       monkeypatch):
    import signal

    from kws_edge.workstation.registry import ModelRegistry

    real = ModelRegistry._log_event_locked

    def log_then_ctrl_c(self, event):  # Ctrl-C lands right after the version was renamed into place
        real(self, event)
        os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(ModelRegistry, "_log_event_locked", log_then_ctrl_c)
    code, out, err = _add(capfd, registry, tone_bundle_path)
    assert code == 0 and "registered" in out and "interrupted;" not in err, (code, out, err)
    assert "Ctrl-C arrived after" in err
    monkeypatch.undo()
    code, out, err = run_kws(capfd, "registry", "--registry", registry, "list", "--json")
    assert len(json.loads(out)["versions"]) == 1


# ---------------------------------------------------------------- case 11: full disk
def test_case11_registry_add_on_a_full_disk(capfd, small_disk, tone_bundle_path):
    registry = small_disk / "registry"
    fill(small_disk, 12 * 1024)  # room for the lock and a folder, not for the 5.6 KB model plus manifest copies
    code, out, err = _add(capfd, registry, tone_bundle_path.parent / "tone_tcn_bundle")  # 126 KB of models
    line = assert_one_error_line(code, err, "no space left", status=1)
    assert len(line) < 300
    versions = registry / "versions"
    assert not versions.exists() or not any(p.name.startswith(".add-") for p in versions.iterdir())
