"""A year of per-minute history with ~1,000 keys, asked as the dashboard asks it (#19).

Builds the issue's store: one persisted ``proc.cpu`` by execname at 1 s granularity whose
minute tier is kept 365 days, holding a year of minutes with the top 50 keys per minute and
``(other)`` (973 distinct keys over the year, a daily cycle), and the hour tier rolled up from
it. Writes the tiers directly (as bench/promql.py does), starts a real ``fleetscope serve`` on
that store, and asks ``/value`` for:

- the 365-day view as the dashboard asked before #19: ``duration = ceil(span / 300)`` =
  105,120 s (the server now snaps it to two days from the hour tier: bounded);
- the same with ``ndatapoints=300`` (what a tidy step gives);
- 30 days, 24 hours, and a pan of the year by half a span;

each also with ``envelope=true`` (each step's min and max of the finer points, as the line
panels ask), each ``--repeat`` times (cold: the server's chunk cache cleared by restarting is
not done; the first request is reported apart). Prints the time per request (median, max) and the server's
peak RSS (VmHWM, reset before each kind of request through /proc/PID/clear_refs).

    .venv/bin/python bench/big_range.py
    .venv/bin/python bench/big_range.py --days 365 --keys 973 --repeat 5
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from serving import start_server

from fleetscope.api.control import DEFAULTS_KEY
from fleetscope.model import values
from fleetscope.model.metrics import INTERVAL
from fleetscope.store.base import HistoryChange
from fleetscope.store.block import Block, compact_columns, concat
from fleetscope.store.chunkio import to_chunks
from fleetscope.store.history import History
from fleetscope.store.open import open_store
from fleetscope.store.rollup import rollup

DAY = 86400
TOPK = 50
CORE = 20  # keys present every minute (java, postgres, ...); the other 30 rotate by the hour


def day_block(day_start: int, keys: list[str], rnd: np.random.Generator) -> Block:
    """One day of minutes: CORE steady keys with a daily cycle, 30 rotating ones, (other)."""
    n = DAY // 60
    times = day_start + np.arange(n, dtype=np.int64) * 60
    cycle = 1 + 0.5 * np.sin(2 * np.pi * (times % DAY) / DAY)
    nkeys = len(keys) - 1  # keys[0] is (other)
    vals = np.full((n, len(keys)), np.nan)
    rows = np.arange(n)
    for j in range(CORE):
        vals[:, 1 + j] = 60 * (6.0 / (j + 1)) * cycle * rnd.uniform(0.8, 1.2, n)
    hour = (times // 3600).astype(np.int64)
    for j in range(TOPK - CORE):
        col = 1 + CORE + (hour * 37 + j * 29) % (nkeys - CORE)
        vals[rows, col] = 60 * 0.05 * rnd.uniform(0.5, 1.5, n)
    vals[:, 0] = 60 * 0.2 * cycle
    counts = np.full(n, 60, np.int64)
    ones = np.ones(n, np.int64)
    return compact_columns(Block(times, counts, ones, ones, np.zeros(n, bool), tuple(keys), vals, None))


def make_store(data_dir: Path, days: int, nkeys: int, end: int, defaults: bool = False) -> int:
    """The instrumentation and its minute and hour tiers in ``data_dir``; its id. ``defaults``:
    let serve make its default instrumentations too."""
    store = open_store(f"sqlite:///{data_dir / 'fleetscope.db'}")
    try:
        if not defaults:
            store.set_meta(DEFAULTS_KEY, str(time.time()))  # no default instrumentations
        inst = store.create_instrumentation({
            "module": "proc", "stat": "cpu", "predicate": {}, "decomposition": ("execname",),
            "granularity": 1, "retention": 600, "idle_max": 0, "persist": True, "kind": INTERVAL,
            "shape": values.DISCRETE, "discrete": "execname", "numeric": None,
            "history": {"minute": 365 * DAY + 2 * DAY, "hour": 366 * DAY + 2 * DAY}}, 0.0)
        tiers = History(store).tiers(inst)
        minute, hour = tiers[1], tiers[2]
        keys = sorted([values.OTHER, *(f"exe{j:04d}" for j in range(nkeys))])
        assert keys[0] == values.OTHER
        rnd = np.random.default_rng(19)
        start = end - days * DAY
        hours: list[Block] = []
        for d in range(days):
            block = day_block(start + d * DAY, keys, rnd)
            store.write_history(HistoryChange(add=to_chunks(inst.id, minute, block),
                                              watermarks=[(inst.id, minute.level, block.start + DAY)]))
            hours.append(rollup(block, inst.shape, block.start, 3600, TOPK))
            last_of_span = (block.start + DAY) % hour.span == 0 or d == days - 1
            if last_of_span:
                rolled = concat(hours, inst.shape)
                store.write_history(HistoryChange(add=to_chunks(inst.id, hour, rolled),
                                                  watermarks=[(inst.id, hour.level, block.start + DAY)]))
                hours = []
        return inst.id
    finally:
        store.close()


def rss_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--keys", type=int, default=973)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    end = int(time.time()) // DAY * DAY
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        inst_id = make_store(Path(tmp), args.days, args.keys, end)
        print(f"store: {args.days} days of minutes, {args.keys} keys (top {TOPK} + (other) per minute) "
              f"written in {time.perf_counter() - t:.0f} s")
        proc, url = start_server(tmp)
        try:
            now = int(time.time())
            span = args.days * DAY
            asks = {
                f"{args.days} d, duration=ceil(span/300)={math.ceil(span / 300)}":
                    {"start_time": now - span, "end_time": now, "duration": math.ceil(span / 300)},
                f"{args.days} d, ndatapoints=300":
                    {"start_time": now - span, "end_time": now, "ndatapoints": 300},
                f"{args.days} d panned back half a span": {"start_time": now - span - span // 2,
                                                           "end_time": now - span // 2, "ndatapoints": 300},
                "30 d, ndatapoints=300": {"start_time": now - 30 * DAY, "end_time": now, "ndatapoints": 300},
                "24 h, ndatapoints=300": {"start_time": end - DAY, "end_time": end, "ndatapoints": 300},
            }
            # The same with each step's min/max of the finer points (the line panels ask for them).
            asks.update({f"{label}, envelope": {**params, "envelope": "true"}
                         for label, params in list(asks.items())
                         if "ndatapoints" in params and "panned" not in label})
            print(f"server RSS at start {rss_mb(proc.pid, 'VmRSS'):.0f} MB")
            print(f"{'request':48s} {'step':>7s} {'points':>6s} {'first':>7s} {'median':>7s} {'max':>7s} "
                  f"{'peak RSS':>9s} {'bytes':>8s}")
            with httpx.Client(base_url=url, timeout=600) as client:
                for label, params in asks.items():
                    Path(f"/proc/{proc.pid}/clear_refs").write_text("5")  # reset VmHWM
                    times, body = [], None
                    for _ in range(args.repeat):
                        t = time.perf_counter()
                        r = client.get(f"/api/v1/instrumentations/{inst_id}/value", params=params)
                        times.append((time.perf_counter() - t) * 1000)
                        r.raise_for_status()
                        body = r
                    pts = body.json()
                    print(f"{label:48s} {pts[0]['duration']:7d} {len(pts):6d} {times[0]:6.0f}ms "
                          f"{statistics.median(times[1:] or times):6.0f}ms {max(times):6.0f}ms "
                          f"{rss_mb(proc.pid, 'VmHWM'):7.0f}MB {len(body.content):8d}")
        finally:
            proc.terminate()
            proc.wait(15)


if __name__ == "__main__":
    main()
