"""What an instrumentation's owner pays as the fleet grows (issue 15's large simulated fleet).

For each fleet size, simulates that many hosts sending batches of the fleet bench's shape
(``bench/fleet.py``: 10 breakdowns of 20 keys, 8 latency histograms, 2 heatmaps of 20 routes)
at 1 Hz, spread over the 64 partitions by their names. Four real partition holders (partitioned
:class:`~fleetscope.aggregator.aggregator.Aggregator` objects holding 16 partitions each, in this
process; their cost is not what is measured here, ``bench/merge.py`` measures it) merge them and
send their :class:`~fleetscope.bus.messages.SlotPartial` messages, which are captured. Those are
then fed to a real owner (an aggregator owning the 20 instrumentations and holding no
partition) through its bus handler, with its housekeeping each second, and the owner's CPU time
per simulated second, the messages and bytes it receives per second and the completeness of its
finals are printed. The first simulated second warms up (holders and owner learn who to expect:
its slots are sent again as revisions) and is not measured.

    .venv/bin/python bench/owner.py [--hosts 1000,5000,20000] [--seconds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from fleet import host_partials
from merge import instrumentations

from fleetscope.aggregator.aggregator import Aggregator
from fleetscope.bus import messages as m
from fleetscope.bus.base import Msg
from fleetscope.bus.memory import MemoryBus

HOLDERS = 4


async def partials_of(n_hosts: int, seconds: int, start: int) -> list[list[Msg]]:
    """The partials the holders send for each simulated second, as messages on the bus."""
    insts = instrumentations(2)
    rng = random.Random(1)
    variants = [host_partials([(i.id, i.shape) for i in insts], rng) for _ in range(4)]
    hosts = [f"sim-{i}.example.com" for i in range(n_hosts)]
    bus = MemoryBus()
    await bus.connect()
    captured: list[Msg] = []

    async def capture(msg: Msg) -> None:
        captured.append(msg)

    await bus.subscribe(f"{m.PARTIAL}.*", capture)
    holders = [Aggregator(bus, name=f"holder{i}") for i in range(HOLDERS)]
    for i, holder in enumerate(holders):
        for inst in insts:
            holder.enable(inst)
        holder.own(set())
        await holder.hold_partitions({p for p in range(m.PARTITIONS) if p % HOLDERS == i}, start - 10)
    by_partition = {h: holders[m.partition_of(h) % HOLDERS] for h in hosts}
    out = []
    for second in range(seconds):
        t = start + second
        for n, host in enumerate(hosts):
            batch = m.Batch(host, t, t + 1.0, variants[(n + second) % 4])
            by_partition[host].add_batch(m.decode(m.encode(batch), m.RawBatch), t + 1.0)
        for holder in holders:
            holder.expire(t + 1 + holder.grace)
        await asyncio.sleep(0.01)  # the memory bus delivers in tasks
        out.append(captured[:])
        captured.clear()
    await bus.close()
    return out


async def own(seconds: list[list[Msg]], start: int, n_hosts: int) -> tuple[float, int]:
    """Feed the owner; its CPU seconds, and how many of its finals count every host."""
    insts = instrumentations(2)
    owner = Aggregator(MemoryBus(), name="owner")
    await owner.bus.connect()
    for inst in insts:
        owner.enable(inst)
    owner.own({i.id for i in insts})
    finals = []
    owner.listeners.append(lambda inst, point: finals.append(point) if point.start_time > start else None)
    began = 0.0
    for second, messages in enumerate(seconds):
        if second == 1:
            began = time.process_time()
        for msg in messages:
            await owner._on_partial(msg)
        owner.expire(start + second + 1 + 3 * owner.grace + 1)
    cpu = time.process_time() - began
    await owner.bus.close()
    return cpu, sum(1 for p in finals if p.nsources == n_hosts)


def run(args: argparse.Namespace) -> None:
    print(f"{'hosts':>7} | {'partials/s at the owner':>24} | {'KB/s at the owner':>18} | "
          f"{'owner CPU per second':>21} | complete finals")
    for n_hosts in (int(h) for h in args.hosts.split(",")):
        start = int(time.time()) - args.seconds - 10
        seconds = asyncio.run(partials_of(n_hosts, args.seconds + 1, start))
        gc.collect()  # the holders' garbage is not the owner's cost
        cpu, complete = asyncio.run(own(seconds, start, n_hosts))
        n = sum(len(s) for s in seconds[1:])
        size = sum(len(msg.data) for s in seconds[1:] for msg in s)
        print(f"{n_hosts:>7,} | {n / args.seconds:>24,.0f} | {size / args.seconds / 1024:>18,.0f} | "
              f"{cpu / args.seconds * 1000:>18,.1f} ms | {complete}/{20 * args.seconds}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", default="1000,5000,20000", help="fleet sizes (comma-separated)")
    parser.add_argument("--seconds", type=int, default=3)
    run(parser.parse_args())


if __name__ == "__main__":
    main()
