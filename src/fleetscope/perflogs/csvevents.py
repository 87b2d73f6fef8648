"""CSV files of one event per row: load-testing tools' request logs.

JMeter's ``.jtl`` CSV (``timeStamp`` in milliseconds, ``elapsed``, ``label``,
``responseCode``, ``success``...: one row per sample, in the order samples *ended*, so not in
time order) and Apache Bench's ``ab -g`` TSV (``seconds``, ``ttime``...: one row per request,
sorted by ``ttime``) are the models. The mapping's ``events`` (:mod:`fleetscope.perflogs.csvlog`)
names the time column, the column of each event's figure (its latency), and the columns whose
values become fields.

The events become one **interval** metric: per interval (``--interval``, default 1 s) and per
key, the number of events, where a key is the events' field values and the value's histogram
bucket (:data:`SCHEMA`, the layout every histogram of fleetscope has). The key holds the
bucket's geometric middle as the numeric field, so an instrumentation reading the import
counts events (by any field, filtered by any predicate, ``latency > 100`` included) and
records the value's distribution with the very buckets live data has: heatmaps of latency
by label, percentiles and averages (from the buckets: within 5 %) come out as they do live.

Cost and bounds: one dict update per row (the rows may come in any order, so counts are held
until the end): memory grows with the cells (intervals x keys that had events, at most
:data:`MAX_CELLS`), not with the events; at most :data:`MAX_KEYS` keys (field values times
buckets). Intervals without events between the first and the last are written as zero counts
(a count of 0 is a value, not a gap) while there are at most :data:`MAX_FILLED` of them.
"""

from __future__ import annotations

import csv
import math
from typing import IO

import numpy as np

from fleetscope.model.histogram import DEFAULT_SCHEMA, bucket_index, bucket_upper
from fleetscope.perflogs.clock import Clock, clock_for
from fleetscope.perflogs.csvlog import Events, Times, checked, header_index, text_lines, width_error
from fleetscope.perflogs.errors import LogError
from fleetscope.perflogs.sink import Column, Options, Sink

SCHEMA = DEFAULT_SCHEMA
MAX_KEYS = 4096  # field values x value buckets: the columns of an import chunk
MAX_CELLS = 4_000_000  # (interval, key) pairs held: about 100 bytes each
MAX_FILLED = 1 << 20  # intervals written from the first event's to the last's (12 days of seconds)
MAX_VALUE_CHARS = 200  # a field value (a label, a code)
BLOCK = 256  # intervals handed to the sink at a time (a matrix of BLOCK x keys floats)


def middle(x: float) -> float:
    """The value an event of figure ``x`` is kept as: its bucket's geometric middle at
    :data:`SCHEMA` (0 for 0), which a histogram records in the same bucket as ``x``."""
    if x <= 0.0:
        return 0.0
    i = bucket_index(x, SCHEMA)
    return math.sqrt(bucket_upper(i - 1, SCHEMA) * bucket_upper(i, SCHEMA))


class _Plan:
    """Where an event's time, figure and field values are in a row."""

    def __init__(self, ev: Events, time_column: str, header: list[str], name: str, lineno: int) -> None:
        index = header_index(header)
        wanted = {time_column: "the time column", ev.value_column: "value_column",
                  **{c: f"the column of field {f}" for f, c in ev.columns.items()}}
        for column, what in wanted.items():
            if column not in index:
                raise LogError(name, lineno, f"no column {column!r} ({what}) in the header (columns: "
                               f"{', '.join(h.strip() for h in header)[:200]})")
        self.width = len(header)
        self.time = index[time_column]
        self.value = index[ev.value_column]
        self.fields = tuple(index[c] for c in ev.columns.values())
        self.field_columns = tuple(ev.columns.values())
        self.constants = tuple(ev.fields[f] for f in sorted(ev.fields))


def parse(stream: IO[bytes], name: str, opts: Options, sink: Sink) -> Clock:
    """Read a CSV file of events from ``stream`` into ``sink`` as ``opts.mapping`` says."""
    mapping = checked(opts, name)
    ev = mapping.events
    assert ev is not None, "a mapping of events"
    clock = clock_for(opts.tz, name)
    times = Times(mapping.time_format, clock)
    interval = opts.interval or 1
    reader = csv.reader(text_lines(stream, name), delimiter=mapping.delimiter, strict=True)
    plan: _Plan | None = None
    keys: dict[tuple, int] = {}
    counts: dict[tuple[int, int], int] = {}  # (interval start, key) -> events
    middles: dict[str, float] = {}  # a figure's text -> its bucket's middle (figures repeat)
    scale = ev.scale
    try:
        for row in reader:
            lineno = reader.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if plan is None:
                plan = _Plan(ev, mapping.time_column, row, name, lineno)
                continue
            if len(row) != plan.width:
                raise width_error(name, lineno, plan.width, len(row))
            t = times.of(row[plan.time], mapping, name, lineno)
            text = row[plan.value]
            x = middles.get(text)
            if x is None:
                x = middles[text] = _figure(text, scale, ev.value_column, name, lineno)
            values = tuple(row[i].strip() for i in plan.fields)
            if any(len(v) > MAX_VALUE_CHARS for v in values):
                column = next(c for c, v in zip(plan.field_columns, values, strict=True)
                              if len(v) > MAX_VALUE_CHARS)
                raise LogError(name, lineno, f"column {column!r}: a field value of more than "
                               f"{MAX_VALUE_CHARS} characters")
            key = (*values, *plan.constants, x)
            k = keys.get(key)
            if k is None:
                if len(keys) >= MAX_KEYS:
                    raise LogError(name, lineno, f"more than {MAX_KEYS} distinct keys (field values "
                                   f"{', '.join(plan.field_columns) or '(none)'} times {ev.value_column} "
                                   "buckets): map fewer columns to fields")
                k = keys[key] = len(keys)
            cell = (t - t % interval, k)
            n = counts.get(cell)
            if n is None:
                if len(counts) >= MAX_CELLS:
                    raise LogError(name, lineno, f"more than {MAX_CELLS} (interval, key) counts: give a "
                                   "longer --interval, or map fewer columns to fields")
                counts[cell] = 1
            else:
                counts[cell] = n + 1
    except csv.Error as exc:
        raise LogError(name, reader.line_num, f"malformed CSV ({exc})") from None
    if plan is None:
        raise LogError(name, None, "empty: no header line")
    if not counts:
        raise LogError(name, None, "no events: a header and no rows")
    _emit(sink, ev.metric, list(keys), counts, interval)
    return clock


def _figure(text: str, scale: float, column: str, name: str, lineno: int) -> float:
    try:
        x = float(text) * scale
    except ValueError:
        raise LogError(name, lineno, f"column {column!r}: not a number: {text.strip()[:40]!r}") from None
    if not math.isfinite(x) or x < 0:
        raise LogError(name, lineno, f"column {column!r}: must be a finite number >= 0, not {text.strip()!r}")
    return middle(x)


def _emit(sink: Sink, metric: str, keys: list[tuple], counts: dict[tuple[int, int], int],
          interval: int) -> None:
    """The counts as samples, in time order, :data:`BLOCK` intervals at a time."""
    layout = tuple(Column(metric, key) for key in keys)
    starts = sorted({t for t, _ in counts})
    first, last = starts[0], starts[-1]
    if (last - first) // interval < MAX_FILLED:
        starts = list(range(first, last + interval, interval))
    by_start: dict[int, list[tuple[int, int]]] = {}
    for (t, k), n in counts.items():
        by_start.setdefault(t, []).append((k, n))
    for i in range(0, len(starts), BLOCK):
        block = starts[i:i + BLOCK]
        values = np.full((len(block), len(keys)), np.nan)
        for row, t in enumerate(block):
            cells = by_start.get(t)
            if cells is None:
                values[row, 0] = 0.0  # no events: a count of 0
                continue
            for k, n in cells:
                values[row, k] = n
        sink.add_block(np.array(block, np.int64), np.full(len(block), interval, np.int64), layout, values)
