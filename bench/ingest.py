"""How much application data one fleetscope process absorbs on one core.

Starts a real ``fleetscope serve --statsd ... --otlp ...`` pinned to core 1
(``taskset -c 1``: its agent, aggregator, store and API share that one core, so
the figure is conservative for ``fleetscope agent``, which does less), with
senders pinned to core 0, and counts what the process itself says it accepted:
its ``fleetscope.statsd_received`` / ``fleetscope.otlp_received`` counters, read
through its API. Instrumentations that use the data run meanwhile (a latency
heatmap and a breakdown by route per protocol), so it is evaluated as in
production.

* StatsD: real UDP datagrams of 20 DogStatsD lines (60 % tagged timers, 30 %
  sampled counters, 10 % gauges, 20 routes), offered at rising rates; for each
  rate the lines the process accepted, the loss (offered - accepted, including
  what the kernel dropped at the socket, shown apart), and the process's CPU.
  The sustained rate is the highest one with under 0.1 % loss.
* OTLP: real OTLP/HTTP protobuf requests of 100 data points (exponential
  histograms of 20 buckets at scale 3, and sums) from posting processes in a
  closed loop: HTTP pushes back, so nothing is lost; the figure is the points
  per second accepted at saturation.

    .venv/bin/python bench/ingest.py [--seconds 5] [--rates 25000,50000,...] [--in-process]

``--in-process`` adds the parse/decode + accumulate figures of the sources alone
(no process, no network), as a profile of the code path.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2 as pb

from fleetscope.sources.otlp import OtlpSource
from fleetscope.sources.statsd import StatsdSource

ROUTES = [f"/api/v1/r{i}" for i in range(20)]
API = "/api/v1"
SERVER_CORE, SENDER_CORE = 1, 0


def statsd_packets(n: int = 200, lines: int = 20) -> list[bytes]:
    """Realistic DogStatsD datagrams: 60 % timers, 30 % counters, 10 % gauges, tagged."""
    rnd = random.Random(1)
    out = []
    for _ in range(n):
        batch = []
        for _ in range(lines):
            r = rnd.random()
            route = rnd.choice(ROUTES)
            if r < 0.6:
                batch.append(f"http.latency:{rnd.lognormvariate(3, 1):.2f}|ms|#route:{route},status:200")
            elif r < 0.9:
                batch.append(f"http.requests:1|c|@0.5|#route:{route}")
            else:
                batch.append(f"queue.depth:{rnd.randint(0, 50)}|g|#queue:q{rnd.randint(0, 4)}")
        out.append("\n".join(batch).encode())
    return out


def otlp_request(points: int = 100, series: int = 20, seed: int = 0) -> bytes:
    """An export request as the SDK sends it: exponential histograms and sums, attributes."""
    rnd = random.Random(seed)
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    rm.resource.attributes.append(KeyValue(key="service.name", value=AnyValue(string_value="bench")))
    sm = rm.scope_metrics.add()
    lat = sm.metrics.add(name="http.server.duration", unit="ms")
    lat.exponential_histogram.aggregation_temporality = pb.AGGREGATION_TEMPORALITY_DELTA
    hits = sm.metrics.add(name="http.server.requests")
    hits.sum.is_monotonic = True
    hits.sum.aggregation_temporality = pb.AGGREGATION_TEMPORALITY_DELTA
    for i in range(points // 2):
        attrs = [KeyValue(key="http.route", value=AnyValue(string_value=ROUTES[i % series]))]
        dp = lat.exponential_histogram.data_points.add(scale=3, count=40, attributes=attrs)
        dp.positive.offset = rnd.randint(20, 40)
        dp.positive.bucket_counts.extend(rnd.randint(0, 3) for _ in range(20))
        hits.sum.data_points.add(as_int=rnd.randint(1, 100), attributes=attrs)
    return req.SerializeToString()


# -- the process under test ---------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Process:
    """A `fleetscope serve` pinned to one core, with StatsD and OTLP receivers."""

    def __init__(self, workdir: Path) -> None:
        self.port, self.statsd, self.otlp = _free_port(), _free_port(), _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        exe = shutil.which("fleetscope", path=str(Path(sys.executable).parent)) or "fleetscope"
        cmd = ["taskset", "-c", str(SERVER_CORE), exe, "serve", "--port", str(self.port),
               "--data-dir", str(workdir), "--statsd", f"127.0.0.1:{self.statsd}",
               "--otlp", f"127.0.0.1:{self.otlp}", "--no-auth"]
        self.log = open(workdir / "serve.log", "wb")  # noqa: SIM115 - the child writes to it
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        self.client = httpx.Client(base_url=self.url, timeout=10)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if self.client.get("/healthz").status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError((workdir / "serve.log").read_text()[-2000:])

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process so far."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def instrument(self, spec: dict) -> int:
        resp = self.client.post(f"{API}/instrumentations", json=spec)
        resp.raise_for_status()
        return resp.json()["id"]

    def total(self, inst: int, start: float, end: float) -> float:
        """The sum of an instrumentation's per-second values in ``[start, end)``."""
        points = self.client.get(f"{API}/instrumentations/{inst}/value",
                                 params={"start_time": int(start), "end_time": int(end) + 1}).json()
        return sum(p["value"] for p in points if isinstance(p["value"], (int, float)))

    def wait_for_metrics(self, names: set[str]) -> None:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            known = {m["name"] for m in self.client.get(f"{API}/metrics").json()["metrics"]}
            if names <= known:
                return
            time.sleep(0.2)
        raise RuntimeError(f"metrics not discovered: {names}")

    def stop(self) -> None:
        self.client.close()
        self.proc.terminate()
        self.proc.wait(20)
        self.log.close()


def udp_drops(port: int) -> int:
    """The kernel's count of datagrams dropped at the UDP socket bound to ``port``."""
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        f = line.split()
        if int(f[1].split(":")[1], 16) == port:
            return int(f[-1])
    return 0


# -- senders (pinned to core 0) -----------------------------------------------------------------


def _pin() -> None:
    os.sched_setaffinity(0, {SENDER_CORE})


def _udp_sender(port: int, rate: float, seconds: float, sent) -> None:
    """Offer ``rate`` lines per second for ``seconds``, paced every 5 ms."""
    _pin()
    packets = statsd_packets()
    per_packet = packets[0].count(b"\n") + 1
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    start = time.monotonic()
    n = 0
    while (now := time.monotonic()) < start + seconds:
        due = int((now - start) * rate / per_packet)
        while n < due:
            s.sendto(packets[n % len(packets)], ("127.0.0.1", port))
            n += 1
        time.sleep(0.005)
    sent.value = n * per_packet


def _http_poster(url: str, seconds: float, counter, rejected) -> None:
    _pin()
    bodies = [otlp_request(seed=i) for i in range(10)]
    end = time.monotonic() + seconds
    n = bad = 0
    with httpx.Client(timeout=30) as c:
        while time.monotonic() < end:
            r = c.post(url, content=bodies[n % 10], headers={"content-type": "application/x-protobuf"})
            n += 1
            bad += r.status_code != 200 or len(r.content) > 0  # partial_success: something rejected
    with counter.get_lock():
        counter.value += n
    with rejected.get_lock():
        rejected.value += bad


# -- the measurements ---------------------------------------------------------------------------


def statsd_steps(fs: Process, rates: list[float], seconds: float) -> list[tuple]:
    """Per offered rate: (offered/s, accepted/s, loss, kernel-dropped fraction, CPU of the process)."""
    received = fs.instrument({"module": "fleetscope", "stat": "statsd_received"})
    out = []
    for rate in rates:
        sent = multiprocessing.Value("q", 0)
        drops0, cpu0 = udp_drops(fs.statsd), fs.cpu_seconds()
        proc = multiprocessing.Process(target=_udp_sender, args=(fs.statsd, rate, seconds, sent))
        t0 = time.time()
        proc.start()
        proc.join()
        t1 = time.time()
        cpu = (fs.cpu_seconds() - cpu0) / (t1 - t0)
        time.sleep(3.0)  # the last slots become final
        accepted = fs.total(received, t0 - 1, t1 + 2)
        kernel = udp_drops(fs.statsd) - drops0
        offered = max(sent.value, 1)
        out.append((offered / (t1 - t0), accepted / (t1 - t0), 1 - accepted / offered,
                    kernel * 20 / offered, cpu))
        print(f"  offered {offered / (t1 - t0):>9,.0f} lines/s: accepted {accepted / (t1 - t0):>9,.0f}/s, "
              f"loss {1 - accepted / offered:6.2%} (kernel socket drops {kernel * 20 / offered:6.2%}), "
              f"process CPU {cpu:.0%} of a core", flush=True)
        if 1 - accepted / offered > 0.05:
            break
        time.sleep(1.0)
    return out


def otlp_saturation(fs: Process, seconds: float, clients: int = 3) -> tuple[float, float, int]:
    """(points accepted per second, CPU of the process, requests with something rejected)."""
    received = fs.instrument({"module": "fleetscope", "stat": "otlp_received"})
    url = f"http://127.0.0.1:{fs.otlp}/v1/metrics"
    counter, rejected = multiprocessing.Value("q", 0), multiprocessing.Value("q", 0)
    procs = [multiprocessing.Process(target=_http_poster, args=(url, seconds, counter, rejected))
             for _ in range(clients)]
    cpu0, t0 = fs.cpu_seconds(), time.time()
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    t1 = time.time()
    cpu = (fs.cpu_seconds() - cpu0) / (t1 - t0)
    time.sleep(3.0)
    accepted = fs.total(received, t0 - 1, t1 + 2)
    return accepted / (t1 - t0), cpu, rejected.value


def warm_up(fs: Process) -> None:
    """Make the application metrics known, then instrument them as a user would."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for p in statsd_packets(n=50):
        s.sendto(p, ("127.0.0.1", fs.statsd))
    httpx.post(f"http://127.0.0.1:{fs.otlp}/v1/metrics", content=otlp_request(),
               headers={"content-type": "application/x-protobuf"}).raise_for_status()
    fs.wait_for_metrics({"app.http_latency", "app.http_requests", "otel.http_server_duration",
                         "otel.http_server_requests"})
    for spec in ({"module": "app", "stat": "http_latency", "decomposition": ["value"]},
                 {"module": "app", "stat": "http_requests", "decomposition": ["route"]},
                 {"module": "otel", "stat": "http_server_duration", "decomposition": ["value"]},
                 {"module": "otel", "stat": "http_server_requests", "decomposition": ["http_route"]}):
        fs.instrument(spec)


# -- in process (a profile of the code path, not the figure) ------------------------------------


def _tick(src) -> None:
    src.begin_tick(time.time())
    for m in src.metrics():
        src.collect(m.name)


def statsd_in_process(seconds: float) -> float:
    src = StatsdSource()
    packets = statsd_packets()
    lines = sum(p.count(b"\n") + 1 for p in packets)
    n = 0
    start = last = time.process_time()
    while time.process_time() - start < seconds:
        for p in packets:
            src.ingest(p)
        n += lines
        if time.process_time() - last >= 1.0:
            _tick(src)
            last = time.process_time()
    return n / (time.process_time() - start)


def otlp_in_process(seconds: float) -> float:
    src = OtlpSource()
    bodies = [otlp_request(seed=i) for i in range(10)]
    n = 0
    start = last = time.process_time()
    while time.process_time() - start < seconds:
        for b in bodies:
            n += src.ingest_request(b, "application/x-protobuf").accepted
        if time.process_time() - last >= 1.0:
            _tick(src)
            last = time.process_time()
    return n / (time.process_time() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="length of each step")
    ap.add_argument("--rates", default="25000,50000,75000,100000,125000,150000,200000,300000",
                    help="offered StatsD lines per second, in steps")
    ap.add_argument("--clients", type=int, default=3, help="OTLP posting processes")
    ap.add_argument("--in-process", action="store_true", help="also the sources alone, in process")
    args = ap.parse_args()
    if len(os.sched_getaffinity(0)) < 2 or not shutil.which("taskset"):
        sys.exit("needs two cores and taskset (util-linux)")
    with tempfile.TemporaryDirectory() as tmp:
        fs = Process(Path(tmp))
        try:
            warm_up(fs)
            time.sleep(2.0)
            print(f"StatsD over UDP into one `fleetscope serve` on core {SERVER_CORE} "
                  f"(sender on core {SENDER_CORE}), {args.seconds:g} s per step:")
            steps = statsd_steps(fs, [float(r) for r in args.rates.split(",")], args.seconds)
            kept = [s for s in steps if s[2] < 0.001]
            best = max(kept, key=lambda s: s[1]) if kept else None
            peak = max(steps, key=lambda s: s[1])
            print("StatsD sustained (loss < 0.1 %): "
                  + (f"{best[1]:,.0f} lines/s at {best[4]:.0%} of a core" if best else "none of the rates")
                  + f"; peak accepted {peak[1]:,.0f} lines/s ({peak[2]:.1%} lost)")
            rate, cpu, rejected = otlp_saturation(fs, args.seconds, args.clients)
            print(f"OTLP/HTTP protobuf, {args.clients} posting processes in a closed loop: "
                  f"{rate:,.0f} data points/s accepted, process CPU {cpu:.0%} of a core, "
                  f"{rejected} requests with rejected points")
        finally:
            fs.stop()
    if args.in_process:
        print(f"in process, StatsD parse + accumulate: {statsd_in_process(args.seconds):,.0f} lines/s")
        print(f"in process, OTLP decode + accumulate: {otlp_in_process(args.seconds):,.0f} data points/s")


if __name__ == "__main__":
    main()
