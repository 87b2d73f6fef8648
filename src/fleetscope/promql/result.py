"""The answer of a query as the ``data`` field of Prometheus' HTTP API (2.42).

``{"resultType": "vector", "result": [{"metric": {...}, "value": [t, "v"]}, ...]}``; a
native histogram sample is ``"histogram": [t, {"count": "…", "sum": "…", "buckets":
[[rule, "lower", "upper", "count"], ...]}]`` instead of ``"value"`` (``"histograms"`` beside
``"values"`` in a matrix, each key only when there is something to put in it). Times are
seconds as floats; values are strings formatted as Prometheus formats them (Go's shortest
representation, ``'e'`` notation below 1e-6 and from 1e21: ``"1e+21"``, ``"NaN"``,
``"+Inf"``).
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import NamedTuple

import numpy as np

from fleetscope.model.histogram import Histogram
from fleetscope.promql import histograms
from fleetscope.promql.labels import to_dict
from fleetscope.promql.values import Matrix, Scalar, String, Vector

MATRIX, VECTOR, SCALAR, STRING = "matrix", "vector", "scalar", "string"


class Result(NamedTuple):
    """A query's answer: ``data`` is the API's ``data`` field; ``warnings`` its warnings."""

    data: dict
    warnings: list[str]


def _shortest(f: float) -> Decimal:
    return Decimal(repr(f))  # repr: the shortest digits that read back as f, like Go's -1 precision


def format_f(f: float) -> str:
    """``strconv.FormatFloat(f, 'f', -1, 64)``: fixed notation, shortest digits."""
    text = repr(f)
    if "e" not in text and "n" not in text:  # the common case: repr is already fixed notation
        return text[:-2] if text.endswith(".0") else text
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    text = format(_shortest(f), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def _format_e(f: float) -> str:
    sign, digits, exponent = _shortest(f).as_tuple()
    digits = list(digits)
    while len(digits) > 1 and digits[-1] == 0:
        digits.pop()
        exponent += 1
    power = exponent + len(digits) - 1
    mantissa = str(digits[0]) + ("." + "".join(map(str, digits[1:])) if len(digits) > 1 else "")
    return f"{'-' if sign else ''}{mantissa}e{'-' if power < 0 else '+'}{abs(power):02d}"


def format_value(f: float) -> str:
    """A sample value as the HTTP API writes it (jsonutil.MarshalValue)."""
    f = float(f)
    if 1e-4 <= abs(f) < 1e16 or f == 0:  # fixed notation in Go and in Python's repr
        text = repr(f)
        return text[:-2] if text.endswith(".0") else text
    if math.isfinite(f) and (abs(f) < 1e-6 or abs(f) >= 1e21):
        return _format_e(f)
    return format_f(f)


def format_values(values: np.ndarray) -> list[str]:
    """:func:`format_value` of every value (the fast way for the many points of a range query)."""
    out = []
    for v in values.tolist():
        text = repr(v)
        if text.endswith(".0"):
            text = text[:-2]
        elif "e" in text or "n" in text:
            text = format_value(v)
        out.append(text)
    return out


def _time(t_ms: int) -> float:
    return int(t_ms) / 1000


def histogram_json(h: Histogram) -> dict:
    out: dict = {"count": format_value(h.count), "sum": format_value(h.sum)}
    found = [[b.rule, format_value(b.lower), format_value(b.upper), format_value(b.count)]
             for b in histograms.buckets(h) if b.count != 0]
    if found:
        out["buckets"] = found
    return out


def _point(vector: Vector, i: int, j: int, t: int) -> tuple[str, list]:
    h = None if vector.hists is None else vector.hists[i, j]
    if h is not None:
        return "histogram", [_time(t), histogram_json(h)]
    return "value", [_time(t), format_value(vector.values[i, j])]


def vector_result(vector: Vector, t_ms: int, column: int = 0) -> dict:
    result = []
    for i, ls in enumerate(vector.labels):
        if vector.present[i, column]:
            key, point = _point(vector, i, column, t_ms)
            result.append({"metric": to_dict(ls), key: point})
    return {"resultType": VECTOR, "result": result}


def matrix_of_vector(vector: Vector, steps: np.ndarray) -> dict:
    """A range query's answer: every series with its points, series sorted by labels."""
    seconds = (steps / 1000).tolist()
    kinds = vector.histogram_mask() if vector.hists is not None else None
    result = []
    for i in sorted(range(len(vector.labels)), key=lambda i: vector.labels[i]):
        at = vector.present[i] if kinds is None else vector.present[i] & ~kinds[i]
        columns = np.flatnonzero(at).tolist()
        texts = format_values(vector.values[i, columns])
        values = [[seconds[j], text] for j, text in zip(columns, texts, strict=True)]
        hists = [] if kinds is None else [[seconds[j], histogram_json(vector.hists[i, j])]
                                          for j in np.flatnonzero(kinds[i]).tolist()]
        if values or hists:
            result.append(_series(vector.labels[i], values, hists))
    return {"resultType": MATRIX, "result": result}


def _series(labels, values: list, hists: list) -> dict:
    series: dict = {"metric": to_dict(labels)}
    if values:
        series["values"] = values
    if hists:
        series["histograms"] = hists
    return series


def matrix_of_range(matrix: Matrix) -> dict:
    """An instant query of a range vector: each series' samples in its window."""
    end = int(matrix.ends[0])
    start = end - matrix.range_ms
    result = []
    for s in sorted(matrix.series, key=lambda s: s.labels):
        lo = int(np.searchsorted(s.times, start, side="left"))
        hi = int(np.searchsorted(s.times, end, side="right"))
        if lo >= hi:
            continue
        times = s.times[lo:hi]
        if s.values is not None:
            values = [[_time(t), format_value(v)] for t, v in zip(times, s.values[lo:hi], strict=True)]
            result.append(_series(s.labels, values, []))
        else:
            hists = [[_time(t), histogram_json(h)] for t, h in zip(times, s.hists[lo:hi], strict=True)]
            result.append(_series(s.labels, [], hists))
    return {"resultType": MATRIX, "result": result}


def scalar_result(scalar: Scalar, t_ms: int, column: int = 0) -> dict:
    return {"resultType": SCALAR, "result": [_time(t_ms), format_value(scalar.values[column])]}


def string_result(string: String, t_ms: int) -> dict:
    return {"resultType": STRING, "result": [_time(t_ms), string.value]}
