"""Import benchmark: a month of 1-second ``vmstat -t`` output, imported and queried.

    .venv/bin/python bench/import.py [--lines 2592000] [--store URL]

Writes ``--lines`` lines of synthetic ``vmstat -t 1`` output (procps 4's layout, figures
that move like a busy host's: CPU shares summing to 100, memory drifting, bursts of I/O)
to a temporary file, then imports it the way the server does (``importing.run_import``:
hash, parse streaming, chunks written in short transactions, made ready in one) into a
fresh store (SQLite by default). Prints: lines per second on one core (the goal: 200,000),
peak RSS of the process (the file is streamed: it stays bounded), bytes stored per value.

Then, per instrumentation (``cpu.usage`` by ``mode``, ``memory.used`` by ``type``, both made
after the import): the time to make its answer over the import once
(:func:`fleetscope.api.imported.make_answer`) and its bytes; and reads of 1 hour at 1 s and
24 hours at 60 s steps side by side: the import evaluated at every read (as before answers
were made), the import read from the made answer
(:func:`fleetscope.api.imported.imported_points`, ``Services.points``' imported half), and
live history of the same size (the same points written as a persisted instrumentation's
seconds and rolled up into its tiers, read by :func:`fleetscope.api.queries.data_points`),
cold (decoded-chunk caches emptied) and warm (best of 5).

Before those (``--no-indexing`` leaves it out): the dashboard's default instrumentations,
persisted, made as if before the import; the time from the import being ready until the
process's maker has made every answer they read (as ``serve`` does in the background), and
each one's first 30-day read at 1-hour steps after that.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from fleetscope.api import imported, importing
from fleetscope.api.queries import Range, data_points
from fleetscope.model.defaults import default_specs
from fleetscope.model.instrumentation import (
    Instrumentation,
    validate_spec,
)
from fleetscope.model.metrics import Catalog
from fleetscope.perflogs.metrics import METRICS
from fleetscope.perflogs.sink import Options
from fleetscope.store.block import from_points
from fleetscope.store.history import History
from fleetscope.store.open import open_store

START = 1_700_000_000  # 2023-11-14 22:13:20 UTC
HEADER = ("procs -----------memory---------- ---swap-- -----io---- -system-- -------cpu------- "
          "-----timestamp-----\n r  b   swpd   free   buff  cache   si   so    bi    bo   in   cs us sy "
          "id wa st gu                 UTC\n")


def write_log(path: Path, lines: int) -> None:
    rnd = random.Random(18)
    free, cache = 8_000_000, 4_000_000
    with open(path, "w") as f:
        f.write(HEADER)
        for i in range(lines):
            if i and i % 50 == 0:
                f.write(HEADER)  # vmstat repeats its header (without -n)
            us = rnd.randint(0, 60)
            sy = rnd.randint(0, 100 - us) // 4
            wa = rnd.randint(0, 3)
            idle = 100 - us - sy - wa
            free = max(100_000, free + rnd.randint(-2000, 2000))
            cache = max(100_000, cache + rnd.randint(-500, 520))
            bi = rnd.choice((0, 0, 0, rnd.randint(1, 40000)))
            t = time.gmtime(START + i)
            f.write(f"{rnd.randint(0, 4):2d} {rnd.randint(0, 1):2d}      0 {free:6d}  {12345:5d} {cache:6d}"
                    f"    0    0 {bi:5d} {rnd.randint(0, 900):5d} {rnd.randint(300, 9000):4d} "
                    f"{rnd.randint(500, 20000):4d} {us:2d} {sy:2d} {idle:2d} {wa:2d}  0  0 "
                    f"{time.strftime('%Y-%m-%d %H:%M:%S', t)}\n")


def inst(catalog: Catalog, body: dict, inst_id: int) -> Instrumentation:
    spec = validate_spec(body, catalog)
    return Instrumentation(id=inst_id, created=0.0, **spec)


def timed(read, runs: int, cold=None) -> float:
    """Milliseconds of ``read()``: once after ``cold()`` (emptied caches), or the best of
    ``runs`` (warm)."""
    best = float("inf")
    for _ in range(runs):
        if cold is not None and runs == 1:
            cold()
        t0 = time.perf_counter()
        read()
        best = min(best, time.perf_counter() - t0)
    return best * 1000


def twin(store, history: History, catalog: Catalog, body: dict, read: Instrumentation, day: int,
         now: int) -> Instrumentation:
    """A persisted instrumentation whose history holds the same points as the import's day
    (seconds, then rolled up into minutes and hours as the server does)."""
    live = store.create_instrumentation(validate_spec({**body, "persist": True}, catalog), float(day))
    points = imported.imported_points(store, read, Range(day, 1, 86400 + 60), 50, make=False)
    history.write_block(live, from_points(list(points.values()), live.shape))
    history.compact(now)
    return live


def side_by_side(store, history: History, catalog: Catalog, body: dict, read: Instrumentation, info,
                 ranges, day: int, now: int) -> None:
    """Make ``read``'s answer over the import; print its reads beside live history's."""
    def imported_range(rng: Range):  # evaluated until the answer is made, then from it
        return imported.imported_points(store, read, rng, 50, make=False)

    name = f"{body['metric']} by {body['decomposition'][0]}"
    evaluated = {label: timed(lambda r=rng: imported_range(r), 1) for label, rng in ranges}
    c0, t0 = time.process_time(), time.perf_counter()
    assert imported.make_answer(store, read, info)
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    print(f"{name}: answer made in {wall:.1f} s ({cpu:.1f} s CPU), "
          f"{store.import_result_bytes(read.id) / 1e6:.1f} MB")
    live = twin(store, history, catalog, body, read, day, now)
    for label, rng in ranges:
        answer = [timed(lambda r=rng: imported_range(r), runs, lambda: imported.clear_cache(store))
                  for runs in (1, 5)]
        line = (f"  {label}: evaluated {evaluated[label]:.1f} ms | answer cold {answer[0]:.1f} ms, warm "
                f"{answer[1]:.1f} ms | live history ")
        if rng.start % 60:  # live history's ranges start on its tier's grid: no such read
            print(line + "-")
            continue
        known = [timed(lambda r=rng: data_points(live, None, r, 50, history, now), runs, history.clear_cache)
                 for runs in (1, 5)]
        print(line + f"cold {known[0]:.1f} ms, warm {known[1]:.1f} ms")


def indexing(store, catalog: Catalog, info, month: Range) -> None:
    """The dashboard's default instrumentations (persisted) made before the import is ready;
    the time from :func:`fleetscope.api.imported.queue_import` (the import becoming ready)
    until every answer they read is made by this process's maker, then each one's first read
    of ``month`` (cold: nothing decoded yet)."""
    made = [store.create_instrumentation(validate_spec(spec, catalog), 0.0)
            for spec in default_specs([m.name for m in catalog])]
    readers = [i for i in made if imported.holds(i, info)]
    c0, t0 = time.process_time(), time.perf_counter()
    imported.queue_import(store, info)
    while imported.answer_counts(store, [info])[info.id]["pending"]:
        time.sleep(0.2)
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    print(f"indexing: {len(readers)} of {len(made)} default instrumentations read the import; all their "
          f"answers made {wall:.1f} s after it was ready ({cpu:.1f} s CPU), "
          f"{store.import_result_bytes() / 1e6:.1f} MB")
    imported.clear_cache(store)
    for inst in readers:
        ms = timed(lambda i=inst: imported.imported_points(store, i, month, 50), 1)
        what = f"{inst.metric}{' by ' + inst.decomposition[0] if inst.decomposition else ''}"
        print(f"  first read of {month.n} steps of {month.duration} s: {what} {ms:.1f} ms")
    for inst in made:
        store.delete_instrumentation(inst.id)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=2_592_000)
    ap.add_argument("--store", default=None, help="store URL (default: SQLite in a temporary folder)")
    ap.add_argument("--indexing", action=argparse.BooleanOptionalAction, default=True,
                    help="time the default instrumentations' answers made once the import is ready")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="fleetscope-bench-import-") as tmp:
        log = Path(tmp) / "vmstat.log"
        t0 = time.perf_counter()
        write_log(log, args.lines)
        size = log.stat().st_size
        nlines = args.lines + 2 * (args.lines // 50 + 1)
        took = time.perf_counter() - t0
        print(f"wrote {nlines:,} lines ({size / 1e6:.0f} MB) of vmstat -t in {took:.1f} s")
        store = open_store(args.store or f"sqlite:///{tmp}/store.db")
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        c0, t0 = time.process_time(), time.perf_counter()
        info = importing.run_import(store, "vmstat", [importing.LogFile("vmstat.log", str(log))],
                                    Options(host="bench", cpus=8), None)
        cpu, wall = time.process_time() - c0, time.perf_counter() - t0
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        doc = info.document
        print(f"imported {doc['samples']:,} samples, {doc['values']:,} values in {wall:.1f} s "
              f"({cpu:.1f} s CPU): {nlines / cpu:,.0f} lines/s on one core")
        print(f"stored {doc['bytes'] / 1e6:.1f} MB: {doc['bytes'] / doc['values']:.2f} bytes per value; "
              f"peak RSS {rss / 1024:.0f} MB (before the import: {rss0 / 1024:.0f} MB)")
        catalog = Catalog(METRICS)
        if args.indexing:
            month = START - START % 3600 + 3600
            indexing(store, catalog, info, Range(month, 3600, min(720, (args.lines - 3600) // 3600)))
        # On the hour, as the server aligns a persisted instrumentation's range to its tier.
        day = START - START % 3600 + 3600 + min(86400 * 10, (args.lines - 90000) // 3600 * 3600)
        ranges = (("1 h at 1 s", Range(day, 1, 3600)), ("24 h at 60 s", Range(day, 60, 1440)),
                  # an instrumentation without history: steps from its own second, off the minutes
                  ("24 h at 60 s, 17 s past the minute", Range(day + 17, 60, 1440)))
        history = History(store)
        now = day + 2 * 86400  # reads as if two days after the day read: within every tier's retention
        for n, body in enumerate(({"metric": "cpu.usage", "decomposition": ["mode"]},
                                  {"metric": "memory.used", "decomposition": ["type"]})):
            side_by_side(store, history, catalog, body, inst(catalog, body, 100 + n), info, ranges, day, now)
        store.close()
    os.sys.stdout.flush()


if __name__ == "__main__":
    main()
