"""The second level of a partitioned fleet's merge: one instrumentation's slots at its owner.

Each aggregator merges the hosts of each partition it holds per slot (a
:class:`~fleetscope.aggregator.window.Window` per instrumentation and partition, the first level)
and sends each final slot to the instrumentation's owner as a
:class:`~fleetscope.bus.messages.SlotPartial`, then forgets it; what comes for that slot later
(late data, replays of seconds no holder had) is sent as further partials. The owner adds every
partial into the slot once (by source and sequence number: one sent again is not added twice; nor
one whose agents' batches it added all already, from a holder that died before acknowledging them
to their agents, which then sent them again to the next holder), and
makes the slot final when every partition seen lately has sent it, or its deadline passes;
``nsources`` and ``expected`` are sums of the partitions' own counts, exact. A partial for a final
slot revises it. A fleet-wide instrumentation over any number of hosts then costs its owner one
message per partition per slot.

Each partial in a final slot is owed an acknowledgement to the aggregator that sent it
(:attr:`OwnerWindow.to_ack`): until it has one, that aggregator sends it again (to whoever owns
the instrumentation by then) and does not acknowledge its agents' batches of that second.

A slot keeps its unfolded sum (so that late partials fold exactly into its top K) and which
partials it added for :data:`MERGED_FOR` seconds; after that, late partials are added to its
final (folded) value: the totals stay exact, a key folded into ``(other)`` before may then show
only its late part.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Container
from typing import NamedTuple

from fleetscope.aggregator.window import SlotReader
from fleetscope.model import values
from fleetscope.model.instrumentation import Instrumentation
from fleetscope.model.series import DataPoint

# A partition that has not sent for this long is no longer waited for.
STALE_AFTER = 5.0
# Seconds after its end that a slot keeps its unfolded sum and which partials it added: longer
# than holders send a partial again (holder.PARTIAL_GIVE_UP).
MERGED_FOR = 45.0


class Part(NamedTuple):
    """One partition's merge of (some of) one slot, who sent it and its sequence number there."""

    value: values.Value
    nsources: int
    expected: int
    source: str = ""
    seq: int = 0
    batches: frozenset[tuple[str, int, int]] = frozenset()  # the agents' batches merged in it


class OwnerSlot:
    __slots__ = ("applied", "batches", "expected", "final", "merged", "nsources", "partitions", "revised",
                 "stale", "start", "unacked")

    def __init__(self, start: int, shape: str) -> None:
        self.start = start
        self.merged: values.Value | None = values.empty(shape)  # the unfolded sum (None: aged)
        self.nsources = 0
        self.expected = 0
        self.partitions: set[int] = set()  # that sent
        self.applied: set[tuple[str, int]] | None = set()  # (source, seq) added (None: aged)
        self.batches: set[tuple[str, int, int]] | None = set()  # agents' batches added (None: aged)
        self.unacked: list[tuple[str, int, int]] = []  # (source, partition, seq) since the last final
        self.final: DataPoint | None = None
        self.revised = False
        self.stale = False  # final, and a part added since


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
        self.to_ack: list[tuple[str, int, int, int]] = []  # (source, partition, start, seq) in finals
        self._aging: deque[int] = deque()  # starts of the slots with a sum, in time order (mostly)
        self._now = 0.0

    def add_partial(self, partition: int, start: int, part: Part, now: float) -> None:
        """Add ``partition``'s partial of the slot at ``start`` (once per source and sequence)."""
        g = self.inst.granularity
        if start % g:
            return
        if start < self.revise_before and start not in self.slots and start in self.final_elsewhere:
            self.to_ack.append((part.source, partition, start, part.seq))
            return
        slot = self.slots.get(start)
        if slot is None:
            if start + g < now - self.inst.retention:
                self.dropped_late += 1
                return
            slot = OwnerSlot(start, self.inst.shape)
            self._made(start, slot)
            self._aging.append(start)
        key = (part.source, part.seq)
        replayed = bool(part.batches) and slot.batches is not None and part.batches <= slot.batches
        if slot.applied is not None and (key in slot.applied or replayed):
            slot.unacked.append((part.source, partition, part.seq))  # sent again: its ack was lost
            if slot.final is not None:
                self.to_ack.extend((s, p, start, q) for s, p, q in slot.unacked)
                slot.unacked = []
            return
        if slot.merged is None:  # aged: start again from the final value
            slot.merged = values.empty(self.inst.shape)
            if slot.final.value is not None:
                slot.merged = values.merge_into(slot.merged, slot.final.value, self.inst.shape)
            self._aging.append(start)
        slot.merged = values.merge_into(slot.merged, part.value, self.inst.shape)
        slot.nsources += part.nsources
        slot.expected += part.expected
        slot.partitions.add(partition)
        if slot.applied is not None:
            slot.applied.add(key)
        if slot.batches is not None:
            slot.batches |= part.batches
        slot.unacked.append((part.source, partition, part.seq))
        if now > self.last_seen.get(partition, 0.0):
            self.last_seen[partition] = now
        self._now = now
        if slot.final is not None:
            slot.revised = slot.stale = True
            self._open.add(start)
        elif self._expected(now) <= slot.partitions:
            self._finalise(slot, now)

    def _expected(self, now: float) -> set[int]:
        return {s for s, t in self.last_seen.items() if now - t < STALE_AFTER}

    def _finalise(self, slot: OwnerSlot, now: float) -> None:
        shape = self.inst.shape
        value = values.fold_top_k(slot.merged, self.topk, shape)
        if value is slot.merged and shape == values.HISTOGRAM:
            value = value.copy()  # the sum goes on taking late partials
        slot.final = DataPoint(slot.start, self.inst.granularity, value if slot.partitions else None,
                               slot.nsources, max(slot.expected, slot.nsources),
                               slot.revised or slot.start < self.revise_before)
        slot.stale = False
        self.to_ack.extend((source, partition, slot.start, seq) for source, partition, seq in slot.unacked)
        slot.unacked = []
        self.on_final(self.inst, slot.final)

    def expire(self, now: float) -> None:
        """Finalise and drop slots as any window does; free the sums of final slots past
        :data:`MERGED_FOR`, and their memory of the partials added."""
        super().expire(now)
        g = self.inst.granularity
        while self._aging and self._aging[0] + g + MERGED_FOR <= now:
            slot = self.slots.get(self._aging[0])
            if slot is not None and (slot.final is None or slot.stale):
                break  # aged once final
            self._aging.popleft()
            if slot is not None:
                slot.merged = slot.applied = slot.batches = None
