"""``kws pipeline``: data -> train -> convert -> budget check -> evaluate -> benchmark -> bundle -> report.

One command from a dataset (or the built-in synthetic set) to a deployable,
reported bundle. Every stage writes its outputs under ``OUT`` and records in
the ledger ``OUT/pipeline.json`` (:mod:`.ledger`) a key of its inputs. Running
the pipeline again reuses every stage whose key is unchanged and whose outputs
are still there, and says so. A failing stage stops the pipeline with one
message; earlier stages' outputs stay. Ctrl-C marks the running stage
"interrupted"; the next run redoes it (each stage writes atomically, so
nothing half-written is reused).

Stage order differs from the issue's list in one place: streaming evaluation
runs the real ``KeywordDetector`` on a bundle, so ``evaluate`` comes after
``convert`` and ``budget`` (the clip-level evaluation of the float model is
part of ``train``).

The evaluate stage is the project's one streaming evaluation
(:func:`kws_edge.pipeline.evaluate.evaluate`, what ``kws evaluate`` runs):
detector thresholds are chosen for a target FA/h on a stream of the
validation split, then that detector is measured on a stream of the test
split; the final bundle carries those thresholds and that measurement, and
``kws evaluate --bundle OUT/bundle`` on the same stream gives the same figures
(the command is in the report).

Layout of ``OUT``::

    pipeline.json            the ledger (stages, keys, timings, summaries)
    run/                     the training run directory (kws-train's format)
    repro/                   --check-reproducible: the second training run and reproducibility.json
    convert/bundle/          kws-convert's bundle
    budgets.json             the budget table
    evaluation/              tuning.json (validation stream), evaluation.json, det_curve.json/.png,
                             confusion_matrix.png (test split: what kws evaluate writes)
    benchmark.json           cost of the streaming path on this machine
    bundle/                  the final bundle (thresholds from the evaluation, streaming metrics, benchmark)
    sample.wav, sample.json  a synthesised demo recording and what is said in it
    report/report.html, report/report.md
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

from ..atomic import atomic_write_json, deferred_sigint, pid_alive
from ..config import config_hash, from_dict, to_dict
from ..errors import BudgetExceeded, ConfigError, KwsError
from ..portable import portable_json, portable_path
from ..smoothing import DetectorConfig
from ..stamps import utc_now
from ..training.config import TrainConfig
from ..training.rundir import RunDir
from .config import PipelineConfig
from .ledger import (LEDGER_FORMAT, LEDGER_NAME, PipelineStageError, StageEvent, code_version, cpu_seconds,
                     read_ledger, stage_key, why_not_reused)
from .reproducibility import compare_runs

__all__ = ["STAGES", "run_pipeline", "Progress"]

STAGES = ("data", "train", "reproducibility", "convert", "budget", "evaluate", "benchmark", "bundle", "report",
          "track")

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
        self.ledger.update(format_version=LEDGER_FORMAT, out_dir=portable_path(self.out), updated_utc=utc_now(),
                           code_version=self.code, config=to_dict(self.train_cfg), pipeline=to_dict(self.pipe_cfg))
        # the ledger is a run file: no path of this machine in it (kws_edge.portable); stage keys are unaffected
        atomic_write_json(self.out / LEDGER_NAME, portable_json(self.ledger))

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
        key = stage_key({"stage": name, "code": self.code, "inputs": inputs})
        self.keys[name] = key
        entry = self.ledger["stages"].get(name, {})
        if (name not in self.force and entry.get("status") == "done" and entry.get("key") == key and outputs_ok()):
            self.summaries[name] = entry.get("summary", {})
            self.reused[name] = True
            self.ledger.setdefault("last_run", {}).setdefault("reused", []).append(name)
            self.progress(StageEvent("reused", name, idx, total, "inputs unchanged, outputs reused"))
            return self.summaries[name]
        reason = why_not_reused(name in self.force, entry, key, inputs, self.code, outputs_ok)
        self.reused[name] = False
        self.progress(StageEvent("start", name, idx, total, reason))
        started = time.perf_counter()
        cpu_started = cpu_seconds()
        self.ledger["stages"][name] = {"status": "running", "key": key, "inputs": inputs, "code": self.code,
                                       "reason": reason, "started_utc": utc_now(), "pid": os.getpid()}
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
                self.ledger["stages"][name].update(status="interrupted", finished_utc=utc_now())
                self._save_ledger_after_failure()
            self.progress(StageEvent("interrupted", name, idx, total))
            raise
        except BaseException as exc:
            self.ledger["stages"][name].update(
                status="failed", finished_utc=utc_now(), seconds=round(time.perf_counter() - started, 2),
                error=str(exc) if isinstance(exc, KwsError) else f"{type(exc).__name__}: {exc}",
                traceback=None if isinstance(exc, KwsError) else traceback.format_exc(limit=8),
            )
            self._save_ledger_after_failure()
            self.progress(StageEvent("failed", name, idx, total, str(exc)))
            if isinstance(exc, Exception):
                raise PipelineStageError(name, exc, self.out) from exc
            raise
        seconds = time.perf_counter() - started
        self.ledger["stages"][name].update(status="done", finished_utc=utc_now(), seconds=round(seconds, 2),
                                           cpu_seconds=round(cpu_seconds() - cpu_started, 2), summary=summary)
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
            from ..training.dataset import index_dataset
            from ..training.fit import resolve_data

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
            from ..training.fit import train

            train(cfg, run_dir, overwrite=True, progress=lambda stage, d, t: tick(d, t, stage))
            return _run_summary(run_dir)

        return self._run_stage("train", inputs, lambda: RunDir(run_dir).is_complete, body)

    def reproducibility(self) -> dict[str, Any]:
        cfg = self.train_cfg
        repro = self.out / "repro"

        def body(tick):
            from ..training.fit import train

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
            return {"bundle": portable_path(bundle_dir), "model_size_bytes": m.size_bytes,
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
            atomic_write_json(self.out / "budgets.json", to_dict(budgets))
            if not budgets.within_budget:
                names = ", ".join(r.name for r in budgets.failures) or "see budgets.json"
                raise BudgetExceeded(f"the model does not fit {budgets.device}: {names} over budget "
                                     f"(table in {self.out / 'budgets.json'}); choose a smaller model or "
                                     "another --device")
            return {"device": budgets.device, "within_budget": True, "n_checks": len(budgets.results)}

        return self._run_stage("budget", {"convert": self.keys["convert"]},
                               lambda: (self.out / "budgets.json").exists(), body)

    def evaluate(self, data: dict[str, Any]) -> dict[str, Any]:
        ev_dir = self.out / "evaluation"
        inputs = {"convert": self.keys["convert"], "minutes": self.pipe_cfg.stream_minutes,
                  "target_false_accepts_per_hour": self.pipe_cfg.target_false_accepts_per_hour}

        def body(tick):
            # the command that measures the final bundle again names it as the user named --out (a relative path
            # as given; an absolute one by its folder's name, run from the folder that holds it)
            return _streaming_evaluation(self.out / "convert" / "bundle", ev_dir, self.train_cfg, self.pipe_cfg,
                                         bundle_out=Path(portable_path(self.out)) / "bundle", tick=tick)

        return self._run_stage("evaluate", inputs, lambda: (ev_dir / "evaluation.json").exists(), body)

    def benchmark(self) -> dict[str, Any]:
        path = self.out / "benchmark.json"

        def body(tick):
            from ..bench import bench_audio, cold_start, machine_info, measure_detector, peak_rss_bytes
            from ..detector import KeywordDetector

            tick(0, 2, "streaming")
            det = KeywordDetector.from_bundle(self.out / "convert" / "bundle")
            audio = bench_audio(self.pipe_cfg.benchmark_seconds, det.sample_rate_hz, seed=self.train_cfg.seed)
            stats = measure_detector(det, audio).to_dict()
            chunked = measure_detector(det, audio, chunk_samples=1600).to_dict()
            tick(1, 2, "cold start")
            cold = cold_start(self.out / "convert" / "bundle")
            result = {"machine": machine_info(), "hop": stats, "chunk_100ms": chunked, "cold_start": cold,
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
            return {"html": portable_path(paths["html"]), "markdown": portable_path(paths["markdown"])}

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
        self.ledger["last_run"] = {"started_utc": utc_now(), "reused": []}
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
        self.ledger["last_run"].update(finished_utc=utc_now(), seconds=round(time.perf_counter() - t0, 1),
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


def _bundle_ok(path: Path) -> bool:
    from ..bundle import load_bundle

    try:
        load_bundle(path)
        return True
    except KwsError:
        return False


def _run_summary(run_dir: Path) -> dict[str, Any]:
    run_dir = RunDir(run_dir)
    metrics, run = run_dir.metrics(), run_dir.run
    test = metrics.get("test", {})
    return {"run_dir": portable_path(run_dir.path), "test_accuracy": test.get("accuracy"),
            "validation_accuracy": metrics.get("validation", {}).get("accuracy"),
            "keyword_false_accept_rate": test.get("keyword_false_accept_rate"),
            "data_sha256": run.get("data_sha256"), "config_sha256": run.get("config_sha256"),
            "headline": f"test accuracy {100 * (test.get('accuracy') or 0):.1f}%"}


def _streaming_evaluation(bundle_dir: Path, ev_dir: Path, train_cfg: TrainConfig, pipe: PipelineConfig, *,
                          bundle_out: Path, tick) -> dict[str, Any]:
    """Thresholds for the target FA/h on a validation stream, then that detector on a test stream.

    Both are :func:`kws_edge.pipeline.evaluate.evaluate` (``kws evaluate``) of the converted bundle; the
    test stream's result is what the final bundle and the report carry.
    """
    from ..bundle import load_bundle
    from ..metrics import StreamConfig
    from .evaluate import evaluate, evaluate_command_line

    stream = StreamConfig(minutes=pipe.stream_minutes, seed=train_cfg.seed)
    target = pipe.target_false_accepts_per_hour
    progress = lambda stage, done, of: tick(done, of, stage)  # noqa: E731
    tick(0, 2, "tuning on a validation stream")
    tuning = evaluate(data=train_cfg.data, bundle=bundle_dir, split="validation", stream=stream,
                      target_fa_per_hour=target, progress=progress)
    thresholds = tuning["streaming"]["selected"]["thresholds"]
    detector = dataclasses.replace(load_bundle(bundle_dir).manifest.detector, thresholds=thresholds)
    atomic_write_json(ev_dir / "tuning.json", tuning)
    tick(1, 2, "measuring on a test stream")
    report = evaluate(data=train_cfg.data, bundle=bundle_dir, split="test", stream=stream, detector=detector,
                      out_dir=ev_dir, progress=progress)
    s = report["streaming"]
    command = evaluate_command_line(bundle=bundle_out, data=train_cfg.data, split="test", stream=stream)
    return {"thresholds": thresholds, "false_reject_rate": s["false_reject_rate"],
            "false_accepts_per_hour": s["false_accepts_per_hour"], "n_keywords": s["n_keywords"],
            "duration_s": s["duration_s"], "command": command,
            "headline": (f"thresholds {', '.join(f'{k} {v:.3g}' for k, v in thresholds.items())}: FRR "
                         f"{100 * (s['false_reject_rate'] or 0):.1f}%, {s['false_accepts_per_hour']:.1f} FA/h "
                         f"on {s['duration_s'] / 60:.1f} min of test-split stream")}


def _final_bundle(out: Path, final: Path, pipe: PipelineConfig, *, seed: int, tick) -> dict[str, Any]:
    """The deployable bundle: the converted model with tuned thresholds, streaming metrics and benchmark."""
    from ..audio import write_wav
    from ..bench import benchmark_record
    from ..bundle import load_bundle, save_bundle
    from ..bundle.metrics import StreamingMetrics, stream_evaluation, tuning_record
    from ..detector import KeywordDetector, detect_samples
    from .ledger import read_json

    src = load_bundle(out / "convert" / "bundle")
    m = src.manifest
    ledger = read_ledger(out)["stages"].get("evaluate", {}).get("summary", {})
    report = read_json(out / "evaluation" / "evaluation.json")
    tuning = read_json(out / "evaluation" / "tuning.json")
    detector = from_dict(DetectorConfig, report["streaming"]["detector"])
    streaming = StreamingMetrics(report=stream_evaluation(report, command=str(ledger.get("command", ""))),
                                 tuning=tuning_record(tuning, target_false_accepts_per_hour=pipe.target_false_accepts_per_hour))
    metrics = dataclasses.replace(m.metrics, streaming=streaming,
                                  benchmark=benchmark_record(read_json(out / "benchmark.json")))
    manifest = dataclasses.replace(m, detector=detector, metrics=metrics)
    save_bundle(final, manifest, src.model_bytes, overwrite=True)

    tick(1, 3, "sample recording")
    from ..training.synthetic import sample_recording

    samples, events = sample_recording(list(pipe.sample_words), seed=seed)
    write_wav(out / "sample.wav", samples, m.features.sample_rate_hz)
    det = KeywordDetector.from_bundle(final)
    found = [d.to_dict() for d in detect_samples(det, samples)]
    atomic_write_json(out / "sample.json", {
        "words": events, "detections": found,
        "command": f"kws detect {portable_path(out / 'sample.wav')} --bundle {portable_path(final)}"})
    said = [e["word"] for e in events if e["word"] in m.keywords]
    return {"bundle": portable_path(final), "thresholds": detector.thresholds,
            "sample_wav": portable_path(out / "sample.wav"), "sample_keywords_said": said, "sample_detections": found,
            "headline": f"sample: said {' '.join(said)}; detected {' '.join(d['label'] for d in found) or 'nothing'}"}
