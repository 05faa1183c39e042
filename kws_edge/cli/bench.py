"""``kws bench``: measure the streaming detector on this machine and check a device profile's budgets."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..errors import BudgetExceeded
from . import cli

__all__ = ["bench"]


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


@cli.command()
@click.option("--bundle", "bundle_dir", type=click.Path(path_type=Path), default=None,
              help="bundle directory; default: the bundle shipped with kws-edge")
@click.option("--device", default=None,
              help="device profile name or .toml path (default: auto-detect this board)")
@click.option("--seconds", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True,
              help="seconds of audio to measure (after a 1 s warm-up)")
@click.option("--realtime/--no-realtime", default=True, show_default=True,
              help="also feed audio at microphone pace (the CPU share a device pays; the default figure) or "
                   "only as fast as possible (the tight-loop figure, which is always measured)")
@click.option("--threads", "num_threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="interpreter threads")
@click.option("--json", "as_json", is_flag=True, help="one JSON object on stdout")
def bench(bundle_dir: Path | None, device: str | None, seconds: float, realtime: bool, num_threads: int,
          as_json: bool) -> None:
    """Measure CPU share, real-time factor, per-hop latency, memory; check the device's budgets.

    Exit status 1 when a budget of the device profile is exceeded.
    """
    from ..bench import run_bench

    report = run_bench(bundle_dir, device=device, seconds=seconds, realtime=realtime, num_threads=num_threads)
    table = report.pop("_budget_table", "")
    if as_json:
        click.echo(json.dumps(report))
    else:
        mach = report["machine"]
        rows = [
            ("bundle", f"{report['bundle_name']} ({report['bundle']})"),
            ("machine", f"{mach.get('board') or mach.get('cpu', '?')}, {mach['machine']}, "
                        f"Python {mach['python']}, {report['backend']}"),
            ("audio", f"{report['seconds']:g} s, " + (
                ("paced at real time" + ("" if report["kept_up_with_real_time"] else
                                         f" (FELL BEHIND: took {report['wall_s']:.1f} s)"))
                if report["realtime_paced"] else "as fast as possible") + f", {report['block_ms']:g} ms blocks"),
            ("CPU share of one core", f"{report['cpu_share'] * 100:.2f}%"
                                      + (" (paced)" if report["realtime_paced"] else " (unpaced)")),
            ("real-time factor", f"{report['real_time_factor']:.4f} ({report['cpu_ms_per_audio_s']:.2f} ms CPU "
                                 "per s of audio)"),
            ("CPU per s of audio, paced", "not measured (--no-realtime)" if report["paced_cpu_ms_per_audio_s"] is None
             else f"{report['paced_cpu_ms_per_audio_s']:.2f} ms whole process, "
                  f"{report['paced_call_cpu_ms_per_audio_s']:.2f} ms inside process() (microphone pace)"),
            ("CPU per s of audio, unpaced", f"{report['unpaced_cpu_ms_per_audio_s']:.2f} ms whole process, "
                                            f"{report['unpaced_call_cpu_ms_per_audio_s']:.2f} ms inside process() "
                                            "(tight loop, what benchmarks/ gate)"),
            ("hop latency median / p99", f"{report['hop_latency_median_ms']:.3f} / "
                                         f"{report['hop_latency_p99_ms']:.3f} ms"),
            ("peak RSS", _mib(report["peak_rss_bytes"])),
            ("model bytes", f"{report['model_bytes']:,}"),
            ("activation bytes", f"{report['activation_bytes']:,} ({report['activation_bytes_source']})"),
            ("device profile", f"{report['device'] or 'none'} ({report['device_note']})"),
        ]
        width = max(len(k) for k, _ in rows)
        for k, v in rows:
            click.echo(f"{k.ljust(width)}  {v}")
        if table:
            click.echo("")
            click.echo(table)
    if report["within_budget"] is False:
        failed = [b["name"] for b in report["budgets"] if not b["passed"]]
        raise BudgetExceeded(f"over the budgets of {report['device']}: {', '.join(failed)}")
