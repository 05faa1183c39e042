"""Benchmark suites and latency gates: shared fixtures and the gate logic.

Run: ``pytest benchmarks/ [--device PROFILE] [--benchmark-json=bench.json]``

* The bundle measured is chosen by ``bench_bundle.resolve_bench_bundle``
  (default bundle > tests/data/tone_bundle > a DS-CNN benchmark bundle built
  here); the choice is printed in the summary and stored in the JSON.
* Absolute budgets come from the device profile of this machine
  (``kws_edge.devices.detect_local_profile()``) or ``--device``.
* Gates on this shared machine that must not flake compare *ratios measured
  in the same run* (naive vs streaming) or CPU time, never wall time.
* Every gate lands in one table at the end of the run (and in the JSON under
  ``kws_gates``); a failing gate fails its test with the same table.
* ``KWS_BENCH_BUNDLE=DIR`` measures that bundle; ``KWS_BENCH_ROUNDS=N`` sets
  the interleaved rounds of the detector suites (default 3).
* ``KWS_BENCH_INJECT=slow_mfcc`` makes the streaming path recompute a whole
  window of MFCC every hop: a deliberate regression that the ratio gate must
  catch (used by tests/ops/test_bench_gates.py).

Math libraries are pinned to one thread (before numpy loads) so CPU time is
the cost on one core and no BLAS thread spins inflate it.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import json  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from bench_support import FIGURES as _FIGURES  # noqa: E402
from kws_edge import bench  # noqa: E402
from kws_edge.workstation import gates as bench_gates  # noqa: E402

_GATES: list[tuple[str, bench_gates.Limit]] = []
_NOTES: dict[str, str] = {}


def pytest_addoption(parser):
    group = parser.getgroup("kws-edge benchmarks")
    group.addoption("--device", action="store", default=None,
                    help="device profile name or TOML path for absolute budgets (default: auto-detect)")


def pytest_configure(config):
    config.addinivalue_line("markers", "gate: a benchmark that gates a budget")


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def bench_bundle_path() -> Path:
    from bench_bundle import resolve_bench_bundle

    path, note = resolve_bench_bundle()
    _NOTES["bundle"] = f"{path} ({note})"
    return path


@pytest.fixture(scope="session")
def loaded_bundle(bench_bundle_path):
    from kws_edge import load_bundle

    return load_bundle(bench_bundle_path)


@pytest.fixture(scope="session")
def device_profile(pytestconfig):
    """The device profile, or None (with the reason in the summary) when profiles are unavailable."""
    profile, how = bench._load_profile(pytestconfig.getoption("--device"))
    if profile is None:
        _NOTES["device"] = f"NONE: {how}; absolute budget gates are NOT checked in this run"
    else:
        _NOTES["device"] = f"{bench_gates.profile_name(profile)} ({how})"
    return profile


@pytest.fixture(scope="session")
def budgets(device_profile) -> dict[str, float]:
    return bench_gates.profile_budgets(device_profile) if device_profile is not None else {}


def _slow_mfcc_detector(detector):
    """Deliberate regression: every call also recomputes MFCC of the whole last window."""
    from kws_edge.features import mfcc

    real = detector.process
    cfg = detector.features
    history = np.zeros(cfg.clip_samples, np.float32)

    def process(chunk):
        nonlocal history
        history = np.concatenate((history, np.asarray(chunk, np.float32)))[-cfg.clip_samples:]
        mfcc(history, cfg)
        mfcc(history, cfg)
        return real(chunk)

    detector.process = process
    return detector


@pytest.fixture
def detector(loaded_bundle):
    from kws_edge import KeywordDetector

    det = KeywordDetector(loaded_bundle, num_threads=1)
    if os.environ.get("KWS_BENCH_INJECT") == "slow_mfcc":
        _NOTES["injected"] = "KWS_BENCH_INJECT=slow_mfcc: the streaming path was deliberately slowed"
        det = _slow_mfcc_detector(det)
    return det


@pytest.fixture
def kws_model(loaded_bundle):
    from kws_edge.model import KwsModel

    return KwsModel(loaded_bundle, num_threads=1)


@pytest.fixture(scope="session")
def audio_10s(loaded_bundle) -> np.ndarray:
    """11 s of deterministic audio: 1 s warm-up + 10 s measured."""
    return bench.bench_audio(11.0, loaded_bundle.manifest.features.sample_rate_hz, seed=0)


class GateRecorder:
    """Records gates for the summary; fails the calling test with a table if any failed."""

    def __init__(self, test_name: str, benchmark=None) -> None:
        self.test_name = test_name
        self.benchmark = benchmark

    def check(self, *gates: bench_gates.Limit) -> None:
        for g in gates:
            _GATES.append((self.test_name, g))
        if self.benchmark is not None:
            self.benchmark.extra_info.setdefault("gates", []).extend(g.to_dict() for g in gates)
        failed = [g for g in gates if not g.passed]
        if failed:
            pytest.fail("budget exceeded\n" + bench_gates.limits_table(list(gates)), pytrace=False)


@pytest.fixture
def gate(request):
    bm = request.getfixturevalue("benchmark") if "benchmark" in request.fixturenames else None
    return GateRecorder(request.node.name, bm)


# ---------------------------------------------------------------- reporting


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not (_GATES or _NOTES or _FIGURES):
        return
    tr = terminalreporter
    tr.section("kws-edge benchmark gates")
    for key in ("bundle", "device", "injected"):
        if key in _NOTES:
            tr.write_line(f"{key}: {_NOTES[key]}")
    if _FIGURES:
        tr.write_line("")
        width = max(len(k) for k in _FIGURES)
        for name, text in _FIGURES.items():
            tr.write_line(f"{name.ljust(width)}  {text}")
    if _GATES:
        tr.write_line("")
        tr.write_line(bench_gates.limits_table([g for _, g in _GATES]))
        n_failed = sum(not g.passed for _, g in _GATES)
        tr.write_line(f"\n{len(_GATES) - n_failed} gate(s) passed, {n_failed} failed")


def pytest_benchmark_update_json(config, benchmarks, output_json):
    output_json["kws_gates"] = [{"test": t, **g.to_dict()} for t, g in _GATES]
    output_json["kws_notes"] = dict(_NOTES)
    output_json["kws_figures"] = dict(_FIGURES)
    output_json["kws_machine"] = bench.machine_info()


def stats_json(stats: bench.StreamStats) -> str:
    return json.dumps(stats.to_dict())
