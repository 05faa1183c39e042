"""``kws registry``, ``kws monitor``, ``kws serve``: the workstation commands, registered on ``kws`` from above.

The runtime CLI never imports this module: ``pyproject.toml`` names these commands in the
``kws_edge.commands`` entry-point group, which :class:`kws_edge.cli.KwsGroup` reads. Each command
imports what its extra installs inside its body and, without it, says in one line what to install.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import click

from ..errors import BackendUnavailableError, ConfigError
from . import WORKSTATION_EXTRA

__all__ = ["registry", "monitor", "serve_command"]


@click.group()
@click.option("--registry", "registry_dir", type=click.Path(path_type=Path), envvar="KWS_REGISTRY", default=None,
              help="registry folder [default: $KWS_REGISTRY or ~/.local/share/kws-edge/registry]")
@click.pass_context
def registry(ctx: click.Context, registry_dir: Optional[Path]) -> None:
    """Local model registry: immutable, content-addressed bundle versions with stages."""
    from .registry import ModelRegistry, require_filelock

    require_filelock()
    ctx.obj = ModelRegistry(registry_dir)


def _entry_json(e: Any) -> dict[str, Any]:
    return {"id": e.id, "stages": list(e.stages), "path": str(e.bundle_path), **{k: v for k, v in e.info.items()
                                                                                  if k != "files"}}


def _headline_metrics(e: Any) -> str:
    """The converted model's accuracy and the streaming FRR and FA/h of a version, in one line."""
    from ..errors import KwsError

    try:
        manifest = e.manifest()
    except KwsError:
        return ""
    m, parts = manifest.metrics, []
    if m.converted is not None and m.converted.accuracy is not None:
        parts.append(f"{manifest.model.quantization} acc {100 * m.converted.accuracy:.1f}%")
    report = m.streaming.report if m.streaming is not None else None
    if report is not None and report.score.false_reject_rate is not None:
        parts.append(f"FRR {100 * report.score.false_reject_rate:.1f}% "
                     f"{report.score.false_accepts_per_hour or 0:.1f} FA/h")
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
        from ..config import to_dict

        click.echo(json.dumps({**_entry_json(e), "files": e.info.get("files"), "manifest": to_dict(e.manifest())},
                              indent=2))
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


@click.command()
@click.argument("telemetry_file", type=click.Path(path_type=Path))
@click.option("--plot", "plot_path", type=click.Path(path_type=Path), default=None,
              help="write a PNG of the history (detections, input level, drift)")
@click.option("--json", "as_json", is_flag=True, help="print the summary as JSON")
@click.option("--fail-on-drift", is_flag=True, help="exit with status 1 when the last snapshot flags drift")
def monitor(telemetry_file: Path, plot_path: Optional[Path], as_json: bool, fail_on_drift: bool) -> None:
    """Summarise a telemetry JSONL file written by kws listen --telemetry; flag drift."""
    from .monitor import plot_history, read_snapshots, summarize_snapshots

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


@click.command("serve")
@click.option("--bundle", "bundle_dir", type=click.Path(path_type=Path), default=None,
              help="Model bundle directory (default: the bundle shipped with kws-edge).")
@click.option("--source", default="mic", show_default=True, metavar="mic|FILE",
              help="'mic' for the default microphone, or a WAV file played in real time.")
@click.option("--port", type=int, default=8000, show_default=True,
              help="Port on 127.0.0.1; 0 picks a free one.")
@click.option("--device", default=None, help="Input device index or name (with --source mic).")
@click.option("--speed", type=float, default=1.0, show_default=True,
              help="Playback speed of a FILE source (1 = real time, 0 = as fast as possible).")
@click.option("--threshold", type=float, default=None,
              help="Override the detection threshold of every keyword (0-1).")
def serve_command(bundle_dir: Path | None, source: str, port: int, device: str | None, speed: float,
                  threshold: float | None) -> None:
    """Show live posteriors, detections, input level and telemetry on http://127.0.0.1:PORT/.

    The page is pushed updates (Server-Sent Events) as audio streams through the
    detector. Stop with Ctrl-C.
    """
    try:
        from .web.server import serve
    except ImportError as exc:  # BackendUnavailableError is an ImportError too
        if isinstance(exc, BackendUnavailableError):
            raise
        raise BackendUnavailableError(f"kws serve needs the workstation extra ({exc.name or exc}): "
                                      f"pip install {WORKSTATION_EXTRA}") from None
    from ..detector import KeywordDetector
    from ..telemetry import DetectorTelemetry
    from .web.live import FileSource, MicSource

    if not 0 <= port <= 65535:
        raise ConfigError(f"--port {port} is out of range; use 1-65535 (or 0 for any free port)")
    if speed < 0:
        raise ConfigError(f"--speed {speed} must be >= 0")
    overrides = {} if threshold is None else {"thresholds": threshold}
    detector = KeywordDetector.from_bundle(bundle_dir, **overrides)
    detector.telemetry = DetectorTelemetry.for_manifest(detector.bundle.manifest)
    if source == "mic":
        audio = MicSource(detector.sample_rate_hz, device=device)
    else:
        if device is not None:
            raise ConfigError("--device applies to --source mic only")
        audio = FileSource(source, detector.sample_rate_hz, speed=speed)

    def ready(url: str) -> None:
        manifest = detector.bundle.manifest
        click.echo(f"kws serve: {manifest.name} {manifest.version} on {audio.description}")
        click.echo(f"open {url}  (Ctrl-C to stop)")

    try:
        serve(detector, audio, port=port, on_ready=ready)
    finally:
        audio.close()
    click.echo("stopped", err=True)
