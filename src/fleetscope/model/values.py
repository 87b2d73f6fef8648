"""Values: one data point of an instrumentation, and how they combine.

CONTRACT (to be implemented; signatures are fixed, other modules rely on them):

A value has one of four shapes, fixed by the instrumentation's decomposition:

=====================  ==========================  ===========================
shape                  Python                      JSON
=====================  ==========================  ===========================
SCALAR                 float                       number
DISCRETE               dict[str, float]            {key: number}
HISTOGRAM              Histogram                   histogram object
DISCRETE_HISTOGRAM     dict[str, Histogram]        {key: histogram object}
=====================  ==========================  ===========================

Across sources values are added (``merge_into``). Across time, interval metrics
are added and point metrics averaged (``scale`` by 1/ticks after adding).
Discrete breakdowns keep the top K keys exactly and fold the rest into
``OTHER`` so totals stay exact (``fold_top_k``; for histograms rank by count).
"""

from __future__ import annotations

from typing import Union

from fleetscope.model.histogram import Histogram

SCALAR = "scalar"
DISCRETE = "discrete"
HISTOGRAM = "histogram"
DISCRETE_HISTOGRAM = "discrete_histogram"
SHAPES = (SCALAR, DISCRETE, HISTOGRAM, DISCRETE_HISTOGRAM)
OTHER = "(other)"

Value = Union[float, dict[str, float], Histogram, dict[str, Histogram]]  # noqa: UP007


def shape_for(has_discrete: bool, has_numeric: bool) -> str:
    """The shape of values of a decomposition with/without a discrete and a numeric field."""
    raise NotImplementedError


def empty(shape: str) -> Value:
    """The zero of ``shape``: 0.0, {}, an empty Histogram, {}."""
    raise NotImplementedError


def merge_into(acc: Value, v: Value, shape: str) -> Value:
    """``acc + v``. May modify ``acc`` in place (and returns it); never modifies ``v``."""
    raise NotImplementedError


def scale(v: Value, factor: float, shape: str) -> Value:
    """A new value with every number (counts, sums) multiplied by ``factor``."""
    raise NotImplementedError


def fold_top_k(v: Value, k: int, shape: str) -> Value:
    """Keep the ``k`` largest keys of a breakdown (by number, or by histogram count)
    and merge the rest into ``OTHER``; other shapes are returned unchanged."""
    raise NotImplementedError


def total(v: Value, shape: str) -> float:
    """Scalar: itself; discrete: sum; histogram: count; discrete histogram: total count."""
    raise NotImplementedError


def encode(v: Value, shape: str) -> object:
    """JSON- and msgpack-friendly builtins (histograms as ``Histogram.to_json()``)."""
    raise NotImplementedError


def decode(obj: object, shape: str, field: str = "value") -> Value:
    """Validate and build a value of ``shape`` from builtins; InputError naming ``field`` if malformed
    (wrong type, NaN/inf, negative histogram counts, non-string keys...)."""
    raise NotImplementedError
