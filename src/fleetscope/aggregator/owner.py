"""The second level of a partitioned fleet's merge: one instrumentation's slots at its owner.

Each aggregator merges the hosts of each partition it holds into one partial per slot (a
:class:`~fleetscope.aggregator.window.Window` per instrumentation and partition, the first level)
and sends it to the instrumentation's owner as a :class:`~fleetscope.bus.messages.SlotPartial`.
The owner keeps, per slot, the latest partial of each partition, whichever aggregator sent it: a
revision replaces the earlier one, and so does the merge of a partition's new holder, so late
data and replays are never counted twice. A slot is final when every partition seen lately has
sent it, or its deadline passes; ``nsources`` and ``expected`` are the sums of the partitions'
own counts, exact. A fleet-wide instrumentation over any number of hosts then costs its owner at
most one message per partition per slot.

Each partial in a final slot is owed an acknowledgement to the aggregator that sent it
(:attr:`OwnerWindow.to_ack`): until it has one, that aggregator sends it again (to whoever owns
the instrumentation by then) and does not acknowledge its agents' batches of that second.

It is read and aged like a :class:`~fleetscope.aggregator.window.Window` (``expire``, ``latest``,
``points``, shared in :class:`~fleetscope.aggregator.window.SlotReader`), so the aggregator, its
window requests and its listeners do not know which level they read.
"""

from __future__ import annotations

from collections.abc import Callable, Container
from typing import NamedTuple

from fleetscope.aggregator.window import SlotReader
from fleetscope.model import values
from fleetscope.model.instrumentation import Instrumentation
from fleetscope.model.series import DataPoint

# A partition that has not sent for this long is no longer waited for.
STALE_AFTER = 5.0


class Part(NamedTuple):
    """One partition's merge of one slot, and the aggregator that sent it."""

    value: values.Value
    nsources: int
    expected: int
    source: str = ""


class OwnerSlot:
    __slots__ = ("final", "parts", "revised", "stale", "start")

    def __init__(self, start: int) -> None:
        self.start = start
        self.parts: dict[int, Part] = {}  # by partition
        self.final: DataPoint | None = None
        self.revised = False
        self.stale = False  # final, and a part changed since


class OwnerWindow(SlotReader):
    """The slots of one owned instrumentation, merged from its sources' partials."""

    def __init__(self, inst: Instrumentation, topk: int, grace: float,
                 on_final: Callable[[Instrumentation, DataPoint], None], revise_before: int = 0,
                 final_elsewhere: Container[int] = ()) -> None:
        """``grace``: seconds after a slot's end before it is final without every source (the
        sources' own grace, plus the time their partials take). A new owner gives
        ``revise_before``, when it took over (slots before it are marked revised), and
        ``final_elsewhere``, the starts of the slots its predecessor made final: partials of those
        are acknowledged and dropped (they come again because their acknowledgement died with the
        predecessor, and this owner lacks the slot's other partials to make it final again)."""
        self.revise_before = revise_before
        self.final_elsewhere = final_elsewhere
        self.inst = inst
        self.topk = topk
        self.grace = grace
        self.on_final = on_final
        self.slots: dict[int, OwnerSlot] = {}
        self._open: set[int] = set()
        self.last_seen: dict[int, float] = {}  # partition -> when it last sent
        self.dropped_late = 0
        self.to_ack: list[tuple[str, int, int]] = []  # (source, partition, start) of finalised parts
        self._now = 0.0

    def add_partial(self, partition: int, start: int, part: Part, now: float) -> None:
        """Take ``partition``'s merge of the slot at ``start`` (replacing an earlier one of it)."""
        g = self.inst.granularity
        if start % g:
            return
        if start < self.revise_before and start not in self.slots and start in self.final_elsewhere:
            self.to_ack.append((part.source, partition, start))
            return
        slot = self.slots.get(start)
        if slot is None:
            if start + g < now - self.inst.retention:
                self.dropped_late += 1
                return
            slot = OwnerSlot(start)
            self._made(start, slot)
        slot.parts[partition] = part
        if now > self.last_seen.get(partition, 0.0):
            self.last_seen[partition] = now
        self._now = now
        if slot.final is not None:
            slot.revised = slot.stale = True
            self._open.add(start)
        elif self._expected(now) <= slot.parts.keys():
            self._finalise(slot, now)

    def _expected(self, now: float) -> set[int]:
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
                               expected, slot.revised or slot.start < self.revise_before)
        slot.stale = False
        self.to_ack.extend((p.source, partition, slot.start) for partition, p in slot.parts.items())
        self.on_final(self.inst, slot.final)
