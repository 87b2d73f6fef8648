"""How much application data one agent process absorbs on one core.

Prints, for StatsD, the lines per second the source parses and accumulates
(in process, and received over real UDP from a sender process, with the loss),
and for OTLP the data points per second it decodes and accumulates (protobuf
requests as the SDK sends them, in process and over real HTTP). Each figure is
taken while a simulated agent ticks once a second (swap + collect of every
metric), as in a running agent.

    .venv/bin/python bench/ingest.py [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import random
import socket
import time

import httpx
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2 as pb

from fleetscope.sources.otlp import OtlpConfig, OtlpSource
from fleetscope.sources.statsd import StatsdConfig, StatsdSource

ROUTES = [f"/api/v1/r{i}" for i in range(20)]


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


def _udp_sender(port: int, seconds: float, sent) -> None:
    packets = statsd_packets()
    per_packet = packets[0].count(b"\n") + 1
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    end = time.monotonic() + seconds
    i = 0
    while time.monotonic() < end:
        s.sendto(packets[i % len(packets)], ("127.0.0.1", port))
        i += 1
    with sent.get_lock():
        sent.value += i * per_packet


def statsd_udp(seconds: float) -> tuple[float, float, float]:
    """(lines received per second, fraction lost, receiver CPU in cores) with a sender
    flooding from another process."""

    async def main() -> tuple[float, float, float]:
        src = StatsdSource(StatsdConfig(port=0))
        await src.start()
        port = src.addresses[0][1]
        sent = multiprocessing.Value("q", 0)
        proc = multiprocessing.Process(target=_udp_sender, args=(port, seconds, sent))
        cpu0 = time.process_time()
        t0 = time.monotonic()
        proc.start()
        while proc.is_alive():
            await asyncio.sleep(1.0)
            _tick(src)
        await asyncio.sleep(0.3)
        cpu = time.process_time() - cpu0
        elapsed = time.monotonic() - t0
        src.close()
        received = src.received
        return received / elapsed, 1 - received / max(sent.value, 1), cpu / elapsed

    return asyncio.run(main())


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


def _http_poster(url: str, seconds: float, counter) -> None:
    bodies = [otlp_request(seed=i) for i in range(10)]
    end = time.monotonic() + seconds
    with httpx.Client() as c:
        i = 0
        while time.monotonic() < end:
            c.post(url, content=bodies[i % 10], headers={"content-type": "application/x-protobuf"})
            i += 1
    with counter.get_lock():
        counter.value += i


def otlp_http(seconds: float, clients: int = 2) -> tuple[float, float]:
    """(data points per second received over HTTP, CPU of the receiving process in cores)."""

    async def main() -> tuple[float, float]:
        src = OtlpSource(OtlpConfig(port=0))
        await src.start()
        url = f"http://127.0.0.1:{src.addresses[0][1]}/v1/metrics"
        counter = multiprocessing.Value("i", 0)
        procs = [multiprocessing.Process(target=_http_poster, args=(url, seconds, counter))
                 for _ in range(clients)]
        cpu0, t0 = time.process_time(), time.monotonic()
        for p in procs:
            p.start()
        while any(p.is_alive() for p in procs):
            await asyncio.sleep(1.0)
            _tick(src)
        cpu, elapsed = time.process_time() - cpu0, time.monotonic() - t0
        src.close()
        return src.received / elapsed, cpu / elapsed

    return asyncio.run(main())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    print(f"StatsD, in process (parse + accumulate):  {statsd_in_process(args.seconds):>10,.0f} lines/s")
    rate, lost, cpu = statsd_udp(args.seconds)
    print(f"StatsD, over UDP from a flooding sender: {rate:>10,.0f} lines/s received "
          f"({lost:.1%} lost, receiver CPU {cpu:.2f} core: {rate / cpu:,.0f} lines per CPU-second)")
    print(f"OTLP, in process (decode + accumulate):  {otlp_in_process(args.seconds):>10,.0f} data points/s")
    rate, cpu = otlp_http(args.seconds)
    print(f"OTLP/HTTP protobuf, 2 posting clients:   {rate:>10,.0f} data points/s received "
          f"(receiver CPU {cpu:.2f} core: {rate / cpu:,.0f} points per CPU-second)")


if __name__ == "__main__":
    main()
