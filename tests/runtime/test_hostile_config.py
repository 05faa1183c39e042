"""Hostile config files and options (issue 22, cases 7 and 8): one error line, exit 2, before any work.

Case 7: a TOML file that is not UTF-8, to the four commands that read TOML (all through
``kws_edge.config.load_toml``). Case 8: ``kws pipeline --device nosuch`` is refused before data and training.
"""

from __future__ import annotations

import time

import pytest

from support.hostile import assert_one_error_line, run_kws

NOT_UTF8 = b'seed = 1\nnote = "caf\xe9 \xff\xfe"\n'


def _run_main(capfd, main, argv):
    capfd.readouterr()
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in argv])
    out, err = capfd.readouterr()
    return exc.value.code, out, err


@pytest.fixture
def bad_toml(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes(NOT_UTF8)
    return path


def test_case07_kws_train_config(capfd, tmp_path, bad_toml):
    from kws_edge.training.cli import main

    code, out, err = _run_main(capfd, main, ["--config", bad_toml, "--data", "synthetic", "--out", tmp_path / "run"])
    assert_one_error_line(code, err, "not UTF-8")
    assert not (tmp_path / "run").exists()


def test_case07_kws_pipeline_config(capfd, tmp_path, bad_toml):
    code, out, err = run_kws(capfd, "pipeline", "--config", bad_toml, "--data", "synthetic", "--out", tmp_path / "p")
    assert_one_error_line(code, err, "not UTF-8")
    assert not (tmp_path / "p").exists()


def test_case07_kws_convert_device(capfd, tmp_path, bad_toml):
    from kws_edge.converters.cli import main

    code, out, err = _run_main(capfd, main, [tmp_path / "run", "--device", bad_toml, "--out", tmp_path / "b"])
    assert_one_error_line(code, err, "not UTF-8")
    assert not (tmp_path / "b").exists()


def test_case07_kws_bench_device(capfd, bad_toml, tone_bundle_path):
    code, out, err = run_kws(capfd, "bench", "--bundle", tone_bundle_path, "--device", bad_toml)
    assert_one_error_line(code, err, "not UTF-8")


def test_case08_pipeline_unknown_device_is_refused_before_any_stage(capfd, tmp_path):
    t0 = time.perf_counter()
    code, out, err = run_kws(capfd, "pipeline", "--device", "nosuch", "--data", "synthetic", "--out", tmp_path / "p")
    assert_one_error_line(code, err, "unknown device 'nosuch'")
    assert time.perf_counter() - t0 < 30 and not (tmp_path / "p").exists()
