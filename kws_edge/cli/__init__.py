"""The ``kws`` command line. Library code raises; this layer presents.

Every ``KwsError`` becomes one line on stderr and the error's exit status
(2 for bad input, 1 for a model over budget or a failed stage); Ctrl-C ends
with status 130 and no traceback.
"""

from __future__ import annotations

import sys

import click

from ..errors import KwsError

__all__ = ["cli", "main", "run_cli"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="kws-edge")
def cli() -> None:
    """kws-edge: on-device keyword spotting."""


def run_cli(group: click.Command, argv: list[str] | None = None) -> int:
    """Run a click command with kws-edge's error presentation; returns the exit status."""
    try:
        rv = group.main(args=argv, standalone_mode=False)
        # ctx.exit(n) inside a command comes back as n in non-standalone mode
        return rv if isinstance(rv, int) and not isinstance(rv, bool) else 0
    except KwsError as exc:
        click.echo(f"error: {exc}", err=True)
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        return 130
    except KeyboardInterrupt:
        click.echo("interrupted; nothing half-written was left behind", err=True)
        return 130
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.UsageError as exc:
        # one line, not click's usage block: say what is wrong and where help is
        where = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        click.echo(f"error: {exc.format_message()}{where}", err=True)
        return 2
    except click.ClickException as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        return 2 if exc.exit_code == 1 else exc.exit_code
    except BrokenPipeError:
        return 0


def main(argv: list[str] | None = None) -> None:
    from . import commands  # noqa: F401  (registers subcommands)

    sys.exit(run_cli(cli, argv))
