"""Turning a source's rows into one partial value of an instrumentation.

An instrumentation is compiled once per column layout: its predicate becomes
a function of a row tuple (with ``hostname`` folded in as a constant), its
decomposition the positions of the fields to group by.

An evaluation can be given a deadline on the thread's CPU clock
(``time.thread_time``): it looks at the clock every :data:`CHUNK` rows and raises
:class:`OverBudget` once past it, so no instrumentation holds the tick for longer
than its budget (:mod:`fleetscope.agent.budget`) and one chunk.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator

from fleetscope.model import values
from fleetscope.model.histogram import Histogram
from fleetscope.model.instrumentation import Instrumentation
from fleetscope.model.predicate import compile_predicate, fields_of
from fleetscope.sources.base import Rows

# Rows between two looks at the clock: a look costs about 0.3 us, a row 0.1 to 2 us (a
# comparison, a histogram record), or up to about 200 us for a predicate of the largest size
# (predicate.MAX_NODES operators) over long values: 256 rows are at most tens of ms past the
# deadline, and the looks cost under 1 %.
CHUNK = 256
NO_DEADLINE = math.inf


class OverBudget(Exception):
    """An evaluation stopped at its deadline."""


def _chunks(rows: list[tuple], deadline: float) -> Iterator[list[tuple]]:
    """``rows`` in slices of :data:`CHUNK`; OverBudget when the thread's CPU clock has passed
    ``deadline`` before a slice after the first."""
    if deadline == NO_DEADLINE or len(rows) <= CHUNK:
        yield rows
        return
    clock = time.thread_time
    for i in range(0, len(rows), CHUNK):
        if i and clock() > deadline:
            raise OverBudget
        yield rows[i : i + CHUNK]


class Plan:
    """An instrumentation compiled for one column layout on one host."""

    __slots__ = ("constant_key", "discrete_at", "filter_at", "inst", "match", "numeric_at", "shape")

    def __init__(self, inst: Instrumentation, columns: tuple[str, ...], constants: dict[str, str]):
        self.inst = inst
        self.shape = inst.shape
        self.match: Callable[[tuple], bool] | bool = compile_predicate(inst.predicate, columns, constants)
        self.constant_key: str | None = None
        self.discrete_at = self.numeric_at = -1
        if inst.discrete is not None:
            if inst.discrete in constants:
                self.constant_key = str(constants[inst.discrete])
            else:
                self.discrete_at = columns.index(inst.discrete)
        if inst.numeric is not None:
            self.numeric_at = columns.index(inst.numeric)
        # Columns the predicate reads: a ready histogram there is split into its buckets first.
        self.filter_at = tuple(columns.index(f) for f in sorted(fields_of(inst.predicate)) if f in columns)

    def evaluate(self, rows: list[tuple], weighted: bool = False,
                 deadline: float = NO_DEADLINE) -> values.Value:
        """The partial value of these rows: filtered by the predicate, decomposed.
        ``weighted``: a numeric decomposition records each row's value with its
        measure as weight (see :attr:`Rows.weighted`), else once per row; a weighted
        row holding a ready histogram is merged whole, unless the predicate reads its
        field: then each bucket is a row at its upper bound (the zero bucket at 0), and
        the histograms made of such rows do not know their min and max.
        ``deadline`` (``time.thread_time`` seconds): OverBudget once past it."""
        match = self.match
        if match is False:
            return values.empty(self.shape)
        if weighted and self.filter_at and match is not True:
            split = _split(rows, self.filter_at)
            if split is not rows:  # values at bucket bounds: the true min and max are lost
                value = self._decompose([r for chunk in _chunks(split, deadline) for r in chunk if match(r)],
                                        weighted, deadline)
                for h in value.values() if isinstance(value, dict) else (value,):
                    if h.__class__ is Histogram:
                        h.forget_range()
                return value
        if match is not True:
            rows = [r for chunk in _chunks(rows, deadline) for r in chunk if match(r)]
        return self._decompose(rows, weighted, deadline)

    def _decompose(self, rows: list[tuple], weighted: bool, deadline: float) -> values.Value:
        """The value of rows that passed the predicate."""
        shape = self.shape
        if shape == values.SCALAR:
            return float(sum(r[-1] for r in rows))
        if shape == values.HISTOGRAM:
            return _histogram(rows, self.numeric_at, weighted, deadline)
        if self.constant_key is not None:
            if not rows:
                return {}
            if shape == values.DISCRETE:
                return {self.constant_key: float(sum(r[-1] for r in rows))}
            return {self.constant_key: _histogram(rows, self.numeric_at, weighted, deadline)}
        at = self.discrete_at
        if shape == values.DISCRETE:
            out: dict[str, float] = {}
            for chunk in _chunks(rows, deadline):
                for r in chunk:
                    if r[-1]:  # a key that measured nothing (an idle process) is left out: absent = 0
                        key = r[at]
                        out[key] = out.get(key, 0.0) + r[-1]
            return out
        hists: dict[str, Histogram] = {}
        n = self.numeric_at
        for chunk in _chunks(rows, deadline):
            for r in chunk:
                h = hists.get(r[at])
                if h is None:
                    h = hists[r[at]] = Histogram()
                if not weighted:
                    h.record(r[n])
                elif r[n].__class__ is Histogram:
                    h.merge(r[n])
                else:
                    h.record(r[n], r[-1])
        return hists


def _histogram(rows: list[tuple], at: int, weighted: bool = False,
               deadline: float = NO_DEADLINE) -> Histogram:
    h = Histogram()
    for chunk in _chunks(rows, deadline):
        if weighted:
            for r in chunk:
                x = r[at]
                if x.__class__ is Histogram:  # a ready histogram: exact, whatever its schema
                    h.merge(x)
                else:
                    h.record(x, r[-1])
        else:
            for r in chunk:
                h.record(r[at])
    return h


def _split(rows: list[tuple], at: tuple[int, ...]) -> list[tuple]:
    """``rows`` with each ready histogram in a column of ``at`` replaced by one weighted
    row per bucket, at the bucket's upper bound, so a predicate can compare values."""
    if not any(r[i].__class__ is Histogram for r in rows for i in at):
        return rows
    out = []
    for r in rows:
        i = next((i for i in at if r[i].__class__ is Histogram), None)
        if i is None:
            out.append(r)
            continue
        h = r[i]
        if h.zero_count:
            out.append((*r[:i], 0.0, *r[i + 1:-1], h.zero_count))
        for b, n in h.buckets.items():
            lower, upper = h.bucket_bounds(b)
            at_value = upper if upper != math.inf else lower  # the top bucket of the float range
            out.append((*r[:i], at_value, *r[i + 1:-1], n))
    return out


def plan_for(inst: Instrumentation, rows: Rows, constants: dict[str, str], cache: dict) -> Plan:
    """The plan of ``inst`` for ``rows``' column layout, compiled on first use and cached."""
    key = (inst.id, rows.columns)
    plan = cache.get(key)
    if plan is None or plan.inst is not inst:
        plan = cache[key] = Plan(inst, rows.columns, constants)
    return plan
