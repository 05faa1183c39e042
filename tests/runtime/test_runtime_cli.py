"""``kws detect/classify/info`` (and ``listen``'s argument checks): results, and every bad input.

Bad input means: one line on stderr, exit status 2, no traceback. Most cases
run in-process through ``run_cli`` (the console script's own error
presentation) with file-descriptor capture; a few run the real console entry
point in a subprocess, where native libraries print their start-up banners.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from support.processes import kws_subprocess_env
from kws_edge.cli import cli, run_cli

import kws_edge.cli.commands  # noqa: F401,E402  (registers the subcommands)


@pytest.fixture
def kws(capfd):
    """``kws(*argv) -> (exit_status, stdout, stderr)``, in-process."""

    def run(*argv):
        capfd.readouterr()
        code = run_cli(cli, [str(a) for a in argv])
        out, err = capfd.readouterr()
        return code, out, err

    return run


def _tone(n=16000, rate=16000, freq=440.0):
    return 0.3 * np.sin(2 * np.pi * freq * np.arange(n) / rate)


def _assert_one_error_line(code, err, match=None):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got: {err!r}"
    assert lines[0].startswith("error: ")
    assert "Traceback" not in err
    if match:
        assert match in lines[0], lines[0]


# -- good input -----------------------------------------------------------------------------------


def test_detect_text_and_json(kws, tone_bundle_path):
    data = tone_bundle_path.parent
    code, out, err = kws("detect", data / "tone_yes.wav", data / "tone_silence.wav", "--bundle", tone_bundle_path)
    assert code == 0 and err == ""
    assert f"{data / 'tone_yes.wav'}: yes at " in out
    assert f"{data / 'tone_silence.wav'}: no detections" in out
    code, out, err = kws("detect", data / "tone_no.wav", data / "tone_unknown.wav", "--bundle", tone_bundle_path,
                         "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(rows) == 1
    assert rows[0]["file"] == str(data / "tone_no.wav") and rows[0]["label"] == "no"
    assert set(rows[0]) == {"file", "label", "score", "time_s"}
    assert 0.5 < rows[0]["time_s"] <= 1.0  # heard by the end of the 1 s file, never after it


def test_detect_threshold_overrides_the_bundle(kws, tone_bundle_path):
    yes = tone_bundle_path.parent / "tone_yes.wav"
    code, out, _ = kws("detect", yes, "--bundle", tone_bundle_path, "--threshold", "0.5", "--json")
    assert code == 0 and [json.loads(line)["label"] for line in out.splitlines()] == ["yes"]
    # an int8 output never reaches 1.0 (its largest value is 255/256), so nothing is heard
    code, out, _ = kws("detect", yes, "--bundle", tone_bundle_path, "--threshold", "1.0")
    assert code == 0 and out.strip() == f"{yes}: no detections"


def test_listen_interval_ms_needs_a_streaming_bundle(kws, tone_bundle_path):
    pytest.importorskip("sounddevice")
    code, _, err = kws("listen", "--bundle", tone_bundle_path, "--interval-ms", "200")
    _assert_one_error_line(code, err, "interval_ms needs the bundle's streaming model")


def test_classify_text_and_json(kws, tone_bundle_path):
    data = tone_bundle_path.parent
    files = [data / f"tone_{n}.wav" for n in ("yes", "no", "silence", "unknown")]
    code, out, err = kws("classify", *files, "--bundle", tone_bundle_path, "--json")
    assert code == 0 and err == ""
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["label"] for r in rows] == ["yes", "no", "_silence_", "_unknown_"]
    assert set(rows[0]["scores"]) == {"_silence_", "_unknown_", "yes", "no"}
    assert rows[0]["score"] == max(rows[0]["scores"].values())
    code, out, _ = kws("classify", files[0], "--bundle", tone_bundle_path)
    assert code == 0 and out.startswith(f"{files[0]}: yes (")


def test_classify_long_file_says_it_was_cropped(kws, tone_bundle_path, tmp_wav):
    code, out, err = kws("classify", tmp_wav(np.zeros(48000)), "--bundle", tone_bundle_path)
    assert code == 0 and "_silence_" in out
    assert err.startswith("note: ") and "classified its centre 1 s" in err


def test_info_table(kws, tone_bundle_path):
    code, out, err = kws("info", tone_bundle_path)
    assert code == 0 and err == ""
    head = out.split("\n\n")[0]
    table = dict(line.split(None, 1) for line in head.splitlines() if not line.startswith(" "))
    for key in ("name", "version", "labels", "keywords", "features", "clip", "detector"):
        assert key in table, key
    assert "\nprovenance:\n" in out
    assert "tone-test" in out and "_silence_, _unknown_, yes, no" in out
    assert "5,600 bytes" in out and "CONV_2D x2" in out and "not measured" in out
    assert "accuracy: 1" in out and "seed: 0" in out
    code, out, _ = kws("info", tone_bundle_path, "--json")
    assert code == 0 and json.loads(out)["name"] == "tone-test"


def test_info_without_an_argument_describes_the_default_bundle(kws, tone_bundle_path, monkeypatch):
    from kws_edge import default_bundle_path, load_bundle

    shipped = load_bundle(default_bundle_path()).manifest
    code, out, err = kws("info")
    assert code == 0 and err == ""
    assert out.splitlines()[1].split() == ["name", shipped.name]
    assert out.splitlines()[0].split()[-1] == str(default_bundle_path())
    code, by_option, _ = kws("info", "--bundle", tone_bundle_path)  # --bundle like every other command
    assert code == 0 and "tone-test" in by_option and by_option == kws("info", tone_bundle_path)[1]


def test_info_is_sections_of_short_lines_and_json_keeps_everything(kws):
    import kws_edge.cli.runtime as runtime
    from kws_edge import default_bundle_path

    code, out, _ = kws("info")
    assert code == 0
    lines = out.splitlines()
    too_long = [line for line in lines if len(line) > runtime.INFO_WIDTH]
    assert not too_long, too_long[:3]
    for section in ("metrics:", "provenance:", "budgets:"):
        assert section in lines, section
    assert lines.index("metrics:") < lines.index("provenance:") < lines.index("budgets:")
    assert "    git_commit: " in out and "  budget model_bytes: " in out
    code, js, _ = kws("info", "--json")  # --json: the whole typed manifest, nothing elided
    from kws_edge import load_bundle
    from kws_edge.config import to_dict

    shipped = to_dict(load_bundle(default_bundle_path()).manifest)
    assert code == 0 and json.loads(js) == json.loads(json.dumps(shipped))


def test_the_shipped_manifest_holds_no_absolute_path():
    from kws_edge import default_bundle_path
    from kws_edge.portable import absolute_paths_in

    manifest = json.loads((default_bundle_path() / "manifest.json").read_text())
    assert absolute_paths_in(manifest) == []


def test_info_names_the_weight_scales_of_an_int8_model(kws, tone_bundle_path):
    from kws_edge import default_bundle_path, load_bundle

    scales = load_bundle(default_bundle_path()).manifest.provenance.conversion.weight_scales
    assert scales in ("per-tensor", "per-channel")  # recorded by kws-convert
    code, out, _ = kws("info", default_bundle_path())
    assert code == 0 and f"int8 ({scales} weight scales)" in out
    code, out, _ = kws("info", tone_bundle_path)  # no conversion provenance: nothing claimed
    assert code == 0 and "weight scales" not in out


@pytest.mark.parametrize("rate", [8000, 44100])
def test_other_rates_are_resampled_with_a_note(kws, tone_bundle_path, tmp_wav, rate):
    path = tmp_wav(_tone(rate, rate), rate_hz=rate)
    code, out, err = kws("classify", path, "--bundle", tone_bundle_path)
    assert code == 0 and out.startswith(f"{path}: ")
    assert err.strip() == f"note: {path}: resampled from {rate} Hz to 16000 Hz"
    code, out, err = kws("detect", path, "--bundle", tone_bundle_path, "--no-resample")
    _assert_one_error_line(code, err, f"sampled at {rate} Hz")


@pytest.mark.parametrize("subtype", ["PCM_24", "PCM_32", "FLOAT", "DOUBLE"])
def test_24_bit_and_float_wavs_are_accepted(kws, tone_bundle_path, tmp_wav, subtype):
    code, out, err = kws("detect", tmp_wav(_tone(), subtype=subtype), "--bundle", tone_bundle_path)
    assert code == 0 and err == "" and "no detections" in out


# -- bad input: one line, exit 2, no traceback ------------------------------------------------------


def _bad_files(tmp_path, tmp_wav):
    good = tmp_wav(_tone(), name="good.wav").read_bytes()
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "text.wav").write_text("this is not audio\n")
    (tmp_path / "noise.wav").write_bytes(np.random.default_rng(0).bytes(5000))
    (tmp_path / "corrupt.wav").write_bytes(good[:12] + b"\xff" * 100)
    (tmp_path / "truncated.wav").write_bytes(good[: len(good) // 3])
    (tmp_path / "header_only.wav").write_bytes(good[:44])
    nan = _tone()
    nan[5] = np.nan
    inf = _tone()
    inf[7] = np.inf
    return {
        "empty": (tmp_path / "empty.wav", "empty"),
        "text": (tmp_path / "text.wav", "not a WAV file"),
        "random bytes": (tmp_path / "noise.wav", "not a WAV file"),
        "corrupt": (tmp_path / "corrupt.wav", "WAV file"),
        "truncated": (tmp_path / "truncated.wav", "truncated"),
        "header only": (tmp_path / "header_only.wav", "truncated"),
        "stereo": (tmp_wav(np.stack([_tone(), _tone()], 1), name="stereo.wav"), "2 channels"),
        "nan": (tmp_wav(nan, subtype="FLOAT", name="nan.wav"), "NaN or infinite"),
        "inf": (tmp_wav(inf, subtype="DOUBLE", name="inf.wav"), "NaN or infinite"),
        "missing": (tmp_path / "missing.wav", "no such file"),
        "directory": (tmp_path, "is a directory"),
    }


BAD_CASES = ["empty", "text", "random bytes", "corrupt", "truncated", "header only", "stereo", "nan", "inf",
             "missing", "directory"]


@pytest.mark.parametrize("command", ["detect", "classify"])
@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_files(kws, tone_bundle_path, tmp_path, tmp_wav, command, case):
    path, match = _bad_files(tmp_path, tmp_wav)[case]
    code, out, err = kws(command, path, "--bundle", tone_bundle_path)
    _assert_one_error_line(code, err, match)
    assert out == ""


def test_good_results_survive_a_bad_file(kws, tone_bundle_path, tmp_path, tmp_wav):
    bad = _bad_files(tmp_path, tmp_wav)
    yes = tone_bundle_path.parent / "tone_yes.wav"
    code, out, err = kws("detect", bad["truncated"][0], yes, bad["stereo"][0], "--bundle", tone_bundle_path,
                         "--json")
    assert code == 2 and "Traceback" not in err
    assert [json.loads(line)["label"] for line in out.splitlines()] == ["yes"]
    lines = err.strip().splitlines()
    assert len(lines) == 2 and "truncated" in lines[0] and "2 channels" in lines[1]


def _tamper(bundle_dir):
    model = bundle_dir / "model.tflite"
    data = bytearray(model.read_bytes())
    data[-10] ^= 1
    model.write_bytes(bytes(data))


@pytest.mark.parametrize("problem, match", [
    ("missing", "does not exist"),
    ("tampered", "SHA-256"),
    ("no manifest", "no manifest.json"),
    ("newer format", "upgrade kws-edge"),
])
@pytest.mark.parametrize("command", ["detect", "classify", "info"])
def test_bad_bundles(kws, tone_bundle_copy, command, problem, match):
    if problem == "missing":
        bundle = tone_bundle_copy.parent / "nope"
    else:
        bundle = tone_bundle_copy
        if problem == "tampered":
            _tamper(bundle)
        elif problem == "no manifest":
            (bundle / "manifest.json").unlink()
        else:
            m = json.loads((bundle / "manifest.json").read_text())
            m["format_version"] = 99
            (bundle / "manifest.json").write_text(json.dumps(m))
    wav = tone_bundle_copy.parent.parent / "x.wav"
    argv = ["info", bundle] if command == "info" else [command, wav, "--bundle", bundle]
    code, out, err = kws(*argv)
    _assert_one_error_line(code, err, match)


def test_missing_default_bundle_is_a_clear_error(kws, tmp_path, monkeypatch, tone_bundle_path):
    import kws_edge.cli.runtime as runtime

    monkeypatch.setattr(runtime, "default_bundle_path", lambda: tmp_path / "default_bundle")
    code, out, err = kws("detect", tone_bundle_path.parent / "tone_yes.wav")
    _assert_one_error_line(code, err, "no default bundle is installed")
    assert "--bundle" in err


@pytest.mark.parametrize("argv, match", [
    (["detect"], "Missing argument"),
    (["detect", "x.wav", "--bogus"], "No such option"),
    (["detect", "x.wav", "--bundle"], "requires an argument"),
    (["detect", "x.wav", "--threshold", "1.5"], "--threshold"),
    (["listen", "--seconds", "-3"], "--seconds"),
    (["listen", "--seconds", "soon"], "--seconds"),
    (["nonsense"], "No such command"),
    (["info", "a", "--bundle", "b"], "two bundles given"),
])
def test_usage_errors_are_one_line(kws, argv, match):
    code, out, err = kws(*argv)
    _assert_one_error_line(code, err, match)


def test_listen_without_sounddevice_says_how_to_install(kws, tone_bundle_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "sounddevice", None)
    code, out, err = kws("listen", "--bundle", tone_bundle_path, "--seconds", "1")
    _assert_one_error_line(code, err, 'pip install "kws-edge[audio]"')


# -- the real console entry point, in fresh processes -------------------------------------------------


def _kws_process(*argv):
    return subprocess.run([sys.executable, "-c", "from kws_edge.cli import main; main()", *map(str, argv)],
                          capture_output=True, text=True, timeout=120, env=kws_subprocess_env())


def test_subprocess_bad_file_with_a_loaded_model_is_one_line(tone_bundle_path, tmp_path):
    # the model is loaded before the file is read: LiteRT's start-up banner must not reach stderr
    (tmp_path / "bad.wav").write_bytes(b"RIFF")
    proc = _kws_process("detect", tmp_path / "bad.wav", "--bundle", tone_bundle_path)
    _assert_one_error_line(proc.returncode, proc.stderr, "not a WAV file")


def test_subprocess_good_run_and_help(tone_bundle_path):
    proc = _kws_process("detect", tone_bundle_path.parent / "tone_yes.wav", "--bundle", tone_bundle_path, "--json")
    assert proc.returncode == 0 and proc.stderr == ""
    assert json.loads(proc.stdout)["label"] == "yes"
    proc = _kws_process("--help")
    assert proc.returncode == 0
    for command in ("detect", "classify", "listen", "info"):
        assert command in proc.stdout
    proc = _kws_process("listen", "--seconds", "x")
    _assert_one_error_line(proc.returncode, proc.stderr, "--seconds")


def test_info_shows_budgets_and_measured_figures(kws, tone_bundle, tmp_path):
    import dataclasses

    from kws_edge.bundle import save_bundle
    from kws_edge.bundle.budgets import Budgets
    from kws_edge.limits import Limit

    report = Budgets("raspberry-pi-4b", (
        Limit("flash_bytes", 5600, 1_000_000, "B", basis="static"),
        Limit("peak_activation_bytes", 300_000, 262_144, "B", basis="static"),
    ))
    m = tone_bundle.manifest
    m = dataclasses.replace(m, budgets=report,
                            model=dataclasses.replace(m.model, peak_activation_bytes=12_345, macs_per_inference=67_890))
    save_bundle(tmp_path / "b", m, tone_bundle.model_bytes)
    code, out, err = kws("info", tmp_path / "b")
    assert code == 0 and err == ""
    assert "12,345 bytes peak" in out and "67,890 per inference" in out
    assert "  device: raspberry-pi-4b\n  within_budget: False\n" in out
    assert "flash_bytes: 5.5 KiB of 976.6 KiB, ok (static)" in out
    assert "peak_activation_bytes: 293.0 KiB of 256.0 KiB, OVER (static)" in out
