"""PromQL's functions, as Prometheus 2.42 evaluates them.

Functions over range vectors (``rate``, ``*_over_time``, …) take a :class:`Matrix` and run
the window code of ``rangefuncs`` (and ``histograms.rate`` for native histograms); the
others take evaluated instant vectors and scalars. Most drop the metric name; ``last_over_time``,
``label_replace``, ``label_join``, ``sort`` and ``sort_desc`` keep it, as in Prometheus.
A function Prometheus 2.42 has but fleetscope does not evaluate, or a function that would
have to read a native histogram where 2.42 itself gives no meaningful number, is refused with
``bad_data``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import re2

from fleetscope.promql import histograms, rangefuncs
from fleetscope.promql.context import Context
from fleetscope.promql.errors import execution, unsupported
from fleetscope.promql.labels import BUCKET, NAME, Labels, get, valid_name, with_label, without_name
from fleetscope.promql.values import Matrix, Scalar, Vector, check_unique, combine
from fleetscope.promql.windows import Windows, chunks

# The functions over a range vector, and which argument is the range vector.
RANGE_ARGUMENT = {name: 0 for name in rangefuncs.SIMPLE} | {
    "quantile_over_time": 1, "predict_linear": 0, "absent_over_time": 0,
}

_MATH: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "abs": np.abs, "ceil": np.ceil, "floor": np.floor, "exp": np.exp, "sqrt": np.sqrt,
    "ln": np.log, "log2": np.log2, "log10": np.log10,
    "sin": np.sin, "cos": np.cos, "tan": np.tan, "asin": np.arcsin, "acos": np.arccos, "atan": np.arctan,
    "sinh": np.sinh, "cosh": np.cosh, "tanh": np.tanh,
    "asinh": np.arcsinh, "acosh": np.arccosh, "atanh": np.arctanh,
    "deg": lambda v: v * 180 / math.pi, "rad": lambda v: v * math.pi / 180,
    "sgn": lambda v: np.where(v < 0, -1.0, np.where(v > 0, 1.0, v)),
}

_DATE = ("minute", "hour", "day_of_week", "day_of_month", "day_of_year", "days_in_month", "month", "year")

INSTANT = frozenset((*_MATH, *_DATE, "clamp", "clamp_min", "clamp_max", "round", "label_replace",
                     "label_join", "sort", "sort_desc", "time", "timestamp", "vector", "scalar", "absent",
                     "pi", "histogram_quantile", "histogram_count", "histogram_sum", "histogram_fraction"))
SUPPORTED = INSTANT | frozenset(RANGE_ARGUMENT)


def _no_histograms(vector: Vector, name: str) -> None:
    if vector.hists is not None and vector.histogram_mask().any():
        raise unsupported(f"{name}() of a native histogram")


def _output(vector: Vector, values: np.ndarray, present: np.ndarray, keep_name: bool = False) -> Vector:
    labels = vector.labels if keep_name else [without_name(ls) for ls in vector.labels]
    return combine(labels, values, present)


# -- functions over range vectors ---------------------------------------------------------------


def over_range(name: str, matrix: Matrix, ctx: Context, scalars: list[Scalar]) -> Vector:
    """A function over a range vector, at every step."""
    floats = [s for s in matrix.series if s.values is not None]
    hists = [s for s in matrix.series if s.values is None]
    labels, values, present, hist_out = [], [], [], []
    for part in chunks(len(floats), ctx.k):
        ctx.check()
        w = Windows(floats[part], matrix.range_ms, matrix.ends)
        v, ok = _range_values(name, w, ctx, scalars)
        values.append(v)
        present.append(ok)
        labels.extend(s.labels for s in floats[part])
    for s in hists:
        ctx.check()
        labels.append(s.labels)
        h, ok = _histogram_range(name, s, matrix, ctx)
        hist_out.append((len(labels) - 1, h))
        values.append(np.zeros((1, ctx.k)))
        present.append(ok[None, :])
    if not labels:
        return Vector.empty(ctx.k)
    value_matrix, present_matrix = np.concatenate(values), np.concatenate(present)
    hist_matrix = None
    if hist_out:
        hist_matrix = np.full(value_matrix.shape, None, dtype=object)
        for row, h in hist_out:
            hist_matrix[row] = h
    if name != "last_over_time":
        labels = [without_name(ls) for ls in labels]
    out = Vector(labels, value_matrix, present_matrix, hist_matrix).nonempty()
    check_unique(out)
    return out


def _range_values(name: str, w: Windows, ctx: Context, scalars: list[Scalar]) -> rangefuncs.Result:
    if name in rangefuncs.SIMPLE:
        return rangefuncs.SIMPLE[name](w)
    if name == "quantile_over_time":
        return rangefuncs.quantile_over_time(w, scalars[0].values)
    if name == "predict_linear":
        return rangefuncs.predict_linear(w, ctx.steps, scalars[0].values)
    raise unsupported(f"{name}()")  # absent_over_time is the engine's


_HISTOGRAM_RANGE = ("rate", "increase", "delta", "count_over_time", "last_over_time", "present_over_time")


def _histogram_range(name: str, s, matrix: Matrix, ctx: Context) -> tuple[np.ndarray, np.ndarray]:
    """A function over the windows of a native histogram series: one Python step at a time
    (histograms are objects), for the functions Prometheus 2.42 defines on them."""
    if name not in _HISTOGRAM_RANGE:
        raise unsupported(f"{name}() of a native histogram")
    out = np.full(ctx.k, None, dtype=object)
    ok = np.zeros(ctx.k, dtype=bool)
    lo = np.searchsorted(s.times, matrix.ends - matrix.range_ms, side="left")
    hi = np.searchsorted(s.times, matrix.ends, side="right")
    for j in np.flatnonzero(hi > lo):
        window = s.hists[lo[j]:hi[j]]
        if name in ("count_over_time", "present_over_time"):
            raise unsupported(f"{name}() of a native histogram")
        if name == "last_over_time":
            out[j], ok[j] = window[-1], True
            continue
        if len(window) < 2:
            continue
        out[j] = _histogram_rate(name, window, s.times[lo[j]], s.times[hi[j] - 1], len(window),
                                 int(matrix.ends[j]), matrix.range_ms)
        ok[j] = True
    return out, ok


def _histogram_rate(name: str, window, t_first: int, t_last: int, n: int, end: int, range_ms: int):
    # extrapolatedRate for histograms: the same extrapolation, without the counter's zero point.
    h = histograms.rate(window, name != "delta")
    to_start = float(t_first - (end - range_ms)) / 1000
    to_end = float(end - t_last) / 1000
    sampled = float(t_last - t_first) / 1000
    average = sampled / float(n - 1)
    threshold = average * 1.1
    interval = sampled + (to_start if to_start < threshold else average / 2)
    interval = interval + (to_end if to_end < threshold else average / 2)
    factor = interval / sampled
    if name == "rate":
        factor = factor / rangefuncs._seconds(range_ms)
    return histograms.scaled(h, factor)


def absent_over_time(matrix: Matrix, ctx: Context, labels: Labels) -> Vector:
    """1 (with the selector's equality labels) at the steps where no series has a sample."""
    seen = np.zeros(ctx.k, dtype=bool)
    for s in matrix.series:
        lo = np.searchsorted(s.times, matrix.ends - matrix.range_ms, side="left")
        hi = np.searchsorted(s.times, matrix.ends, side="right")
        seen |= hi > lo
    return _absent(seen, ctx, labels)


def _absent(seen: np.ndarray, ctx: Context, labels: Labels) -> Vector:
    if seen.all():
        return Vector.empty(ctx.k)
    return Vector([labels], np.ones((1, ctx.k)), ~seen[None, :])


def absent(vector: Vector, ctx: Context, labels: Labels) -> Vector:
    return _absent(vector.present.any(axis=0), ctx, labels)


# -- functions over instant vectors ---------------------------------------------------------------


def call(name: str, args: list, ctx: Context) -> Vector | Scalar:
    """An instant-vector or scalar function with evaluated arguments."""
    if name in _MATH:
        vector = args[0]
        _no_histograms(vector, name)
        return _output(vector, _MATH[name](vector.values), vector.present)
    if name in _DATE:
        return _date(name, args, ctx)
    handler = _HANDLERS.get(name)
    if handler is None:
        raise unsupported(f"{name}()")
    return handler(args, ctx)


def _clamp(args: list, ctx: Context) -> Vector:
    vector, low, high = args[0], args[1].values, args[2].values
    _no_histograms(vector, "clamp")
    return _output(vector, np.maximum(low, np.minimum(high, vector.values)), vector.present & ~(high < low))


def _clamp_min(args: list, ctx: Context) -> Vector:
    _no_histograms(args[0], "clamp_min")
    return _output(args[0], np.maximum(args[1].values, args[0].values), args[0].present)


def _clamp_max(args: list, ctx: Context) -> Vector:
    _no_histograms(args[0], "clamp_max")
    return _output(args[0], np.minimum(args[1].values, args[0].values), args[0].present)


def _round(args: list, ctx: Context) -> Vector:
    vector = args[0]
    _no_histograms(vector, "round")
    inverse = 1.0 / (args[1].values if len(args) > 1 else np.ones(ctx.k))
    return _output(vector, np.floor(vector.values * inverse + 0.5) / inverse, vector.present)


def _sort(descending: bool) -> Callable[[list, Context], Vector]:
    def sort(args: list, ctx: Context) -> Vector:
        vector = args[0]
        _no_histograms(vector, "sort_desc" if descending else "sort")
        if ctx.k != 1 or len(vector) < 2:
            return vector.with_labels(vector.labels)  # a range query sorts its series by labels
        v = vector.values[:, 0]
        nan = np.isnan(v)
        order = np.lexsort((-v if descending else v, nan))  # NaN last either way
        return vector.rows(order).with_labels([vector.labels[i] for i in order])
    return sort


def _time(args: list, ctx: Context) -> Scalar:
    return Scalar(ctx.steps / 1000)


def _pi(args: list, ctx: Context) -> Scalar:
    return Scalar(np.full(ctx.k, math.pi))


def _vector(args: list, ctx: Context) -> Vector:
    return Vector([()], args[0].values[None, :].copy(), np.ones((1, ctx.k), dtype=bool))


def _scalar(args: list, ctx: Context) -> Scalar:
    vector = args[0]
    _no_histograms(vector, "scalar")
    one = vector.present.sum(axis=0) == 1
    value = np.where(vector.present, vector.values, 0.0).sum(axis=0)
    return Scalar(np.where(one, value, np.nan))


def timestamp(vector: Vector, ctx: Context) -> Vector:
    """``timestamp()``: a selector's sample times, else the evaluation time of each step."""
    times = vector.times if vector.times is not None else np.broadcast_to(ctx.steps, vector.present.shape)
    return _output(vector, times / 1000, vector.present)


def _timestamp(args: list, ctx: Context) -> Vector:
    return timestamp(args[0], ctx)


def _date(name: str, args: list, ctx: Context) -> Vector:
    if args:
        vector = args[0]
        _no_histograms(vector, name)
        seconds, present, labels = vector.values, vector.present, [without_name(ls) for ls in vector.labels]
    else:
        seconds = (ctx.steps // 1000)[None, :].astype(np.float64)
        present, labels = np.ones((1, ctx.k), bool), [()]
    ok = present & np.isfinite(seconds)
    whole = np.where(ok, np.trunc(np.where(ok, seconds, 0)), 0).astype(np.int64)  # time.Unix(int64(v), 0)
    moment = whole.astype("datetime64[s]")
    day = moment.astype("datetime64[D]")
    month = moment.astype("datetime64[M]")
    month_start, next_month = month.astype("datetime64[D]"), (month + 1).astype("datetime64[D]")
    year = moment.astype("datetime64[Y]")
    fields = {
        "minute": lambda: (whole // 60) % 60,
        "hour": lambda: (whole // 3600) % 24,
        "day_of_week": lambda: (day.astype(np.int64) + 4) % 7,  # 1970-01-01 was a Thursday
        "day_of_month": lambda: (day - month_start).astype(np.int64) + 1,
        "day_of_year": lambda: (day - year.astype("datetime64[D]")).astype(np.int64) + 1,
        "days_in_month": lambda: (next_month - month_start).astype(np.int64),
        "month": lambda: month.astype(np.int64) % 12 + 1,
        "year": lambda: year.astype(np.int64) + 1970,
    }
    values = fields[name]().astype(np.float64)
    return combine(labels, values, ok)


def _go_expand(template: str, match) -> str:
    """Go's ``Regexp.ExpandString``: ``$1``, ``${1}``, ``$name``, ``${name}``, ``$$``."""
    out, i, n = [], 0, len(template)
    while i < n:
        dollar = template.find("$", i)
        if dollar < 0:
            out.append(template[i:])
            break
        out.append(template[i:dollar])
        i = dollar + 1
        if i < n and template[i] == "$":
            out.append("$")
            i += 1
            continue
        brace = i < n and template[i] == "{"
        j = i + 1 if brace else i
        start = j
        while j < n and (template[j].isalnum() or template[j] == "_"):
            j += 1
        name = template[start:j]
        if not name or (brace and (j >= n or template[j] != "}")):
            out.append("$")
            continue
        i = j + 1 if brace else j
        out.append(_group(match, name))
    return "".join(out)


def _group(match, name: str) -> str:
    if name.isdigit() and name.isascii() and not (name[0] == "0" and len(name) > 1):
        index = int(name)
        if index <= match.re.groups:
            return match.group(index) or ""
        return ""
    if name in match.re.groupindex:
        return match.group(name) or ""
    return ""


def _label_replace(args: list, ctx: Context) -> Vector:
    vector, dst, replacement, src, pattern = args[0], *(a.value for a in args[1:])
    try:
        regex = re2.compile(f"^(?:{pattern})$")
    except re2.error:
        raise execution(f"invalid regular expression in label_replace(): {pattern}") from None
    if not valid_name(dst):
        raise execution(f"invalid destination label name in label_replace(): {dst}")
    labels = []
    for ls in vector.labels:
        match = regex.match(get(ls, src))
        labels.append(ls if match is None else with_label(ls, dst, _go_expand(replacement, match)))
    return combine(labels, vector.values, vector.present, vector.hists)


def _label_join(args: list, ctx: Context) -> Vector:
    vector, dst, separator, sources = args[0], args[1].value, args[2].value, [a.value for a in args[3:]]
    for src in sources:
        if not valid_name(src):
            raise execution(f"invalid source label name in label_join(): {src}")
    if not valid_name(dst):
        raise execution(f"invalid destination label name in label_join(): {dst}")
    labels = [with_label(ls, dst, separator.join(get(ls, s) for s in sources)) for ls in vector.labels]
    return combine(labels, vector.values, vector.present, vector.hists)


def _histogram_field(field: str) -> Callable[[list, Context], Vector]:
    def histogram_field(args: list, ctx: Context) -> Vector:
        return _per_histogram(args[-1], lambda h, j: getattr(h, field))
    return histogram_field


def _histogram_fraction(args: list, ctx: Context) -> Vector:
    lower, upper = args[0].values, args[1].values
    return _per_histogram(args[2], lambda h, j: histograms.fraction(lower[j], upper[j], h))


def _per_histogram(vector: Vector, fn: Callable) -> Vector:
    """A float from each native histogram sample; float samples are skipped."""
    mask = vector.histogram_mask()
    values = np.zeros(mask.shape)
    for i, j in zip(*np.nonzero(mask), strict=True):
        values[i, j] = fn(vector.hists[i, j], j)
    return _output(vector, values, mask)


def _histogram_quantile(args: list, ctx: Context) -> Vector:
    """Classic ``le`` buckets grouped by their other labels, and native histograms. Where a
    native histogram and classic buckets of the same labels meet at a step, neither is
    evaluated there (as Prometheus)."""
    q, vector = args[0].values, args[1]
    native = vector.histogram_mask()
    floats = vector.present & ~native
    groups: dict[Labels, list[int]] = {}
    bounds = np.full(len(vector), np.nan)
    for i, ls in enumerate(vector.labels):
        upper = _parse_le(get(ls, BUCKET))
        if upper is not None and floats[i].any():
            bounds[i] = upper
            groups.setdefault(tuple(p for p in ls if p[0] != BUCKET), []).append(i)
    clash = {key: np.zeros(ctx.k, dtype=bool) for key in groups}
    labels, values, present = [], [], []
    for i in np.flatnonzero(native.any(axis=1)):
        row = native[i]
        key = vector.labels[i]
        if key in groups:
            both = row & floats[groups[key]].any(axis=0)
            clash[key] |= both
            row = row & ~both
        value = np.full(ctx.k, np.nan)
        for j in np.flatnonzero(row):
            value[j] = histograms.quantile(q[j], vector.hists[i, j])
        labels.append(without_name(key))
        values.append(value)
        present.append(row)
    for key, members in groups.items():
        value, ok = classic_quantile(q, bounds[members], vector.values[members], floats[members])
        labels.append(tuple(p for p in key if p[0] != NAME))
        values.append(value)
        present.append(ok & ~clash[key])
    if not labels:
        return Vector.empty(ctx.k)
    return combine(labels, np.array(values), np.array(present))


_FLOAT_TEXT = re2.compile(r"^[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
                          r"|(?i:inf|infinity|nan))$")


def _parse_le(text: str) -> float | None:
    """strconv.ParseFloat for a bucket bound (None where Go would fail: the bucket is skipped)."""
    if not text or _FLOAT_TEXT.match(text) is None:
        return None
    return float(text)


def classic_quantile(q: np.ndarray, bounds: np.ndarray, counts: np.ndarray,
                     present: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Prometheus' bucketQuantile over one group of ``le`` buckets at every step: buckets
    sorted by bound, equal bounds added, counts made monotonic, linear interpolation inside
    the bucket (from 0 in the first bucket when its bound is positive); NaN without a +Inf
    bucket, with fewer than two buckets or no observations; the second highest bound when the
    rank falls in the +Inf bucket."""
    k = counts.shape[1]
    out = np.full(k, np.nan)
    ok = present.any(axis=0)
    order = np.argsort(bounds, kind="stable")
    bounds, counts, present = bounds[order], counts[order], present[order]
    patterns = {}
    for j in np.flatnonzero(ok):
        patterns.setdefault(present[:, j].tobytes(), []).append(j)
    for columns in patterns.values():
        rows = present[:, columns[0]]
        out[columns] = _bucket_quantile(q[columns], bounds[rows], counts[rows][:, columns])
    return out, ok


def _bucket_quantile(q: np.ndarray, bounds: np.ndarray, counts: np.ndarray) -> np.ndarray:
    # bounds (m,) ascending, counts (m, s): one set of buckets at s steps.
    n_steps = counts.shape[1]
    if not math.isinf(bounds[-1]) or bounds[-1] < 0:
        return _q_edges(q, np.full(n_steps, np.nan))
    unique, start = np.unique(bounds, return_index=True)
    if len(unique) != len(bounds):
        counts = np.add.reduceat(counts, start, axis=0)
        bounds = unique
    counts = counts.copy()
    high = counts[0].copy()
    for i in range(1, len(bounds)):  # ensureMonotonic
        higher = counts[i] > high
        lower = counts[i] < high
        high = np.where(higher, counts[i], high)
        counts[i] = np.where(lower, high, counts[i])
    m = len(bounds)
    if m < 2:
        return _q_edges(q, np.full(n_steps, np.nan))
    observations = counts[-1]
    rank = q * observations
    reached = counts[:-1] >= rank  # sort.Search over all buckets but the last
    b = np.where(reached.any(axis=0), reached.argmax(axis=0), m - 1)
    cols = np.arange(n_steps)
    prev = np.maximum(b - 1, 0)
    bucket_start = np.where(b > 0, bounds[prev], 0.0)
    bucket_end = bounds[b]
    count = counts[b, cols] - np.where(b > 0, counts[prev, cols], 0.0)
    rank_in = rank - np.where(b > 0, counts[prev, cols], 0.0)
    result = bucket_start + (bucket_end - bucket_start) * (rank_in / count)
    result = np.where((b == 0) & (bounds[0] <= 0), bounds[0], result)
    result = np.where(b == m - 1, bounds[m - 2], result)
    result = np.where(observations == 0, np.nan, result)
    return _q_edges(q, result)


def _q_edges(q: np.ndarray, result: np.ndarray) -> np.ndarray:
    result = np.where(q > 1, np.inf, result)
    result = np.where(q < 0, -np.inf, result)
    return np.where(np.isnan(q), np.nan, result)


_HANDLERS: dict[str, Callable[[list, Context], Vector | Scalar]] = {
    "clamp": _clamp, "clamp_min": _clamp_min, "clamp_max": _clamp_max, "round": _round,
    "sort": _sort(False), "sort_desc": _sort(True), "time": _time, "pi": _pi, "vector": _vector,
    "scalar": _scalar, "timestamp": _timestamp, "label_replace": _label_replace, "label_join": _label_join,
    "histogram_count": _histogram_field("count"), "histogram_sum": _histogram_field("sum"),
    "histogram_fraction": _histogram_fraction, "histogram_quantile": _histogram_quantile,
}
