"""Agent tick time with a hostile instrumentation next to the normal ones.

A real Agent over the local sources and a StatsD source holding 100,000 gauges
(``app.queue``, one per ``shard`` tag, sent as StatsD lines), with the default
instrumentations of `fleetscope serve`, ticks once a second for each scenario:

- ``normal``: the default instrumentations alone;
- ``redos``: and proc.cpu by pid where ``cmd ~ "(a+)+$"``, with a process whose
  command line is ``... aaaa…a!`` (RE2: Python's re would never finish);
- ``wide``: and app.queue by shard (100,000 values) under the default budget: paused;
- ``wide-roomy``: the same with a 1 s budget: bounded to the top AGENT_TOP_K keys;
- ``largest``: and app.queue by shard where the largest predicate (MAX_REGEXES regexes)
  holds: about 2 s of CPU per tick unbounded, stopped at the budget and paused.

For each it prints the tick's wall and CPU time (collect, evaluate, encode the batch),
p50 / p99 / max over the run, and what became of the hostile instrumentation.

    .venv/bin/python bench/agent_hostile.py                  # 30 ticks per scenario
    .venv/bin/python bench/agent_hostile.py --seconds 60 --only redos largest
"""

from __future__ import annotations

import argparse
import logging
import statistics
import subprocess
import sys
import time

SHARDS = 100_000
SLEEPER = "import time; time.sleep(3600)"


def percentile(xs: list[float], q: float) -> float:
    ordered = sorted(xs)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    from fleetscope.agent.agent import Agent
    from fleetscope.agent.budget import DEFAULT_BUDGET
    from fleetscope.api.control import DEFAULT_INSTRUMENTATIONS, DEFAULT_OPTIONS
    from fleetscope.bus import messages as m
    from fleetscope.bus.memory import MemoryBus
    from fleetscope.model.instrumentation import Instrumentation, validate_spec
    from fleetscope.model.predicate import MAX_REGEXES
    from fleetscope.sources.proc import CMD_MAX
    from fleetscope.sources.registry import local_sources
    from fleetscope.sources.statsd import StatsdConfig, StatsdSource

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=30, help="ticks per scenario (one a second)")
    parser.add_argument("--only", nargs="*", help="scenarios to run")
    args = parser.parse_args()
    logging.getLogger("fleetscope").setLevel(logging.ERROR)  # the pauses are in the table

    statsd = StatsdSource(StatsdConfig(port=0, max_keys=2 * SHARDS))
    lines = [f"queue:{i % 97 + 1}|g|#shard:s{i:06d}" for i in range(SHARDS)]
    for i in range(0, SHARDS, 1000):
        statsd.ingest("\n".join(lines[i:i + 1000]).encode(), "tcp")
    prefix = f"{sys.executable} -c {SLEEPER} "
    bang = subprocess.Popen([sys.executable, "-c", SLEEPER, "a" * (CMD_MAX - len(prefix) - 1) + "!"])
    largest = " or ".join(f'shard ~ "^s0*{i}[0-9]*7$"' for i in range(MAX_REGEXES))
    hostile = {
        "normal": None,
        "redos": {"module": "proc", "stat": "cpu", "decomposition": ["pid"], "predicate": 'cmd ~ "(a+)+$"'},
        "wide": {"module": "app", "stat": "queue", "decomposition": ["shard"]},
        "wide-roomy": {"module": "app", "stat": "queue", "decomposition": ["shard"]},
        "largest": {"module": "app", "stat": "queue", "decomposition": ["shard"], "predicate": largest},
    }
    print(f"{'scenario':<11} {'ticks':>5} {'wall p50':>9} {'p99':>7} {'max':>7} {'CPU p50':>8} {'p99':>7} "
          f"{'others':>7}  hostile instrumentation")
    try:
        for name, spec in hostile.items():
            if args.only and name not in args.only:
                continue
            sources = [*local_sources(), statsd]
            agent = Agent(MemoryBus(), sources, hostname="bench",
                          budget=1.0 if name == "wide-roomy" else DEFAULT_BUDGET)
            agent.refresh_catalog()
            specs = [s for s in DEFAULT_INSTRUMENTATIONS if f"{s['module']}.{s['stat']}" in agent.catalog]
            for i, s in enumerate(specs, start=1):
                agent.enable(Instrumentation(id=i, created=0.0,
                                             **validate_spec({**s, **DEFAULT_OPTIONS}, agent.catalog)))
            bad = None
            if spec is not None:
                bad = len(specs) + 1
                agent.enable(Instrumentation(id=bad, created=0.0, **validate_spec(spec, agent.catalog)))
            walls, cpus, missing, delivered = [], [], 0, 0
            agent.tick(time.time())  # the first tick only primes the counters
            for _ in range(args.seconds):
                time.sleep(1.0 - time.time() % 1.0 + 0.005)
                wall, cpu = time.perf_counter(), time.thread_time()
                batch = agent.tick(time.time())
                m.encode_batch(batch, 8 << 20, lambda p, size: p)
                cpus.append(time.thread_time() - cpu)
                walls.append(time.perf_counter() - wall)
                ids = {p.id for p in batch.partials}
                missing += sum(1 for i in range(1, len(specs) + 1) if i not in ids)
                delivered += bad in ids
            if bad is None:
                fate = "-"
            else:
                warning = agent.warnings.get(bad, "no warning")
                paused = agent.budgets.paused_total
                fate = f"delivered {delivered}/{args.seconds}, paused {paused}x; {warning}"
            others = "all" if not missing else f"-{missing}"
            print(f"{name:<11} {len(walls):>5} {statistics.median(walls) * 1e3:>7.1f}ms "
                  f"{percentile(walls, 0.99) * 1e3:>5.1f}ms {max(walls) * 1e3:>5.1f}ms "
                  f"{statistics.median(cpus) * 1e3:>6.1f}ms {percentile(cpus, 0.99) * 1e3:>5.1f}ms "
                  f"{others:>7}  {fate[:160]}")
            agent.close()
    finally:
        bang.kill()
        bang.wait()


if __name__ == "__main__":
    main()
