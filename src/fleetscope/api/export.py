"""Getting data out: data points as CSV, JSON Lines or OpenMetrics text.

Pure functions of an instrumentation and its data points; each yields text a
piece at a time so that an export of any size streams.

* ``csv``: numbers as ``start_time,duration,nsources,expected,key,value`` (one
  row per key of a breakdown; ``key`` empty for a plain number); histograms as
  ``start_time,duration,nsources,expected,key,count,sum,lower,upper,bucket_count,min,max``
  (one row per non-empty bucket ``(lower, upper]``; the zero bucket has lower
  ``-inf``; ``min`` and ``max``, the histogram's smallest and largest value, are
  empty where not known; they came last, so readers by position are unchanged).
* ``json``: one JSON object per line (JSON Lines): ``{"start_time",
  "duration", "value", "nsources", "expected"}``, values as the API gives them
  (histograms with ``min`` and ``max`` when known).
* ``openmetrics``: one metric family ``fleetscope_<module>_<stat>``, a
  ``gauge`` (every value is the value of its slot) or a ``gaugehistogram``
  (cumulative ``le`` buckets, ``+Inf`` being the count, and ``_gsum``),
  labelled ``instrumentation`` and the discrete field, with timestamps in
  seconds; ``# EOF`` at the end. ``promtool tsdb create-blocks-from openmetrics``
  reads it. OpenMetrics histograms have no min or max: they are left out.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from itertools import chain

from fleetscope.api.exposition import bound_text, escape, label_name, metric_name, number_text
from fleetscope.model import values
from fleetscope.model.histogram import Histogram
from fleetscope.model.instrumentation import Instrumentation
from fleetscope.model.series import DataPoint

FORMATS = ("csv", "json", "openmetrics")
MEDIA_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "json": "application/x-ndjson",
    "openmetrics": "application/openmetrics-text; version=1.0.0; charset=utf-8",
}
_BATCH = 500  # points per yielded piece of text


def export_lines(inst: Instrumentation, points: Iterable[DataPoint], fmt: str) -> Iterator[str]:
    """The text of ``points`` in format ``fmt`` (one of :data:`FORMATS`), piece by piece."""
    if fmt == "csv":
        return _csv(inst, points)
    if fmt == "json":
        return _json(inst, points)
    if fmt == "openmetrics":
        return _batched(chain(openmetrics_family(inst, points), ["# EOF\n"]))
    raise ValueError(f"unknown export format {fmt!r}")


def _batched(lines: Iterable[str]) -> Iterator[str]:
    buf: list[str] = []
    for line in lines:
        buf.append(line)
        if len(buf) >= _BATCH:
            yield "".join(buf)
            buf = []
    if buf:
        yield "".join(buf)


def _csv_field(text: str) -> str:
    if any(c in text for c in ',"\n\r'):
        return '"' + text.replace('"', '""') + '"'
    return text


def _items(value: values.Value, shape: str) -> list[tuple[str, object]]:
    if shape in (values.SCALAR, values.HISTOGRAM):
        return [("", value)]
    return sorted(value.items())  # type: ignore[union-attr]


def _bucket_rows(h: Histogram) -> Iterator[tuple[float, float, float]]:
    """``(lower, upper, count)`` per non-empty bucket; the zero bucket reaches down to -inf."""
    if h.zero_count > 0:
        yield -math.inf, h.zero_threshold, h.zero_count
    for i in sorted(h.buckets):
        lower, upper = h.bucket_bounds(i)
        yield lower, upper, h.buckets[i]


def _known_text(x: float) -> str:
    """A histogram's min or max, empty when not known (NaN, or none: the histogram is empty)."""
    return number_text(x) if math.isfinite(x) else ""


def _csv(inst: Instrumentation, points: Iterable[DataPoint]) -> Iterator[str]:
    hist = inst.shape in (values.HISTOGRAM, values.DISCRETE_HISTOGRAM)

    def lines() -> Iterator[str]:
        if hist:
            yield "start_time,duration,nsources,expected,key,count,sum,lower,upper,bucket_count,min,max\n"
        else:
            yield "start_time,duration,nsources,expected,key,value\n"
        for p in points:
            if p.value is None:
                continue
            head = f"{p.start_time},{p.duration},{p.nsources},{p.expected},"
            for key, v in _items(p.value, inst.shape):
                if not hist:
                    yield f"{head}{_csv_field(key)},{number_text(v)}\n"
                    continue
                extent = f"{_known_text(v.min)},{_known_text(v.max)}"
                for lower, upper, c in _bucket_rows(v):
                    yield (f"{head}{_csv_field(key)},{number_text(v.count)},{number_text(v.sum)},"
                           f"{bound_text(lower)},{bound_text(upper)},{number_text(c)},{extent}\n")

    return _batched(lines())


def _short_floats(obj):
    """``obj`` with every finite float rounded to 15 significant digits (ints stay ints), so that
    ``json.dumps`` prints ``0.06``, not ``0.060000000000000005``: see
    :func:`fleetscope.api.exposition.number_text`."""
    if isinstance(obj, float):
        return float(format(obj, ".15g")) if math.isfinite(obj) else obj
    if isinstance(obj, dict):
        return {k: _short_floats(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_short_floats(v) for v in obj]
    return obj


def _json(inst: Instrumentation, points: Iterable[DataPoint]) -> Iterator[str]:
    def lines() -> Iterator[str]:
        for p in points:
            if p.value is not None:
                d = p.to_json(inst.shape)
                d.pop("revised", None)
                yield json.dumps(_short_floats(d), separators=(",", ":")) + "\n"

    return _batched(lines())


def openmetrics_family(inst: Instrumentation, points: Iterable[DataPoint],
                       name: str | None = None) -> Iterator[str]:
    """The lines of one OpenMetrics metric family (``name``, default :func:`metric_name`) holding
    ``points``, without the final ``# EOF`` (so that several families make one exposition)."""
    name = name or metric_name(inst)
    hist = inst.shape in (values.HISTOGRAM, values.DISCRETE_HISTOGRAM)
    label = label_name(inst)
    base = f'instrumentation="{inst.id}"'
    what = inst.metric + (f" by {', '.join(inst.decomposition)}" if inst.decomposition else "")
    yield f"# TYPE {name} {'gaugehistogram' if hist else 'gauge'}\n"
    yield f"# HELP {name} fleetscope instrumentation {inst.id}: {escape(what)}\n"
    for p in points:
        if p.value is None:
            continue
        ts = p.start_time
        for key, v in _items(p.value, inst.shape):
            labels = base + (f',{label}="{escape(key)}"' if label else "")
            if not hist:
                yield f"{name}{{{labels}}} {number_text(v)} {ts}\n"
                continue
            cum = 0.0
            for _, upper, c in _bucket_rows(v):
                cum += c
                yield f'{name}_bucket{{{labels},le="{bound_text(upper)}"}} {number_text(cum)} {ts}\n'
            yield f'{name}_bucket{{{labels},le="+Inf"}} {number_text(v.count)} {ts}\n'
            yield f"{name}_gsum{{{labels}}} {number_text(v.sum)} {ts}\n"
