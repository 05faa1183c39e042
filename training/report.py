"""The run report: one self-contained HTML page (PNGs embedded as data URIs) plus Markdown.

:func:`write_report` reads a pipeline output folder (see
:mod:`kws_edge.training.pipeline`) and writes ``report/report.html`` and
``report/report.md`` (with the PNGs copied beside it). Sections: summary,
pipeline stages, data, training curves, confusion matrices, float vs int8
metrics, streaming evaluation and DET curve, budgets, benchmark,
reproducibility, provenance and the demo recording. A missing part (a stage
that has not run) is shown as "not available", never an error, so the report
can also be drawn for a pipeline that stopped early.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any, Optional

from ..atomic import atomic_copy_file, atomic_write_text

__all__ = ["write_report", "collect"]


def _load(path: Path) -> Optional[Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def collect(out: Path) -> dict[str, Any]:
    """Everything the report shows, read from the pipeline folder."""
    out = Path(out)
    run = out / "run"
    final = out / "bundle" / "manifest.json"
    conv = out / "convert" / "bundle" / "manifest.json"
    manifest = _load(final) or _load(conv) or {}
    images = {
        "training_curves": run / "plots" / "training_curves.png",
        "confusion_validation": run / "plots" / "confusion_matrix.png",
        "confusion_test": run / "plots" / "confusion_matrix_test.png",
        "det_curve": out / "evaluation" / "det_curve.png",
    }
    return {
        "out": out,
        "ledger": _load(out / "pipeline.json") or {},
        "run": _load(run / "run.json") or {},
        "config": _load(run / "config.json") or {},
        "data_manifest_counts": (_load(run / "data_manifest.json") or {}).get("counts"),
        "data_sha256": (_load(run / "data_manifest.json") or {}).get("content_sha256"),
        "summary": _load(run / "training_summary.json") or {},
        "metrics": _load(run / "metrics.json") or {},
        "manifest": manifest,
        "budgets": _load(out / "budgets.json") or manifest.get("budgets") or {},
        "streaming": _load(out / "evaluation" / "streaming.json") or {},
        "benchmark": _load(out / "benchmark.json") or {},
        "repro": _load(out / "repro" / "reproducibility.json"),
        "sample": _load(out / "sample.json"),
        "images": {k: p for k, p in images.items() if p.is_file()},
    }


def _pct(v: Any, digits: int = 1) -> str:
    return f"{100 * v:.{digits}f}%" if isinstance(v, (int, float)) else "n/a"


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
    metrics_conv = m.get("metrics", {})
    name = m.get("name") or out.resolve().name
    title = f"kws-edge report: {name} {m.get('version', '')}".strip()
    streaming = c["streaming"]
    sel = streaming.get("selected") or {}
    fl, q8 = metrics_conv.get("float", {}), metrics_conv.get("int8") or metrics_conv.get("float32") or {}
    bench_hop = (c["benchmark"] or {}).get("hop", {})
    budgets = c["budgets"]

    d.heading(title, 1)
    d.para(f"Written from {out.resolve()} on {c['ledger'].get('updated_utc', 'n/a')}.")
    d.heading("Summary")
    d.table(["figure", "value"], [
        ["test accuracy, float (Keras)", _pct(fl.get("accuracy") if fl else c["metrics"].get("test", {}).get("accuracy"), 2)],
        ["test accuracy, int8 (TFLite)", _pct(q8.get("accuracy"), 2)],
        ["keyword false-accept rate, int8", _pct(q8.get("keyword_false_accept_rate"), 2)],
        ["streaming false-reject rate", _pct(sel.get("false_reject_rate"), 1)],
        ["streaming false accepts per hour", _num(sel.get("false_accepts_per_hour"), "{:.2f}")],
        ["model size", f"{_num((m.get('model') or {}).get('size_bytes'))} B"],
        ["peak activation memory", f"{_num((m.get('model') or {}).get('peak_activation_bytes'))} B"],
        ["MACs per inference", _num((m.get("model") or {}).get("macs_per_inference"))],
        ["within budget of " + str(budgets.get("device", "n/a")), _num(budgets.get("within_budget"))],
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
    labels = list(c["config"].get("labels") or m.get("labels") or [])
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
    parity = metrics_conv.get("parity") or {}
    if parity:
        rows.append(["argmax agreement", _pct(parity.get("argmax_agreement"), 2), ""])
    d.table(["metric", "float", "int8"], rows if fl or q8 else [])

    d.heading("Streaming evaluation")
    if streaming:
        d.para(f"{_num(streaming.get('audio_s'), '{:.0f}')} s of audio with {_num(streaming.get('n_keywords'))} "
               f"keywords ({streaming.get('distinct_keyword_clips', 'n/a')} distinct keyword clips of the test split, "
               f"repeated as needed); a detection within the tolerance window of a keyword is a hit "
               f"(tolerance {streaming.get('tolerance_s', 'n/a')} s).")
        d.table(["threshold", "false-reject rate", "false accepts per hour"],
                [[_num(p.get("threshold"), "{:.3g}"), _pct(p.get("false_reject_rate")),
                  _num(p.get("false_accepts_per_hour"), "{:.2f}")] for p in (streaming.get("det_curve") or [])])
        thr = streaming.get("selected_thresholds") or {}
        d.para("Selected thresholds: " + (", ".join(f"{k} {v:.3g}" for k, v in thr.items()) or "defaults"))
    else:
        d.para("not available")
    d.image(c["images"].get("det_curve"), "DET curve", "det_curve.png")

    d.heading("Budgets")
    d.para(f"Device profile: {budgets.get('device', 'n/a')}; "
           + ("within budget" if budgets.get("within_budget") else "OVER BUDGET" if budgets else ""))
    d.table(["budget", "value", "limit", "unit", "margin", "result", "basis"],
            [[r.get("name"), _num(r.get("value")), _num(r.get("limit")), r.get("unit"),
              _pct(r.get("margin"), 0), "ok" if r.get("passed") else "OVER", r.get("basis")]
             for r in budgets.get("results", [])])

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
    prov = m.get("provenance") or {}
    run = c["run"]
    d.table(["item", "value"], [[k, v if v not in (None, "") else "n/a"] for k, v in [
        ("kws-edge version", run.get("kws_edge_version")),
        ("git commit", run.get("git_commit")),
        ("code version (pipeline)", c["ledger"].get("code_version")),
        ("seed", run.get("seed")),
        ("config SHA-256", run.get("config_sha256")),
        ("data SHA-256", run.get("data_sha256") or prov.get("data_sha256")),
        ("model SHA-256", (m.get("model") or {}).get("sha256")),
        ("training started / finished (UTC)", f"{run.get('started_utc', '')} / {run.get('finished_utc', '')}"),
        ("bundle", f"{m.get('name', '')} {m.get('version', '')}"),
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
