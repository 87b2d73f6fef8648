"""Instrumentations over imported performance logs: the read half of imports.

An import keeps the rows of a host's logs (:mod:`fleetscope.store.imports`), not the
answers to questions, so every instrumentation (made before or after the import) answers
over them: :func:`imported_points` evaluates the instrumentation's predicate and
decomposition over the rows of each sample with the agent's own code
(:class:`fleetscope.agent.evaluate.Plan`, compiled once per import and column layout, the
import's host folded in as ``hostname``), then places each sample's value on the range's
steps:

* samples shorter than the step add up into it (interval metrics) or are averaged (point
  metrics), as a rollup of live slots would;
* a sample longer than the step (a 10-minute sar interval read at 1-minute steps) stays one
  value over its whole interval: an interval metric's activity is spread evenly over the
  steps it covers (by the share of the interval each covers), a point metric's level holds
  in each. The import's own resolution is in the import's listing.

Imports of several hosts add up per step like sources do (``nsources`` counts them). Which
imports an instrumentation may read is :func:`fleetscope.api.scope.import_readable`'s
decision; the instrumentation's predicate holds its tenant's scope already, so a tenant's
instrumentation sees only the imported rows its scope admits. A field the log does not have
(a host label, ``execname``) is empty for its rows: a predicate that asks for a value of it
does not match them; a numeric decomposition over a numeric field the log lacks gets nothing.

Cost: one ``Plan.evaluate`` per sample (a few microseconds for a vmstat sample); a day of
1-second samples of one metric reads in about half a second (docs/benchmarks.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from fleetscope.agent.evaluate import Plan
from fleetscope.api import scope
from fleetscope.api.queries import Range
from fleetscope.model import values
from fleetscope.model.instrumentation import Instrumentation
from fleetscope.model.metrics import INTERVAL
from fleetscope.model.predicate import fields_of
from fleetscope.model.series import DataPoint
from fleetscope.perflogs.metrics import COLUMNS, VALUE_FIELD
from fleetscope.store.importenc import decode
from fleetscope.store.imports import ImportInfo

HOSTNAME = "hostname"
EXPORT_PIECE = 4096  # steps of an export read from the imports at a time (bounded memory)


def columns_of(metric: str, info: ImportInfo) -> tuple[str, ...] | None:
    """The fields (without hostname) of an import's rows of ``metric``, in their keys' order:
    a metric imports know, or one a CSV import defined (kept in its document); None if the
    import cannot hold it."""
    columns = COLUMNS.get(metric)
    if columns is None:
        made = info.document.get("defined", {}).get(metric)
        if made is not None:
            columns = tuple(f["name"] for f in made["fields"][1:])
    return columns


def _plan(inst: Instrumentation, host: str, columns: tuple[str, ...]) -> tuple[Plan | None, bool]:
    """The plan of ``inst`` over the rows of ``host``'s imports of its metric, and whether a
    row's stored value is a numeric field (then its measure is 1); None when nothing of them
    can match."""
    valued = inst.metric in VALUE_FIELD
    wanted = (fields_of(inst.predicate) | set(inst.decomposition)) - set(columns) - {HOSTNAME}
    if inst.numeric is not None and inst.numeric not in columns:
        return None, valued
    constants = {HOSTNAME: host, **dict.fromkeys(wanted, "")}
    try:
        return Plan(inst, columns, constants), valued
    except (KeyError, ValueError, TypeError):  # a numeric comparison with an absent field
        return None, valued


class _Slots:
    """Values of one import on the steps of a range (sums, and sample times for point metrics)."""

    def __init__(self, inst: Instrumentation, rng: Range) -> None:
        self.inst = inst
        self.rng = rng
        self.sums: dict[int, values.Value] = {}
        # step -> the sample times in it: a point metric's level is averaged over times, not
        # samples (sar's text gives memory.used in two samples of one time: -r and -S)
        self.times: dict[int, set[int]] = {}

    def add(self, t: int, interval: int, v: values.Value) -> None:
        rng, shape = self.rng, self.inst.shape
        d = rng.duration
        first = rng.start + (t - rng.start) // d * d
        interval_kind = self.inst.kind == INTERVAL
        s = first
        while s < t + interval and s < rng.end:
            if s >= rng.start:
                part = v
                if interval > d or t < s or t + interval > s + d:
                    share = (min(t + interval, s + d) - max(t, s)) / interval
                    if interval_kind and share < 1.0:
                        part = values.scale(v, share, shape)
                acc = self.sums.get(s)
                self.sums[s] = values.merge_into(values.empty(shape) if acc is None else acc,
                                                 part, shape)
                if not interval_kind:
                    self.times.setdefault(s, set()).add(t)
            s += d

    def points(self) -> dict[int, values.Value]:
        if self.inst.kind == INTERVAL:
            return self.sums
        shape = self.inst.shape
        return {s: v if len(self.times[s]) == 1 else values.scale(v, 1.0 / len(self.times[s]), shape)
                for s, v in self.sums.items()}


def imported_points(store, inst: Instrumentation, rng: Range, topk: int,
                    imports: Iterable[ImportInfo] | None = None) -> dict[int, DataPoint]:
    """The data points of ``inst`` over ``rng`` from the imports it may read, by step start
    (steps without imported data are absent)."""
    infos = {i.id: i for i in (store.list_imports() if imports is None else imports)
             if scope.import_readable(inst, i) and columns_of(inst.metric, i) is not None}
    if not infos:
        return {}
    chunks = store.import_chunks(inst.metric, rng.start, rng.end, sorted(infos))
    if not chunks:
        return {}
    slots: dict[int, _Slots] = {}
    plans: dict[tuple[str, tuple[str, ...]], tuple[Plan | None, bool]] = {}
    for c in chunks:
        info = infos[c.import_id]
        columns = columns_of(inst.metric, info)
        assert columns is not None
        made = plans.get((info.host, columns))
        if made is None:
            made = plans[info.host, columns] = _plan(inst, info.host, columns)
        plan, valued = made
        if plan is None:
            continue
        chunk = decode(c.data)
        ends = chunk.times + chunk.intervals
        inside = np.nonzero((chunk.times < rng.end) & (ends > rng.start))[0]
        if not len(inside):
            continue
        per = slots.get(c.import_id) or slots.setdefault(c.import_id, _Slots(inst, rng))
        keys = chunk.keys
        present = ~np.isnan(chunk.values)
        for i in inside.tolist():
            row_values = chunk.values[i].tolist()
            mask = present[i].tolist()
            if valued:
                rows = [(*keys[j], x, 1.0) for j, x in enumerate(row_values) if mask[j]]
            else:
                rows = [(*keys[j], x) for j, x in enumerate(row_values) if mask[j]]
            if rows:
                # weighted: a row of an events import (csvevents) counts its events at one value
                per.add(int(chunk.times[i]), int(chunk.intervals[i]), plan.evaluate(rows, weighted=True))
    out: dict[int, DataPoint] = {}
    shape = inst.shape
    keep = inst.keys_kept(topk)
    for per in slots.values():
        for s, v in per.points().items():
            p = out.get(s)
            if p is None:
                out[s] = DataPoint(s, rng.duration, v, 1, 1)
            else:
                out[s] = DataPoint(s, rng.duration, values.merge_into(p.value, v, shape), p.nsources + 1,
                                   p.expected + 1)
    if shape in (values.DISCRETE, values.DISCRETE_HISTOGRAM):
        out = {s: p._replace(value=values.fold_top_k(p.value, keep, shape)) for s, p in out.items()}
    return out


def with_imported(points: list[DataPoint], imported: dict[int, DataPoint], shape: str,
                  topk: int | None = None) -> list[DataPoint]:
    """``points`` (live: window and history) with the imported points added step by step:
    a step that only one of them holds keeps that one; a step both hold adds up."""
    if not imported:
        return points
    out = []
    for p in points:
        imp = imported.get(p.start_time)
        if imp is None:
            out.append(p)
        elif p.value is None:
            out.append(imp)
        else:
            v = values.merge_into(_copy(p.value, shape), imp.value, shape)
            if topk is not None:
                v = values.fold_top_k(v, topk, shape)
            out.append(DataPoint(p.start_time, p.duration, v, p.nsources + imp.nsources,
                                 p.expected + imp.expected, p.revised))
    return out


def _copy(v: values.Value, shape: str) -> values.Value:
    """A copy of ``v`` that merging into leaves ``v`` alone."""
    return values.merge_into(values.empty(shape), v, shape) if shape != values.SCALAR else v



def stream_with_imported(store, inst: Instrumentation, points: Iterable[DataPoint], start: int, end: int,
                         step: int, topk: int) -> Iterator[DataPoint]:
    """``points`` (steps of ``step`` from ``start``, in time order, gaps left out: an export's)
    with the imported points of ``[start, end)`` added step by step, as :func:`with_imported`
    adds them to a range's; the imports are read :data:`EXPORT_PIECE` steps at a time, so a
    long export streams in bounded memory."""
    infos = [i for i in store.list_imports() if scope.import_readable(inst, i)
             and columns_of(inst.metric, i) is not None and i.start is not None
             and i.start < end and i.end > start]
    if not infos:
        yield from points
        return
    shape = inst.shape
    live = iter(points)
    pending = next(live, None)
    piece = EXPORT_PIECE * step
    for s in range(start, end, piece):
        n = -(-(min(end, s + piece) - s) // step)
        extra = imported_points(store, inst, Range(s, step, n), topk, infos)
        held: list[DataPoint] = []
        while pending is not None and pending.start_time < s + n * step:
            held.append(pending)
            pending = next(live, None)
        if not extra:
            yield from held
            continue
        mine = {p.start_time: p for p in held}
        for t in sorted(mine.keys() | extra.keys()):
            p, imp = mine.get(t), extra.get(t)
            if imp is None or p is None:
                yield p or imp
            else:
                yield with_imported([p], {t: imp}, shape, topk)[0]
    if pending is not None:
        yield pending
        yield from live
