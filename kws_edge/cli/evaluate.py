"""``kws evaluate``: clip metrics and a streaming test (FRR, FA/h, DET) of a bundle or a run.

Needs the ``train`` extra (TensorFlow for ``--run``; matplotlib for plots);
it is imported inside the command so ``kws --help`` works without them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from . import cli

__all__ = ["evaluate_command"]


def _pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


def _snr_band(edges) -> str:
    lo, hi = edges
    return f"< {hi:g} dB" if lo is None else f">= {lo:g} dB" if hi is None else f"{lo:g}-{hi:g} dB"


@cli.command("evaluate")
@click.option("--data", required=True, multiple=True,
              help="Speech Commands-layout folder, or 'synthetic'; repeat for several folders (as in kws-train).")
@click.option("--bundle", "bundle_dir", type=click.Path(file_okay=False), help="Bundle directory to evaluate.")
@click.option("--run", "run_dir", type=click.Path(file_okay=False), help="Training run directory to evaluate.")
@click.option("--stream-minutes", type=float, default=10.0, show_default=True,
              help="Length of the streaming test recording.")
@click.option("--split", type=click.Choice(["test", "validation", "train"]), default="test", show_default=True)
@click.option("--target-fa-per-hour", type=float, default=None,
              help="Also pick per-keyword thresholds for this FA/h (use on a validation split).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              help="Write evaluation.json, det_curve.json/.png, confusion_matrix.png here "
                   "(default: RUN_DIR/evaluation for --run).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the test recording.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole result as JSON.")
def evaluate_command(data, bundle_dir, run_dir, stream_minutes, split, target_fa_per_hour, out_dir, seed, as_json):
    """Evaluate a bundle or a training run on a dataset split, clip by clip and as a stream."""
    from ..errors import ConfigError

    try:
        from ..training.evaluate import evaluate
        from ..metrics import metrics_table
        from ..training.streaming_eval import StreamConfig
    except ImportError as exc:  # pragma: no cover - depends on the install
        from ..errors import BackendUnavailableError

        raise BackendUnavailableError(f"kws evaluate needs the train extra: pip install 'kws-edge[train]' ({exc})")
    if stream_minutes <= 0:
        raise ConfigError(f"--stream-minutes={stream_minutes} must be > 0")
    if out_dir is None and run_dir is not None:
        out_dir = str(Path(run_dir) / "evaluation")
    result = evaluate(data=data[0] if len(data) == 1 else tuple(data), bundle=bundle_dir, run=run_dir, split=split, out_dir=out_dir,
                      stream=StreamConfig(minutes=stream_minutes, seed=seed), target_fa_per_hour=target_fa_per_hour)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    s = result["streaming"]
    click.echo(metrics_table(result["clip"], f"{split} clips"))
    click.echo(f"streaming: {s['duration_s'] / 60:.1f} min, {s['n_keywords']} keywords, "
               f"tolerance {s['tolerance_ms']:.0f} ms after each 1 s clip")
    click.echo(f"  false-reject rate {_pct(s['false_reject_rate'])}, "
               f"false accepts {s['false_accepts']} ({s['false_accepts_per_hour']:.1f} per hour), "
               f"duplicates {s['duplicates']}")
    for k, v in s["per_keyword"].items():
        click.echo(f"  {k}: FRR {_pct(v['false_reject_rate'])}, FA/h {v['false_accepts_per_hour']:.1f}")
    if s.get("by_snr"):
        bands = [f"{_snr_band(b['snr_db'])} {_pct(b['false_reject_rate'])} of {b['n']}" for b in s["by_snr"]]
        click.echo("  FRR by SNR: " + ", ".join(bands))
    if "selected" in s:
        sel = s["selected"]
        click.echo(f"  thresholds for {sel['target_false_accepts_per_hour']} FA/h: {sel['thresholds']} -> "
                   f"FRR {_pct(sel['false_reject_rate'])}, FA/h {sel['false_accepts_per_hour']:.1f}")
    if out_dir is not None:
        click.echo(f"wrote {out_dir}/evaluation.json, det_curve.json, det_curve.png", err=True)
