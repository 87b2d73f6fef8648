"""Answering range questions from the real-time window.

Every value-like endpoint takes the same range parameters; :func:`resolve_range`
turns them into ``(start, duration, n)``: ``n`` consecutive data points of
``duration`` seconds starting at ``start``, aligned to the granularity.
"""

from __future__ import annotations

import math
import time
from typing import NamedTuple

from fleetscope.aggregator.window import Window
from fleetscope.model import values
from fleetscope.model.errors import InputError
from fleetscope.model.histogram import Histogram
from fleetscope.model.instrumentation import Instrumentation
from fleetscope.model.series import DataPoint, rollup

MAX_POINTS = 10_000


class Range(NamedTuple):
    start: int
    duration: int
    n: int

    @property
    def end(self) -> int:
        return self.start + self.duration * self.n

    def times(self) -> list[int]:
        return [self.start + i * self.duration for i in range(self.n)]


def _nonneg_int(value: int | None, name: str) -> int | None:
    if value is not None and value < 0:
        raise InputError(name, "must not be negative")
    return value


def resolve_range(
    inst: Instrumentation,
    latest: int | None,
    start_time: int | None = None,
    end_time: int | None = None,
    duration: int | None = None,
    ndatapoints: int | None = None,
    default_points: int = 1,
) -> Range:
    """The data points a request asks for.

    ``duration`` (default: the granularity) is the span of each point and must
    be a multiple of the granularity. With ``start_time`` and ``end_time`` the
    points cover that range; with one of them, ``ndatapoints`` points start or
    end there; with neither, they end with the latest final slot.
    """
    g = inst.granularity
    _nonneg_int(start_time, "start_time")
    _nonneg_int(end_time, "end_time")
    if duration is None:
        duration = g
    if duration <= 0 or duration % g:
        raise InputError("duration", f"must be a positive multiple of the granularity ({g} s)")
    if ndatapoints is not None and not 1 <= ndatapoints <= MAX_POINTS:
        raise InputError("ndatapoints", f"must be between 1 and {MAX_POINTS}")
    if start_time is not None and end_time is not None:
        if end_time <= start_time:
            raise InputError("end_time", "must be after start_time")
        start = start_time - start_time % g
        span = end_time - start
        if ndatapoints is not None:
            duration = max(duration, math.ceil(span / ndatapoints / g) * g)
        n = math.ceil(span / duration)
        if n > MAX_POINTS:
            raise InputError("end_time", f"the range holds more than {MAX_POINTS} points of {duration} s")
        return Range(start, duration, n)
    n = ndatapoints or default_points
    if start_time is not None:
        return Range(start_time - start_time % g, duration, n)
    if end_time is None:
        end_time = latest + g if latest is not None else int(time.time()) // g * g
    end = end_time - end_time % g
    return Range(end - n * duration, duration, n)


def data_points(inst: Instrumentation, window: Window | None, rng: Range, topk: int) -> list[DataPoint]:
    """One data point per step of ``rng``; gaps have ``value`` None."""
    finals = window.points(rng.start, rng.end) if window else []
    if rng.duration == inst.granularity:
        by_start = {p.start_time: p for p in finals}
        return [by_start.get(t) or DataPoint(t, rng.duration, None, 0, 0) for t in rng.times()]
    out = []
    for t in rng.times():
        inside = [p for p in finals if t <= p.start_time < t + rng.duration]
        out.append(rollup(inside, t, rng.duration, inst.kind, inst.shape, topk))
    return out


def require_distribution(inst: Instrumentation) -> None:
    if inst.shape not in (values.HISTOGRAM, values.DISCRETE_HISTOGRAM):
        raise InputError("decomposition", f"instrumentation {inst.id} has no numeric decomposition "
                         "(add a numeric field to its decomposition for distributions)", 409)


def histogram_of(value: values.Value | None, shape: str) -> Histogram | None:
    """One histogram of a distribution value (a breakdown's keys merged), or None for a gap."""
    if value is None:
        return None
    if shape == values.HISTOGRAM:
        return value  # type: ignore[return-value]
    merged = Histogram()
    for h in value.values():  # type: ignore[union-attr]
        merged.merge(h)
    return merged


def parse_quantiles(text: str) -> list[float]:
    try:
        qs = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InputError("q", "must be comma-separated numbers between 0 and 1, e.g. 0.5,0.99") from None
    if not qs or any(not 0.0 <= q <= 1.0 or math.isnan(q) for q in qs):
        raise InputError("q", "must be comma-separated numbers between 0 and 1, e.g. 0.5,0.99")
    return qs


def finite_or_none(x: float) -> float | None:
    return None if x is None or math.isnan(x) or math.isinf(x) else x
