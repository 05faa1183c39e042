"""``kws pipeline`` and ``kws evaluate``: registered on the ``kws`` command from above.

The runtime CLI never imports this module: ``pyproject.toml`` names these commands in the
``kws_edge.commands`` entry-point group, which :class:`kws_edge.cli.KwsGroup` reads. Training code
(TensorFlow) is imported inside the commands only, so ``kws --help`` works without the extra and
each command says in one line what to install.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Optional

import click

from ..errors import BackendUnavailableError

__all__ = ["pipeline", "evaluate_command"]


def _needs_train_extra(command: str) -> None:
    """One line naming the extra when TensorFlow is not installed (found without importing it)."""
    import importlib.util

    if importlib.util.find_spec("tensorflow") is None:
        raise BackendUnavailableError(f"{command} needs the train extra (tensorflow): "
                                      "pip install \"kws-edge[train,tts]\"")


class _StageDisplay:
    """One line per stage on stderr, and progress within a stage (training epochs, features, ...).

    On a terminal a live line shows the step and an ETA; otherwise (a log, CI) one line per step when a
    step is long (at most 100 steps, such as epochs) and one per tenth of the way for many small steps.
    """

    def __init__(self, quiet: bool, tty: Optional[bool] = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.quiet = quiet
        self.tty = sys.stderr.isatty() if tty is None else tty
        self.clock = clock
        self._live = False
        self._last = 0.0
        self._step = ("", "")  # (stage, message) of the progress being shown
        self._step_t0 = 0.0  # when it began: the previous event of another kind
        self._step_printed = -1
        self._prev_t = clock()

    def _clear(self) -> None:
        if self._live:
            click.echo("\r\033[K", nl=False, err=True)
            self._live = False

    def _progress_text(self, e: Any, now: float) -> str:
        text = f"{e.message} {e.done}/{e.of}" if e.of else e.message
        elapsed = now - self._step_t0
        if e.of and 0 < e.done < e.of and elapsed > 0:
            text += f", {elapsed:.0f} s so far, ETA {elapsed / e.done * (e.of - e.done):.0f} s"
        elif e.of and e.done >= e.of:
            text += f", {elapsed:.0f} s"
        return text

    def __call__(self, e: Any) -> None:
        now = self.clock()
        if e.kind == "progress" and (e.stage, e.message) != self._step:
            self._step, self._step_t0, self._step_printed = (e.stage, e.message), self._prev_t, -1
        self._prev_t = now
        if self.quiet:
            return
        tag = f"[{e.index}/{e.total}] {e.stage:<15}"
        if e.kind == "progress":
            if self.tty:
                if now - self._last < 0.2 and e.done < e.of:
                    return
                self._last = now
                click.echo(f"\r\033[K{tag} {self._progress_text(e, now)}", nl=False, err=True)
                self._live = True
                return
            every = 1 if e.of <= 100 else max(1, e.of // 10)
            if e.of and e.done > self._step_printed and (e.done == e.of or e.done // every > self._step_printed // every):
                self._step_printed = e.done
                click.echo(f"{tag} {self._progress_text(e, now)}", err=True)
            return
        self._clear()
        if e.kind == "start":
            click.echo(f"{tag} running" + (f" ({e.message})" if e.message else "") + " ...", err=True)
        elif e.kind == "reused":
            click.echo(f"{tag} reused (inputs unchanged)", err=True)
        elif e.kind == "done":
            click.echo(f"{tag} done in {e.seconds:.1f} s" + (f": {e.message}" if e.message else ""), err=True)
        elif e.kind == "interrupted":
            click.echo(f"{tag} interrupted; run the same command again to resume", err=True)
        elif e.kind == "failed":
            click.echo(f"{tag} FAILED", err=True)


@click.command()
@click.option("--data", default=None, help="dataset folder (Speech Commands layout) or 'synthetic' [default: config's]")
@click.option("--device", default=None, help="device profile the bundle is checked against [default: raspberry-pi-4b]")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("runs/pipeline"), show_default=True,
              help="output folder; running again resumes and reuses unchanged stages")
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None,
              help="TOML: TrainConfig keys at the top level, pipeline settings in [pipeline]")
@click.option("--mlflow-uri", default=None, help="also log to MLflow (needs the mlflow extra), e.g. sqlite:///mlflow.db")
@click.option("--check-reproducible", is_flag=True, help="train twice with the same seed and compare metrics and weights")
@click.option("--force", multiple=True, metavar="STAGE", help="redo this stage even if its inputs are unchanged")
@click.option("--register", "register_dir", type=click.Path(path_type=Path), default=None,
              help="add the final bundle to this model registry as a candidate")
@click.option("--json", "as_json", is_flag=True, help="print the summary as JSON on stdout")
@click.option("-q", "--quiet", is_flag=True, help="no per-stage progress on stderr")
def pipeline(data: Optional[str], device: Optional[str], out_dir: Path, config_path: Optional[Path],
             mlflow_uri: Optional[str], check_reproducible: bool, force: tuple[str, ...],
             register_dir: Optional[Path], as_json: bool, quiet: bool) -> None:
    """Data -> train -> convert -> budget check -> evaluate -> benchmark -> bundle -> report.

    Resumable: stages whose inputs (data content hash, config, code version)
    are unchanged are reused; a failing stage stops with one message and
    keeps earlier outputs; Ctrl-C resumes cleanly on the next run.
    """
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from .config import load_pipeline_config
    from .stages import run_pipeline

    _needs_train_extra("kws pipeline")
    train_cfg, pipe_cfg = load_pipeline_config(config_path, data=data, device=device)
    display = _StageDisplay(quiet)
    t0 = time.perf_counter()
    result = run_pipeline(out_dir, train_cfg, pipe_cfg, check_reproducible=check_reproducible,
                          mlflow_uri=mlflow_uri, progress=display, force=force)
    elapsed = time.perf_counter() - t0
    stages = result["stages"]
    if register_dir is not None:
        from ..workstation.registry import ModelRegistry

        entry, created = ModelRegistry(register_dir).add(Path(result["out_dir"]) / "bundle", new_stage="candidate",
                                                         note=f"kws pipeline --out {result['out_dir']}")
        result["registered"] = {"id": entry.id, "created": created, "registry": str(register_dir)}
    if as_json:
        click.echo(json.dumps({**result, "seconds": round(elapsed, 1)}, indent=2, default=str))
        return
    out = Path(result["out_dir"])
    lines = [f"pipeline finished in {elapsed / 60:.1f} min"
             + (f" (reused: {', '.join(result['reused'])})" if result["reused"] else "")]
    ev = stages.get("evaluate", {})
    conv = stages.get("convert", {})
    if conv:
        lines.append(f"  int8 test accuracy {100 * conv.get('int8_accuracy', 0):.1f}% "
                     f"(float {100 * conv.get('float_accuracy', 0):.1f}%), model {conv.get('model_size_bytes', 0):,} B")
    if ev:
        lines.append(f"  streaming: {ev.get('headline', '')}")
    rep = stages.get("reproducibility")
    if rep:
        lines.append(f"  {rep.get('headline', '')}")
    bundle = stages.get("bundle", {})
    if bundle:
        lines.append(f"  {bundle.get('headline', '')}")
    lines.append(f"  bundle: {out / 'bundle'}")
    lines.append(f"  report: {out / 'report' / 'report.html'}")
    lines.append(f"  try:    kws detect {out / 'sample.wav'} --bundle {out / 'bundle'}")
    if result.get("registered"):
        lines.append(f"  registry: {result['registered']['id']} (candidate) in {register_dir}")
    if stages.get("track"):
        lines.append(f"  mlflow: run {stages['track'].get('run_id')} at {mlflow_uri}")
    click.echo("\n".join(lines))
    if rep and not rep.get("reproducible"):
        raise click.exceptions.Exit(1)


def _pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


def _snr_band(edges) -> str:
    lo, hi = edges
    return f"< {hi:g} dB" if lo is None else f">= {lo:g} dB" if hi is None else f"{lo:g}-{hi:g} dB"


@click.command("evaluate")
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
    from ..metrics import StreamConfig, metrics_table

    _needs_train_extra("kws evaluate")
    from .evaluate import evaluate
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
