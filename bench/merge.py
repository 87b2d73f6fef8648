"""How many host batches one aggregator core merges, without the bus (issue 15's "cheaper merging").

Batches of the fleet bench's shape (``bench/fleet.py``: 10 breakdowns of 20 keys and 10 latency
histograms, of which ``--heatmaps`` are broken down by 20 routes), encoded as agents encode
them, are fed to a real :class:`fleetscope.aggregator.aggregator.Aggregator` as its bus handler
gets them (decode, check, merge into the window, finalise), ``--hosts`` hosts a second for
``--seconds`` simulated seconds. Prints batches merged per CPU second.

    .venv/bin/python bench/merge.py [--hosts 2000] [--seconds 10] [--heatmaps 2] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from fleet import host_partials

from fleetscope.aggregator.aggregator import Aggregator
from fleetscope.bus import messages as m
from fleetscope.bus.base import Msg
from fleetscope.bus.memory import MemoryBus
from fleetscope.model import values
from fleetscope.model.instrumentation import Instrumentation

KEYS = 20


def instrumentations(heatmaps: int) -> list[Instrumentation]:
    common = {"predicate": {}, "granularity": 1, "retention": 600, "idle_max": 0, "persist": False,
              "created": 0.0}
    out = []
    for i in range(20):
        if i < 10:
            spec = {"module": "sim", "stat": "cpu", "decomposition": ("process",), "shape": values.DISCRETE,
                    "discrete": "process"}
        elif i < 20 - heatmaps:
            spec = {"module": "sim", "stat": "requests", "decomposition": ("latency",),
                    "shape": values.HISTOGRAM, "numeric": "latency"}
        else:
            spec = {"module": "sim", "stat": "requests", "decomposition": ("route", "latency"),
                    "shape": values.DISCRETE_HISTOGRAM, "discrete": "route", "numeric": "latency"}
        out.append(Instrumentation(id=i + 1, **common, **spec))
    return out


def run(args: argparse.Namespace) -> None:
    rng = random.Random(1)
    insts = instrumentations(args.heatmaps)
    variants = [host_partials([(i.id, i.shape) for i in insts], rng) for _ in range(4)]
    hosts = [f"sim-{i}.example.com" for i in range(args.hosts)]
    start = int(time.time()) - args.seconds - 5
    messages = []
    for second in range(args.seconds):
        for n, host in enumerate(hosts):
            batch = m.Batch(host, start + second, start + second + 0.5, variants[(n + second) % 4])
            messages.append(Msg(m.data_subject(host), m.encode(batch)))
    agg = Aggregator(MemoryBus())
    for inst in insts:
        agg.enable(inst)
    finals = []
    agg.listeners.append(lambda inst, point: finals.append(point))

    async def feed() -> float:
        began = time.process_time()
        per_second = len(hosts)
        for i in range(0, len(messages), per_second):
            for msg in messages[i:i + per_second]:
                await agg._on_batch(msg)
            for window in agg.windows.values():  # the housekeeping of each second: finalise
                window.expire(start + i // per_second + 3.0)
        return time.process_time() - began

    profile = cProfile.Profile() if args.profile else None
    if profile:
        profile.enable()
    cpu = asyncio.run(feed())
    if profile:
        profile.disable()
        pstats.Stats(profile).sort_stats("tottime").print_stats(18)
    complete = sum(1 for p in finals if p.nsources == len(hosts))
    print(f"{len(messages)} batches of 20 instrumentations ({args.heatmaps} heatmaps of {KEYS} routes) "
          f"from {len(hosts)} hosts: {cpu:.2f} CPU s, {len(messages) / cpu:,.0f} batches per CPU second; "
          f"{complete}/{len(finals)} final slots complete, dropped {dict(agg.dropped)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=2000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--heatmaps", type=int, default=2)
    parser.add_argument("--profile", action="store_true")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
