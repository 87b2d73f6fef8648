"""API latency: p50/p99 of value and heatmap requests over the real-time window.

Starts a real `fleetscope serve` on a free port, lets its default
instrumentations fill the window, then times sequential requests from one
client (one connection, keep-alive), as a dashboard would make them.

    .venv/bin/python bench/api_latency.py                # fill 60 s, 200 requests per kind
    .venv/bin/python bench/api_latency.py --fill 300 --requests 500
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import httpx
from serving import start_server

ROOT = Path(__file__).resolve().parent.parent
API = "/api/v1"




def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def time_requests(client: httpx.Client, path: str, params: dict, n: int) -> list[float]:
    client.get(path, params=params).raise_for_status()  # warm
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        client.get(path, params=params).raise_for_status()
        samples.append((time.perf_counter() - t0) * 1000)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fill", type=int, default=60, help="seconds of data to collect first")
    parser.add_argument("--requests", type=int, default=200, help="requests per kind")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir:
        proc, url = start_server(data_dir)
        try:
            time.sleep(args.fill)
            with httpx.Client(base_url=url, timeout=10) as c:
                insts = {(i["metric"], tuple(i["decomposition"])): i["id"]
                         for i in c.get(f"{API}/instrumentations").json()["instrumentations"]}
                cpu = insts[("cpu.usage", ("mode",))]
                procs = insts[("proc.cpu", ("execname",))]
                heat = insts[("proc.cpu", ("utilization",))]
                n = min(args.fill, 60)
                kinds = [
                    ("value, latest (cpu by mode)", f"{API}/instrumentations/{cpu}/value", {}),
                    (f"value, {n} points (cpu by mode)", f"{API}/instrumentations/{cpu}/value",
                     {"ndatapoints": n}),
                    (f"value, {n} points (proc cpu by execname)", f"{API}/instrumentations/{procs}/value",
                     {"ndatapoints": n}),
                    (f"heatmap JSON, {n} s x 100 buckets", f"{API}/instrumentations/{heat}/heatmap",
                     {"duration": n, "nbuckets": 100}),
                    (f"heatmap PNG, {n} s, 600x200", f"{API}/instrumentations/{heat}/heatmap",
                     {"duration": n, "format": "png", "width": 600, "height": 200}),
                    (f"percentiles, {n} points", f"{API}/instrumentations/{heat}/percentiles",
                     {"ndatapoints": n, "q": "0.5,0.9,0.99"}),
                ]
                print(f"API latency over the real-time window ({args.fill} s of data, "
                      f"{args.requests} sequential requests each; target p50 < 20 ms)")
                print(f"{'request':<42} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8}")
                for label, path, params in kinds:
                    s = time_requests(c, path, params, args.requests)
                    print(f"{label:<42} {statistics.median(s):>8.2f} {percentile(s, 0.99):>8.2f} "
                          f"{statistics.fmean(s):>8.2f}")
        finally:
            proc.terminate()
            proc.wait()


if __name__ == "__main__":
    main()
