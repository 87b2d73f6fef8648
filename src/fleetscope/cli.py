"""The `fleetscope` command: `serve` here, the API client commands in cli_client."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import typer
from platformdirs import user_data_dir

from fleetscope import __version__
from fleetscope.cli_client import register

DEFAULT_PORT = 7070
DEFAULT_HOST = "127.0.0.1"

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


@app.command()
def serve(
    port: int = typer.Option(DEFAULT_PORT, help="TCP port of the API and dashboard."),
    host: str = typer.Option(DEFAULT_HOST, help="Address to listen on."),
    data_dir: Path = typer.Option(Path(user_data_dir("fleetscope")), help="Where the store lives."),
    hostname: str = typer.Option(None, help="Host name to report (default: this machine's)."),
    log_level: str = typer.Option("warning", help="debug, info, warning or error."),
) -> None:
    """Run everything on this host: agent, aggregator, SQLite store, API and dashboard."""
    import uvicorn

    from fleetscope.api.embedded import embedded_app

    if not 1 <= port <= 65535:
        typer.echo(f"error: port: {port} is not a TCP port (1-65535)", err=True)
        raise typer.Exit(1)
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            typer.echo(f"error: port: cannot listen on {host}:{port}: {exc.strerror}", err=True)
            raise typer.Exit(1) from None
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    application = embedded_app(data_dir, hostname)
    typer.echo(f"fleetscope {__version__} serving at http://{host}:{port}/ (data in {data_dir})")
    uvicorn.run(application, host=host, port=port, log_level=log_level, access_log=False,
                timeout_graceful_shutdown=5)


register(app)
