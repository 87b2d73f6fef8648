"""The values of PromQL, laid out for every step of a query at once.

An instant vector over ``k`` steps is a :class:`Vector`: one row per series, a float64
matrix ``values`` of shape ``(n, k)`` and a boolean ``present`` of the same shape (NaN is a
value in PromQL, so absence needs its own mask). Native histogram samples live in the object
matrix ``hists`` (None where a sample is a float, and ``hists`` itself None when the vector
holds no histogram). A range vector is a :class:`Matrix`: raw samples per series and where
each step's window ends; the functions over ranges read it through ``windows.Windows``.

Rows keep the order Prometheus produces an instant vector in (it shows in instant queries:
``sort``, ``topk``); range queries sort series by labels at the end.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from fleetscope.model.histogram import Histogram
from fleetscope.promql.errors import SAME_LABELSET, execution
from fleetscope.promql.labels import Labels


class Scalar(NamedTuple):
    values: np.ndarray  # (k,) float64

    @property
    def samples(self) -> int:
        return len(self.values)


class String(NamedTuple):
    value: str
    samples: int = 1


class Vector:
    """An instant vector at every step (see the module docstring)."""

    __slots__ = ("hists", "labels", "present", "times", "values")

    def __init__(self, labels: list[Labels], values: np.ndarray, present: np.ndarray,
                 hists: np.ndarray | None = None, times: np.ndarray | None = None) -> None:
        self.labels = labels
        self.values = values
        self.present = present
        self.hists = hists
        self.times = times  # (n, k) int64 sample timestamps: only a selector's, for timestamp()

    @classmethod
    def empty(cls, k: int) -> Vector:
        return cls([], np.empty((0, k)), np.zeros((0, k), dtype=bool))

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def samples(self) -> int:
        return int(self.present.sum())

    def rows(self, index: np.ndarray | Sequence[int]) -> Vector:
        """The series at ``index`` (an integer index or a boolean mask), in that order."""
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        return Vector([self.labels[i] for i in index], self.values[index], self.present[index],
                      None if self.hists is None else self.hists[index],
                      None if self.times is None else self.times[index])

    def with_labels(self, labels: list[Labels]) -> Vector:
        """The same samples under new labels (without the sample times: they belonged to a selector)."""
        return Vector(labels, self.values, self.present, self.hists)

    def histogram_mask(self) -> np.ndarray:
        """``(n, k)``: where a sample is a native histogram."""
        if self.hists is None:
            return np.zeros(self.present.shape, dtype=bool)
        return self.present & np.vectorize(lambda h: h is not None, otypes=[bool])(self.hists)

    def float_mask(self) -> np.ndarray:
        return self.present & ~self.histogram_mask() if self.hists is not None else self.present

    def nonempty(self) -> Vector:
        """Without the series that have no sample at any step."""
        keep = self.present.any(axis=1)
        return self if keep.all() else self.rows(keep)


class RawSeries(NamedTuple):
    """One series' samples as a range vector reads them (stale markers removed)."""

    labels: Labels
    times: np.ndarray  # int64 ms, ascending
    values: np.ndarray | None  # float64, or None for native histograms
    hists: list[Histogram] | None = None


class Matrix(NamedTuple):
    """A range vector: at step ``j`` series ``s`` holds its samples with
    ``ends[j] - range_ms <= t <= ends[j]``."""

    series: list[RawSeries]
    range_ms: int
    ends: np.ndarray  # (k,) int64

    @property
    def samples(self) -> int:
        return sum(len(s.times) for s in self.series)


def combine(labels: list[Labels], values: np.ndarray, present: np.ndarray,
            hists: np.ndarray | None = None) -> Vector:
    """Rows with the same labels made one series, as Prometheus assembles a node's result from
    its steps; two of them at the same step is Prometheus' "same labelset" error."""
    index: dict[Labels, int] = {}
    first = []
    for i, ls in enumerate(labels):
        if ls not in index:
            index[ls] = len(first)
            first.append(i)
    if len(first) == len(labels):
        return Vector(labels, values, present, hists)
    n, k = len(first), values.shape[1]
    out_values = np.zeros((n, k))
    out_present = np.zeros((n, k), dtype=bool)
    out_hists = None if hists is None else np.full((n, k), None, dtype=object)
    for i, ls in enumerate(labels):
        j = index[ls]
        row = present[i]
        if (out_present[j] & row).any():
            raise execution(SAME_LABELSET)
        out_values[j, row] = values[i, row]
        out_present[j] |= row
        if out_hists is not None:
            out_hists[j, row] = hists[i, row]
    return Vector([labels[i] for i in first], out_values, out_present, out_hists)


def check_unique(vector: Vector) -> None:
    """Prometheus' error for a result whose series are not told apart by their labels
    (checked over all steps: the functions over range vectors and unary minus check so)."""
    if len(set(vector.labels)) != len(vector.labels):
        raise execution(SAME_LABELSET)
