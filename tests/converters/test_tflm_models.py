"""Models measured in the real TensorFlow Lite Micro interpreter (kws_edge.converters.tflm), no TensorFlow.

Skipped, with the reason, where the ``tflite-micro`` package is absent; CI installs it (the ``train`` extra).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tflite_micro", reason="tflite-micro is not installed (pip install tflite-micro; it is in "
                                           "kws-edge's 'train' extra, which CI installs)")

from support import tone_bundle as tone  # noqa: E402
from support.tflite_builder import add_model, hand_built_model  # noqa: E402

from kws_edge.budgets import arena_result  # noqa: E402
from kws_edge.bundle.budgets import Budgets  # noqa: E402
from kws_edge.config import from_dict, to_dict  # noqa: E402
from kws_edge.limits import Limit  # noqa: E402
from kws_edge.bundle import load_bundle  # noqa: E402
from kws_edge.converters import tflm  # noqa: E402
from kws_edge.converters.analysis import analyze_model  # noqa: E402
from kws_edge.devices import load_profile  # noqa: E402
from kws_edge.errors import BackendUnavailableError, ConfigError, ConversionError  # noqa: E402
from kws_edge.features import mfcc  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "data"
#: the shipped bundle for microcontrollers (the default one targets a Raspberry Pi and records no TFLM arena)
MICRO_BUNDLE = Path(__file__).resolve().parents[2] / "kws_edge" / "micro_bundle"


# ---------------------------------------------------------------- arena


def test_arena_of_a_hand_built_add_grows_by_exactly_its_tensors():
    """ADD of two (1, n) float32 inputs: the three tensors (12 n bytes) are the only part that depends on n."""
    sizes = {n: tflm.measure_arena(add_model(n), confirm=False).arena_bytes for n in (64, 256, 1024)}
    assert sizes[256] - sizes[64] == 12 * (256 - 64)
    assert sizes[1024] - sizes[256] == 12 * (1024 - 256)
    fixed = sizes[64] - 12 * 64  # interpreter structs, the same for every n
    assert 0 < fixed < 4096


def test_measured_arena_is_the_smallest_that_allocates_in_a_fresh_process():
    model = hand_built_model()
    arena = tflm.measure_arena(model)  # re-tries the boundary in two fresh processes
    assert arena.method == "bisection of the arena size in a child process, boundary confirmed in fresh processes"
    assert tflm.allocates(model, arena.arena_bytes, fresh_process=False)
    assert not tflm.allocates(model, arena.arena_bytes - 1, fresh_process=False)
    # the static lower bound and the allocator's own figure are both below what allocation needs
    assert analyze_model(model).peak_activation_bytes < arena.arena_used_bytes <= arena.arena_bytes


def test_the_allocator_total_undercounts_the_streaming_model():
    """The shipped micro streaming model: the planner's temporary buffers need more than the 'used' total."""
    bundle = load_bundle(MICRO_BUNDLE)
    arena = tflm.measure_arena(bundle.streaming_model_bytes, confirm=False)
    assert arena.arena_used_bytes < arena.arena_bytes
    assert not tflm.allocates(bundle.streaming_model_bytes, arena.arena_used_bytes, fresh_process=False)


def test_too_small_an_arena_is_one_line():
    for size in (256, 4096):  # 256 B would crash the interpreter: refused without trying
        with pytest.raises(ConversionError, match=rf"cannot allocate the model in a {size:,} B arena") as err:
            tflm.TflmInterpreter(add_model(1024), size)
        assert "\n" not in str(err.value)


# ---------------------------------------------------------------- parity (tone bundles)


def _tone_features(manifest, n_per_class: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    clips = [tone.clip(label, rng) for label in tone.LABELS for _ in range(n_per_class)]
    return manifest.normalization.apply(np.stack([mfcc(c, manifest.features) for c in clips]))


def test_window_parity_through_tflm_on_the_tone_bundle():
    bundle = load_bundle(DATA / "tone_bundle")
    feats = _tone_features(bundle.manifest, 10, seed=1)
    check = tflm.check_window_model(bundle.model_bytes, feats, inputs="tone clips")
    assert check.parity.n_compared == 40 and check.parity.inputs == "40 tone clips"
    assert check.parity.difference_unit == "int8 steps"
    assert check.parity.argmax_agreement >= 0.95 and check.parity.max_difference <= 8
    assert "builtin kernels" in check.parity.reference
    assert check.arena.arena_bytes >= bundle.manifest.model.peak_activation_bytes
    assert check.seconds < 30
    # the int8 TFLM outputs are those of a working classifier, not noise: argmax = label on most clips
    it = tflm.TflmInterpreter(bundle.model_bytes, check.arena.arena_bytes)
    from kws_edge.engine import Engine

    eng = Engine(bundle.model_bytes)
    labels = np.repeat(np.arange(4), 10)
    pred = [int(np.argmax(it.run_raw(eng.quantize(f.reshape(eng.input.shape), eng.input))[0])) for f in feats]
    assert np.mean(np.asarray(pred) == labels) >= 0.8


def test_streaming_parity_closed_loop_on_the_tone_tcn_bundle():
    bundle = load_bundle(DATA / "tone_tcn_bundle")
    m = bundle.manifest
    rng = np.random.default_rng(2)
    events = [(("yes", "no", "_unknown_")[i % 3], 0.5 + i * 1.5) for i in range(8)]
    stream = m.normalization.apply(mfcc(tone.stream(events, 13.0, rng), m.features))
    check = tflm.check_streaming_model(bundle.streaming_model_bytes, [stream])
    p = check.parity
    assert "closed-loop state" in p.inputs and p.n_compared > 500
    assert p.argmax_agreement >= 0.97 and p.max_difference <= 24
    assert check.arena.arena_bytes > m.streaming_model.peak_activation_bytes


def test_a_broken_state_feedback_would_be_caught():
    """The comparison is sensitive: feeding TFLM a zero state every call disagrees with the closed loop."""
    bundle = load_bundle(DATA / "tone_tcn_bundle")
    m = bundle.manifest
    rng = np.random.default_rng(2)
    events = [(("yes", "no")[i % 2], 0.5 + i * 1.5) for i in range(6)]
    stream = m.normalization.apply(mfcc(tone.stream(events, 10.0, rng), m.features))
    arena = tflm.measure_arena(bundle.streaming_model_bytes, confirm=False).arena_bytes
    good = tflm.streaming_parity(bundle.streaming_model_bytes, [stream], arena_bytes=arena)
    real_run = tflm.TflmInterpreter.run_raw

    def forgetful(self, *inputs):
        inputs = [x if np.ndim(x) == 3 else np.full_like(x, m.streaming_model.extra_inputs[0].zero_point)
                  for x in inputs]
        return real_run(self, *inputs)

    tflm.TflmInterpreter.run_raw = forgetful
    try:
        bad = tflm.streaming_parity(bundle.streaming_model_bytes, [stream], arena_bytes=arena)
    finally:
        tflm.TflmInterpreter.run_raw = real_run
    assert bad.max_difference > good.max_difference


# ---------------------------------------------------------------- budgets, profile, build


def test_arena_budget_adds_the_profiles_margin_and_says_how_it_was_measured():
    m7 = load_profile("cortex-m7")
    r = arena_result(m7, 12_448, build="tflite-micro X")
    assert r.method == "tflm" and r.how == "measured in TFLM"
    assert r.value == m7.tflm.needed_bytes(12_448) == int(np.ceil(12_448 * (1 + m7.tflm.margin_fraction)))
    assert r.limit == m7.tflm.tensor_arena_bytes and r.passed
    assert "12,448 B" in r.basis and "tflite-micro X" in r.basis
    over = arena_result(m7, m7.tflm.tensor_arena_bytes, build="b")
    assert not over.passed
    report = Budgets("cortex-m7-tflm", (Limit("model_bytes", 1, 2, "B", basis="static"), over))
    assert f"TFLM tensor arena {over.value:,} B > {over.limit:,} B (measured in b" in report.summary()
    table = report.table()
    assert "measured in TFLM" in table and "static" in table
    assert from_dict(Budgets, to_dict(report)) == report


def test_method_is_inferred_for_older_results_and_checked():
    assert Limit("cpu_share", 0.1, 0.5, "share", basis="measured (kws bench)").how == "measured on this host"
    assert Limit("cpu_share", 0.1, 0.5, "share", basis="estimated (profile)").method == "estimated"
    assert Limit("model_bytes", 1, 2, "B", basis="static").method == "static"
    with pytest.raises(ConfigError, match="method"):
        Limit("x", 1, 2, "B", basis="static", method="guessed")


def test_cortex_m7_profile_carries_the_firmware_arena_with_sources():
    m7 = load_profile("cortex-m7")
    assert m7.tflm is not None and m7.tflm.tensor_arena_bytes <= m7.ram_bytes
    for key in ("tflm.tensor_arena_bytes", "tflm.margin_fraction"):
        assert m7.source(key).strip()
    assert "CMSIS-NN" in m7.source("tflm.margin_fraction")


def test_a_tflm_table_needs_sources_and_a_tflm_runtime(tmp_path):
    text = Path(load_profile("cortex-m7").path).read_text()
    no_source = "\n".join(line for line in text.splitlines() if not line.startswith('"tflm.margin_fraction"'))
    (tmp_path / "a.toml").write_text(no_source)
    with pytest.raises(ConfigError, match="no source for tflm.margin_fraction"):
        load_profile(tmp_path / "a.toml")
    (tmp_path / "b.toml").write_text(text.replace('runtime = "tflite-micro"', 'runtime = "litert"'))
    with pytest.raises(ConfigError, match=r"\[tflm\] table needs runtime"):
        load_profile(tmp_path / "b.toml")


def test_build_names_the_package_version_and_git_hash():
    from importlib.metadata import version

    build = tflm.tflm_build()
    assert build.package == "tflite-micro" and build.version == version("tflite-micro")
    import tflite_micro

    assert tflite_micro.__version__.endswith("-g" + build.git_hash) and len(build.git_hash) >= 6


def test_missing_package_is_one_line_that_says_how_to_install_it():
    code = ("import sys; sys.modules['tflite_micro'] = None\n"
            "from kws_edge.converters.tflm import measure_arena\n"
            "try:\n    measure_arena(b'')\nexcept Exception as e:\n    print(type(e).__name__, e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.startswith(BackendUnavailableError.__name__)
    assert "pip install tflite-micro" in out.stdout and out.stdout.count("\n") == 1


# ---------------------------------------------------------------- an existing bundle, kws info


def test_record_in_bundle_then_kws_info_shows_the_arena(tmp_path):
    from click.testing import CliRunner

    from kws_edge.cli import cli

    src = DATA / "tone_tcn_bundle"
    shutil.copytree(src, tmp_path / "b")
    before = to_dict(load_bundle(tmp_path / "b").manifest)  # the typed manifest (the test bundle is format 2)
    out = subprocess.run([sys.executable, "-m", "kws_edge.converters.tflm", str(tmp_path / "b"),
                          "--device", "cortex-m7"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "TFLM model.tflite: arena" in out.stdout and "TFLM model_streaming.tflite: arena" in out.stdout
    b = load_bundle(tmp_path / "b")  # hashes still verify
    entry = b.manifest.budgets.tflm
    assert set(entry.models) == {"model.tflite", "model_streaming.tflite"}
    assert entry.build.git_hash == tflm.tflm_build().git_hash
    names = {r.name: r for r in b.manifest.budgets.results}
    assert names["tensor_arena_bytes"].method == "tflm"
    assert names["streaming_tensor_arena_bytes"].value >= entry.models["model_streaming.tflite"].arena_bytes
    skip = ("budgets", "bundle_sha256", "format_version")
    assert {k: v for k, v in json.loads((tmp_path / "b" / "manifest.json").read_text()).items()
            if k not in skip} == {k: v for k, v in before.items() if k not in skip}  # digest follows
    assert b.model_bytes == (src / "model.tflite").read_bytes()

    import kws_edge.cli.commands  # noqa: F401  (registers the subcommands)

    info = CliRunner().invoke(cli, ["info", str(tmp_path / "b")])
    assert info.exit_code == 0, info.output
    text = info.output.replace("\n    ", " ")  # kws info wraps long lines with a 4-space indent
    line = next(x for x in text.splitlines() if x.startswith("model activation"))
    arena = entry.models["model.tflite"].arena_bytes
    assert line.endswith(f"; TFLM arena {arena:,} bytes (measured in tflite-micro {tflm.tflm_build().version})")
    assert any(x.startswith("streaming activation") and "TFLM arena" in x for x in info.output.splitlines())


def test_shipped_micro_bundle_carries_tflm_arenas_for_both_models():
    b = load_bundle(MICRO_BUNDLE)
    models = b.manifest.budgets.tflm.models
    assert set(models) == {b.manifest.model.file, b.manifest.streaming_model.file}
    for file, model in ((b.manifest.model.file, b.model_bytes),
                        (b.manifest.streaming_model.file, b.streaming_model_bytes)):
        recorded = models[file].arena_bytes
        assert tflm.allocates(model, recorded, fresh_process=False)
        assert not tflm.allocates(model, recorded - 1, fresh_process=False)
