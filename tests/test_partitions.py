"""Partitioned aggregation (#15): aggregators that each hold some partitions of hosts merge
their hosts per slot and send the owner one partial each; the owner's finals equal what one
aggregator that received every batch makes of the same batches (values, top K and "(other)",
nsources, expected), and a revision replaces its source's partial instead of adding to it."""

from __future__ import annotations

import asyncio
import random
import time

from fleetscope.aggregator.aggregator import Aggregator
from fleetscope.aggregator.owner import OwnerWindow, Part
from fleetscope.bus import messages as m
from fleetscope.bus.memory import MemoryBus
from fleetscope.model import values
from fleetscope.model.histogram import Histogram
from fleetscope.model.instrumentation import Instrumentation
from fleetscope.model.series import DataPoint

HOSTS = [f"host-{i}.example.com" for i in range(40)]
BREAKDOWN = Instrumentation(1, "proc", "cpu", {}, ("execname",), 1, 600, 0, False, 0.0,
                            shape=values.DISCRETE, discrete="execname")
LATENCY = Instrumentation(2, "app", "requests", {}, ("route", "latency"), 1, 600, 0, False, 0.0,
                          shape=values.DISCRETE_HISTOGRAM, discrete="route", numeric="latency")


def batches(t: int, rng: random.Random) -> list[tuple[str, bytes]]:
    out = []
    for host in HOSTS:
        names = {f"p{rng.randrange(120)}": float(rng.randrange(1, 100)) for _ in range(30)}
        routes = {}
        for r in range(3):
            h = Histogram()
            for _ in range(5):
                h.record(rng.lognormvariate(-4, 1))
            routes[f"/r{r}"] = h
        partials = [m.Partial(1, values.encode(names, values.DISCRETE)),
                    m.Partial(2, values.encode(routes, values.DISCRETE_HISTOGRAM))]
        out.append((m.data_subject(host), m.encode(m.Batch(host, t, t + 0.5, partials))))
    return out


async def run_fleet(seconds: int, start: int) -> tuple[dict, dict]:
    """The same batches through one lone aggregator, and through three partitioned ones over one
    memory bus (partitions dealt round-robin); the finals of each by (instrumentation, slot)."""
    lone_bus, fleet_bus = MemoryBus(), MemoryBus()
    lone = Aggregator(lone_bus)
    fleet = [Aggregator(fleet_bus, name=f"agg{i}") for i in range(3)]
    finals: tuple[dict, dict] = ({}, {})
    lone.listeners.append(lambda inst, p: finals[0].__setitem__((inst.id, p.start_time), p))
    for agg in fleet:
        agg.listeners.append(lambda inst, p: finals[1].__setitem__((inst.id, p.start_time), p))
    for agg in (lone, *fleet):
        await agg.bus.connect()
        await agg.follow()
        await agg.bus.subscribe(f"{m.DATA}.>", agg._on_batch) if agg is lone else None
        for inst in (BREAKDOWN, LATENCY):
            agg.enable(inst)
    for i, agg in enumerate(fleet):
        agg.own({1} if i == 0 else {2} if i == 1 else set())  # agg2 owns nothing, holds partitions
        await agg.bus.subscribe(f"{m.PARTIAL}.*", agg._on_partial)
        await agg.hold_partitions({p for p in range(m.PARTITIONS) if p % 3 == i}, start - 10)
    rng = random.Random(7)
    for second in range(seconds):
        for subject, data in batches(start + second, rng):
            await lone_bus.publish(subject, data)
            await fleet_bus.publish(subject, data)
        await asyncio.sleep(0.05)  # the memory bus delivers in tasks
    for agg in fleet:  # every slot's deadline passed: final at the first level
        agg.holder.expire(time.time() + 60)
    await asyncio.sleep(0.1)  # the partials travel to their owners
    for agg in (lone, *fleet):
        for window in agg.windows.values():
            window.expire(time.time() + 60)
    for agg in (lone, *fleet):
        await agg.bus.close()
    return finals


def test_two_level_merge_equals_one_aggregator_of_every_batch() -> None:
    start = int(time.time()) - 30
    lone, fleet = asyncio.run(run_fleet(5, start))
    assert set(lone) == set(fleet) and len(lone) == 10
    for key, point in lone.items():
        other = fleet[key]
        assert (other.nsources, other.expected) == (point.nsources, point.expected) == (40, 40)
        if key[0] == BREAKDOWN.id:  # top 50 of 120 names and an exact (other)
            assert other.value.keys() == point.value.keys() and values.OTHER in point.value
            for name, v in point.value.items():
                assert abs(other.value[name] - v) <= 1e-9 * max(1.0, abs(v)), name
        else:  # bucket counts exact; the sum of the values up to the order of addition
            assert other.value.keys() == point.value.keys()
            for route, h in point.value.items():
                o = other.value[route]
                assert (o.buckets, o.count, o.zero_count, o.min, o.max) == (h.buckets, h.count, h.zero_count,
                                                                             h.min, h.max)
                assert abs(o.sum - h.sum) <= 1e-12 * h.sum


def test_partials_add_up_once_each_and_late_ones_revise_the_slot() -> None:
    """A first level sends each final slot once and what comes later as further partials: the
    owner adds each (source, sequence) once, however often it is sent, and a late one revises
    the slot; past MERGED_FOR a late one still adds to the (folded) final value."""
    finals: list[DataPoint] = []
    window = OwnerWindow(BREAKDOWN, 50, 3.0, lambda inst, p: finals.append(p))
    now = time.time()
    t = int(now) - 5
    for partition in (3, 7):  # both partitions have been heard of: both are waited for
        window.add_partial(partition, t - 1, Part({}, 0, 0, "agg1", partition), now)
    finals.clear()
    window.to_ack.clear()
    window.add_partial(3, t, Part({"a": 1.0}, 2, 2, "agg1", 10), now)
    assert finals == [], "the slot waits for partition 7"
    window.add_partial(3, t, Part({"a": 1.0}, 2, 2, "agg1", 10), now)  # sent again: no ack came
    window.add_partial(7, t, Part({"a": 2.0, "b": 1.0}, 3, 3, "agg2", 10), now)
    assert [(p.value, p.nsources, p.expected) for p in finals] == [({"a": 3.0, "b": 1.0}, 5, 5)]
    assert sorted(window.to_ack) == [("agg1", 3, t, 10), ("agg1", 3, t, 10), ("agg2", 7, t, 10)], (
        "each sender is owed its own, a partial sent twice twice")
    window.add_partial(3, t, Part({"a": 0.5}, 1, 0, "agg1", 11), now)  # a late host of partition 3
    window.add_partial(3, t, Part({"a": 0.5}, 1, 0, "agg1", 11), now)
    window.expire(now)
    revised = [p for p in finals[1:] if p.start_time == t]
    assert [(p.value, p.nsources, p.expected, p.revised) for p in revised] == [
        ({"a": 3.5, "b": 1.0}, 6, 6, True)]
    window.expire(t + 1 + 45 + 1)  # past MERGED_FOR: the sum is freed
    assert window.slots[t].merged is None
    window.add_partial(7, t, Part({"c": 4.0}, 1, 0, "agg3", 1), t + 50)  # a new holder's replay
    window.expire(t + 50)
    last = [p for p in finals if p.start_time == t][-1]
    assert (last.value, last.nsources) == ({"a": 3.5, "b": 1.0, "c": 4.0}, 7)


def test_batches_a_dead_holder_merged_are_not_added_again_from_the_next_holder() -> None:
    """A holder's partial is added; it dies before acknowledging its agents' batches, which they
    send again to the next holder: that holder's partial of the same batches is acknowledged and
    not added, while one with a batch not added yet (a late host) still revises the slot."""
    finals: list[DataPoint] = []
    window = OwnerWindow(BREAKDOWN, 50, 3.0, lambda inst, p: finals.append(p))
    now = time.time()
    t = int(now) - 5
    h1, h2, h3 = (("h1", t, 0), ("h2", t, 0), ("h3", t, 0))
    window.add_partial(3, t, Part({"a": 2.0}, 2, 2, "dead", 1, frozenset({h1, h2})), now)
    assert [(p.value, p.nsources) for p in finals] == [({"a": 2.0}, 2)]
    window.to_ack.clear()
    window.add_partial(3, t, Part({"a": 1.0}, 1, 1, "next", 1, frozenset({h2})), now)  # h2 again
    window.add_partial(3, t, Part({"a": 2.0}, 2, 2, "next", 2, frozenset({h1, h2})), now)  # both
    window.expire(now)
    assert [(p.value, p.nsources) for p in finals] == [({"a": 2.0}, 2)], "nothing counted twice"
    assert sorted(window.to_ack) == [("next", 3, t, 1), ("next", 3, t, 2)], "yet acknowledged"
    window.add_partial(3, t, Part({"a": 4.0}, 1, 1, "next", 3, frozenset({h3})), now)  # late h3
    window.expire(now)
    assert [(p.value, p.nsources, p.revised) for p in finals[1:]] == [({"a": 6.0}, 3, True)]


def test_a_partition_given_up_is_refused_and_its_windows_age_out() -> None:
    async def run() -> None:
        agg = Aggregator(MemoryBus(), name="agg1")
        await agg.bus.connect()
        agg.enable(BREAKDOWN)
        agg.own(set())
        now = time.time()
        await agg.hold_partitions(set(range(m.PARTITIONS)), now - 10)
        t = int(now) - 3
        moved = m.partition_of(HOSTS[0])
        for host in HOSTS[:2]:
            batch = m.Batch(host, t, t + 0.5, [m.Partial(1, values.encode({"a": 1.0}, values.DISCRETE))])
            await agg.bus.publish(m.data_subject(host), m.encode(batch))
        await asyncio.sleep(0.05)
        assert (1, moved) in agg.holder.windows
        await agg.hold_partitions(set(range(m.PARTITIONS)) - {moved}, now)
        agg.add_batch(m.decode(m.encode(m.Batch(HOSTS[0], t + 1, t + 1.5, [])), m.RawBatch), now)
        assert agg.dropped["partition_not_held"] == 1
        assert not agg.holder.windows[1, moved].slots, "its one host's slot went to the owner at once"
        assert {k[1] for k in agg.holder.unacked} >= {moved}, "and waits for the owner's acknowledgement"
        agg.expire(now + 1)
        assert (1, moved) not in agg.holder.windows, "an empty window of a partition given up goes"
        await agg.bus.close()

    asyncio.run(run())
