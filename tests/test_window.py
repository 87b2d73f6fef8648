"""The aggregator's window: slots, expected sources, deadlines, late data, retention."""

from __future__ import annotations

import asyncio
import time

import pytest

from fleetscope.aggregator.aggregator import Aggregator
from fleetscope.aggregator.window import Window
from fleetscope.bus import messages as m
from fleetscope.bus.base import Msg
from fleetscope.bus.memory import MemoryBus
from fleetscope.model import values
from fleetscope.model.histogram import Histogram
from fleetscope.model.instrumentation import Instrumentation
from fleetscope.model.series import DataPoint

T0 = 1_700_000_000


def received(batch: m.Batch) -> m.RawBatch:
    """``batch`` as an aggregator receives it from the bus."""
    return m.decode(m.encode(batch), m.RawBatch)


def inst(shape: str = values.DISCRETE, kind: str = "interval", granularity: int = 1,
         retention: int = 60, inst_id: int = 1) -> Instrumentation:
    return Instrumentation(id=inst_id, module="cpu", stat="usage", predicate={}, decomposition=("mode",),
                           granularity=granularity, retention=retention, idle_max=0, persist=False,
                           created=T0, kind=kind, shape=shape, discrete="mode")


def window(instr: Instrumentation, topk: int = 50) -> tuple[Window, list[DataPoint]]:
    finals: list[DataPoint] = []
    return Window(instr, topk, 1.5, lambda i, p: finals.append(p)), finals


def test_slot_is_final_when_every_expected_source_reported() -> None:
    w, finals = window(inst())
    w.add("a", T0, {"user": 1.0}, now=T0 + 1.1)
    assert len(finals) == 1, "the only known source reported: final at once"
    w.add("b", T0 + 1, {"user": 2.0}, now=T0 + 2.1)
    w.add("a", T0 + 1, {"user": 3.0}, now=T0 + 2.1)
    # "b" reported first, but "a" was still expected (seen a second ago), so the slot waited for it.
    assert [p.start_time for p in finals] == [T0, T0 + 1]
    assert finals[1].value == {"user": 5.0}
    assert (finals[1].nsources, finals[1].expected) == (2, 2)
    # Next slot: only "a" reports; the slot waits for "b" until the deadline.
    w.add("a", T0 + 2, {"user": 1.0}, now=T0 + 3.1)
    assert len(finals) == 2
    w.expire(now=T0 + 3 + 1.6)
    assert len(finals) == 3
    assert (finals[2].nsources, finals[2].expected) == (1, 2)


def test_late_data_is_merged_and_marked_revised_and_duplicates_ignored() -> None:
    w, finals = window(inst())
    w.add("a", T0, {"user": 1.0}, now=T0 + 1.1)
    w.add("a", T0, {"user": 1.0}, now=T0 + 1.2)  # the same batch again
    assert w.duplicates == 1
    w.add("b", T0, {"system": 2.0}, now=T0 + 4.0)
    w.add("c", T0, {"system": 1.0}, now=T0 + 4.05)
    assert len(finals) == 1, "revisions wait for the next housekeeping pass"
    assert w.points(T0, T0 + 1)[0].value == {"user": 1.0, "system": 3.0}, "a read sees them at once"
    w.expire(now=T0 + 4.2)
    assert len(finals) == 2, "late hosts are published as one revision"
    assert finals[-1].revised and finals[-1].nsources == 3
    assert finals[-1].value == {"user": 1.0, "system": 3.0}
    w.expire(now=T0 + 4.4)
    assert len(finals) == 2, "and only once"


def test_data_older_than_retention_is_dropped_and_window_trimmed() -> None:
    w, _finals = window(inst(retention=10))
    w.add("a", T0, {"user": 1.0}, now=T0 + 1.1)
    w.expire(now=T0 + 30)
    assert w.points(0, T0 + 100) == []
    w.add("a", T0, {"user": 1.0}, now=T0 + 30)
    assert w.dropped_late == 1


def test_slots_made_out_of_order_are_finalised_in_order_and_age_out() -> None:
    """Ageing looks at the open slots and the oldest ones only: a slot made after newer ones (late
    data) still reaches its deadline, is finalised before the newer ones, and ages out."""
    w, finals = window(inst(retention=60))
    w.add("a", T0 + 10, {"user": 1.0}, T0 + 10.5)
    w.add("a", T0 + 5, {"user": 2.0}, T0 + 10.6)  # late: its slot made after T0 + 10's
    w.add("a", T0 + 7, {"user": 3.0}, T0 + 10.7)
    assert [p.start_time for p in finals] == [T0 + 10, T0 + 5, T0 + 7], "final at once: its one host"
    w.add("b", T0 + 7, {"user": 1.0}, T0 + 11)  # a new host, late: T0 + 7 is revised
    w.add("b", T0 + 5, {"user": 1.0}, T0 + 11)
    w.expire(T0 + 12)
    assert [(p.start_time, p.value) for p in finals[3:]] == [(T0 + 5, {"user": 3.0}), (T0 + 7, {"user": 4.0})]
    assert w._open == set(), "nothing left open"
    w.expire(T0 + 5 + 61 + 1)
    assert list(w.slots) == [T0 + 7, T0 + 10], "the oldest went first, though it was not made first"
    w.expire(T0 + 10 + 61 + 1)
    assert w.slots == {}


def test_granularity_sums_interval_and_averages_point_metrics() -> None:
    wi, fi = window(inst(shape=values.SCALAR, granularity=5))
    wp, fp = window(inst(shape=values.SCALAR, kind="point", granularity=5))
    for k in range(5):
        wi.add("a", T0 + k, float(k), now=T0 + k + 1.1)
        wp.add("a", T0 + k, float(k), now=T0 + k + 1.1)
    assert [p.value for p in fi] == [10.0]
    assert [p.value for p in fp] == [2.0]
    assert fi[0].duration == 5


def test_coarse_slots_count_each_host_and_tick_once() -> None:
    """A 5 s slot fed by three hosts, with a batch of each sent twice and one host late: every
    (host, tick) merged once, nsources and the point average counted per host and tick."""
    wi, fi = window(inst(shape=values.SCALAR, granularity=5))
    wp, _ = window(inst(shape=values.SCALAR, kind="point", granularity=5))
    for w in (wi, wp):
        for k in range(5):
            for host in ("a", "b"):
                w.add(host, T0 + k, 1.0, now=T0 + k + 1.1)
                w.add(host, T0 + k, 1.0, now=T0 + k + 1.2)  # sent again
        w.add("c", T0 + 2, 4.0, now=T0 + 5.3)  # only one tick from c, and c was not expected
    assert (wi.duplicates, wp.duplicates) == (10, 10)
    assert [(p.value, p.nsources, p.expected) for p in fi] == [(10.0, 2, 2)]
    assert [(p.value, p.nsources) for p in wi.points(T0, T0 + 5)] == [(14.0, 3)]
    assert [p.value for p in wp.points(T0, T0 + 5)] == [pytest.approx((10.0 + 4.0) / 5)]
    wi.expire(now=T0 + 6)
    assert fi[-1].revised and (fi[-1].value, fi[-1].nsources, fi[-1].expected) == (14.0, 3, 3)


def test_breakdowns_keep_top_k_and_exact_totals() -> None:
    w, finals = window(inst(), topk=3)
    w.add("a", T0, {f"k{i}": float(i) for i in range(10)}, now=T0 + 1.1)
    value = finals[0].value
    assert set(value) == {"k9", "k8", "k7", values.OTHER}
    assert sum(value.values()) == sum(range(10))


def test_histograms_merge_across_sources() -> None:
    w, _finals = window(inst(shape=values.HISTOGRAM))
    h1, h2 = Histogram(), Histogram()
    for x in (1.0, 2.0, 3.0):
        h1.record(x)
    h2.record(100.0)
    w.add("a", T0, h1, now=T0 + 0.5)
    w.add("b", T0, h2, now=T0 + 0.6)
    w.expire(now=T0 + 10)
    merged = w.points(T0, T0 + 1)[0].value
    assert merged.count == 4
    assert merged.sum == 106.0


def test_aggregator_counts_bad_partials_without_failing() -> None:
    agg = Aggregator(MemoryBus())
    agg.enable(inst(shape=values.SCALAR))
    batch = m.Batch("a", T0, T0 + 1.0, [m.Partial(1, "not a number"), m.Partial(99, 1.0),
                                        m.Partial(1, 2.0)])
    agg.add_batch(received(batch), now=T0 + 1.1)
    assert agg.dropped["malformed_value"] == 1
    assert agg.dropped["unknown_instrumentation"] == 1
    assert agg.window(1).points(T0, T0 + 1)[0].value == pytest.approx(2.0)


def test_messages_from_the_bus_that_are_garbage_or_foreign_are_counted_and_dropped() -> None:
    """Through the aggregator's own handler, as they come off the bus: the value of a good batch
    is merged; garbage, a batch on another host's subject and a bad encoded value are not."""
    agg = Aggregator(MemoryBus())
    agg.enable(inst(shape=values.SCALAR))
    t = int(time.time()) - 2  # handled as they arrive: a recent second
    good = m.encode(m.Batch("a", t, t + 1.0, [m.Partial(1, 2.0)]))
    bad_value = m.encode(m.Batch("b", t, t + 1.0, [m.Partial(1, {"x": "y"})]))
    messages = [(m.data_subject("a"), good), (m.data_subject("a"), b"\xc1garbage"),
                (m.data_subject("c"), m.encode(m.Batch("d", t, t + 1.0, [m.Partial(1, 5.0)]))),
                (m.data_subject("b"), bad_value), (m.data_subject("a"), b"\x00" * (m.MAX_MESSAGE + 1)),
                (f"{m.DATA}.a", good)]  # the subject of no partition
    for subject, data in messages:
        asyncio.run(agg._on_batch(Msg(subject, data)))
    assert agg.dropped == {"malformed_batch": 2, "host_not_subject": 2, "malformed_value": 1}
    agg.window(1).expire(time.time() + 5)
    assert [(p.value, p.nsources) for p in agg.window(1).points(t, t + 1)] == [(2.0, 1)]


def test_skewed_clocks_are_corrected_to_the_aggregators_slots() -> None:
    agg = Aggregator(MemoryBus())
    agg.enable(inst(shape=values.SCALAR))
    now = T0 + 10.2
    for k in range(5):  # the agent's clock runs 3.4 s ahead; transit jitter of a few ms
        agg.observe_clock("skewed", now + 3.4 + 0.001 * k, now)
        agg.observe_clock("exact", now + 0.01, now)
    assert agg.clock_offset("skewed") == pytest.approx(3.402, abs=0.01)
    assert (agg.clock_correction("skewed"), agg.clock_correction("exact")) == (3, 0)
    # Both hosts measure our second T0+9; the skewed one calls it T0+12.
    agg.add_batch(received(m.Batch("skewed", T0 + 12, now + 3.4, [m.Partial(1, 1.0)])), now=now)
    agg.add_batch(received(m.Batch("exact", T0 + 9, now, [m.Partial(1, 2.0)])), now=now)
    points = agg.window(1).points(T0, T0 + 20)
    assert [(p.start_time, p.value, p.nsources) for p in points] == [(T0 + 9, 3.0, 2)]


def test_an_aggregator_keeps_windows_only_for_its_shard() -> None:
    agg = Aggregator(MemoryBus())
    for i in (1, 2, 3):
        agg.enable(inst(shape=values.SCALAR, inst_id=i))
    agg.own({1, 3})
    assert set(agg.windows) == {1, 3} and agg.following() == {1, 2, 3}
    batch = m.Batch("a", T0, T0 + 1.0, [m.Partial(i, float(i)) for i in (1, 2, 3)])
    agg.add_batch(received(batch), now=T0 + 1.1)
    assert agg.dropped["unknown_instrumentation"] == 0, "another shard's partials are not errors"
    assert agg.window(2) is None
    agg.own({2})  # a rebalance: 1 and 3 moved away, 2 came here
    assert set(agg.windows) == {2}
    agg.enable(inst(shape=values.SCALAR, inst_id=4))  # created meanwhile, not ours
    assert set(agg.windows) == {2}
