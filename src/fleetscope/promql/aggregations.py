"""Aggregation operators (``sum``, ``avg``, … with ``by``/``without``), as Prometheus 2.42.

Series are put in groups once (their labels do not change over the steps); each operator then
walks the group's series in order, every step at once, with the same arithmetic and the same
order of additions as Prometheus' ``aggregation()`` (a first sample starts a group; ``avg``
is an incremental mean; ``stddev`` Welford's). ``topk``/``bottomk`` and ``quantile`` rank the
values of each group at each step with NaN last (worst), as Prometheus' heaps do.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fleetscope.promql import histograms
from fleetscope.promql.context import Context
from fleetscope.promql.errors import execution, unsupported
from fleetscope.promql.labels import NAME, Labels, drop, keep, valid_name, with_label
from fleetscope.promql.rangefuncs import quantile_sorted, sort_nan_first
from fleetscope.promql.result import format_f
from fleetscope.promql.values import Scalar, String, Vector

SUPPORTED = frozenset(("sum", "avg", "min", "max", "count", "group", "stddev", "stdvar", "topk", "bottomk",
                       "quantile", "count_values"))
MAX_INT64 = 9223372036854774784  # the largest float that converts to an int64
MIN_INT64 = -9223372036854775808


class Grouping:
    """``by``/``without`` labels: the group key of a series and the labels of its group."""

    def __init__(self, names: Sequence[str], without: bool) -> None:
        self.without = without
        self.names = frozenset(names)
        self.dropped = self.names | {NAME}

    def key(self, ls: Labels) -> Labels:
        return drop(ls, self.dropped) if self.without else keep(ls, self.names)


def aggregate(op: str, vector: Vector, grouping: Grouping, param: Scalar | String | None,
              ctx: Context) -> Vector:
    if op not in SUPPORTED:
        raise unsupported(f"the aggregation {op}")
    if op == "count_values":
        return _count_values(vector, grouping, param.value, ctx)
    if vector.hists is not None and vector.histogram_mask().any() and op != "sum":
        raise unsupported(f"{op}() of native histograms")
    groups: dict[Labels, list[int]] = {}
    for i, ls in enumerate(vector.labels):
        groups.setdefault(grouping.key(ls), []).append(i)
    if op in ("topk", "bottomk"):
        return _top(vector, groups, param.values, op == "topk", ctx)
    labels, values, present, hists = [], [], [], []
    for key, members in groups.items():
        ctx.check()
        if op == "quantile":
            value, ok = _quantile(vector, members, param.values)
            h = None
        else:
            value, ok, h = _reduce(op, vector, members)
        labels.append(key)
        values.append(value)
        present.append(ok)
        hists.append(h)
    if not labels:
        return Vector.empty(ctx.k)
    hist_matrix = None
    if any(h is not None for h in hists):
        hist_matrix = np.full((len(labels), ctx.k), None, dtype=object)
        for i, h in enumerate(hists):
            if h is not None:
                hist_matrix[i] = h
    return Vector(labels, np.array(values), np.array(present), hist_matrix).nonempty()


def _reduce(op: str, vector: Vector, members: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    k = vector.values.shape[1]
    started = np.zeros(k, dtype=bool)
    value = np.zeros(k)
    mean = np.zeros(k)
    count = np.zeros(k)
    for i in members:
        p, v = vector.present[i], vector.values[i]
        first, more = p & ~started, p & started
        count = count + p
        if op == "sum":
            value = np.where(first, v, np.where(more, value + v, value))
        elif op == "avg":
            value = np.where(first, v, value)
            # Once the mean is infinite it stays, unless a NaN or an infinity of the other sign comes.
            inf = np.isinf(v)
            stays = np.isinf(value) & ((inf & ((value > 0) == (v > 0))) | (~inf & ~np.isnan(v)))
            step = more & ~stays
            value = np.where(step, value + (v / count - value / count), value)
        elif op == "max":
            value = np.where(first | (more & ((value < v) | np.isnan(value))), v, value)
        elif op == "min":
            value = np.where(first | (more & ((value > v) | np.isnan(value))), v, value)
        elif op in ("stddev", "stdvar"):
            mean = np.where(first, v, mean)
            value = np.where(first, 0.0, value)
            delta = v - mean
            mean = np.where(more, mean + delta / count, mean)
            value = np.where(more, value + delta * (v - mean), value)
        started |= p
    if op == "count":
        value = count.copy()
    elif op == "group":
        value = np.ones(k)
    elif op == "stdvar":
        value = value / count
    elif op == "stddev":
        value = np.sqrt(value / count)
    hists = None
    if op == "sum" and vector.hists is not None:
        hists, started = _sum_histograms(vector, members, started)
    return value, started, hists


def _sum_histograms(vector: Vector, members: list[int], present: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The sum of the native histograms of a group; a step with floats and histograms
    together has no result (Prometheus cannot add the two)."""
    kinds = vector.histogram_mask()[members]
    floats = vector.present[members] & ~kinds
    out = np.full(present.shape, None, dtype=object)
    ok = present & ~(kinds.any(axis=0) & floats.any(axis=0))
    for j in np.flatnonzero(ok & kinds.any(axis=0)):
        chosen = [i for i, m in zip(members, kinds[:, j], strict=True) if m]
        out[j] = histograms.total([vector.hists[i, j] for i in chosen])
    return out, ok


def _quantile(vector: Vector, members: list[int], q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    values = vector.values[members].T  # (k, m): one row per step
    active = vector.present[members].T
    ordered = sort_nan_first(values, active)
    return quantile_sorted(q, ordered, active.sum(axis=1)), active.any(axis=1)


def _top(vector: Vector, groups: dict[Labels, list[int]], param: np.ndarray, largest: bool,
         ctx: Context) -> Vector:
    """``topk``/``bottomk``: the series themselves (all their labels), where they rank in
    their group; an instant query lists each group's best first, as Prometheus."""
    with np.errstate(invalid="ignore"):
        if not ((param <= MAX_INT64) & (param >= MIN_INT64)).all():
            bad = param[~((param <= MAX_INT64) & (param >= MIN_INT64))][0]
            raise execution(f"Scalar value {format_f(bad)} overflows int64")
    limit = np.trunc(param)
    selected = np.zeros(vector.present.shape, dtype=bool)
    rank_of = np.zeros(vector.present.shape, dtype=np.int64)
    for members in groups.values():
        ctx.check()
        values = vector.values[members]
        active = vector.present[members]
        nan = np.isnan(values)
        key = -values if largest else values
        # Best first: active before inactive, numbers before NaN, then by value.
        order = np.lexsort((np.where(nan, 0.0, key), nan, ~active), axis=0)
        ranks = np.empty_like(order)
        np.put_along_axis(ranks, order, np.arange(len(members))[:, None], axis=0)
        selected[members] = active & (ranks < limit)
        rank_of[members] = ranks
    if ctx.k == 1:
        order = []
        for members in groups.values():
            chosen = [i for i in members if selected[i, 0]]
            order.extend(sorted(chosen, key=lambda i: rank_of[i, 0]))
        return Vector([vector.labels[i] for i in order], vector.values[order], selected[order])
    out = Vector(vector.labels, vector.values, selected)
    return out.nonempty()


def _count_values(vector: Vector, grouping: Grouping, label: str, ctx: Context) -> Vector:
    if not valid_name(label):
        raise execution(f'invalid label name "{label}"')
    if vector.hists is not None and vector.histogram_mask().any():
        raise unsupported("count_values() of native histograms")
    by = None if grouping.without else Grouping([*grouping.names, label], False)
    counts: dict[Labels, np.ndarray] = {}
    for i, ls in enumerate(vector.labels):
        ctx.check()
        present, values = vector.present[i], vector.values[i]
        if not present.any():
            continue
        distinct = np.unique(values[present])
        if np.isnan(values[present]).any():
            distinct = np.append(distinct[~np.isnan(distinct)], np.nan)
        for v in distinct:
            steps = present & (np.isnan(values) if np.isnan(v) else values == v)
            metric = with_label(ls, label, format_f(float(v)))
            key = grouping.key(metric) if by is None else by.key(metric)
            counts[key] = counts.get(key, 0) + steps
    if not counts:
        return Vector.empty(ctx.k)
    values = np.array([np.asarray(c, dtype=np.float64) for c in counts.values()])
    return Vector(list(counts), values, values > 0)
