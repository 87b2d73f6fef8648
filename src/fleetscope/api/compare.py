"""Compare runs (Fenxi's compare): one instrumentation's answers over two runs, aligned to
their starts, with the difference of their averages and percentiles.

A **run** is an import (:class:`ImportRun`: only that import's rows, over its own time
range) or a time range (:class:`RangeRun`: everything the instrumentation reads there, live
history and imports, as ``/value`` answers). Both runs are read on steps of one length from
their own starts, so step ``i`` of one is ``i x step`` seconds into it, as step ``i`` of the
other: a run of Monday 14:00 and one of Tuesday 09:30 line up by the time since they began.

The step is the coarser of the runs' resolutions (an import's interval; the tier a range is
read from), widened so that neither run has more than :data:`MAX_STEPS`; ``step`` fixes it
(a range's tier may still round it up).

Statistics per key (the value itself is key ``""``; a breakdown's keys, the larger first):

* numbers and breakdowns: over the run's steps that hold data, the average, the percentiles
  (:data:`QUANTILES`, linear between steps) and the extremes of the step values; an interval
  metric's values (and its aligned series) are per second (the step's activity / the step's
  seconds), so runs of different steps stay comparable; a step that holds data but not a
  key counts 0 for it;
* distributions (a numeric breakdown): the steps' histograms merged, its average and
  percentiles (estimated from the buckets, as ``/percentiles``), and its count.

``difference`` is b - a, ``change`` (b - a) / |a| (None where a is 0).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from fleetscope.api import imported, queries
from fleetscope.model import values
from fleetscope.model.histogram import Histogram
from fleetscope.model.instrumentation import Instrumentation
from fleetscope.model.metrics import INTERVAL
from fleetscope.model.series import DataPoint
from fleetscope.store.imports import ImportInfo

MAX_STEPS = 1000  # steps of a run: a compare reads at most twice /value's own bound
QUANTILES = (0.5, 0.9, 0.99)
SCALAR_KEY = ""


class ImportRun(NamedTuple):
    info: ImportInfo

    @property
    def label(self) -> str:
        return f"import {self.info.id} ({self.info.host})"

    @property
    def span(self) -> tuple[int, int]:
        assert self.info.start is not None and self.info.end is not None
        return self.info.start, self.info.end

    def resolution(self) -> int:
        return int(self.info.document.get("interval") or 1)

    def to_json(self) -> dict:
        return {"label": self.label, "import": self.info.id, "host": self.info.host,
                "start_time": self.span[0], "end_time": self.span[1]}


class RangeRun(NamedTuple):
    start: int
    end: int

    @property
    def label(self) -> str:
        return f"range {self.start}-{self.end}"

    @property
    def span(self) -> tuple[int, int]:
        return self.start, self.end

    def to_json(self) -> dict:
        return {"label": self.label, "import": None, "start_time": self.start, "end_time": self.end}


Run = ImportRun | RangeRun


def default_step(runs: Sequence[Run], resolutions: Sequence[int]) -> int:
    """The coarser resolution of the runs, widened to keep each within :data:`MAX_STEPS`."""
    longest = max(end - start for start, end in (r.span for r in runs))
    return max(*resolutions, math.ceil(longest / MAX_STEPS), 1)


def import_points(store, inst: Instrumentation, run: ImportRun, step: int, topk: int) -> list[DataPoint]:
    """The import's own rows on steps of ``step`` from its start (gaps: value None)."""
    start, end = run.span
    rng = queries.Range(start, step, max(1, math.ceil((end - start) / step)))
    got = imported.imported_points(store, inst, rng, topk, [run.info])
    return [got.get(t) or DataPoint(t, step, None, 0, 0) for t in rng.times()]


def _series(points: Sequence[DataPoint], shape: str, per_second: bool) -> dict[str, list[float]]:
    """Per key, the values of the steps that hold data (0 for a key absent from such a step)."""
    held = [p for p in points if p.value is not None]
    if shape == values.SCALAR:
        return {SCALAR_KEY: [p.value / (p.duration if per_second else 1) for p in held]}
    keys: dict[str, None] = {}
    for p in held:
        keys.update(dict.fromkeys(p.value))
    return {k: [p.value.get(k, 0.0) / (p.duration if per_second else 1) for p in held] for k in keys}


def _histograms(points: Sequence[DataPoint], shape: str) -> dict[str, Histogram]:
    out: dict[str, Histogram] = {}
    for p in points:
        if p.value is None:
            continue
        parts = {SCALAR_KEY: p.value} if shape == values.HISTOGRAM else p.value
        for k, h in parts.items():
            acc = out.get(k)
            out[k] = h.copy() if acc is None else acc.merge(h)
    return out


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def stats_of_series(xs: list[float]) -> dict:
    if not xs:
        return {"steps": 0, "average": None, **{f"p{q * 100:g}": None for q in QUANTILES}, "min": None,
                "max": None}
    arr = np.asarray(xs, float)
    qs = np.quantile(arr, QUANTILES)
    return {"steps": len(xs), "average": float(arr.mean()),
            **{f"p{q * 100:g}": float(v) for q, v in zip(QUANTILES, qs, strict=True)},
            "min": float(arr.min()), "max": float(arr.max())}


def stats_of_histogram(h: Histogram | None) -> dict:
    if h is None or not h.count:
        return {"count": 0, "average": None, **{f"p{q * 100:g}": None for q in QUANTILES}}
    return {"count": h.count, "average": _finite(h.mean()),
            **{f"p{q * 100:g}": _finite(h.quantile(q)) for q in QUANTILES}}


def summarize(inst: Instrumentation, points: Sequence[DataPoint]) -> dict[str, dict]:
    """Statistics per key of one run (see the module docstring)."""
    shape = inst.shape
    if shape in (values.HISTOGRAM, values.DISCRETE_HISTOGRAM):
        return {k: stats_of_histogram(h) for k, h in _histograms(points, shape).items()}
    return {k: stats_of_series(xs) for k, xs in _series(points, shape, inst.kind == INTERVAL).items()}


def _difference(a: dict | None, b: dict | None) -> tuple[dict, dict]:
    diff, change = {}, {}
    for stat in ("average", *(f"p{q * 100:g}" for q in QUANTILES)):
        x = a.get(stat) if a else None
        y = b.get(stat) if b else None
        diff[stat] = None if x is None or y is None else y - x
        change[stat] = None if x is None or y is None or x == 0 else (y - x) / abs(x)
    return diff, change


def compare(inst: Instrumentation, runs: tuple[Run, Run], points: tuple[list[DataPoint], list[DataPoint]],
            step: int) -> dict:
    """The answer of ``/compare``: the runs, the step, the aligned series and the statistics."""
    shape = inst.shape
    a, b = (summarize(inst, p) for p in points)
    weight = {k: abs((a.get(k) or {}).get("average") or 0.0) + abs((b.get(k) or {}).get("average") or 0.0)
              for k in {**a, **b}}
    rows = []
    for key in sorted(weight, key=lambda k: (-weight[k], k)):
        diff, change = _difference(a.get(key), b.get(key))
        rows.append({"key": key, "a": a.get(key), "b": b.get(key), "difference": diff, "change": change})
    n = max(len(points[0]), len(points[1]))
    per_second = inst.kind == INTERVAL and shape in (values.SCALAR, values.DISCRETE)

    def aligned(pts: list[DataPoint]) -> list:
        out = []
        for i in range(n):
            v = pts[i].value if i < len(pts) else None
            if v is not None and per_second:
                v = values.scale(v, 1.0 / pts[i].duration, shape)
            out.append(None if v is None else values.encode(v, shape))
        return out

    return {
        "instrumentation": inst.id,
        "metric": inst.metric,
        "shape": shape,
        "per_second": per_second,
        "step": step,
        "quantiles": list(QUANTILES),
        "runs": {"a": runs[0].to_json(), "b": runs[1].to_json()},
        "offsets": [i * step for i in range(n)],
        "series": {"a": aligned(points[0]), "b": aligned(points[1])},
        "rows": rows,
    }
