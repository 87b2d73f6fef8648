"""Agent overhead: CPU (% of one core) and RSS of the agent at 1 Hz with the default instrumentations.

Runs the real agent (sources, predicates, decomposition, batch encoding and
publishing) in a child process and measures it with shared/tools/measure-tree.sh,
the tool behind the reference figures in DESIGN.md; the floor agent
(shared/tools/floor.py) is measured the same way for comparison.

    .venv/bin/python bench/agent_overhead.py                 # 60 s after 10 s warm-up
    .venv/bin/python bench/agent_overhead.py --extra-procs 300
    .venv/bin/python bench/agent_overhead.py --extra-procs 300 --cgroups 50   # as root
    .venv/bin/python bench/agent_overhead.py --seconds 20 --warmup 5 --no-floor
    .venv/bin/python bench/agent_overhead.py --per-container 200 --no-floor   # as root
    .venv/bin/python bench/agent_overhead.py --per-container 200 --no-floor --all-container-metrics

``--per-container N`` measures the agent twice, without and with N cgroups made by the
benchmark (each holding one sleep process), and prints what one container costs. With
``--all-container-metrics`` the agent also breaks every ``container.*`` metric down by
container (not only the default CPU and memory).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
if not SHARED.exists():  # a clone next to shared/ (CI) or the work tree's sibling
    SHARED = Path(os.environ.get("FLEETSCOPE_SHARED", "/work/shared"))
MEASURE = SHARED / "tools" / "measure-tree.sh"
FLOOR = SHARED / "tools" / "floor.py"


def run_agent() -> None:
    """The measured child: a real Agent with the default instrumentations, publishing every tick."""
    from fleetscope.agent.agent import Agent
    from fleetscope.bus import messages as m
    from fleetscope.bus.memory import MemoryBus
    from fleetscope.model.defaults import default_specs
    from fleetscope.model.instrumentation import Instrumentation, validate_spec
    from fleetscope.sources.registry import local_sources

    async def main() -> None:
        bus = MemoryBus()
        agent = Agent(bus, local_sources())
        # As ensure_defaults does: container defaults only on hosts with containers.
        specs = default_specs(agent.catalog)
        if os.environ.get(ALL_CONTAINER_METRICS):
            specs += [{"module": "container", "stat": mt.name.split(".", 1)[1],
                       "decomposition": ["container"]}
                      for mt in agent.catalog if mt.name.startswith("container.")
                      and mt.name not in ("container.cpu", "container.memory")]
        for i, spec in enumerate(specs, start=1):
            body = validate_spec(spec, agent.catalog)
            agent.enable(Instrumentation(id=i, created=time.time(), **body))

        async def answer_list(msg) -> None:  # the control plane's one job for an agent at start
            listing = [inst.to_json() for inst in agent.instrumentations.values()]
            await bus.publish(msg.reply, m.encode(m.InstrumentationList(listing)))

        await bus.subscribe(m.CTL_LIST, answer_list)
        await agent.run()

    asyncio.run(main())


def measure(pid: int, seconds: int, warmup: int, label: str) -> dict[str, float]:
    out = subprocess.run(["bash", str(MEASURE), str(pid), str(seconds), str(warmup), label],
                         capture_output=True, text=True, check=True).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("RESULT"))
    return {k: float(v) for k, v in re.findall(r"(\w+)=([\d.]+)", line)}


def spawn(cmd: list[str]) -> subprocess.Popen:
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


CGROUP_ROOT = Path("/sys/fs/cgroup")
ALL_CONTAINER_METRICS = "FLEETSCOPE_BENCH_ALL_CONTAINER_METRICS"  # tells the child
# The v1 hierarchies the container metrics read, and the v2 mount beside them.
CGROUP_MOUNTS = ("cpu", "cpuacct", "memory", "pids", "blkio", "unified")


def make_cgroups(n: int, procs: list[subprocess.Popen]) -> list[Path]:
    """``n`` cgroups (as root) in every hierarchy of CGROUP_MOUNTS that exists, shaped like
    systemd services; ``procs`` are spread over them. Returns the directories made."""
    made = []
    mounts = [CGROUP_ROOT / m for m in CGROUP_MOUNTS if (CGROUP_ROOT / m / "cgroup.procs").exists()]
    for i in range(n):
        dirs = []
        for mount in mounts:
            d = mount / f"fleetscope-bench-{os.getpid()}-{i}.service"
            d.mkdir()
            made.append(d)
            dirs.append(d)
        for p in procs[i::n]:
            for d in dirs:
                (d / "cgroup.procs").write_text(str(p.pid))
    return made


def remove_cgroups(dirs: list[Path]) -> None:
    for d in dirs:
        for _ in range(50):
            try:
                d.rmdir()
                break
            except OSError:
                time.sleep(0.05)




def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--extra-procs", type=int, default=0, help="start this many sleep processes first")
    parser.add_argument("--cgroups", type=int, default=0,
                        help="make this many cgroups (root) and spread the sleep processes over them")
    parser.add_argument("--no-floor", action="store_true", help="skip measuring floor.py")
    parser.add_argument("--per-container", type=int, default=0, metavar="N",
                        help="measure without and with N cgroups (root; one sleep process each) and "
                             "print the cost of one container")
    parser.add_argument("--all-container-metrics", action="store_true",
                        help="also break every container.* metric down by container")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_agent()
        return
    if args.all_container_metrics:
        os.environ[ALL_CONTAINER_METRICS] = "1"
    if args.per_container:
        per_container(args)
        return
    sleepers = [spawn(["sleep", "100000"]) for _ in range(args.extra_procs)]
    cgroups: list[Path] = []
    try:
        cgroups = make_cgroups(args.cgroups, sleepers)
        rows = []
        agent = spawn([sys.executable, __file__, "--child"])
        try:
            rows.append(("fleetscope agent", measure(agent.pid, args.seconds, args.warmup, "agent")))
        finally:
            agent.terminate()
            agent.wait()
        if not args.no_floor:
            floor = spawn([sys.executable, str(FLOOR)])
            try:
                rows.append(("floor.py", measure(floor.pid, args.seconds, args.warmup, "floor")))
            finally:
                floor.terminate()
                floor.wait()
    finally:
        for p in sleepers:
            p.kill()
            p.wait()
        remove_cgroups(cgroups)
    nprocs = int(rows[0][1]["machine_procs_mean"])
    print(f"agent overhead at 1 Hz, default instrumentations, {args.seconds} s after {args.warmup} s "
          f"warm-up, ~{nprocs} processes on the machine, {args.cgroups} extra cgroups")
    print(f"{'what':<18} {'CPU % of one core':>18} {'RSS mean MB':>12} {'RSS peak MB':>12} {'PSS MB':>8}")
    for label, r in rows:
        print(f"{label:<18} {r['cpu_pct']:>18.2f} {r['rss_mean_mb']:>12.1f} {r['rss_peak_mb']:>12.1f} "
              f"{r['pss_mean_mb']:>8.1f}")
    if len(rows) == 2:
        print(f"agent / floor CPU: {rows[0][1]['cpu_pct'] / max(rows[1][1]['cpu_pct'], 1e-9):.2f}x "
              f"(target: under 1.5x and under 0.9 %; RSS under 35 MB)")


def per_container(args: argparse.Namespace) -> None:
    """The agent without, then with ``args.per_container`` cgroups, and the difference per one."""
    n = args.per_container
    results = []
    for count in (0, n):
        sleepers = [spawn(["sleep", "100000"]) for _ in range(count)]
        cgroups: list[Path] = []
        try:
            cgroups = make_cgroups(count, sleepers)
            agent = spawn([sys.executable, __file__, "--child"])
            try:
                results.append(measure(agent.pid, args.seconds, args.warmup, f"agent-{count}"))
            finally:
                agent.terminate()
                agent.wait()
        finally:
            for p in sleepers:
                p.kill()
                p.wait()
            remove_cgroups(cgroups)
    what = "every container.* metric" if args.all_container_metrics else "default instrumentations"
    print(f"agent at 1 Hz, {what}, {args.seconds} s after {args.warmup} s warm-up each")
    print(f"{'benchmark cgroups':<18} {'CPU % of one core':>18} {'RSS mean MB':>12} {'processes':>10}")
    for count, r in zip((0, n), results, strict=True):
        procs = int(r["machine_procs_mean"])
        print(f"{count:<18} {r['cpu_pct']:>18.2f} {r['rss_mean_mb']:>12.1f} {procs:>10}")
    extra = results[1]["cpu_pct"] - results[0]["cpu_pct"]
    rss_kb = (results[1]["rss_mean_mb"] - results[0]["rss_mean_mb"]) / n * 1024
    print(f"per container: {extra / n:.4f} % of one core = {extra / n * 10:.3f} ms CPU per tick "
          f"(and one sleep process each); RSS {rss_kb:.0f} KB")


if __name__ == "__main__":
    main()
