"""Memory and merge time of an aggregator's real-time windows at fleet size.

    .venv/bin/python bench/window_memory.py [--hosts 1000] [--windows 20] [--retention 600]

Fills ``--windows`` windows (scalar instrumentations, one-second slots) with a
partial from each of ``--hosts`` hosts for every second of ``--retention``:
what one aggregator holds after that long with that fleet. Prints the time per
partial merged, the memory the windows take (RSS growth) and how long a full
garbage collection takes over them.
"""

from __future__ import annotations

import argparse
import gc
import time

import psutil

from fleetscope.aggregator.window import Window
from fleetscope.model.instrumentation import Instrumentation


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hosts", type=int, default=1000)
    ap.add_argument("--windows", type=int, default=20)
    ap.add_argument("--retention", type=int, default=600, help="seconds of slots kept")
    args = ap.parse_args()
    inst = Instrumentation(id=1, module="cpu", stat="usage", predicate={}, decomposition=(), granularity=1,
                           retention=args.retention, idle_max=0, persist=False, created=0)
    windows = [Window(inst, 100, 1.5, lambda _inst, _point: None) for _ in range(args.windows)]
    hosts = [f"host-{i}" for i in range(args.hosts)]
    me = psutil.Process()
    rss0 = me.memory_info().rss
    t0 = int(time.time()) - args.retention - 10
    started = time.perf_counter()
    for s in range(args.retention):
        now = t0 + s + 1.1
        for window in windows:
            for host in hosts:
                window.add(host, t0 + s, 1.0, now)
    elapsed = time.perf_counter() - started
    n = args.retention * args.windows * args.hosts
    rss = me.memory_info().rss - rss0
    started = time.perf_counter()
    gc.collect()
    collect = time.perf_counter() - started
    print(f"{args.windows} windows x {args.hosts} hosts x {args.retention} s: {n / 1e6:.1f} M partials")
    print(f"merge: {elapsed / n * 1e6:.2f} us per partial")
    print(f"memory: {rss / 1e6:.1f} MB ({rss / (args.windows * args.retention):.0f} B per slot)")
    print(f"full garbage collection: {collect * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
