"""Prometheus remote write in (sources/remote_write.py): bodies in, metrics and rows out;
counters told by metadata and naming, gauges as levels, native histograms exact; bad
bodies refused with their reasons and nothing kept; the caps; the HTTP answers
Prometheus expects; the flags; and a real Prometheus 2.42 writing to a real
`fleetscope serve --remote-write`, across a restart of fleetscope."""

from __future__ import annotations

import asyncio
import math
import secrets
import shutil
import socket
import struct
import subprocess
import threading
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter, start_http_server

from fleetscope.agent.evaluate import Plan
from fleetscope.formats import promremote as pr
from fleetscope.model.errors import InputError
from fleetscope.model.histogram import Histogram, bucket_index
from fleetscope.model.instrumentation import Instrumentation, validate_spec
from fleetscope.model.metrics import Catalog
from fleetscope.processes.config import agent_config, ingest_config
from fleetscope.sources.remote_write import RemoteWriteConfig, RemoteWriteSource, receiver_app
from tests.conftest import VENV_BIN, Server, free_port, wait_for

API = "/api/v1"
S = pr.Series
STALE = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000002))[0]


def _write(src: RemoteWriteSource, *series: pr.Series, metadata=()):
    return src.ingest_write(pr.encode_write_request(series, metadata))


def _evaluate(src: RemoteWriteSource, body: dict, now: float = 1000.0):
    src.begin_tick(now)
    inst = Instrumentation(id=1, created=0.0, **validate_spec(body, Catalog(src.metrics())))
    rows = src.collect(inst.metric)
    return Plan(inst, rows.columns, {"hostname": "h"}).evaluate(rows.rows, rows.weighted)


def _metrics(src: RemoteWriteSource) -> dict:
    return {m.name: m for m in src.metrics()}


def _hist(*xs: float, schema: int = 3) -> Histogram:
    h = Histogram(schema)
    for x in xs:
        h.record(x)
    return h


# -- float series -----------------------------------------------------------------------------


def test_gauges_are_levels_with_labels_as_fields() -> None:
    src = RemoteWriteSource()
    got = _write(src, S({"__name__": "node:temp_celsius", "job": "node", "instance": "a:9100",
                         "hostname": "rack1"}, [(2000, 40.0), (3000, 41.5), (1000, 39.0)]),
                 S({"__name__": "node:temp_celsius", "job": "node", "instance": "b:9100"}, [(3000, 30.0)]))
    assert got == (4, 0, [])
    m = _metrics(src)["prom.node_temp_celsius"]  # ':' sanitised as OTLP names are
    assert m.kind == "point" and [f.name for f in m.fields] == ["hostname", "instance", "job", "tag_hostname"]
    body = {"module": "prom", "stat": "node_temp_celsius", "decomposition": ["instance"]}
    # The latest sample by timestamp, not the last in the body; kept from tick to tick.
    assert _evaluate(src, body) == {"a:9100": 41.5, "b:9100": 30.0}
    assert _evaluate(src, body, 1001.0) == {"a:9100": 41.5, "b:9100": 30.0}
    # A sample older than the latest (a retried batch) changes nothing and is counted.
    got = _write(src, S({"__name__": "node:temp_celsius", "job": "node", "instance": "a:9100",
                         "hostname": "rack1"}, [(2500, 99.0)]))
    assert got == (0, 1, ["out_of_order"])
    # A stale marker ends the series: no level any more.
    _write(src, S({"__name__": "node:temp_celsius", "job": "node", "instance": "b:9100"}, [(4000, STALE)]))
    assert _evaluate(src, body, 1002.0) == {"a:9100": 41.5}
    assert src.dropped == {"out_of_order": 1}


def test_counters_by_metadata_become_increases_per_second() -> None:
    src = RemoteWriteSource()
    orders = {"__name__": "orders", "shop": "eu"}  # no _total: only metadata says it is a counter
    _write(src, S(orders, [(1000, 5.0)]))
    assert _metrics(src)["prom.orders"].kind == "point"
    generation = src.generation
    _write(src, metadata=[pr.Metadata("orders", pr.COUNTER, "Orders taken.")])
    m = _metrics(src)["prom.orders"]
    assert (m.kind, m.label) == ("interval", "Prometheus Orders taken.")
    assert src.generation > generation
    body = {"module": "prom", "stat": "orders", "decomposition": ["shop"]}
    # 5 -> 8 -> 2 (a reset: 2 is the increase) -> 4: 3 + 2 + 2, the value known before the
    # metadata came counts as the series' previous one.
    _write(src, S(orders, [(2000, 8.0), (3000, 2.0), (4000, 4.0)]))
    assert _evaluate(src, body) == {"eu": 7.0}
    assert _evaluate(src, body, 1001.0) == {}  # an increase is counted once, in its tick
    # Ticks that come late divide by the real time elapsed, as for StatsD.
    _write(src, S(orders, [(5000, 10.0)]))
    assert _evaluate(src, body, 1004.0) == {"eu": 2.0}


def test_naming_conventions_until_metadata_comes() -> None:
    """A fleetscope restarted without metadata yet: ``_total`` is a counter, so are the
    ``_bucket`` (with ``le``), ``_sum`` and ``_count`` of a classic histogram and the
    ``_sum`` and ``_count`` of a summary (with ``quantile``); their first sample only makes
    them known."""
    src = RemoteWriteSource()
    job = {"job": "api"}
    first = [
        S({"__name__": "http_requests_total", **job}, [(1000, 100.0)]),
        S({"__name__": "rpc_seconds_count", **job}, [(1000, 10.0)]),  # before its _bucket series
        S({"__name__": "rpc_seconds_sum", **job}, [(1000, 2.5)]),
        S({"__name__": "rpc_seconds_bucket", "le": "0.1", **job}, [(1000, 4.0)]),
        S({"__name__": "rpc_seconds_bucket", "le": "+Inf", **job}, [(1000, 10.0)]),
        S({"__name__": "gc_seconds", "quantile": "0.5", **job}, [(1000, 0.01)]),
        S({"__name__": "gc_seconds_count", **job}, [(1000, 7.0)]),
        S({"__name__": "queue_count", **job}, [(1000, 3.0)]),  # no histogram or summary of that name
    ]
    _write(src, *first)
    kinds = {name: m.kind for name, m in _metrics(src).items() if name.startswith("prom.")}
    assert kinds == {"prom.http_requests_total": "interval", "prom.rpc_seconds_count": "interval",
                     "prom.rpc_seconds_sum": "interval", "prom.rpc_seconds_bucket": "interval",
                     "prom.gc_seconds": "point", "prom.gc_seconds_count": "interval",
                     "prom.queue_count": "point"}
    assert _evaluate(src, {"module": "prom", "stat": "http_requests_total"}) == 0.0  # first: known only
    _write(src, S({"__name__": "http_requests_total", **job}, [(2000, 130.0)]))
    assert _evaluate(src, {"module": "prom", "stat": "http_requests_total"}, 1001.0) == 30.0
    _write(src, S({"__name__": "rpc_seconds_bucket", "le": "0.1", **job}, [(2000, 6.0)]),
            S({"__name__": "rpc_seconds_bucket", "le": "+Inf", **job}, [(2000, 15.0)]))
    assert _evaluate(src, {"module": "prom", "stat": "rpc_seconds_bucket", "decomposition": ["le"]},
                     1002.0) == {"0.1": 2.0, "+Inf": 5.0}
    assert "le" in {f.name for f in _metrics(src)["prom.rpc_seconds_bucket"].fields}
    # Metadata wins over the names: a gauge that happens to end in _total is a level.
    _write(src, metadata=[pr.Metadata("http_requests_total", pr.GAUGE)])
    assert _metrics(src)["prom.http_requests_total"].kind == "point"


# -- native histograms ------------------------------------------------------------------------


def test_native_histograms_count_increases_exactly() -> None:
    src = RemoteWriteSource()
    labels = {"__name__": "rpc_duration_seconds", "job": "api"}
    before = [0.001, 0.02, 0.02, 0.5]
    during = [0.003, 0.02, 7.0, 0.0, 1e-9]
    first = _hist(*before)
    second = _hist(*before, *during)
    second.downscale(1)  # the client lowered its schema as the range grew: still exact
    _write(src, S(labels, histograms=[(1000, first)]))
    m = _metrics(src)["prom.rpc_duration_seconds"]
    assert m.kind == "interval" and m.field("value").type.name == "s"
    body = {"module": "prom", "stat": "rpc_duration_seconds", "decomposition": ["value"]}
    assert _evaluate(src, body).count == 0  # the first sample: its increase is not known
    _write(src, S(labels, histograms=[(2000, second)]))
    got = _evaluate(src, body, 1001.0)
    want = _hist(*during, schema=2)  # recorded independently at the coarser schema
    assert (got.count, got.zero_count, got.buckets) == (want.count, want.zero_count, want.buckets)
    # A reset (counts went down) counts the new histogram whole.
    _write(src, S(labels, histograms=[(3000, _hist(0.25))]))
    assert _evaluate(src, body, 1002.0).buckets == _hist(0.25).buckets


def test_gauge_histograms_count_whole_at_each_sample() -> None:
    src = RemoteWriteSource()
    labels = {"__name__": "inflight_seconds"}
    h = _hist(0.5, 1.5, 1.5)
    _write(src, S(labels, histograms=[(1000, h)], reset_hint=pr.RESET_GAUGE))
    body = {"module": "prom", "stat": "inflight_seconds", "decomposition": ["value"]}
    assert _evaluate(src, body) == h
    _write(src, S(labels, histograms=[(2000, h)], reset_hint=pr.RESET_GAUGE))
    assert _evaluate(src, body, 1001.0) == h
    bad = pr.M["WriteRequest"]()
    ts = bad.timeseries.add()
    ts.labels.add(name="__name__", value="inflight_seconds")
    ts.histograms.add(schema=9, timestamp=3000)  # a schema Prometheus does not have
    assert src.ingest_write(pr.compress(bad.SerializeToString())).reasons == ["schema"]


# -- refusals ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "ctype", "encoding", "reason"), [
    (b"\x0a\x05hello", pr.CONTENT_TYPE, "snappy", "snappy"),
    (pr.compress(b"\x0a\x05abc"), pr.CONTENT_TYPE, "snappy", "protobuf"),
    (pr.compress(b"\x0a\x06\x0a\x04\x0a\x02\xff\xfe"), pr.CONTENT_TYPE, "snappy", "protobuf"),  # not UTF-8
    (b"\xff\xff\xff\xff\x0f", pr.CONTENT_TYPE, "snappy", "too_large"),  # claims 4 GiB
    (pr.encode_write_request([S({"__name__": "x"}, [(1, 1.0)])]), "application/json", "snappy",
     "content_type"),
    (pr.encode_write_request([S({"__name__": "x"}, [(1, 1.0)])]), pr.CONTENT_TYPE, "gzip",
     "content_encoding"),
])
def test_bad_bodies_are_refused_with_reasons_and_nothing_kept(body: bytes, ctype: str, encoding: str,
                                                             reason: str) -> None:
    src = RemoteWriteSource()
    with pytest.raises(pr.RemoteError) as exc:
        src.ingest_write(body, ctype, encoding)
    assert exc.value.reason == reason
    assert src.dropped == {reason: 1} and src.received == 0
    assert [m.name for m in src.metrics()] == ["fleetscope.remote_write_dropped",
                                               "fleetscope.remote_write_received"]
    src.begin_tick(1000.0)
    rows = src.collect("fleetscope.remote_write_dropped").rows
    assert rows == [("http", reason, 1.0)]


def test_bad_series_are_dropped_alone() -> None:
    src = RemoteWriteSource()
    got = _write(src, S({"__name__": "x" * 65}, [(1, 1.0)]),
                 S({"job": "no name"}, [(1, 1.0)]),
                 S({"__name__": "ok", "k": "v" * 201}, [(1, 1.0)]),
                 S({"__name__": "ok"}, [(1, math.nan), (2, 1.0)]),
                 S({"__name__": "gone"}, [(1, 2.0)]))
    assert got.accepted == 2 and sorted(got.reasons) == ["name", "name", "tags", "value"]
    assert _evaluate(src, {"module": "prom", "stat": "ok"}) == 1.0
    # A level that becomes no number is no level any more (not the last finite one).
    assert _write(src, S({"__name__": "gone"}, [(2, math.inf)])).reasons == ["value"]
    assert _evaluate(src, {"module": "prom", "stat": "gone"}, 1001.0) == 0.0


def test_caps_refuse_and_keep_no_state() -> None:
    src = RemoteWriteSource(RemoteWriteConfig(max_metrics=2, max_keys=2))
    many = [S({"__name__": f"m{i}", "job": "a"}, [(1, 1.0)]) for i in range(4)]
    got = _write(src, *many)
    assert got.accepted == 2 and got.reasons == ["too_many_metrics"] * 2
    got = _write(src, *[S({"__name__": "m0", "job": f"j{i}"}, [(2, 1.0)]) for i in range(4)])
    assert got.accepted == 1 and got.reasons == ["too_many_keys"] * 3  # a (known) and j0, then no more
    got = _write(src, *[S({"__name__": "m0", "job": "a", **{f"l{i}": "v" for i in range(30)}}, [(3, 1.0)])])
    assert got.reasons == ["too_many_tags"]
    # Refused series leave nothing behind (memory stays bounded under a flood of new series).
    assert {key[0] for key in src._last} == {"m0", "m1"}
    assert len(src._last) == 3


# -- HTTP -------------------------------------------------------------------------------------


def test_http_answers_as_prometheus_expects() -> None:
    src = RemoteWriteSource()
    headers = {"content-type": pr.CONTENT_TYPE, "content-encoding": "snappy",
               pr.WRITE_VERSION_HEADER: pr.WRITE_VERSION}
    body = pr.encode_write_request([S({"__name__": "up"}, [(1, 1.0)])])

    async def talk() -> None:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=receiver_app(src)),
                                     base_url="http://t") as http:
            ok = await http.post("/api/v1/write", content=body, headers=headers)
            assert (ok.status_code, ok.content) == (204, b"")
            bad = await http.post("/api/v1/write", content=b"not snappy", headers=headers)
            assert bad.status_code == 400 and bad.text.startswith("snappy: not a Snappy block")
            wrong = await http.post("/api/v1/write", content=b"{}",
                                    headers={**headers, "content-type": "application/json"})
            assert wrong.status_code == 415 and "content_type" in wrong.text
            big = await http.post("/api/v1/write", content=b"\0" * ((8 << 20) + 1), headers=headers)
            assert big.status_code == 413
            assert (await http.get("/api/v1/write")).status_code == 405

    asyncio.run(talk())
    assert src.received == 1
    assert src.dropped == {"snappy": 1, "content_type": 1, "too_large": 1}


# -- configuration ----------------------------------------------------------------------------


def test_flags_mirror_otlp() -> None:
    cfg = ingest_config(statsd=None, statsd_prefix="app", otlp=None, otlp_prefix="otel", scrape=[],
                        max_metrics=50, max_keys=60, remote_write=str(free_port()))
    rw = cfg.remote_write
    assert (rw.host, rw.prefix, rw.max_metrics, rw.max_keys) == ("127.0.0.1", "prom", 50, 60)
    with pytest.raises(InputError) as exc:
        ingest_config(statsd=None, statsd_prefix="app", otlp=None, otlp_prefix="otel", scrape=[],
                      max_metrics=50, max_keys=60, remote_write="9201", remote_write_prefix="pro.m")
    assert exc.value.field == "remote-write-prefix"
    with pytest.raises(InputError) as exc:
        agent_config(remote_write="host:notaport")
    assert exc.value.field == "remote-write"
    cfg = agent_config(remote_write=f"127.0.0.1:{free_port()}", remote_write_prefix="pm")
    assert cfg.ingest.remote_write.prefix == "pm"


def test_a_token_is_asked_and_needed_off_loopback(tmp_path: Path) -> None:
    common = {"statsd": None, "statsd_prefix": "app", "otlp": None, "otlp_prefix": "otel", "scrape": [],
              "max_metrics": 50, "max_keys": 60}
    with pytest.raises(InputError) as exc:
        ingest_config(**common, remote_write=f"0.0.0.0:{free_port()}")
    assert exc.value.field == "remote-write-token-file" and "other machines" in exc.value.message
    short = tmp_path / "short"
    short.write_text("abc\n")
    with pytest.raises(InputError) as exc:
        ingest_config(**common, remote_write=f"0.0.0.0:{free_port()}", remote_write_token_file=str(short))
    assert "16 characters" in exc.value.message
    secret = tmp_path / "token"
    secret.write_text("s3cret-s3cret-s3cret\nignored second line\n")
    cfg = ingest_config(**common, remote_write=f"0.0.0.0:{free_port()}", remote_write_token_file=str(secret))
    assert cfg.remote_write.token_sha256 and "s3cret" not in repr(cfg), "only the token's hash is kept"
    src = RemoteWriteSource(cfg.remote_write)
    headers = {"content-type": pr.CONTENT_TYPE, "content-encoding": "snappy"}
    body = pr.encode_write_request([S({"__name__": "up"}, [(1, 1.0)])])

    async def talk() -> None:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=receiver_app(src)),
                                     base_url="http://t") as http:
            for auth in (None, "Bearer wrong-wrong-wrong-wrong", "Basic czNjcmV0"):
                denied = await http.post("/api/v1/write", content=body,
                                         headers={**headers, **({"authorization": auth} if auth else {})})
                assert denied.status_code == 401 and "token" in denied.text
            ok = await http.post("/api/v1/write", content=body,
                                 headers={**headers, "authorization": "Bearer s3cret-s3cret-s3cret"})
            assert ok.status_code == 204

    asyncio.run(talk())
    assert src.received == 1 and src.dropped == {"unauthorized": 3}


def test_agent_reads_the_environment_variable() -> None:
    done = subprocess.run([str(VENV_BIN / "fleetscope"), "agent", "--bus", "nats://127.0.0.1:1"],
                          capture_output=True, text=True, timeout=60,
                          env={"FLEETSCOPE_REMOTE_WRITE": "nope:x", "PATH": "/usr/bin:/bin"})
    assert done.returncode != 0 and "remote-write" in done.stdout + done.stderr


# -- a real Prometheus ------------------------------------------------------------------------


class Prometheus:
    """A real Prometheus 2.42 scraping itself and ``targets``, remote-writing to ``write_url``."""

    def __init__(self, tmp: Path, write_url: str, targets: dict[str, str], native: bool = False,
                 token_file: Path | None = None) -> None:
        exe = shutil.which("prometheus")
        assert exe, "Debian's prometheus package is needed (scripts/system-deps.sh)"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        jobs = {"prometheus": f"127.0.0.1:{self.port}", **targets}
        scrape = "".join(f"  - job_name: {job}\n    static_configs: [{{targets: ['{t}']}}]\n"
                         for job, t in jobs.items())
        config = tmp / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
            f"scrape_configs:\n{scrape}"
            f"remote_write:\n  - url: {write_url}\n    send_native_histograms: {str(native).lower()}\n"
            + (f"    authorization: {{credentials_file: {token_file}}}\n" if token_file else "") +
            "    queue_config: {batch_send_deadline: 1s, min_backoff: 100ms, max_backoff: 1s}\n"
            "    metadata_config: {send_interval: 1s}\n")
        self.log = tmp / "prometheus.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [exe, f"--config.file={config}", f"--storage.tsdb.path={tmp / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{self.port}",
                 *(["--enable-feature=native-histograms"] if native else [])],
                stdout=log, stderr=subprocess.STDOUT)

        def ready():
            try:
                return httpx.get(self.url + "/-/ready", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, timeout=30)

    def query(self, q: str) -> list[dict]:
        body = httpx.get(self.url + "/api/v1/query", params={"query": q}, timeout=5).json()
        assert body["status"] == "success", body
        return body["data"]["result"]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(15)


def _points(c: httpx.Client, inst: int, since: float = 0.0) -> list:
    got = c.get(f"{API}/instrumentations/{inst}/value", params={"ndatapoints": 120})
    assert got.status_code == 200, got.text
    return [p for p in got.json() if p["nsources"] and p["start_time"] >= since]


def _total(c: httpx.Client, inst: int, key: str, since: float = 0.0) -> float:
    return sum((p["value"] or {}).get(key, 0.0) for p in _points(c, inst, since))


def _catalog(c: httpx.Client) -> dict:
    return {m["name"]: m for m in c.get(f"{API}/metrics").json()["metrics"]}


def test_real_prometheus_remote_writes_across_a_restart(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    orders = Counter("rw_test_orders", "Orders taken.", ["shop"], registry=registry)
    orders.labels("eu")
    app_port = free_port()
    http_server, _ = start_http_server(app_port, addr="127.0.0.1", registry=registry)
    rw_port = free_port()
    data = tmp_path / "serve"
    data.mkdir()
    token = tmp_path / "remote-write.token"
    token.write_text(secrets.token_urlsafe(24) + "\n")
    srv = Server(data, free_port(), ["--remote-write", f"127.0.0.1:{rw_port}",
                                     "--remote-write-token-file", str(token)]).start()
    prom = Prometheus(tmp_path, f"http://127.0.0.1:{rw_port}/api/v1/write", {"app": f"127.0.0.1:{app_port}"},
                      token_file=token)
    try:
        with srv.client() as c:
            wanted = {"prom.up", "prom.prometheus_build_info", "prom.rw_test_orders_total"}
            found = wait_for(lambda: (lambda ms: ms if wanted <= ms.keys() else None)(_catalog(c)), 30)
            fields = {name: {f["name"] for f in m["fields"]} for name, m in found.items()}
            assert {"job", "instance"} <= fields["prom.up"]
            assert {"version", "goversion"} <= fields["prom.prometheus_build_info"]
            assert found["prom.rw_test_orders_total"]["kind"] == "interval"
            assert found["prom.up"]["kind"] == "point"

            # up by job, as Prometheus itself has it.
            up = c.post(f"{API}/instrumentations", json={"module": "prom", "stat": "up",
                                                          "decomposition": ["job"]}).json()["id"]
            theirs = {r["metric"]["job"]: float(r["value"][1]) for r in prom.query("up")}
            assert theirs == {"prometheus": 1.0, "app": 1.0}
            wait_for(lambda: any(p["value"] == theirs for p in _points(c, up)), timeout=20)
            # Prometheus' own version, through a gauge of value 1 whose labels say it.
            version = prom.query("prometheus_build_info")[0]["metric"]["version"]
            info = c.post(f"{API}/instrumentations", json={
                "module": "prom", "stat": "prometheus_build_info", "decomposition": ["version"]}).json()["id"]
            wait_for(lambda: any(p["value"] == {version: 1.0} for p in _points(c, info)), timeout=20)

            # A counter: each increase counted once, in the tick it arrives in.
            shop = c.post(f"{API}/instrumentations", json={
                "module": "prom", "stat": "rw_test_orders_total", "decomposition": ["shop"]}).json()["id"]
            wait_for(lambda: _points(c, shop), timeout=20)  # the instrumentation runs on the agent
            orders.labels("eu").inc(7)
            wait_for(lambda: _total(c, shop, "eu") == 7.0, timeout=20)
            orders.labels("eu").inc(3)
            wait_for(lambda: _total(c, shop, "eu") == 10.0, timeout=20)
            last = max(p["start_time"] for p in _points(c, up))

        # fleetscope goes away; Prometheus keeps its samples and retries (its own counter says so).
        srv.stop()
        retried = "sum(prometheus_remote_storage_samples_retried_total)"
        wait_for(lambda: float((prom.query(retried) or [{"value": [0, "0"]}])[0]["value"][1]) > 0, timeout=30)
        srv.start()
        with srv.client() as c:
            # The series arrive again, and the instrumentations (kept in the store) answer.
            wait_for(lambda: any(p["value"] == theirs for p in _points(c, up, last + 1)), timeout=30)
            wait_for(lambda: "prom.rw_test_orders_total" in _catalog(c) and _points(c, shop, last + 1), 30)
            after = max(p["start_time"] for p in _points(c, shop))
            orders.labels("eu").inc(4)
            wait_for(lambda: _total(c, shop, "eu", after + 1) == 4.0, timeout=20)
            assert _total(c, shop, "eu") in (4.0, 14.0)  # nothing counted twice
    finally:
        prom.stop()
        srv.stop()
        http_server.shutdown()


def test_real_prometheus_native_histograms_arrive_exact(tmp_path: Path) -> None:
    """Prometheus with native histograms scrapes fleetscope's own /metrics (protobuf: a
    StatsD latency as a native gauge histogram) and writes it back over remote write: the
    buckets come back where the values fall, so schema, spans and deltas crossed the wire
    intact both ways."""
    statsd, rw_port = free_port(), free_port()
    data = tmp_path / "serve"
    data.mkdir()
    srv = Server(data, free_port(), ["--statsd", f"127.0.0.1:{statsd}",
                                     "--remote-write", f"127.0.0.1:{rw_port}"]).start()
    stop = threading.Event()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    def feed() -> None:
        while not stop.is_set():  # both in one datagram: every slot holds as many of each
            udp.sendto(b"lat:10|ms\nlat:100|ms", ("127.0.0.1", statsd))
            stop.wait(0.05)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    prom = None
    try:
        with srv.client() as c:
            wait_for(lambda: "app.lat" in _catalog(c))
            assert c.post(f"{API}/instrumentations", json={"module": "app", "stat": "lat",
                                                           "decomposition": ["value"]}).status_code == 201
            prom = Prometheus(tmp_path, f"http://127.0.0.1:{rw_port}/api/v1/write",
                              {"fleetscope": f"127.0.0.1:{srv.port}"}, native=True)
            name = "prom.fleetscope_app_lat_value"
            found = wait_for(lambda: _catalog(c).get(name), timeout=30)
            assert found["kind"] == "interval" and "value" in {f["name"] for f in found["fields"]}
            spec = {"module": "prom", "stat": "fleetscope_app_lat_value", "decomposition": ["value"]}
            back = c.post(f"{API}/instrumentations", json=spec).json()["id"]
            got = wait_for(lambda: [Histogram.from_json(p["value"]) for p in _points(c, back)
                                    if p["value"] and p["value"]["count"]], timeout=30)
        ten, hundred = bucket_index(10, 3), bucket_index(100, 3)
        for h in got:
            assert (h.schema, set(h.buckets)) == (3, {ten, hundred})
            assert h.buckets[ten] == h.buckets[hundred] == h.count / 2
    finally:
        stop.set()
        feeder.join()
        udp.close()
        if prom is not None:
            prom.stop()
        srv.stop()
