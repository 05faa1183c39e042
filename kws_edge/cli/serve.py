"""``kws serve``: a live view of the detector in the browser (extra ``serve``)."""

from __future__ import annotations

from pathlib import Path

import click

from . import cli
from ..errors import BackendUnavailableError, ConfigError


@cli.command("serve")
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
        from ..web.server import serve
    except ImportError as exc:  # BackendUnavailableError is an ImportError too
        if isinstance(exc, BackendUnavailableError):
            raise
        raise BackendUnavailableError(f"kws serve needs its extra: pip install 'kws-edge[serve]' ({exc})") from None
    from ..detector import KeywordDetector
    from ..telemetry import DetectorTelemetry
    from ..web.live import FileSource, MicSource

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
