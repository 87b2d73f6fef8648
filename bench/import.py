"""Import benchmark: a month of 1-second ``vmstat -t`` output, imported and queried.

    .venv/bin/python bench/import.py [--lines 2592000] [--store URL]

Writes ``--lines`` lines of synthetic ``vmstat -t 1`` output (procps 4's layout, figures
that move like a busy host's: CPU shares summing to 100, memory drifting, bursts of I/O)
to a temporary file, then imports it the way the server does (``importing.run_import``:
hash, parse streaming, chunks written in short transactions, made ready in one) into a
fresh store (SQLite by default). Prints: lines per second on one core (the goal: 200,000),
peak RSS of the process (the file is streamed: it stays bounded), bytes stored per value,
and the time of reading the import back through an instrumentation (``cpu.usage`` by
``mode`` and ``memory.used`` by ``type``) over 1 hour at 1 s and 24 hours at 60 s steps
(``Services.points``' imported half, :func:`fleetscope.api.imported.imported_points`).
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
from fleetscope.api.queries import Range
from fleetscope.model.instrumentation import (
    Instrumentation,
    validate_spec,
)
from fleetscope.model.metrics import Catalog
from fleetscope.perflogs.metrics import METRICS
from fleetscope.perflogs.sink import Options
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=2_592_000)
    ap.add_argument("--store", default=None, help="store URL (default: SQLite in a temporary folder)")
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
        cpu_inst = inst(catalog, {"metric": "cpu.usage", "decomposition": ["mode"]}, 1)
        mem_inst = inst(catalog, {"metric": "memory.used", "decomposition": ["type"]}, 2)
        day = START + min(86400 * 10, (args.lines - 86400) // 3600 * 3600)
        for name, i in (("cpu.usage by mode", cpu_inst), ("memory.used by type", mem_inst)):
            for label, rng in (("1 h at 1 s", Range(day, 1, 3600)), ("24 h at 60 s", Range(day, 60, 1440))):
                times = []
                for _ in range(3):
                    t0 = time.perf_counter()
                    pts = imported.imported_points(store, i, rng, 50)
                    times.append(time.perf_counter() - t0)
                assert len(pts) == rng.n, (len(pts), rng.n)
                print(f"read {name}, {label}: {min(times) * 1000:.0f} ms ({len(pts)} points)")
        store.close()
    os.sys.stdout.flush()


if __name__ == "__main__":
    main()
