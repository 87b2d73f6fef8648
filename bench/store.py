"""History store benchmark: write a realistic synthetic history, then measure it.

    .venv/bin/python bench/store.py [--days 30] [--store URL] [--prom-hours 6] [--no-prom]

Writes ``--days`` days of per-second data for 20 instrumentations of a 40-host
fleet (breakdowns of up to 50 keys, histograms, point and interval metrics; see
GENERATORS) through the history writer, compacting every few simulated hours
as the server does (rollups into minute and hour tiers, retention: 7 days of
seconds, 30 of minutes). The values are what the design calls them: activity
during the tick (CPU in 10 ms ticks, bytes, operations, requests) and levels
(bytes in pages, load averages with two decimals).

Prints: write throughput (bulk columnar path and the live path: data points
through ``History.record`` and ``flush``), bytes per stored sample per tier,
and p50/p99 latency of 1 h, 24 h and 30 d queries of a 50-key value series
and a heatmap (the API's code: ``resolve_range`` + ``data_points``, plus the
heatmap matrix), at most 1000 points per answer, and of 24 h at full
resolution (10,000 points).

Then the last ``--prom-hours`` hours of per-second data are exported as
OpenMetrics (the export endpoint's code) and turned into a Prometheus TSDB with
``promtool tsdb create-blocks-from openmetrics`` (Debian's ``prometheus``
package; installed with apt-get when missing and run as root), and bytes per
sample are compared side by side.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from math import ldexp
from pathlib import Path
from typing import NamedTuple

import numpy as np

from fleetscope.api import export, heatmap, queries
from fleetscope.model import values
from fleetscope.model.metrics import INTERVAL, POINT
from fleetscope.model.tiers import DEFAULT_RETENTION
from fleetscope.store.block import (
    HIST_FIELDS,
    Block,
    Hists,
    compact_columns,
    from_points,
    nsamples,
    to_points,
)
from fleetscope.store.history import History, HistoryConfig
from fleetscope.store.open import open_store
from fleetscope.store.rollup import fold_numbers

HOUR, DAY = 3600, 86400
HOSTS = 40
SCHEMA = 3
_FRACS = np.array([ldexp(2.0 ** (j / 8), -1) for j in range(8)])


def bucket_index(x: np.ndarray) -> np.ndarray:
    """Histogram bucket indices (schema 3) of positive values, as Histogram.record computes them."""
    frac, exp = np.frexp(x)
    return np.searchsorted(_FRACS, frac, side="left") + ((exp - 1) << SCHEMA)


def bucket_upper(index: np.ndarray) -> np.ndarray:
    q, r = np.divmod(index, 8)
    return np.ldexp(_FRACS[r], q + 1)


# -- synthetic data: one function per instrumentation, one hour (or any n seconds) at a time ----


def diurnal(times: np.ndarray, depth: float = 0.6, phase: float = 0.0) -> np.ndarray:
    return 1.0 + depth * np.sin(2 * np.pi * ((times % DAY) / DAY) - np.pi / 2 + phase)


class State:
    """Slowly varying levels carried from one hour to the next."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.levels: dict[str, np.ndarray] = {}

    def walk(self, name: str, start: np.ndarray, n: int, step: np.ndarray, lo=None, hi=None) -> np.ndarray:
        """Random walk per column, continuing where the last hour ended."""
        last = self.levels.get(name, np.asarray(start, float))
        steps = self.rng.normal(0, 1, (n, len(last))) * step
        out = last + np.cumsum(steps, axis=0)
        if lo is not None or hi is not None:
            out = np.clip(out, lo, hi)
        self.levels[name] = out[-1]
        return out


def numbers(times: np.ndarray, keys: list[str], m: np.ndarray, rng: np.random.Generator) -> Block:
    order = np.argsort(keys)
    n = len(times)
    nsrc = np.where(rng.random(n) < 0.002, HOSTS - 1, HOSTS)  # now and then a host is late
    return Block(times, np.ones(n, np.int64), nsrc.astype(np.int64), np.full(n, HOSTS, np.int64),
                 np.zeros(n, bool), tuple(sorted(keys)), np.asarray(m, float)[:, order], None)


def extent(idx: np.ndarray, counts: np.ndarray, zero: np.ndarray, grain: float,
           rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A min and max per point, as a histogram keeps them: 0 when the zero bucket holds values,
    else a value in the lowest non-empty bucket; a value in the highest one (multiples of
    ``grain``, as the values are)."""
    if not counts.shape[1]:
        return np.zeros(len(zero)), np.zeros(len(zero))
    nonempty = counts > 0
    first = nonempty.argmax(axis=1)
    last = nonempty.shape[1] - 1 - nonempty[:, ::-1].argmax(axis=1)

    def inside(col: np.ndarray) -> np.ndarray:
        lower, upper = bucket_upper(idx[col] - 1), bucket_upper(idx[col])
        x = np.ceil((lower + (upper - lower) * rng.random(len(col))) / grain) * grain
        return np.clip(x, np.nextafter(lower, np.inf), upper)

    return np.where(zero > 0, 0.0, inside(first)), np.where(nonempty.any(axis=1), inside(last), 0.0)


def histograms(times: np.ndarray, keys: list[str], parts: list[tuple[np.ndarray, np.ndarray, np.ndarray,
                                                                       np.ndarray]],
               rng: np.random.Generator, grain: float = 0.001) -> Block:
    """``parts[k] = (bucket indices, counts[n, len(indices)], zero_count[n], sum[n])`` per key;
    values are multiples of ``grain`` (their min and max too)."""
    n = len(times)
    k = len(keys)
    order = np.argsort(keys)
    fields = [np.full((n, k), np.nan) for _ in HIST_FIELDS]
    bkeys, bidx, cols = [], [], []
    for j_new, j in enumerate(order):
        idx, counts, zero, total = parts[j]
        present = (counts.sum(axis=1) + zero) > 0
        least, most = extent(idx, counts, zero, grain, rng)
        fields[0][present, j_new] = SCHEMA
        fields[1][present, j_new] = 0.0
        fields[2][present, j_new] = zero[present]
        fields[3][present, j_new] = (counts.sum(axis=1) + zero)[present]
        fields[4][present, j_new] = total[present]
        fields[5][present, j_new] = least[present]
        fields[6][present, j_new] = most[present]
        for c, i in enumerate(idx):
            bkeys.append(j_new)
            bidx.append(int(i))
            cols.append(np.where(counts[:, c] > 0, counts[:, c], np.nan))
    nsrc = np.where(rng.random(n) < 0.002, HOSTS - 1, HOSTS).astype(np.int64)
    hs = Hists(*fields, np.array(bkeys, np.int64), np.array(bidx, np.int64),
               np.column_stack(cols) if cols else np.zeros((n, 0)))
    block = Block(times, np.ones(n, np.int64), nsrc, np.full(n, HOSTS, np.int64), np.zeros(n, bool),
                  tuple(sorted(keys)), None, hs)
    return compact_columns(block)


def latency_parts(rng, times, rate: np.ndarray, median_ms: float, sigma: float, decimals: int):
    """Counts per bucket of log-normal latencies (ms, ``decimals`` digits) at ``rate`` per second."""
    lo, hi = bucket_index(np.array([median_ms / 200, median_ms * 200]))
    grid = np.arange(lo, hi)
    upper = bucket_upper(grid)
    lower = bucket_upper(grid - 1)
    from math import erf, log, sqrt

    cdf = np.array([0.5 * (1 + erf((log(u) - log(median_ms)) / (sigma * sqrt(2)))) for u in upper])
    cdf_lo = np.array([0.5 * (1 + erf((log(u) - log(median_ms)) / (sigma * sqrt(2)))) for u in lower])
    p = np.clip(cdf - cdf_lo, 0, None)
    grid, upper, lower, p = grid[p > 1e-7], upper[p > 1e-7], lower[p > 1e-7], p[p > 1e-7]
    counts = rng.poisson(rate[:, None] * p[None, :])
    mid = np.sqrt(upper * lower)
    total = np.round((counts * mid).sum(axis=1) * rng.normal(1, 0.01, len(times)), decimals)
    keep = counts.any(axis=0)
    return grid[keep], counts[:, keep].astype(float), np.zeros(len(times)), total


def gen_cpu_mode(st: State, t: np.ndarray) -> Block:
    d = diurnal(t)
    ticks_total = HOSTS * 8 * 100
    parts = {"user": 12000 * d, "system": 3000 * d, "iowait": 400 + 0 * d, "irq": 50 + 0 * d,
             "softirq": 300 * d, "steal": 20 + 0 * d, "nice": 100 + 0 * d}
    m = {k: st.rng.poisson(v).astype(float) for k, v in parts.items()}
    busy = sum(m.values())
    m["idle"] = np.maximum(ticks_total - busy, 0)
    keys = list(m)
    mat = np.column_stack([np.where(m[k] > 0, m[k] / 100, np.nan) for k in keys])
    return numbers(t, keys, mat, st.rng)


def gen_cpu_total(st: State, t: np.ndarray) -> Block:
    d = diurnal(t)
    return numbers(t, [""], (st.rng.poisson(15900 * d) / 100)[:, None], st.rng)


def _memory(st: State, t: np.ndarray) -> dict[str, np.ndarray]:
    pages = 4096
    total = HOSTS * 64 * 2**30 // pages
    n = len(t)
    used = st.walk("mem.used", [total * 0.3], n, np.array([800.0]), total * 0.1, total * 0.6)[:, 0]
    cached = st.walk("mem.cached", [total * 0.4], n, np.array([300.0]), total * 0.05, total * 0.5)[:, 0]
    buffers = st.walk("mem.buffers", [total * 0.02], n, np.array([20.0]), 0, total * 0.05)[:, 0]
    used, cached, buffers = np.rint(used), np.rint(cached), np.rint(buffers)
    swap = np.full(n, 123_456.0)
    free = total - used - cached - buffers
    return {k: v * pages for k, v in (("used", used), ("cached", cached), ("buffers", buffers),
                                      ("swap", swap), ("free", free))}


def gen_memory_type(st: State, t: np.ndarray) -> Block:
    m = _memory(st, t)
    st.levels["mem.copy"] = m["used"]
    return numbers(t, list(m), np.column_stack(list(m.values())), st.rng)


def gen_memory_total(st: State, t: np.ndarray) -> Block:
    used = st.levels.get("mem.copy")
    if used is None or len(used) != len(t):
        used = _memory(st, t)["used"]
    return numbers(t, [""], used[:, None], st.rng)


def gen_disk_bytes(st: State, t: np.ndarray) -> Block:
    keys = ["sda", "sdb", "nvme0n1", "nvme1n1"]
    n = len(t)
    active = st.rng.random((n, 4)) < np.array([0.6, 0.2, 0.9, 0.4])
    sectors = st.rng.poisson(np.array([2000, 500, 8000, 3000]) * diurnal(t)[:, None])
    return numbers(t, keys, np.where(active & (sectors > 0), sectors * 512.0, np.nan), st.rng)


def gen_net_bytes(st: State, t: np.ndarray) -> Block:
    d = diurnal(t)[:, None]
    packets = st.rng.poisson(np.array([50000, 8000, 2000]) * d)
    size = st.rng.normal(np.array([900, 600, 300]), 40, packets.shape)
    return numbers(t, ["eth0", "eth1", "lo"], np.rint(packets * size).clip(0), st.rng)


def _process_rates(st: State, count: int, name: str) -> np.ndarray:
    if name not in st.levels:
        st.levels[name] = st.rng.gamma(0.35, 60.0, count)
    return st.levels[name]


def gen_proc_cpu(st: State, t: np.ndarray) -> Block:
    rates = _process_rates(st, 80, "proc.rates")
    ticks = st.rng.poisson(rates[None, :] * diurnal(t)[:, None])
    keys = [f"proc{i:02d}" for i in range(80)]
    # The aggregator keeps the top 50 keys of each slot and folds the rest into "(other)".
    mat = np.where(ticks > 0, ticks / 100, np.nan)
    block = numbers(t, keys, mat, st.rng)
    return fold_numbers(block, 50)


def gen_proc_util(st: State, t: np.ndarray) -> Block:
    n = len(t)
    procs = HOSTS * 150
    u = np.arange(1, 101)
    p = 0.12 * np.exp(-u / 6.0) / np.exp(-u / 6.0).sum()
    counts = st.rng.poisson(procs * p[None, :] * diurnal(t)[:, None])
    idx = bucket_index(u.astype(float))
    grid = np.unique(idx)
    per_bucket = np.zeros((n, len(grid)))
    for j, b in enumerate(grid):
        per_bucket[:, j] = counts[:, idx == b].sum(axis=1)
    zero = procs - counts.sum(axis=1)
    total = (counts * u[None, :]).sum(axis=1).astype(float)
    return histograms(t, [""], [(grid, per_bucket, zero.astype(float), total)], st.rng, grain=1.0)


def gen_load(st: State, t: np.ndarray) -> Block:
    x = st.walk("load", [HOSTS * 1.5], len(t), np.array([0.05]), 0, HOSTS * 8)[:, 0]
    return numbers(t, [""], np.round(x, 2)[:, None], st.rng)


def gen_disk_ops(st: State, t: np.ndarray) -> Block:
    return numbers(t, [""], st.rng.poisson(3000 * diurnal(t))[:, None].astype(float), st.rng)


def gen_net_packets(st: State, t: np.ndarray) -> Block:
    return numbers(t, [""], st.rng.poisson(60000 * diurnal(t))[:, None].astype(float), st.rng)


def gen_proc_rss(st: State, t: np.ndarray) -> Block:
    n = len(t)
    base = st.levels.setdefault("rss.base", np.rint(st.rng.lognormal(15, 1.5, 50) / 4096))
    changes = (st.rng.random((n, 50)) < 0.05) * np.rint(st.rng.normal(0, 50, (n, 50)))
    pages = np.maximum(base + np.cumsum(changes, axis=0), 1)
    st.levels["rss.base"] = pages[-1]
    return numbers(t, [f"proc{i:02d}" for i in range(50)], pages * 4096, st.rng)


def gen_http_route(st: State, t: np.ndarray) -> Block:
    w = 1.0 / np.arange(1, 61) ** 1.1
    lam = 2000 * diurnal(t)[:, None] * (w / w.sum())[None, :]
    counts = st.rng.poisson(lam)
    mat = np.where(counts > 0, counts.astype(float), np.nan)
    block = numbers(t, [f"/api/route{i:02d}" for i in range(60)], mat, st.rng)
    return fold_numbers(block, 50)


def gen_http_latency(st: State, t: np.ndarray) -> Block:
    return histograms(t, [""], [latency_parts(st.rng, t, 2000 * diurnal(t), 12.0, 0.9, 3)], st.rng)


def gen_http_route_latency(st: State, t: np.ndarray) -> Block:
    w = 1.0 / np.arange(1, 11) ** 1.1
    w = w / w.sum()
    parts = [latency_parts(st.rng, t, 2000 * w[i] * diurnal(t), 8.0 + 3 * i, 0.8, 3) for i in range(10)]
    return histograms(t, [f"/api/route{i:02d}" for i in range(10)], parts, st.rng)


def gen_disk_busy(st: State, t: np.ndarray) -> Block:
    x = st.walk("busy", [30.0], len(t), np.array([0.3]), 0, 100)[:, 0]
    return numbers(t, [""], np.round(x, 2)[:, None], st.rng)


def gen_container_cpu(st: State, t: np.ndarray) -> Block:
    rates = _process_rates(st, 70, "container.rates") / 100  # CPU seconds per second
    usage = np.round(np.abs(st.rng.normal(rates[None, :] * diurnal(t)[:, None], rates[None, :] * 0.2)), 6)
    mat = np.where(usage > 0, usage, np.nan)
    block = numbers(t, [f"ctr-{i:02d}" for i in range(70)], mat, st.rng)
    return fold_numbers(block, 50)


def gen_net_errors(st: State, t: np.ndarray) -> Block:
    return numbers(t, [""], st.rng.poisson(0.01, len(t))[:, None].astype(float), st.rng)


def gen_rss_hist(st: State, t: np.ndarray) -> Block:
    n = len(t)
    procs = HOSTS * 150
    if "rss.hist" not in st.levels:
        sizes = st.rng.lognormal(16, 1.8, procs)
        st.levels["rss.hist"] = sizes
    sizes = st.levels["rss.hist"]
    idx = bucket_index(np.rint(sizes / 4096) * 4096)
    grid, base = np.unique(idx, return_counts=True)
    # processes start and stop: a few move between buckets each second
    noise = st.rng.poisson(0.5, (n, len(grid))) - st.rng.poisson(0.5, (n, len(grid)))
    counts = np.maximum(base[None, :] + noise, 0).astype(float)
    mid = np.rint(np.sqrt(bucket_upper(grid) * bucket_upper(grid - 1)) / 4096) * 4096
    total = (counts * mid[None, :]).sum(axis=1)
    return histograms(t, [""], [(grid, counts, np.zeros(n), total)], st.rng, grain=4096.0)


def gen_disk_latency(st: State, t: np.ndarray) -> Block:
    return histograms(t, [""], [latency_parts(st.rng, t, 3000 * diurnal(t), 0.4, 1.2, 3)], st.rng)


class Gen(NamedTuple):
    module: str
    stat: str
    decomposition: tuple[str, ...]
    kind: str
    shape: str
    make: Callable[[State, np.ndarray], Block]


GENERATORS = [
    Gen("cpu", "usage", ("mode",), INTERVAL, values.DISCRETE, gen_cpu_mode),
    Gen("memory", "used", ("type",), POINT, values.DISCRETE, gen_memory_type),
    Gen("disk", "bytes", ("disk",), INTERVAL, values.DISCRETE, gen_disk_bytes),
    Gen("net", "bytes", ("nic",), INTERVAL, values.DISCRETE, gen_net_bytes),
    Gen("proc", "cpu", ("execname",), INTERVAL, values.DISCRETE, gen_proc_cpu),
    Gen("proc", "cpu", ("utilization",), INTERVAL, values.HISTOGRAM, gen_proc_util),
    Gen("cpu", "load", (), POINT, values.SCALAR, gen_load),
    Gen("disk", "ops", (), INTERVAL, values.SCALAR, gen_disk_ops),
    Gen("net", "packets", (), INTERVAL, values.SCALAR, gen_net_packets),
    Gen("proc", "rss", ("execname",), POINT, values.DISCRETE, gen_proc_rss),
    Gen("app", "http_requests", ("route",), INTERVAL, values.DISCRETE, gen_http_route),
    Gen("app", "http_requests", ("latency",), INTERVAL, values.HISTOGRAM, gen_http_latency),
    Gen("app", "http_requests", ("route", "latency"), INTERVAL, values.DISCRETE_HISTOGRAM,
        gen_http_route_latency),
    Gen("disk", "busy", (), POINT, values.SCALAR, gen_disk_busy),
    Gen("container", "cpu", ("container",), INTERVAL, values.DISCRETE, gen_container_cpu),
    Gen("net", "errors", (), INTERVAL, values.SCALAR, gen_net_errors),
    Gen("proc", "rss", ("rss",), POINT, values.HISTOGRAM, gen_rss_hist),
    Gen("disk", "latency", ("latency",), INTERVAL, values.HISTOGRAM, gen_disk_latency),
    Gen("cpu", "usage", (), INTERVAL, values.SCALAR, gen_cpu_total),
    Gen("memory", "used", (), POINT, values.SCALAR, gen_memory_total),
]


def create(store, g: Gen):
    keyed = g.shape in (values.DISCRETE, values.DISCRETE_HISTOGRAM)
    numeric = g.shape in (values.HISTOGRAM, values.DISCRETE_HISTOGRAM)
    spec = {"module": g.module, "stat": g.stat, "predicate": {}, "decomposition": g.decomposition,
            "granularity": 1, "retention": 3600, "idle_max": 0, "persist": True, "kind": g.kind,
            "shape": g.shape, "discrete": g.decomposition[0] if keyed else None,
            "numeric": g.decomposition[-1] if numeric else None, "history": {}}
    return store.create_instrumentation(spec, 0.0)


# -- measuring ----------------------------------------------------------------------------------


def percentiles(samples: list[float]) -> tuple[float, float]:
    s = sorted(samples)
    return statistics.median(s), s[min(len(s) - 1, math.ceil(0.99 * len(s)) - 1)]


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    fn()  # warm up (imports, caches)
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return percentiles(out)


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return str(n)


def ensure_promtool() -> str | None:
    found = shutil.which("promtool")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        print("promtool not found (install Debian's prometheus package); skipping the comparison")
        return None
    print("installing Debian's prometheus package for promtool ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=False, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "prometheus"],
                   check=False, env=env)
    return shutil.which("promtool")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--store", help="store URL (default: a new SQLite file in --dir)")
    ap.add_argument("--dir", type=Path, help="working directory (default: a temporary one)")
    ap.add_argument("--prom-hours", type=int, default=6, help="hours compared with promtool")
    ap.add_argument("--no-prom", action="store_true", help="skip the Prometheus comparison")
    ap.add_argument("--repeat", type=int, default=20, help="runs per query latency figure")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    work = args.dir or Path(tempfile.mkdtemp(prefix="fleetscope-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    url = args.store or f"sqlite:///{work / 'bench.db'}"
    if url.startswith("sqlite:"):
        db = Path(url.split("sqlite://", 1)[1])
        for p in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
            p.unlink(missing_ok=True)
    store = open_store(url)
    history = History(store, HistoryConfig(retention=DEFAULT_RETENTION))
    insts = [create(store, g) for g in GENERATORS]
    rng = np.random.default_rng(args.seed)
    state = State(rng)
    end = 1_767_225_600 + 30 * DAY  # 2026-01-31 00:00 UTC
    start = end - args.days * DAY
    day = "%Y-%m-%d"
    print(f"store {url}: {len(insts)} instrumentations, {args.days} days of per-second data "
          f"({time.strftime(day, time.gmtime(start))} .. {time.strftime(day, time.gmtime(end))})", flush=True)

    gen_s = write_s = compact_s = 0.0
    samples = points = 0
    for h in range(args.days * 24):
        t0 = start + h * HOUR
        times = np.arange(t0, t0 + HOUR, dtype=np.int64)
        for inst, g in zip(insts, GENERATORS, strict=True):
            t = time.perf_counter()
            block = g.make(state, times)
            gen_s += time.perf_counter() - t
            t = time.perf_counter()
            history.write_block(inst, block)
            write_s += time.perf_counter() - t
            samples += nsamples(block)
            points += block.n
        if (h + 1) % 6 == 0 or h == args.days * 24 - 1:
            t = time.perf_counter()
            history.compact(now=t0 + HOUR + 10)
            compact_s += time.perf_counter() - t
        if (h + 1) % 24 == 0:
            print(f"  day {(h + 1) // 24:3d}: {samples / 1e6:8.1f} M samples written, "
                  f"write {samples / write_s / 1e6:.2f} M samples/s, compaction {compact_s:6.1f} s total",
                  flush=True)
    now = end + 10
    history.compact(now=now)

    # The live path: data points through record() and flush(), 10 minutes of every instrumentation.
    live_points = []
    times = np.arange(end, end + 600, dtype=np.int64)
    live_state = State(np.random.default_rng(args.seed + 1))
    for inst, g in zip(insts, GENERATORS, strict=True):
        live_points.append((inst, to_points(g.make(live_state, times), inst.shape, INTERVAL, 1)))
    live_samples = sum(nsamples(from_points(p, i.shape)) for i, p in live_points)
    t = time.perf_counter()
    for inst, pts in live_points:
        for p in pts:
            history.record(inst, p)
    history.flush()
    live_s = time.perf_counter() - t
    history.compact(now=end + 610)
    now = end + 610

    print("\nwrite throughput")
    print(f"  bulk (columns -> chunks -> store): {samples / write_s / 1e6:.2f} M samples/s, "
          f"{points / write_s:,.0f} points/s ({samples / 1e6:.0f} M samples in {write_s:.0f} s; "
          f"generating them took {gen_s:.0f} s)")
    print(f"  live (DataPoint -> record -> flush): {live_samples / live_s / 1e6:.2f} M samples/s, "
          f"{sum(len(p) for _, p in live_points) / live_s:,.0f} points/s")
    print(f"  compaction (rollups, merges, retention): {compact_s:.0f} s for {args.days} days "
          f"= {compact_s / (args.days * 24):.2f} s per simulated hour")

    stats = history.stats()
    print("\nbytes per stored sample (payload; chunks as stored)")
    print(f"  {'tier':8} {'chunks':>8} {'points':>12} {'samples':>14} {'bytes':>12} {'B/sample':>9}")
    for tier in ("second", "minute", "hour"):
        rows = [s for s in stats if s.tier == tier]
        c, p, sm, b = (sum(getattr(r, f) for r in rows) for f in ("chunks", "points", "samples", "bytes"))
        print(f"  {tier:8} {c:8,} {p:12,} {sm:14,} {fmt_bytes(b):>12} {b / max(sm, 1):9.3f}")
    total_samples = sum(s.samples for s in stats)
    disk = store.disk_bytes()
    print(f"  whole store on disk: {fmt_bytes(disk)} = {disk / total_samples:.3f} B per stored sample")
    print("  per instrumentation (second tier):")
    for inst, g in zip(insts, GENERATORS, strict=True):
        row = next(s for s in stats if s.inst_id == inst.id and s.tier == "second")
        what = f"{inst.metric} by {','.join(inst.decomposition) or '-'}"
        print(f"    {what:44} {g.shape:18} {row.samples / row.points:6.1f} samples/pt "
              f"{row.bytes_per_sample:6.3f} B/sample")

    # Query latency, as the API answers: resolve_range + data_points (+ the heatmap matrix).
    breakdown = insts[4]  # proc.cpu by execname: 50 keys and (other)
    heat = insts[11]  # request latency histogram
    print(f"\nquery latency (ms, p50 / p99 of {args.repeat} runs; store only, no window)")

    def value_query(inst, span, n):
        def run():
            rng_ = queries.resolve_range(inst, None, int(now) - span, int(now), None, n,
                                         tiers=history.tiers(inst), now=now)
            pts = queries.data_points(inst, None, rng_, 50, history, now)
            return [p.to_json(inst.shape) for p in pts], rng_
        return run

    def heatmap_query(inst, span, n):
        def run():
            rng_ = queries.heatmap_range(inst, None, int(now) - span, int(now), None, None, n,
                                         tiers=history.tiers(inst), now=now)
            pts = queries.data_points(inst, None, rng_, 50, history, now)
            return heatmap.heatmap_matrix([p.value for p in pts], nbuckets=100).to_json(rng_.times()), rng_
        return run

    rows = []
    for label, span, n in (("1 h", HOUR, 1000), ("24 h", DAY, 1000), ("30 d", 30 * DAY, 1000),
                           ("24 h full", DAY, 10000)):
        if span > args.days * DAY:
            continue
        for what, make, inst in (("value (50 keys)", value_query, breakdown),
                                 ("heatmap", heatmap_query, heat)):
            fn = make(inst, span, n)
            _, r = fn()
            p50, p99 = timed(fn, args.repeat)
            res = queries.tier_for(history.tiers(inst), r.duration).resolution
            rows.append((label, what, r.n, r.duration, res, p50, p99))
            print(f"  {label:10} {what:16} {r.n:6} points of {r.duration:5} s (tier {res:4} s): "
                  f"{p50:7.1f} / {p99:7.1f}", flush=True)

    if not args.no_prom:
        compare_with_prometheus(history, insts, store, now, args.prom_hours, work)
    print(f"\nfiles in {work}")
    store.close()


def compare_with_prometheus(history: History, insts, store, now: float, hours: int, work: Path) -> None:
    promtool = ensure_promtool()
    if not promtool:
        return
    end = int(now) - int(now) % HOUR
    begin = end - hours * HOUR
    om = work / "history.om"
    t = time.perf_counter()
    lines = 0
    with om.open("w") as f:
        for inst in insts:
            tier = history.tiers(inst)[0]
            pts = history.export(inst, tier, begin, end, 1, now)
            for piece in export.openmetrics_family(inst, pts, f"{export.metric_name(inst)}_i{inst.id}"):
                f.write(piece)
                lines += 1
        f.write("# EOF\n")
    samples = lines - 2 * len(insts)
    print(f"\nPrometheus TSDB comparison: the last {hours} h of per-second data "
          f"({samples:,} samples, OpenMetrics {fmt_bytes(om.stat().st_size)} written in "
          f"{time.perf_counter() - t:.0f} s)", flush=True)
    blocks = work / "prometheus"
    shutil.rmtree(blocks, ignore_errors=True)
    t = time.perf_counter()
    out = subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", str(om), str(blocks)],
                         capture_output=True, text=True)
    if out.returncode:
        print(f"  promtool failed: {out.stderr[-2000:]}")
        return
    prom_samples = sum(int(m[1]) for m in re.finditer(r"\s(\d+)\s+\d+\s+\d+\s+\d+\s*$", out.stdout, re.M))
    prom_bytes = sum(p.stat().st_size for p in blocks.rglob("*") if p.is_file())
    chunk_bytes = sum(p.stat().st_size for p in blocks.rglob("chunks/*") if p.is_file())
    ours = sum(len(c.data) for inst in insts
               for c in store.read_chunks(inst.id, 0, begin, end, HOUR) if begin <= c.start and c.end <= end)
    ours_samples = sum(c.nsamples for inst in insts
                       for c in store.read_chunks(inst.id, 0, begin, end, HOUR, with_data=False)
                       if begin <= c.start and c.end <= end)
    print(f"  promtool tsdb create-blocks-from openmetrics: {time.perf_counter() - t:.0f} s, "
          f"{prom_samples or samples:,} samples")
    print(f"  {'':34} {'bytes':>12} {'B/sample':>9}")
    print(f"  {'fleetscope second tier (chunks)':34} {fmt_bytes(ours):>12} {ours / ours_samples:9.3f}")
    print(f"  {'Prometheus TSDB blocks (all files)':34} {fmt_bytes(prom_bytes):>12} "
          f"{prom_bytes / (prom_samples or samples):9.3f}")
    print(f"  {'Prometheus chunks only':34} {fmt_bytes(chunk_bytes):>12} "
          f"{chunk_bytes / (prom_samples or samples):9.3f}")
    om.unlink()


if __name__ == "__main__":
    sys.exit(main())
