"""Hostile manifests (issue 22, cases 4-6), the bundle digest, and ``kws info`` validating what the runtime does.

Every damaged manifest gives one ``error:`` line and exit status 2 from ``kws info``/``kws detect``, and a
``KwsError`` from ``KeywordDetector.from_bundle()``; never a traceback, never a silent wrong detector.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support.hostile import assert_one_error_line, run_kws
from kws_edge.bundle import FORMAT_VERSION, load_bundle
from kws_edge.errors import KwsError

ROOT = Path(__file__).resolve().parents[2]


def _edit(bundle: Path, fn) -> None:
    path = bundle / "manifest.json"
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


def _restamp(bundle: Path) -> None:
    """Edit-then-restamp: the digest is right, so the specific check is the one that must refuse."""
    from kws_edge.digest import stamp_bundle

    try:
        stamp_bundle(bundle)
    except KwsError:
        pass  # stamping verifies by loading; the test below checks the refusal


def _assert_refused_everywhere(capfd, bundle: Path, wav: Path, match: str | None = None) -> None:
    from kws_edge.detector import KeywordDetector

    for argv in (["info", bundle], ["detect", wav, "--bundle", bundle], ["classify", wav, "--bundle", bundle]):
        code, out, err = run_kws(capfd, *argv)
        assert_one_error_line(code, err, match)
    with pytest.raises(KwsError):
        KeywordDetector.from_bundle(bundle)


# ---------------------------------------------------------------- case 4: nesting
@pytest.mark.parametrize("depth", [100_000, 1_000, 40])
def test_case04_deeply_nested_manifest(capfd, tone_bundle_copy, tone_bundle_path, depth):
    path = tone_bundle_copy / "manifest.json"
    text = path.read_text()
    head, _, tail = text.rpartition("}")
    path.write_text(head + ', "provenance_extra": ' + "[" * depth + "]" * depth + "}" + tail)
    _assert_refused_everywhere(capfd, tone_bundle_copy, tone_bundle_path.parent / "tone_yes.wav", "nest")


# ---------------------------------------------------------------- cases 5 and 6: non-finite and absurd numbers
@pytest.mark.parametrize("edit", [
    pytest.param(lambda d: d["detector"].update(smoothing_window_ms=math.inf), id="smoothing-inf"),
    pytest.param(lambda d: d["detector"].update(smoothing_window_ms=1e300), id="smoothing-1e300"),
    pytest.param(lambda d: d["detector"].update(suppression_ms=math.nan), id="suppression-nan"),
    pytest.param(lambda d: d["detector"].update(default_threshold=math.nan), id="threshold-nan"),
    pytest.param(lambda d: d["normalization"]["mean"].__setitem__(0, math.nan), id="mean-nan"),
    pytest.param(lambda d: d["normalization"]["mean"].__setitem__(3, -math.inf), id="mean-inf"),
    pytest.param(lambda d: d["normalization"]["std"].__setitem__(2, 1e-300), id="std-1e-300"),
    pytest.param(lambda d: d["normalization"]["std"].__setitem__(2, math.inf), id="std-inf"),
    pytest.param(lambda d: d["features"].update(sample_rate_hz=10**30), id="rate-1e30"),
    pytest.param(lambda d: d["features"].update(energy_floor=math.nan), id="floor-nan"),
    pytest.param(lambda d: d["model"].update(peak_activation_bytes=10**400), id="int-400-digits"),
])
def test_case05_06_non_finite_or_absurd_numbers(capfd, tone_bundle_copy, tone_bundle_path, edit):
    _edit(tone_bundle_copy, edit)
    _restamp(tone_bundle_copy)
    _assert_refused_everywhere(capfd, tone_bundle_copy, tone_bundle_path.parent / "tone_yes.wav")


# ---------------------------------------------------------------- the bundle digest
def test_swapped_labels_are_noticed(capfd, tone_bundle_copy, tone_bundle_path):
    _edit(tone_bundle_copy, lambda d: d.update(labels=[d["labels"][0], d["labels"][1], "no", "yes"]))
    _assert_refused_everywhere(capfd, tone_bundle_copy, tone_bundle_path.parent / "tone_yes.wav", "bundle_sha256")


def test_edited_threshold_is_noticed(tone_bundle_copy):
    _edit(tone_bundle_copy, lambda d: d["detector"].update(default_threshold=0.11))
    with pytest.raises(KwsError, match="bundle_sha256"):
        load_bundle(tone_bundle_copy)


def test_format2_without_digest_is_refused(tone_bundle_copy):
    _edit(tone_bundle_copy, lambda d: d.pop("bundle_sha256"))
    with pytest.raises(KwsError, match="no bundle_sha256"):
        load_bundle(tone_bundle_copy)


def test_format1_bundle_loads_with_a_note(capfd, tone_bundle_copy, tone_bundle_path):
    _edit(tone_bundle_copy, lambda d: (d.pop("bundle_sha256"), d.update(format_version=1)))
    b = load_bundle(tone_bundle_copy)
    assert len(b.notes) == 1 and "format-1" in b.notes[0] and "python -m kws_edge.digest" in b.notes[0]
    code, out, err = run_kws(capfd, "detect", tone_bundle_path.parent / "tone_yes.wav", "--bundle", tone_bundle_copy)
    assert code == 0 and "yes at" in out
    assert err.startswith("note: ") and "format-1" in err and "error" not in err


def test_stamp_command_restores_an_edited_bundle(tone_bundle_copy):
    _edit(tone_bundle_copy, lambda d: d["provenance"].update(cleaned="yes"))
    with pytest.raises(KwsError, match="bundle_sha256"):
        load_bundle(tone_bundle_copy)
    proc = subprocess.run([sys.executable, "-m", "kws_edge.digest", str(tone_bundle_copy)], capture_output=True,
                          text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    b = load_bundle(tone_bundle_copy)
    assert b.notes == () and b.manifest.provenance.extra["cleaned"] == "yes" and b.manifest.bundle_sha256 in proc.stdout
    assert json.loads((tone_bundle_copy / "manifest.json").read_text())["format_version"] == FORMAT_VERSION


@pytest.mark.parametrize("name", ["kws_edge/default_bundle", "tests/data/tone_bundle", "tests/data/tone_tcn_bundle"])
def test_shipped_bundles_carry_a_valid_digest(name):
    b = load_bundle(ROOT / name)
    stored = json.loads((ROOT / name / "manifest.json").read_text())["format_version"]
    assert stored >= 2 and b.manifest.format_version == FORMAT_VERSION  # read as the current format
    assert len(b.manifest.bundle_sha256) == 64 and b.notes == ()


def test_save_bundle_stamps_the_digest(tmp_path, tone_bundle):
    from kws_edge.bundle import save_bundle

    m = save_bundle(tmp_path / "b", tone_bundle.manifest, tone_bundle.model_bytes)
    assert len(m.bundle_sha256) == 64 and load_bundle(tmp_path / "b").manifest.bundle_sha256 == m.bundle_sha256


# ---------------------------------------------------------------- kws info loads the model too
def test_info_refuses_a_model_the_runtime_refuses(capfd, tone_bundle_copy):
    (tone_bundle_copy / "model.tflite").write_bytes(b"TFL3" + bytes(4000))  # not a model; hashes made to match
    _edit(tone_bundle_copy, lambda d: None)
    _restamp(tone_bundle_copy)
    load_bundle(tone_bundle_copy)  # the manifest and hashes are consistent ...
    code, out, err = run_kws(capfd, "info", tone_bundle_copy)  # ... but the runtime cannot run it
    assert_one_error_line(code, err, "model")
