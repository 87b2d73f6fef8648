"""What alert evaluation costs: 1,000 rules over 200 instrumentations, every second.

The real engine (:class:`fleetscope.alerts.engine.AlertEngine`) on a real SQLite store, fed one
final slot per instrumentation per second as an aggregator feeds it, with rules of every kind:
on the value, on each of 50 keys of a breakdown, on a percentile of a distribution, on missing
sources and on no data. A share of the values cross their thresholds now and then, so alerts
fire, resolve and are saved as they would. Receivers are a counter (the notifier's queueing is
measured by tests/test_alert_receivers.py): this is the evaluation's own cost.

    .venv/bin/python bench/alerts.py [--rules 1000] [--insts 200] [--seconds 30] [--churn 0.01]

Prints the CPU time per second of data (one round) for all the rules, per 1,000 rules, and the
share of one core.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from pathlib import Path

from fleetscope.alerts.engine import AlertEngine
from fleetscope.model import values
from fleetscope.model.alerts import Notification, Receiver, parse_receiver, parse_rule
from fleetscope.model.histogram import Histogram
from fleetscope.model.instrumentation import Instrumentation
from fleetscope.model.series import DataPoint
from fleetscope.model.types import MILLISECONDS
from fleetscope.store.open import open_store

KEYS = 50  # keys per breakdown
HOSTS = 20  # sources expected per slot


class Counter:
    def __init__(self) -> None:
        self.sent = 0

    def send(self, notification: Notification, receiver: Receiver) -> None:
        self.sent += 1

    def stats(self) -> dict[str, dict]:
        return {"bench": {"sent": self.sent}}


def instrumentations(store, n: int) -> list[Instrumentation]:
    kinds = [
        {"module": "cpu", "stat": "load", "predicate": {}, "decomposition": (), "kind": "point",
         "unit": {"base": "number", "power": 0}},
        {"module": "proc", "stat": "cpu", "predicate": {}, "decomposition": ("execname",),
         "shape": values.DISCRETE, "discrete": "execname", "unit": {"base": "seconds", "power": 0}},
        {"module": "app", "stat": "latency", "predicate": {}, "decomposition": ("latency",),
         "shape": values.HISTOGRAM, "numeric": "latency", "unit": {"base": "number", "power": 0}},
    ]
    common = {"granularity": 1, "retention": 600, "idle_max": 0, "persist": False}
    return [store.create_instrumentation({**common, **kinds[i % 3]}, 0.0) for i in range(n)]


def rules_for(inst: Instrumentation, rng: random.Random) -> list[dict]:
    if inst.shape == values.DISCRETE:
        return [{"when": "each key > 0.9", "clear": 0.8}, {"when": 'key "k7" > 0.95', "for": "5s"}]
    if inst.shape == values.HISTOGRAM:
        return [{"when": "p99 > 180ms", "for": "3s"}, {"when": "avg > 120ms"}]
    return [{"when": "value > 0.9", "for": "2s", "clear": 0.7}, {"when": "sources < expected"},
            {"when": "no data for 30s"}]


def point(inst: Instrumentation, t: int, rng: random.Random, churn: float) -> DataPoint:
    """One slot: each number (and each distribution's tail) is past its rule's threshold with
    probability ``churn``, and a source is missing with that probability too."""

    def level() -> float:
        return 0.5 + 0.3 * rng.random() + (0.3 if rng.random() < churn else 0.0)

    if inst.shape == values.DISCRETE:
        value = {f"k{i}": level() for i in range(KEYS)}
    elif inst.shape == values.HISTOGRAM:
        value = Histogram()
        slow = rng.random() < churn
        for _ in range(100):
            value.record(rng.expovariate(1 / (90 if slow else 30)))
    else:
        value = level()
    return DataPoint(t, 1, value, HOSTS - (rng.random() < churn), HOSTS)


async def run(args: argparse.Namespace) -> None:
    rng = random.Random(1)
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(f"sqlite:///{Path(tmp) / 'bench.db'}")
        store.put_alert_receiver(parse_receiver({"name": "bench", "kind": "webhook",
                                                 "settings": {"url": "http://127.0.0.1:9/"}}, None), True)
        insts = instrumentations(store, args.insts)
        made = 0
        while made < args.rules:
            for inst in insts:
                for body in rules_for(inst, rng):
                    if made < args.rules:
                        unit = MILLISECONDS if inst.numeric else None
                        store.create_alert_rule(parse_rule({**body, "receivers": ["bench"]}, inst, unit))
                        made += 1
        sender = Counter()
        clock = [float(int(time.time()))]
        engine = AlertEngine(store, sender, clock=lambda: clock[0])
        await engine.round()
        cpu: list[float] = []
        start = int(clock[0])
        for second in range(args.seconds):
            t = start + second
            for inst in insts:
                engine.record(inst, point(inst, t, rng, args.churn))
            clock[0] = t + 1.5
            began = time.process_time()
            await engine.round()
            cpu.append(time.process_time() - began)
        store.close()
    stats = engine.stats()
    per_round = statistics.median(cpu)
    print(f"{stats.rules} rules over {len(insts)} instrumentations, {args.seconds} s of data")
    print(f"churn {args.churn:g}: evaluations {stats.evaluations}, notifications {sender.sent}, "
          f"firing at the end {stats.firing}")
    print(f"CPU per second of data: median {per_round * 1e3:.1f} ms, p90 "
          f"{sorted(cpu)[int(0.9 * len(cpu))] * 1e3:.1f} ms, max {max(cpu) * 1e3:.1f} ms")
    print(f"per 1,000 rules: {per_round * 1e3 * 1000 / stats.rules:.1f} ms per second "
          f"= {per_round * 100 * 1000 / stats.rules:.1f} % of one core")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rules", type=int, default=1000)
    parser.add_argument("--insts", type=int, default=200)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--churn", type=float, default=0.01,
                        help="chance that a value is past its threshold in a second (default 0.01)")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
