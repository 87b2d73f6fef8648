"""History on both backends (SQLite and a real PostgreSQL): exact rollups over synthetic days, late
data, retention, ranges across tiers and the real-time window, restarts, stats and bad input."""

from __future__ import annotations

import math
import random
from collections import defaultdict

import pytest

from fleetscope.aggregator.window import Window
from fleetscope.api import queries
from fleetscope.model import values
from fleetscope.model.errors import InputError
from fleetscope.model.histogram import Histogram
from fleetscope.model.instrumentation import Instrumentation
from fleetscope.model.metrics import INTERVAL, POINT
from fleetscope.model.series import DataPoint
from fleetscope.model.tiers import validate_retention
from fleetscope.store import chunkenc
from fleetscope.store.block import from_points, to_points
from fleetscope.store.history import History, HistoryConfig
from fleetscope.store.open import open_store
from tests import store_backends

# The store fixtures, once per backend (SQLite and PostgreSQL).
pg_url, backend_url, store = store_backends.pg_url, store_backends.backend_url, store_backends.store

T0 = 1_700_000_000 - 1_700_000_000 % 86400  # midnight
HOUR = 3600


def make_inst(store, shape=values.DISCRETE, kind=INTERVAL, persist=True, history=None,
              granularity=1) -> Instrumentation:
    spec = {"module": "cpu", "stat": "usage", "predicate": {}, "decomposition": ("mode",),
            "granularity": granularity, "retention": 600, "idle_max": 0, "persist": persist, "kind": kind,
            "shape": shape,
            "discrete": "mode" if shape in (values.DISCRETE, values.DISCRETE_HISTOGRAM) else None,
            "numeric": "latency" if shape in (values.HISTOGRAM, values.DISCRETE_HISTOGRAM) else None,
            "history": history or {}}
    return store.create_instrumentation(spec, 0.0)


def value_at(rng: random.Random, shape: str, nkeys: int):
    if shape == values.SCALAR:
        return float(rng.randrange(0, 1000))
    if shape == values.DISCRETE:
        chosen = rng.sample(range(nkeys), rng.randrange(1, nkeys))
        return {f"k{j:02d}": float(rng.randrange(1, 1000)) for j in chosen}
    h = Histogram()
    for _ in range(rng.randrange(1, 30)):
        h.record(rng.randrange(1, 2000) / 8)  # dyadic values: sums are exact in any order
    if shape == values.HISTOGRAM:
        return h
    return {f"r{j}": h.copy() for j in range(rng.randrange(1, 4))}


def synthetic(rng: random.Random, shape: str, start: int, end: int, nkeys: int = 8,
              holes: tuple[tuple[int, int], ...] = ()) -> list[DataPoint]:
    out = []
    for t in range(start, end):
        if any(a <= t < b for a, b in holes) or rng.random() < 0.02:
            continue
        out.append(DataPoint(t, 1, value_at(rng, shape, nkeys), 1, 1))
    return out


def drive(history: History, inst: Instrumentation, points: list[DataPoint], every: int = 600) -> None:
    """Record ``points`` in time order and compact every ``every`` synthetic seconds, as the server does."""
    by_time = defaultdict(list)
    for p in points:
        by_time[p.start_time // every].append(p)
    for key in sorted(by_time):
        history.write(inst, by_time[key])
        history.compact(now=(key + 1) * every + history.config.settle)


def brute_rollup(points: list[DataPoint], step: int, kind: str, shape: str) -> dict[int, object]:
    """Every slot of a step merged in Python (no folding), the point average taken over slots."""
    groups = defaultdict(list)
    for p in points:
        groups[p.start_time - p.start_time % step].append(p.value)
    out = {}
    for t, vs in groups.items():
        acc = values.empty(shape)
        for v in vs:
            acc = values.merge_into(acc, v, shape)
        out[t] = values.scale(acc, 1.0 / len(vs), shape) if kind == POINT and len(vs) > 1 else acc
    return out


def stored_points(history: History, inst: Instrumentation, level: int, start: int, end: int) -> dict:
    tier = history.tiers(inst)[level]
    block = history.chunks.read(inst, tier, start, end)  # the tier as stored, nothing computed on the fly
    return {p.start_time: p for p in to_points(block, inst.shape, inst.kind, tier.resolution)}


@pytest.mark.parametrize(("shape", "kind"), [(values.DISCRETE, INTERVAL), (values.SCALAR, POINT),
                                             (values.HISTOGRAM, INTERVAL),
                                             (values.DISCRETE_HISTOGRAM, POINT)])
def test_rollups_are_exact_against_brute_force(store, shape: str, kind: str) -> None:
    rng = random.Random(hash((shape, kind)) & 0xFFFF)
    inst = make_inst(store, shape, kind)
    history = History(store)
    hours = 2 if shape in (values.HISTOGRAM, values.DISCRETE_HISTOGRAM) else 3  # histograms: slower to build
    points = synthetic(rng, shape, T0, T0 + hours * HOUR + 600, holes=((T0 + 4000, T0 + 4700),))
    drive(history, inst, points)
    history.compact(now=T0 + 5 * HOUR)
    for level, step in ((1, 60), (2, HOUR)):
        got = stored_points(history, inst, level, T0, T0 + 4 * HOUR)
        want = brute_rollup(points, step, kind, shape)
        assert set(got) == set(want), f"every {step}s step with data is rolled up, no other"
        for t, v in want.items():
            if kind == POINT and shape != values.SCALAR:
                assert got[t].value.keys() == v.keys()
                for key in v:
                    h, ref = got[t].value[key], v[key]
                    assert (h.schema, h.buckets.keys()) == (ref.schema, ref.buckets.keys())
                    assert (h.count, h.sum) == pytest.approx((ref.count, ref.sum), rel=1e-12)
            else:
                assert got[t].value == v, (step, t)
    # a gap of 700 s leaves minutes without data: they are gaps, not zeros
    gap = stored_points(history, inst, 1, T0 + 4020, T0 + 4680)
    assert gap == {}


def test_breakdowns_fold_into_other_with_exact_totals(store) -> None:
    rng = random.Random(3)
    inst = make_inst(store)
    history = History(store, HistoryConfig(topk=5))
    points = synthetic(rng, values.DISCRETE, T0, T0 + 2 * HOUR, nkeys=20)
    drive(history, inst, points)
    history.compact(now=T0 + 3 * HOUR)
    for level, step in ((1, 60), (2, HOUR)):
        got = stored_points(history, inst, level, T0, T0 + 2 * HOUR)
        want = brute_rollup(points, step, INTERVAL, values.DISCRETE)
        for t, v in want.items():
            assert len(got[t].value) <= 6 and values.OTHER in got[t].value
            assert math.fsum(got[t].value.values()) == math.fsum(v.values()), "totals stay exact"
            top = sorted(v, key=lambda k: (-v[k], k))[:5]
            if level == 1:  # the minute's own top keys are exact
                assert all(got[t].value[k] == v[k] for k in top)


def test_late_data_is_merged_into_coarser_tiers(store) -> None:
    rng = random.Random(5)
    inst = make_inst(store)
    history = History(store)
    points = synthetic(rng, values.DISCRETE, T0, T0 + 2 * HOUR)
    drive(history, inst, points)
    history.compact(now=T0 + 2 * HOUR + 60)
    assert store.watermarks()[inst.id, 2] == T0 + 2 * HOUR
    # A late revision of a slot rolled up long ago, and a slot seen for the first time.
    old = next(p for p in points if p.start_time == T0 + 1234 or p.start_time > T0 + 1234)
    revised = old._replace(value={**old.value, "late": 500.0}, revised=True, nsources=2)
    missing = DataPoint(T0 + HOUR + 17, 1, {"new": 7.0}, 1, 1)
    history.record(inst, revised)
    history.record(inst, missing)
    report = history.compact(now=T0 + 2 * HOUR + 120)
    assert report["rerolled_minute"] == 2 and report["rerolled_hour"] == 2
    assert store.pending_rollups() == []
    final = sorted({p.start_time: p for p in [*points, revised, missing]}.values())
    for level, step in ((1, 60), (2, HOUR)):
        got = stored_points(history, inst, level, T0, T0 + 2 * HOUR)
        want = brute_rollup(final, step, INTERVAL, values.DISCRETE)
        assert {t: p.value for t, p in got.items()} == want
    minute = stored_points(history, inst, 1, T0 + 1200, T0 + 1260)[T0 + 1200]
    assert minute.revised and minute.nsources == 1, "the least complete part decides nsources"


def test_retention_deletes_and_hides_old_data_and_reclaims_space(store, backend_url: str) -> None:
    retention = {**{"second": HOUR, "minute": 2 * HOUR, "hour": 2 * HOUR}}
    validate_retention(retention)
    inst = make_inst(store)
    history = History(store, HistoryConfig(retention=retention))
    rng = random.Random(9)
    points = synthetic(rng, values.DISCRETE, T0, T0 + 4 * HOUR, nkeys=12)
    history.write(inst, points)
    history.flush()
    size_full = store.disk_bytes()
    now = T0 + 4 * HOUR + 10
    history.compact(now=now)
    raw = store.chunk_index(inst.id, 0)
    assert raw and min(c.start for c in raw) >= now - HOUR - 3600, "raw chunks past retention deleted"
    tiers = history.tiers(inst)
    block = history.read(inst, tiers[0], T0, now, now=now)
    assert block.start >= now - HOUR, "data past retention is never returned"
    minutes = history.read(inst, tiers[1], T0, now, now=now)
    assert minutes.start >= now - 2 * HOUR
    # Everything expires: the rows go and (SQLite) the file shrinks.
    history.compact(now=now + 30 * 86400)
    assert store.history_stats() == []
    if backend_url.startswith("sqlite"):
        assert store.disk_bytes() < size_full / 2


def test_per_instrumentation_retention_overrides_the_global_one(store) -> None:
    history = History(store, HistoryConfig(retention={"second": 86400, "minute": 2 * 86400,
                                                      "hour": 3 * 86400}))
    inst = make_inst(store, history={"minute": 10 * 86400})
    assert [t.retention for t in history.tiers(inst)] == [86400, 10 * 86400, 10 * 86400], \
        "a coarser tier keeps at least as long as a finer one"
    coarse = make_inst(store, granularity=60)
    assert [t.name for t in history.tiers(coarse)] == ["second", "hour"]
    with pytest.raises(InputError) as err:
        validate_retention({"second": "40d"})
    assert err.value.field == "history.second"
    with pytest.raises(InputError) as err:
        validate_retention("second=10m,minute=1h,hour=30m")
    assert err.value.field == "history.hour"


def window_for(inst: Instrumentation, points: list[DataPoint], on_final=None) -> Window:
    """A real-time window holding ``points`` (one host, final at once)."""
    window = Window(inst, 50, 1.5, on_final or (lambda i, p: None))
    for p in points:
        window.add("host1", p.start_time, p.value, p.start_time + 1.2)
    return window


def test_ranges_cross_tiers_and_the_window_without_gaps_or_double_counting(store) -> None:
    rng = random.Random(11)
    inst = make_inst(store)
    history = History(store)
    end = T0 + 3 * HOUR
    points = synthetic(rng, values.DISCRETE, T0, end + 300)
    stored = [p for p in points if p.start_time < end]
    drive(history, inst, stored)
    now = end + 300
    history.compact(now=end + 10)
    # The window holds the last ten minutes: five also in the store, five only in memory.
    window = window_for(inst, [p for p in points if p.start_time >= end - 300])
    tiers = queries.tiers_of(inst, history)

    def answer(**kw):
        rng_ = queries.resolve_range(inst, window.latest(), tiers=tiers, now=now, **kw)
        return rng_, queries.data_points(inst, window, rng_, 50, history, now)

    truth = {p.start_time: p.value for p in points}
    r, pts = answer(start_time=end - 900, end_time=end + 300)
    assert (r.duration, queries.resolution(inst, r, history)) == (1, 1)
    assert [p.value for p in pts] == [truth.get(t) for t in r.times()], "store, then window, once each"
    r, pts = answer(start_time=T0 + 2 * HOUR, end_time=end + 300, duration=60)
    assert queries.resolution(inst, r, history) == 60
    want = brute_rollup(points, 60, INTERVAL, values.DISCRETE)
    assert [p.value for p in pts] == [want.get(t) for t in r.times()]
    # The whole history at most 100 points: 2-minute steps from the minute tier.
    r, pts = answer(start_time=T0, end_time=end + 300, ndatapoints=100)
    assert (r.duration, r.n, queries.resolution(inst, r, history)) == (120, 93, 60)
    want = brute_rollup(points, 120, INTERVAL, values.DISCRETE)
    assert [p.value for p in pts] == [want.get(t) for t in r.times()]
    r, pts = answer(start_time=T0, end_time=end + 300, ndatapoints=3)
    assert (r.duration, queries.resolution(inst, r, history)) == (2 * HOUR, HOUR)
    assert sum(values.total(p.value, inst.shape) for p in pts) == sum(
        values.total(v, inst.shape) for v in truth.values())


def test_tier_choice_follows_retention(store) -> None:
    inst = make_inst(store)
    history = History(store)
    tiers = history.tiers(inst)
    now = T0 + 40 * 86400
    ten_days_ago = int(now) - 10 * 86400
    r = queries.resolve_range(inst, None, start_time=ten_days_ago, end_time=ten_days_ago + 600, tiers=tiers,
                              now=now)
    assert (r.duration, r.n) == (60, 10), "per-second history is gone: the minute tier answers"
    with pytest.raises(InputError) as err:
        queries.resolve_range(inst, None, start_time=ten_days_ago, end_time=ten_days_ago + 600, duration=1,
                              tiers=tiers, now=now)
    assert err.value.field == "duration" and "7 days" in err.value.message
    r = queries.resolve_range(inst, None, start_time=int(now) - 35 * 86400, ndatapoints=5, tiers=tiers,
                              now=now)
    assert r.duration == HOUR
    r = queries.resolve_range(inst, None, start_time=int(now) - 86400, end_time=int(now), ndatapoints=1000,
                              tiers=tiers, now=now)
    assert (r.duration, queries.tier_for(tiers, r.duration).resolution) == (120, 60)
    assert r.n <= 1000


def test_restart_keeps_flushed_history_and_loses_only_the_head(backend_url: str) -> None:
    store1 = open_store(backend_url)
    inst = make_inst(store1)
    history = History(store1)
    rng = random.Random(13)
    points = synthetic(rng, values.DISCRETE, T0, T0 + 900)
    drive(history, inst, points[:600], every=300)
    history.write(inst, points[600:])  # buffered, never flushed: the process dies
    store1.close()

    store2 = open_store(backend_url)
    assert store2.integrity_check() == "ok"
    history2 = History(store2)
    tier = history2.tiers(inst)[0]
    got = to_points(history2.read(inst, tier, T0, T0 + 900, now=T0 + 900), inst.shape, INTERVAL, 1)
    assert got == points[:600]
    history2.write(inst, points[700:])
    history2.compact(now=T0 + 1200)
    minutes = stored_points(history2, inst, 1, T0, T0 + 1200)
    want = brute_rollup(points[:600] + points[700:], 60, INTERVAL, values.DISCRETE)
    assert {t: p.value for t, p in minutes.items()} == want, "the missing minutes are a gap, not zeros"
    store2.close()


def test_window_only_instrumentations_never_touch_the_store(store) -> None:
    inst = make_inst(store, persist=False)
    history = History(store)
    rng = random.Random(17)
    points = synthetic(rng, values.DISCRETE, T0, T0 + 120)
    window = window_for(inst, points, history.record)
    history.compact(now=T0 + 200)
    assert store.history_stats() == []
    r = queries.resolve_range(inst, window.latest(), ndatapoints=120, tiers=queries.tiers_of(inst, history),
                              now=T0 + 121)
    got = queries.data_points(inst, window, r, 50, history, T0 + 121)
    truth = {p.start_time: p.value for p in points}
    assert [p.value for p in got] == [truth.get(t) for t in r.times()]


def test_stats_and_deleting_an_instrumentation_deletes_its_history(store) -> None:
    a, b = make_inst(store), make_inst(store, values.HISTOGRAM)
    history = History(store)
    rng = random.Random(19)
    points = synthetic(rng, values.DISCRETE, T0, T0 + 1200)
    drive(history, a, points)
    drive(history, b, synthetic(rng, values.HISTOGRAM, T0, T0 + 1200))
    stats = {(s.inst_id, s.tier): s for s in history.stats()}
    raw = stats[a.id, "second"]
    assert raw.points == len(points)
    assert raw.samples == sum(len(p.value) for p in points)
    assert raw.oldest == points[0].start_time and raw.newest <= T0 + 1200 and raw.bytes > 0
    assert 0 < raw.bytes_per_sample < 4
    assert stats[a.id, "minute"].points == 20
    assert store.delete_instrumentation(a.id)
    assert {s.inst_id for s in store.history_stats()} == {b.id}
    store.write_history(history_change_for(b.id + 100))  # history of an instrumentation that is gone
    history.compact(now=T0 + 1300)
    assert {s.inst_id for s in store.history_stats()} == {b.id}, "orphaned history is removed"


def history_change_for(inst_id: int):
    from fleetscope.store.base import HistoryChange, NewChunk

    data = chunkenc.encode(from_points([DataPoint(T0, 1, 1.0, 1, 1)], values.SCALAR))
    return HistoryChange(add=[NewChunk(inst_id, 0, T0, T0 + 1, 1, 1, data)])


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("mysql://localhost/x", "unsupported"),
        ("/var/lib/fleetscope.db", "unsupported"),
        ("sqlite://", "names no file"),
        ("sqlite:///", "names no file"),
        ("sqlite:///tmp/", "names no file"),
        ("postgresql://127.0.0.1", "names no database"),
        ("postgresql://127.0.0.1:1/fleetscope", "cannot open"),
        ("postgresql://nosuchuser_xyz@127.0.0.1/nosuchdb_xyz", "cannot open"),
    ],
)
def test_bad_store_urls_are_clear_errors(url: str, needle: str) -> None:
    with pytest.raises(InputError) as err:
        open_store(url)
    assert err.value.field == "store" and err.value.status == 400
    assert needle in err.value.message


def test_unusable_sqlite_files_are_clear_errors(tmp_path) -> None:
    (tmp_path / "garbage.db").write_bytes(b"this is not a database" * 100)
    (tmp_path / "afile").write_text("x")
    for url in (f"sqlite:///{tmp_path / 'garbage.db'}", f"sqlite:///{tmp_path / 'afile' / 'x.db'}"):
        with pytest.raises(InputError) as err:
            open_store(url)
        assert err.value.field == "store" and "cannot open" in err.value.message


def test_a_failed_flush_keeps_the_points_for_the_next_one(store) -> None:
    inst = make_inst(store)

    class Flaky:
        """The store, except that the first write fails (a full disk, a lost connection)."""

        failures = 1

        def __getattr__(self, name):
            return getattr(store, name)

        def write_history(self, change):
            if self.failures:
                self.failures -= 1
                raise OSError("disk full")
            store.write_history(change)

    history = History(Flaky())
    points = synthetic(random.Random(23), values.DISCRETE, T0, T0 + 30)
    history.write(inst, points[:20])
    with pytest.raises(OSError):
        history.flush()
    history.write(inst, points[20:])
    assert history.buffered() == len(points)
    assert history.flush() == len(points)
    assert list(stored_points(history, inst, 0, T0, T0 + 30).values()) == points
    assert history.counters["flush_errors"] == 1


def test_only_the_owner_rolls_up_an_instrumentation(store) -> None:
    a, b = make_inst(store), make_inst(store)
    mine = History(store, owns=lambda i: i == a.id)  # e.g. the aggregator holding a's lease
    rng = random.Random(29)
    mine.write(a, synthetic(rng, values.DISCRETE, T0, T0 + 600))
    mine.write(b, synthetic(rng, values.DISCRETE, T0, T0 + 600))
    mine.compact(now=T0 + 700)
    assert store.chunk_index(a.id, 1) and not store.chunk_index(b.id, 1)
    assert (b.id, 1) not in store.watermarks()
    History(store, owns=lambda i: i == b.id).compact(now=T0 + 700)
    assert store.chunk_index(b.id, 1)
