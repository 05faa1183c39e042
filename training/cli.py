"""``kws-train``: train a yes/no model and write a run directory.

    kws-train --data DIR|synthetic [--data DIR ...] --out RUN_DIR [--config FILE.toml] [--model NAME]
              [--epochs N] [--seed S] [--overwrite] [--workers N] [--no-cache] [--json]
              [--strategy default|mirrored|multiworker] [--distill-from RUN_DIR ...]

With ``--strategy multiworker`` every worker runs the same command with its own
``TF_CONFIG``; only the chief writes RUN_DIR and prints the metrics (see
:mod:`kws_edge.training.distribute`).

Progress goes to stderr (click progress bars); the validation and test
metrics are printed at the end (or as JSON with ``--json``). Errors are one
line on stderr with a non-zero exit status; Ctrl-C exits 130 and leaves the
run directory marked "incomplete".
"""

from __future__ import annotations

import json
import sys
import time

import click

from ..cli import run_cli
from .models import ARCHITECTURES

__all__ = ["main", "train_command"]


class _Bars:
    """One click progress bar per stage, on stderr."""

    NAMES = {"synthesize": "synthesising speech", "features": "features", "augment": "augmenting",
             "epoch": "training epochs"}

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.stage = None
        self.bar = None
        self.done = 0

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        if stage != self.stage:
            self.close()
            self.stage, self.done = stage, 0
            self.bar = click.progressbar(length=max(total, 1), label=f"{self.NAMES.get(stage, stage):<20}",
                                         file=sys.stderr, show_pos=True)
            self.bar.__enter__()
        if self.bar is not None and done > self.done:
            self.bar.update(done - self.done)
            self.done = done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--data", "data", required=True, multiple=True,
              help="Speech Commands-layout folder, or 'synthetic'; repeat for several folders (one dataset, "
                   "one speaker-hash split across them).")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Run directory to write.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="TOML recipe (see docs).")
@click.option("--model", "model", help=f"Architecture: {', '.join(ARCHITECTURES)}.")
@click.option("--epochs", type=int, help="Training epochs.")
@click.option("--seed", type=int, help="Seed for every random choice.")
@click.option("--overwrite", is_flag=True, help="Replace a finished run in --out.")
@click.option("--workers", type=int, default=None, help="Feature-extraction processes (default: cores, max 4).")
@click.option("--no-cache", is_flag=True, help="Do not read or write the feature cache.")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
@click.option("--strategy", type=click.Choice(["default", "mirrored", "multiworker"]), default="default",
              show_default=True, help="tf.distribute strategy; multiworker reads TF_CONFIG.")
@click.option("--distill-from", "distill_from", multiple=True, type=click.Path(file_okay=False),
              help="A finished run to learn from as well (knowledge distillation); repeat for an ensemble. "
                   "Replaces the recipe's distill_from.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def train_command(data, out, config_path, model, epochs, seed, overwrite, workers, no_cache, as_json, quiet,
                  strategy, distill_from):
    """Train a keyword-spotting model and write RUN_DIR (see docs/ARCHITECTURE.md)."""
    from .config import load_config
    from .fit import train
    from ..metrics import metrics_table

    config = load_config(config_path, data=data[0] if len(data) == 1 else tuple(data), model=model, epochs=epochs, seed=seed,
                         distill_from=tuple(distill_from) or None)
    bars = _Bars(enabled=not quiet and not as_json)
    start = time.perf_counter()
    try:
        run = train(config, out, overwrite=overwrite, progress=bars, workers=workers, feature_cache=not no_cache,
                    strategy=strategy)
    finally:
        bars.close()
    if strategy == "multiworker":
        from .distribute import worker_role

        role = worker_role(strategy)
        if not role.is_chief:
            click.echo(f"{role.name} of {role.num_workers} finished; the chief writes the run directory")
            return
    metrics = run.metrics()
    if as_json:
        click.echo(json.dumps({"run_dir": str(run.path), "metrics": metrics}, indent=2))
        return
    click.echo(f"run written to {run.path} in {time.perf_counter() - start:.0f} s")
    click.echo(metrics_table(metrics["validation"], "validation"))
    click.echo(metrics_table(metrics["test"], "test"))


def main(argv: list[str] | None = None) -> None:
    sys.exit(run_cli(train_command, argv))
