"""The ``kws`` command line. Library code raises; this layer presents.

Every ``KwsError`` becomes one line on stderr and the error's exit status
(2 for bad input, 1 for a model over budget or a failed stage); Ctrl-C ends
with status 130 and no traceback.

The device commands (detect, classify, listen, info, bench) are the runtime's own
(:mod:`.commands`). Commands of the rooms above it (``kws evaluate``, ``kws pipeline``,
``kws registry``, ``kws monitor``, ``kws serve``) are registered from above: each is named
in the ``kws_edge.commands`` entry-point group of the distribution (``pyproject.toml``),
and :class:`KwsGroup` loads one only when it is called (or listed by ``--help``). So the
runtime never imports training, pipeline or workstation code.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from ..errors import BackendUnavailableError, KwsError

__all__ = ["cli", "main", "run_cli", "KwsGroup", "ENTRY_POINT_GROUP"]

#: entry-point group whose entries (name = command name, value = a click command) extend ``kws``
ENTRY_POINT_GROUP = "kws_edge.commands"


def _entry_points() -> dict[str, Any]:
    from importlib.metadata import entry_points

    found = entry_points()
    group = found.select(group=ENTRY_POINT_GROUP) if hasattr(found, "select") else found.get(ENTRY_POINT_GROUP, ())
    return {ep.name: ep for ep in group}


class KwsGroup(click.Group):
    """A click group whose commands are its own plus those of the :data:`ENTRY_POINT_GROUP`, loaded when used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(_entry_points()))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        command = super().get_command(ctx, name)
        if command is not None:
            return command
        ep = _entry_points().get(name)
        if ep is None:
            return None
        try:
            command = ep.load()
        except ImportError as exc:
            if isinstance(exc, BackendUnavailableError):
                raise
            raise BackendUnavailableError(f"kws {name} cannot be loaded ({exc}); reinstall kws-edge") from None
        self.add_command(command, name)
        return command


@click.group(cls=KwsGroup, context_settings={"help_option_names": ["-h", "--help"]})
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
