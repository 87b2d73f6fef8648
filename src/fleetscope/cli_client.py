"""The client side of the ``fleetscope`` command: everything here talks to a server over HTTP.

:mod:`fleetscope.cli` builds the Typer app (with ``serve``) and calls :func:`register`, which
adds ``metrics``, ``inst create|list|show|update|delete``, ``value`` and ``watch``. Each command
takes ``--url`` (default ``$FLEETSCOPE_URL``, else ``http://127.0.0.1:7070``) and uses only the
public API under ``/api/v1``.

Failures never end in a traceback. An error answer from the server
(``{"error": {"code", "message", "field"}}``) or an argument rejected here prints
``error: <field>: <message>`` on stderr and exits 1; an unreachable server prints a message
naming the URL and exits 1; Typer itself exits 2 on usage errors.

The formatting helpers (:func:`sparkline`, :func:`shade_levels`, :func:`heatmap_lines`,
:func:`value_table`, ...) are pure functions of the API's JSON, so they are tested without a
server.
"""

from __future__ import annotations

import json
import math
import time
from bisect import bisect_right
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Annotated, Any, NoReturn

import httpx
import typer
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from fleetscope.model.errors import InputError
from fleetscope.model.types import NUMBER, Type, format_quantity, parse_duration

DEFAULT_URL = "http://127.0.0.1:7070"
API_PREFIX = "/api/v1"
QUANTILES = (0.5, 0.9, 0.99)

SPARK_TICKS = "▁▂▃▄▅▆▇█"
SHADES = " ░▒▓█"  # heatmap cells: index 0 is empty, 1..4 by rank
BAR_EIGHTHS = " ▏▎▍▌▋▊▉"

SCALAR = "scalar"
DISCRETE = "discrete"
HISTOGRAM = "histogram"
DISCRETE_HISTOGRAM = "discrete_histogram"
DISTRIBUTIONS = (HISTOGRAM, DISCRETE_HISTOGRAM)


# --------------------------------------------------------------------------- the HTTP API


class ApiError(Exception):
    """An error answer from the server, in the API's ``{"error": {...}}`` form.

    ``str()`` is ``<field>: <message>``, or just the message when no field is at fault.
    """

    def __init__(
        self, message: str, field: str | None = None, *, status: int | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.status = status
        self.code = code

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


def error_from_response(response: httpx.Response) -> ApiError:
    """The :class:`ApiError` an error response stands for.

    The API answers ``{"error": {"code", "message", "field"}}``. Anything else (a proxy's
    HTML page, a crash) still becomes a one-line error with the status, never a traceback.
    """
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return ApiError(
            str(error["message"]),
            str(error["field"]) if error.get("field") else None,
            status=response.status_code,
            code=error.get("code"),
        )
    text = " ".join(response.text.split())[:200]
    reason = response.reason_phrase or "error"
    message = f"the server answered {response.status_code} {reason}" + (f": {text}" if text else "")
    return ApiError(message, status=response.status_code)


class Api:
    """A small synchronous client of the fleetscope HTTP API at ``url``.

    Methods return the decoded JSON and raise :class:`ApiError` for error answers; transport
    failures are left as :class:`httpx.HTTPError` so that the caller can name the URL.
    """

    def __init__(
        self, url: str, *, timeout: float = 10.0, transport: httpx.BaseTransport | None = None
    ) -> None:
        self.url = url.rstrip("/")
        self._client = httpx.Client(
            base_url=self.url + API_PREFIX, timeout=timeout, transport=transport
        )

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def request(
        self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
        body: Any = None,
    ) -> Any:
        """Send one request; the decoded JSON answer, or None for an empty one (204)."""
        # Absent parameters are left out so that the server's defaults apply.
        query = {k: v for k, v in (params or {}).items() if v is not None}
        response = self._client.request(method, path, params=query, json=body)
        if response.is_error:
            raise error_from_response(response)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise ApiError(f"the answer to {method} {path} is not JSON") from None

    def metrics(self) -> list[dict]:
        return _field(self.request("GET", "/metrics"), "metrics", list)

    def instrumentations(self) -> list[dict]:
        return _field(self.request("GET", "/instrumentations"), "instrumentations", list)

    def hosts(self) -> list[dict]:
        return _field(self.request("GET", "/hosts"), "hosts", list)

    def instrumentation(self, inst_id: int) -> dict:
        return _expect(self.request("GET", f"/instrumentations/{inst_id}"), dict)

    def create(self, body: Mapping[str, Any]) -> dict:
        return _expect(self.request("POST", "/instrumentations", body=dict(body)), dict)

    def update(self, inst_id: int, body: Mapping[str, Any]) -> dict:
        return _expect(
            self.request("PATCH", f"/instrumentations/{inst_id}", body=dict(body)), dict
        )

    def delete(self, inst_id: int) -> None:
        self.request("DELETE", f"/instrumentations/{inst_id}")

    def values(self, inst_id: int, **params: Any) -> Any:
        """``GET .../value``: one point, or a list of points when ``ndatapoints`` is given."""
        return self.request("GET", f"/instrumentations/{inst_id}/value", params=params)

    def percentiles(self, inst_id: int, quantiles: Sequence[float], **params: Any) -> Any:
        q = ",".join(f"{x:g}" for x in quantiles)
        return self.request(
            "GET", f"/instrumentations/{inst_id}/percentiles", params={"q": q, **params}
        )

    def heatmap(self, inst_id: int, **params: Any) -> dict:
        return _expect(
            self.request(
                "GET", f"/instrumentations/{inst_id}/heatmap", params={"format": "json", **params}
            ),
            dict,
        )


def _expect(obj: Any, kind: type) -> Any:
    if not isinstance(obj, kind):
        raise ApiError(f"unexpected answer from the server: expected a JSON {kind.__name__}")
    return obj


def _field(obj: Any, name: str, kind: type) -> Any:
    return _expect(_expect(obj, dict).get(name), kind)


# --------------------------------------------------------------------------- errors


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


# --------------------------------------------------------------------------- pure helpers


def split_metric(name: str) -> tuple[str, str]:
    """``"proc.cpu"`` -> ``("proc", "cpu")``; the module is what comes before the first dot."""
    module, dot, stat = name.partition(".")
    if not (module and dot and stat):
        raise InputError("metric", f"{name!r} is not module.stat, e.g. proc.cpu")
    return module, stat


def predicate_arg(text: str) -> str | dict:
    """The ``predicate`` to send for ``--where``: a JSON object as such, else the text form."""
    if text.lstrip().startswith("{"):
        try:
            obj = json.loads(text)
        except ValueError:
            return text  # not JSON after all: the server's text parser will say why
        if isinstance(obj, dict):
            return obj
    return text


MAX_ROWS = 500  # rows of `fleetscope value`; longer looks back are rolled up by the server


def since_window(since: int, granularity: int, now: float) -> tuple[int, int]:
    """``(start_time, ndatapoints)`` covering the last ``since`` seconds at ``granularity``.

    The start is aligned down to a slot boundary so that the points are whole slots.
    """
    granularity = max(1, int(granularity))
    npoints = max(1, since // granularity)
    start = (int(now) - npoints * granularity) // granularity * granularity
    return start, npoints


def format_duration(seconds: float | None) -> str:
    """``600`` -> ``10m``, ``5400`` -> ``1h30m``, ``0`` -> ``0s`` (inverse of parse_duration)."""
    if seconds is None:
        return "-"
    rest = int(seconds)
    if rest != seconds or rest < 0:
        return f"{seconds:g}s"
    if rest == 0:
        return "0s"
    parts = []
    for suffix, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        n, rest = divmod(rest, size)
        if n:
            parts.append(f"{n}{suffix}")
    return "".join(parts)


def format_idle_max(seconds: float | None) -> str:
    """An idle_max for people: 0 means the instrumentation never expires."""
    return "never" if seconds == 0 else format_duration(seconds)


def format_time(t: float | None, granularity: int = 1) -> str:
    """Local wall-clock time of epoch seconds ``t``, with the date once slots are hours long."""
    if not isinstance(t, int | float):
        return "-" if t is None else str(t)
    pattern = "%Y-%m-%d %H:%M" if granularity >= 3600 else "%H:%M:%S"
    return time.strftime(pattern, time.localtime(t))


def unit_type(unit: Any) -> Type:
    """A :class:`Type` from the API's ``{"base", "power", "name"}`` (number when absent)."""
    if isinstance(unit, Mapping):
        return Type(str(unit.get("base", "number")), int(unit.get("power") or 0))
    return Type()


def format_value(value: Any, unit: Type) -> str:
    """A number for people, in ``unit``; ``-`` when there is none (null, NaN)."""
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        return "-"
    if value == 0:
        return "0"  # not "0 ns" or "0 B": zero needs no unit
    if unit.base == "number":
        # format_quantity's 4 significant digits turn counts into 1.235e+04; keep them whole.
        if abs(value) >= 1e4 or value == int(value):
            return f"{value:,.0f}"
        return f"{value:.4g}"
    return format_quantity(value, unit)


def metric_name(inst: Mapping[str, Any]) -> str:
    """The ``module.stat`` of an instrumentation (``metric`` may be a name or a metric object)."""
    metric = inst.get("metric")
    if isinstance(metric, str):
        return metric
    if isinstance(metric, Mapping) and metric.get("name"):
        return str(metric["name"])
    return f"{inst.get('module')}.{inst.get('stat')}"


def describe(inst: Mapping[str, Any]) -> str:
    """One line for people: ``proc.cpu by execname where execname != "idle"``."""
    text = metric_name(inst)
    if inst.get("decomposition"):
        text += " by " + ", ".join(map(str, inst["decomposition"]))
    if inst.get("predicate_text"):
        text += f" where {inst['predicate_text']}"
    return text


def numeric_field_type(metrics: Sequence[Mapping[str, Any]], inst: Mapping[str, Any]) -> Type:
    """The unit of the numeric field an instrumentation is decomposed by (number if unknown)."""
    name = metric_name(inst)
    decomposition = set(inst.get("decomposition") or ())
    for metric in metrics:
        if metric.get("name") != name:
            continue
        for field in metric.get("fields") or ():
            if field.get("name") in decomposition and field.get("kind") == "numeric":
                return unit_type(field.get("type"))
    return Type()


def as_points(obj: Any) -> list[dict]:
    """The list of points of a value or percentiles answer (one object or an array of them)."""
    if isinstance(obj, dict):
        return [obj]
    if isinstance(obj, list):
        return [p for p in obj if isinstance(p, dict)]
    raise ApiError("unexpected answer from the server: expected data points")


def sparkline(
    values: Sequence[float | None], lo: float | None = None, hi: float | None = None
) -> str:
    """One character per value, ``▁`` (``lo``) to ``█`` (``hi``); a space for a missing value.

    ``lo`` defaults to ``min(0, smallest value)``: activity is drawn from zero, so that noise
    on a flat level does not look like a swing. ``hi`` defaults to the largest value.
    """
    known = [v for v in values if _finite(v)]
    if not known:
        return " " * len(values)
    lo = min(0.0, min(known)) if lo is None else lo
    hi = max(known) if hi is None else hi
    top = len(SPARK_TICKS) - 1
    chars = []
    for v in values:
        if not _finite(v):
            chars.append(" ")
        elif hi <= lo:
            chars.append(SPARK_TICKS[0])
        else:
            chars.append(SPARK_TICKS[min(top, max(0, round((v - lo) / (hi - lo) * top)))])
    return "".join(chars)


def bar(value: float, peak: float, width: int) -> str:
    """A horizontal bar of ``value / peak`` of ``width`` cells, in eighths of a cell."""
    if not (_finite(value) and _finite(peak)) or value <= 0 or peak <= 0:
        return ""
    eighths = round(min(1.0, value / peak) * width * 8)
    full, part = divmod(eighths, 8)
    return "█" * full + (BAR_EIGHTHS[part] if part else "")


def shade_levels(counts: Sequence[Sequence[float]]) -> list[list[int]]:
    """The shade level (0 empty, 1..4) of every cell of ``counts[column][row]``, by rank.

    Rank normalisation, the appliance's default: a non-empty cell's level is
    ``ceil(4 * r / n)`` where ``r`` is the rank of its count among the ``n`` distinct non-empty
    counts, so structure shows at every level rather than only where the mass is. Equal
    counts share a level and the largest count always gets the darkest shade.
    """
    distinct = sorted({c for column in counts for c in column if _finite(c) and c > 0})
    n = len(distinct)
    return [
        [
            math.ceil(4 * bisect_right(distinct, c) / n) if _finite(c) and c > 0 else 0
            for c in column
        ]
        for column in counts
    ]


def heatmap_lines(
    heatmap: Mapping[str, Any], unit: Type = NUMBER, label_every: int = 5
) -> list[str]:
    """A heatmap answer (``format=json``) as text: one line per y bucket, highest first.

    Each line is a right-aligned label (the upper edge of its bucket, on every
    ``label_every``-th line from the top), ``┤`` or ``│``, then one shade per time column.
    The last lines are the time axis, labelled with ``ymin`` and the first and last times.
    """
    counts = heatmap.get("counts") or []
    nbuckets = int(heatmap.get("nbuckets") or max((len(c) for c in counts), default=0))
    ymin = float(heatmap.get("ymin") or 0)
    ymax = float(heatmap.get("ymax") or 0)
    step = (ymax - ymin) / nbuckets if nbuckets else 0.0
    levels = shade_levels(counts)
    labels = [
        format_value(ymin + (row + 1) * step, unit)
        if (nbuckets - 1 - row) % label_every == 0 else ""
        for row in range(nbuckets)
    ]
    width = max([len(s) for s in labels] + [len(format_value(ymin, unit))])
    lines = []
    for row in range(nbuckets - 1, -1, -1):
        cells = "".join(SHADES[col[row]] if row < len(col) else " " for col in levels)
        tick = "┤" if labels[row] else "│"
        lines.append(f"{labels[row]:>{width}}{tick}{cells}")
    lines.append(f"{format_value(ymin, unit):>{width}}└" + "─" * len(counts))
    times = heatmap.get("times") or []
    if times:
        first, last = format_time(times[0]), format_time(times[-1])
        gap = max(1, len(counts) - len(first) - len(last))
        lines.append(" " * (width + 1) + first + " " * gap + last)
    return lines


def top_keys(values: Sequence[Any], k: int, weight: Callable[[Any], float]) -> list[str]:
    """The ``k`` keys with the largest total ``weight`` over breakdowns ``values`` ({key: v})."""
    totals: dict[str, float] = {}
    for value in values:
        if isinstance(value, Mapping):
            for key, v in value.items():
                totals[key] = totals.get(key, 0.0) + weight(v)
    return sorted(totals, key=lambda key: (-totals[key], key))[:k]


def histogram_count(h: Any) -> float:
    """The ``count`` of a histogram object (0 for anything else)."""
    return float(h.get("count") or 0) if isinstance(h, Mapping) else 0.0


def histogram_stats(value: Any, shape: str) -> tuple[float, float | None]:
    """``(count, average)`` of a histogram value (all keys together for a breakdown).

    The average is ``sum / count``, exact because histograms keep their sum exactly.
    """
    hists = list(value.values()) if shape == DISCRETE_HISTOGRAM and isinstance(value, Mapping) \
        else [value]
    count = sum(histogram_count(h) for h in hists)
    total = sum(float(h.get("sum") or 0) for h in hists if isinstance(h, Mapping))
    return count, (total / count if count else None)


def quantile_label(q: float) -> str:
    """``0.5`` -> ``p50``, ``0.999`` -> ``p99.9``."""
    return f"p{q * 100:g}"


def quantile_values(point: Mapping[str, Any] | None) -> dict[float, Any]:
    """``{q: value}`` of a percentiles point, whatever spelling the keys have (``"0.5"``)."""
    found: dict[float, Any] = {}
    if point and isinstance(point.get("percentiles"), Mapping):
        for key, v in point["percentiles"].items():
            try:
                found[float(key)] = v
            except ValueError:
                continue
    return found


def sources(point: Mapping[str, Any]) -> str:
    """``nsources/expected`` of a point, e.g. ``3/3``."""
    n, expected = point.get("nsources"), point.get("expected")
    if n is None:
        return "-"
    return f"{n}/{expected}" if expected is not None else str(n)


def value_table(
    inst: Mapping[str, Any],
    points: Sequence[Mapping[str, Any]],
    percentiles: Sequence[Mapping[str, Any]] = (),
    *,
    field_unit: Type = NUMBER,
    top: int = 5,
) -> tuple[list[str], list[list[str]]]:
    """Column headers and rows (strings) of ``fleetscope value``, one row per point.

    scalar: time, value; breakdown: time, one column per top key (by total over the points),
    ``(rest)`` for the sum of the others; histogram: time, count, average and percentiles
    (joined from the percentiles answer by ``start_time``), for a breakdown of histograms over
    all keys together. Every table ends with ``sources`` (nsources/expected).
    """
    shape = inst.get("shape", SCALAR)
    unit = unit_type(inst.get("unit"))
    granularity = int(inst.get("granularity") or 1)
    values = [p.get("value") for p in points]
    headers = ["time"]
    cells: list[list[str]] = [[format_time(p.get("start_time"), granularity)] for p in points]

    if shape == SCALAR:
        headers.append("value")
        for row, v in zip(cells, values, strict=True):
            row.append(format_value(v, unit))
    elif shape == DISCRETE:
        keys = top_keys(values, top, lambda v: float(v) if _finite(v) else 0.0)
        all_keys = set().union(*(v for v in values if isinstance(v, Mapping)))
        headers += keys
        rest = len(all_keys) > len(keys)
        if rest:
            headers.append("(rest)")
        for row, v in zip(cells, values, strict=True):
            v = v if isinstance(v, Mapping) else {}
            row += [format_value(v.get(k, 0), unit) for k in keys]
            if rest:
                others = sum(x for key, x in v.items() if key not in keys and _finite(x))
                row.append(format_value(others, unit))
    elif shape in DISTRIBUTIONS:
        by_time = {p.get("start_time"): quantile_values(p) for p in percentiles}
        headers += ["count", "average", *map(quantile_label, QUANTILES)]
        for row, point, v in zip(cells, points, values, strict=True):
            count, average = histogram_stats(v, shape)
            qs = by_time.get(point.get("start_time"), {})
            row += [format_value(count, unit), format_value(average, field_unit)]
            row += [format_value(qs.get(q), field_unit) for q in QUANTILES]
    else:
        headers.append("value")
        for row, v in zip(cells, values, strict=True):
            row.append(json.dumps(v))

    headers.append("sources")
    for row, point in zip(cells, points, strict=True):
        row.append(sources(point))
    return headers, cells


def _last(points: Sequence[dict]) -> dict | None:
    return points[-1] if points else None


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


# --------------------------------------------------------------------------- rich renderers


def _console() -> Console:
    # No syntax highlighting: numbers in tables would change colour for no reason.
    return Console(highlight=False)


def _print_json(obj: Any) -> None:
    # Plain text, not rich: JSON is for programs, and must not be wrapped or coloured.
    typer.echo(json.dumps(obj, indent=2))


def metrics_table(metrics: Sequence[Mapping[str, Any]]) -> Table:
    """The metric catalogue, one section per module, discrete and numeric fields apart."""
    table = Table(title="metrics", title_justify="left")
    table.add_column("metric", no_wrap=True, style="bold")
    table.add_column("label")
    table.add_column("kind", no_wrap=True)
    table.add_column("unit", no_wrap=True)
    table.add_column("discrete fields")
    table.add_column("numeric fields")
    previous = None
    for metric in sorted(metrics, key=lambda m: (str(m.get("module")), str(m.get("name")))):
        module = str(metric.get("module", ""))
        if previous is not None and module != previous:
            table.add_section()
        previous = module
        fields = [f for f in metric.get("fields") or () if isinstance(f, Mapping)]
        table.add_row(
            str(metric.get("name") or f"{module}.{metric.get('stat')}"),
            str(metric.get("label", "")),
            str(metric.get("kind", "")),
            unit_type(metric.get("unit")).name,
            ", ".join(str(f.get("name")) for f in fields if f.get("kind") == "discrete") or "-",
            ", ".join(
                f"{f.get('name')} ({unit_type(f.get('type')).name})"
                for f in fields if f.get("kind") == "numeric"
            ) or "-",
        )
    return table


def instrumentation_table(inst: Mapping[str, Any]) -> Table:
    """One instrumentation as key/value rows, the known fields first, then any others."""
    table = Table(show_header=False, box=None, padding=(0, 2, 0, 0))
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    rows = {
        "id": str(inst.get("id")),
        "metric": metric_name(inst),
        "decomposition": ", ".join(map(str, inst.get("decomposition") or ())) or "-",
        "predicate": inst.get("predicate_text") or "-",
        "shape": str(inst.get("shape", "-")),
        "kind": str(inst.get("kind", "-")),
        "unit": unit_type(inst["unit"]).name if inst.get("unit") else "-",
        "granularity": format_duration(inst.get("granularity")),
        "retention": format_duration(inst.get("retention")),
        "idle_max": format_idle_max(inst.get("idle_max")),
        "persist": _yes_no(inst.get("persist")),
        "created": _timestamp(inst.get("created")),
    }
    shown = {*rows, "module", "stat", "predicate_text", "predicate"}
    for key, text in rows.items():
        table.add_row(key, text)
    for key, v in inst.items():
        if key not in shown and v is not None:
            table.add_row(key, v if isinstance(v, str) else json.dumps(v))
    return table


def instrumentations_table(insts: Sequence[Mapping[str, Any]]) -> Table:
    """One row per instrumentation; the creation time is left to ``inst show``."""
    table = Table()
    table.add_column("id", justify="right", no_wrap=True)
    table.add_column("metric", no_wrap=True)
    table.add_column("by", no_wrap=True)
    table.add_column("where", overflow="fold", ratio=1, min_width=8)
    table.add_column("gran/retention/idle", no_wrap=True)
    table.add_column("persist", no_wrap=True)
    for inst in sorted(insts, key=lambda i: i.get("id") or 0):
        table.add_row(
            str(inst.get("id")),
            metric_name(inst),
            ", ".join(map(str, inst.get("decomposition") or ())) or "-",
            inst.get("predicate_text") or "-",
            " / ".join((format_duration(inst.get("granularity")), format_duration(inst.get("retention")),
                        format_idle_max(inst.get("idle_max")))),
            _yes_no(inst.get("persist")),
        )
    return table


def _yes_no(v: Any) -> str:
    return "-" if v is None else ("yes" if v else "no")


def _timestamp(t: Any, pattern: str = "%Y-%m-%d %H:%M:%S") -> str:
    if isinstance(t, int | float) and not isinstance(t, bool):
        return time.strftime(pattern, time.localtime(t))
    return "-" if t is None else str(t)


def rows_table(headers: Sequence[str], rows: Sequence[Sequence[str]], title: str) -> Table:
    """A table of :func:`value_table`'s output; the time column is never shortened."""
    table = Table(title=title, title_justify="left")
    time_width = max([len(headers[0]), *(len(row[0]) for row in rows)])
    table.add_column(headers[0], no_wrap=True, min_width=time_width)
    for name in headers[1:]:
        table.add_column(name, justify="right", no_wrap=True)
    for row in rows:
        table.add_row(*row)
    return table


def scalar_view(inst: Mapping[str, Any], points: Sequence[Mapping[str, Any]]) -> RenderableType:
    """Current value, sparkline of the window and its range."""
    unit = unit_type(inst.get("unit"))
    values = [p.get("value") if _finite(p.get("value")) else None for p in points]
    latest = next((p for p in reversed(points) if _finite(p.get("value"))), None)
    known = [v for v in values if v is not None]
    text = Text()
    if latest is None:
        text.append("no data yet\n")
    else:
        text.append(format_value(latest["value"], unit), style="bold")
        text.append(f"  at {format_time(latest.get('start_time'))}  sources {sources(latest)}\n")
    text.append(sparkline(values) + "\n", style="cyan")
    if known:
        text.append(
            f"min {format_value(min(known), unit)}  max {format_value(max(known), unit)}"
            f"  over {len(points)} points"
        )
    return text


def breakdown_view(
    inst: Mapping[str, Any], point: Mapping[str, Any] | None, top: int = 10, width: int = 40
) -> RenderableType:
    """The keys of the latest point, largest first, with bars; the rest summed on one line."""
    unit = unit_type(inst.get("unit"))
    value = point.get("value") if point else None
    if not isinstance(value, Mapping) or not value:
        return Text("no data yet")
    # Keys at zero this second (idle processes, unused modes) would crowd out the ones that
    # matter; they are left out, and the rest of the non-zero keys summed on one line.
    items = sorted(
        ((str(k), float(v)) for k, v in value.items() if _finite(v) and v != 0),
        key=lambda kv: (-kv[1], kv[0]),
    )
    caption = Text(f"at {format_time(point.get('start_time'))}  sources {sources(point)}")
    if not items:
        return Group(Text(f"all {len(value)} keys are zero"), caption)
    peak = items[0][1]
    table = Table(box=None, show_header=False, padding=(0, 1, 0, 0))
    table.add_column(no_wrap=True)
    table.add_column(justify="right", no_wrap=True)
    table.add_column(style="cyan", no_wrap=True)
    for key, v in items[:top]:
        table.add_row(key, format_value(v, unit), bar(v, peak, width))
    if len(items) > top:
        rest = sum(v for _, v in items[top:])
        table.add_row(f"({len(items) - top} more)", format_value(rest, unit), "")
    return Group(table, caption)


def distribution_view(
    heatmap: Mapping[str, Any], percentiles: Mapping[str, Any] | None, field_unit: Type
) -> RenderableType:
    """Text heatmap of the window, then the latest point's percentiles."""
    # The heatmap may name its y unit itself; it is the same as the numeric field's.
    axis_unit = unit_type(heatmap["unit"]) if heatmap.get("unit") else field_unit
    lines = heatmap_lines(heatmap, axis_unit)
    qs = quantile_values(percentiles)
    summary = "  ".join(
        f"{quantile_label(q)} {format_value(qs.get(q), field_unit)}" for q in QUANTILES
    )
    if percentiles:
        summary += f"  at {format_time(percentiles.get('start_time'))}"
    return Group(Text("\n".join(lines)), Text(summary, style="bold"))


# --------------------------------------------------------------------------- commands

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
Retention = Annotated[
    str | None,
    typer.Option(help="How long per-second data is kept in memory: 600, 10m, 1h.",
                 show_default=False),
]
IdleMax = Annotated[
    str | None,
    typer.Option("--idle-max", help="Expire after this long unused: 1h, 7d.",
                 show_default=False),
]
Persist = Annotated[
    bool | None,
    typer.Option("--persist/--no-persist", help="Keep history in the store.", show_default=False),
]


def metrics(url: Url = DEFAULT_URL, as_json: AsJson = False) -> None:
    """List the metrics the fleet can answer about, with their fields."""
    with reporting_errors(url), Api(url) as api:
        found = api.metrics()
        if as_json:
            _print_json({"metrics": found})
        else:
            _console().print(metrics_table(found))


def hosts_table(hosts: Sequence[Mapping[str, Any]]) -> Table:
    """One row per agent: status, last report, version, clock offset, buffered batches (and those
    dropped), instrumentations, warnings."""
    table = Table()
    for name, justify in (("host", "left"), ("status", "left"), ("last report", "left"),
                          ("version", "left"), ("clock offset", "right"), ("buffered", "right"),
                          ("instrumentations", "left"), ("warnings", "left")):
        table.add_column(name, justify=justify, overflow="fold")
    for h in hosts:
        warnings = "; ".join(f"{k}: {v}" for k, v in (h.get("warnings") or {}).items()) or "-"
        table.add_row(
            str(h.get("hostname")),
            str(h.get("status")),
            format_time(h.get("last_report")),
            str(h.get("version", "-")),
            f"{h['clock_offset']:+.3f} s" if isinstance(h.get("clock_offset"), int | float) else "-",
            _buffered(h.get("buffer") or {}),
            ", ".join(map(str, h.get("instrumentations") or ())) or "-",
            warnings,
        )
    return table


def _buffered(buffer: Mapping[str, int]) -> str:
    """Batches waiting in an agent's outbox, and what it had to drop (overflow, over size)."""
    text = str(buffer.get("queued", "-"))
    lost = {k: buffer.get(k, 0) for k in ("dropped", "oversized") if buffer.get(k)}
    return text + "".join(f", {n} {k}" for k, n in lost.items())


def hosts(url: Url = DEFAULT_URL, as_json: AsJson = False) -> None:
    """List the agents: online, stale or gone, with what they run and their warnings."""
    with reporting_errors(url), Api(url) as api:
        found = api.hosts()
        if as_json:
            _print_json({"hosts": found})
        else:
            _console().print(hosts_table(found))


def _settings(retention: str | None, idle_max: str | None, persist: bool | None) -> dict:
    """The retention/idle_max/persist members of a request body, durations in seconds."""
    body: dict[str, Any] = {}
    if retention is not None:
        body["retention"] = parse_duration(retention, "retention")
    if idle_max is not None:
        body["idle_max"] = parse_duration(idle_max, "idle_max")
    if persist is not None:
        body["persist"] = persist
    return body


def inst_create(
    metric: Annotated[str, typer.Argument(help="module.stat, e.g. proc.cpu.", show_default=False)],
    by: Annotated[
        list[str] | None,
        typer.Option("--by", help="Field to break down by (repeat: one discrete, one numeric).",
                     show_default=False),
    ] = None,
    where: Annotated[
        str | None,
        typer.Option(help='Predicate, e.g. \'execname != "idle" and latency > 10ms\' or JSON.',
                     show_default=False),
    ] = None,
    granularity: Annotated[
        int | None, typer.Option(help="Seconds per data point (server default 1).",
                                 show_default=False)
    ] = None,
    retention: Retention = None,
    idle_max: IdleMax = None,
    persist: Persist = None,
    url: Url = DEFAULT_URL,
    as_json: AsJson = False,
) -> None:
    """Switch a question on: create an instrumentation and print its id."""
    with reporting_errors(url):
        module, stat = split_metric(metric)
        body: dict[str, Any] = {"module": module, "stat": stat, "decomposition": list(by or ())}
        if where is not None:
            body["predicate"] = predicate_arg(where)
        if granularity is not None:
            body["granularity"] = granularity
        body.update(_settings(retention, idle_max, persist))
        with Api(url) as api:
            inst = api.create(body)
        if as_json:
            _print_json(inst)
            return
        console = _console()
        console.print(f"created instrumentation {inst.get('id')}: {describe(inst)}")
        console.print(instrumentation_table(inst))


def inst_list(url: Url = DEFAULT_URL, as_json: AsJson = False) -> None:
    """List the instrumentations."""
    with reporting_errors(url), Api(url) as api:
        insts = api.instrumentations()
        if as_json:
            _print_json({"instrumentations": insts})
        elif not insts:
            typer.echo("no instrumentations")
        else:
            _console().print(instrumentations_table(insts))


def inst_show(inst_id: InstId, url: Url = DEFAULT_URL, as_json: AsJson = False) -> None:
    """Show one instrumentation."""
    with reporting_errors(url), Api(url) as api:
        inst = api.instrumentation(inst_id)
        if as_json:
            _print_json(inst)
        else:
            _console().print(instrumentation_table(inst))


def inst_update(
    ctx: typer.Context,
    inst_id: InstId,
    retention: Retention = None,
    idle_max: IdleMax = None,
    persist: Persist = None,
    url: Url = DEFAULT_URL,
    as_json: AsJson = False,
) -> None:
    """Change the retention, idle expiry or persistence of an instrumentation."""
    if retention is None and idle_max is None and persist is None:
        ctx.fail("nothing to update: give --retention, --idle-max or --persist/--no-persist")
    with reporting_errors(url):
        body = _settings(retention, idle_max, persist)
        with Api(url) as api:
            inst = api.update(inst_id, body)
        if as_json:
            _print_json(inst)
            return
        console = _console()
        console.print(f"updated instrumentation {inst.get('id', inst_id)}")
        console.print(instrumentation_table(inst))


def inst_delete(inst_id: InstId, url: Url = DEFAULT_URL) -> None:
    """Delete an instrumentation (its history too)."""
    with reporting_errors(url), Api(url) as api:
        api.delete(inst_id)
        typer.echo(f"deleted instrumentation {inst_id}")


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
        with Api(url) as api:
            inst = api.instrumentation(inst_id)
            granularity = int(inst.get("granularity") or 1)
            now = time.time()
            start, npoints = since_window(seconds, granularity, now)
            window: dict[str, int] = {"start_time": start, "ndatapoints": npoints}
            if npoints > MAX_ROWS:  # a long look back: the server picks coarser points (history tiers)
                window = {"start_time": start, "end_time": int(now), "ndatapoints": MAX_ROWS}
            answer = api.values(inst_id, **window)
            if as_json:
                _print_json(answer)
                return
            percentiles: list[dict] = []
            field_unit = Type()
            if inst.get("shape") in DISTRIBUTIONS:
                percentiles = as_points(api.percentiles(inst_id, QUANTILES, **window))
                field_unit = numeric_field_type(api.metrics(), inst)
        headers, rows = value_table(inst, as_points(answer), percentiles, field_unit=field_unit)
        title = f"instrumentation {inst_id}: {describe(inst)}"
        _console().print(rows_table(headers, rows, title))


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
    with reporting_errors(url), Api(url) as api:
        inst = api.instrumentation(inst_id)
        frame = _frame_source(api, inst)
        console = _console()
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
            return breakdown_view(inst, _last(as_points(api.values(inst_id))))
        heatmap = api.heatmap(inst_id, duration=60, nbuckets=20)
        percentiles = _last(as_points(api.percentiles(inst_id, QUANTILES)))
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


# --------------------------------------------------------------------------- history

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
        params = {k: v for k, v in {"since": since, "format": fmt, "step": step}.items() if v is not None}
        target = f"{url.rstrip('/')}{API_PREFIX}/instrumentations/{inst_id}/export"
        # Streamed: an export of weeks of per-second data never sits in memory whole.
        with httpx.stream("GET", target, params=params, timeout=httpx.Timeout(10.0, read=None)) as response:
            if response.is_error:
                response.read()
                raise error_from_response(response)
            with open(output or "/dev/stdout", "w", encoding="utf-8") as out:
                for text in response.iter_text():
                    out.write(text)


def store_stats(
    url: Url = DEFAULT_URL,
    store: Annotated[str | None, typer.Option("--store", help="Read this store directly "
                                              "(sqlite:///path or postgresql://...) instead of asking "
                                              "a server.", show_default=False)] = None,
    as_json: AsJson = False,
) -> None:
    """Per instrumentation and history tier: points, bytes on disk, bytes per sample, oldest and newest."""
    with reporting_errors(url):
        if store:
            from fleetscope.store.history import History
            from fleetscope.store.open import open_store

            opened = open_store(store)
            try:
                body = History(opened).report()
            finally:
                opened.close()
        else:
            with Api(url) as api:
                body = _expect(api.request("GET", "/store/stats"), dict)
        if as_json:
            _print_json(body)
            return
        _console().print(store_stats_table(body))


def store_stats_table(body: Mapping[str, Any]) -> Table:
    """The table of ``fleetscope store stats`` from the API's answer (fits 80 columns)."""
    from rich import box

    table = Table(title=f"history: {body.get('samples', 0):,} samples, {_bytes(body.get('disk_bytes'))} "
                        f"on disk ({body.get('bytes_per_sample') or '-'} B/sample)", title_justify="left",
                  box=box.SIMPLE_HEAD, collapse_padding=True, pad_edge=False)
    table.add_column("id", justify="right", no_wrap=True)
    table.add_column("metric", ratio=1, min_width=12, overflow="fold")
    for name in ("tier", "points", "bytes", "B/sample", "oldest", "newest"):
        table.add_column(name, justify="left" if name in ("tier", "oldest", "newest") else "right",
                         no_wrap=True)
    for row in body.get("tiers", []):
        metric = row.get("metric") or "(deleted)"
        if row.get("decomposition"):
            metric += " by " + ",".join(row["decomposition"])
        table.add_row(str(row["inst_id"]), metric, row["tier"], f"{row['points']:,}", _bytes(row["bytes"]),
                      f"{row['bytes_per_sample']:.3f}", _timestamp(row["oldest"], "%m-%d %H:%M"),
                      _timestamp(row["newest"], "%m-%d %H:%M"))
    return table


def _bytes(n: Any) -> str:
    if not isinstance(n, int | float):
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def register(app: typer.Typer) -> None:
    """Add the client commands to ``app`` (the ``fleetscope`` Typer app)."""
    app.command("metrics")(metrics)
    app.command("hosts")(hosts)
    inst = typer.Typer(
        help="Create, list, show, update and delete instrumentations.", no_args_is_help=True
    )
    inst.command("create")(inst_create)
    inst.command("list")(inst_list)
    inst.command("show")(inst_show)
    inst.command("update")(inst_update)
    inst.command("delete")(inst_delete)
    app.add_typer(inst, name="inst")
    app.command("value")(value)
    app.command("watch")(watch)
    app.command("export")(export)
    store = typer.Typer(help="The history store.", no_args_is_help=True)
    store.command("stats")(store_stats)
    app.add_typer(store, name="store")
