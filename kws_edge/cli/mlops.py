"""``kws pipeline``, ``kws registry add|list|show|promote|diff``, ``kws monitor`` (MLOps issue).

Training code (TensorFlow) is imported inside ``kws pipeline`` only; the
registry and the monitor work on a runtime-only install.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import click

from . import cli

# ---------------------------------------------------------------------- pipeline


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


@cli.command()
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
    try:
        from ..training.pipeline import load_pipeline_config, run_pipeline
    except ImportError as exc:
        from ..errors import BackendUnavailableError

        raise BackendUnavailableError(
            f"kws pipeline needs the training extra ({exc.name or exc}): pip install \"kws-edge[train,tts]\""
        ) from None
    train_cfg, pipe_cfg = load_pipeline_config(config_path, data=data, device=device)
    display = _StageDisplay(quiet)
    t0 = time.perf_counter()
    result = run_pipeline(out_dir, train_cfg, pipe_cfg, check_reproducible=check_reproducible,
                          mlflow_uri=mlflow_uri, progress=display, force=force)
    elapsed = time.perf_counter() - t0
    stages = result["stages"]
    if register_dir is not None:
        from ..registry import ModelRegistry

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


# ---------------------------------------------------------------------- registry


@cli.group()
@click.option("--registry", "registry_dir", type=click.Path(path_type=Path), envvar="KWS_REGISTRY", default=None,
              help="registry folder [default: $KWS_REGISTRY or ~/.local/share/kws-edge/registry]")
@click.pass_context
def registry(ctx: click.Context, registry_dir: Optional[Path]) -> None:
    """Local model registry: immutable, content-addressed bundle versions with stages."""
    from ..registry import ModelRegistry

    ctx.obj = ModelRegistry(registry_dir)


def _entry_json(e: Any) -> dict[str, Any]:
    return {"id": e.id, "stages": list(e.stages), "path": str(e.bundle_path), **{k: v for k, v in e.info.items()
                                                                                  if k != "files"}}


def _headline_metrics(e: Any) -> str:
    try:
        m = e.manifest().get("metrics", {})
    except (OSError, ValueError):
        return ""
    parts = []
    for key in ("int8", "float32", "float"):
        acc = (m.get(key) or {}).get("accuracy")
        if isinstance(acc, (int, float)):
            parts.append(f"{key} acc {100 * acc:.1f}%")
            break
    s = m.get("streaming") or {}
    if isinstance(s.get("false_reject_rate"), (int, float)):
        parts.append(f"FRR {100 * s['false_reject_rate']:.1f}% {s.get('false_accepts_per_hour', 0):.1f} FA/h")
    return ", ".join(parts)


@registry.command("add")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--stage", type=click.Choice(["candidate", "production"]), default=None,
              help="put the version in this stage (default: a new version becomes candidate; an already "
                   "registered one keeps its stages)")
@click.option("--note", default="", help="free text stored with the version")
@click.pass_obj
def registry_add(reg: Any, bundle: Path, stage: Optional[str], note: str) -> None:
    """Register a bundle (verified first); the same content twice is the same version.

    A new version becomes candidate. Adding a bundle that is already registered
    changes no stage (a newer candidate stays candidate) unless --stage says so.
    """
    entry, created = reg.add(bundle, stage=stage, new_stage="candidate", note=note)
    stages = ", ".join(entry.stages) or "none"
    if created:
        click.echo(f"registered {entry.id} ({entry.name} {entry.version}); stages: {stages}")
    elif stage is None:
        click.echo(f"already registered {entry.id} ({entry.name} {entry.version}); stages: {stages} "
                   "(unchanged; --stage candidate|production to move one here)")
    else:
        click.echo(f"already registered {entry.id} ({entry.name} {entry.version}); stages: {stages}")
    if getattr(reg, "interrupted_after_commit", False):
        click.echo(f"note: Ctrl-C arrived after {entry.id} was committed; it is registered", err=True)


@registry.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def registry_list(reg: Any, as_json: bool) -> None:
    """Every version with its stages; broken versions are listed with the reason."""
    listing = reg.list()
    if as_json:
        click.echo(json.dumps({"registry": str(reg.root), "stages": listing.stages,
                               "versions": [_entry_json(e) for e in listing.entries],
                               "broken": [{"id": b.id, "reason": b.reason, "stages": list(b.stages)}
                                          for b in listing.broken],
                               "dangling_stages": {stage: vid for stage, vid in listing.dangling},
                               "removed_leftovers": [name for name, _ in listing.cleaned]}, indent=2))
        return
    if not listing.entries and not listing.broken:
        for stage, vid in listing.dangling:
            click.echo(f"warning: stage {stage} points at {vid}, which is not in the registry", err=True)
        click.echo(f"registry {reg.root} is empty; add a bundle with: kws registry add BUNDLE")
        return
    rows = [("id", "name", "version", "stages", "added (UTC)", "metrics")]
    for e in listing.entries:
        rows.append((e.id, e.name, e.version, ",".join(e.stages) or "-", str(e.info.get("added_utc", ""))[:19],
                     _headline_metrics(e)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1])
    for b in listing.broken:
        click.echo(f"{b.id}  BROKEN: {b.reason}" + (f" (stages: {', '.join(b.stages)})" if b.stages else ""))
    for stage, vid in listing.dangling:
        click.echo(f"warning: stage {stage} points at {vid}, which is not in the registry (deleted?); promote "
                   f"another version: kws registry promote ID --to {stage}", err=True)
    for name, size in listing.cleaned:
        click.echo(f"note: removed {name}, the leftover of an interrupted add ({size:,} bytes)", err=True)
    if listing.broken:
        click.echo(f"{len(listing.broken)} broken version(s); the others are usable. Re-add the original bundle "
                   "to repair one.", err=True)


@registry.command("show")
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def registry_show(reg: Any, ref: str, as_json: bool) -> None:
    """One version (an id, a unique id prefix, a stage name or NAME@VERSION); verifies it first."""
    e = reg.get(ref)
    if as_json:
        click.echo(json.dumps({**_entry_json(e), "files": e.info.get("files"), "manifest": e.manifest()}, indent=2))
        return
    info = e.info
    rows = [("id", e.id), ("name", f"{e.name} {e.version}"), ("stages", ", ".join(e.stages) or "none"),
            ("bundle", str(e.bundle_path)), ("content sha256", info.get("content_sha256")),
            ("model sha256", info.get("model_sha256")), ("model size", f"{info.get('model_size_bytes', 0):,} B"),
            ("git commit", info.get("git_commit") or "n/a"), ("data sha256", info.get("data_sha256") or "n/a"),
            ("config sha256", info.get("config_sha256") or "n/a"), ("seed", info.get("seed")),
            ("device", f"{info.get('device')} (within budget: {info.get('within_budget')})"),
            ("metrics", _headline_metrics(e) or "n/a"), ("added", info.get("added_utc")),
            ("source", info.get("source")), ("note", info.get("note") or "")]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        click.echo(f"{k:<{width}}  {v}")


@registry.command("promote")
@click.argument("ref")
@click.option("--to", "stage", type=click.Choice(["candidate", "production", "archived"]), default="production",
              show_default=True)
@click.pass_obj
def registry_promote(reg: Any, ref: str, stage: str) -> None:
    """Put a version in a stage (the previous production version is archived)."""
    vid = reg.resolve(ref)
    previous = reg.promote(vid, stage)
    tail = f" (replacing {previous})" if previous and previous != vid else ""
    click.echo(f"{vid} is now {stage}{tail}")


@registry.command("diff")
@click.argument("ref_a")
@click.argument("ref_b")
@click.option("--json", "as_json", is_flag=True)
@click.option("--all", "show_all", is_flag=True, help="also list metrics that did not change")
@click.pass_obj
def registry_diff(reg: Any, ref_a: str, ref_b: str, as_json: bool, show_all: bool) -> None:
    """Compare two versions: metrics, training config, data hash, model and budgets."""
    d = reg.diff(ref_a, ref_b)
    if as_json:
        click.echo(json.dumps(d, indent=2, default=str))
        return
    a, b = d["a"], d["b"]
    click.echo(f"a = {a['id']} ({a['name']} {a['version']}), b = {b['id']} ({b['name']} {b['version']})")
    if d["identical"]:
        click.echo("same version")
        return
    click.echo(f"data:   {'same' if d['data']['same'] else 'DIFFERENT'} ({str(d['data']['a'])[:12]} vs "
               f"{str(d['data']['b'])[:12]})")
    click.echo(f"commit: {a.get('git_commit') or 'n/a'} vs {b.get('git_commit') or 'n/a'}")
    click.echo("config:" + ("  unchanged" if not d["config"] else ""))
    for c in d["config"]:
        click.echo(f"  {c['key']}: {c['a']!r} -> {c['b']!r}")
    click.echo("model:")
    for m in d["model"]:
        if m["a"] != m["b"] or show_all:
            click.echo(f"  {m['key']}: {m['a']} -> {m['b']}")
    click.echo("metrics:")
    for m in d["metrics"]:
        if m["delta"] == 0 and not show_all:
            continue
        fmt = lambda v: "n/a" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
        delta = "" if m["delta"] is None else f"  ({m['delta']:+.4g})"
        click.echo(f"  {m['key']}: {fmt(m['a'])} -> {fmt(m['b'])}{delta}")
    ba, bb = d["budgets"]["a"], d["budgets"]["b"]
    click.echo(f"budgets: {ba['device']} within={ba['within_budget']} -> {bb['device']} within={bb['within_budget']}")


# ---------------------------------------------------------------------- monitor


@cli.command()
@click.argument("telemetry_file", type=click.Path(path_type=Path))
@click.option("--plot", "plot_path", type=click.Path(path_type=Path), default=None,
              help="write a PNG of the history (detections, input level, drift)")
@click.option("--json", "as_json", is_flag=True, help="print the summary as JSON")
@click.option("--fail-on-drift", is_flag=True, help="exit with status 1 when the last snapshot flags drift")
def monitor(telemetry_file: Path, plot_path: Optional[Path], as_json: bool, fail_on_drift: bool) -> None:
    """Summarise a telemetry JSONL file written by kws listen --telemetry; flag drift."""
    from ..telemetry import plot_history, read_snapshots, summarize_snapshots

    got = read_snapshots(telemetry_file)
    s = summarize_snapshots(got.snapshots)
    s["truncated_tail"] = got.truncated_tail
    s["bad_lines"] = got.bad_lines
    if plot_path is not None:
        plot_history(got.snapshots, plot_path)
        s["plot"] = str(plot_path)
    if as_json:
        click.echo(json.dumps(s, indent=2))
    else:
        hours = s["stream_time_s"] / 3600
        click.echo(f"{s['n_snapshots']} snapshots from {s['first_utc']} to {s['last_utc']}"
                   + (f" ({s['n_segments']} detector runs)" if s["n_segments"] > 1 else ""))
        click.echo(f"audio: {s['stream_time_s'] / 60:.1f} min, {s['hops']:,} hops, {s['evaluations']:,} evaluations, "
                   f"{s['overflows']} lost blocks")
        level = "n/a" if s["rms_dbfs"] is None else f"{s['rms_dbfs']:.1f} dBFS"
        click.echo(f"input: RMS {level}, clipped {100 * s['clipped_fraction']:.3f}% of samples")
        for label, n in sorted(s["detections"].items()):
            rate = s["detections_per_hour"][label]
            click.echo(f"detections {label}: {n}" + (f" ({rate:.1f}/h)" if rate is not None and hours > 0 else ""))
        if s["drift_last"] is None:
            click.echo("drift: not enough audio yet for a verdict")
        else:
            verdict = "DRIFT" if s["drift_flag_last"] else "ok"
            click.echo(f"drift: {verdict}: last score {s['drift_last']:.3f}, max {s['drift_max']:.3f}, threshold "
                       f"{s['drift_threshold']:g}; flagged in {s['drift_flagged_snapshots']} snapshot(s)"
                       + (f", first at {s['first_drift_flag_utc']}" if s["first_drift_flag_utc"] else ""))
            if s["drift_flag_last"]:
                click.echo("  the input no longer looks like the training data (level, noise or microphone "
                           "changed): check the audio path, or collect data from it and retrain")
        if plot_path is not None:
            click.echo(f"plot: {plot_path}")
    if got.truncated_tail:
        click.echo(f"note: the last line of {telemetry_file} is truncated (writer stopped mid-line); read up to it",
                   err=True)
    if got.bad_lines:
        click.echo(f"warning: skipped unreadable line(s) {', '.join(map(str, got.bad_lines[:10]))}", err=True)
    if fail_on_drift and s["drift_flag_last"]:
        raise click.exceptions.Exit(1)
