"""Bundles: load and verify, tampering and truncation, format version, atomic save."""

from __future__ import annotations

import dataclasses
import json
import os
import stat

import pytest

from kws_edge.bundle import FORMAT_VERSION, Manifest, load_bundle, save_bundle
from kws_edge.errors import BundleError, KwsError
from kws_edge.features import MfccConfig


def _edit_manifest(bundle_dir, fn):
    path = bundle_dir / "manifest.json"
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


def test_load_tone_bundle(tone_bundle, tone_bundle_path):
    m = tone_bundle.manifest
    assert tone_bundle.path == tone_bundle_path
    assert m.labels == ("_silence_", "_unknown_", "yes", "no") and m.keywords == ("yes", "no")
    assert m.format_version == FORMAT_VERSION
    assert m.features == MfccConfig()
    assert m.model.size_bytes == len(tone_bundle.model_bytes) < 20_000
    assert "CONV_2D" in m.model.operators


def test_tampered_model_is_refused(tone_bundle_copy):
    model = tone_bundle_copy / "model.tflite"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="does not match the SHA-256"):
        load_bundle(tone_bundle_copy)


def test_truncated_or_missing_model_is_refused(tone_bundle_copy):
    model = tone_bundle_copy / "model.tflite"
    model.write_bytes(model.read_bytes()[:1000])
    with pytest.raises(BundleError, match="truncated or was replaced"):
        load_bundle(tone_bundle_copy)
    model.unlink()
    with pytest.raises(BundleError, match="has no model.tflite"):
        load_bundle(tone_bundle_copy)


@pytest.mark.parametrize("version, match", [(FORMAT_VERSION + 1, "upgrade kws-edge"), (0, "re-run kws-convert"),
                                            (None, "format_version None"), ("1", "format_version '1'")])
def test_format_version(tone_bundle_copy, version, match):
    _edit_manifest(tone_bundle_copy, lambda d: d.update(format_version=version))
    with pytest.raises(BundleError, match=match):
        load_bundle(tone_bundle_copy)


@pytest.mark.parametrize("edit, match", [
    (lambda d: d.update(colour="red"), "unknown key 'colour'"),
    (lambda d: d["features"].update(n_cepstra=13), "normalization has 10 values"),
    (lambda d: d.update(labels=["a", "b", "c", "c"]), "duplicates"),
    (lambda d: d.update(keywords=["maybe"]), "keyword 'maybe' is not among"),
    (lambda d: d["model"].update(file="../model.tflite"), "plain file name"),
    (lambda d: d["features"].update(clip_ms=500.0), "does not match the feature configuration"),
    (lambda d: d["detector"].update(min_count="2"), r"detector\.min_count must be an integer"),
    (lambda d: d.pop("features"), "invalid"),
])
def test_inconsistent_manifest_is_refused(tone_bundle_copy, edit, match):
    _edit_manifest(tone_bundle_copy, edit)
    with pytest.raises(BundleError, match=match):
        load_bundle(tone_bundle_copy)


def test_not_a_bundle(tmp_path, tone_bundle_copy):
    with pytest.raises(BundleError, match="does not exist"):
        load_bundle(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(BundleError, match="is not a directory"):
        load_bundle(tmp_path / "file")
    (tone_bundle_copy / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(tone_bundle_copy)
    (tone_bundle_copy / "manifest.json").write_text("[1, 2]")
    with pytest.raises(BundleError, match="JSON object"):
        load_bundle(tone_bundle_copy)
    (tone_bundle_copy / "manifest.json").unlink()
    with pytest.raises(BundleError, match="has no manifest.json"):
        load_bundle(tone_bundle_copy)


def test_save_round_trip_fills_hash_and_size(tmp_path, tone_bundle):
    m = dataclasses.replace(tone_bundle.manifest, version="9.9.9",
                            model=dataclasses.replace(tone_bundle.manifest.model, sha256="", size_bytes=0))
    written = save_bundle(tmp_path / "b", m, tone_bundle.model_bytes, extra_files={"README.txt": b"hi"})
    assert written.model.sha256 == tone_bundle.manifest.model.sha256
    loaded = load_bundle(tmp_path / "b")
    assert loaded.manifest == written
    assert Manifest.from_json_dict(json.loads((tmp_path / "b" / "manifest.json").read_text())) == written
    assert (tmp_path / "b" / "README.txt").read_bytes() == b"hi"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "b").stat().st_mode) == 0o777 & ~umask  # readable by others, like any dir


def test_failing_save_leaves_nothing_behind(tmp_path, tone_bundle, monkeypatch):
    def boom(self):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(Manifest, "to_json", boom)
    with pytest.raises(RuntimeError, match="disk on fire"):
        save_bundle(tmp_path / "b", tone_bundle.manifest, tone_bundle.model_bytes)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()

    save_bundle(tmp_path / "b", tone_bundle.manifest, tone_bundle.model_bytes)
    with pytest.raises(KwsError, match="already exists"):
        save_bundle(tmp_path / "b", tone_bundle.manifest, b"other")
    # an overwrite that fails keeps the old bundle intact
    monkeypatch.setattr(Manifest, "to_json", boom)
    with pytest.raises(RuntimeError):
        save_bundle(tmp_path / "b", tone_bundle.manifest, b"other", overwrite=True)
    monkeypatch.undo()
    assert load_bundle(tmp_path / "b").model_bytes == tone_bundle.model_bytes
    assert [p.name for p in tmp_path.iterdir()] == ["b"]


def test_save_refuses_inconsistent_manifest(tmp_path, tone_bundle):
    bad = dataclasses.replace(tone_bundle.manifest, keywords=("maybe",))
    with pytest.raises(BundleError, match="not among its labels"):
        save_bundle(tmp_path / "b", bad, tone_bundle.model_bytes)
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("edit, match", [
    (lambda d: d["model"]["input"].update(dtype="float32", scale=0.0), "model input is float32"),
    (lambda d: d["model"]["output"].update(zero_point=0), "model output is int8"),
])
def test_manifest_tensor_specs_must_match_the_model(tone_bundle_copy, edit, match):
    from kws_edge.digest import stamp_bundle
    from kws_edge.model import KwsModel

    _edit_manifest(tone_bundle_copy, edit)
    stamp_bundle(tone_bundle_copy)  # a consistent digest: the model itself must refuse the manifest
    with pytest.raises(BundleError, match=match):
        KwsModel.load(tone_bundle_copy)


def test_shipped_bundles_by_name(tmp_path, monkeypatch):
    from kws_edge.bundle import SHIPPED_BUNDLES, load_bundle, shipped_bundle_path
    from kws_edge.errors import BundleError

    assert SHIPPED_BUNDLES == ("default", "micro")
    assert shipped_bundle_path().name == "default_bundle" and shipped_bundle_path("micro").name == "micro_bundle"
    with pytest.raises(BundleError, match="no shipped bundle is called 'huge'; the shipped ones are default, micro"):
        shipped_bundle_path("huge")
    for name in SHIPPED_BUNDLES:
        if (shipped_bundle_path(name) / "manifest.json").is_file():
            assert load_bundle(name).path == shipped_bundle_path(name)
    # a directory of that name where the user is wins over the shipped one
    monkeypatch.chdir(tmp_path)
    (tmp_path / "micro").mkdir()
    with pytest.raises(BundleError, match="bundle micro has no manifest.json"):
        load_bundle("micro")
