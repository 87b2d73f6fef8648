"""Turning a source's rows into one partial value of an instrumentation.

An instrumentation is compiled once per column layout: its predicate becomes
a function of a row tuple (with ``hostname`` folded in as a constant), its
decomposition the positions of the fields to group by.
"""

from __future__ import annotations

from collections.abc import Callable

from fleetscope.model import values
from fleetscope.model.histogram import Histogram
from fleetscope.model.instrumentation import Instrumentation
from fleetscope.model.predicate import compile_predicate
from fleetscope.sources.base import Rows


class Plan:
    """An instrumentation compiled for one column layout on one host."""

    __slots__ = ("constant_key", "discrete_at", "inst", "match", "numeric_at", "shape")

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

    def evaluate(self, rows: list[tuple], weighted: bool = False) -> values.Value:
        """The partial value of these rows: filtered by the predicate, decomposed.
        ``weighted``: a numeric decomposition records each row's value with its
        measure as weight (see :attr:`Rows.weighted`), else once per row."""
        match = self.match
        if match is False:
            return values.empty(self.shape)
        selected = rows if match is True else [r for r in rows if match(r)]
        shape = self.shape
        if shape == values.SCALAR:
            return float(sum(r[-1] for r in selected))
        if shape == values.HISTOGRAM:
            return _histogram(selected, self.numeric_at, weighted)
        if self.constant_key is not None:
            if shape == values.DISCRETE:
                return {self.constant_key: float(sum(r[-1] for r in selected))} if selected else {}
            return {self.constant_key: _histogram(selected, self.numeric_at, weighted)} if selected else {}
        at = self.discrete_at
        if shape == values.DISCRETE:
            out: dict[str, float] = {}
            for r in selected:
                if r[-1]:  # a key that measured nothing (an idle process) is left out: absent = 0
                    key = r[at]
                    out[key] = out.get(key, 0.0) + r[-1]
            return out
        hists: dict[str, Histogram] = {}
        n = self.numeric_at
        for r in selected:
            h = hists.get(r[at])
            if h is None:
                h = hists[r[at]] = Histogram()
            h.record(r[n], r[-1]) if weighted else h.record(r[n])
        return hists


def _histogram(rows: list[tuple], at: int, weighted: bool = False) -> Histogram:
    h = Histogram()
    if weighted:
        for r in rows:
            h.record(r[at], r[-1])
    else:
        for r in rows:
            h.record(r[at])
    return h


def plan_for(inst: Instrumentation, rows: Rows, constants: dict[str, str], cache: dict) -> Plan:
    """The plan of ``inst`` for ``rows``' column layout, compiled on first use and cached."""
    key = (inst.id, rows.columns)
    plan = cache.get(key)
    if plan is None or plan.inst is not inst:
        plan = cache[key] = Plan(inst, rows.columns, constants)
    return plan
