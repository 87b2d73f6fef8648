"""The ``fleetscope`` Typer app: the entry point of ``[project.scripts]``."""

from __future__ import annotations

import typer

from fleetscope import __version__
from fleetscope.cli.commands import register, register_servers

app = typer.Typer(
    name="fleetscope",
    help="Cloud analytics for a fleet of hosts: ad-hoc questions answered every second.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"fleetscope {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """fleetscope."""


register_servers(app)
register(app)
