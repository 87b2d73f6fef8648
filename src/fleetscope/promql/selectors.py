"""Instant and range selectors: series read from the storage, at every step.

An instant selector at time ``T`` takes each series' latest sample with
``T - lookback <= t <= T`` (Prometheus 2.x; a stale marker there means no sample); a range
selector keeps the samples and leaves the windows to ``windows``. ``offset`` moves ``T``
back, ``@`` pins it (``@ start()``/``@ end()`` to the query's start or end), both as in
Prometheus, where ``@`` and ``offset`` together mean ``@``-time minus offset.
"""

from __future__ import annotations

import datetime

import numpy as np
import promql_parser

from fleetscope.promql.context import Context
from fleetscope.promql.errors import BAD_DATA, PromQLError, unsupported
from fleetscope.promql.labels import from_mapping
from fleetscope.promql.matchers import Matcher, from_selector
from fleetscope.promql.storage import Series, is_stale
from fleetscope.promql.values import Matrix, RawSeries, Vector

_MS = datetime.timedelta(milliseconds=1)
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


def duration_ms(delta: datetime.timedelta | None) -> int:
    return 0 if delta is None else delta // _MS


def at_ms(node: promql_parser.Expr, ctx: Context) -> int | None:
    """The time an ``@`` modifier pins ``node`` to, or None."""
    try:
        at = node.at
        if at is None:
            return None
        kind = str(at.type).rsplit(".", 1)[-1]
        if kind == "Start":
            return ctx.query_start_ms
        if kind == "End":
            return ctx.query_end_ms
        moment = at.at
    except BaseException as exc:  # promql-parser panics (a BaseException) on times before 1970
        if type(exc).__name__ != "PanicException":
            raise
        raise unsupported("an @ time before 1970") from None
    return (moment - _EPOCH) // _MS


def reference_times(node: promql_parser.Expr, ctx: Context) -> np.ndarray:
    """The time each step reads ``node`` (a selector or subquery) at: the step's time, or the
    ``@`` time, minus the offset."""
    pinned = at_ms(node, ctx)
    base = ctx.steps if pinned is None else np.full(ctx.k, pinned, dtype=np.int64)
    return base - duration_ms(node.offset)


def matchers_of(node: promql_parser.VectorSelector) -> list[Matcher]:
    try:
        return from_selector(node)
    except ValueError as exc:
        raise PromQLError(BAD_DATA, str(exc)) from exc


def _select(ctx: Context, node: promql_parser.VectorSelector, start_ms: int, end_ms: int) -> list[Series]:
    series = ctx.storage.select(matchers_of(node), start_ms, end_ms, ctx.step_ms)
    ctx.check()
    return sorted(series, key=lambda s: from_mapping(s.labels))


def vector_selector(ctx: Context, node: promql_parser.VectorSelector,
                    refs: np.ndarray | None = None) -> Vector:
    """The instant vector ``node`` selects at every step (with each sample's own timestamp in
    ``times``, for ``timestamp()``)."""
    refs = reference_times(node, ctx) if refs is None else refs
    lookback = ctx.limits.lookback_ms
    series = _select(ctx, node, int(refs.min()) - lookback, int(refs.max()))
    labels, values, present, times, hists = [], [], [], [], []
    any_hist = False
    for s in series:
        idx = np.searchsorted(s.times, refs, side="right") - 1
        at = np.maximum(idx, 0)
        t = s.times[at] if len(s.times) else np.zeros(len(refs), np.int64)
        ok = (idx >= 0) & (t >= refs - lookback)
        if s.values is not None:
            v = s.values[at]
            ok &= ~is_stale(v)
            h = None
        else:
            v = np.zeros(len(refs))
            h = np.empty(len(refs), dtype=object)
            h[:] = [s.histograms[i] for i in at]
            h[~ok] = None
            any_hist = True
        if not ok.any():
            continue
        labels.append(from_mapping(s.labels))
        values.append(v)
        present.append(ok)
        times.append(t)
        hists.append(h)
    if not labels:
        return Vector.empty(ctx.k)
    hist_matrix = None
    if any_hist:
        hist_matrix = np.full((len(labels), ctx.k), None, dtype=object)
        for i, h in enumerate(hists):
            if h is not None:
                hist_matrix[i] = h
    out = Vector(labels, np.array(values), np.array(present), hist_matrix, np.array(times))
    ctx.budget.take(out.samples)
    return out


def _raw(s: Series, start_ms: int, end_ms: int) -> RawSeries:
    labels = from_mapping(s.labels)
    lo = int(np.searchsorted(s.times, start_ms, side="left"))
    hi = int(np.searchsorted(s.times, end_ms, side="right"))
    times = s.times[lo:hi]
    if s.values is None:
        return RawSeries(labels, times, None, list(s.histograms[lo:hi]))
    values = s.values[lo:hi]
    fresh = ~is_stale(values)
    if fresh.all():
        return RawSeries(labels, times, values)
    return RawSeries(labels, times[fresh], values[fresh])


def load_range(ctx: Context, selector: promql_parser.VectorSelector, range_ms: int,
               ends: np.ndarray, read_ends: np.ndarray | None = None) -> Matrix:
    """The samples a range selector reads over all of its windows (stale markers dropped).
    ``read_ends`` (default ``ends``) are the windows Prometheus reads samples for, where
    they differ from those it evaluates (see ``predict_linear`` with ``@`` in the engine)."""
    read_ends = ends if read_ends is None else read_ends
    start, end = int(read_ends.min()) - range_ms, int(read_ends.max())
    series = _select(ctx, selector, start, end)
    raw = [r for r in (_raw(s, start, end) for s in series) if len(r.times)]
    matrix = Matrix(raw, range_ms, ends)
    ctx.budget.take(matrix.samples)
    return matrix
