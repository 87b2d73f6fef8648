"""What every client command shares: its options, one way to report errors, output."""

from __future__ import annotations

import json
import os
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
    except httpx.ConnectError as exc:
        if "CERTIFICATE_VERIFY_FAILED" in str(exc) or "certificate" in str(exc).lower():
            fail(f"{url}: its HTTPS certificate is not trusted ({exc}); give its CA with --ca-cert FILE")
        fail(f"cannot connect to {url}: is `fleetscope serve` running?")
    except httpx.TimeoutException:
        fail(f"{url} did not answer in time")
    except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
        fail(f"url: {url!r}: {exc}")
    except httpx.HTTPError as exc:
        fail(f"{url}: {exc}")


# Columns of the output when it is not a terminal (a pipe, a file) and COLUMNS does not say:
# wide enough that no table is cut or wrapped (rich would assume 80 and shorten "hostna…").
PIPE_WIDTH = 10_000


def stdout_console() -> Console:
    """The console of a command's output: the terminal's width, else COLUMNS, else unlimited."""
    # No syntax highlighting: numbers in tables would change colour for no reason.
    console = Console(highlight=False)
    if not console.is_terminal and not os.environ.get("COLUMNS", "").isdigit():
        console = Console(highlight=False, width=PIPE_WIDTH)
    return console


def print_json(obj: Any) -> None:
    # Plain text, not rich: JSON is for programs, and must not be wrapped or coloured.
    typer.echo(json.dumps(obj, indent=2))
