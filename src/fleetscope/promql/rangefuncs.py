"""The functions over range vectors, on float samples, as Prometheus 2.42 computes them.

Each function takes the :class:`~fleetscope.promql.windows.Windows` of a chunk of series and
returns ``(values, ok)`` of shape ``(m, k)``: ``ok`` where the function has a result (a
window with no sample has none; ``rate`` and friends need two). The loops mirror
``promql/functions.go`` of Prometheus 2.42 statement by statement, over all windows at once
(see ``windows``), so that float rounding comes out the same.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fleetscope.promql.windows import Windows

Result = tuple[np.ndarray, np.ndarray]


def _seconds(range_ms: int) -> float:
    # time.Duration.Seconds(): whole seconds plus the nanoseconds over 1e9.
    return float(range_ms // 1000) + float((range_ms % 1000) * 1_000_000) / 1e9


def _kahan_inc(inc: np.ndarray, total: np.ndarray, comp: np.ndarray, active: np.ndarray) -> tuple:
    # kahanSumInc (Neumaier's variant), where active.
    t = total + inc
    big = np.abs(total) >= np.abs(inc)
    step = np.where(big, (total - t) + inc, (inc - t) + total)
    return np.where(active, t, total), np.where(active, comp + step, comp)


def extrapolated_rate(w: Windows, is_counter: bool, is_rate: bool) -> Result:
    """``rate``, ``increase`` (counters) and ``delta`` (gauges): Prometheus' extrapolatedRate."""
    ok = w.count >= 2
    first, last = w.lo, w.hi - 1
    v_first, v_last = w.value(first), w.value(last)
    t_first, t_last = w.time(first), w.time(last)
    result = v_last - v_first
    if is_counter and w.finite:
        before, has_before = w.previous()
        dropped = np.where(has_before & (w.values < before), before, 0.0)
        result = result + w.window_sum(dropped, skip_first=True)
    elif is_counter:
        prev = v_first
        for c in range(1, w.width):
            v, _, active = w.column(c)
            result = np.where(active & (v < prev), result + prev, result)
            prev = np.where(active, v, prev)
    range_start, range_end = w.ends - w.range_ms, w.ends
    to_start = (t_first - range_start).astype(np.float64) / 1000
    to_end = (range_end - t_last).astype(np.float64) / 1000
    sampled = (t_last - t_first).astype(np.float64) / 1000
    average = sampled / np.maximum(w.count - 1, 1).astype(np.float64)
    if is_counter:
        to_zero = sampled * (v_first / result)
        closer = (result > 0) & (v_first >= 0) & (to_zero < to_start)
        to_start = np.where(closer, to_zero, to_start)
    threshold = average * 1.1
    interval = sampled + np.where(to_start < threshold, to_start, average / 2)
    interval = interval + np.where(to_end < threshold, to_end, average / 2)
    factor = interval / sampled
    if is_rate:
        factor = factor / _seconds(w.range_ms)
    return result * factor, ok


def instant_value(w: Windows, is_rate: bool) -> Result:
    """``irate`` and ``idelta``: the last two samples of each window."""
    last, prev = w.hi - 1, w.hi - 2
    v_last, v_prev = w.value(last), w.value(prev)
    interval = w.time(last) - w.time(prev)
    ok = (w.count >= 2) & (interval != 0)
    if not is_rate:
        return v_last - v_prev, ok
    result = np.where(v_last < v_prev, v_last, v_last - v_prev)
    return result / (interval.astype(np.float64) / 1000), ok


def linear_regression(w: Windows, intercept_time: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(slope, intercept)`` of the least-squares line through each window, the intercept at
    ``intercept_time`` (broadcast against ``(m, k)``); Kahan sums, and a constant window's
    slope exactly 0, as Prometheus."""
    init_y = w.value(w.lo)
    const_y = np.ones(w.count.shape, dtype=bool)
    zeros = np.zeros(w.count.shape)
    sum_x, c_x, sum_y, c_y, sum_xy, c_xy, sum_x2, c_x2 = (zeros,) * 8
    for c in range(w.width):
        v, t, active = w.column(c)
        const_y &= ~active | (v == init_y)
        x = (t - intercept_time).astype(np.float64) / 1e3
        sum_x, c_x = _kahan_inc(x, sum_x, c_x, active)
        sum_y, c_y = _kahan_inc(v, sum_y, c_y, active)
        sum_xy, c_xy = _kahan_inc(x * v, sum_xy, c_xy, active)
        sum_x2, c_x2 = _kahan_inc(x * x, sum_x2, c_x2, active)
    n = w.count.astype(np.float64)
    sum_x, sum_y, sum_xy, sum_x2 = sum_x + c_x, sum_y + c_y, sum_xy + c_xy, sum_x2 + c_x2
    cov_xy = sum_xy - sum_x * sum_y / n
    var_x = sum_x2 - sum_x * sum_x / n
    slope = cov_xy / var_x
    intercept = sum_y / n - slope * sum_x / n
    inf_y = np.isinf(init_y)
    slope = np.where(const_y, np.where(inf_y, np.nan, 0.0), slope)
    intercept = np.where(const_y, np.where(inf_y, np.nan, init_y), intercept)
    return slope, intercept


def deriv(w: Windows) -> Result:
    slope, _ = linear_regression(w, w.time(w.lo))
    return slope, w.count >= 2


def predict_linear(w: Windows, steps: np.ndarray, duration: np.ndarray) -> Result:
    """The line through the window evaluated ``duration`` seconds after the step's time."""
    slope, intercept = linear_regression(w, steps)
    return slope * duration + intercept, w.count >= 2


def _over_time(w: Windows) -> np.ndarray:
    return w.count >= 1


def sum_over_time(w: Windows) -> Result:
    if w.finite:
        return w.window_sum(w.values), _over_time(w)
    total = comp = np.zeros(w.count.shape)
    for c in range(w.width):
        v, _, active = w.column(c)
        total, comp = _kahan_inc(v, total, comp, active)
    return np.where(np.isinf(total), total, total + comp), _over_time(w)


def avg_over_time(w: Windows) -> Result:
    if w.finite:
        return w.window_sum(w.values) / np.maximum(w.count, 1), _over_time(w)
    mean = comp = np.zeros(w.count.shape)
    count = np.zeros(w.count.shape)
    for c in range(w.width):
        v, _, active = w.column(c)
        count = count + active
        # Once the mean is infinite it stays, unless a NaN or an infinity of the other sign comes.
        keep = np.isinf(mean) & ((np.isinf(v) & ((mean > 0) == (v > 0))) | (~np.isinf(v) & ~np.isnan(v)))
        mean, comp = _kahan_inc(v / count - mean / count, mean, comp, active & ~keep)
    return np.where(np.isinf(mean), mean, mean + comp), _over_time(w)


def max_over_time(w: Windows) -> Result:
    # Prometheus' loop skips NaN but for an all-NaN window, as np.fmax does.
    return w.window_extreme(np.fmax), _over_time(w)


def min_over_time(w: Windows) -> Result:
    return w.window_extreme(np.fmin), _over_time(w)


def count_over_time(w: Windows) -> Result:
    return w.count.astype(np.float64), _over_time(w)


def last_over_time(w: Windows) -> Result:
    return w.value(w.hi - 1), _over_time(w)


def present_over_time(w: Windows) -> Result:
    return np.ones(w.count.shape), _over_time(w)


def _variance(w: Windows) -> np.ndarray:
    # Welford's algorithm with Kahan sums, as stdvar_over_time.
    count = np.zeros(w.count.shape)
    mean = c_mean = aux = c_aux = np.zeros(w.count.shape)
    for c in range(w.width):
        v, _, active = w.column(c)
        count = count + active
        delta = v - (mean + c_mean)
        mean, c_mean = _kahan_inc(delta / count, mean, c_mean, active)
        aux, c_aux = _kahan_inc(delta * (v - (mean + c_mean)), aux, c_aux, active)
    return (aux + c_aux) / count


def stdvar_over_time(w: Windows) -> Result:
    return _variance(w), _over_time(w)


def stddev_over_time(w: Windows) -> Result:
    return np.sqrt(_variance(w)), _over_time(w)


def resets(w: Windows) -> Result:
    before, has_before = w.previous()
    return w.window_count(has_before & (w.values < before), skip_first=True), _over_time(w)


def _changed(w: Windows) -> np.ndarray:
    before, has_before = w.previous()
    return has_before & (w.values != before) & ~(np.isnan(w.values) & np.isnan(before))


def changes(w: Windows) -> Result:
    return w.window_count(_changed(w), skip_first=True), _over_time(w)


def quantile_sorted(q: np.ndarray, ordered: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Prometheus' ``quantile`` of rows sorted ascending (NaN first), ``n`` values each."""
    nf = n.astype(np.float64)
    rank = q * (nf - 1)
    lower = np.maximum(0, np.floor(rank))
    upper = np.minimum(nf - 1, lower + 1)
    weight = rank - np.floor(rank)
    rows = np.arange(len(ordered))
    lo_i = np.clip(np.nan_to_num(lower), 0, ordered.shape[1] - 1).astype(np.int64)
    up_i = np.clip(np.nan_to_num(upper), 0, ordered.shape[1] - 1).astype(np.int64)
    result = ordered[rows, lo_i] * (1 - weight) + ordered[rows, up_i] * weight
    result = np.where(q > 1, np.inf, result)
    result = np.where(q < 0, -np.inf, result)
    return np.where((n == 0) | np.isnan(q), np.nan, result)


def sort_nan_first(values: np.ndarray, active: np.ndarray) -> np.ndarray:
    """Each row's active values ascending, NaN first (Prometheus' vectorByValueHeap order),
    then +Inf where inactive."""
    values = np.where(active, values, np.inf)
    order = np.argsort(np.where(np.isnan(values), -np.inf, values), axis=-1, kind="stable")
    return np.take_along_axis(values, order, axis=-1)


def quantile_over_time(w: Windows, q: np.ndarray) -> Result:
    out = np.full(w.count.shape, np.nan)
    q_full = np.broadcast_to(q, w.count.shape)
    for where, values, active in w.rows():
        ordered = sort_nan_first(values, active)
        out[where] = quantile_sorted(q_full[where], ordered, active.sum(axis=1))
    return out, _over_time(w)


# name -> (function of the windows, whether it keeps the metric name)
SIMPLE: dict[str, Callable[[Windows], Result]] = {
    "rate": lambda w: extrapolated_rate(w, True, True),
    "increase": lambda w: extrapolated_rate(w, True, False),
    "delta": lambda w: extrapolated_rate(w, False, False),
    "irate": lambda w: instant_value(w, True),
    "idelta": lambda w: instant_value(w, False),
    "deriv": deriv,
    "sum_over_time": sum_over_time,
    "avg_over_time": avg_over_time,
    "max_over_time": max_over_time,
    "min_over_time": min_over_time,
    "count_over_time": count_over_time,
    "last_over_time": last_over_time,
    "present_over_time": present_over_time,
    "stddev_over_time": stddev_over_time,
    "stdvar_over_time": stdvar_over_time,
    "resets": resets,
    "changes": changes,
}
