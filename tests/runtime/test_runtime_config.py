"""Strict configuration round-trips, TOML loading and atomic writes."""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field
from typing import Literal, Optional

import pytest

from kws_edge.atomic import DiskFullError, atomic_directory, atomic_write_bytes, atomic_write_json
from kws_edge.config import config_hash, from_dict, load_toml, to_dict
from kws_edge.errors import ConfigError, KwsError
from kws_edge.features import MfccConfig
from kws_edge.smoothing import DetectorConfig


@dataclass(frozen=True)
class Inner:
    rate_hz: int = 16000
    name: str = "x"


@dataclass(frozen=True)
class Outer:
    inner: Inner = field(default_factory=Inner)
    gains_db: tuple[float, ...] = (0.0, 6.0)
    pair: tuple[int, str] = (1, "a")
    mode: Literal["fast", "exact"] = "fast"
    enabled: bool = True
    table: dict[str, float] = field(default_factory=dict)
    maybe: Optional[int] = None


def test_round_trip_through_json():
    cfg = Outer(inner=Inner(8000, "y"), gains_db=(1.5,), pair=(2, "b"), mode="exact", enabled=False,
                table={"yes": 0.7}, maybe=3)
    data = json.loads(json.dumps(to_dict(cfg)))
    assert data["gains_db"] == [1.5]
    assert from_dict(Outer, data) == cfg
    assert from_dict(Outer, {}) == Outer()  # missing keys take defaults
    assert config_hash(cfg) == config_hash(from_dict(Outer, data)) != config_hash(Outer())


def test_detector_config_round_trip():
    cfg = DetectorConfig(thresholds={"yes": 0.7, "no": 0.9}, min_count=3, stride_hops=2)
    assert from_dict(DetectorConfig, json.loads(json.dumps(to_dict(cfg)))) == cfg
    assert cfg.threshold("yes") == 0.7 and cfg.threshold("other") == cfg.default_threshold


@pytest.mark.parametrize("data, match", [
    ({"inner": {"rate_hz": 8000, "colour": 1}}, r"unknown key 'inner\.colour'"),
    ({"speed": 1}, "unknown key 'speed'"),
    ({"inner": {"rate_hz": "16000"}}, r"inner\.rate_hz must be an integer"),
    ({"inner": {"rate_hz": True}}, r"inner\.rate_hz must be an integer"),
    ({"inner": {"rate_hz": 1.5}}, r"inner\.rate_hz must be an integer"),
    ({"enabled": "yes"}, "enabled must be true or false"),
    ({"gains_db": 3}, "gains_db must be a list"),
    ({"gains_db": [1, "x"]}, r"gains_db\[1\] must be a number"),
    ({"pair": [1]}, "pair must have 2 items"),
    ({"mode": "slow"}, "mode must be one of"),
    ({"table": [1]}, "table must be a table"),
    ({"inner": 5}, "must be a table/object"),
    ({"maybe": "3"}, "maybe must be an integer"),
])
def test_strict_errors_name_the_key(data, match):
    with pytest.raises(ConfigError, match=match):
        from_dict(Outer, data)


def test_post_init_errors_become_config_errors():
    with pytest.raises(ConfigError, match="min_count"):
        from_dict(DetectorConfig, {"min_count": 0})
    with pytest.raises(ConfigError, match="threshold for 'yes'"):
        from_dict(DetectorConfig, {"thresholds": {"yes": 1.5}})
    with pytest.raises(ConfigError, match="sample_rate_hz"):
        from_dict(MfccConfig, {"sample_rate_hz": 0})


def test_load_toml(tmp_path):
    good = tmp_path / "c.toml"
    good.write_text('mode = "exact"\n[inner]\nrate_hz = 8000\n')
    assert from_dict(Outer, load_toml(good)) == Outer(inner=Inner(rate_hz=8000), mode="exact")
    with pytest.raises(ConfigError, match="does not exist"):
        load_toml(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("mode = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_toml(bad)


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    path = tmp_path / "sub" / "a.json"
    atomic_write_json(path, {"a": 1})
    atomic_write_json(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 2}
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.json"]
    # artifacts get ordinary permissions (not mkstemp's 0600)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_atomic_write_failure_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "model.bin"
    atomic_write_bytes(path, b"old")

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(DiskFullError, match="no space left"):
        atomic_write_bytes(path, b"new")
    monkeypatch.undo()
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.bin"]


def test_atomic_directory_all_or_nothing(tmp_path):
    target = tmp_path / "bundle"
    with pytest.raises(KeyboardInterrupt):
        with atomic_directory(target) as tmp:
            (tmp / "half").write_text("x")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
    with atomic_directory(target) as tmp:
        (tmp / "v1").write_text("1")
    with pytest.raises(KwsError, match="already exists"):
        with atomic_directory(target):
            pass
    with pytest.raises(RuntimeError):
        with atomic_directory(target, overwrite=True) as tmp:
            (tmp / "v2").write_text("2")
            raise RuntimeError("crash")
    assert [p.name for p in target.iterdir()] == ["v1"]
    with atomic_directory(target, overwrite=True) as tmp:
        (tmp / "v2").write_text("2")
    assert [p.name for p in target.iterdir()] == ["v2"]
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]
