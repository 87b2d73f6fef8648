"""How many agents one aggregator (and two) hold at 1 Hz.

Starts a real nats-server (no JetStream), a PostgreSQL database of its own, one
`fleetscope api` (the control plane) and one or two `fleetscope aggregator`
processes, then simulates N agents in a few worker processes: every wall-clock
second each simulated host publishes one batch, as a real agent does, with
partial values of 20 instrumentations (10 breakdowns of 20 keys, 6 latency
histograms, 4 latency heatmaps by 20 routes) and a status message every 5 s.

The bench process listens to the finals the aggregators publish and measures
the end-to-end delay of each: from the end of the second it covers to its
arrival here (the agents' tick, the bus, the aggregator's merge, finalisation
and publication). N doubles until the p99 delay reaches 2 s or values stop
being complete (nsources < N); the largest N that held is the answer.

    .venv/bin/python bench/fleet.py                    # 1 and 2 aggregators
    .venv/bin/python bench/fleet.py --aggregators 1 --hosts 250,500,1000
    .venv/bin/python bench/fleet.py --aggregators 1 --pin   # one aggregator on a core of its own
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

import httpx
import psutil

from fleetscope import __version__
from fleetscope.bus import messages as m
from fleetscope.bus.nats import NatsBus, NatsOptions
from fleetscope.model import values
from fleetscope.model.histogram import Histogram
from fleetscope.model.metrics import DISCRETE, INTERVAL, NUMERIC, Field, metric
from fleetscope.model.types import NUMBER, SECONDS

EXE = Path(sys.executable).parent / "fleetscope"
ADMIN_URL = os.environ.get("FLEETSCOPE_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
KEYS = 20
TARGET_P99 = 2.0
STATUS_EVERY = 5

# The simulated agents' metrics: what they announce, and what the 20 instrumentations ask.
ROUTE = Field("route", DISCRETE, "request route")
LATENCY = Field("latency", NUMERIC, "request latency", SECONDS)
PROCESS = Field("process", DISCRETE, "process name")
METRICS = (metric("sim", "requests", "simulated requests", NUMBER, INTERVAL, ROUTE, LATENCY),
           metric("sim", "cpu", "simulated CPU", SECONDS, INTERVAL, PROCESS))
BREAKDOWN = {"module": "sim", "stat": "cpu", "decomposition": ["process"]}
HISTOGRAM = {"module": "sim", "stat": "requests", "decomposition": ["latency"]}
HEATMAP = {"module": "sim", "stat": "requests", "decomposition": ["route", "latency"]}


def instrumentations(heatmaps: int) -> list[dict]:
    """20 instrumentations: 10 breakdowns of 20 keys, and latency histograms of which
    ``heatmaps`` are broken down by 20 routes."""
    return [BREAKDOWN] * 10 + [HISTOGRAM] * (10 - heatmaps) + [HEATMAP] * heatmaps


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- what one simulated host sends ------------------------------------------------------------

def _latencies(rng: random.Random, n: int) -> Histogram:
    h = Histogram()
    for _ in range(n):
        h.record(rng.lognormvariate(-4.5, 0.8))  # ~10 ms, a realistic long tail
    return h


def host_partials(inst: list[tuple[int, str]], rng: random.Random) -> list[m.Partial]:
    """One tick's partial values of every instrumentation, for one host."""
    out = []
    for inst_id, shape in inst:
        if shape == values.DISCRETE:
            value = {f"proc{k}": rng.random() * 0.1 for k in range(KEYS)}
        elif shape == values.HISTOGRAM:
            value = _latencies(rng, 50)
        else:
            value = {f"/route/{k}": _latencies(rng, 5) for k in range(KEYS)}
        out.append(m.Partial(inst_id, values.encode(value, shape)))
    return out


def simulate(url: str, hosts: list[str], inst: list[tuple[int, str]], seconds: float, seed: int) -> None:
    """A worker process: ``hosts`` each publish one batch per wall-clock second for ``seconds``."""
    logging.getLogger("fleetscope").setLevel(logging.ERROR)  # a simulator's bus closing
    rng = random.Random(seed)
    variants = [host_partials(inst, rng) for _ in range(4)]  # values differ between hosts and ticks

    async def run() -> None:
        bus = NatsBus(NatsOptions(url, name=f"bench simulator {seed}"))
        await bus.connect()
        end = time.time() + seconds
        tick = 0
        while time.time() < end:
            await asyncio.sleep(int(time.time()) + 1.005 - time.time())
            second = int(time.time())
            for i, host in enumerate(hosts):
                batch = m.Batch(host, second - 1, time.time(), variants[(i + tick) % len(variants)])
                await bus.publish(m.data_subject(host), m.encode(batch))
                if (i + second) % STATUS_EVERY == 0:
                    status = m.AgentStatus(host, __version__, time.time(), running=[i for i, _ in inst])
                    await bus.publish(m.status_subject(status.host), m.encode(status))
            await bus.nc.flush()
            tick += 1
        await bus.close()

    asyncio.run(run())


# -- the fleet under test -----------------------------------------------------------------------

class Fleet:
    """nats-server, a PostgreSQL database, an API server and ``n_aggregators`` aggregators."""

    def __init__(self, n_aggregators: int, work: Path, pin: bool = False) -> None:
        self.work = work
        self.port, self.api_port = free_port(), free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.api = f"http://127.0.0.1:{self.api_port}"
        self.db = f"fleetscope_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self.store = ADMIN_URL.rsplit("/", 1)[0] + "/" + self.db
        self.n_aggregators = n_aggregators
        self.pin = pin
        self.procs: list[subprocess.Popen] = []
        self.aggregators: list[psutil.Process] = []

    def _spawn(self, args: list[str]) -> subprocess.Popen:
        log = open(self.work / f"{args[0]}-{len(self.procs)}.log", "wb")  # noqa: SIM115 - the child keeps it
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def start(self) -> None:
        import psycopg

        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{self.db}"')
        nats = shutil.which("nats-server") or "/usr/sbin/nats-server"
        self._spawn([nats, "-a", "127.0.0.1", "-p", str(self.port)])
        bus = ["--bus", self.url, "--store", self.store]
        self.token = subprocess.run([str(EXE), "token", "create", "bench", "--role", "admin", "--store",
                                     self.store], capture_output=True, text=True, check=True).stdout.strip()
        self._spawn([str(EXE), "api", *bus, "--port", str(self.api_port)])
        for i in range(self.n_aggregators):
            # Pinned: the aggregators have core 1 to themselves; everything else shares core 0.
            taskset = ["taskset", "-c", "1"] if self.pin else []
            proc = self._spawn([*taskset, str(EXE), "aggregator", *bus, "--name", f"bench{i}"])
            self.aggregators.append(psutil.Process(proc.pid))
        for _ in range(200):
            try:
                if httpx.get(self.api + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise SystemExit(f"fleetscope api did not start; see {self.work}")

    async def announce_and_create(self, specs: list[dict]) -> list[tuple[int, str]]:
        """Announce the simulated metrics as an agent would, then create the instrumentations."""
        bus = NatsBus(NatsOptions(self.url, name="bench announcer"))
        await bus.connect()
        status = m.AgentStatus("sim-0", __version__, time.time(), metrics=[mt.to_json() for mt in METRICS])
        created: list[tuple[int, str]] = []
        async with httpx.AsyncClient(base_url=self.api, timeout=10,
                                     headers={"authorization": f"Bearer {self.token}"}) as client:
            for spec in specs:
                for _ in range(50):
                    await bus.publish(m.status_subject(status.host), m.encode(status))
                    resp = await client.post("/api/v1/instrumentations", json=spec)
                    if resp.status_code == 201:
                        body = resp.json()
                        created.append((body["id"], body["shape"]))
                        break
                    await asyncio.sleep(0.1)
                else:
                    raise SystemExit(f"cannot create {spec}: {resp.text}")
        await bus.close()
        return created

    def stop(self) -> None:
        import psycopg

        for proc in reversed(self.procs):
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)')


# -- one trial ----------------------------------------------------------------------------------

async def listen_finals(url: str, first: int, last: int, delays: list[float], sources: list[int]) -> None:
    """Record the delay and completeness of every first final of the seconds ``first..last``."""
    bus = NatsBus(NatsOptions(url, name="bench listener"))
    await bus.connect()

    async def on_final(msg) -> None:
        point = m.decode(msg.data, m.FinalPoint)
        if first <= point.start_time <= last and not point.revised:
            delays.append(time.time() - (point.start_time + point.duration))
            sources.append(point.nsources)

    await bus.subscribe(f"{m.FINAL}.>", on_final)
    while time.time() < last + 1 + TARGET_P99 * 2:
        await asyncio.sleep(0.2)
    await bus.close()


def trial(n_hosts: int, n_aggregators: int, seconds: int, workers: int, warmup: int,
          specs: list[dict], pin: bool = False) -> dict:
    with tempfile.TemporaryDirectory(prefix="fleetscope-bench-") as tmp, ExitStack() as stack:
        fleet = Fleet(n_aggregators, Path(tmp), pin)
        fleet.start()
        stack.callback(fleet.stop)
        inst = asyncio.run(fleet.announce_and_create(specs))
        time.sleep(3)  # the aggregators take their shares (leases) and learn the instrumentations
        hosts = [f"sim-{i}" for i in range(n_hosts)]
        ctx = multiprocessing.get_context("spawn")
        sims = [ctx.Process(target=simulate, args=(fleet.url, hosts[w::workers], inst, warmup + seconds, w))
                for w in range(workers)]
        for p in sims:
            p.start()
        start = int(time.time()) + warmup
        delays: list[float] = []
        sources: list[int] = []
        listener = threading.Thread(target=asyncio.run, args=(
            listen_finals(fleet.url, start, start + seconds - 2, delays, sources),))
        listener.start()
        time.sleep(start - time.time())
        cpu0 = [p.cpu_times() for p in fleet.aggregators]
        t0 = time.monotonic()
        time.sleep(seconds)
        cpu1 = [p.cpu_times() for p in fleet.aggregators]
        elapsed = time.monotonic() - t0
        rss = [p.memory_info().rss for p in fleet.aggregators]
        listener.join()
        for p in sims:
            p.join(30)
        busy = sum((b.user + b.system) - (a.user + a.system) for a, b in zip(cpu0, cpu1, strict=True))
        delays.sort()
        expected_points = len(inst) * (seconds - 1)
        return {
            "hosts": n_hosts, "aggregators": n_aggregators,
            "points": len(delays), "expected_points": expected_points,
            "complete": sum(1 for s in sources if s == n_hosts) / max(expected_points, 1),
            "p50": _pct(delays, 0.50), "p99": _pct(delays, 0.99),
            "cpu": 100 * busy / elapsed, "rss_mb": sum(rss) / 1e6,
            "samples_per_s": n_hosts * len(inst),
        }


def _pct(xs: list[float], q: float) -> float:
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("inf")


def held(r: dict) -> bool:
    return r["p99"] < TARGET_P99 and r["complete"] >= 0.99


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--aggregators", default="1,2", help="aggregator counts to try (default 1,2)")
    ap.add_argument("--hosts", default="125,250,500,1000,2000,4000",
                    help="simulated agents, tried in order until one does not hold")
    ap.add_argument("--seconds", type=int, default=20, help="measured seconds per trial")
    ap.add_argument("--warmup", type=int, default=5, help="seconds before measuring")
    ap.add_argument("--workers", type=int, default=2, help="simulator processes")
    ap.add_argument("--heatmaps", type=int, default=2, choices=range(11),
                    help="how many of the 10 latency histograms are heatmaps of 20 routes")
    ap.add_argument("--pin", action="store_true",
                    help="aggregators on core 1 alone; simulators, nats-server, API on core 0")
    args = ap.parse_args()
    if args.pin:
        os.sched_setaffinity(0, {0})  # inherited by every process started from here but the aggregators
    specs = instrumentations(args.heatmaps)
    logging.getLogger("fleetscope").setLevel(logging.ERROR)  # the bench's own bus clients closing
    print(f"# {len(specs)} instrumentations per host: 10 breakdowns of {KEYS} keys, {10 - args.heatmaps} "
          f"histograms, {args.heatmaps} heatmaps of {KEYS} keys; {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.1f}")
    print(f"{'aggs':>4} {'hosts':>6} {'values/s':>9} {'p50 s':>7} {'p99 s':>7} {'complete':>8} "
          f"{'agg CPU %':>9} {'agg RSS MB':>10}  held")
    print("# agg CPU: % of one core, all aggregators together; agg RSS: their sum")
    for n_agg in (int(x) for x in args.aggregators.split(",")):
        best = None
        for n in (int(x) for x in args.hosts.split(",")):
            r = trial(n, n_agg, args.seconds, args.workers, args.warmup, specs, args.pin)
            ok = held(r)
            print(f"{n_agg:>4} {n:>6} {r['samples_per_s']:>9} {r['p50']:>7.3f} {r['p99']:>7.3f} "
                  f"{r['complete']:>8.1%} {r['cpu']:>9.1f} {r['rss_mb']:>10.1f}  {'yes' if ok else 'no'}",
                  flush=True)
            if not ok:
                break
            best = r
        print(f"# {n_agg} aggregator(s): largest N held at 1 Hz with p99 < {TARGET_P99:g} s: "
              f"{best['hosts'] if best else 'none'}", flush=True)


if __name__ == "__main__":
    main()
