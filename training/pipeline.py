"""``kws pipeline``: data -> train -> convert -> budget check -> evaluate -> benchmark -> bundle -> report.

One command from a dataset (or the built-in synthetic set) to a deployable,
reported bundle. Every stage writes its outputs under ``OUT`` and records in
the ledger ``OUT/pipeline.json`` a **key**: the SHA-256 of its inputs (the
data's content hash, the resolved configuration, the device, the keys of the
stages it depends on and the code version). Running the pipeline again
reuses every stage whose key is unchanged and whose outputs are still there,
and says so. A failing stage stops the pipeline with one message; earlier
stages' outputs stay. Ctrl-C marks the running stage "interrupted"; the next
run redoes it (each stage writes atomically, so nothing half-written is
reused).

Stage order differs from the issue's list in one place: streaming evaluation
runs the real ``KeywordDetector`` on a bundle, so ``evaluate`` comes after
``convert`` and ``budget`` (the clip-level evaluation of the float model is
part of ``train``).

Layout of ``OUT``::

    pipeline.json            the ledger (stages, keys, timings, summaries)
    run/                     the training run directory (kws-train's format)
    repro/                   --check-reproducible: the second training run and reproducibility.json
    convert/bundle/          kws-convert's bundle
    budgets.json             the budget table
    evaluation/              streaming.json, det_curve.png (streaming evaluation of the int8 bundle)
    benchmark.json           cost of the streaming path on this machine
    bundle/                  the final bundle (thresholds from the evaluation, streaming metrics, benchmark)
    sample.wav, sample.json  a synthesised demo recording and what is said in it
    report/report.html, report/report.md
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import numpy as np

from .. import __version__
from ..atomic import atomic_write_json, deferred_sigint, pid_alive
from ..config import config_hash, from_dict, load_toml, to_dict
from ..errors import BudgetExceeded, ConfigError, KwsError
from ..portable import portable_path
from .config import TrainConfig
from .tf_import import import_keras

__all__ = [
    "STAGES",
    "PipelineConfig",
    "PipelineStageError",
    "StageEvent",
    "load_pipeline_config",
    "run_pipeline",
    "read_ledger",
    "LEDGER_NAME",
    "REPRO_WEIGHT_ATOL",
    "REPRO_METRIC_ATOL",
]

STAGES = ("data", "train", "reproducibility", "convert", "budget", "evaluate", "benchmark", "bundle", "report",
          "track")
LEDGER_NAME = "pipeline.json"
LEDGER_FORMAT = 1
#: --check-reproducible: largest allowed absolute difference of any weight between the two runs
REPRO_WEIGHT_ATOL = 1e-6
#: --check-reproducible: largest allowed absolute difference of any metric between the two runs
REPRO_METRIC_ATOL = 1e-9


@dataclass(frozen=True)
class PipelineConfig:
    """Pipeline settings; the ``[pipeline]`` table of the config file (the rest is the ``TrainConfig``).

    Attributes
    ----------
    device : device profile the bundle is checked against
    stream_minutes : length of the streaming evaluation recording
    benchmark_seconds : audio streamed through the detector for the benchmark
    sample_words : what the demo recording OUT/sample.wav says
    bundle_name : name in the final manifest (default: the OUT folder's name)
    max_accuracy_drop_points : int8 parity gate of the conversion
    """

    device: str = "raspberry-pi-4b"
    stream_minutes: float = 5.0
    benchmark_seconds: float = 20.0
    sample_words: tuple[str, ...] = ("yes", "up", "no", "down", "yes", "left", "no")
    bundle_name: str = ""
    max_accuracy_drop_points: float = 2.0

    def __post_init__(self) -> None:
        if self.stream_minutes <= 0 or self.benchmark_seconds < 2:
            raise ConfigError("pipeline stream_minutes must be > 0 and benchmark_seconds >= 2")


def load_pipeline_config(path: Optional[str | Path], *, data: Optional[str] = None,
                         device: Optional[str] = None) -> tuple[TrainConfig, PipelineConfig]:
    """Read a TOML file whose top level is a ``TrainConfig`` plus an optional ``[pipeline]`` table."""
    raw: dict[str, Any] = dict(load_toml(path)) if path else {}
    pipe_raw = raw.pop("pipeline", {})
    train = from_dict(TrainConfig, raw)
    pipe = from_dict(PipelineConfig, pipe_raw, where="pipeline.")
    if data is not None:
        if data != "synthetic":
            p = Path(data).expanduser()
            if not p.is_dir():
                raise ConfigError(f"--data {data}: no such folder; pass a Speech Commands-layout folder or 'synthetic'")
            data = str(p)  # as given: run files and manifests hold no absolute path of this machine
        train = dataclasses.replace(train, data=data)
    if device is not None:
        pipe = dataclasses.replace(pipe, device=device)
    from kws_edge.devices import load_profile

    load_profile(pipe.device)  # an unknown device or a bad profile file is refused now, not after training
    return train, pipe


@dataclass(frozen=True)
class StageEvent:
    """What the pipeline reports to its display.

    ``kind``: "start", "progress", "done", "reused", "failed", "interrupted", "skipped".
    """

    kind: str
    stage: str
    index: int
    total: int
    message: str = ""
    done: int = 0
    of: int = 0
    seconds: float = 0.0


class PipelineStageError(KwsError):
    """A stage failed; earlier stages' outputs are kept."""

    exit_code = 1

    def __init__(self, stage: str, cause: BaseException, out_dir: Path) -> None:
        self.stage = stage
        self.cause = cause
        text = str(cause) if isinstance(cause, KwsError) else f"{type(cause).__name__}: {cause}"
        text = " ".join(text.split())  # one line, whatever the cause's message looked like
        super().__init__(
            f"stage '{stage}' failed: {text} (earlier stages' outputs are kept in {out_dir}; "
            "fix the cause and run the same command again to resume)"
        )
        if isinstance(cause, KwsError):
            self.exit_code = cause.exit_code if cause.exit_code != 2 else 1


def _utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def read_ledger(out_dir: str | Path) -> dict[str, Any]:
    """The ledger of a pipeline output folder (empty if there is none or it is unreadable)."""
    path = Path(out_dir) / LEDGER_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and isinstance(data.get("stages"), dict):
            return data
    except (OSError, ValueError):
        pass
    return {"format_version": LEDGER_FORMAT, "stages": {}}


def code_version() -> str:
    """kws-edge version and a SHA-256 of the installed source (every ``.py`` and ``.toml`` of the package).

    A content hash rather than the git commit: it changes exactly when the
    code that produces the artifacts changes, also for uncommitted edits and
    for installs without git. (The git commit is recorded in run.json and the
    manifests for provenance.)
    """
    import kws_edge

    roots = {Path(kws_edge.__file__).resolve().parent}
    for sub in ("training", "converters", "devices"):
        try:
            mod = __import__(f"kws_edge.{sub}", fromlist=["__file__"])
            roots.add(Path(mod.__file__).resolve().parent)
        except ImportError:
            continue
    h = hashlib.sha256()
    for root in sorted(roots):
        for p in sorted(root.rglob("*")):
            if p.suffix in (".py", ".toml") and p.is_file() and "__pycache__" not in p.parts:
                h.update(p.relative_to(root.parent).as_posix().encode() + b"\0" + p.read_bytes() + b"\0")
    return f"{__version__}+src.{h.hexdigest()[:16]}"


Progress = Callable[[StageEvent], None]


class _Pipeline:
    def __init__(self, out: Path, train_cfg: TrainConfig, pipe_cfg: PipelineConfig, *, check_reproducible: bool,
                 mlflow_uri: Optional[str], progress: Optional[Progress], code: str, force: tuple[str, ...],
                 fail_stage: Optional[str]) -> None:
        self.out = out
        self.train_cfg = train_cfg
        self.pipe_cfg = pipe_cfg
        self.check_reproducible = check_reproducible
        self.mlflow_uri = mlflow_uri
        self.progress = progress or (lambda e: None)
        self.code = code
        self.force = set(force)
        self.fail_stage = fail_stage
        self.ledger = read_ledger(out)
        self.ledger.setdefault("stages", {})
        for entry in self.ledger["stages"].values():  # a run killed mid-stage never recorded its end
            if isinstance(entry, dict) and entry.get("status") == "running" and not (
                    isinstance(entry.get("pid"), int) and entry["pid"] != os.getpid() and pid_alive(entry["pid"])):
                entry.update(status="interrupted", note="the process running this stage ended without recording it")
        self.keys: dict[str, str] = {}
        self.reused: dict[str, bool] = {}
        self.summaries: dict[str, Any] = {}
        self.stages = [s for s in STAGES
                       if (s != "reproducibility" or check_reproducible) and (s != "track" or mlflow_uri)]

    # ---------------------------------------------------------------- ledger
    def _save_ledger(self) -> None:
        self.ledger.update(format_version=LEDGER_FORMAT, out_dir=portable_path(self.out), updated_utc=_utc_now(),
                           code_version=self.code, config=to_dict(self.train_cfg), pipeline=to_dict(self.pipe_cfg))
        atomic_write_json(self.out / LEDGER_NAME, self.ledger)

    def _save_ledger_after_failure(self) -> None:
        """Record a stage's end; if that fails too (the disk is full), the stage's own error is the one reported."""
        try:
            self._save_ledger()
        except KwsError:
            pass

    def _run_stage(self, name: str, inputs: dict[str, Any], outputs_ok: Callable[[], bool],
                   body: Callable[[Callable[[int, int, str], None]], dict[str, Any]]) -> dict[str, Any]:
        idx = self.stages.index(name) + 1
        total = len(self.stages)
        key = _digest({"stage": name, "code": self.code, "inputs": inputs})
        self.keys[name] = key
        entry = self.ledger["stages"].get(name, {})
        if (name not in self.force and entry.get("status") == "done" and entry.get("key") == key and outputs_ok()):
            self.summaries[name] = entry.get("summary", {})
            self.reused[name] = True
            self.ledger.setdefault("last_run", {}).setdefault("reused", []).append(name)
            self.progress(StageEvent("reused", name, idx, total, "inputs unchanged, outputs reused"))
            return self.summaries[name]
        reason = _why_not_reused(name in self.force, entry, key, inputs, self.code, outputs_ok)
        self.reused[name] = False
        self.progress(StageEvent("start", name, idx, total, reason))
        started = time.perf_counter()
        cpu_started = _cpu_seconds()
        self.ledger["stages"][name] = {"status": "running", "key": key, "inputs": inputs, "code": self.code,
                                       "reason": reason, "started_utc": _utc_now(), "pid": os.getpid()}
        # later stages depend on this one: their entries become stale automatically through their keys
        self._save_ledger()

        def tick(done: int, of: int, message: str = "") -> None:
            self.progress(StageEvent("progress", name, idx, total, message, done=done, of=of))

        try:
            if self.fail_stage == name:
                raise KwsError(f"failure injected into stage '{name}' (KWS_PIPELINE_FAIL_STAGE)")
            summary = body(tick)
        except KeyboardInterrupt:
            with deferred_sigint():  # a second Ctrl-C cannot leave the ledger saying "running"
                self.ledger["stages"][name].update(status="interrupted", finished_utc=_utc_now())
                self._save_ledger_after_failure()
            self.progress(StageEvent("interrupted", name, idx, total))
            raise
        except BaseException as exc:
            self.ledger["stages"][name].update(
                status="failed", finished_utc=_utc_now(), seconds=round(time.perf_counter() - started, 2),
                error=str(exc) if isinstance(exc, KwsError) else f"{type(exc).__name__}: {exc}",
                traceback=None if isinstance(exc, KwsError) else traceback.format_exc(limit=8),
            )
            self._save_ledger_after_failure()
            self.progress(StageEvent("failed", name, idx, total, str(exc)))
            if isinstance(exc, Exception):
                raise PipelineStageError(name, exc, self.out) from exc
            raise
        seconds = time.perf_counter() - started
        self.ledger["stages"][name].update(status="done", finished_utc=_utc_now(), seconds=round(seconds, 2),
                                           cpu_seconds=round(_cpu_seconds() - cpu_started, 2), summary=summary)
        self.summaries[name] = summary
        self._save_ledger()
        self.progress(StageEvent("done", name, idx, total, _short(summary), seconds=seconds))
        return summary

    # ---------------------------------------------------------------- stages
    def data(self) -> dict[str, Any]:
        cfg = self.train_cfg
        data_inputs = {
            "data": cfg.data, "synthetic": to_dict(cfg.synthetic) if cfg.is_synthetic else None,
            "seed": cfg.seed if cfg.is_synthetic else None, "labels": list(cfg.labels),
            "keywords": list(cfg.keywords), "sample_rate_hz": cfg.features.sample_rate_hz,
            "fingerprint": None if cfg.is_synthetic else [_folder_fingerprint(Path(d)) for d in cfg.data_folders],
            "splits": [cfg.silence_percentage, cfg.unknown_percentage, cfg.validation_percentage,
                       cfg.testing_percentage, cfg.synthetic_negatives],
            "exclude_words": list(cfg.exclude_words),
        }

        def body(tick):
            from .dataset import index_dataset
            from .fit import resolve_data

            root = resolve_data(cfg, lambda stage, d, t: tick(d, t, stage))
            index = index_dataset(root, cfg)
            manifest = index.manifest()
            return {"root": manifest["root"], "content_sha256": manifest["content_sha256"], "counts": index.counts(),
                    "n_files": len(manifest.get("files", [])), "n_skipped": len(index.skipped)}

        return self._run_stage("data", data_inputs, lambda: True, body)

    def train(self, data: dict[str, Any]) -> dict[str, Any]:
        cfg = self.train_cfg
        run_dir = self.out / "run"
        inputs = {"data_sha256": data["content_sha256"], "config_sha256": config_hash(cfg)}

        def body(tick):
            from .fit import train

            train(cfg, run_dir, overwrite=True, progress=lambda stage, d, t: tick(d, t, stage))
            return _run_summary(run_dir)

        return self._run_stage("train", inputs, lambda: _run_complete(run_dir), body)

    def reproducibility(self) -> dict[str, Any]:
        cfg = self.train_cfg
        repro = self.out / "repro"

        def body(tick):
            from .fit import train

            train(cfg, repro / "run", overwrite=True, progress=lambda stage, d, t: tick(d, t, stage))
            result = compare_runs(self.out / "run", repro / "run")
            atomic_write_json(repro / "reproducibility.json", result)
            return result

        return self._run_stage("reproducibility", {"train": self.keys["train"]},
                               lambda: (repro / "reproducibility.json").exists(), body)

    def convert(self) -> dict[str, Any]:
        bundle_dir = self.out / "convert" / "bundle"
        inputs = {"train": self.keys["train"], "device": self.pipe_cfg.device,
                  "max_drop": self.pipe_cfg.max_accuracy_drop_points}

        def body(tick):
            from ..converters.convert import convert_run

            tick(0, 1, "converting")
            report = convert_run(self.out / "run", device=self.pipe_cfg.device, out_dir=bundle_dir,
                                 allow_over_budget=True, overwrite=True,
                                 max_accuracy_drop_points=self.pipe_cfg.max_accuracy_drop_points,
                                 name=self._bundle_name())
            m = report.manifest.model
            return {"bundle": str(bundle_dir), "model_size_bytes": m.size_bytes,
                    "peak_activation_bytes": m.peak_activation_bytes, "macs_per_inference": m.macs_per_inference,
                    "float_accuracy": report.float_metrics["accuracy"],
                    "int8_accuracy": report.converted_metrics["accuracy"],
                    "argmax_agreement": report.argmax_agreement, "summary": report.summary()}

        return self._run_stage("convert", inputs, lambda: _bundle_ok(bundle_dir), body)

    def budget(self) -> dict[str, Any]:
        bundle_dir = self.out / "convert" / "bundle"

        def body(tick):
            from ..bundle import load_bundle

            budgets = load_bundle(bundle_dir).manifest.budgets
            atomic_write_json(self.out / "budgets.json", budgets)
            if not budgets.get("within_budget", False):
                failed = [r for r in budgets.get("results", []) if not r.get("ok", r.get("passed", True))]
                names = ", ".join(str(r.get("name")) for r in failed) or "see budgets.json"
                raise BudgetExceeded(f"the model does not fit {budgets.get('device')}: {names} over budget "
                                     f"(table in {self.out / 'budgets.json'}); choose a smaller model or "
                                     "another --device")
            return {"device": budgets.get("device"), "within_budget": True, "n_checks": len(budgets.get("results", []))}

        return self._run_stage("budget", {"convert": self.keys["convert"]},
                               lambda: (self.out / "budgets.json").exists(), body)

    def evaluate(self, data: dict[str, Any]) -> dict[str, Any]:
        ev_dir = self.out / "evaluation"
        inputs = {"convert": self.keys["convert"], "minutes": self.pipe_cfg.stream_minutes}

        def body(tick):
            return _streaming_evaluation(self.out / "convert" / "bundle", self.out / "run", ev_dir,
                                         minutes=self.pipe_cfg.stream_minutes, seed=self.train_cfg.seed, tick=tick)

        return self._run_stage("evaluate", inputs, lambda: (ev_dir / "streaming.json").exists(), body)

    def benchmark(self) -> dict[str, Any]:
        path = self.out / "benchmark.json"

        def body(tick):
            from ..bench import bench_audio, cold_start, measure_detector, peak_rss_bytes
            from ..detector import KeywordDetector

            tick(0, 2, "streaming")
            det = KeywordDetector.from_bundle(self.out / "convert" / "bundle")
            audio = bench_audio(self.pipe_cfg.benchmark_seconds, det.sample_rate_hz, seed=self.train_cfg.seed)
            stats = measure_detector(det, audio).to_dict()
            chunked = measure_detector(det, audio, chunk_samples=1600).to_dict()
            tick(1, 2, "cold start")
            cold = cold_start(self.out / "convert" / "bundle")
            result = {"machine": _machine(), "hop": stats, "chunk_100ms": chunked, "cold_start": cold,
                      "peak_rss_bytes_pipeline_process": peak_rss_bytes()}
            atomic_write_json(path, result)
            return {"cpu_ms_per_audio_s": stats["cpu_ms_per_audio_s"], "real_time_factor": stats["real_time_factor"],
                    "hop_latency_median_ms": stats["hop_latency_median_ms"],
                    "hop_latency_p99_ms": stats["hop_latency_p99_ms"],
                    "cold_start_s": round(cold["wall_s"], 3), "cold_start_rss_bytes": cold["peak_rss_bytes"]}

        # the benchmark measures this machine: re-run it when the bundle changed, not otherwise
        return self._run_stage("benchmark", {"convert": self.keys["convert"],
                                             "seconds": self.pipe_cfg.benchmark_seconds},
                               lambda: path.exists(), body)

    def bundle(self) -> dict[str, Any]:
        final = self.out / "bundle"
        inputs = {k: self.keys[k] for k in ("convert", "evaluate", "benchmark")}
        inputs["sample_words"] = list(self.pipe_cfg.sample_words)

        def body(tick):
            return _final_bundle(self.out, final, self.pipe_cfg, seed=self.train_cfg.seed, tick=tick)

        return self._run_stage("bundle", inputs,
                               lambda: _bundle_ok(final) and (self.out / "sample.wav").exists(), body)

    def report(self) -> dict[str, Any]:
        inputs = {k: self.keys[k] for k in self.keys if k != "report"}

        def body(tick):
            from .report import write_report

            paths = write_report(self.out)
            return {"html": str(paths["html"]), "markdown": str(paths["markdown"])}

        return self._run_stage("report", inputs,
                               lambda: (self.out / "report" / "report.html").exists(), body)

    def track(self) -> dict[str, Any]:
        inputs = {"bundle": self.keys["bundle"], "report": self.keys["report"], "uri": self.mlflow_uri}

        def body(tick):
            from .tracking import log_pipeline

            return log_pipeline(self.out, self.mlflow_uri)

        return self._run_stage("track", inputs, lambda: True, body)

    def _bundle_name(self) -> str:
        return self.pipe_cfg.bundle_name or self.out.resolve().name

    def run(self) -> dict[str, Any]:
        self.out.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        self.ledger["last_run"] = {"started_utc": _utc_now(), "reused": []}
        data = self.data()
        self.train(data)
        if self.check_reproducible:
            self.reproducibility()
        self.convert()
        self.budget()
        self.evaluate(data)
        self.benchmark()
        self.bundle()
        self.report()
        if self.mlflow_uri:
            self.track()
        reused = [s for s in self.stages if self.reused.get(s)]
        self.ledger["last_run"].update(finished_utc=_utc_now(), seconds=round(time.perf_counter() - t0, 1),
                                       reused=reused)
        self._save_ledger()
        return {"out_dir": str(self.out), "stages": self.summaries, "seconds": time.perf_counter() - t0,
                "reused": reused}


def run_pipeline(out_dir: str | Path, train_config: TrainConfig, pipeline_config: PipelineConfig = PipelineConfig(),
                 *, check_reproducible: bool = False, mlflow_uri: Optional[str] = None,
                 progress: Optional[Progress] = None, code: Optional[str] = None,
                 force: tuple[str, ...] = (), fail_stage: Optional[str] = None) -> dict[str, Any]:
    """Run (or resume) the whole pipeline into ``out_dir``; returns a summary.

    ``code`` overrides the code version in the stage keys (tests; also the
    environment variable ``KWS_PIPELINE_CODE_VERSION``);
    ``force`` names stages to redo even when their inputs are unchanged;
    ``fail_stage`` makes that stage fail (to test failure handling; also the
    environment variable ``KWS_PIPELINE_FAIL_STAGE``).
    Raises :class:`PipelineStageError` when a stage fails.
    """
    import os

    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; choose a folder")
    unknown = [s for s in force if s not in STAGES]
    if unknown:
        raise ConfigError(f"unknown stage {unknown[0]!r}; stages: {', '.join(STAGES)}")
    p = _Pipeline(out, train_config, pipeline_config, check_reproducible=check_reproducible, mlflow_uri=mlflow_uri,
                  progress=progress, code=code or os.environ.get("KWS_PIPELINE_CODE_VERSION") or code_version(),
                  force=tuple(force),
                  fail_stage=fail_stage or os.environ.get("KWS_PIPELINE_FAIL_STAGE") or None)
    return p.run()


# ---------------------------------------------------------------------- helpers
def _cpu_seconds() -> float:
    """CPU time (user + system) of this process and its finished children."""
    import resource

    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        r = resource.getrusage(who)
        total += r.ru_utime + r.ru_stime
    return total


def _why_not_reused(forced: bool, entry: dict[str, Any], key: str, inputs: dict[str, Any], code: str,
                    outputs_ok: Callable[[], bool]) -> str:
    if forced:
        return "forced"
    if not entry:
        return "first run"
    if entry.get("status") != "done":
        return f"previous attempt {entry.get('status', 'unknown')}"
    if entry.get("key") != key:
        old = entry.get("inputs") or {}
        changed = sorted(k for k in set(old) | set(inputs) if old.get(k) != inputs.get(k))
        if entry.get("code") not in (None, code):
            changed.append("code version")
        return "inputs changed: " + (", ".join(changed) or "code version")
    if not outputs_ok():
        return "outputs missing or damaged"
    return "rerun"


def _short(summary: dict[str, Any]) -> str:
    if not isinstance(summary, dict):
        return ""
    return str(summary.get("headline", ""))


def _folder_fingerprint(root: Path) -> str:
    """Cheap fingerprint of a data folder: every file's relative path, size and modification time."""
    if not root.is_dir():
        return "missing"
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            st = p.stat()
            h.update(f"{p.relative_to(root).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _run_complete(run_dir: Path) -> bool:
    try:
        return json.loads((run_dir / "run.json").read_text())["status"] == "complete"
    except (OSError, ValueError, KeyError):
        return False


def _bundle_ok(path: Path) -> bool:
    from ..bundle import load_bundle

    try:
        load_bundle(path)
        return True
    except KwsError:
        return False


def _run_summary(run_dir: Path) -> dict[str, Any]:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    run = json.loads((run_dir / "run.json").read_text())
    test = metrics.get("test", {})
    return {"run_dir": str(run_dir), "test_accuracy": test.get("accuracy"),
            "validation_accuracy": metrics.get("validation", {}).get("accuracy"),
            "keyword_false_accept_rate": test.get("keyword_false_accept_rate"),
            "data_sha256": run.get("data_sha256"), "config_sha256": run.get("config_sha256"),
            "headline": f"test accuracy {100 * (test.get('accuracy') or 0):.1f}%"}


def _machine() -> dict[str, Any]:
    import os
    import platform

    return {"platform": platform.platform(), "machine": platform.machine(), "python": platform.python_version(),
            "cpus": os.cpu_count()}


def compare_runs(run_a: Path, run_b: Path) -> dict[str, Any]:
    """Whether two training runs of one config and seed give the same metrics and weights.

    Tolerances: every weight within ``REPRO_WEIGHT_ATOL`` (absolute), every
    number in metrics.json within ``REPRO_METRIC_ATOL``.
    """
    keras = import_keras()

    ma = json.loads((run_a / "metrics.json").read_text())
    mb = json.loads((run_b / "metrics.json").read_text())
    fa, fb = _numbers(ma), _numbers(mb)
    metric_diffs = {k: abs(fa[k] - fb.get(k, float("nan"))) for k in fa}
    worst_metric = max(metric_diffs.values(), default=0.0)
    wa = keras.saving.load_model(run_a / "model.keras", compile=False).get_weights()
    wb = keras.saving.load_model(run_b / "model.keras", compile=False).get_weights()
    same_shapes = len(wa) == len(wb) and all(a.shape == b.shape for a, b in zip(wa, wb))
    worst_weight = max((float(np.max(np.abs(a - b))) if a.size else 0.0 for a, b in zip(wa, wb)), default=0.0) \
        if same_shapes else float("inf")
    metrics_ok = set(fa) == set(fb) and worst_metric <= REPRO_METRIC_ATOL
    weights_ok = same_shapes and worst_weight <= REPRO_WEIGHT_ATOL
    ok = bool(metrics_ok and weights_ok)
    return {
        "reproducible": ok,
        "metrics_match": bool(metrics_ok),
        "weights_match": bool(weights_ok),
        "max_metric_abs_diff": worst_metric,
        "max_weight_abs_diff": worst_weight,
        "metric_tolerance": REPRO_METRIC_ATOL,
        "weight_tolerance": REPRO_WEIGHT_ATOL,
        "n_weight_tensors": len(wa),
        "n_weights": int(sum(a.size for a in wa)),
        "headline": ("reproducible: " if ok else "NOT reproducible: ")
        + f"max weight diff {worst_weight:.2g}, max metric diff {worst_metric:.2g}",
    }


def _numbers(d: Any, prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(_numbers(v, f"{prefix}{k}."))
    elif isinstance(d, list):
        for i, v in enumerate(d):
            out.update(_numbers(v, f"{prefix}{i}."))
    elif isinstance(d, (int, float)) and not isinstance(d, bool):
        out[prefix[:-1]] = float(d)
    return out


#: a detection counts as a hit when it falls between a keyword's start and its end plus this
TOLERANCE_S = 1.0
#: thresholds of the DET curve
DET_THRESHOLDS = tuple(float(round(t, 2)) for t in np.arange(0.30, 0.96, 0.05)) + (0.97, 0.98, 0.99)
#: threshold selection: lowest false-reject rate with at most this many false accepts per hour
TARGET_FA_PER_HOUR = 1.0


def _test_stream(run_dir: Path, *, minutes: float, seed: int, sample_rate_hz: int, keywords: tuple[str, ...]):
    """A long recording from the run's test split: keywords and other words at known times, gaps of noise."""
    from ..audio import read_wav

    dm = json.loads((run_dir / "data_manifest.json").read_text())
    root = Path(dm["root"])
    files = [f for f in dm["files"] if f.get("split") == "test" and f.get("label") != "_silence_"]
    if not any(f["label"] in keywords for f in files):
        raise KwsError(f"the test split in {run_dir / 'data_manifest.json'} has no keyword clips to evaluate")
    rng = np.random.default_rng([seed, 11])
    order = rng.permutation(len(files))
    n_total = int(minutes * 60 * sample_rate_hz)
    pieces, events, pos, i = [], [], 0, 0
    while pos < n_total:
        f = files[order[i % len(order)]]
        i += 1
        clip = read_wav(root / f["path"], sample_rate_hz=sample_rate_hz).samples
        gap = np.zeros(int(rng.uniform(0.3, 1.2) * sample_rate_hz), np.float32)
        pieces += [gap, clip]
        start = pos + gap.size
        if f["label"] in keywords:
            events.append({"label": f["label"], "start_s": start / sample_rate_hz,
                           "end_s": (start + clip.size) / sample_rate_hz})
        pos = start + clip.size
    audio = np.concatenate(pieces)
    audio = audio + rng.normal(0, 10 ** (-60 / 20), audio.size).astype(np.float32)  # faint floor noise
    distinct = len({f["path"] for f in files if f["label"] in keywords})
    return np.clip(audio, -1, 1).astype(np.float32), events, distinct


def _score_events(detections: list[tuple[str, float]], events: list[dict[str, Any]], hours: float) -> dict[str, Any]:
    hit = [False] * len(events)
    false_accepts = 0
    for label, t in detections:
        match = next((j for j, e in enumerate(events) if not hit[j] and e["label"] == label
                      and e["start_s"] <= t <= e["end_s"] + TOLERANCE_S), None)
        if match is None:
            false_accepts += 1
        else:
            hit[match] = True
    n = len(events)
    return {"false_reject_rate": (n - sum(hit)) / n if n else 0.0, "false_accepts": false_accepts,
            "false_accepts_per_hour": false_accepts / hours if hours > 0 else 0.0}


def _streaming_evaluation(bundle_dir: Path, run_dir: Path, ev_dir: Path, *, minutes: float, seed: int,
                          tick) -> dict[str, Any]:
    """Streaming false-reject rate, false accepts per hour and DET curve of the bundle.

    The recording is built from the run's test split (keyword and other-word
    clips, 0.3-1.2 s gaps, -60 dBFS floor noise). The real ``KeywordDetector``
    computes the posteriors once; the manifest's smoothing (window, minimum
    count, suppression) is then replayed with :class:`PosteriorSmoother` for
    each threshold of :data:`DET_THRESHOLDS`. A detection of keyword K is a
    hit when it falls between the start of a not-yet-detected K and its end
    plus :data:`TOLERANCE_S`; every other detection is a false accept.
    """
    from ..detector import KeywordDetector
    from ..smoothing import PosteriorSmoother
    from .plots import plot_det_curve

    det = KeywordDetector.from_bundle(bundle_dir)
    fc = det.model.features
    audio, events, distinct = _test_stream(run_dir, minutes=minutes, seed=seed, sample_rate_hz=fc.sample_rate_hz,
                                 keywords=det.keywords)
    hop = fc.hop_samples
    posts, times = [], []
    n_hops = audio.size // hop
    for k in range(n_hops):
        before = det.n_evaluations
        det.process(audio[k * hop:(k + 1) * hop])
        if det.n_evaluations > before:
            posts.append(det.last_posteriors.copy())
            times.append(((det._n_frames - 1) * hop + fc.window_samples) / fc.sample_rate_hz)
        if k % 500 == 0:
            tick(k, n_hops, "streaming")
    hours = audio.size / fc.sample_rate_hz / 3600.0
    base = det.config
    points = []
    for thr in DET_THRESHOLDS:
        cfg = dataclasses.replace(base, thresholds={kw: float(thr) for kw in det.keywords})
        sm = PosteriorSmoother(det.labels, det.keywords, cfg, hop_s=hop * base.stride_hops / fc.sample_rate_hz)
        found = []
        for p, t in zip(posts, times):
            d = sm.update(p, t)
            if d is not None:
                found.append((d.label, d.time_s))
        points.append({"threshold": float(thr), **_score_events(found, events, hours)})
    ok = [p for p in points if p["false_accepts_per_hour"] <= TARGET_FA_PER_HOUR]
    selected = min(ok, key=lambda p: (p["false_reject_rate"], p["threshold"])) if ok else \
        min(points, key=lambda p: (p["false_accepts"], p["false_reject_rate"]))
    ev_dir.mkdir(parents=True, exist_ok=True)
    plot_det_curve(points, ev_dir / "det_curve.png", selected=selected,
                   title=f"DET curve, {audio.size / fc.sample_rate_hz / 60:.1f} min, {len(events)} keywords")
    result = {
        "audio_s": round(audio.size / fc.sample_rate_hz, 2), "n_keywords": len(events),
        "distinct_keyword_clips": distinct,
        "keywords": {k: sum(e["label"] == k for e in events) for k in det.keywords},
        "tolerance_s": TOLERANCE_S, "target_false_accepts_per_hour": TARGET_FA_PER_HOUR,
        "det_curve": points, "selected": selected,
        "selected_thresholds": {k: selected["threshold"] for k in det.keywords},
        "false_reject_rate": selected["false_reject_rate"],
        "false_accepts_per_hour": selected["false_accepts_per_hour"],
        "method": "test-split clips with gaps; posteriors from KeywordDetector; smoothing replayed per threshold",
    }
    atomic_write_json(ev_dir / "streaming.json", result)
    result = {k: v for k, v in result.items() if k != "det_curve"}
    result["headline"] = (f"threshold {selected['threshold']:.2f}: FRR {100 * selected['false_reject_rate']:.1f}%, "
                          f"{selected['false_accepts_per_hour']:.1f} FA/h")
    return result


def _final_bundle(out: Path, final: Path, pipe: PipelineConfig, *, seed: int, tick) -> dict[str, Any]:
    """The deployable bundle: the converted model with tuned thresholds, streaming metrics and benchmark."""
    from ..audio import write_wav
    from ..bundle import load_bundle, save_bundle
    from ..detector import KeywordDetector, detect_samples

    src = load_bundle(out / "convert" / "bundle")
    m = src.manifest
    ev = json.loads((out / "evaluation" / "streaming.json").read_text())
    bench = json.loads((out / "benchmark.json").read_text())
    thresholds = ev.get("selected_thresholds") or {}
    detector = m.detector
    if thresholds:
        detector = dataclasses.replace(detector, thresholds={k: float(v) for k, v in thresholds.items()
                                                             if k in m.keywords})
    metrics = dict(m.metrics)
    metrics["streaming"] = {k: v for k, v in ev.items() if k not in ("det_curve",)}
    metrics["benchmark"] = {"machine": bench.get("machine"), **bench.get("hop", {}),
                            "cold_start_s": bench.get("cold_start", {}).get("wall_s")}
    manifest = dataclasses.replace(m, detector=detector, metrics=metrics)
    save_bundle(final, manifest, src.model_bytes, overwrite=True)

    tick(1, 3, "sample recording")
    from .synthetic import sample_recording

    samples, events = sample_recording(list(pipe.sample_words), seed=seed)
    write_wav(out / "sample.wav", samples, m.features.sample_rate_hz)
    det = KeywordDetector.from_bundle(final)
    found = [d.to_dict() for d in detect_samples(det, samples)]
    atomic_write_json(out / "sample.json", {"words": events, "detections": found,
                                            "command": f"kws detect {out / 'sample.wav'} --bundle {final}"})
    said = [e["word"] for e in events if e["word"] in m.keywords]
    return {"bundle": str(final), "thresholds": detector.thresholds, "sample_wav": str(out / "sample.wav"),
            "sample_keywords_said": said, "sample_detections": found,
            "headline": f"sample: said {' '.join(said)}; detected {' '.join(d['label'] for d in found) or 'nothing'}"}
