"""Getting data out: data points as CSV, JSON Lines or OpenMetrics text.

Pure functions of an instrumentation and its data points; each yields text a
piece at a time so that an export of any size streams.

* ``csv``: numbers as ``start_time,duration,nsources,expected,key,value`` (one
  row per key of a breakdown; ``key`` empty for a plain number); histograms as
  ``start_time,duration,nsources,expected,key,count,sum,lower,upper,bucket_count``
  (one row per non-empty bucket ``(lower, upper]``; the zero bucket has lower
  ``-inf``).
* ``json``: one JSON object per line (JSON Lines): ``{"start_time",
  "duration", "value", "nsources", "expected"}``, values as the API gives them.
* ``openmetrics``: one metric family ``fleetscope_<module>_<stat>``, a
  ``gauge`` (every value is the value of its slot) or a ``gaugehistogram``
  (cumulative ``le`` buckets, ``+Inf`` being the count, and ``_gsum``),
  labelled ``instrumentation`` and the discrete field, with timestamps in
  seconds; ``# EOF`` at the end. ``promtool tsdb create-blocks-from openmetrics``
  reads it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator
from itertools import chain

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


def _num(x: float) -> str:
    return repr(float(x)) if math.isfinite(x) else ("+Inf" if x > 0 else "-Inf")


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


def _csv(inst: Instrumentation, points: Iterable[DataPoint]) -> Iterator[str]:
    hist = inst.shape in (values.HISTOGRAM, values.DISCRETE_HISTOGRAM)

    def lines() -> Iterator[str]:
        if hist:
            yield "start_time,duration,nsources,expected,key,count,sum,lower,upper,bucket_count\n"
        else:
            yield "start_time,duration,nsources,expected,key,value\n"
        for p in points:
            if p.value is None:
                continue
            head = f"{p.start_time},{p.duration},{p.nsources},{p.expected},"
            for key, v in _items(p.value, inst.shape):
                if not hist:
                    yield f"{head}{_csv_field(key)},{_num(v)}\n"
                    continue
                for lower, upper, c in _bucket_rows(v):
                    yield (f"{head}{_csv_field(key)},{_num(v.count)},{_num(v.sum)},{_num(lower)},"
                           f"{_num(upper)},{_num(c)}\n")

    return _batched(lines())


def _json(inst: Instrumentation, points: Iterable[DataPoint]) -> Iterator[str]:
    def lines() -> Iterator[str]:
        for p in points:
            if p.value is not None:
                d = p.to_json(inst.shape)
                d.pop("revised", None)
                yield json.dumps(d, separators=(",", ":")) + "\n"

    return _batched(lines())


_NAME_BAD = re.compile(r"[^a-zA-Z0-9_:]")


def metric_name(inst: Instrumentation) -> str:
    """``fleetscope_<module>_<stat>`` with anything but ``[a-zA-Z0-9_:]`` made ``_``."""
    return _NAME_BAD.sub("_", f"fleetscope_{inst.module}_{inst.stat}")


def _label_value(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def openmetrics_family(inst: Instrumentation, points: Iterable[DataPoint],
                       name: str | None = None) -> Iterator[str]:
    """The lines of one OpenMetrics metric family (``name``, default :func:`metric_name`) holding
    ``points``, without the final ``# EOF`` (so that several families make one exposition)."""
    name = name or metric_name(inst)
    hist = inst.shape in (values.HISTOGRAM, values.DISCRETE_HISTOGRAM)
    label = _NAME_BAD.sub("_", inst.discrete) if inst.discrete else None
    if label in ("le", "instrumentation"):
        label = f"{label}_"
    base = f'instrumentation="{inst.id}"'
    what = inst.metric + (f" by {', '.join(inst.decomposition)}" if inst.decomposition else "")
    yield f"# TYPE {name} {'gaugehistogram' if hist else 'gauge'}\n"
    yield f"# HELP {name} fleetscope instrumentation {inst.id}: {_label_value(what)}\n"
    for p in points:
        if p.value is None:
            continue
        ts = p.start_time
        for key, v in _items(p.value, inst.shape):
            labels = base + (f',{label}="{_label_value(key)}"' if label else "")
            if not hist:
                yield f"{name}{{{labels}}} {_num(v)} {ts}\n"
                continue
            cum = 0.0
            for _, upper, c in _bucket_rows(v):
                cum += c
                yield f'{name}_bucket{{{labels},le="{_num(upper)}"}} {_num(cum)} {ts}\n'
            yield f'{name}_bucket{{{labels},le="+Inf"}} {_num(v.count)} {ts}\n'
            yield f"{name}_gsum{{{labels}}} {_num(v.sum)} {ts}\n"
