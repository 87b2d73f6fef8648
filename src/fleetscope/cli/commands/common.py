"""What every client command shares: its options, one way to report errors, output."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any, NoReturn

import httpx
import typer
from rich.console import Console

from fleetscope.cli.client import ApiError
from fleetscope.model.errors import InputError

Url = Annotated[
    str,
    typer.Option(
        "--url", envvar="FLEETSCOPE_URL", show_envvar=True,
        help="Base URL of the fleetscope server.",
    ),
]


AsJson = Annotated[bool, typer.Option("--json", help="Print the server's JSON answer as is.")]


InstId = Annotated[
    int, typer.Argument(metavar="ID", help="Instrumentation id.", show_default=False)
]


def fail(message: str) -> NoReturn:
    """Print ``error: <message>`` on stderr and exit 1."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


@contextmanager
def reporting_errors(url: str) -> Iterator[None]:
    """Turn the errors a command expects into one line on stderr and exit status 1."""
    try:
        yield
    except (ApiError, InputError) as exc:
        fail(str(exc))
    except httpx.ConnectError:
        fail(f"cannot connect to {url}: is `fleetscope serve` running?")
    except httpx.TimeoutException:
        fail(f"{url} did not answer in time")
    except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
        fail(f"url: {url!r}: {exc}")
    except httpx.HTTPError as exc:
        fail(f"{url}: {exc}")


def stdout_console() -> Console:
    # No syntax highlighting: numbers in tables would change colour for no reason.
    return Console(highlight=False)


def print_json(obj: Any) -> None:
    # Plain text, not rich: JSON is for programs, and must not be wrapped or coloured.
    typer.echo(json.dumps(obj, indent=2))
