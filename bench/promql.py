"""PromQL: p50/p99 of Grafana's kind of queries, fleetscope beside a real Prometheus 2.42.

Writes 24 h (and 10 minutes, so that the first step's ``[5m]`` is full) of 15 s history
straight into the SQLite store `fleetscope serve --data-dir DIR` opens: ``cpu.usage`` by
``mode`` with 50 keys (``k00``..``k49``) and a distribution, ``disk.latency`` by numeric field
``latency`` (a native histogram; every slot holds about 100 observations over the same 40
buckets, 1 to 32 ms, so that the classic ``le`` series are the same whichever range is read).
The same samples, as fleetscope's mapping gives them (``api/promseries.py``: one sample per
15 s slot at its start, per second: the value divided by 15; the distribution as classic
``_bucket``/``_sum``/``_count`` series), are written as OpenMetrics text and backfilled into a
TSDB with ``promtool tsdb create-blocks-from openmetrics``; Debian's ``prometheus`` serves it.
The store's default instrumentations are not made (the store is marked as having them), so
``fleetscope_cpu_usage`` selects only the benchmark's history on both servers.

Each query is asked over the last hour of the data (step 15 s: fleetscope reads the raw tier)
and over 24 h (step 60 s: fleetscope reads its minute tier, the rollups; Prometheus the 15 s
samples), as Grafana asks it: form-encoded POST to ``query_range``, start and end aligned to
the step; and ``fleetscope_cpu_usage`` as an instant query. Before timing, every query is asked
of both and the answers compared (same series, same timestamps, values within 1e-9 relative);
the 24 h answers, which differ by design, are compared again with Prometheus evaluating the
same expression over per-minute means (:func:`rollup_equivalent`). Prometheus is started with
``--enable-feature=promql-negative-offset`` for that, and only after its first compaction
(a minute after it starts) are the runs timed. Each query is then timed ``--runs`` times after
one warm-up, over one keep-alive connection per server, fleetscope's and Prometheus's runs
alternating; a run lasts until the whole answer is in (httpx asks for gzip as Grafana does:
Prometheus compresses, fleetscope does not), its JSON is not decoded. RSS of both servers
(with children) is read before and after the timed runs.

    .venv/bin/python bench/promql.py              # 30 runs per query
    .venv/bin/python bench/promql.py --runs 100
"""

from __future__ import annotations

import argparse
import math
import os
import random
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import psutil
from serving import free_port, start_server

from fleetscope.api.control import DEFAULTS_KEY
from fleetscope.api.exposition import bound_text
from fleetscope.model import values
from fleetscope.model.histogram import Histogram
from fleetscope.model.metrics import INTERVAL
from fleetscope.model.series import DataPoint
from fleetscope.store.history import History
from fleetscope.store.open import open_store

G = 15  # seconds per slot
SPAN = 86400 + 600  # seconds of history written
N = SPAN // G
KEYS = [f"k{i:02d}" for i in range(50)]
CPU = "fleetscope_cpu_usage"
LAT = "fleetscope_disk_latency_latency"
BASE = 2 ** (1 / 8)  # bucket base of schema 3
LAT_BUCKETS = 40  # (BASE**(i-1), BASE**i] for i in 1..40: 1 to 32 ms
PROM = "/prometheus/api/v1"

QUERIES = [
    ("sum", f"sum({CPU})"),
    ("sum by (mode)", f"sum by (mode) ({CPU})"),
    ("topk(5)", f"topk(5, {CPU})"),
    ("avg_over_time [5m]", f"avg_over_time({CPU}[5m])"),
    ("sum by (mode) (rate [5m])", f"sum by (mode) (rate({CPU}[5m]))"),
    ("histogram_quantile(0.99)", f"histogram_quantile(0.99, sum by (le) ({LAT}_bucket))"),
]
INSTANT = ("instant: 50 series", CPU)


# -- data -------------------------------------------------------------------------------------


def history(t0: int) -> tuple[list[DataPoint], list[DataPoint]]:
    """The slots of ``cpu.usage`` by mode and of ``disk.latency``, deterministic."""
    rnd = random.Random(16)
    weights = [rnd.uniform(0.2, 2.0) for _ in KEYS]
    cpu, lat = [], []
    for i in range(N):
        t = t0 + i * G
        day = 1 + 0.5 * math.sin(2 * math.pi * i / (86400 / G))  # a daily cycle
        # Not rounded: values tied exactly (as CPU seconds counted in 10 ms ticks often are) make
        # the 24 h check fail on float rounding alone (topk picks either; rate sees a reset).
        cpu.append(DataPoint(t, G, {k: G * 0.01 * w * day * rnd.uniform(0.5, 1.5)
                                    for k, w in zip(KEYS, weights, strict=True)}, 1, 1))
        h = Histogram()
        for b in range(1, LAT_BUCKETS + 1):  # one observation in each bucket: the same bounds always
            h.record(BASE ** (b - 0.5))
        for _ in range(int(60 * day)):
            h.record(min(max(rnd.lognormvariate(math.log(6), 0.6), 1.01), 31.9))
        lat.append(DataPoint(t, G, h, 1, 1))
    return cpu, lat


def make_store(data_dir: Path, cpu: list[DataPoint], lat: list[DataPoint]) -> tuple[int, int]:
    """Both instrumentations and their history in ``data_dir/fleetscope.db``; their ids."""
    store = open_store(f"sqlite:///{data_dir / 'fleetscope.db'}")
    try:
        store.set_meta(DEFAULTS_KEY, str(time.time()))  # no default instrumentations
        hist = History(store)
        ids = []
        for (module, stat, shape, discrete, numeric), points in (
                (("cpu", "usage", values.DISCRETE, "mode", None), cpu),
                (("disk", "latency", values.HISTOGRAM, None, "latency"), lat)):
            inst = store.create_instrumentation({
                "module": module, "stat": stat, "predicate": {}, "granularity": G, "retention": 600,
                "decomposition": tuple(f for f in (discrete, numeric) if f), "idle_max": 0,
                "persist": True, "kind": INTERVAL, "shape": shape, "discrete": discrete,
                "numeric": numeric, "history": {}}, 0.0)
            hist.write(inst, points)
            ids.append(inst.id)
        hist.compact(now=time.time())
        return ids[0], ids[1]
    finally:
        store.close()


def openmetrics(path: Path, cpu_id: int, lat_id: int, cpu: list[DataPoint], lat: list[DataPoint]) -> int:
    """The same samples as fleetscope's mapping gives them, as OpenMetrics text; how many."""
    rate = 1.0 / G
    n = 0
    with open(path, "w") as f:
        f.write(f"# TYPE {CPU} gauge\n")
        for key in KEYS:  # series by series: each in time order, as the backfill wants
            labels = f'instrumentation="{cpu_id}",mode="{key}"'
            f.writelines(f"{CPU}{{{labels}}} {float(p.value[key]) * rate!r} {p.start_time}\n" for p in cpu)
            n += len(cpu)
        f.write(f"# TYPE {LAT} histogram\n")
        labels = f'instrumentation="{lat_id}"'
        for p in lat:
            h = p.value.scale(rate)
            total = 0.0
            for _, upper, count in h.iter_buckets():
                total += count
                f.write(f'{LAT}_bucket{{{labels},le="{bound_text(upper)}"}} {total!r} {p.start_time}\n')
            f.write(f'{LAT}_bucket{{{labels},le="+Inf"}} {h.count!r} {p.start_time}\n')
            f.write(f"{LAT}_sum{{{labels}}} {h.sum!r} {p.start_time}\n")
            f.write(f"{LAT}_count{{{labels}}} {h.count!r} {p.start_time}\n")
            n += LAT_BUCKETS + 3
        f.write("# EOF\n")
    return n


# -- servers ----------------------------------------------------------------------------------


def start_prometheus(tmp: Path) -> tuple[subprocess.Popen, str]:
    config = tmp / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 1m\n")  # scrapes nothing
    port = free_port()
    log = open(tmp / "prometheus.log", "wb")  # noqa: SIM115 (the child keeps it)
    proc = subprocess.Popen([shutil.which("prometheus") or "/usr/bin/prometheus",
                             f"--config.file={config}", f"--storage.tsdb.path={tmp / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{port}",
                             "--storage.tsdb.retention.time=30d",
                             "--enable-feature=promql-negative-offset"],  # for rollup_equivalent
                            stdout=log, stderr=subprocess.STDOUT)
    log.close()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            if httpx.get(url + "/-/ready", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    proc.wait()
    raise SystemExit(f"prometheus did not start:\n{(tmp / 'prometheus.log').read_text()[-3000:]}")


def stop(proc: subprocess.Popen | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def rss_mb(pid: int) -> float:
    """RSS of ``pid`` and its children, MB."""
    p = psutil.Process(pid)
    return sum(q.memory_info().rss for q in [p, *p.children(recursive=True)]) / 1e6


def wait_compacted(url: str, limit: float = 150.0) -> None:
    """Wait for Prometheus's first compaction pass (a minute after it starts: the backfilled 2 h
    blocks become 6 h and 18 h ones, as in a Prometheus that has run a day)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        for line in httpx.get(url + "/metrics", timeout=5).text.splitlines():
            name, _, value = line.partition(" ")
            if name == "prometheus_tsdb_compactions_triggered_total" and float(value) >= 1:
                return
        time.sleep(1)
    raise SystemExit("prometheus did not compact its blocks")


def wait_idle(pid: int, seconds: float = 3.0, limit: float = 180.0) -> None:
    """Wait until ``pid`` used under 5 % of a core over ``seconds`` (Prometheus's start-up work:
    replaying, loading and compacting blocks), at most ``limit`` seconds."""
    p = psutil.Process(pid)
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        before = sum(p.cpu_times()[:2])
        time.sleep(seconds)
        if sum(p.cpu_times()[:2]) - before < 0.05 * seconds:
            return


# -- queries ----------------------------------------------------------------------------------


def ask(client: httpx.Client, path: str, form: dict) -> dict:
    return answer(client, path, form)[0]


def answer(client: httpx.Client, path: str, form: dict) -> tuple[dict, str]:
    """The answer's ``data``, and its size on the wire."""
    r = client.post(path, data=form)
    body = r.json()
    if r.status_code != 200 or body.get("status") != "success":
        raise SystemExit(f"{client.base_url}{path} {form}: {r.status_code} {r.text[:500]}")
    return body["data"], f"{r.num_bytes_downloaded / 1e3:.0f} kB {r.headers.get('content-encoding', 'plain')}"


def same_number(a: str, b: str) -> bool:
    x, y = float(a), float(b)
    return (math.isnan(x) and math.isnan(y)) or math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12)


def compare(ours: dict, theirs: dict) -> str:
    """``same`` or what differs between two answers."""
    def keyed(data: dict) -> dict[tuple, list]:
        return {tuple(sorted((k, v) for k, v in s["metric"].items() if k != "__name__")):
                s.get("values") or [s["value"]] for s in data["result"]}

    mine, ref = keyed(ours), keyed(theirs)
    if mine.keys() != ref.keys():
        return f"series differ ({len(mine)} vs {len(ref)})"
    times = sum(1 for k in ref if [p[0] for p in mine[k]] != [p[0] for p in ref[k]])
    if times:
        return f"timestamps differ in {times} of {len(ref)} series"
    bad = sum(not same_number(p[1], q[1]) for k in ref for p, q in zip(mine[k], ref[k], strict=True))
    total = sum(len(v) for v in ref.values())
    return "same" if not bad else f"{bad} of {total} values differ"


def rollup_equivalent(expr: str) -> str:
    """``expr`` over per-minute averages of the 15 s samples, in Prometheus 2.42's PromQL: what
    fleetscope's minute tier holds (the sample at a minute's start is the mean of its four
    slots; ``[59s] offset -45s`` selects exactly those), as samples at minute starts (a
    subquery at a 1 m step is evaluated at multiples of 60 s)."""
    def one(m: re.Match) -> str:
        inner = f"avg_over_time({m[1]}[59s] offset -45s)"
        return f"{inner}[{m[2]}:1m]" if m[2] else inner

    return re.sub(r"\b(fleetscope_\w+)(?:\[(\w+)\])?", one, expr)


def shape(data: dict) -> str:
    result = data["result"]
    points = sum(len(s.get("values") or [1]) for s in result)
    return f"{len(result)} series, {points} points"


def once(client: httpx.Client, path: str, form: dict) -> float:
    """Milliseconds until the whole answer is in (its JSON is not decoded: a client's cost)."""
    t0 = time.perf_counter()
    r = client.post(path, data=form)
    elapsed = (time.perf_counter() - t0) * 1000
    if r.status_code != 200 or b'"status":"success"' not in r.content[:100]:
        raise SystemExit(f"{client.base_url}{path} {form}: {r.status_code} {r.text[:500]}")
    return elapsed


def timed(clients: tuple[httpx.Client, httpx.Client], path: str, form: dict,
          runs: int) -> tuple[list[float], list[float]]:
    """``runs`` timings on each client after a warm-up, alternating (load on the machine falls
    on both alike)."""
    for c in clients:
        once(c, path, form)
    out: tuple[list[float], list[float]] = ([], [])
    for _ in range(runs):
        for c, samples in zip(clients, out, strict=True):
            samples.append(once(c, path, form))
    return out


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=30, help="timed runs per query (after one warm-up)")
    args = ap.parse_args()
    promtool = shutil.which("promtool") or "/usr/bin/promtool"
    t0 = (int(time.time()) - SPAN - 3600) // 3600 * 3600  # the data ends 1-2 h ago
    end = t0 + SPAN - 300  # the ranges end 5 minutes before the data
    ranges = [("1 h", end - 3600, end, 15), ("24 h", end - 86400, end, 60)]

    fs = prom = None
    with tempfile.TemporaryDirectory(prefix="fleetscope-promql-") as tmp_name:
        tmp = Path(tmp_name)
        try:
            clock = time.perf_counter()
            cpu, lat = history(t0)
            cpu_id, lat_id = make_store(tmp, cpu, lat)
            stored = time.perf_counter() - clock
            clock = time.perf_counter()
            n = openmetrics(tmp / "samples.om", cpu_id, lat_id, cpu, lat)
            subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", str(tmp / "samples.om"),
                            str(tmp / "tsdb")], check=True, stdout=subprocess.DEVNULL)
            (tmp / "samples.om").unlink()
            print(f"# data: {N} slots of {G} s from {t0} (24 h 10 min); fleetscope store written in "
                  f"{stored:.1f} s, {n} Prometheus samples backfilled in {time.perf_counter() - clock:.1f} s")

            prom, prom_url = start_prometheus(tmp)
            fs, fs_url = start_server(str(tmp))
            wait_compacted(prom_url)
            wait_idle(prom.pid)
            wait_idle(fs.pid)
            with httpx.Client(base_url=fs_url + PROM, timeout=120) as fc, \
                    httpx.Client(base_url=prom_url + "/api/v1", timeout=120) as pc:
                cases = [(f"{label}, {rname} (step {step} s)", "/query_range",
                          {"query": q, "start": start, "end": stop_at, "step": step})
                         for rname, start, stop_at, step in ranges for label, q in QUERIES]
                cases.append((INSTANT[0], "/query", {"query": INSTANT[1], "time": end}))
                print("# answers compared before timing (fleetscope vs Prometheus):")
                for name, path, form in cases:
                    theirs, their_size = answer(pc, path, form)
                    ours, our_size = answer(fc, path, form)
                    verdict = compare(ours, theirs)
                    line = f"#   {name:<50} {'agree' if verdict == 'same' else 'DISAGREE: ' + verdict}"
                    if form.get("step") == 60:  # fleetscope answers from its minute tier
                        minutes = {**form, "query": rollup_equivalent(form["query"])}
                        again = compare(ours, ask(pc, path, minutes))
                        line += f"; with per-minute means: {'agree' if again == 'same' else again}"
                    print(f"{line}  [{shape(theirs)}; {our_size} vs {their_size}]")

                load = os.getloadavg()[0]
                rss_before = rss_mb(fs.pid), rss_mb(prom.pid)
                rows = []
                for name, path, form in cases:
                    rows.append((name, *timed((fc, pc), path, form, args.runs)))
                rss_after = rss_mb(fs.pid), rss_mb(prom.pid)
                load = max(load, os.getloadavg()[0])
        finally:
            stop(fs)
            stop(prom)

    print(f"\nPromQL query latency, fleetscope /prometheus vs Prometheus 2.42, same data "
          f"({args.runs} sequential POSTs each after a warm-up)")
    print(f"{'query':<50} {'fs p50':>8} {'fs p99':>8} {'prom p50':>8} {'prom p99':>8} {'fs/prom':>8}")
    for name, ours, theirs in rows:
        p50, p50_ref = statistics.median(ours), statistics.median(theirs)
        print(f"{name:<50} {p50:>8.2f} {percentile(ours, 0.99):>8.2f} {p50_ref:>8.2f} "
              f"{percentile(theirs, 0.99):>8.2f} {p50 / p50_ref:>7.1f}x")
    print(f"RSS MB before/after the timed runs: fleetscope serve {rss_before[0]:.1f} / {rss_after[0]:.1f}, "
          f"prometheus {rss_before[1]:.1f} / {rss_after[1]:.1f}; load average (1 min) up to {load:.1f} "
          f"on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
