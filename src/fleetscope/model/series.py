"""Data points over time: the final value of a slot, and rollups of several slots.

Across time, interval metrics are summed and point metrics averaged
(DESIGN.md); both the real-time window and the store roll up with
:func:`rollup`, so a range answers the same from either.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from fleetscope.model import values
from fleetscope.model.metrics import POINT


class DataPoint(NamedTuple):
    """One value of an instrumentation over ``[start_time, start_time + duration)``."""

    start_time: int
    duration: int
    value: values.Value | None  # None: no data (a gap, never shown as zero)
    nsources: int
    expected: int
    revised: bool = False

    def to_json(self, shape: str) -> dict:
        return {
            "start_time": self.start_time,
            "duration": self.duration,
            "value": None if self.value is None else values.encode(self.value, shape),
            "nsources": self.nsources,
            "expected": self.expected,
            "revised": self.revised,
        }


def rollup(points: Sequence[DataPoint], start: int, duration: int, kind: str, shape: str,
           topk: int | None = None) -> DataPoint:
    """One data point over ``[start, start + duration)`` from the finer points inside it.

    Interval kinds add; point kinds average over the points that have data. A
    range with no data at all is a gap (``value`` None). ``nsources`` is the
    smallest count among the points with data, ``expected`` the largest: a
    rolled-up point is only as complete as its least complete part.
    """
    present = [p for p in points if p.value is not None]
    if not present:
        return DataPoint(start, duration, None, 0, max((p.expected for p in points), default=0))
    acc = values.empty(shape)
    for p in present:
        acc = values.merge_into(acc, p.value, shape)
    if kind == POINT and len(present) > 1:
        acc = values.scale(acc, 1.0 / len(present), shape)
    if topk is not None:
        acc = values.fold_top_k(acc, topk, shape)
    return DataPoint(
        start,
        duration,
        acc,
        min(p.nsources for p in present),
        max(p.expected for p in points),
        any(p.revised for p in present),
    )
