"""The second level of a partitioned fleet's merge: one instrumentation's slots at its owner.

Each aggregator merges the hosts of the partitions it holds into one partial per slot (a
:class:`~fleetscope.aggregator.window.Window` of its own, the first level) and sends it to the
instrumentation's owner as a :class:`~fleetscope.bus.messages.SlotPartial`. The owner keeps, per
slot, the latest partial of each source (a revision replaces its source's earlier one, so late
data is never counted twice) and makes the slot final when every source seen lately has sent it,
or its deadline passes; ``nsources`` and ``expected`` are the sums of the sources' own counts,
exact. A fleet-wide instrumentation over any number of hosts then costs its owner one message per
aggregator per slot.

It is read and aged like a :class:`~fleetscope.aggregator.window.Window` (``expire``, ``latest``,
``points``, shared in :class:`~fleetscope.aggregator.window.SlotReader`), so the aggregator, its
window requests and its listeners do not know which level they read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from fleetscope.aggregator.window import SlotReader
from fleetscope.model import values
from fleetscope.model.instrumentation import Instrumentation
from fleetscope.model.series import DataPoint

# A source (aggregator) that has not sent for this long is no longer waited for.
STALE_AFTER = 5.0


class Part(NamedTuple):
    """One source's merge of one slot."""

    value: values.Value
    nsources: int
    expected: int


class OwnerSlot:
    __slots__ = ("final", "parts", "revised", "stale", "start")

    def __init__(self, start: int) -> None:
        self.start = start
        self.parts: dict[str, Part] = {}
        self.final: DataPoint | None = None
        self.revised = False
        self.stale = False  # final, and a part changed since


class OwnerWindow(SlotReader):
    """The slots of one owned instrumentation, merged from its sources' partials."""

    def __init__(self, inst: Instrumentation, topk: int, grace: float,
                 on_final: Callable[[Instrumentation, DataPoint], None]) -> None:
        """``grace``: seconds after a slot's end before it is final without every source (the
        sources' own grace, plus the time their partials take)."""
        self.inst = inst
        self.topk = topk
        self.grace = grace
        self.on_final = on_final
        self.slots: dict[int, OwnerSlot] = {}
        self.last_seen: dict[str, float] = {}
        self.dropped_late = 0
        self._now = 0.0

    def add_partial(self, source: str, start: int, part: Part, now: float) -> None:
        """Take ``source``'s merge of the slot at ``start`` (replacing an earlier one of it)."""
        g = self.inst.granularity
        if start % g:
            return
        slot = self.slots.get(start)
        if slot is None:
            if start + g < now - self.inst.retention:
                self.dropped_late += 1
                return
            slot = self.slots[start] = OwnerSlot(start)
        slot.parts[source] = part
        if now > self.last_seen.get(source, 0.0):
            self.last_seen[source] = now
        self._now = now
        if slot.final is not None:
            slot.revised = slot.stale = True
        elif self._expected(now) <= slot.parts.keys():
            self._finalise(slot, now)

    def _expected(self, now: float) -> set[str]:
        return {s for s, t in self.last_seen.items() if now - t < STALE_AFTER}

    def _finalise(self, slot: OwnerSlot, now: float) -> None:
        shape = self.inst.shape
        value = values.empty(shape)
        for part in slot.parts.values():
            value = values.merge_into(value, part.value, shape)
        value = values.fold_top_k(value, self.topk, shape)
        nsources = sum(p.nsources for p in slot.parts.values())
        expected = sum(p.expected for p in slot.parts.values())
        slot.final = DataPoint(slot.start, self.inst.granularity, value if slot.parts else None, nsources,
                               expected, slot.revised)
        slot.stale = False
        self.on_final(self.inst, slot.final)
