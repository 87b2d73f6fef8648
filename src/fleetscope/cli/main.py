"""The ``fleetscope`` Typer app: the entry point of ``[project.scripts]``."""

from __future__ import annotations

import os

import typer

from fleetscope import __version__
from fleetscope.cli.client import CA_ENV, TOKEN_ENV
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
    token: str | None = typer.Option(None, "--token", envvar=TOKEN_ENV, show_envvar=True,
                                     help="API token (default: the one `fleetscope login` saved)."),
    ca_cert: str | None = typer.Option(None, "--ca-cert", envvar=CA_ENV, show_envvar=True,
                                       help="CA bundle to check the server's HTTPS certificate."),
) -> None:
    """fleetscope."""
    # Client commands build their Api from the environment: these options reach them that way.
    if token:
        os.environ[TOKEN_ENV] = token
    if ca_cert:
        os.environ[CA_ENV] = ca_cert


register_servers(app)
register(app)
