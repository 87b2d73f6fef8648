"""Acknowledged delivery (#15): an agent keeps each batch message until an aggregator says its
slots are final, and sends it again when none does; aggregators acknowledge only what they
merged for good, a partition's new holder merges replays of seconds before it took the
partition, and an instrumentation's new owner gets the partials its predecessor may have lost."""

from __future__ import annotations

import asyncio
import time

import msgspec

from fleetscope.agent.outbox import GIVE_UP, Outbox
from fleetscope.aggregator.aggregator import Aggregator
from fleetscope.bus import messages as m
from fleetscope.bus.base import BusUnavailable, Msg
from fleetscope.bus.memory import MemoryBus
from fleetscope.model import values
from fleetscope.model.instrumentation import Instrumentation

HOST = "ack-host.example.com"
BREAKDOWN = Instrumentation(1, "proc", "cpu", {}, ("execname",), 1, 600, 0, False, 0.0,
                            shape=values.DISCRETE, discrete="execname")
SLOW = Instrumentation(2, "proc", "cpu", {}, ("execname",), 10, 600, 0, False, 0.0,
                       shape=values.DISCRETE, discrete="execname")


def batch(t: int, inst_ids=(1,), host: str = HOST, value: float = 1.0, replay: bool = False) -> m.Batch:
    partials = [m.Partial(i, values.encode({"sh": value}, values.DISCRETE)) for i in inst_ids]
    return m.Batch(host, t, t + 1.0, partials, replay=replay)


class Recorder:
    """A bus that records what is published, or refuses it while ``down``."""

    max_payload = 1 << 20

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes]] = []
        self.down = False

    async def publish(self, subject: str, data: bytes) -> None:
        if self.down:
            raise BusUnavailable("down")
        self.published.append((subject, data))


def sent_batches(bus: Recorder) -> list[tuple[int, bool]]:
    return [(b.time, b.replay) for b in (m.decode(d, m.RawBatch) for _, d in bus.published)]


# -- the agent's outbox ---------------------------------------------------------------------------


def test_a_message_waits_for_its_acknowledgement_and_is_sent_again_without_one() -> None:
    async def run() -> None:
        bus, box, now = Recorder(), Outbox(), 1000.0
        for t in (100, 101):
            box.put("s", m.encode(batch(t)), t)
        assert await box.flush(bus, now, replay_after=5)
        assert box.stats()["unacked"] == 2 and sent_batches(bus) == [(100, False), (101, False)]
        box.ack([(101, 0)])
        assert box.stats()["unacked"] == 1 and box.acked == 1
        assert box.replay_due(now + 4.9) == 0, "not due before replay_after"
        assert box.replay_due(now + 5) == 1
        assert await box.flush(bus, now + 5, replay_after=5)
        assert sent_batches(bus)[-1] == (100, True), "sent again, marked as a replay"
        assert box.replay_due(now + 14.9) == 0, "the wait doubles: 10 s after the second send"
        assert box.replay_due(now + 15) == 1
        assert await box.flush(bus, now + 15, replay_after=5)
        box.ack([(100, 0)])
        assert box.stats() == {"queued": 0, "unacked": 0, "bytes": 0, "dropped": 0, "oversized": 0,
                               "replayed": 2}
        assert box.replay_due(now + 100) == 0

    asyncio.run(run())


def test_when_the_bus_is_found_down_everything_unacknowledged_goes_again_first() -> None:
    async def run() -> None:
        bus, box, now = Recorder(), Outbox(), 1000.0
        box.put("s", m.encode(batch(100)), 100)
        await box.flush(bus, now)
        bus.down = True
        box.put("s", m.encode(batch(101)), 101)
        assert not await box.flush(bus, now + 1)
        assert box.replay_due(now + 1, everything=True) == 1
        bus.down = False
        bus.published.clear()
        assert await box.flush(bus, now + 2)
        assert sent_batches(bus) == [(100, True), (101, False)], "oldest first, the replay marked"
        box.ack([(100, 0), (101, 0)])
        assert box.bytes == 0

    asyncio.run(run())


def test_an_acknowledgement_of_a_queued_replay_drops_the_replay() -> None:
    async def run() -> None:
        bus, box = Recorder(), Outbox()
        box.put("s", m.encode(batch(100)), 100)
        await box.flush(bus, 0.0, replay_after=1)
        box.replay_due(5.0)
        assert len(box) == 1
        box.ack([(100, 0)])  # the first send's acknowledgement was late, not missing
        assert len(box) == 0 and box.bytes == 0 and box.acked == 1

    asyncio.run(run())


def test_waiting_messages_are_bounded_and_given_up_in_the_end() -> None:
    async def run() -> None:
        bus = Recorder()
        size = len(m.encode(batch(100)))
        box = Outbox(max_bytes=3 * size)
        for t in range(100, 103):
            box.put("s", m.encode(batch(t)), t)
        await box.flush(bus, 0.0)
        box.put("s", m.encode(batch(103)), 103)  # over the bound: the oldest unacknowledged goes
        assert box.dropped == 1 and box.stats()["unacked"] == 2 and box.bytes == 3 * size
        box.replay_due(GIVE_UP + 1)
        assert box.stats()["unacked"] == 0 and box.dropped == 3 and box.bytes == size

    asyncio.run(run())


# -- the aggregators --------------------------------------------------------------------------------


async def ack_listener(bus: MemoryBus, host: str = HOST) -> list[list[tuple[int, int]]]:
    acks: list[list[tuple[int, int]]] = []

    async def on_ack(msg: Msg) -> None:
        acks.append([tuple(b) for b in m.decode(msg.data, m.Ack).batches])

    await bus.subscribe(m.ack_subject(host), on_ack)
    return acks


async def housekeeping(agg: Aggregator, now: float) -> None:
    """One round of the aggregator's housekeeping at ``now``, and time for what it sends."""
    agg.expire(now)
    await asyncio.sleep(0.05)


def test_an_aggregator_acknowledges_a_batch_once_its_slots_are_final() -> None:
    async def run() -> None:
        bus = MemoryBus()
        agg = Aggregator(bus)
        await bus.connect()
        acks = await ack_listener(bus)
        agg.enable(BREAKDOWN)
        agg.enable(SLOW)
        t = 1_000_000
        agg.add_batch(m.decode(m.encode(batch(t)), m.RawBatch), t + 1)
        agg.add_batch(m.decode(m.encode(batch(t + 1, (1, 2))), m.RawBatch), t + 2)
        await housekeeping(agg, t + 2.4)
        assert acks == [], "the first slot's deadline (grace 1.5 s) has not passed"
        await housekeeping(agg, t + 2.5)
        assert acks == [[(t, 0)]] and agg.windows[1].slots[t].final is not None
        await housekeeping(agg, t + 5)
        assert acks == [[(t, 0)]], "the second feeds a 10-second slot: acknowledged when it is final"
        await housekeeping(agg, t + 11.5)
        assert acks[-1] == [(t + 1, 0)] and agg.windows[2].slots[t].final is not None
        agg.add_batch(m.decode(m.encode(batch(t, replay=True)), m.RawBatch), t + 12)
        await housekeeping(agg, t + 12)
        assert acks[-1] == [(t, 0)], "a replay of what it has is acknowledged again"
        assert agg.windows[1].slots[t].final.value == {"sh": 1.0}, "and not counted twice"
        await bus.close()

    asyncio.run(run())


async def wire(agg: Aggregator, owner: bool = True) -> None:
    """Subscribe a partitioned aggregator as its start() does: to partials (as an owner) and to
    the acknowledgements of its own."""
    if owner:
        await agg.bus.subscribe(f"{m.PARTIAL}.*", agg._on_partial)
    await agg.bus.subscribe(f"{m.PARTIAL_ACK}.{m.holder_token(agg.name)}", agg._on_partial_ack)


async def rounds(aggs: list[Aggregator], now: float, n: int = 3) -> None:
    """Housekeeping rounds: first level final, partials to the owner, its acknowledgements back,
    the agents' acknowledgements out."""
    for _ in range(n):
        for agg in aggs:
            await housekeeping(agg, now)


async def holding_and_owning(held_since: float) -> tuple[MemoryBus, Aggregator, list]:
    """One partitioned aggregator that owns BREAKDOWN and holds HOST's partition since
    ``held_since``, and the acknowledgements HOST's agent hears."""
    bus = MemoryBus()
    agg = Aggregator(bus, name="agg1")
    await bus.connect()
    await wire(agg)
    acks = await ack_listener(bus)
    agg.enable(BREAKDOWN)
    await agg.hold_partitions({m.partition_of(HOST)}, held_since)
    return bus, agg, acks


def test_a_new_holder_merges_replays_of_seconds_before_it_took_the_partition() -> None:
    async def run() -> None:
        now = time.time()
        bus, agg, acks = await holding_and_owning(now)  # merged from the next second on
        t = int(now) - 2
        live, replay = batch(t, value=1.0), batch(t + 1, value=2.0, replay=True)
        for b in (live, replay):
            await bus.publish(m.data_subject(HOST), m.encode(b))
        await asyncio.sleep(0.05)
        assert agg.dropped["partition_not_held"] == 1, "the live second was the previous holder's"
        await rounds([agg], now + 5)
        assert acks == [[(t + 1, 0)]], "only what it merged is acknowledged"
        assert t not in agg.windows[1].slots, "the live second is not merged here"
        assert agg.windows[1].slots[t + 1].final.value == {"sh": 2.0}, "the replay is"
        await bus.close()

    asyncio.run(run())


def test_agents_are_acknowledged_only_once_the_owner_has_the_partials() -> None:
    """Holder agg1 sends its partials to an owner that is gone (died with them); its agents hear
    nothing until agg3 owns the instrumentation, gets the partials sent again, and acknowledges
    them."""

    async def run() -> None:
        bus = MemoryBus()
        holder, owner = Aggregator(bus, name="agg1"), Aggregator(bus, name="agg3")
        await bus.connect()
        await wire(holder, owner=False)
        acks = await ack_listener(bus)
        for agg in (holder, owner):
            agg.enable(BREAKDOWN)
            agg.own(set())
        now = time.time()
        await holder.hold_partitions(set(range(m.PARTITIONS)), now - 10)
        t = int(now) - 5
        for second in range(3):
            holder.add_batch(m.decode(m.encode(batch(t + second, value=second + 1.0)), m.RawBatch), now)
        await rounds([holder], now)
        assert len(holder.holder.unacked) == 3 and acks == [], "no owner: nothing acknowledged"
        finals = []
        owner.listeners.append(lambda inst, p: finals.append(p))
        owner.own({1})
        await wire(owner)
        await rounds([holder, owner], now + 3.1)  # the partials are due again
        assert [(p.start_time, p.value, p.nsources, p.revised) for p in finals] == [
            (t + s, {"sh": s + 1.0}, 1, True) for s in range(3)], "revisions of what the old owner had"
        assert holder.holder.unacked == {}
        assert sorted(b for a in acks for b in a) == [(t + s, 0) for s in range(3)]
        await bus.close()

    asyncio.run(run())


def test_a_new_owner_leaves_alone_the_slots_its_predecessor_made_final() -> None:
    """Partials its predecessor made final come again when their acknowledgement died with it:
    the new owner has only those (not the slot's other partitions) and must not publish them as
    the slot; it acknowledges them. Slots nobody made final it makes final."""

    async def run() -> None:
        bus = MemoryBus()
        owner = Aggregator(bus, name="agg3")
        await bus.connect()
        await bus.subscribe(f"{m.FINAL}.*", owner._on_final_seen)
        owner.enable(BREAKDOWN)
        owner.own(set())
        t = int(time.time()) - 5
        old = m.FinalPoint(1, t, 1, values.encode({"sh": 3.0}, values.DISCRETE), 3, 3)
        await bus.publish(f"{m.FINAL}.1", m.encode(old))  # made final by agg2, which then died
        await asyncio.sleep(0.05)
        finals = []
        owner.listeners.append(lambda inst, p: finals.append(p))
        owner.own({1})
        window = owner.windows[1]
        for start in (t, t + 1):
            value = msgspec.Raw(m.encode(values.encode({"sh": 1.0}, values.DISCRETE)))
            part = m.SlotPartial(1, "agg1", start, value, 1, 1, 5, start)
            await owner._on_partial(Msg(f"{m.PARTIAL}.1", m.encode(part)))
        assert [p.start_time for p in finals] == [t + 1], "only the slot nobody made final"
        assert sorted(window.to_ack) == [("agg1", 5, t, t), ("agg1", 5, t + 1, t + 1)], "both acknowledged"
        await bus.close()

    asyncio.run(run())


def test_a_holder_acknowledges_its_agents_as_soon_as_the_owner_has_the_second() -> None:
    """Not at the slot's deadline: an aggregator that died between its owner's acknowledgement
    and its own would leave its agents to send again what the owner already added."""

    async def run() -> None:
        now = time.time()
        bus, agg, acks = await holding_and_owning(now - 10)
        t = int(now) - 1
        agg.add_batch(m.decode(m.encode(batch(t)), m.RawBatch), t + 1.01)  # its only host: final
        await asyncio.sleep(0.05)  # the partial reaches the owner (itself), final there
        assert acks == [], "the owner has not acknowledged yet"
        await housekeeping(agg, t + 1.1)  # well before the deadline, t + 2.5
        await asyncio.sleep(0.05)
        assert acks == [[(t, 0)]]
        await bus.close()

    asyncio.run(run())
