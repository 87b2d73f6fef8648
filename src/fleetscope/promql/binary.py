"""Binary operators between scalars and instant vectors, as Prometheus 2.42.

Arithmetic (``+ - * / % ^``, ``atan2``) drops the metric name; comparisons filter (keeping the
vector's value) or, with ``bool``, give 0/1 and drop the name. Between two vectors, series
match on their labels (``on``/``ignoring``; all but the name by default), one to one unless
``group_left``/``group_right`` say which side has many (the labels listed after it are copied
from the one side); ``and``/``or``/``unless`` are set operations on the matching labels. The
errors are Prometheus': duplicate series on the "one" side, several matches one to one, and a
grouping that does not tell the results apart.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fleetscope.promql import histograms
from fleetscope.promql.errors import execution, unsupported
from fleetscope.promql.labels import NAME, Labels, drop, get, keep, text, with_label, without_name
from fleetscope.promql.values import Scalar, Vector, combine

ARITHMETIC: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide, "%": np.fmod, "^": np.power,
    "atan2": np.arctan2,
}
COMPARISON: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "==": np.equal, "!=": np.not_equal, ">": np.greater, "<": np.less, ">=": np.greater_equal,
    "<=": np.less_equal,
}
SET = ("and", "or", "unless")


class Matching:
    """How two vectors' series meet: ``card`` is "one-to-one", "many-to-one", "one-to-many"
    or "many-to-many" (set operators); ``on`` with ``labels``, or ignoring them; ``include``
    the labels of ``group_left(...)``/``group_right(...)``."""

    def __init__(self, card: str, on: bool, labels: list[str], include: list[str]) -> None:
        self.card = card
        self.on = on
        self.labels = frozenset(labels)
        self.ignored = self.labels | {NAME}
        self.include = include

    def signature(self, ls: Labels) -> Labels:
        return keep(ls, self.labels) if self.on else drop(ls, self.ignored)


def _no_histograms(vector: Vector, op: str) -> None:
    if vector.hists is not None and vector.histogram_mask().any():
        raise unsupported(f"the operator {op} on native histograms")


def scalars(op: str, lhs: Scalar, rhs: Scalar) -> Scalar:
    if op in ARITHMETIC:
        return Scalar(ARITHMETIC[op](lhs.values, rhs.values))
    return Scalar(COMPARISON[op](lhs.values, rhs.values).astype(np.float64))  # the parser demands bool


def vector_scalar(op: str, vector: Vector, scalar: Scalar, scalar_left: bool, return_bool: bool) -> Vector:
    _no_histograms(vector, op)
    lv, rv = (scalar.values, vector.values) if scalar_left else (vector.values, scalar.values)
    if op in ARITHMETIC:
        return combine([without_name(ls) for ls in vector.labels], ARITHMETIC[op](lv, rv), vector.present)
    keep_mask = COMPARISON[op](lv, rv)
    if return_bool:
        labels = [without_name(ls) for ls in vector.labels]
        return combine(labels, keep_mask.astype(np.float64), vector.present)
    return Vector(vector.labels, vector.values, vector.present & keep_mask)


def vectors(op: str, lhs: Vector, rhs: Vector, matching: Matching, return_bool: bool) -> Vector:
    if op in SET:
        return _set_operation(op, lhs, rhs, matching)
    return _matched(op, lhs, rhs, matching, return_bool)


def _presence_by_signature(vector: Vector,
                           matching: Matching) -> tuple[list[Labels], dict[Labels, np.ndarray]]:
    sigs = [matching.signature(ls) for ls in vector.labels]
    seen: dict[Labels, np.ndarray] = {}
    for sig, row in zip(sigs, vector.present, strict=True):
        seen[sig] = seen[sig] | row if sig in seen else row.copy()
    return sigs, seen


def _set_operation(op: str, lhs: Vector, rhs: Vector, matching: Matching) -> Vector:
    k = lhs.present.shape[1]
    nothing = np.zeros(k, dtype=bool)
    left_sigs, _ = _presence_by_signature(lhs, matching)
    right_sigs, right_seen = _presence_by_signature(rhs, matching)
    if op == "and":
        present = np.array([row & right_seen.get(s, nothing) for s, row in zip(left_sigs, lhs.present,
                                                                               strict=True)]).reshape(lhs.present.shape)
        return Vector(lhs.labels, lhs.values, present, lhs.hists).nonempty()
    if op == "unless":
        present = np.array([row & ~right_seen.get(s, nothing) for s, row in zip(left_sigs, lhs.present,
                                                                                strict=True)]).reshape(lhs.present.shape)
        return Vector(lhs.labels, lhs.values, present, lhs.hists).nonempty()
    _, left_seen = _presence_by_signature(lhs, matching)
    right_present = np.array([row & ~left_seen.get(s, nothing) for s, row in zip(right_sigs, rhs.present,
                                                                                 strict=True)]).reshape(rhs.present.shape)
    hists = None
    if lhs.hists is not None or rhs.hists is not None:
        hists = np.concatenate([_hists_or_none(lhs), _hists_or_none(rhs)])
    out = combine(lhs.labels + rhs.labels, np.concatenate([lhs.values, rhs.values]),
                  np.concatenate([lhs.present, right_present]), hists)
    return out.nonempty()


def _hists_or_none(vector: Vector) -> np.ndarray:
    return vector.hists if vector.hists is not None else np.full(vector.present.shape, None, dtype=object)


def _result_labels(many: Labels, one: Labels, op: str, matching: Matching) -> Labels:
    """Prometheus' resultMetric: the "many" side's labels, less the name for arithmetic, less
    (or only) the matching labels one to one, with the ``group_x`` labels of the "one" side."""
    out = without_name(many) if op in ARITHMETIC else many
    if matching.card == "one-to-one":
        out = keep(out, matching.labels) if matching.on else drop(out, matching.labels)
    for name in matching.include:
        out = with_label(out, name, get(one, name))
    return out


def _one_side(one: Vector, sigs: list[Labels], matching: Matching,
              active: np.ndarray) -> dict[Labels, np.ndarray]:
    """Per signature, the row of the "one" side present at each step (-1: none); two at one step
    is Prometheus' many-to-many error (at the steps where the other side has samples)."""
    k = one.present.shape[1]
    rows: dict[Labels, np.ndarray] = {}
    for i, sig in enumerate(sigs):
        row = rows.setdefault(sig, np.full(k, -1, dtype=np.int64))
        clash = one.present[i] & (row >= 0) & active
        if clash.any():
            j = int(np.flatnonzero(clash)[0])
            other = one.labels[row[j]]
            side = "left" if matching.card == "one-to-many" else "right"
            matched = matching.signature(one.labels[i])
            raise execution(
                f"found duplicate series for the match group {text(matched)} on the {side} hand-side of the "
                f"operation: [{text(one.labels[i])}, {text(other)}];many-to-many matching not allowed: "
                "matching labels must be unique on one side")
        row[one.present[i] & (row < 0)] = i
    return rows


def _matched(op: str, lhs: Vector, rhs: Vector, matching: Matching, return_bool: bool) -> Vector:
    many, one = (rhs, lhs) if matching.card == "one-to-many" else (lhs, rhs)
    k = lhs.present.shape[1]
    both = many.present.any(axis=0) & one.present.any(axis=0)
    many_sigs = [matching.signature(ls) for ls in many.labels]
    one_rows = _one_side(one, [matching.signature(ls) for ls in one.labels], matching, both)
    hist_many, hist_one = many.histogram_mask(), one.histogram_mask()
    labels, values, present, hists = [], [], [], []
    taken: dict[Labels, np.ndarray] = {}  # one to one: steps a signature has produced a result at
    produced: dict[tuple[Labels, Labels], np.ndarray] = {}  # many to one: (signature, result labels)
    for i, sig in enumerate(many_sigs):
        partner = one_rows.get(sig)
        if partner is None:
            continue
        matched = many.present[i] & (partner >= 0)
        for j in np.unique(partner[matched]):
            steps = matched & (partner == j)
            lv, rv = many.values[i], one.values[j]
            if matching.card == "one-to-many":
                lv, rv = rv, lv
            kinds = (hist_many[i] & steps), (hist_one[j] & steps)
            kept = np.ones(k, dtype=bool) if return_bool else _kept(op, lv, rv)
            value, hist = _float_op(op, lv, rv, return_bool), None
            if kinds[0].any() or kinds[1].any():
                value, kept, hist = _histogram_op(op, many, one, i, j, matching, kinds, value)
            result_steps = steps & kept
            metric = _result_labels(many.labels[i], one.labels[j], op, matching)
            if return_bool:
                metric = without_name(metric)
            _check_unique_match(matching, sig, metric, result_steps, taken, produced)
            labels.append(metric)
            values.append(value)
            present.append(result_steps)
            hists.append(hist)
    if not labels:
        return Vector.empty(k)
    hist_matrix = None
    if any(h is not None for h in hists):
        hist_matrix = np.array([h if h is not None else np.full(k, None, dtype=object) for h in hists])
    return combine(labels, np.array(values), np.array(present), hist_matrix).nonempty()


def _kept(op: str, lv: np.ndarray, rv: np.ndarray) -> np.ndarray:
    if op in ARITHMETIC:
        return np.ones(lv.shape, dtype=bool)
    return COMPARISON[op](lv, rv)


def _float_op(op: str, lv: np.ndarray, rv: np.ndarray, return_bool: bool) -> np.ndarray:
    if op in ARITHMETIC:
        return ARITHMETIC[op](lv, rv)
    if return_bool:
        return COMPARISON[op](lv, rv).astype(np.float64)
    return lv  # a comparison keeps the left-hand value


def _histogram_op(op: str, many: Vector, one: Vector, i: int, j: int, matching: Matching,
                  kinds: tuple, value: np.ndarray) -> tuple:
    """Native histograms meet only in ``+`` (a histogram and a float there give nothing, as in
    Prometheus); any other operator on a histogram is refused (Prometheus 2.42 computes it on
    the histogram's unset float value)."""
    if op != "+":
        raise unsupported(f"the operator {op} on native histograms")
    both = kinds[0] & kinds[1]
    out = np.full(len(value), None, dtype=object)
    for t in np.flatnonzero(both):
        a, b = many.hists[i, t], one.hists[j, t]
        if matching.card == "one-to-many":
            a, b = b, a
        out[t] = histograms.add(a, b)
    return value, ~(kinds[0] ^ kinds[1]), out


def _check_unique_match(matching: Matching, sig: Labels, metric: Labels, steps: np.ndarray,
                        taken: dict, produced: dict) -> None:
    if matching.card == "one-to-one":
        before = taken.get(sig)
        if before is not None and (before & steps).any():
            raise execution("multiple matches for labels: many-to-one matching must be explicit "
                            "(group_left/group_right)")
        taken[sig] = steps.copy() if before is None else before | steps
        return
    key = (sig, metric)
    before = produced.get(key)
    if before is not None and (before & steps).any():
        raise execution("multiple matches for labels: grouping labels must ensure unique matches")
    produced[key] = steps.copy() if before is None else before | steps
