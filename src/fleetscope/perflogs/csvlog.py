"""CSV files with a time column: load-test summaries, spreadsheets, other tools' exports.

What the columns mean is said by a **mapping** (``fleetscope import csv`` builds it from its
flags, or reads it from a small TOML/JSON file; the API takes it as JSON in the ``mapping``
field)::

    {"time_column": "time",            # required: the column holding each row's time
     "time_format": "%d/%m/%Y %H:%M",  # optional strptime format (default: see below)
     "delimiter": ",",                 # optional, one character
     "metrics": [                      # one or more
       {"metric": "app.latency",       # module.stat: a metric imports know, or a new one
        "columns": ["login", "search"],# the columns it takes (default: every other column)
        "field": "route",              # the field whose value is the column's name
        "fields": {"tool": "locust"},  # fields with one value for every column
        "kind": "point",               # a new metric's kind: point (a level, default) or
                                       #   interval (activity: the figures are per second)
        "unit": "ms",                  # a new metric's unit: number (default), percent,
                                       #   bytes, seconds, ms, us, ns
        "scale": 1.0}]}                # figures are multiplied by it (0.01: percent to share)

A metric imports know (:data:`fleetscope.perflogs.metrics.METRICS`: ``cpu.usage``,
``memory.used``, ``disk.ops``...) keeps its own kind, unit and fields; fields the mapping does
not set are ``all`` (``container`` ``/`` and ``runtime`` ``host``, the host itself, for
``cpu.usage``). A new metric has ``hostname``, ``field`` and the ``fields`` given, all
discrete; its definition is kept with the import (:func:`defined`). Without ``field`` a
metric takes exactly one column.

Times: with ``time_format``, :func:`datetime.strptime` (local times in ``--tz``, unless the
format has ``%z``); without, a number is epoch seconds (milliseconds above 10^11, as JMeter
writes them) and text is ISO 8601 (``2024-03-04 14:00:01``, ``...T14:00:01+01:00``, ``Z``),
local in ``--tz`` (default UTC) unless it has an offset. Fractions of a second are dropped;
times must increase from row to row.

A row covers the interval from its time to the next row's (``--interval`` fixes it instead;
the last row takes the interval before it): a point metric's figure is its level over that
interval, an interval metric's figure a rate per second (multiplied by the interval's
seconds). An empty cell (or ``NaN``) is no value; anything else that is not a number is
refused with the file, line, column and reason, as is a row of the wrong width.

**One event per row** (JMeter's ``.jtl`` CSV, Apache Bench's ``ab -g`` TSV, any request
log): ``events`` instead of ``metrics`` (:mod:`fleetscope.perflogs.csvevents` reads them)::

    {"time_column": "timeStamp",       # each event's time (JMeter: milliseconds)
     "events": {"metric": "jmeter.requests",  # a new interval metric: events per interval
                "value_column": "elapsed",    # each event's figure: a numeric field
                "value_field": "latency",     # its name (default latency)
                "unit": "ms",                 # its unit (default ms)
                "scale": 1.0,
                "columns": {"label": "label", "code": "responseCode"},  # field <- column
                "fields": {"tool": "jmeter"}}}                         # field = value

The events are counted per interval (``--interval``, default 1 s; rows in any order) by
their fields and the value's histogram bucket: an instrumentation counts them (by ``label``,
where ``code == "500"``...) and draws the value's distribution (a heatmap of latency by
label) as it does live requests.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
import re
from collections.abc import Iterator
from typing import IO, NamedTuple

from fleetscope.model.metrics import DISCRETE, INTERVAL, NUMERIC, POINT, Field, Metric, metric
from fleetscope.model.types import (
    BYTES,
    MICROSECONDS,
    MILLISECONDS,
    NANOSECONDS,
    NUMBER,
    PERCENT,
    SECONDS,
    Type,
)
from fleetscope.perflogs.clock import Clock, clock_for
from fleetscope.perflogs.errors import LogError
from fleetscope.perflogs.metrics import ALL, BY_NAME, COLUMNS, HOST_CONTAINER, HOST_RUNTIME
from fleetscope.perflogs.sink import Column, Options, Sink

UNITS: dict[str, Type] = {"number": NUMBER, "percent": PERCENT, "bytes": BYTES, "seconds": SECONDS,
                          "ms": MILLISECONDS, "us": MICROSECONDS, "ns": NANOSECONDS}
DEFAULT_FIELDS = {"container": HOST_CONTAINER, "runtime": HOST_RUNTIME}  # else ALL
MILLIS_ABOVE = 1e11  # epoch seconds reach 10^11 in the year 5138; milliseconds did in 1973
MAX_METRICS = 64
MAX_EVENT_FIELDS = 8
_METRIC_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}\.[a-z][a-z0-9_]{0,63}")
_FIELD_NAME = re.compile(r"[a-z_][a-z0-9_]{0,63}")
_KEYS = {"time_column", "time_format", "delimiter", "metrics", "events"}
_METRIC_KEYS = {"metric", "columns", "field", "fields", "kind", "unit", "scale"}
_EVENT_KEYS = {"metric", "value_column", "value_field", "unit", "scale", "columns", "fields"}
EVENT_UNIT = "ms"  # load-testing tools give latencies in milliseconds
EVENT_FIELD = "latency"


class Target(NamedTuple):
    """One metric of a mapping, checked."""

    metric: str
    columns: tuple[str, ...] | None  # None: every column but the time and the other targets'
    field: str | None
    fields: dict[str, str]
    kind: str
    unit: str
    scale: float


class Events(NamedTuple):
    """A mapping's ``events``, checked: one row is one event of ``metric``."""

    metric: str
    value_column: str
    value_field: str
    unit: str
    scale: float
    columns: dict[str, str]  # field -> the column holding its value
    fields: dict[str, str]  # field -> its one value

    def field_names(self) -> tuple[str, ...]:
        """The metric's fields without hostname, in the order an event's key holds them: the
        columns', the constant ones, the value's."""
        return (*self.columns, *sorted(self.fields), self.value_field)


class Mapping(NamedTuple):
    time_column: str
    time_format: str | None
    delimiter: str
    targets: tuple[Target, ...]
    events: Events | None = None


def check(obj: object) -> Mapping:
    """The mapping ``obj`` (see the module docstring) checked; ValueError naming the key."""
    if not isinstance(obj, dict):
        raise ValueError("mapping: must be an object with time_column and metrics")
    unknown = set(obj) - _KEYS
    if unknown:
        raise ValueError(f"mapping: unknown key(s) {', '.join(sorted(unknown))} "
                         f"(keys: {', '.join(sorted(_KEYS))})")
    time_column = obj.get("time_column")
    if not isinstance(time_column, str) or not time_column:
        raise ValueError("mapping.time_column: the name of the column holding the times is required")
    fmt = obj.get("time_format")
    if fmt is not None and (not isinstance(fmt, str) or "%" not in fmt):
        raise ValueError("mapping.time_format: must be a strptime format such as '%Y-%m-%d %H:%M:%S'")
    delimiter = obj.get("delimiter", ",")
    if not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter in "\r\n\"":
        raise ValueError("mapping.delimiter: must be one character (not a quote or a newline)")
    if "events" in obj:
        if "metrics" in obj:
            raise ValueError("mapping: give metrics (columns of figures) or events (one event per row), "
                             "not both")
        return Mapping(time_column, fmt, delimiter, (), _events(obj["events"], time_column))
    metrics = obj.get("metrics")
    if not isinstance(metrics, list) or not 1 <= len(metrics) <= MAX_METRICS:
        raise ValueError(f"mapping.metrics: must be a list of 1 to {MAX_METRICS} metrics "
                         "(or events: one event per row)")
    targets = tuple(_target(m, f"mapping.metrics[{i}]") for i, m in enumerate(metrics))
    if sum(t.columns is None for t in targets) > 1:
        raise ValueError("mapping.metrics: at most one metric may take 'every other column' (no columns)")
    return Mapping(time_column, fmt, delimiter, targets)


def _target(m: object, where: str) -> Target:
    if not isinstance(m, dict):
        raise ValueError(f"{where}: must be an object with a metric")
    unknown = set(m) - _METRIC_KEYS
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    name = m.get("metric")
    if not isinstance(name, str) or not _METRIC_NAME.fullmatch(name):
        raise ValueError(f"{where}.metric: must be module.stat (lower case letters, digits, _)")
    columns = m.get("columns")
    if columns is not None and (not isinstance(columns, list) or not columns
                                or not all(isinstance(c, str) and c for c in columns)):
        raise ValueError(f"{where}.columns: must be a list of column names")
    field = m.get("field")
    if field is not None and (not isinstance(field, str) or not _FIELD_NAME.fullmatch(field)):
        raise ValueError(f"{where}.field: must be a field name (lower case letters, digits, _)")
    fields = m.get("fields", {})
    if not isinstance(fields, dict) or not all(isinstance(k, str) and _FIELD_NAME.fullmatch(k)
                                               and isinstance(v, str) for k, v in fields.items()):
        raise ValueError(f"{where}.fields: must map field names to text values")
    if field in fields or "hostname" in fields or field == "hostname":
        raise ValueError(f"{where}: hostname is the import's host, and a field is set once")
    known = BY_NAME.get(name)
    kind, unit = m.get("kind"), m.get("unit")
    if known is not None:
        names = COLUMNS[name]
        for f in [field, *fields] if field else list(fields):
            if f not in names:
                raise ValueError(f"{where}: {name} has no field {f!r} (fields: {', '.join(names)})")
        if kind not in (None, known.kind) or unit is not None:
            raise ValueError(f"{where}: {name} is {known.kind} in {known.unit.to_json()}: its kind and "
                             "unit are not set by a mapping (use scale)")
        kind = known.kind
    else:
        kind = kind or POINT
        if kind not in (POINT, INTERVAL):
            raise ValueError(f"{where}.kind: must be point (a level) or interval (a rate per second)")
        unit = unit or "number"
        if unit not in UNITS:
            raise ValueError(f"{where}.unit: must be one of {', '.join(UNITS)}")
    if field is None and columns is not None and len(columns) != 1:
        raise ValueError(f"{where}: several columns need a field their names become (field)")
    scale = m.get("scale", 1.0)
    if isinstance(scale, bool) or not isinstance(scale, int | float) or not math.isfinite(scale):
        raise ValueError(f"{where}.scale: must be a number")
    return Target(name, None if columns is None else tuple(columns), field, dict(fields), kind,
                  unit or "", float(scale))


def _events(e: object, time_column: str) -> Events:
    where = "mapping.events"
    if not isinstance(e, dict):
        raise ValueError(f"{where}: must be an object with a metric and a value_column")
    unknown = set(e) - _EVENT_KEYS
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} "
                         f"(keys: {', '.join(sorted(_EVENT_KEYS))})")
    name = e.get("metric")
    if not isinstance(name, str) or not _METRIC_NAME.fullmatch(name):
        raise ValueError(f"{where}.metric: must be module.stat (lower case letters, digits, _)")
    if name in BY_NAME:
        raise ValueError(f"{where}.metric: {name} is a metric of host logs; events make a metric of "
                         "their own (e.g. jmeter.requests)")
    value_column = e.get("value_column")
    if not isinstance(value_column, str) or not value_column:
        raise ValueError(f"{where}.value_column: the column holding each event's figure (JMeter: "
                         "elapsed; ab -g: ttime) is required")
    if value_column == time_column:
        raise ValueError(f"{where}.value_column: the time column cannot be the value too")
    value_field = e.get("value_field", EVENT_FIELD)
    unit = e.get("unit", EVENT_UNIT)
    if unit not in UNITS:
        raise ValueError(f"{where}.unit: must be one of {', '.join(UNITS)}")
    scale = e.get("scale", 1.0)
    if isinstance(scale, bool) or not isinstance(scale, int | float) or not math.isfinite(scale) \
            or scale <= 0:
        raise ValueError(f"{where}.scale: must be a positive number")
    columns, fields = e.get("columns", {}), e.get("fields", {})
    for key, obj in (("columns", columns), ("fields", fields)):
        if not isinstance(obj, dict) or not all(isinstance(k, str) and _FIELD_NAME.fullmatch(k)
                                                and isinstance(v, str) and v for k, v in obj.items()):
            raise ValueError(f"{where}.{key}: must map field names (lower case letters, digits, _) to "
                             + ("column names" if key == "columns" else "text values"))
    if len(columns) + len(fields) > MAX_EVENT_FIELDS:
        raise ValueError(f"{where}: at most {MAX_EVENT_FIELDS} fields")
    if not isinstance(value_field, str) or not _FIELD_NAME.fullmatch(value_field):
        raise ValueError(f"{where}.value_field: must be a field name (lower case letters, digits, _)")
    names = [*columns, *fields, value_field]
    if "hostname" in names or len(set(names)) != len(names):
        raise ValueError(f"{where}: hostname is the import's host, and a field is set once "
                         f"(fields: {', '.join(names)})")
    if time_column in columns.values():
        raise ValueError(f"{where}.columns: the time column cannot be a field too")
    return Events(name, value_column, value_field, unit, float(scale), dict(columns), dict(fields))


def _events_metric(e: Events) -> Metric:
    module, stat = e.metric.split(".")
    discrete = [Field(n, DISCRETE, n) for n in e.field_names()[:-1]]
    value = Field(e.value_field, NUMERIC, e.value_field, UNITS[e.unit])
    return metric(module, stat, f"{e.metric}: events (imported CSV)", NUMBER, INTERVAL, *discrete, value)


def defined(mapping: Mapping) -> list[Metric]:
    """The new metrics ``mapping`` defines (the ones imports do not know already)."""
    if mapping.events is not None:
        return [_events_metric(mapping.events)]
    out: dict[str, Metric] = {}
    for t in mapping.targets:
        if t.metric in BY_NAME:
            continue
        module, stat = t.metric.split(".")
        names = ([t.field] if t.field else []) + sorted(t.fields)
        fields = [Field(n, DISCRETE, n) for n in names]
        m = metric(module, stat, f"{t.metric} (imported CSV)", UNITS[t.unit], t.kind, *fields)
        old = out.get(t.metric)
        if old is not None and (old.kind, old.unit, old.fields) != (m.kind, m.unit, m.fields):
            raise ValueError(f"mapping: {t.metric} is given twice with different kinds, units or fields")
        out[t.metric] = m
    return list(out.values())


def columns_of(m: Metric) -> tuple[str, ...]:
    """The fields (without hostname) in the order an import's keys hold them."""
    return tuple(f.name for f in m.fields[1:])


class _Plan(NamedTuple):
    """What a file's header makes of the mapping: the time's index and, per value column,
    its index, Column, factor and whether it is per second."""

    time: int
    take: tuple[int, ...]
    names: tuple[str, ...]  # the value columns' names, for errors
    layout: tuple[Column, ...]
    factor: tuple[float, ...]
    per: tuple[bool, ...]


def _plan(mapping: Mapping, header: list[str], name: str, lineno: int) -> _Plan:
    def fail(reason: str) -> LogError:
        return LogError(name, lineno, reason)

    index = header_index(header)
    if mapping.time_column not in index:
        raise fail(f"no time column {mapping.time_column!r} in the header (columns: "
                   f"{', '.join(h.strip() for h in header)[:200]})")
    explicit = {c for t in mapping.targets for c in t.columns or ()}
    take, names_taken, layout, factor, per = [], [], [], [], []
    for t in mapping.targets:
        cols = t.columns if t.columns is not None else tuple(
            h.strip() for h in header if h.strip() not in explicit and h.strip() != mapping.time_column)
        if t.columns is None and t.field is None and len(cols) != 1:
            raise fail(f"{t.metric} takes every other column ({len(cols)}): name the field their names "
                       "become, or the one column")
        names = COLUMNS.get(t.metric) or tuple(([t.field] if t.field else []) + sorted(t.fields))
        for c in cols:
            if c not in index:
                raise fail(f"no column {c!r} in the header")
            if c == mapping.time_column:
                raise fail(f"the time column {c!r} cannot be a value of {t.metric}")
            values = {**t.fields, **({t.field: c} if t.field else {})}
            key = tuple(values.get(f, DEFAULT_FIELDS.get(f, ALL)) for f in names)
            take.append(index[c])
            names_taken.append(c)
            layout.append(Column(t.metric, key))
            factor.append(t.scale)
            per.append(t.kind == INTERVAL)
    if not layout:
        raise fail("no value columns: the mapping takes none of the file's columns")
    return _Plan(index[mapping.time_column], tuple(take), tuple(names_taken), tuple(layout), tuple(factor),
                 tuple(per))


def header_index(header: list[str]) -> dict[str, int]:
    """Column name -> its index (the first of a repeated name)."""
    index: dict[str, int] = {}
    for i, h in enumerate(header):
        index.setdefault(h.strip(), i)
    return index


def width_error(name: str, lineno: int, width: int, found: int) -> LogError:
    return LogError(name, lineno, f"expected {width} columns as the header, found {found}"
                    + (" (truncated?)" if found < width else ""))


class Times:
    """Epoch seconds of a file's time cells."""

    def __init__(self, fmt: str | None, clock: Clock) -> None:
        self.fmt = fmt
        self.clock = clock

    def of(self, cell: str, mapping: Mapping, name: str, lineno: int) -> int:
        """The time in ``cell``; LogError naming the line and the column otherwise."""
        try:
            return self(cell)
        except (ValueError, OverflowError):
            raise LogError(name, lineno, f"column {mapping.time_column!r}: not a time: {cell[:40]!r}"
                           + (f" (format {mapping.time_format!r})" if mapping.time_format else
                              " (epoch seconds or ISO 8601; else give a time_format)")) from None

    def __call__(self, text: str) -> int:
        text = text.strip()
        if self.fmt is None:
            try:
                x = float(text)
            except ValueError:
                moment = dt.datetime.fromisoformat(text)
            else:
                if not math.isfinite(x):
                    raise ValueError("not a time")
                return int(x / 1000.0 if x >= MILLIS_ABOVE else x)
        else:
            moment = dt.datetime.strptime(text, self.fmt)
        if moment.tzinfo is not None:
            return int(moment.timestamp())
        return self.clock.epoch(moment.year, moment.month, moment.day, moment.hour, moment.minute,
                                moment.second)


def checked(opts: Options, name: str) -> Mapping:
    """``opts.mapping`` checked; LogError naming the file otherwise."""
    try:
        return check(opts.mapping)
    except ValueError as exc:
        raise LogError(name, None, str(exc)) from None


def is_events(mapping: object) -> bool:
    """Whether ``mapping`` (as given) describes one event per row."""
    return isinstance(mapping, dict) and "events" in mapping


def parse(stream: IO[bytes], name: str, opts: Options, sink: Sink) -> Clock:
    """Read a CSV file from ``stream`` into ``sink`` as ``opts.mapping`` says."""
    mapping = checked(opts, name)
    clock = clock_for(opts.tz, name)
    times = Times(mapping.time_format, clock)
    reader = csv.reader(text_lines(stream, name), delimiter=mapping.delimiter, strict=True)
    plan: _Plan | None = None
    width = 0
    held: tuple[int, list[float]] | None = None  # the row waiting for the next one's time
    last_interval = opts.interval
    lineno = 0
    try:
        for row in reader:
            lineno = reader.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if plan is None:
                plan, width = _plan(mapping, row, name, lineno), len(row)
                continue
            if len(row) != width:
                raise width_error(name, lineno, width, len(row))
            t = times.of(row[plan.time], mapping, name, lineno)
            figures = []
            for j, i in enumerate(plan.take):
                text = row[i].strip()
                if not text:
                    figures.append(math.nan)
                    continue
                try:
                    x = float(text)
                except ValueError:
                    raise LogError(name, lineno,
                                   f"column {plan.names[j]!r}: not a number: {text[:40]!r}") from None
                figures.append(x if math.isfinite(x) else math.nan)
            if held is not None:
                if t <= held[0]:
                    raise LogError(name, lineno, "the time does not increase (the rows must be in time "
                                   "order, at least a second apart)")
                interval = opts.interval or t - held[0]
                _emit(sink, plan, held, interval)
                last_interval = interval
            held = (t, figures)
    except csv.Error as exc:
        raise LogError(name, reader.line_num, f"malformed CSV ({exc})") from None
    if plan is None:
        raise LogError(name, None, "empty: no header line")
    if held is not None:
        if last_interval is None:
            raise LogError(name, lineno, "one row alone: give --interval (the seconds it covers)")
        _emit(sink, plan, held, last_interval)
    return clock


def text_lines(stream: IO[bytes], name: str) -> Iterator[str]:
    """The file's lines as text (UTF-8, a byte-order mark dropped); LogError naming the line of
    a byte that is not UTF-8."""
    for lineno, raw in enumerate(stream, 1):
        try:
            yield raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            raise LogError(name, lineno, f"not UTF-8 text (byte {exc.start + 1} of the line)") from None


def _emit(sink: Sink, plan: _Plan, row: tuple[int, list[float]], interval: int) -> None:
    t, figures = row
    scaled = [x * f * (interval if per else 1.0)
              for x, f, per in zip(figures, plan.factor, plan.per, strict=True)]
    sink.add(t, interval, plan.layout, scaled)

