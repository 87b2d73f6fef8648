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

A histogram object is :meth:`Histogram.to_json`: with ``min`` and ``max`` where
they are known; :func:`decode` and :func:`decode_msgpack` (the bus) accept it
without them too (a value from before they were kept: not known).

Across sources values are added (``merge_into``). Across time, interval metrics
are added and point metrics averaged (``scale`` by 1/ticks after adding).
Discrete breakdowns keep the top K keys exactly and fold the rest into
``OTHER`` so totals stay exact (``fold_top_k``; for histograms rank by count).

An unknown ``shape`` is a programming error: ValueError (not InputError).
"""

from __future__ import annotations

import heapq
import math
from typing import Union

import msgspec

from fleetscope.model.errors import InputError
from fleetscope.model.histogram import FiniteFloat, Histogram, HistogramWire

SCALAR = "scalar"
DISCRETE = "discrete"
HISTOGRAM = "histogram"
DISCRETE_HISTOGRAM = "discrete_histogram"
SHAPES = (SCALAR, DISCRETE, HISTOGRAM, DISCRETE_HISTOGRAM)
OTHER = "(other)"
# Keys of a breakdown an aggregator keeps per slot (the rest fold into OTHER).
TOP_K = 50
# Keys of a breakdown one agent sends per tick: many more than TOP_K, so that a key in the
# fleet's (or a longer slot's) top TOP_K is not folded away on one host unless that host has
# more than this many keys in one second; and few enough that a breakdown by a field of
# 100,000 values costs a message of tens of kB, not megabytes.
AGENT_TOP_K = 20 * TOP_K
# Past this many keys per kept key, a heap ranks faster than a sort (measured: 5,000 keys,
# k = 50: 0.8 vs 3.0 ms; 100,000 keys, k = 1,000: 34 vs 110 ms; 60 keys, k = 50: 0.03 vs 0.01 ms).
_HEAP_RATIO = 8

Value = Union[float, dict[str, float], Histogram, dict[str, Histogram]]  # noqa: UP007


def _bad_shape(shape: object) -> ValueError:
    return ValueError(f"unknown value shape {shape!r}; expected one of {SHAPES}")


def shape_for(has_discrete: bool, has_numeric: bool) -> str:
    """The shape of values of a decomposition with/without a discrete and a numeric field."""
    if has_discrete:
        return DISCRETE_HISTOGRAM if has_numeric else DISCRETE
    return HISTOGRAM if has_numeric else SCALAR


def empty(shape: str) -> Value:
    """The zero of ``shape``: 0.0, {}, an empty Histogram, {}."""
    if shape == SCALAR:
        return 0.0
    if shape in (DISCRETE, DISCRETE_HISTOGRAM):
        return {}
    if shape == HISTOGRAM:
        return Histogram()
    raise _bad_shape(shape)


def merge_into(acc: Value, v: Value, shape: str) -> Value:
    """``acc + v``. May modify ``acc`` in place (and returns it); never modifies ``v``.

    Histograms taken over from ``v`` are copied, so the result never shares an
    object with ``v`` (a later merge into it must not change ``v``).
    """
    if shape == SCALAR:
        return acc + v
    if shape == DISCRETE:
        get = acc.get
        for key, x in v.items():
            acc[key] = get(key, 0.0) + x
        return acc
    if shape == HISTOGRAM:
        return acc.merge(v)
    if shape == DISCRETE_HISTOGRAM:
        for key, h in v.items():
            mine = acc.get(key)
            if mine is None:
                acc[key] = h.copy()
            else:
                mine.merge(h)
        return acc
    raise _bad_shape(shape)


def scale(v: Value, factor: float, shape: str) -> Value:
    """A new value with every number (counts, sums) multiplied by ``factor``.

    Histogram shapes need ``factor`` finite and >= 0 (counts cannot go negative).
    """
    if shape == SCALAR:
        return v * factor
    if shape == DISCRETE:
        return {key: x * factor for key, x in v.items()}
    if shape == HISTOGRAM:
        return v.scale(factor)
    if shape == DISCRETE_HISTOGRAM:
        return {key: h.scale(factor) for key, h in v.items()}
    raise _bad_shape(shape)


def fold_top_k(v: Value, k: int, shape: str) -> Value:
    """Keep the ``k`` largest keys of a breakdown (by number, or by histogram count)
    and merge the rest into ``OTHER``; other shapes are returned unchanged.

    Ties are broken by key name (the smaller name is kept), so the result does
    not depend on dict order. An ``OTHER`` already in ``v`` is ranked like any
    key; if it is not kept it is folded into the new ``OTHER`` with the rest. So
    the result has at most ``k + 1`` keys and the same total as ``v``. For a
    breakdown a new dict is returned (histograms copied); ``v`` is unchanged.
    ValueError if ``k`` < 0.
    """
    if shape in (SCALAR, HISTOGRAM):
        return v
    if shape not in (DISCRETE, DISCRETE_HISTOGRAM):
        raise _bad_shape(shape)
    if k < 0:
        raise ValueError(f"k must be >= 0, not {k!r}")
    if shape == DISCRETE:
        if len(v) <= k:
            return dict(v)
        out = {key: v[key] for key in _top(v, k, lambda key: (-v[key], key))}
        rest = [x for key, x in v.items() if key not in out]
        # fsum: the folded total is correctly rounded whatever the order.
        out[OTHER] = out.get(OTHER, 0.0) + math.fsum(rest)
        return out
    if len(v) <= k:
        return {key: h.copy() for key, h in v.items()}
    out = {key: v[key].copy() for key in _top(v, k, lambda key: (-v[key].count, key))}
    folded = sorted(key for key in v if key not in out)  # merged in a fixed order
    other = out.get(OTHER)
    if other is None:
        other = out[OTHER] = v[folded.pop(0)].copy()
    for key in folded:
        other.merge(v[key])
    return out


def _top(v: dict, k: int, rank) -> list[str]:
    """The ``k`` keys of ``v`` that ``rank`` orders first."""
    if len(v) > _HEAP_RATIO * k:
        return heapq.nsmallest(k, v, key=rank)
    return sorted(v, key=rank)[:k]


def total(v: Value, shape: str) -> float:
    """Scalar: itself; discrete: sum; histogram: count; discrete histogram: total count."""
    if shape == SCALAR:
        return v
    if shape == DISCRETE:
        return math.fsum(v.values())
    if shape == HISTOGRAM:
        return v.count
    if shape == DISCRETE_HISTOGRAM:
        return math.fsum(h.count for h in v.values())
    raise _bad_shape(shape)


def encode(v: Value, shape: str) -> object:
    """JSON- and msgpack-friendly builtins (histograms as ``Histogram.to_json()``)."""
    if shape == SCALAR:
        return float(v)
    if shape == DISCRETE:
        return {key: float(x) for key, x in v.items()}
    if shape == HISTOGRAM:
        return v.to_json()
    if shape == DISCRETE_HISTOGRAM:
        return {key: h.to_json() for key, h in v.items()}
    raise _bad_shape(shape)


def decode(obj: object, shape: str, field: str = "value") -> Value:
    """Validate and build a value of ``shape`` from builtins; InputError naming
    ``field`` if malformed (wrong type, NaN/inf, negative histogram counts, non-string keys...).

    The field of an error inside a breakdown is ``f"{field}.{key}"``.
    """
    if shape == SCALAR:
        return _finite(obj, field)
    if shape == HISTOGRAM:
        return Histogram.from_json(obj, field)
    if shape == DISCRETE:
        fast = _breakdown_fast(obj)
        if fast is not None:
            return fast
        return {key: _finite(x, f"{field}.{key}") for key, x in _items(obj, field)}
    if shape == DISCRETE_HISTOGRAM:
        if type(obj) is dict and set(map(type, obj)) <= _STR:
            return {key: Histogram.from_json(h, f"{field}.{key}") for key, h in obj.items()}
        return {key: Histogram.from_json(h, f"{field}.{key}") for key, h in _items(obj, field)}
    raise _bad_shape(shape)


_STR = frozenset((str,))
_NUMBER_TYPES = frozenset((int, float))  # exact types: bool is not a number here


def _breakdown_fast(obj: object) -> dict[str, float] | None:
    """A valid breakdown checked in bulk (C loops: aggregators decode thousands a second);
    None when anything needs the key-by-key look that names the error."""
    if type(obj) is not dict or not set(map(type, obj)) <= _STR:
        return None
    numbers = obj.values()
    try:
        # A finite sum of finite-or-not numbers means all are finite (inf or nan would show).
        if not set(map(type, numbers)) <= _NUMBER_TYPES or not math.isfinite(math.fsum(numbers)):
            return None
    except OverflowError:
        return None
    return dict(zip(obj, map(float, numbers), strict=True))


# msgspec checks the types and the ranges of the numbers in C (a NaN or an infinity is outside
# every range); what it refuses, the slow path of decode_msgpack refuses naming the field.
_WIRE = {
    SCALAR: msgspec.msgpack.Decoder(FiniteFloat),
    DISCRETE: msgspec.msgpack.Decoder(dict[str, FiniteFloat]),
    HISTOGRAM: msgspec.msgpack.Decoder(HistogramWire),
    DISCRETE_HISTOGRAM: msgspec.msgpack.Decoder(dict[str, HistogramWire]),
}


def decode_msgpack(data: bytes, shape: str, field: str = "value") -> Value:
    """:func:`decode` of a value encoded with msgpack (as values travel on the bus), with the
    type checks done by msgspec in C: the aggregators' hot path. InputError as :func:`decode`;
    msgspec.DecodeError if ``data`` is not msgpack at all."""
    try:
        obj = _WIRE[shape].decode(data)
    except msgspec.ValidationError:
        obj = None
    except KeyError:
        raise _bad_shape(shape) from None
    if obj is not None:
        if shape == HISTOGRAM:
            histograms = Histogram.from_wires([obj])
            if histograms is not None:
                return histograms[0]
        elif shape == DISCRETE_HISTOGRAM:
            histograms = Histogram.from_wires(obj.values())
            if histograms is not None:
                return dict(zip(obj, histograms, strict=True))
        else:  # a number or a breakdown: msgspec checked all
            return obj
    return decode(msgspec.msgpack.decode(data), shape, field)  # invalid: the slow path says why


def _finite(x: object, field: str) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise InputError(field, "must be a number")
    try:
        f = float(x)
    except OverflowError:
        raise InputError(field, "must be a finite number") from None
    if not math.isfinite(f):
        raise InputError(field, "must be a finite number")
    return f


def _items(obj: object, field: str) -> list[tuple[str, object]]:
    if not isinstance(obj, dict):
        raise InputError(field, "must be an object {key: value}")
    items = list(obj.items())
    for key, _ in items:
        if not isinstance(key, str):
            raise InputError(field, f"keys must be strings, not {type(key).__name__}")
    return items
