"""Reading manifests of formats 1 and 2 as format 3 (typed provenance, metrics and budgets).

:func:`upgrade_manifest` maps the free JSON of the older formats onto the typed sections, key by key;
it never guesses a figure's meaning from a number. What has no typed place is kept in the section's
``extra`` (provenance, metrics), so nothing recorded is lost:

* provenance: ``run_dir``, ``run``, ``config``, ``conversion``, ``recipe`` keep their place; the
  top-level ``seed`` and ``data_sha256`` (copies of the run's) go into ``run`` when it lacks them;
* metrics: ``float`` with ``int8`` or ``float32`` is the ``test`` split (``kws-convert``'s parity
  check); a shipped bundle's ``test_split`` and ``validation`` tables become ``test`` and
  ``validation`` with the validation split as ``headline``; the recipe's ``streaming`` (tuning and
  report streams) becomes ``streaming.tuning`` and ``streaming.report``; the streaming model's
  ``block_frames``, ``state_size`` and ``n_calibration_pairs`` move to
  ``provenance.conversion.streaming``; the pipeline's streaming figures of format 2 came from its
  own stream (a 1 s tolerance, one global threshold), not from the one streaming evaluation, so
  they are kept as ``extra["streaming_before_format_3"]`` rather than passed off as that measure;
* budgets: the analysis of the window model is keyed by its file name; ``within_budget``,
  ``passed`` and ``margin`` are recomputed from the values.

Used by :func:`kws_edge.bundle.load_bundle` (in memory) and ``python -m kws_edge.digest`` (in place).
The input is untrusted JSON: a section of the wrong type is passed on unchanged, for
:func:`kws_edge.config.from_dict` to refuse with a message.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .budgets import Budgets, ModelCost, ProfileRef, TflmRecord
from .metrics import Benchmark, Parity, WordFalseAccepts
from .provenance import ConversionRecord, RunRecord, StreamingConversionRecord

__all__ = ["upgrade_manifest", "STREAMING_BEFORE_FORMAT_3"]

#: where a format-2 pipeline bundle's own streaming figures are kept (see the module docstring)
STREAMING_BEFORE_FORMAT_3 = "streaming_before_format_3"
_STREAMING_MODEL_KEYS = ("block_frames", "state_size", "n_calibration_pairs")


def _names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def _split(d: dict[str, Any], cls: type) -> tuple[dict[str, Any], dict[str, Any]]:
    """``d``'s keys that are fields of ``cls``, and the others."""
    names = _names(cls)
    return {k: v for k, v in d.items() if k in names}, {k: v for k, v in d.items() if k not in names}


def upgrade_manifest(raw: dict[str, Any]) -> dict[str, Any]:
    """A format-1 or format-2 manifest (parsed JSON) as format 3; a format-3 one unchanged."""
    if raw.get("format_version") not in (1, 2):
        return raw
    out = dict(raw)
    extra_conversion: dict[str, Any] = {}
    if isinstance(raw.get("metrics"), dict):
        out["metrics"], extra_conversion = _metrics(raw["metrics"])
    if isinstance(raw.get("provenance"), dict):
        out["provenance"] = _provenance(raw["provenance"], extra_conversion)
    elif extra_conversion and "provenance" not in raw:
        out["provenance"] = _provenance({}, extra_conversion)
    if isinstance(raw.get("budgets"), dict):
        model_file = raw.get("model", {}).get("file", "") if isinstance(raw.get("model"), dict) else ""
        out["budgets"] = _budgets(raw["budgets"], str(model_file))
    out["format_version"] = 3
    return out


def _provenance(p: dict[str, Any], streaming_conversion: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in p.items():
        if key in ("run_dir", "config", "recipe"):
            out[key] = value
        elif key == "run" and isinstance(value, dict):
            run, rest = _split(value, RunRecord)
            out["run"] = run
            if rest:
                extra["run"] = rest
        elif key == "conversion" and isinstance(value, dict):
            conv, rest = _split(value, ConversionRecord)
            out["conversion"] = conv
            if rest:
                extra["conversion"] = rest
        elif key not in ("seed", "data_sha256"):
            extra[key] = value
    for key in ("seed", "data_sha256"):  # copies of the run's: the run keeps them (a bundle not made from a
        if key not in p:                  # run, such as a test bundle, keeps them as extra facts)
            continue
        run = out.get("run")
        if isinstance(run, dict) and key not in run:
            run[key] = p[key]
        elif not isinstance(run, dict) or run.get(key) != p[key]:
            extra[key] = p[key]
    if streaming_conversion:
        conversion = out.setdefault("conversion", {})
        if isinstance(conversion, dict):
            conversion["streaming"] = streaming_conversion
    if extra:
        out["extra"] = extra
    return out


def _metrics(m: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The metrics section as format 3, and the streaming model's conversion figures found in it."""
    out: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    handled = {"float", "int8", "float32", "test_split", "validation", "evaluated_on", "parity", "streaming",
               "benchmark", "unseen_words"}
    converted = "int8" if "int8" in m else "float32"
    if isinstance(m.get("test_split"), dict):  # a shipped bundle: the validation split is the headline
        ts = m["test_split"]
        out["test"] = {"float_model": ts.get("float"), "converted": ts.get("int8", ts.get("float32")),
                       "note": str(ts.get("note", ""))}
        val = m.get("validation") if isinstance(m.get("validation"), dict) else {}
        out["validation"] = {"float_model": val.get("float", m.get("float")),
                             "converted": val.get("int8", val.get("float32", m.get(converted))),
                             "note": str(m.get("evaluated_on", ""))}
        out["headline"] = "validation"
    elif "float" in m or converted in m:
        out["test"] = {"float_model": m.get("float"), "converted": m.get(converted)}
        out["headline"] = "test"
        if "validation" in m:
            extra["validation"] = m["validation"]
        if "evaluated_on" in m:
            extra["evaluated_on"] = m["evaluated_on"]
    if isinstance(m.get("parity"), dict):
        parity, rest = _split(m["parity"], Parity)
        out["parity"] = parity
        if rest:
            extra["parity"] = rest
    streaming_conversion: dict[str, Any] = {}
    s = m.get("streaming")
    if isinstance(s, dict):
        streaming_conversion = {k: s[k] for k in _STREAMING_MODEL_KEYS if k in s}
        s = {k: v for k, v in s.items() if k not in _STREAMING_MODEL_KEYS}
        if "report_stream" in s:
            out["streaming"] = _recipe_streaming(s)
        elif s:
            extra[STREAMING_BEFORE_FORMAT_3] = s
    if isinstance(m.get("benchmark"), dict):
        bench, rest = _split(m["benchmark"], Benchmark)
        out["benchmark"] = bench
        if rest:
            extra["benchmark"] = rest
    if isinstance(m.get("unseen_words"), dict):
        words, rest = _split(m["unseen_words"], WordFalseAccepts)
        out["unseen_words"] = words
        if rest:
            extra["unseen_words"] = rest
    for key, value in m.items():
        if key not in handled:
            extra[key] = value
    if extra:
        out["extra"] = extra
    return out, streaming_conversion


def _recipe_streaming(s: dict[str, Any]) -> dict[str, Any]:
    """``finish_default_bundle.py``'s streaming table (format 2) as ``StreamingMetrics``."""
    detector = s.get("detector") if isinstance(s.get("detector"), dict) else {}
    report = s.get("report_stream") if isinstance(s.get("report_stream"), dict) else {}
    tuning = s.get("tuning_stream") if isinstance(s.get("tuning_stream"), dict) else {}
    candidates = []
    for c in s.get("smoothing_grid") or []:
        if isinstance(c, dict):
            candidates.append({
                "detector": {**detector, **{k: c[k] for k in ("smoothing_window_ms", "min_count", "thresholds")
                                            if k in c}},
                "false_reject_rate": c.get("false_reject_rate"),
                "false_accepts_per_hour": c.get("false_accepts_per_hour")})
    return {
        "report": {"split": "validation", "stream": report.get("config", {}), "detector": detector,
                   "score": {k: v for k, v in report.items() if k != "config"},
                   "det_curve": s.get("report_det_curve") or []},
        "tuning": {"method": str(s.get("method", "")), "split": "validation", "stream": tuning.get("config", {}),
                   "target_false_accepts_per_hour": s.get("target_false_accepts_per_hour"),
                   "target_false_reject_rate": s.get("target_false_reject_rate"),
                   "rule": str(s.get("setting_rule", "")), "candidates": candidates,
                   "chosen": {"detector": detector, "false_reject_rate": tuning.get("false_reject_rate"),
                              "false_accepts_per_hour": tuning.get("false_accepts_per_hour")}},
    }


def _budgets(b: dict[str, Any], model_file: str) -> dict[str, Any]:
    out, _ = _split(b, Budgets)
    if isinstance(b.get("results"), list):
        out["results"] = [{k: v for k, v in r.items() if k in ("name", "value", "limit", "unit", "kind", "basis",
                                                             "method", "passed", "margin")}
                          if isinstance(r, dict) else r for r in b["results"]]
    if isinstance(b.get("profile"), dict):
        out["profile"], _ = _split(b["profile"], ProfileRef)
    if isinstance(b.get("analysis"), dict) and "model_bytes" in b["analysis"]:
        out["analysis"] = {model_file: _split(b["analysis"], ModelCost)[0]}
    if isinstance(b.get("tflm"), dict):
        out["tflm"], _ = _split(b["tflm"], TflmRecord)
    return out
