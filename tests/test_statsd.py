"""StatsD in: the source's per-tick aggregation and caps, the agent learning metrics at
runtime, and real UDP and TCP traffic through a real `fleetscope serve --statsd`."""

from __future__ import annotations

import asyncio
import socket
import time

import httpx
import pytest

from fleetscope.agent.agent import Agent
from fleetscope.agent.evaluate import Plan
from fleetscope.bus.memory import MemoryBus
from fleetscope.model.errors import InputError
from fleetscope.model.histogram import Histogram
from fleetscope.model.instrumentation import Instrumentation, validate_spec
from fleetscope.model.metrics import Catalog
from fleetscope.sources.statsd import StatsdConfig, StatsdSource, parse_address
from tests.conftest import Server, free_port
from tests.test_api import API, wait_for


def _inst(inst_id: int, catalog, body: dict) -> Instrumentation:
    return Instrumentation(id=inst_id, created=0.0, **validate_spec(body, catalog))


def _tick(src: StatsdSource, lines: str, now: float = 1000.0) -> None:
    src.ingest(lines.encode())
    src.begin_tick(now)


def test_counters_gauges_sets_and_rates() -> None:
    src = StatsdSource()
    _tick(src, "hits:1|c|#route:/a\nhits:3|c|@0.5|#route:/a\nhits:2|c|#route:/b,code:500\n"
               "temp:20|g\ntemp:+2|g\nusers:al|s\nusers:bo|s\nusers:al|s")
    rows = src.collect("app.hits")
    assert rows.columns == ("route", "code")
    assert sorted(rows.rows) == [("/a", "", 7.0), ("/b", "500", 2.0)]
    assert src.collect("app.temp").rows == [(22.0,)]
    assert src.collect("app.users").rows == [(2.0,)]
    names = {m.name: m for m in src.metrics()}
    assert names["app.hits"].kind == "interval" and names["app.temp"].kind == "point"
    assert [f.name for f in names["app.hits"].fields] == ["hostname", "route", "code"]
    # The next tick: counters start again from zero, gauges keep their level.
    src.begin_tick(1001.0)
    assert src.collect("app.hits").rows == []
    assert src.collect("app.temp").rows == [(22.0,)]
    # A late tick divides by the real elapsed time.
    _tick(src, "hits:10|c", now=1005.0)
    assert src.collect("app.hits").rows == [("", "", 2.5)]


def test_timers_are_weighted_rows_recorded_exactly() -> None:
    src = StatsdSource()
    values = [0.5, 1, 1, 2, 3.25, 100, 100, 100, 2500]
    lines = "\n".join(f"lat:{v}|ms|#route:/r" for v in values) + "\nlat:7|ms|@0.25|#route:/s"
    _tick(src, lines)
    rows = src.collect("app.lat")
    assert rows.weighted and rows.columns == ("route", "value")
    assert len(rows.rows) == 7, "one row per distinct value, not per event"
    metric = {m.name: m for m in src.metrics()}["app.lat"]
    assert metric.field("value").type.name == "ms"
    expected = Histogram()
    for v in values:
        expected.record(v)
    expected.record(7, 4)
    cat = Catalog(src.metrics())
    inst = _inst(1, cat, {"module": "app", "stat": "lat", "decomposition": ["value"]})
    assert Plan(inst, rows.columns, {"hostname": "h"}).evaluate(rows.rows, rows.weighted) == expected
    by_route = _inst(2, cat, {"module": "app", "stat": "lat", "predicate": {"gt": ["value", 1]},
                              "decomposition": ["route", "value"]})
    got = Plan(by_route, rows.columns, {"hostname": "h"}).evaluate(rows.rows, rows.weighted)
    assert got["/r"].count == 6 and got["/s"].count == 4
    count = _inst(3, cat, {"module": "app", "stat": "lat"})
    assert Plan(count, rows.columns, {"hostname": "h"}).evaluate(rows.rows, rows.weighted) == 13


def test_caps_and_bad_lines_are_counted_not_kept() -> None:
    src = StatsdSource(StatsdConfig(max_metrics=2, max_fields=2, max_keys=3))
    lines = ["a:1|c", "b:1|ms", "c:1|c",  # third name: too many metrics
             "a:1|g",  # a is a counter: type conflict
             "a:1|c|#k1:x,k2:y", "a:1|c|#k3:z",  # third tag key: too many tags
             *(f"a:1|c|#k1:v{i}" for i in range(5)),  # k1 has x, v0, v1: v2.. refused
             "junk", "a:b|c", "x" * 100 + ":1|c"]
    _tick(src, "\n".join(lines))
    assert src.dropped == {"too_many_metrics": 1, "type_conflict": 1, "too_many_tags": 1,
                           "too_many_keys": 3, "syntax": 1, "value": 1, "name": 1}
    assert sorted(src.collect("app.a").rows) == [("", "", 1.0), ("v0", "", 1.0), ("v1", "", 1.0),
                                                 ("x", "y", 1.0)]
    dropped = dict(((p, r), n) for p, r, n in src.collect("fleetscope.statsd_dropped").rows)
    assert dropped[("udp", "too_many_keys")] == 3
    assert [m.name for m in src.metrics()] == [
        "fleetscope.statsd_dropped", "fleetscope.statsd_received", "app.a", "app.b"]


def test_parse_address() -> None:
    assert parse_address("8125") == ("127.0.0.1", 8125)
    assert parse_address("0.0.0.0:9125") == ("0.0.0.0", 9125)
    assert parse_address("[::1]:8125") == ("::1", 8125)
    for bad in ("", "x", "host:", "host:0", "1:99999"):
        with pytest.raises(InputError) as err:
            parse_address(bad)
        assert err.value.field == "statsd"


def test_agent_learns_new_metrics_at_runtime() -> None:
    async def main() -> None:
        src = StatsdSource(StatsdConfig(port=0))
        bus = MemoryBus()
        agent = Agent(bus, [src], hostname="h1")
        assert "app.jobs" not in agent.catalog
        await src.start()
        try:
            host, port = src.addresses[0]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.sendto(b"jobs:4|ms|#queue:mail", (host, port))
            _reader, writer = await asyncio.open_connection(host, port)
            writer.write(b"jobs:6|ms|#queue:sms,prio:hi\nbad line\n")
            await writer.drain()
            writer.close()
            for _ in range(100):
                await asyncio.sleep(0.02)
                if src.received == 2:
                    break
            assert agent.refresh_catalog()
            assert not agent.refresh_catalog(), "nothing new the second time"
            fields = [f.name for f in agent.catalog.get("app", "jobs").fields]
            assert fields == ["hostname", "queue", "prio", "value"]
            agent.enable(_inst(7, agent.catalog, {"module": "app", "stat": "jobs",
                                                  "decomposition": ["queue", "value"]}))
            batch = agent.tick(time.time())
            (partial,) = batch.partials
            assert partial.warning is None
            assert partial.value["mail"]["count"] == 1 and partial.value["sms"]["sum"] == 6
            assert src.dropped == {"syntax": 1}
        finally:
            src.close()

    asyncio.run(main())


@pytest.fixture
def statsd_server(tmp_path) -> Server:
    port = free_port()
    srv = Server(tmp_path, free_port(), ["--statsd", f"127.0.0.1:{port}", "--ingest-max-keys", "3"]).start()
    srv.statsd_port = port
    yield srv
    srv.stop()


def _values(c: httpx.Client, inst_id: int, n: int = 30) -> list[dict]:
    return c.get(f"{API}/instrumentations/{inst_id}/value", params={"ndatapoints": n}).json()


def test_udp_and_tcp_end_to_end_through_the_api(statsd_server: Server) -> None:
    port = statsd_server.statsd_port
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with statsd_server.client() as c, udp:
        # Discovery: a new name appears within a tick or so of its first event.
        udp.sendto(b"checkout.latency:1|ms|#route:/pay", ("127.0.0.1", port))
        udp.sendto(b"checkout.orders:1|c|#route:/pay", ("127.0.0.1", port))

        def discovered():
            ms = {m["name"]: m for m in c.get(f"{API}/metrics").json()["metrics"]}
            return ms if {"app.checkout_latency", "app.checkout_orders"} <= ms.keys() else None

        metrics = wait_for(discovered, timeout=5)
        fields = {f["name"]: f for f in metrics["app.checkout_latency"]["fields"]}
        assert fields["value"]["kind"] == "numeric" and fields["value"]["type"]["name"] == "ms"
        assert fields["route"]["kind"] == "discrete"

        heat = c.post(f"{API}/instrumentations", json={
            "module": "app", "stat": "checkout_latency", "decomposition": ["route", "value"]}).json()
        orders = c.post(f"{API}/instrumentations", json={
            "module": "app", "stat": "checkout_orders", "decomposition": ["route"]}).json()
        assert "id" in heat and "id" in orders, (heat, orders)
        # Wait until the agent evaluates both (a data point with a source), then send.
        for inst in (heat, orders):
            wait_for(lambda i=inst: [p for p in _values(c, i["id"], 3) if p["nsources"]], timeout=10)
        latencies = [0.25, 1, 2, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610, 987, 1500]
        expected = {"/pay": Histogram(), "/cart": Histogram()}
        sent_orders = {"/pay": 0.0, "/cart": 0.0}
        for i, ms in enumerate(latencies):
            route = "/pay" if i % 3 else "/cart"
            udp.sendto(f"checkout.latency:{ms}|ms|#route:{route}".encode(), ("127.0.0.1", port))
            expected[route].record(ms)
        tcp_lines = []
        for i in range(40):
            route = "/pay" if i % 2 else "/cart"
            tcp_lines.append(f"checkout.orders;route={route}:{i % 5 + 1}|c")
            sent_orders[route] += i % 5 + 1
        tcp_lines.append("checkout.latency:42|ms|@0.5|#route:/cart")
        expected["/cart"].record(42, 2)
        tcp_lines.append("not statsd at all")
        with socket.create_connection(("127.0.0.1", port)) as tcp:
            tcp.sendall(("\n".join(tcp_lines) + "\n").encode())

        def merged():
            pts = _values(c, heat["id"])
            got: dict[str, Histogram] = {}
            for p in pts:
                for route, h in (p["value"] or {}).items():
                    got.setdefault(route, Histogram()).merge(Histogram.from_json(h))
            want = sum(h.count for h in expected.values())
            return got if sum(h.count for h in got.values()) >= want else None

        got = wait_for(merged, timeout=10)
        assert got == expected, "the histograms hold exactly the values sent"
        totals = {"/pay": 0.0, "/cart": 0.0}
        for p in _values(c, orders["id"]):
            for route, x in (p["value"] or {}).items():
                totals[route] += x
        assert totals == sent_orders
        # The bad line was counted by reason and kept out of every metric.
        dropped = c.post(f"{API}/instrumentations", json={
            "module": "fleetscope", "stat": "statsd_dropped", "decomposition": ["reason"]}).json()
        capped = "\n".join(f"capped:1|c|#k:{v}" for v in "abcde")  # --ingest-max-keys 3
        udp.sendto(f"oops|zz\nfine:1|c\n{capped}".encode(), ("127.0.0.1", port))

        def drops():
            total: dict[str, float] = {}
            for p in _values(c, dropped["id"], 10):
                for reason, n in (p["value"] or {}).items():
                    total[reason] = total.get(reason, 0) + n
            return total if total.get("syntax") and total.get("too_many_keys") else None

        assert wait_for(drops, timeout=10) == {"syntax": 1, "too_many_keys": 2}
        names = {m["name"] for m in c.get(f"{API}/metrics").json()["metrics"]}
        assert "app.fine" in names and not any("oops" in n for n in names)


def test_serve_refuses_a_bad_or_busy_statsd_address(tmp_path) -> None:
    with pytest.raises(RuntimeError, match="statsd"):
        Server(tmp_path, free_port(), ["--statsd", "nope:99999"]).start(timeout=10)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        with pytest.raises(RuntimeError, match="statsd: cannot listen"):
            Server(tmp_path, free_port(), ["--statsd", str(port)]).start(timeout=10)


def test_catalog_learns_fields_of_a_known_metric() -> None:
    cat = Catalog()
    src = StatsdSource()
    _tick(src, "a:1|c")
    cat.add(src.metrics()[2])
    _tick(src, "a:1|c|#k:v")
    cat.add(src.metrics()[2])
    assert [f.name for f in cat.get("app", "a").fields] == ["hostname", "k"]


def test_fleet_agent_announces_statsd_metrics_over_nats(tmp_path) -> None:
    """`fleetscope agent --statsd` on a real NATS: the control plane learns a new StatsD
    metric from the agent's status within a tick or so, and its values reach the aggregator."""
    import subprocess
    import sys
    from pathlib import Path

    from fleetscope.aggregator.aggregator import Aggregator
    from fleetscope.api.control import ControlPlane
    from fleetscope.bus.nats import NatsBus, NatsOptions
    from fleetscope.store.open import open_store
    from tests.nats_server import NatsServer
    from tests.test_nats import seen_keys

    nats = NatsServer(tmp_path).start()
    statsd = free_port()

    async def scenario() -> tuple[set[str], float]:
        bus = NatsBus(NatsOptions(nats.url))
        await bus.connect()
        store = open_store(f"sqlite:///{tmp_path / 'defs.db'}")
        control = ControlPlane(store, bus, Catalog())
        aggregator = Aggregator(bus)
        await control.start()
        await aggregator.start()
        exe = Path(sys.executable).parent / "fleetscope"
        agent = subprocess.Popen([str(exe), "agent", "--bus", nats.url, "--hostname", "sd-a",
                                  "--statsd", f"127.0.0.1:{statsd}"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            for _ in range(100):
                if "sd-a" in control.known_hosts:
                    break
                await asyncio.sleep(0.1)
            udp.sendto(b"jobs.done:1|c|#queue:mail", ("127.0.0.1", statsd))
            sent = time.monotonic()
            for _ in range(50):
                if "app.jobs_done" in control.catalog:
                    break
                await asyncio.sleep(0.1)
            learnt = time.monotonic() - sent
            inst = await control.create({"module": "app", "stat": "jobs_done", "decomposition": ["queue"]})
            for _ in range(100):
                udp.sendto(b"jobs.done:1|c|#queue:mail", ("127.0.0.1", statsd))
                if seen_keys(aggregator, inst.id):
                    break
                await asyncio.sleep(0.1)
            return seen_keys(aggregator, inst.id), learnt
        finally:
            udp.close()
            agent.terminate()
            agent.wait(10)
            await aggregator.stop()
            await control.stop()
            await bus.close()
            store.close()

    try:
        keys, learnt = asyncio.run(scenario())
    finally:
        nats.stop()
    assert keys == {"mail"}
    assert learnt < 2.5, "discovery within a tick or so of the first event"


@pytest.mark.parametrize(("args", "field"), [
    (["--statsd", "nope"], "statsd"),
    (["--statsd", "8125", "--statsd-prefix", "a.b"], "statsd-prefix"),
    (["--otlp", "99999"], "otlp"),
    (["--scrape", "ftp://x"], "scrape"),
    (["--ingest-max-keys", "0"], "ingest-max-keys"),
])
def test_agent_refuses_bad_ingest_options(args: list[str], field: str) -> None:
    import subprocess
    import sys
    from pathlib import Path

    exe = Path(sys.executable).parent / "fleetscope"
    out = subprocess.run([str(exe), "agent", "--bus", "nats://127.0.0.1:1", *args],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 1 and f"error: {field}:" in out.stderr, out.stderr


def test_accepted_lines_are_counted_per_protocol() -> None:
    src = StatsdSource()
    src.ingest(b"a:1|c\nb:2|ms\nbad line", "udp")
    src.ingest(b"a:1|c", "tcp")
    src.begin_tick(1.0)
    assert sorted(src.collect("fleetscope.statsd_received").rows) == [("tcp", 1.0), ("udp", 2.0)]
    src.begin_tick(2.0)
    assert src.collect("fleetscope.statsd_received").rows == []
