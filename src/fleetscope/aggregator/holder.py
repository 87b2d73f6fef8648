"""The first level of a partitioned fleet's merge: the partitions one aggregator holds.

A holder receives the batches of the partitions it holds (:meth:`PartitionHolder.hold`), merges
each instrumentation's partials per partition and slot in a
:class:`~fleetscope.aggregator.window.Window`, and sends each final slot to the instrumentation's
owner as a :class:`~fleetscope.bus.messages.SlotPartial`, then forgets it: what comes later for
that slot (late data, replays) is merged afresh and sent as another partial, which the owner adds
(each partial has a sequence number of its own, so one sent again is not added twice). It
remembers which seconds of which host it merged (a bitmap per host), so a batch that comes
again is never merged twice. It keeps sending a partial until the owner acknowledges it
(:class:`~fleetscope.bus.messages.PartialAck`): an owner that dies takes the partials it had not
made final with it, and the instrumentation's next owner gets them from here.

It acknowledges each agent's batch message as soon as the owners have acknowledged every
partial it went into (not at a deadline, not behind other seconds): an aggregator that died
between its owner's acknowledgement and its own would leave the agent to send again what the
owner already added.

A partition newly held is merged from the next whole second: live batches of earlier seconds
were its previous holder's. Replays (batches their agents send again for want of an
acknowledgement) are merged whatever their second: no holder acknowledged them, so none had the
owner make them final.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

import msgspec

from fleetscope.aggregator.window import Window
from fleetscope.bus import messages as m
from fleetscope.bus.base import Bus, Handler
from fleetscope.model import values
from fleetscope.model.errors import InputError
from fleetscope.model.instrumentation import Instrumentation
from fleetscope.model.series import DataPoint

# Keys a first-level slot keeps for the owner: the agents' own bound, so the owner's top K
# is chosen from every key that matters in any partition (and "(other)" stays an exact total).
PARTIAL_TOP_K = values.AGENT_TOP_K
PARTIAL_RESEND_AFTER = 3.0  # seconds without an owner's acknowledgement before sending again
PARTIAL_GIVE_UP = 30.0  # seconds after which an unacknowledged partial is no longer sent
REMEMBERED = 1024  # seconds of each host's batches remembered as merged (over any retention kept)


class Unacked(NamedTuple):
    subject: str
    message: bytes
    first_sent: float
    due: float  # when it is sent again


BatchKey = tuple[str, int, int]  # an agent's batch message: host, time, part


class Held(NamedTuple):
    first_tick: int  # live batches of earlier seconds are the previous holder's
    subscription: object


class PartitionHolder:
    """The first-level windows of one aggregator's partitions, and their partials in flight."""

    def __init__(self, bus: Bus, name: str, grace: float, send: Callable[[str, bytes], None],
                 drop: Callable[[str], None]) -> None:
        """``send(subject, data)``: publish without waiting; ``drop(reason)``: count a refusal."""
        self.bus = bus
        self.name = name
        self.grace = grace
        self._send = send
        self._drop = drop
        self.partitions: dict[int, Held] = {}
        self.windows: dict[tuple[int, int], Window] = {}  # (instrumentation, partition)
        # (instrumentation, partition, start, sequence) -> the partial until an owner acknowledges it
        self.unacked: dict[tuple[int, int, int, int], Unacked] = {}
        self.gave_up = 0  # partials never acknowledged by any owner
        self.duplicates = 0  # batch messages merged before
        self._merged: dict[tuple[str, int], tuple[int, int]] = {}  # (host, part) -> (newest tick, bits)
        self._seq = 0
        self._pruned_at = 0.0
        # Acknowledging agents: each batch message merged, by (host, time, part), with how many of
        # the slots it fed the owners have not yet acknowledged; the messages fed into each slot
        # still pending here, and into each partial sent; the messages now acknowledged.
        self._waiting: dict[BatchKey, int] = {}
        self._feeding: dict[tuple[int, int, int], list[BatchKey]] = {}
        self._in_partial: dict[tuple[int, int, int, int], list[BatchKey]] = {}
        self.settled: list[BatchKey] = []

    # -- batches ------------------------------------------------------------------------------

    def add(self, batch: m.RawBatch, tick: int, now: float, known: dict[int, Instrumentation]) -> None:
        """Merge ``batch`` (its host's ``tick``) if it is this holder's to merge."""
        p = m.partition_of(batch.host)
        held = self.partitions.get(p)
        if held is None or (tick < held.first_tick and not batch.replay):
            self._drop("partition_not_held")
            return
        key = (batch.host, batch.time, batch.part)
        if not self._first_time(batch.host, batch.part, tick):
            self.duplicates += 1
            if key not in self._waiting:
                self.settled.append(key)  # its acknowledgement was lost: again
            return
        self._waiting[key] = 0
        for partial in batch.partials:
            inst = known.get(partial.id)
            if inst is None:
                self._drop("unknown_instrumentation")
                continue
            try:
                value = values.decode_msgpack(partial.value, inst.shape)
            except (InputError, msgspec.DecodeError):
                self._drop("malformed_value")
                continue
            window = self.windows.get((inst.id, p))
            if window is None:
                window = self.windows[inst.id, p] = Window(inst, PARTIAL_TOP_K, self.grace,
                                                           self._partial_sender(p), release=True)
            self._waiting[key] += 1
            slot = (inst.id, p, tick - tick % inst.granularity)
            self._feeding.setdefault(slot, []).append(key)
            window.add(batch.host, tick, value, now)  # (may make the slot final and send it)
            if slot in self._feeding and slot[2] not in window.slots:  # refused (too late to keep)
                self._settle(self._feeding.pop(slot))
        if not self._waiting[key]:
            self._settle([key])

    def _settle(self, keys: list[BatchKey]) -> None:
        """One more slot of each of ``keys`` is in an owner's final slots (or given up)."""
        for key in keys:
            left = self._waiting.get(key)
            if left is None:
                continue
            if left <= 1:
                del self._waiting[key]
                self.settled.append(key)
            else:
                self._waiting[key] = left - 1

    def _first_time(self, host: str, part: int, tick: int) -> bool:
        """Note that ``host``'s message ``part`` of ``tick`` is merged; False if it was before."""
        newest, bits = self._merged.get((host, part), (tick, 0))
        if tick > newest:
            bits = (bits << (tick - newest)) & ((1 << REMEMBERED) - 1)
            newest = tick
        age = newest - tick
        if age >= REMEMBERED:
            return True  # older than anything kept: the windows drop it as late
        if bits >> age & 1:
            return False
        self._merged[host, part] = (newest, bits | 1 << age)
        return True

    def _partial_sender(self, partition: int) -> Callable[[Instrumentation, DataPoint], None]:
        return lambda inst, point: self.send_partial(inst, partition, point)

    def send_partial(self, inst: Instrumentation, partition: int, point: DataPoint) -> None:
        """Send one final slot to the owner and keep it until the owner acknowledges it."""
        self._seq += 1
        feeding = self._feeding.pop((inst.id, partition, point.start_time), [])
        msg = m.SlotPartial(inst.id, self.name, point.start_time,
                            msgspec.Raw(m.encode(values.encode(point.value, inst.shape))),
                            point.nsources, point.expected, partition, self._seq, feeding)
        subject, data = f"{m.PARTIAL}.{inst.id}", m.encode(msg)
        self._send(subject, data)
        now = time.time()
        key = (inst.id, partition, point.start_time, self._seq)
        self.unacked[key] = Unacked(subject, data, now, now + PARTIAL_RESEND_AFTER)
        self._in_partial[key] = feeding

    # -- acknowledgements ---------------------------------------------------------------------

    def acknowledged(self, ack: m.PartialAck) -> None:
        """The owner has these partials in final slots: the batches fully in such are settled."""
        for key in map(tuple, ack.slots):
            if self.unacked.pop(key, None) is not None:
                self._settle(self._in_partial.pop(key, []))

    def resend_due(self, now: float) -> None:
        """Send again the partials no owner acknowledged in time (the owner may have died)."""
        for key, entry in list(self.unacked.items()):
            if entry.due > now:
                continue
            if now - entry.first_sent > PARTIAL_GIVE_UP:
                del self.unacked[key]
                self.gave_up += 1
                self._settle(self._in_partial.pop(key, []))  # lost: sending the batches again would not help
                continue
            self._send(entry.subject, entry.message)
            self.unacked[key] = entry._replace(due=now + PARTIAL_RESEND_AFTER)

    # -- partitions ---------------------------------------------------------------------------

    async def hold(self, held: set[int], now: float, on_batch: Handler) -> None:
        """Receive the batches of exactly the partitions ``held`` from now on. The windows of a
        partition given up stay until their slots age out: their partials still go to the owner."""
        for p in set(self.partitions) - held:
            await self.partitions.pop(p).subscription.unsubscribe()
        for p in held - set(self.partitions):
            sub = await self.bus.subscribe(m.partition_subject(p), on_batch)
            self.partitions[p] = Held(int(now) + 1, sub)

    def expire(self, now: float) -> None:
        """Finalise first-level slots past their deadline; forget windows of partitions given up
        once they are empty, and what was merged of hosts not heard of for as long as it is kept."""
        for key, window in list(self.windows.items()):
            window.expire(now)
            if not window.slots and key[1] not in self.partitions:
                del self.windows[key]
        if now - self._pruned_at > 60:
            self._pruned_at = now
            self._merged = {k: v for k, v in self._merged.items() if now - v[0] < REMEMBERED}

    def update(self, inst: Instrumentation) -> None:
        for (inst_id, _), window in self.windows.items():
            if inst_id == inst.id:
                window.inst = inst

    def forget(self, inst_id: int) -> None:
        """Drop an instrumentation that was deleted."""
        for key in [k for k in self.windows if k[0] == inst_id]:
            del self.windows[key]
        for key in [k for k in self.unacked if k[0] == inst_id]:
            del self.unacked[key]
            self._settle(self._in_partial.pop(key, []))
        for key in [k for k in self._feeding if k[0] == inst_id]:
            self._settle(self._feeding.pop(key))

