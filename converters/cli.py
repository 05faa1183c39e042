"""``kws-convert RUN_DIR --device DEVICE --out BUNDLE_DIR``: a training run -> a bundle for a device.

Exit status: 0 written; 1 the parity gate or a budget failed (the budget table
goes to stderr) or the disk filled up; 2 bad input (missing or incomplete run,
unknown device, bad option).
"""

from __future__ import annotations

import os
import sys

import click

from kws_edge.cli import run_cli
from kws_edge.errors import BudgetExceeded

__all__ = ["convert_command", "main"]


def _device_help() -> str:
    try:
        from kws_edge.devices import list_profiles

        names = ", ".join(p.name for p in list_profiles())
        return f"device profile name (or alias) or path to a profile .toml; shipped: {names}"
    except Exception:  # help text must never fail
        return "device profile name or path to a profile .toml"


@click.command(name="kws-convert", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=str))
@click.option("--device", "device", required=True, help=_device_help())
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=str), help="bundle directory to write")
@click.option("--quantize", type=click.Choice(["int8", "float32"]), default="int8", show_default=True,
              help="full-integer int8 (int8 input and output) or float32")
@click.option("--representative", "representative_n", type=click.IntRange(min=1), default=500, show_default=True,
              help="calibration clips drawn from the run's representative set")
@click.option("--max-accuracy-drop", "max_drop", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="parity gate: largest allowed float-minus-converted test accuracy, in percentage points")
@click.option("--allow-over-budget", is_flag=True, help="write the bundle even if a budget fails (recorded in it)")
@click.option("--overwrite", is_flag=True, help="replace an existing bundle directory")
@click.option("--measure/--no-measure", default=None,
              help="measure CPU share and hop latency here (default: only when this machine is the device)")
@click.option("--stride-hops", type=click.IntRange(min=1), default=1, show_default=True,
              help="detector default: run the model every N feature hops (fewer inferences per second)")
@click.option("--json", "as_json", is_flag=True, help="print the conversion report as JSON on stdout")
@click.option("--strip-names", is_flag=True,
              help="blank the tensor names in the model file (a smaller file; names only help debugging)")
@click.option("--per-tensor", is_flag=True,
              help="int8 weights with one scale per tensor, not per output channel: a smaller file "
                   "(12 bytes less per channel of each weight tensor); check the accuracy it reports")
@click.option("--streaming", is_flag=True,
              help="also convert the streaming (stateful) form of a streamable model (tcn) into the bundle; the "
                   "detector runs it, so budgets and parity are checked on it")
@click.version_option(package_name="kws-edge")
def convert_command(run_dir: str, device: str, out_dir: str, quantize: str, representative_n: int, max_drop: float,
                    allow_over_budget: bool, overwrite: bool, measure: bool | None, as_json: bool,
                    streaming: bool = False, stride_hops: int = 1, strip_names: bool = False,
                    per_tensor: bool = False) -> None:
    """Quantise a kws-train run and write a bundle checked against a device's budgets."""
    from .convert import convert_run

    try:
        report = convert_run(
            run_dir, device=device, out_dir=out_dir, quantize=quantize, representative_n=representative_n,
            max_accuracy_drop_points=max_drop, allow_over_budget=allow_over_budget, overwrite=overwrite,
            measure=measure, stride_hops=stride_hops, strip_names=strip_names, per_channel=not per_tensor,
            streaming=streaming,
        )
    except BudgetExceeded as exc:
        report_table = getattr(exc, "report", None)
        if report_table is not None:
            click.echo(report_table.table(), err=True)
        raise
    if as_json:
        import json

        from kws_edge.config import to_dict

        click.echo(json.dumps({
            "bundle": str(report.bundle_dir),
            "model": report.analysis.to_dict(),
            "streaming_model": report.streaming_analysis.to_dict() if report.streaming_analysis else None,
            "metrics": to_dict(report.manifest.metrics),
            "budgets": to_dict(report.budgets),
            "tflm": {check.file: {**to_dict(check.record()), "build": to_dict(check.build),
                                  "seconds": round(check.seconds, 3)} for check in report.tflm},
        }, indent=2))
    else:
        if not report.budgets.within_budget:
            click.echo(report.budgets.table(), err=True)
        click.echo(report.summary())


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(run_cli(convert_command, argv))
