"""How many agents 1, 2 and 4 aggregators hold at 1 Hz, and what each aggregator pays for them.

For each aggregator count, and each fleet size in turn, starts a real nats-server
(no JetStream, with its monitoring port), a PostgreSQL database of its own, one
`fleetscope api` (the control plane) and N `fleetscope aggregator` processes, and
simulates the agents in ONE publishing process: every wall-clock second (+5 ms,
as real agents tick) each simulated host publishes one batch, as a real agent
does, with partial values of 20 instrumentations (10 breakdowns of 20 keys, 8
latency histograms, 2 latency heatmaps by 20 routes: about 14 KB of msgpack),
and a status message every 5 s.

The simulator is not the bottleneck: every host's messages are encoded once,
with ``fleetscope.bus.messages`` exactly as an agent encodes them (checked byte
for byte against ``messages.encode``), and cut around the two timestamps. Each
second the publisher joins one buffer of NATS ``PUB`` frames with the current
time patched in (one ``bytes.join``, no per-message encoding) and writes it to
nats-server with one ``sendall`` (the NATS text protocol on a plain socket:
nats-py would cost a few microseconds of Python per message). What the
simulator, nats-server, the API, this process and everything else on the
machine cost is measured from ``/proc`` over the measured seconds and printed:
the machine's budget.

This process listens to the finals the aggregators publish and measures the
end-to-end delay of each: from the end of the second it covers to its arrival
here (the agents' tick, the bus, the aggregator's merge, finalisation and
publication). A fleet size is held when the p99 delay is under 2 s and values
are 100 % complete: every instrumentation's every measured slot arrived, and
its first final counts every host. Fleet sizes are tried in order until one is
not held. Per aggregator: the bytes and messages nats-server delivered to it
(``/connz``: ``out_bytes``/``out_msgs`` of its connection, out from the
server's side), its CPU (``/proc/<pid>/stat``) and RSS, the instrumentations
it owns (leases in the store; how many are heatmaps) and the partials it
merges per second (hosts x owned instrumentations).

    .venv/bin/python bench/fleet.py                    # 1, 2 and 4 aggregators: 5-6 minutes here
    .venv/bin/python bench/fleet.py --aggregators 1 --hosts 500,1000,1500 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import multiprocessing
import os
import random
import select
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
from typing import NamedTuple

import httpx
import msgspec
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
VARIANTS = 4  # values differ between hosts and ticks: host i sends variant (i + tick) % VARIANTS
PHASES = math.lcm(VARIANTS, STATUS_EVERY)  # the publisher's frame lists repeat every PHASES seconds
SEND_AT = 0.005  # seconds after each wall-clock second that the simulated agents send
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")

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


def _pack(x: int | float) -> bytes:
    return msgspec.msgpack.encode(x)


def _cut(data: bytes, stamp: bytes, start: int = 0) -> tuple[bytes, bytes]:
    """``data`` split around the first ``stamp`` at or after ``start`` (the stamp dropped)."""
    i = data.index(stamp, start)
    return data[:i], data[i + len(stamp):]


def _pub(subject: str, size: int) -> bytes:
    """The NATS protocol line in front of a payload of ``size`` bytes."""
    return f"PUB {subject} {size}\r\n".encode()


class Replay:
    """Every simulated host's batch and status, encoded once as an agent encodes them and kept
    as NATS ``PUB`` frames cut around their timestamps; :meth:`frames` joins one second's frames
    with the current time in.

    A batch is ``head(host) + time + mid + sent + tail(variant)``: msgspec writes a Batch's fields
    in order (host, time, sent, partials), the partials do not depend on the host, and an epoch
    second (msgpack uint32) and a float (float64) have a fixed size, so the frames' lengths do
    not change. A status is ``head(host) + time + tail(host)``.
    """

    def __init__(self, n_hosts: int, inst: list[tuple[int, str]], seed: int) -> None:
        rng = random.Random(seed)
        hosts = [f"sim-{i}" for i in range(n_hosts)]
        self.n_hosts = n_hosts
        self.variants = [host_partials(inst, rng) for _ in range(VARIANTS)]
        self.running = [inst_id for inst_id, _ in inst]
        t0 = int(time.time())
        s0 = t0 + 0.5
        self.time_size, self.sent_size = len(_pack(t0)), len(_pack(s0))
        self.mid: bytes | None = None
        tails = []
        for partials in self.variants:
            head, rest = _cut(m.encode(m.Batch(hosts[0], t0, s0, partials)), _pack(t0))
            mid, tail = _cut(rest, _pack(s0))
            assert self.mid in (None, mid)
            self.mid = mid
            tails.append(tail + b"\r\n")
        # Per host: the frame start (PUB line + head) of each variant, and of its status.
        batch_starts: list[list[bytes]] = []
        status_parts: list[tuple[bytes, bytes]] = []
        for host in hosts:
            head, rest = _cut(m.encode(m.Batch(host, t0, s0, [])), _pack(t0))
            assert _cut(rest, _pack(s0))[0] == self.mid
            size = len(head) + self.time_size + len(self.mid) + self.sent_size
            batch_starts.append([_pub(m.data_subject(host), size + len(t) - 2) + head for t in tails])
            status = m.encode(m.AgentStatus(host, __version__, s0, running=self.running))
            shead, stail = _cut(status, _pack(s0))
            status_parts.append((_pub(m.status_subject(host), len(status)) + shead, stail + b"\r\n"))
        # One list of pieces per phase; the timestamps' places hold None until sent. Statuses
        # first (their time is the closest to the send), then every host's batch.
        self.phases: list[tuple[list, int]] = []
        for k in range(PHASES):
            pieces: list = []
            statuses = [i for i in range(n_hosts) if (i + k) % STATUS_EVERY == 0]
            for i in statuses:
                pieces += [status_parts[i][0], None, status_parts[i][1]]
            for i in range(n_hosts):
                v = (i + k) % VARIANTS
                pieces += [batch_starts[i][v], None, tails[v]]
            self.phases.append((pieces, len(statuses)))
        self.hosts = hosts

    def frames(self, second: int, sent: float) -> tuple[bytes, int]:
        """Every frame of ``second`` (batches of the tick ``second - 1``, sent at ``sent``), and
        how many messages they are."""
        pieces, n_status = self.phases[second % PHASES]
        now = _pack(sent)
        stamp = _pack(second - 1) + self.mid + now
        assert len(now) == self.sent_size and len(stamp) == self.time_size + len(self.mid) + len(now)
        pieces[1:3 * n_status:3] = [now] * n_status
        pieces[3 * n_status + 1::3] = [stamp] * self.n_hosts
        return b"".join(pieces), n_status + self.n_hosts

    def check(self, second: int, sent: float) -> None:
        """The replayed frames are byte for byte what messages.encode gives for the same
        messages (a sample of hosts), and parse as NATS frames of the right length."""
        data, _ = self.frames(second, sent)
        n_status = self.phases[second % PHASES][1]
        payloads, at = [], 0
        while at < len(data):
            end = data.index(b"\r\n", at)
            size = int(data[at:end].rsplit(b" ", 1)[1])
            payloads.append(data[end + 2:end + 2 + size])
            assert data[end + 2 + size:end + 4 + size] == b"\r\n"
            at = end + 4 + size
        assert len(payloads) == n_status + self.n_hosts
        for i in {0, self.n_hosts // 2, self.n_hosts - 1}:
            v = (i + second) % VARIANTS
            want = m.encode(m.Batch(self.hosts[i], second - 1, sent, self.variants[v]))
            assert payloads[n_status + i] == want, f"replayed batch of {self.hosts[i]} differs"
            assert m.decode(want, m.RawBatch).time == second - 1
        if n_status:
            j = next(i for i in range(self.n_hosts) if (i + second) % STATUS_EVERY == 0)
            want = m.encode(m.AgentStatus(self.hosts[j], __version__, sent, running=self.running))
            assert payloads[0] == want, "replayed status differs"


def _nats_connect(port: int, name: str) -> socket.socket:
    """A plain NATS client connection (the text protocol): INFO, CONNECT, PING/PONG."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = b""
    while b"\r\n" not in buf:
        buf += sock.recv(4096)
    assert buf.startswith(b"INFO "), buf[:80]
    options = {"verbose": False, "pedantic": False, "name": name, "lang": "python-raw",
               "version": __version__, "protocol": 1}
    sock.sendall(b"CONNECT " + msgspec.json.encode(options) + b"\r\nPING\r\n")
    buf = b""
    while b"PONG\r\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk or b"-ERR" in chunk:
            raise SystemExit(f"nats-server refused the publisher: {chunk!r}")
        buf += chunk
    return sock


def _answer_pings(sock: socket.socket) -> None:
    """nats-server PINGs every 2 minutes and drops a client that does not answer."""
    while select.select([sock], [], [], 0)[0]:
        data = sock.recv(65536)
        if not data:
            raise SystemExit("nats-server closed the publisher's connection")
        if b"-ERR" in data:
            print(f"# publisher: {data.decode(errors='replace').strip()}", file=sys.stderr)
        for _ in range(data.count(b"PING\r\n")):
            sock.sendall(b"PONG\r\n")


def publish(port: int, n_hosts: int, inst: list[tuple[int, str]], seed: int, conn) -> None:
    """The simulator (a process of its own): sends "ready" once built and connected, receives
    the last second to send, sends every host's frames each second until then, and at the end
    a report of what it did."""
    replay = Replay(n_hosts, inst, seed)
    replay.check(int(time.time()) + 1, time.time())
    sock = _nats_connect(port, "bench publisher")
    conn.send("ready")
    until = conn.recv()
    msgs = nbytes = skipped = 0
    worst_late = worst_send = 0.0
    second = int(time.time()) + 1
    while second <= until:
        time.sleep(max(0.0, second + SEND_AT - time.time()))
        start = time.time()
        data, n = replay.frames(second, start)
        sock.sendall(data)
        done = time.time()
        msgs += n
        nbytes += len(data)
        worst_late = max(worst_late, start - second - SEND_AT)
        worst_send = max(worst_send, done - start)
        _answer_pings(sock)
        nxt = int(time.time()) + 1
        skipped += max(0, nxt - second - 1)  # fell a whole second behind: those ticks are lost
        second = nxt
    conn.send({"msgs": msgs, "bytes": nbytes, "skipped": skipped, "late": worst_late, "send": worst_send})
    conn.recv()  # the connection stays until measured (nats-server forgets closed ones)
    sock.close()


# -- what processes cost, from /proc --------------------------------------------------------------

def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (every thread), from /proc/<pid>/stat (proc(5): fields 14, 15)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE_SIZE


def machine_seconds() -> tuple[float, float]:
    """Busy and idle CPU seconds of the whole machine so far (/proc/stat, every CPU)."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:9]]
    idle = ticks[3] + ticks[4]  # idle + iowait
    return (sum(ticks) - idle) / CLK_TCK, idle / CLK_TCK


class Sample(NamedTuple):
    at: float  # time.monotonic()
    cpu: dict[str, float]  # process name -> CPU seconds so far
    conns: dict[int, dict]  # client port -> /connz entry
    machine: tuple[float, float]
    slow_consumers: int


# -- the fleet under test -----------------------------------------------------------------------

class Fleet:
    """nats-server, a PostgreSQL database, an API server and ``n_aggregators`` aggregators."""

    def __init__(self, n_aggregators: int, work: Path) -> None:
        self.work = work
        self.port, self.monitor_port, self.api_port = free_port(), free_port(), free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.monitor = f"http://127.0.0.1:{self.monitor_port}"
        self.api = f"http://127.0.0.1:{self.api_port}"
        self.db = f"fleetscope_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self.store = ADMIN_URL.rsplit("/", 1)[0] + "/" + self.db
        self.names = [f"bench{i}" for i in range(n_aggregators)]
        self.procs: list[subprocess.Popen] = []
        self.pids: dict[str, int] = {}  # process name in the output -> pid

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.work / f"{name}.log", "wb")  # noqa: SIM115 - the child keeps it
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        self.pids[name] = proc.pid
        return proc

    def start(self) -> None:
        import psycopg

        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{self.db}"')
        nats = shutil.which("nats-server") or "/usr/sbin/nats-server"
        self._spawn("nats-server", [nats, "-a", "127.0.0.1", "-p", str(self.port),
                                    "-m", str(self.monitor_port)])
        bus = ["--bus", self.url, "--store", self.store]
        self.token = subprocess.run([str(EXE), "token", "create", "bench", "--role", "admin", "--store",
                                     self.store], capture_output=True, text=True, check=True).stdout.strip()
        self._spawn("api", [str(EXE), "api", *bus, "--port", str(self.api_port)])
        for name in self.names:
            self._spawn(name, [str(EXE), "aggregator", *bus, "--name", name])
        for _ in range(300):
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

    def leases(self) -> dict[str, set[int]]:
        """Who holds which instrumentation now (the leases in the store)."""
        import psycopg

        with psycopg.connect(self.store, autocommit=True) as db:
            rows = db.execute("SELECT owner, inst_id FROM leases WHERE expires > %s", (time.time(),))
            out: dict[str, set[int]] = {name: set() for name in self.names}
            for owner, inst_id in rows:
                out.setdefault(owner, set()).add(int(inst_id))
        return out

    def settle(self, n_inst: int, timeout: float = 60) -> dict[str, set[int]]:
        """Wait until every instrumentation is held and each aggregator holds its fair share."""
        fair = -(-n_inst // len(self.names))
        deadline = time.time() + timeout
        while time.time() < deadline:
            held = self.leases()
            counts = [len(held[name]) for name in self.names]
            if sum(counts) == n_inst and len(held) == len(self.names) and max(counts) <= fair \
                    and min(counts) >= n_inst // len(self.names):
                return held
            time.sleep(0.5)
        raise SystemExit(f"leases did not settle: {held}; see {self.work}")

    def nats_ports(self) -> dict[str, int]:
        """Each aggregator's client port on its NATS connection (to find it in /connz)."""
        out = {}
        for name in self.names:
            for c in psutil.Process(self.pids[name]).net_connections(kind="tcp"):
                if c.raddr and c.raddr.port == self.port:
                    out[name] = c.laddr.port
        return out

    def sample(self, extra: dict[str, int]) -> Sample:
        connz = httpx.get(self.monitor + "/connz", params={"limit": 4096}, timeout=5).json()
        varz = httpx.get(self.monitor + "/varz", timeout=5).json()
        pids = {**self.pids, **extra}
        return Sample(time.monotonic(), {name: cpu_seconds(pid) for name, pid in pids.items()},
                      {c["port"]: c for c in connz.get("connections", [])}, machine_seconds(),
                      varz.get("slow_consumers", 0))

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

async def listen_finals(url: str, first: int, last: int, finals: dict[tuple[int, int], tuple[float, int]],
                        expected: int, ready: threading.Event) -> None:
    """The delay and nsources of the first final of every instrumentation and second
    ``first..last`` (later finals of a slot, revised or from a second owner, are ignored), until
    all ``expected`` came or the last could not be in time any more."""
    bus = NatsBus(NatsOptions(url, name="bench listener"))
    await bus.connect()

    async def on_final(msg) -> None:
        point = m.decode(msg.data, m.FinalPoint)
        key = (point.id, point.start_time)
        if first <= point.start_time <= last and key not in finals:
            finals[key] = (time.time() - (point.start_time + point.duration), point.nsources)

    await bus.subscribe(f"{m.FINAL}.>", on_final)
    await bus.nc.flush()
    ready.set()
    while time.time() < last + 1 + TARGET_P99 * 2 and len(finals) < expected:
        await asyncio.sleep(0.2)
    await bus.close()


class AggregatorCost(NamedTuple):
    name: str
    owned: int  # instrumentations it holds
    heatmaps: int  # of which breakdowns of histograms (the costly ones)
    recv_bytes: float  # per second, delivered to it by nats-server
    recv_msgs: float  # per second
    partials: float  # per second merged: hosts x owned instrumentations
    cpu: float  # % of one core
    rss_mb: float


class Result(NamedTuple):
    hosts: int
    aggregators: int
    finals: int
    expected_finals: int
    complete: float  # share of the expected finals that arrived with nsources == hosts
    p50: float
    p99: float
    per_aggregator: list[AggregatorCost]
    budget: dict[str, float]  # % of one core: simulator, nats-server, api, bench, aggregators, other, idle
    published_bytes: float  # per second, into nats-server from the simulator
    published_msgs: float
    slow_consumers: int
    moved: bool  # instrumentations changed hands during the measured seconds
    sim: dict  # the simulator's own report

    @property
    def held(self) -> bool:
        return (self.p99 < TARGET_P99 and self.complete == 1.0 and not self.sim["skipped"]
                and self.slow_consumers == 0)


def trial(n_hosts: int, n_aggregators: int, seconds: int, warmup: int, specs: list[dict]) -> Result:
    with tempfile.TemporaryDirectory(prefix="fleetscope-bench-") as tmp, ExitStack() as stack:
        fleet = Fleet(n_aggregators, Path(tmp))
        stack.callback(fleet.stop)
        fleet.start()
        inst = asyncio.run(fleet.announce_and_create(specs))
        fleet.settle(len(inst))  # the aggregators took their shares (leases)
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        sim = ctx.Process(target=publish, args=(fleet.port, n_hosts, inst, n_hosts, child))
        sim.start()
        stack.callback(sim.kill)
        if not parent.poll(120) or parent.recv() != "ready":
            raise SystemExit("the simulator did not start")
        first = int(time.time()) + warmup + 1  # the first measured slot
        last = first + seconds - 1
        parent.send(last + 1)  # the batches of `last` are sent at last + 1 + SEND_AT
        finals: dict[tuple[int, int], tuple[float, int]] = {}
        ready = threading.Event()
        listener = threading.Thread(target=asyncio.run, args=(
            listen_finals(fleet.url, first, last, finals, len(inst) * seconds, ready),))
        listener.start()
        ready.wait(10)
        # Measured: the sends of the ticks first..last (at first + 1 + SEND_AT ...), in a window of
        # whole seconds that starts and ends mid-second, so each edge cuts the same phase of the
        # periodic load.
        ports = fleet.nats_ports()
        extra = {"simulator": sim.pid, "bench": os.getpid()}
        owners0 = fleet.leases()
        time.sleep(max(0.0, first + 0.5 - time.time()))
        s0 = fleet.sample(extra)
        time.sleep(max(0.0, last + 1.5 - time.time()))
        s1 = fleet.sample(extra)
        owners1 = fleet.leases()
        rss = {name: rss_bytes(fleet.pids[name]) / 1e6 for name in fleet.names}
        listener.join()
        report = parent.recv() if parent.poll(30) else {"skipped": -1}
        parent.send("close")
        sim.join(10)

        elapsed = s1.at - s0.at

        def pct(name: str) -> float:
            return 100 * (s1.cpu[name] - s0.cpu[name]) / elapsed

        def rate(port: int | None, key: str) -> float:
            if port not in s0.conns or port not in s1.conns:
                return math.nan  # reconnected (a slow consumer, say): not measured
            return (s1.conns[port][key] - s0.conns[port][key]) / elapsed

        heavy = {inst_id for inst_id, shape in inst if shape == values.DISCRETE_HISTOGRAM}
        costs = [AggregatorCost(name, len(owners1[name]), len(owners1[name] & heavy),
                                rate(ports.get(name), "out_bytes"), rate(ports.get(name), "out_msgs"),
                                n_hosts * len(owners1[name]), pct(name), rss[name]) for name in fleet.names]
        pub = next((p for p, c in s1.conns.items() if c.get("name") == "bench publisher"), None)
        busy = (s1.machine[0] - s0.machine[0]) / elapsed * 100
        budget = {name: pct(name) for name in ("simulator", "nats-server", "api", "bench")}
        budget["aggregators"] = sum(c.cpu for c in costs)
        budget["other"] = busy - sum(budget.values())
        budget["idle"] = (s1.machine[1] - s0.machine[1]) / elapsed * 100

        delays = sorted(d for d, _ in finals.values())
        expected = len(inst) * seconds
        complete = sum(1 for _, n in finals.values() if n == n_hosts) / expected
        return Result(n_hosts, n_aggregators, len(finals), expected, complete,
                      _pct(delays, 0.50), _pct(delays, 0.99), costs, budget,
                      rate(pub, "in_bytes"), rate(pub, "in_msgs"),
                      s1.slow_consumers, owners0 != owners1, report)


def _pct(xs: list[float], q: float) -> float:
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else math.inf


# -- output ---------------------------------------------------------------------------------------

def print_trial(r: Result) -> None:
    b = r.budget
    flags = [f"{r.slow_consumers} slow consumers"] * bool(r.slow_consumers)
    flags += ["leases moved while measured"] * r.moved
    if r.sim.get("skipped", 0) < 0:
        flags.append("no report from the simulator")
    elif r.sim.get("skipped"):
        flags.append(f"nats-server held the publisher back (a send took {r.sim['send']:.2f} s): "
                     f"{r.sim['skipped']} s not sent")
    print(f"{r.aggregators:>4} {r.hosts:>6} {r.p50:>6.2f} {r.p99:>6.2f} {r.complete:>8.1%} "
          f"{r.finals:>4}/{r.expected_finals:<4} {'yes' if r.held else 'no':>4}  "
          f"{b['simulator']:>5.1f} {b['nats-server']:>5.1f} {b['api']:>5.1f} {b['bench']:>5.1f} "
          f"{b['aggregators']:>6.1f} {b['other']:>5.1f} {b['idle']:>5.1f}  "
          f"{r.published_bytes / 1e6:>6.1f} {r.sim.get('send', math.nan):>5.2f}"
          + (f"  ({'; '.join(flags)})" if flags else ""), flush=True)
    for c in r.per_aggregator:
        owned = f"{c.owned} ({c.heatmaps})"
        print(f"{'':>11} {c.name:>8} {owned:>7} {c.recv_bytes / 1e6:>9.2f} {c.recv_msgs:>9,.0f} "
              f"{c.partials:>9,} {c.cpu:>6.1f} {c.rss_mb:>7.1f}", flush=True)


def print_summary(best: dict[int, Result | None], all_results: list[Result]) -> None:
    print("\n# largest fleet held at 1 Hz (p99 < 2 s, 100 % complete), and each aggregator's cost there")
    print(f"{'aggs':>4} {'hosts':>6} {'p99 s':>6}  {'MB/s in per agg':>16} {'msgs/s in per agg':>18} "
          f"{'CPU % per agg':>14} {'RSS MB per agg':>15}")
    for n, r in best.items():
        if r is None:
            print(f"{n:>4} {'none':>6}")
            continue
        col = r.per_aggregator
        print(f"{n:>4} {r.hosts:>6} {r.p99:>6.2f}  {_span([c.recv_bytes / 1e6 for c in col], '.2f'):>16} "
              f"{_span([c.recv_msgs for c in col], ',.0f'):>18} {_span([c.cpu for c in col], '.1f'):>14} "
              f"{_span([c.rss_mb for c in col], '.0f'):>15}")
    # The same fleet under every aggregator count: does the cost per aggregator fall as 1/N?
    held = set.intersection(*({r.hosts for r in all_results if r.aggregators == n and r.held} for n in best))
    common = held or set.intersection(*({r.hosts for r in all_results if r.aggregators == n} for n in best))
    if common:
        hosts = max(common)
        print(f"\n# one fleet of {hosts} hosts: what each aggregator receives and spends (1/N would be "
              "the goal of #15)")
        for r in all_results:
            if r.hosts == hosts:
                col = r.per_aggregator
                mb = sum(c.recv_bytes for c in col) / len(col) / 1e6
                print(f"{r.aggregators:>4} aggregators: {mb:>6.2f} MB/s and "
                      f"{sum(c.recv_msgs for c in col) / len(col):>6,.0f} msgs/s in, "
                      f"{sum(c.cpu for c in col) / len(col):>5.1f} % CPU each (mean); "
                      f"{sum(c.cpu for c in col):>5.1f} % together; held: {'yes' if r.held else 'no'}")


def _span(xs: list[float], fmt: str) -> str:
    lo, hi = min(xs), max(xs)
    return format(lo, fmt) if format(lo, fmt) == format(hi, fmt) else f"{lo:{fmt}}-{hi:{fmt}}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--aggregators", default="1,2,4", help="aggregator counts to try (default 1,2,4)")
    ap.add_argument("--hosts", default="1000,1500,2000,2500,3000",
                    help="simulated agents, tried in order until one does not hold")
    ap.add_argument("--seconds", type=int, default=15, help="measured seconds per trial")
    ap.add_argument("--warmup", type=int, default=5, help="seconds of traffic before measuring")
    ap.add_argument("--heatmaps", type=int, default=2, choices=range(11),
                    help="how many of the 10 latency histograms are heatmaps of 20 routes")
    args = ap.parse_args()
    specs = instrumentations(args.heatmaps)
    shapes = {"cpu": values.DISCRETE, "requests": values.HISTOGRAM}
    sample = host_partials([(i, values.DISCRETE_HISTOGRAM if len(spec["decomposition"]) == 2
                             else shapes[spec["stat"]]) for i, spec in enumerate(specs, 1)], random.Random(0))
    batch_kb = len(m.encode(m.Batch("sim-0", int(time.time()), time.time(), sample))) / 1e3
    logging.getLogger("fleetscope").setLevel(logging.ERROR)  # the bench's own bus clients closing
    print(f"# {len(specs)} instrumentations per host: 10 breakdowns of {KEYS} keys, {10 - args.heatmaps} "
          f"histograms, {args.heatmaps} heatmaps of {KEYS} keys; {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.1f}; a batch is {batch_kb:.1f} KB; {args.seconds} s measured after "
          f"{args.warmup} s")
    print(f"# budget: CPU in % of one core (the machine is {100 * (os.cpu_count() or 1)}): sim = the one "
          "publishing process, nats = nats-server, api, bench = this process (listener), aggs = every "
          "aggregator, other = the rest of the machine's busy time, idle; pub MB/s = into nats-server, "
          "send s = the longest second's sendall")
    print(f"{'aggs':>4} {'hosts':>6} {'p50 s':>6} {'p99 s':>6} {'complete':>8} {'finals':>9} {'held':>4}  "
          f"{'sim':>5} {'nats':>5} {'api':>5} {'bench':>5} {'aggs':>6} {'other':>5} {'idle':>5}  "
          f"{'pub MB/s':>6} {'send s':>5}")
    print(f"{'':>11} {'per agg':>8} {'insts (heatmaps)':>7} {'MB/s in':>9} {'msgs/s in':>9} "
          f"{'partials/s':>9} {'CPU %':>6} {'RSS MB':>7}")
    results: list[Result] = []
    best: dict[int, Result | None] = {}
    for n_agg in (int(x) for x in args.aggregators.split(",")):
        best[n_agg] = None
        for n in (int(x) for x in args.hosts.split(",")):
            r = trial(n, n_agg, args.seconds, args.warmup, specs)
            results.append(r)
            print_trial(r)
            if not r.held:
                break
            best[n_agg] = r
    print_summary(best, results)


if __name__ == "__main__":
    main()
