"""API latency: p50/p99 of value and heatmap requests over the real-time window.

Starts a real `fleetscope serve` on a free port, lets its default
instrumentations fill the window, then times sequential requests from one
client (one connection, keep-alive), as a dashboard would make them.

    .venv/bin/python bench/api_latency.py                # fill 60 s, 200 requests per kind
    .venv/bin/python bench/api_latency.py --fill 300 --requests 500
    .venv/bin/python bench/api_latency.py --compare-auth  # the same with --no-auth, then with a token

With ``--compare-auth`` the two runs are one after the other (not side by side, which would
share the cores), and the last table is the difference: what checking a token costs a request.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import httpx
from serving import make_token, start_server

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


def measure(fill: int, requests: int, auth: bool) -> dict[str, list[float]]:
    """The latency samples (ms) per kind of request, from a fresh server (with a token if ``auth``)."""
    with tempfile.TemporaryDirectory() as data_dir:
        proc, url = start_server(data_dir, auth=auth)
        headers = {"authorization": f"Bearer {make_token(data_dir)}"} if auth else {}
        try:
            time.sleep(fill)
            with httpx.Client(base_url=url, timeout=10, headers=headers) as c:
                insts = {(i["metric"], tuple(i["decomposition"])): i["id"]
                         for i in c.get(f"{API}/instrumentations").json()["instrumentations"]}
                cpu = insts[("cpu.usage", ("mode",))]
                procs = insts[("proc.cpu", ("execname",))]
                heat = insts[("proc.cpu", ("utilization",))]
                n = min(fill, 60)
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
                return {label: time_requests(c, path, params, requests) for label, path, params in kinds}
        finally:
            proc.terminate()
            proc.wait()


def report(title: str, runs: dict[str, list[float]]) -> None:
    print(title)
    print(f"{'request':<42} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8}")
    for label, s in runs.items():
        p50, p99, mean = statistics.median(s), percentile(s, 0.99), statistics.fmean(s)
        print(f"{label:<42} {p50:>8.2f} {p99:>8.2f} {mean:>8.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fill", type=int, default=60, help="seconds of data to collect first")
    parser.add_argument("--requests", type=int, default=200, help="requests per kind")
    parser.add_argument("--auth", action="store_true", help="authentication on, requests with a token")
    parser.add_argument("--compare-auth", action="store_true", help="without, then with a token")
    args = parser.parse_args()
    what = f"({args.fill} s of data, {args.requests} sequential requests each; target p50 < 20 ms)"
    modes = [False, True] if args.compare_auth else [args.auth]
    results = {}
    for auth in modes:
        results[auth] = measure(args.fill, args.requests, auth)
        report(f"API latency over the real-time window, {'with a token' if auth else 'no auth'} {what}",
               results[auth])
    if args.compare_auth:
        print("What a token costs (p50 with a token minus p50 without):")
        for label in results[True]:
            extra = statistics.median(results[True][label]) - statistics.median(results[False][label])
            print(f"{label:<42} {extra:>+8.2f} ms")


if __name__ == "__main__":
    main()
