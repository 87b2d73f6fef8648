"""The HTTP API of a real `fleetscope serve`: every endpoint, live data, and bad input on each."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from tests.conftest import Server, wait_for

API = "/api/v1"




def default_id(client: httpx.Client, metric: str, decomposition: list[str]) -> int:
    for inst in client.get(f"{API}/instrumentations").json()["instrumentations"]:
        if inst["metric"] == metric and inst["decomposition"] == decomposition:
            return inst["id"]
    raise AssertionError(f"no default instrumentation {metric} by {decomposition}")


def assert_error(resp: httpx.Response, status: int, field: str | None) -> None:
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert err["field"] == field, err
    assert err["message"]


def test_health_and_openapi(client: httpx.Client) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    doc = client.get(f"{API}/openapi.json").json()
    assert f"{API}/instrumentations/{{id}}/heatmap" in doc["paths"]


def test_metrics_discovery(client: httpx.Client) -> None:
    metrics = {m["name"]: m for m in client.get(f"{API}/metrics").json()["metrics"]}
    for name in ("cpu.usage", "cpu.load", "memory.used", "disk.ops", "disk.bytes", "disk.busy",
                 "net.bytes", "net.packets", "net.errors", "proc.cpu", "proc.rss"):
        assert name in metrics
    fields = {f["name"]: f for f in metrics["proc.cpu"]["fields"]}
    assert fields["hostname"]["kind"] == "discrete"
    assert fields["utilization"]["kind"] == "numeric"
    assert fields["utilization"]["type"]["base"] == "percent"
    assert metrics["memory.used"]["kind"] == "point"


def test_default_instrumentations_show_live_data(client: httpx.Client) -> None:
    insts = client.get(f"{API}/instrumentations").json()["instrumentations"]
    assert {(i["metric"], tuple(i["decomposition"])) for i in insts} >= {
        ("cpu.usage", ("mode",)), ("memory.used", ("type",)), ("disk.bytes", ("disk",)),
        ("net.bytes", ("nic",)), ("proc.cpu", ("execname",)), ("proc.cpu", ("utilization",))}
    cpu = default_id(client, "cpu.usage", ["mode"])

    def value():
        v = client.get(f"{API}/instrumentations/{cpu}/value").json()
        return v if v["value"] else None

    v = wait_for(value)
    assert (v["nsources"], v["expected"]) == (1, 1)
    # CPU seconds per second over all CPUs and modes: the number of CPUs.
    import os

    assert sum(v["value"].values()) == pytest.approx(os.cpu_count(), rel=0.2)
    assert set(v["value"]) <= {"user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
                               "guest", "guest_nice"}

    mem = default_id(client, "memory.used", ["type"])
    v = wait_for(lambda: client.get(f"{API}/instrumentations/{mem}/value").json()["value"])
    import psutil

    assert v["used"] + v["free"] + v["cached"] + v["buffers"] == pytest.approx(
        psutil.virtual_memory().total, rel=0.15)


def test_value_series_and_rollups(client: httpx.Client) -> None:
    cpu = default_id(client, "cpu.usage", ["mode"])
    wait_for(lambda: len([p for p in client.get(f"{API}/instrumentations/{cpu}/value",
                                                params={"ndatapoints": 4}).json() if p["value"]]) == 4)
    points = client.get(f"{API}/instrumentations/{cpu}/value", params={"ndatapoints": 4}).json()
    starts = [p["start_time"] for p in points]
    assert starts == list(range(starts[0], starts[0] + 4))
    assert all(p["duration"] == 1 for p in points)
    # One point of 4 seconds sums the four per-second points (cpu.usage is an interval metric).
    rolled = client.get(f"{API}/instrumentations/{cpu}/value",
                        params={"start_time": starts[0], "duration": 4}).json()
    assert rolled["duration"] == 4
    assert sum(rolled["value"].values()) == pytest.approx(
        sum(sum(p["value"].values()) for p in points), rel=1e-6, abs=0.15)
    # A range in the future (or before the window) is a gap, not zeros.
    gap = client.get(f"{API}/instrumentations/{cpu}/value", params={"start_time": 1000}).json()
    assert gap["value"] is None and gap["nsources"] == 0


def test_crud_round_trip(client: httpx.Client) -> None:
    body = {"module": "proc", "stat": "cpu", "decomposition": ["execname"],
            "predicate": 'execname != "idle" and hostname == "web1"', "granularity": 1, "retention": "10m"}
    created = client.post(f"{API}/instrumentations", json=body)
    assert created.status_code == 201, created.text
    inst = created.json()
    assert inst["retention"] == 600
    assert inst["predicate"] == {"and": [{"ne": ["execname", "idle"]}, {"eq": ["hostname", "web1"]}]}
    assert inst["shape"] == "discrete"
    got = client.get(f"{API}/instrumentations/{inst['id']}").json()
    assert got == inst
    changed = client.patch(f"{API}/instrumentations/{inst['id']}", json={"retention": 1200,
                                                                        "persist": True}).json()
    assert (changed["retention"], changed["persist"]) == (1200, True)
    assert client.get(f"{API}/instrumentations/{inst['id']}").json()["retention"] == 1200
    assert client.delete(f"{API}/instrumentations/{inst['id']}").status_code == 204
    assert client.get(f"{API}/instrumentations/{inst['id']}").status_code == 404


def test_predicate_filters_a_real_process(client: httpx.Client) -> None:
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        inst = client.post(f"{API}/instrumentations", json={
            "module": "proc", "stat": "cpu", "decomposition": ["pid"],
            "predicate": {"eq": ["pid", burner.pid]}}).json()

        def busy():
            pts = client.get(f"{API}/instrumentations/{inst['id']}/value", params={"ndatapoints": 3}).json()
            full = [p["value"] for p in pts if p["value"]]
            return full if len(full) == 3 else None

        points = wait_for(busy, timeout=15)
        for value in points:
            assert set(value) == {str(burner.pid)}, "the predicate keeps only the burner"
            # One thread spinning: at most one CPU second per second, and clearly busy
            # (the bound is loose because other tests may share the two cores).
            assert value[str(burner.pid)] <= 1.1
        assert sum(v[str(burner.pid)] for v in points) / len(points) >= 0.4
        client.delete(f"{API}/instrumentations/{inst['id']}")
    finally:
        burner.kill()
        burner.wait()


def test_distribution_endpoints(client: httpx.Client) -> None:
    heat = default_id(client, "proc.cpu", ["utilization"])
    wait_for(lambda: client.get(f"{API}/instrumentations/{heat}/value").json()["value"])
    v = client.get(f"{API}/instrumentations/{heat}/value").json()["value"]
    assert v["count"] >= 5, "every process is counted in the distribution"
    hm = client.get(f"{API}/instrumentations/{heat}/heatmap",
                    params={"duration": 10, "nbuckets": 20}).json()
    assert hm["nbuckets"] == 20 and len(hm["times"]) == 10 and len(hm["counts"]) == 10
    assert all(len(col) == 20 for col in hm["counts"])
    assert hm["ymax"] > hm["ymin"] == 0
    assert hm["unit"]["base"] == "percent"
    png = client.get(f"{API}/instrumentations/{heat}/heatmap",
                     params={"format": "png", "width": 300, "height": 100, "duration": 10})
    assert png.headers["content-type"] == "image/png"
    assert png.content[:8] == b"\x89PNG\r\n\x1a\n"
    t = hm["times"][-1]
    details = client.get(f"{API}/instrumentations/{heat}/heatmap/details",
                         params={"t": t, "ymin": 0, "ymax": hm["ymax"]}).json()
    assert details["total"] == pytest.approx(
        client.get(f"{API}/instrumentations/{heat}/value", params={"start_time": t}).json()["value"]["count"],
        rel=0.01)
    pct = client.get(f"{API}/instrumentations/{heat}/percentiles", params={"q": "0.5,0.99"}).json()
    assert set(pct["percentiles"]) == {"0.5", "0.99"}
    assert pct["percentiles"]["0.5"] <= pct["percentiles"]["0.99"]
    avg = client.get(f"{API}/instrumentations/{heat}/average").json()
    assert avg["average"] is not None
    # The latest slot's average is its histogram's sum / count, as /value gives that slot.
    h = client.get(f"{API}/instrumentations/{heat}/value", params={"start_time": avg["start_time"]}).json()
    assert h["start_time"] == avg["start_time"] and h["value"]["count"] > 0
    assert avg["count"] == pytest.approx(h["value"]["count"])
    assert avg["average"] == pytest.approx(h["value"]["sum"] / h["value"]["count"], rel=1e-9)
    # and so for every slot of the heatmap's range
    span = {"start_time": hm["times"][0], "ndatapoints": len(hm["times"])}
    avgs = client.get(f"{API}/instrumentations/{heat}/average", params=span).json()
    values = client.get(f"{API}/instrumentations/{heat}/value", params=span).json()
    assert [a["start_time"] for a in avgs] == [v["start_time"] for v in values] == hm["times"]
    full = [(a, v["value"]) for a, v in zip(avgs, values, strict=True) if v["value"]]
    assert any(v["count"] > 0 for _, v in full)
    for a, v in full:
        assert a["count"] == pytest.approx(v["count"])
        if v["count"] > 0:
            assert a["average"] == pytest.approx(v["sum"] / v["count"], rel=1e-9)
        else:  # nothing counted in that slot (the server had just started): no average
            assert a["average"] is None


def test_idle_instrumentations_expire(client: httpx.Client) -> None:
    inst = client.post(f"{API}/instrumentations", json={"module": "cpu", "stat": "load",
                                                         "idle_max": 1}).json()
    wait_for(lambda: client.get(f"{API}/instrumentations/{inst['id']}").status_code == 404, timeout=15)


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"module": "nope", "stat": "cpu"}, 404, "stat"),
        ({"module": "proc"}, 422, "stat"),
        ({"module": "proc", "stat": "cpu", "decomposition": ["bogus"]}, 422, "decomposition"),
        ({"module": "proc", "stat": "cpu", "decomposition": ["execname", "pid"]}, 422, "decomposition"),
        ({"module": "proc", "stat": "cpu", "predicate": "execname >"}, 422, "predicate"),
        ({"module": "proc", "stat": "cpu", "predicate": {"gt": ["execname", 3]}}, 422, "predicate"),
        ({"module": "proc", "stat": "cpu", "predicate": 'cmd ~ "("'}, 422, "predicate"),
        ({"module": "proc", "stat": "cpu", "granularity": 0}, 422, "granularity"),
        ({"module": "proc", "stat": "cpu", "granularity": [1]}, 422, "granularity"),
        ({"module": "proc", "stat": "cpu", "retention": "forever"}, 422, "retention"),
        ({"module": "proc", "stat": "cpu", "idle_max": -5}, 422, "idle_max"),
        ({"module": "proc", "stat": "cpu", "persist": [1]}, 422, "persist"),
        ({"module": "proc", "stat": "cpu", "colour": "red"}, 422, "colour"),
    ],
)
def test_create_rejects_bad_bodies(client: httpx.Client, body: dict, status: int, field: str) -> None:
    before = client.get(f"{API}/instrumentations").json()
    assert_error(client.post(f"{API}/instrumentations", json=body), status, field)
    assert client.get(f"{API}/instrumentations").json() == before, "a bad request changes nothing"


def test_malformed_bodies_are_400(client: httpx.Client) -> None:
    resp = client.post(f"{API}/instrumentations", content=b"{not json",
                       headers={"content-type": "application/json"})
    assert_error(resp, 400, "body")
    assert_error(client.post(f"{API}/instrumentations", json=[1, 2]), 400, "body")


def test_update_and_delete_reject_bad_input(client: httpx.Client) -> None:
    inst = client.post(f"{API}/instrumentations", json={"module": "cpu", "stat": "load"}).json()
    url = f"{API}/instrumentations/{inst['id']}"
    assert_error(client.patch(url, json={"granularity": 5}), 422, "granularity")
    assert_error(client.patch(url, json={"retention": 0}), 422, "retention")
    assert_error(client.patch(url, json={"idle_max": "later"}), 422, "idle_max")
    assert client.get(url).json() == inst, "rejected changes change nothing"
    assert_error(client.patch(f"{API}/instrumentations/999999", json={"retention": 60}), 404, "id")
    assert_error(client.delete(f"{API}/instrumentations/999999"), 404, "id")
    assert_error(client.get(f"{API}/instrumentations/abc"), 422, "id")
    client.delete(url)


@pytest.mark.parametrize(
    ("path", "params", "status", "field"),
    [
        ("value", {"duration": 0}, 422, "duration"),
        ("value", {"ndatapoints": 0}, 422, "ndatapoints"),
        ("value", {"ndatapoints": "many"}, 422, "ndatapoints"),
        ("value", {"start_time": -4}, 422, "start_time"),
        ("value", {"start_time": 100, "end_time": 50}, 422, "end_time"),
        ("percentiles", {"q": "2"}, 422, "q"),
        ("percentiles", {"q": "x"}, 422, "q"),
        ("percentiles", {"isolate": True, "exclude": True}, 422, "exclude"),
        ("average", {"selected": "a", "isolate": True, "exclude": True}, 422, "exclude"),
        ("heatmap", {"nbuckets": 0}, 422, "nbuckets"),
        ("heatmap", {"coloring": "rainbow"}, 422, "coloring"),
        ("heatmap", {"format": "gif"}, 422, "format"),
        ("heatmap", {"ymin": 5, "ymax": 1}, 422, "ymax"),
        ("heatmap", {"width": 0, "format": "png"}, 422, "width"),
        ("heatmap/details", {"t": 1, "ymin": 5, "ymax": 1}, 422, "ymax"),
        ("heatmap/details", {"ymin": 0, "ymax": 1}, 422, "t"),
        ("heatmap/keys", {"ndatapoints": 0}, 422, "ndatapoints"),
    ],
)
def test_distribution_queries_reject_bad_parameters(client: httpx.Client, path: str, params: dict,
                                                    status: int, field: str) -> None:
    heat = default_id(client, "proc.cpu", ["utilization"])
    assert_error(client.get(f"{API}/instrumentations/{heat}/{path}", params=params), status, field)


def test_distribution_endpoints_need_a_numeric_decomposition(client: httpx.Client) -> None:
    cpu = default_id(client, "cpu.usage", ["mode"])
    for path in ("heatmap", "heatmap/keys", "percentiles", "average"):
        assert_error(client.get(f"{API}/instrumentations/{cpu}/{path}"), 409, "decomposition")
    # A distribution without a discrete field has no keys either.
    heat = default_id(client, "proc.cpu", ["utilization"])
    assert_error(client.get(f"{API}/instrumentations/{heat}/heatmap/keys"), 409, "decomposition")
    for path in ("value", "heatmap", "percentiles", "average"):
        assert_error(client.get(f"{API}/instrumentations/424242/{path}"), 404, "id")


def test_unknown_routes_are_json_404(client: httpx.Client) -> None:
    assert_error(client.get(f"{API}/nothing-here"), 404, None)


def test_definitions_survive_a_restart(fresh_server: Server) -> None:
    with fresh_server.client() as c:
        ndefaults = len(c.get(f"{API}/instrumentations").json()["instrumentations"])
        mine = c.post(f"{API}/instrumentations", json={"module": "net", "stat": "packets",
                                                        "decomposition": ["nic"], "idle_max": 0}).json()
    fresh_server.stop()
    fresh_server.start()
    with fresh_server.client() as c:
        insts = c.get(f"{API}/instrumentations").json()["instrumentations"]
        assert len(insts) == ndefaults + 1, "defaults are created once, not again on restart"
        assert c.get(f"{API}/instrumentations/{mine['id']}").json() == mine
        wait_for(lambda: c.get(f"{API}/instrumentations/{mine['id']}/value").json()["value"] is not None)


def test_hosts_lists_the_local_agent(client: httpx.Client) -> None:
    import socket

    from fleetscope import __version__

    def local():
        hosts = client.get(f"{API}/hosts").json()["hosts"]
        return next((h for h in hosts if h["hostname"] == socket.gethostname() and h["instrumentations"]),
                    None)

    host = wait_for(local, timeout=15)
    assert host["status"] == "online"
    assert host["version"] == __version__
    assert abs(host["clock_offset"]) < 1.0, "same clock in one process"
    assert default_id(client, "cpu.usage", ["mode"]) in host["instrumentations"]
    buffer = host["buffer"]
    assert (buffer["queued"], buffer["dropped"], buffer["oversized"], buffer["replayed"]) == (0, 0, 0, 0), (
        "nothing waits to be sent, nothing lost or sent twice")
    assert buffer["unacked"] <= 4, f"only the last seconds wait for their acknowledgement: {buffer}"
