"""The aggregator process logic: receives batches, keeps one Window per instrumentation.

Alone (``fleetscope serve``) an aggregator receives every host's batches and merges each owned
instrumentation in one :class:`~fleetscope.aggregator.window.Window`. Partitioned (a fleet of
aggregators), it receives only the batches of the partitions it holds and merges them per
instrumentation, partition and slot (:class:`~fleetscope.aggregator.holder.PartitionHolder`, the
first level), sending each such slot to the instrumentation's owner, which merges at most one
partial per partition in an :class:`~fleetscope.aggregator.owner.OwnerWindow` and acknowledges
the partials of each final slot to their senders.

Either way it acknowledges each batch message to its agent once the slots it feeds are final
and sent on (:mod:`fleetscope.aggregator.acks`): an agent sends again what no aggregator
acknowledged, so seconds published while no aggregator listened (a bus restart, a partition
between holders, a holder killed) arrive late instead of never.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from collections.abc import Callable

import msgspec

from fleetscope.aggregator.acks import BatchAcks
from fleetscope.aggregator.follow import Follower
from fleetscope.aggregator.holder import PartitionHolder
from fleetscope.aggregator.owner import OwnerWindow, Part
from fleetscope.aggregator.window import Window, to_message
from fleetscope.bus import messages as m
from fleetscope.bus.base import Bus, BusUnavailable, Msg
from fleetscope.model import values
from fleetscope.model.errors import InputError
from fleetscope.model.instrumentation import Instrumentation
from fleetscope.model.series import DataPoint

log = logging.getLogger(__name__)

DEFAULT_TOPK = values.TOP_K  # keys kept per slot; the rest fold into (other)
DEFAULT_GRACE = 1.5  # seconds after a slot's end before it is final without every source
CLOCK_READINGS = 12  # status messages (one every few seconds) in a host's clock estimate
CLOCK_MIN_READINGS = 3  # readings before a host's ticks are moved
CLOCK_WARN = 2.0  # seconds of offset that deserve a warning in the log

Listener = Callable[[Instrumentation, DataPoint], None]


class Aggregator(Follower):
    """Merges partials per instrumentation and slot; notifies listeners of final slots."""

    def __init__(self, bus: Bus, topk: int = DEFAULT_TOPK, grace: float = DEFAULT_GRACE,
                 publish_finals: bool = False, name: str | None = None) -> None:
        """``publish_finals``: send each final slot on the bus, for API servers in other processes.
        ``name``: partitioned, as this aggregator of a fleet (see the module docstring)."""
        self.bus = bus
        self.name = name
        self.partitioned = name is not None
        self.holder = None if name is None else PartitionHolder(bus, name, grace, self._send_soon, self.drop)
        self.topk = topk
        self.grace = grace
        self.windows: dict[int, Window] = {}  # the owned instrumentations
        self.known: dict[int, Instrumentation] = {}  # every instrumentation of the control plane
        self.owned: set[int] | None = None  # None: everything (one aggregator); else a shard
        self.listeners: list[Listener] = []
        self.dropped: Counter[str] = Counter()
        self._clock_readings: dict[str, deque[float]] = {}
        self._clock_warned: set[str] = set()
        self._task: asyncio.Task | None = None
        self._sending: set[asyncio.Task] = set()
        self.acks = BatchAcks(grace)
        # Partitioned: the slots other owners made final lately, by instrumentation (start times).
        self.finals_seen: dict[int, set[int]] = {}
        self._finals_pruned = 0.0
        if publish_finals:
            self.listeners.append(self._publish_final)

    # -- instrumentations -------------------------------------------------------------------

    def enable(self, inst: Instrumentation) -> None:
        self.known[inst.id] = inst
        if self.holder is not None:
            self.holder.update(inst)  # retention changed
        if self.owned is not None and inst.id not in self.owned:
            return
        window = self.windows.get(inst.id)
        if window is None:
            self.windows[inst.id] = self._window(inst)
        else:
            window.inst = inst  # retention, idle_max or persist changed

    def _window(self, inst: Instrumentation) -> Window | OwnerWindow:
        if self.partitioned:  # the partition holders' grace, then the partials' trip
            return OwnerWindow(inst, inst.keys_kept(self.topk), 2 * self.grace + 0.5, self._notify,
                               revise_before=int(time.time()),
                               final_elsewhere=self.finals_seen.setdefault(inst.id, set()))
        return Window(inst, inst.keys_kept(self.topk), self.grace, self._notify)

    def disable(self, inst_id: int) -> None:
        self.known.pop(inst_id, None)
        self.windows.pop(inst_id, None)
        if self.holder is not None:
            self.holder.forget(inst_id)

    def following(self) -> set[int]:
        return set(self.known)

    async def _resync(self) -> None:
        await self.sync()

    def own(self, ids: set[int]) -> None:
        """Aggregate only ``ids`` from now on (this aggregator's shard): windows are made for
        newly owned instrumentations and dropped for those another aggregator took over."""
        self.owned = set(ids)
        for inst_id in set(self.windows) - self.owned:
            del self.windows[inst_id]
        for inst_id in self.owned & set(self.known):
            if inst_id not in self.windows:
                self.enable(self.known[inst_id])

    # -- data -------------------------------------------------------------------------------

    async def _on_batch(self, msg: Msg) -> None:
        batch = self.decoded(msg.data, m.RawBatch, "malformed_batch")
        if batch is None:
            return
        if msg.subject != m.data_subject(batch.host):
            self.drop("host_not_subject")  # a foreign or forged batch
            return
        self.add_batch(batch, time.time())

    def add_batch(self, batch: m.RawBatch, now: float) -> None:
        tick = batch.time - self.clock_correction(batch.host)
        if self.holder is not None:
            self.holder.add(batch, tick, now, self.known)
            return
        self.acks.received(batch, tick, self.known)
        for partial in batch.partials:
            window = self.windows.get(partial.id)
            if window is None:
                if partial.id not in self.known:
                    self.drop("unknown_instrumentation")
                continue  # another aggregator's shard
            try:
                value = values.decode_msgpack(partial.value, window.inst.shape)
            except (InputError, msgspec.DecodeError):
                self.drop("malformed_value")
                continue
            window.add(batch.host, tick, value, now)

    def _send_acks(self, now: float) -> None:
        """Acknowledge the batches whose slots are final here and, partitioned, at their owners."""
        if self.holder is None:
            by_host = self.acks.due(now)
        else:
            by_host = {}
            for host, t, part in self.holder.settled:
                by_host.setdefault(host, []).append((t, part))
            self.holder.settled = []
        if by_host:
            self._spawn(self._send_all([(m.ack_subject(h), m.encode(m.Ack(b))) for h, b in by_host.items()]))

    def _ack_partials(self) -> None:
        """Tell each holder which of its partials are in final slots here."""
        by_source: dict[str, list[tuple[int, int, int, int]]] = {}
        for window in self.windows.values():
            if isinstance(window, OwnerWindow) and window.to_ack:
                for source, partition, start, seq in window.to_ack:
                    by_source.setdefault(source, []).append((window.inst.id, partition, start, seq))
                window.to_ack.clear()
        messages = [(f"{m.PARTIAL_ACK}.{m.holder_token(source)}", m.encode(m.PartialAck(slots)))
                    for source, slots in by_source.items()]
        if messages:
            self._spawn(self._send_all(messages))

    async def _on_final_seen(self, msg: Msg) -> None:
        """Note which slot another owner made final (so that, owning it next, this one does not
        make it final again from a subset of its partials)."""
        seen = self.decoded(msg.data, m.FinalSeen, "malformed_final")
        if seen is None:
            return
        if seen.id in self.known and seen.id not in self.windows:
            self.finals_seen.setdefault(seen.id, set()).add(seen.start_time)

    async def _on_partial_ack(self, msg: Msg) -> None:
        ack = self.decoded(msg.data, m.PartialAck, "malformed_partial_ack")
        if ack is None:
            return
        if self.holder is not None:
            self.holder.acknowledged(ack)
            # At once: an agent acknowledged later than the owner would, if this aggregator died
            # in between, send again what the owner already added.
            self._send_acks(time.time())

    async def _on_partial(self, msg: Msg) -> None:
        partial = self.decoded(msg.data, m.SlotPartial, "malformed_partial")
        if partial is None:
            return
        window = self.windows.get(partial.id)
        if window is None or not isinstance(window, OwnerWindow):
            return  # another aggregator owns it
        try:
            value = values.decode_msgpack(bytes(partial.value), window.inst.shape)
        except (InputError, msgspec.DecodeError):
            self.drop("malformed_value")
            return
        if partial.nsources < 0 or partial.expected < 0:
            self.drop("malformed_partial")
            return
        if not 0 <= partial.partition < m.PARTITIONS:
            self.drop("malformed_partial")
            return
        part = Part(value, partial.nsources, partial.expected, partial.source, partial.seq,
                    frozenset(map(tuple, partial.batches)))
        window.add_partial(partial.partition, partial.start_time, part, time.time())

    async def hold_partitions(self, held: set[int], now: float) -> None:
        """Receive the batches of exactly the partitions ``held`` from now on (see
        :meth:`fleetscope.aggregator.holder.PartitionHolder.hold`)."""
        assert self.holder is not None, "only a partitioned aggregator holds partitions"
        await self.holder.hold(held, now, self._on_batch)

    @property
    def partitions(self) -> dict:
        """The partitions held (none unless partitioned)."""
        return self.holder.partitions if self.holder is not None else {}

    # -- clocks -----------------------------------------------------------------------------

    async def _on_status(self, msg: Msg) -> None:
        status = self.decoded(msg.data, m.AgentStatus, "bad_status")
        if status is None:
            return
        if msg.subject != m.status_subject(status.host):
            self.drop("host_not_subject")
            return
        self.observe_clock(status.host, status.time, time.time())

    def observe_clock(self, host: str, agent_time: float, now: float) -> None:
        """Record one reading of ``host``'s clock (status messages are sent live, never buffered,
        so their age is the clock offset plus a transit time of milliseconds)."""
        readings = self._clock_readings.setdefault(host, deque(maxlen=CLOCK_READINGS))
        readings.append(agent_time - now)
        offset = self.clock_offset(host)
        if abs(offset) >= CLOCK_WARN and host not in self._clock_warned:
            self._clock_warned.add(host)
            log.warning("clock of %s is %+.1f s off: its ticks are moved by %+d s", host, offset,
                        -self.clock_correction(host))

    def clock_offset(self, host: str) -> float:
        """The offset of ``host``'s clock from ours (positive: the agent is ahead). Each reading is
        the offset minus the time the message took to reach us and wait its turn, never negative
        and up to a second when this aggregator is busy: the largest of the recent readings is the
        least delayed (as NTP keeps the sample of least delay)."""
        readings = self._clock_readings.get(host)
        return max(readings) if readings else 0.0

    def clock_correction(self, host: str) -> int:
        """Whole seconds to subtract from ``host``'s ticks so that each lands in the slot of our
        clock it overlaps most; no correction for offsets under half a second, nor before a few
        readings (one reading may have waited behind a burst of batches)."""
        if len(self._clock_readings.get(host, ())) < CLOCK_MIN_READINGS:
            return 0
        offset = self.clock_offset(host)
        return round(offset) if abs(offset) >= 0.5 else 0

    def _publish_final(self, inst: Instrumentation, point: DataPoint) -> None:
        self._spawn(self._send(f"{m.FINAL}.{inst.id}", m.encode(to_message(inst.id, point, inst.shape))))

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._sending.add(task)  # held until done: the loop keeps only weak references
        task.add_done_callback(self._sending.discard)

    def _send_soon(self, subject: str, data: bytes) -> None:
        self._spawn(self._send(subject, data))

    async def _send(self, subject: str, data: bytes) -> None:
        with contextlib.suppress(BusUnavailable):  # an API server that missed it backfills
            await self.bus.publish(subject, data)

    async def _send_all(self, messages: list[tuple[str, bytes]]) -> None:
        for subject, data in messages:
            await self._send(subject, data)

    async def _on_window_request(self, msg: Msg) -> None:
        """Answer an API server's backfill with this aggregator's final points of one instrumentation."""
        try:
            window = self.windows.get(int(msg.subject.rsplit(".", 1)[1]))
        except ValueError:
            return
        if window is None or not msg.reply:
            return  # another aggregator holds it
        request = self.decoded(msg.data, m.WindowRequest, "bad_window_request")
        if request is None:
            return
        since = request.since
        shape = window.inst.shape
        points = [to_message(window.inst.id, p, shape) for p in window.points(since, 2**62)]
        sent, consumed = m.page(points, self.bus.max_payload)
        more = points[consumed].start_time if consumed < len(points) else None
        await self._send(msg.reply, m.encode(m.FinalPoints(sent, more)))

    def _notify(self, inst: Instrumentation, point: DataPoint) -> None:
        for listener in self.listeners:
            try:
                listener(inst, point)
            except Exception:
                log.exception("listener failed")

    # -- queries ----------------------------------------------------------------------------

    def window(self, inst_id: int) -> Window | None:
        return self.windows.get(inst_id)

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        self.bus.on_reconnect.append(self._resync)  # creates and deletes meanwhile were missed
        await self.bus.connect()
        await self.follow()
        if self.partitioned:  # batches: hold_partitions() subscribes to each partition held
            await self.bus.subscribe(f"{m.PARTIAL}.*", self._on_partial)
            await self.bus.subscribe(f"{m.PARTIAL_ACK}.{m.holder_token(self.name)}", self._on_partial_ack)
            await self.bus.subscribe(f"{m.FINAL}.*", self._on_final_seen)
        else:
            await self.bus.subscribe(f"{m.DATA}.>", self._on_batch)
        await self.bus.subscribe(f"{m.AGENT_STATUS}.>", self._on_status)
        await self.bus.subscribe(f"{m.WINDOW}.*", self._on_window_request)
        self._task = asyncio.get_running_loop().create_task(self._housekeeping())

    async def _housekeeping(self) -> None:
        await self.sync_until_answered()
        while True:
            await asyncio.sleep(0.2)
            now = time.time()
            self.expire(now)

    def expire(self, now: float) -> None:
        """One round of housekeeping: finalise slots past their deadline at both levels, send
        partials again that no owner acknowledged, and the acknowledgements now due."""
        if self.holder is not None:
            self.holder.expire(now)
        for window in self.windows.values():
            window.expire(now)
        if self.holder is not None:
            self._ack_partials()
            self.holder.resend_due(now)
            self._forget_finals_seen(now)
        self._send_acks(now)

    def _forget_finals_seen(self, now: float) -> None:
        if now - self._finals_pruned < 10:  # each round would walk every start kept
            return
        self._finals_pruned = now
        for inst_id, starts in list(self.finals_seen.items()):
            inst = self.known.get(inst_id)
            if inst is None:
                del self.finals_seen[inst_id]
                continue
            oldest = now - inst.retention - inst.granularity
            for start in [s for s in starts if s < oldest]:
                starts.discard(start)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
