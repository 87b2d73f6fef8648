"""The head of the history: final slots of persisted instrumentations, buffered in memory.

The aggregator hands every final (or revised) slot to :meth:`Head.record`, a
dict write under a lock and no I/O. A flush takes the whole head
(:meth:`Head.drain`) and writes it as chunks in one transaction; if the store
cannot be written, the points go back (:meth:`Head.restore`), newer points
recorded meanwhile winning, and the head keeps at most
:data:`MAX_HEAD_POINTS` per instrumentation (the oldest are dropped).
"""

from __future__ import annotations

import threading
from typing import NamedTuple

from fleetscope.model.instrumentation import Instrumentation
from fleetscope.model.series import DataPoint

MAX_HEAD_POINTS = 86400  # per instrumentation, kept in memory while the store cannot be written


class HeadEntry(NamedTuple):
    """The buffered points of one instrumentation."""

    inst: Instrumentation  # the definition last recorded with
    points: dict[int, DataPoint]  # by slot start; a later point of a slot replaces the earlier


class Head:
    """Buffered points by instrumentation id; every method is thread-safe."""

    def __init__(self) -> None:
        self._entries: dict[int, HeadEntry] = {}
        self._lock = threading.Lock()

    def record(self, inst: Instrumentation, point: DataPoint) -> None:
        with self._lock:
            entry = self._entries.get(inst.id)
            if entry is None or entry.inst is not inst:
                entry = self._entries[inst.id] = HeadEntry(inst, entry.points if entry else {})
            entry.points[point.start_time] = point

    def buffered(self) -> int:
        """Points in the head."""
        with self._lock:
            return sum(len(e.points) for e in self._entries.values())

    def drain(self) -> dict[int, HeadEntry]:
        """Take every entry out of the head (to be flushed)."""
        with self._lock:
            entries, self._entries = self._entries, {}
        return entries

    def restore(self, entries: dict[int, HeadEntry]) -> int:
        """Put drained ``entries`` back after a failed flush; returns how many points were
        dropped to keep each instrumentation within MAX_HEAD_POINTS (oldest first)."""
        dropped = 0
        with self._lock:
            for inst_id, (inst, points) in entries.items():
                entry = self._entries.setdefault(inst_id, HeadEntry(inst, {}))
                for t, p in points.items():
                    entry.points.setdefault(t, p)  # a newer point recorded meanwhile wins
                excess = len(entry.points) - MAX_HEAD_POINTS
                for t in sorted(entry.points)[:max(excess, 0)]:
                    del entry.points[t]
                    dropped += 1
        return dropped

    def points(self, inst_id: int, start: int, end: int) -> list[DataPoint]:
        """The buffered points of ``inst_id`` with ``start <= time < end``."""
        with self._lock:
            entry = self._entries.get(inst_id)
            return [p for t, p in entry.points.items() if start <= t < end] if entry else []
