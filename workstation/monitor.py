"""The offline half of telemetry: read a JSONL history back, summarise it, plot it (``kws monitor``).

Collection and export (:class:`~kws_edge.telemetry.DetectorTelemetry`, the Prometheus endpoint, the
JSONL snapshotter) stay in the runtime, on the device; this module runs where the files are read.
:func:`read_snapshots` stops at a truncated last line; :func:`summarize_snapshots` condenses a history
for ``kws monitor``; :func:`plot_history` draws it (matplotlib, the ``workstation`` extra).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from ..atomic import atomic_write_bytes
from ..errors import BackendUnavailableError, ConfigError
from ..stamps import parse_utc
from ..telemetry import DB_FLOOR, dbfs
from . import WORKSTATION_EXTRA

__all__ = ["SnapshotFile", "read_snapshots", "summarize_snapshots", "plot_history"]


@dataclass
class SnapshotFile:
    """Snapshots read from a JSONL file, with what had to be skipped."""

    path: Path
    snapshots: list[dict[str, Any]]
    truncated_tail: bool = False
    bad_lines: list[int] = field(default_factory=list)


def read_snapshots(path: str | Path) -> SnapshotFile:
    """Read a telemetry JSONL file.

    A last line without its newline that does not parse (the writer was
    killed mid-line) is skipped and reported as ``truncated_tail``; other
    unparsable lines are skipped and listed (1-based) in ``bad_lines``.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"telemetry file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read telemetry file {path}: {exc.strerror or exc}") from None
    lines = data.split(b"\n")
    complete_last = data.endswith(b"\n")
    if complete_last:
        lines = lines[:-1]
    out = SnapshotFile(path=path, snapshots=[])
    for i, raw in enumerate(lines):
        if not raw.strip():
            continue
        is_tail = (i == len(lines) - 1) and not complete_last
        try:
            obj = json.loads(raw.decode("utf-8"))
            if not isinstance(obj, dict) or "samples" not in obj:
                raise ValueError("not a snapshot")
        except (ValueError, UnicodeDecodeError):
            if is_tail:
                out.truncated_tail = True
            else:
                out.bad_lines.append(i + 1)
            continue
        out.snapshots.append(obj)
    return out


def summarize_snapshots(snapshots: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Totals, rates and drift over a telemetry history.

    Counters are cumulative per process; when one goes down (the detector was
    restarted) a new segment starts and the totals add the segments.
    """
    if not snapshots:
        raise ConfigError("the telemetry file holds no snapshots")
    segments: list[dict[str, Any]] = []
    prev: Optional[dict[str, Any]] = None
    for s in snapshots:
        if prev is None or s.get("samples", 0) < prev.get("samples", 0) or s.get("started_utc") != prev.get("started_utc"):
            segments.append(s)
        else:
            segments[-1] = s
        prev = s
    totals: dict[str, Any] = {"samples": 0, "hops": 0, "evaluations": 0, "overflows": 0, "clipped_samples": 0,
                              "stream_time_s": 0.0}
    detections: dict[str, int] = {}
    weighted_ms = 0.0
    for s in segments:
        for k in ("samples", "hops", "evaluations", "overflows"):
            totals[k] += int(s.get(k, 0))
        totals["stream_time_s"] += float(s.get("stream_time_s", 0.0))
        inp = s.get("input", {})
        totals["clipped_samples"] += int(inp.get("clipped_samples", 0))
        weighted_ms += int(s.get("samples", 0)) * 10 ** (float(inp.get("rms_dbfs", DB_FLOOR)) / 10)
        for label, n in (s.get("detections") or {}).items():
            detections[label] = detections.get(label, 0) + int(n)
    hours = totals["stream_time_s"] / 3600.0
    scores = [s["drift"]["score"] for s in snapshots if (s.get("drift") or {}).get("score") is not None]
    flagged = [s for s in snapshots if (s.get("drift") or {}).get("flag")]
    last = snapshots[-1]
    return {
        "n_snapshots": len(snapshots),
        "n_segments": len(segments),
        "first_utc": snapshots[0].get("time_utc"),
        "last_utc": last.get("time_utc"),
        **totals,
        "detections": detections,
        "detections_per_hour": {k: (v / hours if hours > 0 else None) for k, v in detections.items()},
        "rms_dbfs": dbfs(weighted_ms / totals["samples"]) if totals["samples"] else None,
        "clipped_fraction": totals["clipped_samples"] / totals["samples"] if totals["samples"] else 0.0,
        "drift_last": (last.get("drift") or {}).get("score"),
        "drift_max": max(scores) if scores else None,
        "drift_threshold": (last.get("drift") or {}).get("threshold"),
        "drift_flagged_snapshots": len(flagged),
        "drift_flag_last": bool((last.get("drift") or {}).get("flag")),
        "first_drift_flag_utc": flagged[0].get("time_utc") if flagged else None,
    }


def plot_history(snapshots: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """PNG of the history: detections, input level and drift score over time (needs matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise BackendUnavailableError(f"plotting needs the workstation extra (matplotlib): pip install {WORKSTATION_EXTRA}") from None
    import io

    t0 = parse_utc(snapshots[0].get("time_utc")) or 0.0
    xs = [((parse_utc(s.get("time_utc")) or 0.0) - t0) / 60.0 for s in snapshots]
    fig, axes = plt.subplots(3, 1, figsize=(8, 7), sharex=True)
    labels = sorted({k for s in snapshots for k in (s.get("detections") or {})})
    for label in labels:
        axes[0].plot(xs, [(s.get("detections") or {}).get(label, 0) for s in snapshots], label=label)
    axes[0].set_ylabel("detections (cumulative)")
    if labels:
        axes[0].legend(loc="upper left")
    axes[1].plot(xs, [(s.get("input") or {}).get("last_chunk_rms_dbfs", DB_FLOOR) for s in snapshots], label="last chunk")
    axes[1].plot(xs, [(s.get("input") or {}).get("rms_dbfs", DB_FLOOR) for s in snapshots], label="stream")
    axes[1].set_ylabel("input RMS (dBFS)")
    axes[1].legend(loc="lower left")
    scores = [(s.get("drift") or {}).get("score") for s in snapshots]
    axes[2].plot(xs, [np.nan if v is None else v for v in scores], color="tab:red")
    thr = (snapshots[-1].get("drift") or {}).get("threshold")
    if thr:
        axes[2].axhline(thr, ls="--", color="grey", label=f"threshold {thr:g}")
        axes[2].legend(loc="upper left")
    axes[2].set_ylabel("drift score")
    axes[2].set_xlabel("minutes since first snapshot")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)
