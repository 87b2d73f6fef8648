"""One instrumentation's slots: pending ones being merged, final ones in the window.

A slot ``[t, t + granularity)`` is final when every expected source sent its
last tick, or when its deadline passes. Data arriving for a final slot still
inside the retention window is merged and the slot marked revised. Each
(host, tick) is merged at most once, so a batch sent twice is never double
counted.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from fleetscope.bus import messages as m
from fleetscope.model import values
from fleetscope.model.instrumentation import Instrumentation
from fleetscope.model.metrics import POINT
from fleetscope.model.series import DataPoint

# A host that has not contributed for this long is no longer expected.
STALE_AFTER = 5.0
EXPECTED_REFRESH = 0.25


class Slot:
    """One slot's merged value and who contributed to it. Hosts are bits of Python ints (each
    window numbers its hosts): a window keeps hundreds of slots of thousands of hosts, where
    sets of names cost gigabytes."""

    __slots__ = ("final", "hosts", "last_tick_hosts", "raw", "revised", "seen", "stale", "start", "ticks")

    def __init__(self, start: int, shape: str) -> None:
        self.start = start
        self.raw = values.empty(shape)
        self.hosts = 0  # bit i: host i contributed
        self.last_tick_hosts = 0  # bit i: host i sent the slot's last tick
        self.ticks = 0  # bit k: some host sent tick start + k
        self.seen = 0  # bit i * granularity + k: host i sent tick start + k (merged once)
        self.final: DataPoint | None = None
        self.revised = False
        self.stale = False  # final, and late data merged since


class SlotReader:
    """What reads and ages a window's slots, for both merging levels (this module's
    :class:`Window` and :class:`fleetscope.aggregator.owner.OwnerWindow`): a subclass has
    ``inst``, ``grace``, ``slots`` (start -> a slot with ``final`` and ``stale``, in time order:
    a subclass adds a slot with :meth:`_made`), ``_open`` (the starts of the slots not final, or
    stale: a subclass adds each slot it makes stale), ``_now`` and ``_finalise(slot, now)``.
    Ageing looks only at the open slots and the oldest ones: a fleet's aggregator keeps thousands
    of windows of hundreds of slots, and ages them five times a second."""

    inst: Instrumentation
    grace: float
    slots: dict
    _open: set[int]
    _now: float

    def _finalise(self, slot, now: float) -> None:
        raise NotImplementedError

    def expire(self, now: float) -> None:
        """Finalise slots past their deadline and drop those older than the retention."""
        g = self.inst.granularity
        oldest = now - self.inst.retention - g
        slots = self.slots
        while slots:
            start = next(iter(slots))
            if start >= oldest:
                break
            del slots[start]
            self._open.discard(start)
        for start in sorted(self._open):
            slot = slots.get(start)
            if slot is not None and slot.final is None and start + g + self.grace > now:
                continue  # before its deadline
            if slot is not None and (slot.stale or slot.final is None):
                self._finalise(slot, now)
            self._open.discard(start)

    def _made(self, start: int, slot) -> None:
        """Add a new slot, keeping ``slots`` in time order (a slot made late is rare)."""
        late = bool(self.slots) and start < next(reversed(self.slots))
        self.slots[start] = slot
        if late:
            self.slots = dict(sorted(self.slots.items()))
        self._open.add(start)

    def latest(self) -> int | None:
        """Start of the latest final slot, or None."""
        finals = [s for s, slot in self.slots.items() if slot.final is not None]
        return max(finals) if finals else None

    def points(self, start: int, end: int) -> list[DataPoint]:
        """The final data points with ``start <= start_time < end``, oldest first."""
        slots = [slot for s, slot in sorted(self.slots.items())
                 if start <= s < end and slot.final is not None]
        for slot in slots:
            if slot.stale:
                self._finalise(slot, self._now)
                self._open.discard(slot.start)
        return [slot.final for slot in slots]


class Window(SlotReader):
    """The pending and final slots of one instrumentation."""

    def __init__(self, inst: Instrumentation, topk: int, grace: float,
                 on_final: Callable[[Instrumentation, DataPoint], None], release: bool = False) -> None:
        """``release``: forget each slot once it is final and handed to ``on_final`` (a partition
        holder's first level: the owner keeps the slot); data that comes later starts the slot
        afresh, and its next final carries only that data."""
        self.release = release
        self.inst = inst
        self.topk = topk
        self.grace = grace
        self.on_final = on_final
        self.slots: dict[int, Slot] = {}
        self._open: set[int] = set()
        self.last_seen: dict[str, float] = {}
        self.dropped_late = 0
        self.duplicates = 0
        self._host_bit: dict[str, int] = {}  # host -> its bit index in this window's slots
        self._expected = 0  # bits of the expected hosts
        self._expected_n = 0
        self._expected_at = -math.inf
        # At most the oldest last_seen, when at _expected_at every host of last_seen was expected
        # (-inf otherwise): while now is within STALE_AFTER of it, none can have gone stale.
        self._all_fresh_since = -math.inf
        self._now = 0.0  # of the last add

    def _expected_bits(self, now: float) -> int:
        """The hosts that contributed within STALE_AFTER seconds, as bits. Recomputed at most every
        EXPECTED_REFRESH seconds (and extended when a new host appears): every add asks, and a
        fleet has thousands of hosts. Not recomputed either while no host can have gone stale
        (all were expected at the last recomputation, and the oldest was seen within STALE_AFTER):
        summing the bits of 2,000 hosts takes 0.2 ms, and every window asked four times a second."""
        if not 0 <= now - self._expected_at < EXPECTED_REFRESH:
            if not (now - self._all_fresh_since < STALE_AFTER and self._expected_n == len(self.last_seen)):
                seen = self.last_seen
                bit = self._host_bit
                self._expected = sum(1 << bit[h] for h, t in seen.items() if now - t < STALE_AFTER)
                self._expected_n = self._expected.bit_count()
                fresh = self._expected_n == len(seen)
                self._all_fresh_since = min(seen.values(), default=now) if fresh else -math.inf
            self._expected_at = now
        return self._expected

    def add(self, host: str, tick: int, value: values.Value, now: float) -> None:
        """Merge one host's partial value for the one-second tick starting at ``tick``."""
        g = self.inst.granularity
        start = tick - tick % g
        slot = self.slots.get(start)
        if slot is None:
            if start + g < now - self.inst.retention:
                self.dropped_late += 1
                return
            slot = Slot(start, self.inst.shape)
            self._made(start, slot)
        i = self._host_bit.get(host)
        if i is None:
            i = self._host_bit[host] = len(self._host_bit)
            self._expected |= 1 << i  # just seen: expected from now on
            self._expected_n += 1
            self._all_fresh_since = min(self._all_fresh_since, now)
        bit = 1 << i
        seen = bit if g == 1 else 1 << (i * g + tick - start)
        if slot.seen & seen:
            self.duplicates += 1
            return
        slot.seen |= seen
        slot.raw = values.merge_into(slot.raw, value, self.inst.shape)
        slot.hosts |= bit
        slot.ticks |= 1 << (tick - start)
        if now > self.last_seen.get(host, 0.0):
            self.last_seen[host] = now
        self._now = now
        if slot.final is not None:
            # Re-finalised by the next expire() (or read), once for however many hosts are late:
            # past a deadline many are, and each re-finalisation is published and stored.
            slot.revised = slot.stale = True
            self._open.add(start)
        elif tick == start + g - 1:
            slot.last_tick_hosts |= bit
            expected = self._expected_bits(now)
            # Counting first: the comparison of all the bits runs about once per slot.
            if (slot.last_tick_hosts.bit_count() >= self._expected_n
                    and not expected & ~slot.last_tick_hosts):
                self._finalise(slot, now)

    def _finalise(self, slot: Slot, now: float) -> None:
        shape = self.inst.shape
        value = slot.raw
        ticks = slot.ticks.bit_count()
        if self.inst.kind == POINT and ticks > 1:
            value = values.scale(value, 1.0 / ticks, shape)
        value = values.fold_top_k(value, self.topk, shape)
        expected = (self._expected_bits(now) | slot.hosts).bit_count()
        slot.final = DataPoint(slot.start, self.inst.granularity, value, slot.hosts.bit_count(), expected,
                               slot.revised)
        slot.stale = False
        if self.release:
            del self.slots[slot.start]
            self._open.discard(slot.start)
        self.on_final(self.inst, slot.final)


def to_message(inst_id: int, point: DataPoint, shape: str) -> m.FinalPoint:
    """A final data point as it travels to API servers."""
    return m.FinalPoint(inst_id, point.start_time, point.duration, values.encode(point.value, shape),
                        point.nsources, point.expected, point.revised)


def from_message(msg: m.FinalPoint, shape: str) -> DataPoint:
    """Validate a point from the bus (InputError when its value does not fit the shape)."""
    value = values.decode(msg.value, shape, "value")
    return DataPoint(msg.start_time, msg.duration, value, msg.nsources, msg.expected, msg.revised)
