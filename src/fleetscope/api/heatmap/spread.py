"""Spreading histogram buckets over the rows of a linear or log axis.

Each stored bucket ``(lower, upper]`` is spread over the rows it overlaps in
proportion to the overlap, as if its values were spread evenly (in value) inside
the bucket. A zero bucket with ``zero_threshold == 0`` is a point mass at 0.
Mass outside the axis is counted below or above it. The heatmap matrix and the
cell details both count through here, so they agree to the last bit.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain
from typing import NamedTuple

import numpy as np

from fleetscope.model.histogram import Histogram

_FLOAT_MAX = float(np.finfo(np.float64).max)

# Every histogram of one schema shares the same bucket bounds, so where a bucket
# lands on the axis depends only on its index. _unit_spread works that out once
# per distinct index (for a count of 1) and _Spreader applies it to every
# bucket with a few gathers and one bincount: no loop over columns and little
# numpy work per bucket.


class _Unit(NamedTuple):
    """Where a count of 1 in each of some ranges lands on the axis."""

    first: np.ndarray  # first row with part of the range
    last: np.ndarray  # last such row (== first for most ranges)
    w_first: np.ndarray  # share of the count in row `first`
    w_last: np.ndarray  # share in row `last` when last > first, else 0
    density: np.ndarray  # share per value unit in the rows strictly between
    below: np.ndarray  # share below ymin
    above: np.ndarray  # share at or above ymax
    many: np.ndarray  # last > first


def _unit_spread(lower: np.ndarray, upper: np.ndarray, edges: np.ndarray) -> _Unit:
    """Spread a count of 1 over ``(lower, upper]`` evenly onto the rows of ``edges``.

    ``lower == upper`` is a point mass (a zero bucket with threshold 0). A range
    inside one row puts exactly 1 there; whole ranges off the axis exactly 1
    below or above.
    """
    nrows = len(edges) - 1
    y0, y1 = float(edges[0]), float(edges[-1])
    upper = np.minimum(upper, _FLOAT_MAX)  # the top bucket of the float range ends at inf
    width = upper - lower
    point = width <= 0
    inv = 1.0 / np.where(point, 1.0, width)
    below = np.where(point, upper < y0, np.where(upper <= y0, 1.0, inv * np.maximum(y0 - lower, 0)))
    above = np.where(point, upper >= y1, np.where(lower >= y1, 1.0, inv * np.maximum(upper - y1, 0)))
    inside = 1.0 - below - above
    a, b = np.clip(lower, y0, y1), np.clip(upper, y0, y1)
    first = np.minimum(np.searchsorted(edges, a, side="right") - 1, nrows - 1)  # row holding a
    last = np.searchsorted(edges, b, side="left") - 1  # last row holding values below b
    last = np.where(point, first, np.maximum(last, first))
    many = last > first
    return _Unit(
        first=first,
        last=last,
        w_first=np.where(many, inv * (edges[first + 1] - a), inside),
        w_last=np.where(many, inv * (b - edges[last]), 0.0),
        density=np.where(last - first > 1, inv, 0.0),
        below=below.astype(np.float64),
        above=above.astype(np.float64),
        many=many,
    )


class _Spreader:
    """Collects ``(cell, count)`` contributions of spread buckets and sums them
    with one bincount: a single grid-sized allocation, since fresh pages are
    what costs most here (page faults), more than the arithmetic."""

    def __init__(self, edges: np.ndarray, ngroups: int) -> None:
        self.edges = edges
        self.ngroups = ngroups
        self.nrows = len(edges) - 1
        self.cells: list[np.ndarray] = []  # flat cell = group * nrows + row
        self.weights: list[np.ndarray] = []
        self.below = np.zeros(ngroups)
        self.above = np.zeros(ngroups)

    def add(self, unit: _Unit, group: np.ndarray, u: np.ndarray, count: np.ndarray) -> None:
        """Add ``count[k]`` of range ``u[k]`` of ``unit`` to group ``group[k]``."""
        nrows = self.nrows
        cell = group * nrows
        cell += unit.first[u]
        weight = unit.w_first[u]
        weight *= count
        self.cells.append(cell)
        self.weights.append(weight)
        if unit.below.any():
            self.below += _sum_by(group, count * unit.below[u], self.ngroups)
        if unit.above.any():
            self.above += _sum_by(group, count * unit.above[u], self.ngroups)
        if not unit.many.any():
            return
        m = np.flatnonzero(unit.many[u])
        g, u, c = group[m], u[m], count[m]
        first, last = unit.first[u], unit.last[u]
        self.cells.append(g * nrows + last)
        self.weights.append(c * unit.w_last[u])
        # Rows strictly between first and last are covered whole: one entry each.
        whole = last - first - 1
        m = np.flatnonzero(whole > 0)
        if not m.size:
            return
        reps = whole[m]
        start = np.repeat(first[m] + 1 - np.cumsum(reps) + reps, reps)
        row = start + np.arange(int(reps.sum()))  # first + 1, ..., last - 1 per bucket
        self.cells.append(np.repeat(g[m] * nrows, reps) + row)
        self.weights.append(np.repeat(c[m] * unit.density[u[m]], reps) * np.diff(self.edges)[row])

    def result(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(rows, below, above)``, rows of shape ``(ngroups, nrows)``."""
        cells = self.cells[0] if len(self.cells) == 1 else np.concatenate(self.cells or [[]])
        weights = self.weights[0] if len(self.weights) == 1 else np.concatenate(self.weights or [[]])
        rows = _sum_by(cells.astype(np.intp, copy=False), weights, self.ngroups * self.nrows)
        return rows.reshape(self.ngroups, self.nrows), self.below, self.above


class Buckets(NamedTuple):
    """Every bucket of some histograms, flat, by group."""

    runs: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]]  # (schema, group, index, count)
    zero: tuple[np.ndarray, np.ndarray, np.ndarray]  # (group, zero_threshold, zero_count)

    def max_value(self) -> float:
        """The largest ``max_value()`` of the histograms (0.0 when all are empty)."""
        largest = 0.0
        for schema, _, index, count in self.runs:
            filled = index[count > 0]
            if filled.size:
                top = Histogram(schema).bucket_bounds(int(filled.max()))[1]
                largest = max(largest, top)
        _, threshold, count = self.zero
        filled = threshold[count > 0]
        return max(largest, float(filled.max())) if filled.size else largest

    def spread(self, edges: np.ndarray, ngroups: int) -> tuple[np.ndarray, ...]:
        """``(rows, below, above)``: rows of shape ``(ngroups, len(edges) - 1)``."""
        spreader = _Spreader(edges, ngroups)
        for schema, group, index, count in self.runs:
            if not index.size:
                continue
            offset, lower, upper = _bounds_table(schema, index)
            spreader.add(_unit_spread(lower, upper, edges), group, index - offset, count)
        group, threshold, count = self.zero
        if group.size:
            unit = _unit_spread(np.zeros_like(threshold), threshold, edges)
            spreader.add(unit, group, np.arange(group.size), count)
        return spreader.result()


def collect(hists: Sequence[Histogram], groups: Sequence[int]) -> Buckets:
    """The buckets of ``hists[k]`` (for group ``groups[k]``) as flat arrays.

    Reads the documented attributes (``buckets``, ``schema``, ``zero_count``,
    ``zero_threshold``): ``iter_buckets()`` builds a tuple per bucket in Python,
    which would cost more than all the rest for thousands of columns. Chained
    iterators into ``np.fromiter`` are the cheapest way out of the dicts.
    """
    dicts = [h.buckets for h in hists]
    lengths = np.fromiter(map(len, dicts), dtype=np.intp, count=len(dicts))
    n = int(lengths.sum())
    index = np.fromiter(chain.from_iterable(dicts), dtype=np.int64, count=n)
    count = np.fromiter(chain.from_iterable(map(dict.values, dicts)), dtype=np.float64, count=n)
    owner = np.array(groups, dtype=np.intp)
    group = np.repeat(owner, lengths)
    schemas = [h.schema for h in hists]
    distinct = set(schemas)
    if len(distinct) <= 1:
        runs = [(schemas[0] if schemas else 0, group, index, count)]
    else:
        schema = np.repeat(np.array(schemas), lengths)
        runs = [(s, group[m], index[m], count[m]) for s in distinct for m in [schema == s]]
    zero_count = np.array([h.zero_count for h in hists], dtype=np.float64)
    filled = np.flatnonzero(zero_count)
    thresholds = [hists[k].zero_threshold for k in filled.tolist()]
    zero = (owner[filled], np.array(thresholds, dtype=np.float64), zero_count[filled])
    return Buckets(runs, zero)


def _bounds_table(schema: int, index: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """``(offset, lower, upper)``: bounds of bucket ``i`` at ``[i - offset]``.

    Filled for the indexes present only, through ``Histogram.bucket_bounds`` so
    that the bounds are the histogram's own, bit for bit.
    """
    offset = int(index.min())
    present = np.zeros(int(index.max()) - offset + 1, dtype=bool)
    present[index - offset] = True
    where = np.flatnonzero(present)
    bucket_bounds = Histogram(schema).bucket_bounds
    bounds = np.array([bucket_bounds(i) for i in (where + offset).tolist()], dtype=np.float64)
    lower = np.zeros(present.size)
    upper = np.zeros(present.size)
    lower[where] = bounds[:, 0]
    upper[where] = bounds[:, 1]
    return offset, lower, upper


def _sum_by(index: np.ndarray, weights: np.ndarray, size: int) -> np.ndarray:
    """``weights`` summed per ``index`` into ``size`` float slots (bincount gives
    ints when nothing is summed)."""
    return np.bincount(index, weights, minlength=size).astype(np.float64, copy=False)
