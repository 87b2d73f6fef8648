"""`fleetscope value`, `watch` and `export`: the answers, now, live and from history."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from typing import Annotated, Any

import httpx
import typer
from rich.console import Group, RenderableType
from rich.live import Live
from rich.text import Text

from fleetscope.cli.client import DEFAULT_URL, Api, as_points
from fleetscope.cli.commands.common import AsJson, InstId, Url, print_json, reporting_errors, stdout_console
from fleetscope.cli.format import describe, numeric_field_type
from fleetscope.cli.views import (
    DISTRIBUTIONS,
    QUANTILES,
    breakdown_view,
    distribution_view,
    last_point,
    rows_table,
    scalar_view,
    value_table,
)
from fleetscope.model.errors import InputError
from fleetscope.model.types import Type, parse_duration
from fleetscope.model.values import DISCRETE, SCALAR

MAX_ROWS = 500  # rows of `fleetscope value`; longer looks back are rolled up by the server


def since_window(since: int, granularity: int, now: float) -> tuple[int, int]:
    """``(start_time, ndatapoints)`` covering the last ``since`` seconds at ``granularity``.

    The start is aligned down to a slot boundary so that the points are whole slots.
    """
    granularity = max(1, int(granularity))
    npoints = max(1, since // granularity)
    start = (int(now) - npoints * granularity) // granularity * granularity
    return start, npoints


def value(
    inst_id: InstId,
    since: Annotated[str, typer.Option(help="How far back: 60s, 10m, 1h.")] = "60s",
    url: Url = DEFAULT_URL,
    as_json: AsJson = False,
) -> None:
    """Print the values of an instrumentation over the last --since, one row per data point."""
    with reporting_errors(url):
        seconds = parse_duration(since, "since")
        if seconds <= 0:
            raise InputError("since", "must be a positive duration such as 60s or 10m")
        with Api.from_environment(url) as api:
            inst = api.instrumentation(inst_id)
            granularity = int(inst.get("granularity") or 1)
            now = time.time()
            start, npoints = since_window(seconds, granularity, now)
            window: dict[str, int] = {"start_time": start, "ndatapoints": npoints}
            if npoints > MAX_ROWS:  # a long look back: the server picks coarser points (history tiers)
                window = {"start_time": start, "end_time": int(now), "ndatapoints": MAX_ROWS}
            answer = api.values(inst_id, **window)
            if as_json:
                print_json(answer)
                return
            percentiles: list[dict] = []
            field_unit = Type()
            if inst.get("shape") in DISTRIBUTIONS:
                percentiles = as_points(api.percentiles(inst_id, QUANTILES, **window))
                field_unit = numeric_field_type(api.metrics(), inst)
        headers, rows = value_table(inst, as_points(answer), percentiles, field_unit=field_unit)
        title = f"instrumentation {inst_id}: {describe(inst)}"
        stdout_console().print(rows_table(headers, rows, title))


def watch(
    inst_id: InstId,
    interval: Annotated[float, typer.Option(min=0.1, help="Seconds between refreshes.")] = 1.0,
    count: Annotated[
        int | None, typer.Option(min=1, help="Stop after this many refreshes.", show_default=False)
    ] = None,
    url: Url = DEFAULT_URL,
) -> None:
    """Watch an instrumentation live: a value and sparkline, a breakdown, or a heatmap.

    On a terminal the view is redrawn in place; otherwise each refresh is printed in turn.
    Ctrl-C stops.
    """
    with reporting_errors(url), Api.from_environment(url) as api:
        inst = api.instrumentation(inst_id)
        frame = _frame_source(api, inst)
        console = stdout_console()
        title = f"instrumentation {inst_id}: {describe(inst)}"
        try:
            if console.is_terminal:
                with Live(console=console, auto_refresh=False) as live:
                    for view in _every(interval, count, lambda: _titled(title, frame())):
                        live.update(view, refresh=True)
            else:
                for view in _every(interval, count, lambda: _titled(title, frame())):
                    console.print(view)
                    console.print()
        except KeyboardInterrupt:
            pass  # Ctrl-C is how a watch ends: no "Aborted!", no traceback, status 0


def _titled(title: str, body: RenderableType) -> RenderableType:
    stamp = time.strftime("%H:%M:%S")
    return Group(Text(f"{title}  [{stamp}]", style="bold"), body)


def _every(interval: float, count: int | None, make: Callable[[], Any]) -> Iterator[Any]:
    """Yield ``make()`` every ``interval`` seconds, ``count`` times (forever if None)."""
    n = 0
    deadline = time.monotonic()
    while count is None or n < count:
        yield make()
        n += 1
        if count is not None and n >= count:
            return
        deadline += interval
        # Behind schedule (a slow answer, a suspended terminal): start again from now.
        delay = deadline - time.monotonic()
        if delay < 0:
            deadline, delay = time.monotonic(), 0.0
        time.sleep(delay)


def _frame_source(api: Api, inst: Mapping[str, Any]) -> Callable[[], RenderableType]:
    """A function fetching and drawing one refresh of ``inst``'s live view.

    A transport failure after the first refresh is drawn in the view (the server may be
    restarting) rather than ending the watch; an error answer (say the instrumentation was
    deleted) ends it.
    """
    inst_id = inst["id"]
    shape = inst.get("shape", SCALAR)
    granularity = int(inst.get("granularity") or 1)
    field_unit = numeric_field_type(api.metrics(), inst) if shape in DISTRIBUTIONS else Type()

    def draw() -> RenderableType:
        if shape == SCALAR:
            start, npoints = since_window(60, granularity, time.time())
            points = as_points(api.values(inst_id, start_time=start, ndatapoints=npoints))
            return scalar_view(inst, points)
        if shape == DISCRETE:
            return breakdown_view(inst, last_point(as_points(api.values(inst_id))))
        heatmap = api.heatmap(inst_id, duration=60, nbuckets=20)
        percentiles = last_point(as_points(api.percentiles(inst_id, QUANTILES)))
        return distribution_view(heatmap, percentiles, field_unit)

    first = True

    def frame() -> RenderableType:
        nonlocal first
        try:
            return draw()
        except httpx.TransportError as exc:
            if first:
                raise
            return Text(f"cannot reach {api.url} ({exc.__class__.__name__}); retrying",
                        style="red")
        finally:
            first = False

    return frame


EXPORT_FORMATS = ("csv", "json", "openmetrics")


def export(
    inst_id: InstId,
    since: Annotated[str, typer.Option(help="How far back: 1h, 7d, 30d.")] = "1h",
    fmt: Annotated[str, typer.Option("--format",
                                     help="csv, json (one object per line) or openmetrics.")] = "csv",
    step: Annotated[int | None, typer.Option(help="Seconds per point (default: the finest history tier "
                                             "that holds the range).", show_default=False)] = None,
    output: Annotated[str | None, typer.Option("--output", "-o", help="Write to this file, not stdout.",
                                               show_default=False)] = None,
    url: Url = DEFAULT_URL,
) -> None:
    """Export an instrumentation's data over the last --since, from the history and the live window."""
    with reporting_errors(url):
        if fmt not in EXPORT_FORMATS:
            raise InputError("format", f"must be one of {', '.join(EXPORT_FORMATS)}")
        params = {"since": since, "format": fmt, "step": step}
        with Api.from_environment(url) as api, api.stream(f"/instrumentations/{inst_id}/export",
                                                          params=params) as texts, \
                open(output or "/dev/stdout", "w", encoding="utf-8") as out:
            for text in texts:
                out.write(text)
