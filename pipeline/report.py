"""The run report: one self-contained HTML page (PNGs embedded as data URIs) plus Markdown.

:func:`write_report` reads a pipeline output folder (see
:mod:`kws_edge.pipeline.stages`) and writes ``report/report.html`` and
``report/report.md`` (with the PNGs copied beside it). Sections: summary,
pipeline stages, data, training curves, confusion matrices, float vs int8
metrics, streaming evaluation and DET curve, budgets, benchmark,
reproducibility, provenance and the demo recording. A missing part (a stage
that has not run) is shown as "not available", never an error, so the report
can also be drawn for a pipeline that stopped early.

Every figure of a bundle comes from its typed manifest; the streaming figures are the manifest's
``metrics.streaming.report`` (the one streaming evaluation, at the bundle's own thresholds), and the
report prints the ``kws evaluate`` command that measures them again.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any, Optional

from ..atomic import atomic_copy_file, atomic_write_text
from ..bundle import Manifest, load_bundle
from ..config import from_dict, to_dict
from ..errors import KwsError
from ..training.rundir import RunDir
from .ledger import read_json

__all__ = ["write_report", "collect"]


def _tolerant(read: Any) -> dict[str, Any]:
    """What ``read()`` returns of the run directory, {} when the file is missing or damaged (the report is drawn
    for a pipeline that stopped early too)."""
    try:
        value = read()
    except KwsError:
        return {}
    return value if isinstance(value, dict) else {}


def _manifest(out: Path) -> Optional[Manifest]:
    """The final bundle's manifest, else the converted bundle's, else None."""
    for path in (out / "bundle", out / "convert" / "bundle"):
        try:
            return load_bundle(path).manifest
        except KwsError:
            continue
    return None


def collect(out: Path) -> dict[str, Any]:
    """Everything the report shows, read from the pipeline folder."""
    from ..bundle.budgets import Budgets

    out = Path(out)
    run = out / "run"
    manifest = _manifest(out)
    images = {
        "training_curves": run / "plots" / "training_curves.png",
        "confusion_validation": run / "plots" / "confusion_matrix.png",
        "confusion_test": run / "plots" / "confusion_matrix_test.png",
        "det_curve": out / "evaluation" / "det_curve.png",
    }
    run_dir = RunDir(run)
    data_manifest = _tolerant(run_dir.data_manifest)
    budgets = manifest.budgets if manifest is not None else None
    if budgets is None and isinstance(read_json(out / "budgets.json", None), dict):
        budgets = from_dict(Budgets, read_json(out / "budgets.json"))
    return {
        "out": out,
        "ledger": read_json(out / "pipeline.json", {}) or {},
        "run": _tolerant(lambda: run_dir.run),
        "config": _tolerant(lambda: to_dict(run_dir.config())),
        "data_manifest_counts": data_manifest.get("counts"),
        "data_sha256": data_manifest.get("content_sha256"),
        "summary": _tolerant(run_dir.summary),
        "metrics": _tolerant(run_dir.metrics),
        "manifest": manifest,
        "budgets": budgets,
        "benchmark": read_json(out / "benchmark.json", {}) or {},
        "repro": read_json(out / "repro" / "reproducibility.json", None),
        "sample": read_json(out / "sample.json", None),
        "images": {k: p for k, p in images.items() if p.is_file()},
    }


def _pct(v: Any, digits: int = 1) -> str:
    return f"{100 * v:.{digits}f}%" if isinstance(v, (int, float)) else "n/a"


def _clip(metrics: Any) -> dict[str, Any]:
    """A :class:`~kws_edge.metrics.ClipMetrics` as a dict ({} when there is none)."""
    from ..config import to_dict

    return to_dict(metrics) if metrics is not None else {}


def _whole(v: float) -> float | int:
    """An integral number as an int (a limit's value is a float; bytes read better as 48,123)."""
    return int(v) if isinstance(v, float) and v.is_integer() else v


def _num(v: Any, fmt: str = "{:,.3g}") -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return fmt.format(v)
    return "n/a" if v is None else str(v)


class _Doc:
    """Builds the HTML and the Markdown side by side."""

    def __init__(self) -> None:
        self.h: list[str] = []
        self.md: list[str] = []

    def heading(self, text: str, level: int = 2) -> None:
        self.h.append(f"<h{level}>{html.escape(text)}</h{level}>")
        self.md.append(f"\n{'#' * level} {text}\n")

    def para(self, text: str) -> None:
        self.h.append(f"<p>{html.escape(text)}</p>")
        self.md.append(f"{text}\n")

    def table(self, head: list[str], rows: list[list[Any]], cls: str = "") -> None:
        if not rows:
            self.para("not available")
            return
        cells = "".join(f"<th>{html.escape(str(c))}</th>" for c in head)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
        self.h.append(f'<table class="{cls}"><thead><tr>{cells}</tr></thead><tbody>{body}</tbody></table>')
        esc = lambda c: str(c).replace("|", "\\|")  # noqa: E731
        self.md.append("| " + " | ".join(map(esc, head)) + " |")
        self.md.append("|" + "---|" * len(head))
        self.md.extend("| " + " | ".join(map(esc, r)) + " |" for r in rows)
        self.md.append("")

    def image(self, path: Optional[Path], alt: str, md_name: str) -> None:
        if path is None:
            self.para(f"{alt}: not available")
            return
        data = base64.b64encode(path.read_bytes()).decode()
        self.h.append(f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'
                      f"<figcaption>{html.escape(alt)}</figcaption></figure>")
        self.md.append(f"![{alt}]({md_name})\n")


def write_report(out_dir: str | Path) -> dict[str, Path]:
    """Write ``OUT/report/report.html`` and ``report.md``; returns their paths."""
    out = Path(out_dir)
    c = collect(out)
    rep_dir = out / "report"
    rep_dir.mkdir(parents=True, exist_ok=True)
    d = _Doc()
    m = c["manifest"]
    metrics = m.metrics if m is not None else None
    split = metrics.test if metrics is not None else None
    fl = _clip(split.float_model if split is not None else None)
    q8 = _clip(split.converted if split is not None else None)
    name = m.name if m is not None else out.resolve().name
    title = f"kws-edge report: {name} {m.version if m is not None else ''}".strip()
    report = metrics.streaming.report if metrics is not None and metrics.streaming is not None else None
    score = report.score if report is not None else None
    bench_hop = (c["benchmark"] or {}).get("hop", {})
    budgets = c["budgets"]

    d.heading(title, 1)
    d.para(f"Written from {out.name} on {c['ledger'].get('updated_utc', 'n/a')}.")
    d.heading("Summary")
    d.table(["figure", "value"], [
        ["test accuracy, float (Keras)", _pct(fl.get("accuracy") if fl else c["metrics"].get("test", {}).get("accuracy"), 2)],
        ["test accuracy, int8 (TFLite)", _pct(q8.get("accuracy"), 2)],
        ["keyword false-accept rate, int8", _pct(q8.get("keyword_false_accept_rate"), 2)],
        ["streaming false-reject rate", _pct(score.false_reject_rate if score else None, 1)],
        ["streaming false accepts per hour", _num(score.false_accepts_per_hour if score else None, "{:.2f}")],
        ["model size", f"{_num(m.model.size_bytes if m else None)} B"],
        ["peak activation memory", f"{_num(m.model.peak_activation_bytes if m else None)} B"],
        ["MACs per inference", _num(m.model.macs_per_inference if m else None)],
        ["within budget of " + (budgets.device if budgets else "n/a"), _num(budgets.within_budget if budgets else None)],
        ["CPU per second of audio", f"{_num(bench_hop.get('cpu_ms_per_audio_s'), '{:.2f}')} ms"],
    ], "summary")

    d.heading("Pipeline stages")
    stages = c["ledger"].get("stages", {})
    reused = set((c["ledger"].get("last_run") or {}).get("reused", []))
    d.table(["stage", "status", "wall s", "CPU s", "reused", "key"],
            [[s, "writing this page" if s == "report" and e.get("status") == "running" else e.get("status"),
              _num(e.get("seconds"), "{:.1f}"), _num(e.get("cpu_seconds"), "{:.1f}"), "yes" if s in reused else "no",
              str(e.get("key", ""))[:12]] for s, e in stages.items()])

    d.heading("Data")
    counts = c["data_manifest_counts"] or {}
    labels = list(c["config"].get("labels") or (m.labels if m is not None else []))
    d.para(f"Source: {c['config'].get('data', 'n/a')}; content SHA-256 {c['data_sha256'] or 'n/a'}.")
    d.table(["split"] + labels + ["total"],
            [[split] + [counts[split].get(lab, 0) for lab in labels] + [sum(counts[split].values())]
             for split in ("train", "validation", "test") if split in counts])

    d.heading("Training")
    cfg = c["config"]
    model_cfg = cfg.get("model", {}) if isinstance(cfg.get("model"), dict) else {}
    d.table(["setting", "value"], [[k, json.dumps(v) if isinstance(v, (list, dict)) else v] for k, v in [
        ("architecture", model_cfg.get("architecture")), ("epochs", cfg.get("epochs")),
        ("batch size", cfg.get("batch_size")), ("learning rate", cfg.get("learning_rate")),
        ("seed", cfg.get("seed")), ("parameters", (c["summary"].get("model") or {}).get("parameters")),
        ("training samples (with augmentation)", c["summary"].get("n_train_samples")),
    ] if v is not None])
    d.image(c["images"].get("training_curves"), "training curves", "training_curves.png")
    d.image(c["images"].get("confusion_validation"), "confusion matrix (validation)", "confusion_matrix.png")
    d.image(c["images"].get("confusion_test"), "confusion matrix (test)", "confusion_matrix_test.png")

    d.heading("Float vs int8 (test split)")
    rows = []
    for key, label in (("accuracy", "accuracy"), ("keyword_false_accept_rate", "keyword false-accept rate")):
        rows.append([label, _pct(fl.get(key), 2), _pct(q8.get(key), 2)])
    for lab in labels:
        rows.append([f"recall {lab}", _pct((fl.get("recall") or {}).get(lab), 1),
                     _pct((q8.get("recall") or {}).get(lab), 1)])
    parity = metrics.parity if metrics is not None else None
    if parity is not None:
        rows.append(["argmax agreement", _pct(parity.argmax_agreement, 2), ""])
    d.table(["metric", "float", "int8"], rows if fl or q8 else [])

    d.heading("Streaming evaluation")
    if report is not None:
        d.para(f"{_num(score.duration_s, '{:.0f}')} s of audio from the {report.split} split with "
               f"{_num(score.n_keywords)} keywords among other words and noise, through the real KeywordDetector "
               f"at the bundle's thresholds; a detection within {score.tolerance_ms:g} ms after a keyword's clip "
               f"is a hit. The same figures come from: {report.command}")
        d.table(["threshold", "false-reject rate", "false accepts per hour"],
                [[_num(p.threshold, "{:.3g}"), _pct(p.false_reject_rate), _num(p.false_accepts_per_hour, "{:.2f}")]
                 for p in report.det_curve])
        thr = report.detector.thresholds
        d.para("Thresholds (chosen on a validation stream for the FA/h target): "
               + (", ".join(f"{k} {v:.3g}" for k, v in thr.items()) or "defaults"))
    else:
        d.para("not available")
    d.image(c["images"].get("det_curve"), "DET curve", "det_curve.png")

    d.heading("Budgets")
    d.para(f"Device profile: {budgets.device if budgets else 'n/a'}; "
           + ("within budget" if budgets and budgets.within_budget else "OVER BUDGET" if budgets else ""))
    d.table(["budget", "value", "limit", "unit", "margin", "result", "basis"],
            [[r.name, _num(_whole(r.value)), _num(_whole(r.limit)), r.unit, _pct(r.margin, 0),
              "ok" if r.passed else "OVER", r.basis] for r in (budgets.results if budgets else ())])

    d.heading("Benchmark (this machine)")
    b = c["benchmark"] or {}
    mach = b.get("machine") or {}
    if b:
        d.para(f"{mach.get('platform', '')}, {mach.get('cpus', '?')} CPUs, Python {mach.get('python', '')}.")
    cold = b.get("cold_start") or {}
    d.table(["figure", "value"], [
        ["CPU ms per second of audio (one hop per call)", _num(bench_hop.get("cpu_ms_per_audio_s"), "{:.3f}")],
        ["real-time factor", _num(bench_hop.get("real_time_factor"), "{:.5f}")],
        ["per-hop latency median (ms)", _num(bench_hop.get("hop_latency_median_ms"), "{:.3f}")],
        ["per-hop latency p99 (ms)", _num(bench_hop.get("hop_latency_p99_ms"), "{:.3f}")],
        ["CPU ms per second of audio (100 ms chunks)",
         _num((b.get("chunk_100ms") or {}).get("cpu_ms_per_audio_s"), "{:.3f}")],
        ["cold start: import + load (s)", _num(cold.get("wall_s"), "{:.3f}")],
        ["cold start peak RSS (bytes)", _num(cold.get("peak_rss_bytes"))],
        ["TensorFlow imported by the runtime", _num(cold.get("tensorflow_imported"))],
    ] if b else [])

    if c["repro"] is not None:
        r = c["repro"]
        d.heading("Reproducibility")
        d.table(["check", "result"], [
            ["reproducible", _num(r.get("reproducible"))],
            ["max weight difference", f"{r.get('max_weight_abs_diff', 'n/a'):.3g} (tolerance {r.get('weight_tolerance')})"],
            ["max metric difference", f"{r.get('max_metric_abs_diff', 'n/a'):.3g} (tolerance {r.get('metric_tolerance')})"],
            ["weights compared", _num(r.get("n_weights"))],
        ])

    d.heading("Provenance")
    run = c["run"]
    d.table(["item", "value"], [[k, v if v not in (None, "") else "n/a"] for k, v in [
        ("kws-edge version", run.get("kws_edge_version")),
        ("git commit", run.get("git_commit")),
        ("code version (pipeline)", c["ledger"].get("code_version")),
        ("seed", run.get("seed")),
        ("config SHA-256", run.get("config_sha256")),
        ("data SHA-256", run.get("data_sha256") or (m.provenance.data_sha256 if m else None)),
        ("model SHA-256", m.model.sha256 if m else None),
        ("training started / finished (UTC)", f"{run.get('started_utc', '')} / {run.get('finished_utc', '')}"),
        ("bundle", f"{m.name} {m.version}" if m else None),
    ]])

    sample = c["sample"]
    d.heading("Demo recording")
    if sample:
        d.para("Said: " + " ".join(w["word"] for w in sample.get("words", [])))
        d.table(["detected", "score", "time (s)"],
                [[e["label"], f"{e['score']:.2f}", f"{e['time_s']:.2f}"] for e in sample.get("detections", [])])
        d.para(f"Run it yourself: {sample.get('command', '')}")
    else:
        d.para("not available")

    css = ("body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}"
           "table{border-collapse:collapse;margin:.5rem 0 1rem}td,th{border:1px solid #ccc;padding:.25rem .6rem;"
           "text-align:left}th{background:#f3f3f3}figure{margin:1rem 0}img{max-width:100%}"
           "figcaption{color:#666;font-size:.9em}")
    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{css}</style></head><body>\n"
            + "\n".join(d.h) + "\n</body></html>\n")
    atomic_write_text(rep_dir / "report.html", page)
    for key, fname in (("training_curves", "training_curves.png"), ("confusion_validation", "confusion_matrix.png"),
                       ("confusion_test", "confusion_matrix_test.png"), ("det_curve", "det_curve.png")):
        if key in c["images"]:
            atomic_copy_file(c["images"][key], rep_dir / fname)  # a full disk leaves no empty PNG
    atomic_write_text(rep_dir / "report.md", "\n".join(d.md) + "\n")
    return {"html": rep_dir / "report.html", "markdown": rep_dir / "report.md"}
