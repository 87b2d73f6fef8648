"""Answers made once over imports (#18: imported data reads as fast as live history).

Each instrumentation's answer over an import is evaluated once and kept as chunks and
tiers (``fleetscope.api.imported.make_answer``); these tests check, on SQLite and a real
PostgreSQL, that what is read from them equals what evaluating the import's rows gives,
and both equal a reference written here from the rules of ``imported``'s docstring (each
sample placed on the steps one by one), over steps finer and coarser than the samples,
aligned with the tiers or not, for interval and point metrics, numbers and histograms, two
hosts at once, samples of 10 minutes that cross minutes and hours, and one time given
twice (sar's -r and -S). Then: deleting an import or an instrumentation deletes its
answers; makers that race keep one; and through a real server, an instrumentation made
before an import and one made after both read it, the same before and after the answer
is made.
"""

from __future__ import annotations

import hashlib
import math
import sqlite3
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from fleetscope.api import imported
from fleetscope.api.queries import Range
from fleetscope.model import values
from fleetscope.model.histogram import Histogram
from fleetscope.model.instrumentation import Instrumentation, validate_spec
from fleetscope.model.metrics import INTERVAL, Catalog
from fleetscope.perflogs.metrics import METRICS
from fleetscope.perflogs.sink import Column
from fleetscope.store.importenc import decode
from fleetscope.store.importresults import STALE_CLAIM
from fleetscope.store.importwrite import ImportWriter
from tests.conftest import Server, free_port, wait_for
from tests.store_backends import backend_url, pg_url, store  # noqa: F401  (fixtures)

T0 = 1_700_000_017  # neither on a minute nor an hour: samples cross both
HOUR = 3600


def _import(store, host: str, samples, chunk_rows: int = 50):  # noqa: F811
    """An import written the server's way (staged, chunks of ``chunk_rows`` samples)."""
    digest = hashlib.sha256(f"{host}{len(samples)}".encode()).hexdigest()
    import_id = store.begin_import(host, "csv", None, [{"name": f"{host}.log", "sha256": digest, "bytes": 1}],
                                   {"options": {}})
    writer = ImportWriter(store, import_id, chunk_rows)
    for t, interval, layout, vals in samples:
        writer.add(t, interval, layout, vals)
    writer.flush()
    store.finish_import(import_id, host, writer.start, writer.end, writer.summary())
    return store.get_import(import_id)


CPU = tuple(Column("cpu.usage", ("all", m, "", "")) for m in ("user", "system", "idle"))
MEM = tuple(Column("memory.used", (t,)) for t in ("used", "free"))
SWAP = (Column("memory.used", ("swap",)),)
UTIL = tuple(Column("cpu.utilization", (str(c),)) for c in range(4))


def _web1() -> list:
    """Two hours of 1-second samples (vmstat-like)."""
    rnd = np.random.default_rng(18)
    out = []
    for i in range(2 * HOUR):
        t = T0 + i
        user = float(rnd.integers(0, 60))
        out.append((t, 1, CPU + MEM + UTIL, [user, 10.0, 90.0 - user, 1000.0 + i, 5000.0 - i,
                                             *rnd.integers(0, 100, 4).astype(float).tolist()]))
    return out


def _db1() -> list:
    """Six hours of sar-like samples: 10 minutes each (one of 15), starting 37 s past, and
    memory's used and swap given at the same time in two layouts (sar -r and -S), once with
    different intervals."""
    out = []
    t = T0 + 20
    for i in range(36):
        interval = 900 if i == 7 else 600
        out.append((t, interval, CPU + MEM, [100.0 * i, 30.0, 500.0, 2000.0 + i, 3000.0]))
        # once, swap over another interval from the same time (a section that began later)
        out.append((t, 300 if i == 3 else interval, SWAP + UTIL[:2], [7.0 + i, 10.0 * (i % 10), 55.5]))
        t += interval
    return out


SPECS = [
    {"metric": "cpu.usage", "decomposition": ["mode"], "predicate": {"ne": ["mode", "idle"]}},
    {"metric": "cpu.usage"},
    {"metric": "memory.used", "decomposition": ["type"]},
    {"metric": "memory.used", "predicate": {"eq": ["hostname", "db1"]}},
    {"metric": "cpu.utilization", "decomposition": ["utilization"]},
    {"metric": "cpu.utilization", "decomposition": ["cpu", "utilization"]},
]
RANGES = [
    Range(T0 - 100, 1, 3000),  # finer than the tiers: from the samples
    Range(T0 + 13, 7, 1500),  # an odd step, off every grid
    Range(T0 // 60 * 60, 60, 480),  # the minute tier
    Range(T0 // 60 * 60 - 600, 120, 250),  # two minutes a step: a step's first minute carries
    Range(T0 // 60 * 60 + 60, 300, 100),
    Range(T0 // HOUR * HOUR, HOUR, 10),  # the hour tier
    Range(T0 // HOUR * HOUR - 2 * HOUR, 2 * HOUR, 6),
    Range(T0 // 60 * 60 + 60, 600, 40),  # 10 minutes from a minute that is not on the hour grid
]


def _inst(spec: dict, inst_id: int) -> Instrumentation:
    return Instrumentation(id=inst_id, created=0.0, **validate_spec(spec, Catalog(METRICS)))


def _reference(store, inst: Instrumentation, rng: Range, infos) -> dict[int, tuple]:  # noqa: F811
    """Each sample placed on the steps one by one, by the rules of imported's docstring:
    ``{step: (value, nsources)}``."""
    shape, d = inst.shape, rng.duration
    out: dict[int, tuple] = {}
    for info in infos:
        if inst.predicate.get("eq", [None])[0] == "hostname" and inst.predicate["eq"][1] != info.host:
            continue  # not a source, as an agent whose host the predicate excludes does not run it
        plan, valued = imported._plan(inst, info.host, imported.columns_of(inst.metric, info))
        sums: dict[int, values.Value] = {}
        times: dict[int, set[int]] = {}
        for c in store.import_chunks(inst.metric, rng.start, rng.end, [info.id]):
            chunk = decode(c.data)
            for i, t in enumerate(chunk.times.tolist()):
                interval = int(chunk.intervals[i])
                measure = (1.0,) if valued else ()
                rows = [(*key, x, *measure) for key, x in zip(chunk.keys, chunk.values[i].tolist(),
                                                              strict=True) if not math.isnan(x)]
                if not rows or plan is None:
                    continue
                v = plan.evaluate(rows, weighted=True)
                first = rng.start + (t - rng.start) // d * d  # the step the sample begins in
                for s in range(max(first, rng.start), min(t + interval, rng.end), d):
                    overlap = min(t + interval, s + d) - max(t, s)
                    part = values.scale(v, overlap / interval, shape) if inst.kind == INTERVAL else v
                    sums[s] = values.merge_into(sums.get(s, values.empty(shape)), part, shape)
                    times.setdefault(s, set()).add(t)
        for s, v in sums.items():
            if inst.kind != INTERVAL:
                v = values.scale(v, 1.0 / len(times[s]), shape)
            old = out.get(s)
            out[s] = (v, 1) if old is None else (values.merge_into(old[0], v, shape), old[1] + 1)
    return out


def _same(a, b) -> bool:
    """Equal values, up to the rounding of adding shares in another order."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, Histogram):
        return (isinstance(b, Histogram) and a.schema == b.schema and a.buckets.keys() == b.buckets.keys()
                and all(_close(a.buckets[i], b.buckets[i]) for i in a.buckets)
                and _close(a.count, b.count) and _close(a.sum, b.sum) and _close(a.zero_count, b.zero_count)
                and (a.min, a.max) == (b.min, b.max))
    return _close(a, b)


def _close(x: float, y: float) -> bool:
    return math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-9)


def _check(got: dict, want: dict, what: str) -> None:
    assert got.keys() == want.keys(), (what, sorted(got.keys() ^ want.keys())[:5])
    for s, (v, n) in want.items():
        assert got[s].nsources == n, (what, s)
        assert _same(got[s].value, v), (what, s, got[s].value, v)


def test_made_answers_equal_evaluated_ones_and_the_reference(store, monkeypatch) -> None:  # noqa: F811
    monkeypatch.setattr(imported, "CLUSTER_CHUNKS", 3)  # many pieces: spans completed across them
    infos = [_import(store, "web1", _web1()), _import(store, "db1", _db1(), chunk_rows=7)]
    insts = [_inst(spec, i + 1) for i, spec in enumerate(SPECS)]
    evaluated = {(inst.id, rng): imported.imported_points(store, inst, rng, 50, make=False)
                 for inst in insts for rng in RANGES}
    assert store.import_results(1) == {}  # make=False: nothing asked for
    for inst in insts:
        for info in infos:
            # One whose predicate cannot match the import's host makes nothing (it reads none).
            assert imported.make_answer(store, inst, info) == imported.holds(inst, info)
            assert not imported.make_answer(store, inst, info)  # made already
        assert {r.state for r in store.import_results(inst.id).values()} == {"ready"}
    assert store.import_result_bytes() > 0
    checked = 0
    for inst in insts:
        for rng in RANGES:
            want = _reference(store, inst, rng, infos)
            assert want, (inst.metric, rng)
            _check(evaluated[inst.id, rng], want, f"evaluated {inst.to_json()['decomposition']} {rng}")
            for cold in (True, False):
                if cold:
                    imported.clear_cache(store)
                got = imported.imported_points(store, inst, rng, 50, make=False)
                _check(got, want, f"made {inst.metric} {inst.decomposition} {rng}")
                checked += len(want)
    assert checked > 10_000
    # The answers' rows: the minute tier of web1 holds one row per minute, and no carried
    # rows (its samples do not cross a minute); db1's 10-minute levels carry across minutes.
    mem = insts[2]
    made = store.import_results(mem.id)
    web1_minutes = imported._read_tier(store, mem, infos[0].id, made[infos[0].id].run, 1, 0, 1 << 40)
    assert web1_minutes.n == len({(T0 + i) // 60 for i in range(2 * HOUR)})
    assert imported._read_tier(store, mem, infos[0].id, made[infos[0].id].run, 2, 0, 1 << 40).n == 0
    assert imported._read_tier(store, mem, infos[1].id, made[infos[1].id].run, 2, 0, 1 << 40).n > 0


def test_top_keys_are_folded_after_the_imports_add_up(store) -> None:  # noqa: F811
    infos = [_import(store, "web1", _web1()[:600]), _import(store, "db1", _db1()[:4])]
    inst = _inst({"metric": "cpu.usage", "decomposition": ["mode"]}, 1)
    rng = Range(T0 // 60 * 60, 60, 12)
    before = imported.imported_points(store, inst, rng, 1, make=False)
    for info in infos:
        imported.make_answer(store, inst, info)
    after = imported.imported_points(store, inst, rng, 1, make=False)
    whole = imported.imported_points(store, inst, rng, 50, make=False)
    assert before.keys() == after.keys() == whole.keys()
    for s, p in after.items():
        assert _same(p.value, before[s].value) and len(p.value) == 2 and values.OTHER in p.value
        top = max(whole[s].value, key=whole[s].value.get)  # the largest key of both hosts together
        assert _close(p.value[top], whole[s].value[top])
        assert _close(sum(p.value.values()), sum(whole[s].value.values()))


def test_two_makers_at_once_keep_one_answer(backend_url) -> None:  # noqa: F811
    """Two stores on one database (two API processes) make the same answer at once."""
    import threading

    from fleetscope.store.open import open_store

    stores = [open_store(backend_url) for _ in range(2)]
    try:
        info = _import(stores[0], "web1", _web1())
        inst = _inst({"metric": "memory.used", "decomposition": ["type"]}, 5)
        rng = Range(T0 // 60 * 60, 60, 120)
        want = imported.imported_points(stores[0], inst, rng, 50, make=False)
        made: list[bool] = []
        threads = [threading.Thread(target=lambda s=s: made.append(imported.make_answer(s, inst, info)))
                   for s in stores]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(made) == [False, True]
        assert _runs(stores[1], inst.id) == 1  # one run's chunks, no other
        for s in stores:
            got = imported.imported_points(s, inst, rng, 50, make=False)
            assert got.keys() == want.keys() and all(_same(got[t].value, want[t].value) for t in want)
    finally:
        for s in stores:
            s.close()


def _runs(store, inst_id: int) -> int:  # noqa: F811
    """The runs whose chunks the store holds for an instrumentation."""
    with store._tx() as db:
        return len(db.execute("SELECT DISTINCT run FROM import_result_chunks WHERE inst_id = ?",
                              (inst_id,)).fetchall())


def test_deleting_an_import_or_an_instrumentation_deletes_its_answers(store) -> None:  # noqa: F811
    a = _import(store, "web1", _web1()[:900])
    b = _import(store, "db1", _db1()[:6])
    spec = {"metric": "memory.used", "decomposition": ["type"], "granularity": 1}
    kept = store.create_instrumentation(validate_spec(spec, Catalog(METRICS)), 0.0)
    gone = store.create_instrumentation(validate_spec(spec, Catalog(METRICS)), 0.0)
    for inst in (kept, gone):
        for info in (a, b):
            assert imported.make_answer(store, inst, info)
    per_import = store.import_result_bytes()
    assert per_import > 0
    assert store.delete_import(a.id)
    assert set(store.import_results(kept.id)) == {b.id} and set(store.import_results(gone.id)) == {b.id}
    assert 0 < store.import_result_bytes() < per_import
    assert store.delete_instrumentation(gone.id)
    assert store.import_results(gone.id) == {} and store.import_result_bytes(gone.id) == 0
    assert store.import_result_bytes(kept.id) == store.import_result_bytes() > 0
    # Forgotten answers are made again, the same.
    rng = Range(T0 // 60 * 60, 60, 120)
    first = imported.imported_points(store, kept, rng, 50, make=False)
    store.delete_import_results(import_id=b.id)
    assert store.import_results(kept.id) == {}
    assert imported.make_answer(store, kept, b)
    again = imported.imported_points(store, kept, rng, 50, make=False)
    assert first.keys() == again.keys() and all(_same(first[s].value, again[s].value) for s in first)


def test_makers_that_race_keep_one_answer(store) -> None:  # noqa: F811
    info = _import(store, "db1", _db1()[:6])
    inst = _inst({"metric": "memory.used", "decomposition": ["type"]}, 7)
    definition = imported.definition(inst)
    first = store.claim_import_result(inst.id, info.id, definition, now=1000.0)
    assert first is not None
    assert store.claim_import_result(inst.id, info.id, definition, now=1001.0) is None  # alive: wait
    # A maker silent for longer than STALE_CLAIM has died: the next takes over, and the first,
    # should it come back, writes nothing and finishes nothing.
    second = store.claim_import_result(inst.id, info.id, definition, now=1000.0 + STALE_CLAIM + 1)
    assert second not in (None, first)
    assert not store.add_import_result_chunks(inst.id, info.id, first, [])
    assert not store.finish_import_result(inst.id, info.id, first)
    assert store.finish_import_result(inst.id, info.id, second)
    assert store.claim_import_result(inst.id, info.id, definition) is None  # made
    # Another definition (an instrumentation of the same id, as after a store is emptied)
    # makes it again; the made one is never read for it.
    other = _inst({"metric": "memory.used"}, 7)
    assert imported.make_answer(store, other, info)
    assert store.import_results(inst.id)[info.id].definition == imported.definition(other)


def test_a_background_answer_is_read_once_made(store) -> None:  # noqa: F811
    info = _import(store, "web1", _web1()[:1200])
    inst = _inst({"metric": "cpu.usage", "decomposition": ["mode"]}, 3)
    rng = Range(T0 // 60 * 60, 60, 21)
    first = imported.imported_points(store, inst, rng, 50)  # evaluated; asks for the answer
    wait_for(lambda: not imported.making(store) and store.import_results(inst.id))
    assert store.import_results(inst.id)[info.id].state == "ready"
    again = imported.imported_points(store, inst, rng, 50)
    assert first.keys() == again.keys() and all(_same(first[s].value, again[s].value) for s in first)


def _vmstat_log(path: Path, start: int, lines: int) -> None:
    """``vmstat -t 1`` output of a 2-CPU host (procps 4's layout), user share (7 * i) % 50."""
    head = ("procs -----------memory---------- ---swap-- -----io---- -system-- -------cpu------- "
            "-----timestamp-----\n r  b   swpd   free   buff  cache   si   so    bi    bo   in   cs us sy "
            "id wa st gu                 UTC\n")
    with open(path, "w") as f:
        f.write(head)
        for i in range(lines):
            us = (7 * i) % 50
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(start + i))
            f.write(f" 1  0      0 {800000 + i:6d}  12345 400000    0    0     0    {i % 9:2d}  500  900 "
                    f"{us:2d}  5 {95 - us:2d}  0  0  0 {when}\n")


def _same_json(a, b) -> bool:
    """Equal JSON answers, numbers up to rounding."""
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(_same_json, a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same_json(a[k], b[k]) for k in a)
    if isinstance(a, float) and isinstance(b, float | int):
        return _close(a, b)
    return a == b


def test_instrumentations_made_before_and_after_an_import_read_it_through_the_server(tmp_path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    srv = Server(data, free_port(), auth=True).start()
    try:
        c = httpx.Client(base_url=srv.url, timeout=60,
                         headers={"authorization": f"Bearer {srv.token('op', 'operator')}"})

        def make(spec: dict) -> int:
            r = c.post("/api/v1/instrumentations", json=spec)
            assert r.status_code == 201, r.text
            return r.json()["id"]

        spec = {"metric": "cpu.usage", "decomposition": ["mode"], "predicate": {"eq": ["hostname", "old1"]}}
        before = make(spec)
        start = 1_600_000_000  # on an hour: the minute and hour tiers answer 60 s and 1 h steps
        log = tmp_path / "vmstat.log"
        _vmstat_log(log, start, 3 * HOUR + 1)
        r = c.post("/api/v1/imports", data={"format": "vmstat", "host": "old1", "cpus": "2"},
                   files=[("file", ("vmstat.log", log.read_bytes(), "text/plain"))])
        assert r.status_code == 201, r.text
        after = make(spec)

        def read(inst: int, duration: int) -> list:
            r = c.get(f"/api/v1/instrumentations/{inst}/value",
                      params={"start_time": start, "end_time": start + min(3 * HOUR, duration * 9000),
                              "duration": duration})
            assert r.status_code == 200, r.text
            return [(p["start_time"], p["value"]) for p in r.json()]

        first = {(inst, d): read(inst, d) for inst in (before, after) for d in (1, 60, HOUR)}
        # The first line only marks the start: the first minute holds lines 1 to 60, 2 CPUs.
        user = sum((7 * i) % 50 / 100 * 2 for i in range(1, 61))
        assert first[before, 60][0] == (start, pytest.approx({"user": user, "system": 6.0,
                                                               "idle": 120.0 - 6.0 - user}))
        assert first[after, HOUR][1][1]["user"] == pytest.approx(sum((7 * i) % 50 / 50
                                                                     for i in range(HOUR + 1, 2 * HOUR + 1)))
        db = sqlite3.connect(data / "fleetscope.db")

        def answers() -> set:
            return set(db.execute("SELECT inst_id, state FROM import_results").fetchall())

        wait_for(lambda: answers() >= {(before, "ready"), (after, "ready")}, timeout=60)
        for key, points in first.items():
            assert _same_json(read(*key), points), key
        assert _same_json(first[before, 60], first[after, 60])
        r = c.delete(f"/api/v1/instrumentations/{before}")
        assert r.status_code in (200, 204), r.text
        # The defaults (persisted, any host) have theirs too, made when the import was ready.
        assert after in {i for i, _ in answers()} and before not in {i for i, _ in answers()}
        db.close()
    finally:
        srv.stop()
