"""Long ranges over many keys (#19): the server's work and memory for a range question are bounded
by what it answers (points x keys), not by the range it reads.

The issue's case at a smaller but telling scale: a breakdown by 300 keys (10 per minute and
``(other)``, changing every hour) kept per minute for 60 days, asked as the dashboard asked it
(``ceil(span / 300)`` seconds per point, not a multiple of an hour). Answers are compared with
sums made here from the generated minutes and folded by ``values.fold_top_k``; memory is what
``tracemalloc`` saw numpy and Python allocate during the query (the chunk cache switched off, so
only the query's own work counts), against the matrix of every minute by every key that reading
the whole range at once builds.
"""

from __future__ import annotations

import math
import tracemalloc
from collections import defaultdict

import numpy as np
import pytest

from fleetscope.api import queries
from fleetscope.model import values
from fleetscope.model.errors import InputError
from fleetscope.model.metrics import INTERVAL
from fleetscope.model.tiers import tidy_step
from fleetscope.store.base import HistoryChange
from fleetscope.store.block import Block, compact_columns
from fleetscope.store.chunkio import to_chunks
from fleetscope.store.history import History, HistoryConfig
from fleetscope.store.open import open_store
from fleetscope.store.rollup import rollup

DAY = 86400
G = 60  # per-minute slots: the raw tier is the minute tier
DAYS = 60
NKEYS = 300
PER_MINUTE = 10
TOPK = 10
T0 = 1_700_000_000 - 1_700_000_000 % DAY
NOW = T0 + DAYS * DAY
KEYS = sorted([values.OTHER, *(f"p{j:03d}" for j in range(NKEYS))])
COL = {k: j for j, k in enumerate(KEYS)}


def day_block(day: int) -> Block:
    """The minutes of one day: PER_MINUTE keys (a set that moves every hour) and (other)."""
    n = DAY // G
    times = T0 + day * DAY + np.arange(n, dtype=np.int64) * G
    hour = (times - T0) // 3600
    vals = np.full((n, len(KEYS)), np.nan)
    rows = np.arange(n)
    for j in range(PER_MINUTE):
        key = (hour * 7 + j * 31) % NKEYS
        # whole numbers, so that sums are exact in any order
        vals[rows, [COL[f"p{k:03d}"] for k in key.tolist()]] = (times // G * (j + 3)) % 997 + j
    vals[:, COL[values.OTHER]] = (times // G) % 13
    ones = np.ones(n, np.int64)
    return compact_columns(Block(times, ones, ones, ones, np.zeros(n, bool), tuple(KEYS), vals, None))


@pytest.fixture(scope="module")
def year(tmp_path_factory):
    """60 days of minutes in the raw tier and their hours in the hour tier (rolled up as the
    compactor does, written directly: compaction is not what is tested here)."""
    store = open_store(f"sqlite:///{tmp_path_factory.mktemp('big') / 'h.db'}")
    inst = store.create_instrumentation({
        "module": "proc", "stat": "cpu", "predicate": {}, "decomposition": ("execname",),
        "granularity": G, "retention": 600, "idle_max": 0, "persist": True, "kind": INTERVAL,
        "shape": values.DISCRETE, "discrete": "execname", "numeric": None,
        "history": {"second": DAYS * DAY + DAY, "hour": 365 * DAY}}, 0.0)
    history = History(store, HistoryConfig(cache_bytes=0, topk=TOPK))
    tiers = history.tiers(inst)
    assert [t.resolution for t in tiers] == [G, 3600]
    days = [day_block(d) for d in range(DAYS)]
    for block in days:
        history.write_block(inst, block)
        hours = rollup(block, inst.shape, block.start, 3600, TOPK)
        store.write_history(HistoryChange(add=to_chunks(inst.id, tiers[1], hours),
                                          watermarks=[(inst.id, tiers[1].level, block.start + DAY)]))
    yield store, inst, history, days
    store.close()


def expected(days: list[Block], start: int, step: int, n: int) -> list[dict | None]:
    """Per step, the sums of every key over its minutes, folded to the top TOPK and (other)."""
    sums: list[dict] = [defaultdict(float) for _ in range(n)]
    for block in days:
        idx = (block.times - start) // step
        for r, i in enumerate(idx.tolist()):
            if 0 <= i < n:
                row = block.values[r]
                for j in np.flatnonzero(~np.isnan(row)).tolist():
                    sums[i][block.keys[j]] += row[j]
    return [values.fold_top_k(dict(s), TOPK, values.DISCRETE) if s else None for s in sums]


def peak_mb(fn):
    tracemalloc.start()
    try:
        out = fn()
        return out, tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()


def test_the_dashboards_step_over_a_long_range_is_answered_a_span_at_a_time(year) -> None:
    _store, inst, history, days = year
    tiers = history.tiers(inst)
    start, end = T0, NOW
    step = math.ceil((end - start) / 300)  # as the dashboard asked: 17,280 s, not whole hours
    rng = queries.resolve_range(inst, None, start, end, duration=step, tiers=tiers, now=NOW)
    assert (rng.duration, queries.resolution(inst, rng, history)) == (step, G), "within budget: kept"
    pts, peak = peak_mb(lambda: queries.data_points(inst, None, rng, TOPK, history, NOW))
    assert [p.value for p in pts] == expected(days, rng.start, rng.duration, rng.n)
    assert all(len(p.value) <= TOPK + 1 for p in pts if p.value)
    # Every minute by every key is 208 MB; reading the range at once and rolling it up took
    # 565 MB here (as 525,600 x 973 took 13.5 GB in the issue). A span at a time: 33 MB.
    whole = (end - start) // G * len(KEYS) * 8 / 1e6
    assert peak < whole / 4, f"{peak:.0f} MB for a range whose full matrix is {whole:.0f} MB"
    # The columns readers (the PromQL adapter) get the same steps.
    block, peak_block = peak_mb(lambda: queries.data_block(inst, None, rng, TOPK, history, NOW))
    assert block.times.tolist() == [p.start_time for p in pts if p.value is not None]
    assert peak_block < whole / 4


def test_a_step_that_would_read_too_many_rows_snaps_to_a_tidy_multiple_of_a_coarser_tier(
        year, monkeypatch) -> None:
    _store, inst, history, days = year
    tiers = history.tiers(inst)
    monkeypatch.setattr(queries, "READ_BUDGET", 20_000)  # 60 days of minutes are 86,400 rows
    step = math.ceil(DAYS * DAY / 300)
    rng = queries.resolve_range(inst, None, T0, NOW, duration=step, tiers=tiers, now=NOW)
    assert rng.duration == tidy_step(step, 3600) == 6 * 3600, "six hours: divides a day"
    assert queries.resolution(inst, rng, history) == 3600
    pts, peak = peak_mb(lambda: queries.data_points(inst, None, rng, TOPK, history, NOW))
    want = expected(days, rng.start, rng.duration, rng.n)
    # The hour tier folded each hour to its top keys: totals are exact, the keys may differ.
    assert [values.total(p.value, inst.shape) if p.value else None for p in pts] == \
        [values.total(w, inst.shape) if w else None for w in want]
    assert peak < 10, f"{peak:.1f} MB for 1,440 hours (the minute tier took 565 MB at once)"
    # Without history the dashboard's non-tidy steps become tidy too (ndatapoints).
    rng = queries.resolve_range(inst, None, T0, NOW, ndatapoints=300, tiers=tiers, now=NOW)
    assert (rng.duration, rng.n) == (6 * 3600, 240)


def test_a_step_no_tier_it_reaches_can_answer_within_budget_is_refused_naming_one_that_can(
        year, monkeypatch) -> None:
    _store, inst, history, _days = year
    tiers = history.tiers(inst)
    monkeypatch.setattr(queries, "READ_BUDGET", 20_000)
    with pytest.raises(InputError) as err:
        queries.resolve_range(inst, None, T0, NOW, duration=1800, tiers=tiers, now=NOW)
    assert err.value.field == "duration"
    assert "86400 points of the second tier" in err.value.message
    assert "multiple of 3600 s (the hour tier), e.g. 3600" in err.value.message
    # Heatmap columns follow the same rule.
    with pytest.raises(InputError) as err:
        queries.heatmap_range(inst, None, T0, None, DAYS * DAY, 1800, None, tiers=tiers, now=NOW)
    assert err.value.field == "step" and "hour tier" in err.value.message


def test_a_range_of_any_length_reads_only_where_the_tiers_hold_data(year) -> None:
    _store, inst, history, _days = year
    tiers = history.tiers(inst)
    rng = queries.resolve_range(inst, None, 0, 2**53, ndatapoints=10_000, tiers=tiers, now=NOW)
    reads = []
    real = history.read
    try:
        history.read = lambda *a, **k: reads.append(a[1].level) or real(*a, **k)
        pts = queries.data_points(inst, None, rng, TOPK, history, NOW)
    finally:
        del history.read
    assert len(pts) == 10_000
    # The hour tier's spans (30 days) from its retention (a year) to now: 14, not 2**53 s / 30 days
    # (past the hour tier's watermark a read also reads the minutes after it).
    assert reads.count(2) <= 365 // 30 + 2, reads


@pytest.mark.parametrize("asked", [
    {"start_time": 0, "duration": G * 2**44, "ndatapoints": 10_000},  # points past 2**53 s
    {"end_time": NOW, "duration": G * 2**30, "ndatapoints": 10_000},  # starts before 1970
])
def test_points_that_reach_past_any_clock_are_refused_naming_duration(year, asked: dict) -> None:
    _store, inst, history, _days = year
    with pytest.raises(InputError) as err:
        queries.resolve_range(inst, None, tiers=history.tiers(inst), now=NOW, **asked)
    assert err.value.field == "duration" and "epoch seconds 0 to" in err.value.message
    with pytest.raises(InputError) as err:  # a heatmap's columns too
        queries.heatmap_range(inst, None, asked.get("start_time"), asked.get("end_time"), 2**62, None,
                              None, tiers=history.tiers(inst), now=NOW)
    assert err.value.field == "duration"


def test_an_export_of_any_length_streams_only_where_the_tier_holds_data(year) -> None:
    _store, inst, history, days = year
    hour = history.tiers(inst)[1]
    reads = []
    real = history.read
    try:
        history.read = lambda *a, **k: reads.append(a[1].level) or real(*a, **k)
        pts = list(history.export(inst, hour, 0, 2**53, 86400, NOW))
    finally:
        del history.read
    assert len(pts) == DAYS and reads.count(hour.level) <= 365 // 30 + 2, (len(pts), reads)
    assert sum(values.total(p.value, inst.shape) for p in pts) == sum(
        float(np.nansum(b.values)) for b in days)
