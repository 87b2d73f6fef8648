"""The API the dashboard needs, on a real `fleetscope serve`: dashboards, live streams, and the
small additions for the page (create-body validation, heatmap columns, cell details per column)."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from tests.conftest import Server
from tests.test_api import assert_error, default_id, wait_for

API = "/api/v1"


def read_events(client: httpx.Client, url: str, want: int, timeout: float = 10.0,
                headers: dict | None = None) -> list[tuple[str, dict | None, str | None]]:
    """The first ``want`` events of an SSE stream as (event, data, id), comments skipped."""
    events: list[tuple[str, dict | None, str | None]] = []
    deadline = time.monotonic() + timeout
    with client.stream("GET", url, headers=headers, timeout=timeout) as resp:
        assert resp.status_code == 200, resp.read()
        assert resp.headers["content-type"].startswith("text/event-stream")
        kind, data, ident = "message", None, None
        for line in resp.iter_lines():
            if time.monotonic() > deadline:
                raise AssertionError(f"only {len(events)} events within {timeout} s")
            if line == "":
                if data is not None:
                    events.append((kind, data, ident))
                    if len(events) >= want:
                        return events
                kind, data, ident = "message", None, None
            elif line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
            elif line.startswith("id: "):
                ident = line[4:]
    raise AssertionError("the stream ended early")


# -- dashboards ----------------------------------------------------------------------------------


def test_new_routes_are_in_the_openapi_document(client: httpx.Client) -> None:
    paths = client.get(f"{API}/openapi.json").json()["paths"]
    for path in ("/dashboards", "/dashboards/{id}", "/stream", "/instrumentations/{id}/stream",
                 "/instrumentations/validate"):
        assert f"{API}{path}" in paths
    assert "text/event-stream" in paths[f"{API}/stream"]["get"]["responses"]["200"]["content"]


def test_dashboard_crud_round_trip(client: httpx.Client) -> None:
    cpu = default_id(client, "cpu.usage", ["mode"])
    heat = default_id(client, "proc.cpu", ["utilization"])
    body = {"name": "crud board", "panels": [
        {"instrumentation": cpu, "options": {"chart": "lines", "width": 2}},
        {"instrumentation": heat, "options": {"coloring": "linear", "overlays": ["avg", "p99", "p99.9"],
                                              "ymin": 0, "ymax": 50}},
        {"instrumentation": cpu}]}
    resp = client.post(f"{API}/dashboards", json=body)
    assert resp.status_code == 201, resp.text
    board = resp.json()
    assert isinstance(board["id"], int)
    assert board["name"] == "crud board"
    assert board["panels"][0] == {"instrumentation": cpu, "options": {"chart": "lines", "width": 2}}
    assert board["panels"][2] == {"instrumentation": cpu, "options": {}}
    assert board["created"] == board["updated"] and board["created"] <= time.time()
    url = f"{API}/dashboards/{board['id']}"
    assert client.get(url).json() == board
    assert board in client.get(f"{API}/dashboards").json()["dashboards"]

    # PUT replaces name and panels; a document read back may be sent back as it is.
    changed = {**board, "name": "crud board 2", "panels": board["panels"][:1]}
    updated = client.put(url, json=changed).json()
    assert updated["name"] == "crud board 2" and len(updated["panels"]) == 1
    assert updated["created"] == board["created"] and updated["updated"] >= board["updated"]
    assert client.get(url).json() == updated

    assert client.delete(url).status_code == 204
    assert_error(client.get(url), 404, "id")
    assert_error(client.delete(url), 404, "id")
    assert_error(client.put(url, json={"name": "x"}), 404, "id")


def test_dashboard_rows_round_trip(client: httpx.Client) -> None:
    cpu = default_id(client, "cpu.usage", ["mode"])
    body = {"name": "rows board", "rows": [{"title": " databases "}, {"title": "web", "collapsed": True}],
            "panels": [{"instrumentation": cpu}, {"instrumentation": cpu, "row": 1},
                       {"instrumentation": cpu, "row": 0, "options": {"width": 2}}]}
    board = client.post(f"{API}/dashboards", json=body).json()
    assert board["rows"] == [{"title": "databases", "collapsed": False}, {"title": "web", "collapsed": True}]
    assert [p.get("row") for p in board["panels"]] == [None, 1, 0]
    url = f"{API}/dashboards/{board['id']}"
    assert client.get(url).json() == board
    # A document without rows has none (its panels' rows would name nothing).
    flat = client.put(url, json={"name": "rows board", "panels": [{"instrumentation": cpu}]}).json()
    assert "rows" not in flat and client.get(url).json() == flat
    assert client.delete(url).status_code == 204


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({}, 422, "name"),
        ({"name": "   "}, 422, "name"),
        ({"name": 5}, 422, "name"),
        ({"name": "x" * 101}, 422, "name"),
        ({"name": "b", "colour": "red"}, 422, "colour"),
        ({"name": "b", "panels": {}}, 422, "panels"),
        ({"name": "b", "panels": [5]}, 422, "panels[0]"),
        ({"name": "b", "panels": [{}]}, 422, "panels[0].instrumentation"),
        ({"name": "b", "panels": [{"instrumentation": "1"}]}, 422, "panels[0].instrumentation"),
        ({"name": "b", "panels": [{"instrumentation": True}]}, 422, "panels[0].instrumentation"),
        ({"name": "b", "panels": [{"instrumentation": 987654}]}, 422, "panels[0].instrumentation"),
        ({"name": "b", "panels": [{"instrumentation": 1, "size": 2}]}, 422, "panels[0].size"),
        ({"name": "b", "panels": [{"instrumentation": 1, "options": []}]}, 422, "panels[0].options"),
        ({"name": "b", "panels": [{"instrumentation": 1, "options": {"width": 3}}]}, 422,
         "panels[0].options.width"),
        ({"name": "b", "panels": [{"instrumentation": 1, "options": {"chart": "pie"}}]}, 422,
         "panels[0].options.chart"),
        ({"name": "b", "panels": [{"instrumentation": 1, "options": {"coloring": "rainbow"}}]}, 422,
         "panels[0].options.coloring"),
        ({"name": "b", "panels": [{"instrumentation": 1, "options": {"overlays": ["p999"]}}]}, 422,
         "panels[0].options.overlays[0]"),
        ({"name": "b", "panels": [{"instrumentation": 1, "options": {"selected": ["a", "a"]}}]}, 422,
         "panels[0].options.selected"),
        ({"name": "b", "panels": [{"instrumentation": 1, "options": {"ymin": 5, "ymax": 1}}]}, 422,
         "panels[0].options.ymax"),
        ({"name": "b", "panels": [{"instrumentation": 1, "options": {"ymin": 5}}]}, 422,
         "panels[0].options.ymax"),
        ({"name": "b", "panels": [{"instrumentation": 1, "options": {"ymax": "big", "ymin": 0}}]}, 422,
         "panels[0].options.ymax"),
        ({"name": "b", "panels": [{"instrumentation": 1}] * 65}, 422, "panels"),
        ({"name": "b", "rows": {}}, 422, "rows"),
        ({"name": "b", "rows": [{"title": "r"}] * 33}, 422, "rows"),
        ({"name": "b", "rows": ["r"]}, 422, "rows[0]"),
        ({"name": "b", "rows": [{"title": "r"}, {}]}, 422, "rows[1].title"),
        ({"name": "b", "rows": [{"title": "  "}]}, 422, "rows[0].title"),
        ({"name": "b", "rows": [{"title": "x" * 101}]}, 422, "rows[0].title"),
        ({"name": "b", "rows": [{"title": "r", "collapsed": "yes"}]}, 422, "rows[0].collapsed"),
        ({"name": "b", "rows": [{"title": "r", "open": True}]}, 422, "rows[0].open"),
        ({"name": "b", "panels": [{"instrumentation": 1, "row": 0}]}, 422, "panels[0].row"),
        ({"name": "b", "rows": [{"title": "r"}], "panels": [{"instrumentation": 1, "row": 1}]}, 422,
         "panels[0].row"),
        ({"name": "b", "rows": [{"title": "r"}], "panels": [{"instrumentation": 1, "row": True}]}, 422,
         "panels[0].row"),
        ({"name": "b", "rows": [{"title": "r"}], "panels": [{"instrumentation": 1, "row": -1}]}, 422,
         "panels[0].row"),
        ([1, 2], 400, "body"),
    ],
)
def test_dashboard_rejects_bad_documents(client: httpx.Client, body: object, status: int,
                                         field: str) -> None:
    before = client.get(f"{API}/dashboards").json()
    assert_error(client.post(f"{API}/dashboards", json=body), status, field)
    assert client.get(f"{API}/dashboards").json() == before, "a bad request changes nothing"


def test_dashboard_names_are_unique_and_bad_updates_change_nothing(client: httpx.Client) -> None:
    a = client.post(f"{API}/dashboards", json={"name": "unique a"}).json()
    b = client.post(f"{API}/dashboards", json={"name": "unique b"}).json()
    assert_error(client.post(f"{API}/dashboards", json={"name": "unique a"}), 409, "name")
    assert_error(client.put(f"{API}/dashboards/{b['id']}", json={"name": "unique a"}), 409, "name")
    assert client.put(f"{API}/dashboards/{a['id']}", json={"name": "unique a"}).status_code == 200
    assert_error(client.put(f"{API}/dashboards/{b['id']}", json={"name": "b", "panels": [{}]}), 422,
                 "panels[0].instrumentation")
    assert client.get(f"{API}/dashboards/{b['id']}").json() == b
    resp = client.post(f"{API}/dashboards", content=b"{oops", headers={"content-type": "application/json"})
    assert_error(resp, 400, "body")
    assert_error(client.get(f"{API}/dashboards/abc"), 422, "id")
    for d in (a, b):
        client.delete(f"{API}/dashboards/{d['id']}")


def test_dashboards_survive_a_restart(fresh_server: Server) -> None:
    with fresh_server.client() as c:
        board = c.post(f"{API}/dashboards", json={"name": "kept", "panels": [{"instrumentation": 1}]}).json()
    fresh_server.stop()
    fresh_server.start()
    with fresh_server.client() as c:
        assert c.get(f"{API}/dashboards/{board['id']}").json() == board


# -- the live stream --------------------------------------------------------------------------------


def test_stream_pushes_final_values_of_several_instrumentations(client: httpx.Client) -> None:
    cpu = default_id(client, "cpu.usage", ["mode"])
    heat = default_id(client, "proc.cpu", ["utilization"])
    events = read_events(client, f"{API}/stream?ids={cpu},{heat}", want=6)
    assert {e[0] for e in events} == {"value"}
    assert {e[1]["instrumentation"] for e in events} == {cpu, heat}
    for _, data, ident in events:
        assert ident == str(data["start_time"])
        assert set(data) == {"instrumentation", "start_time", "duration", "value", "nsources",
                             "expected", "revised"}
    cpu_points = [d for _, d, _ in events if d["instrumentation"] == cpu]
    assert all(isinstance(d["value"], dict) for d in cpu_points)
    # What the stream says is what the value endpoint says for that slot.
    first = cpu_points[0]
    stored = client.get(f"{API}/instrumentations/{cpu}/value",
                        params={"start_time": first["start_time"]}).json()
    assert stored["value"] == first["value"]
    heat_points = [d for _, d, _ in events if d["instrumentation"] == heat]
    assert all(d["value"]["count"] > 0 for d in heat_points if d["value"])


def test_stream_of_one_instrumentation_and_replay(client: httpx.Client) -> None:
    cpu = default_id(client, "cpu.usage", ["mode"])
    latest = wait_for(lambda: client.get(f"{API}/instrumentations/{cpu}/value").json()["value"]
                      and client.get(f"{API}/instrumentations/{cpu}/value").json())
    since = latest["start_time"] - 5
    # A reconnecting client names the last slot it saw: the points since then come first.
    events = read_events(client, f"{API}/instrumentations/{cpu}/stream", want=4,
                         headers={"last-event-id": str(since)})
    times = [d["start_time"] for _, d, _ in events]
    assert times == list(range(since, since + 4))
    assert all(d["instrumentation"] == cpu for _, d, _ in events)


@pytest.mark.parametrize(
    ("url", "status", "field"),
    [
        (f"{API}/stream", 422, "ids"),
        (f"{API}/stream?ids=", 422, "ids"),
        (f"{API}/stream?ids=1,x", 422, "ids"),
        (f"{API}/stream?ids=0", 422, "ids"),
        (f"{API}/stream?ids=1,987654", 404, "ids"),
        (f"{API}/stream?ids=" + ",".join(str(i) for i in range(1, 102)), 422, "ids"),
        (f"{API}/instrumentations/987654/stream", 404, "ids"),
        (f"{API}/instrumentations/abc/stream", 422, "id"),
    ],
)
def test_stream_rejects_bad_requests(client: httpx.Client, url: str, status: int, field: str) -> None:
    assert_error(client.get(url), status, field)


def test_hub_fans_out_once_encoded_points_and_bounds_each_queue() -> None:
    from fleetscope.api.stream import Hub, Subscription
    from fleetscope.model.instrumentation import Instrumentation
    from fleetscope.model.series import DataPoint

    inst = Instrumentation(id=3, module="cpu", stat="usage", predicate={}, decomposition=("mode",),
                           granularity=1, retention=60, idle_max=0, persist=False, created=0.0,
                           shape="discrete", discrete="mode")
    hub = Hub()
    mine, other = hub.subscribe([3, 4]), hub.subscribe([4])
    small = Subscription([3], maxsize=2)
    hub.subscriptions.add(small)
    for t in range(5):
        hub.publish(inst, DataPoint(100 + t, 1, {"user": 0.5}, 1, 1))
    assert len(mine.events) == 5 and not other.events
    assert mine.events[-1] is small.events[-1], "encoded once for every subscriber"
    assert small.overflowed and [e.split("\n")[1] for e in small.events] == ["id: 103", "id: 104"]
    event = mine.events[0]
    assert event.startswith("event: value\nid: 100\ndata: ") and event.endswith("\n\n")
    assert json.loads(event.split("data: ")[1]) == {"instrumentation": 3, "start_time": 100, "duration": 1,
                                                     "value": {"user": 0.5}, "nsources": 1, "expected": 1,
                                                     "revised": False}
    got = asyncio.run(mine.get(0.01))
    assert len(got) == 5 and not mine.events
    started = time.monotonic()
    assert asyncio.run(mine.get(0.05)) == [] and time.monotonic() - started >= 0.04
    hub.unsubscribe(mine)
    hub.publish(inst, DataPoint(200, 1, {"user": 1.0}, 1, 1))
    assert not mine.events


def test_stream_ends_promptly_when_the_server_stops(fresh_server: Server) -> None:
    with httpx.Client(base_url=fresh_server.url, timeout=20) as c, \
            c.stream("GET", f"{API}/stream?ids=1") as resp:
        assert resp.status_code == 200
        lines = resp.iter_lines()
        assert next(lines).startswith("retry:")
        started = time.monotonic()
        fresh_server.stop()
        stopped = time.monotonic() - started
        # uvicorn would wait 5 s (its graceful timeout) for a stream that did not end by itself.
        assert stopped < 4.5, f"the server took {stopped:.1f} s to stop with a stream open"
        for _ in lines:  # the stream ends cleanly
            pass


def test_stream_frees_a_client_that_disconnects(fresh_server: Server) -> None:
    with httpx.Client(base_url=fresh_server.url, timeout=10) as c:
        for _ in range(5):
            with c.stream("GET", f"{API}/stream?ids=1,2") as resp:
                next(resp.iter_lines())
        # The server still answers and still streams to a new client.
        events = read_events(c, f"{API}/stream?ids=1", want=2)
        assert len(events) == 2


# -- additions for the page ----------------------------------------------------------------------------


def test_validate_checks_a_create_body_without_creating(client: httpx.Client) -> None:
    before = client.get(f"{API}/instrumentations").json()
    ok = client.post(f"{API}/instrumentations/validate", json={
        "module": "proc", "stat": "cpu", "decomposition": ["execname"], "predicate": 'execname != "idle"'})
    assert ok.status_code == 200, ok.text
    assert ok.json()["predicate"] == {"ne": ["execname", "idle"]}
    assert ok.json()["predicate_text"] == 'execname != "idle"'
    bad = client.post(f"{API}/instrumentations/validate", json={
        "module": "proc", "stat": "cpu", "predicate": "colour == 3"})
    assert_error(bad, 422, "predicate")
    assert "colour" in bad.json()["error"]["message"]
    assert_error(client.post(f"{API}/instrumentations/validate", json={"module": "proc", "stat": "cpu",
                                                                       "retention": "soon"}),
                 422, "retention")
    assert client.get(f"{API}/instrumentations").json() == before


def test_heatmap_columns_and_details_of_wider_columns(client: httpx.Client) -> None:
    heat = default_id(client, "proc.cpu", ["utilization"])
    wait_for(lambda: len([p for p in client.get(f"{API}/instrumentations/{heat}/value",
                                                 params={"ndatapoints": 6}).json() if p["value"]]) == 6)
    latest = client.get(f"{API}/instrumentations/{heat}/value").json()["start_time"]
    start, end = latest - 5, latest + 1
    fine = client.get(f"{API}/instrumentations/{heat}/heatmap",
                      params={"start_time": start, "end_time": end, "nbuckets": 10, "ymax": 200}).json()
    wide = client.get(f"{API}/instrumentations/{heat}/heatmap",
                      params={"start_time": start, "end_time": end, "ndatapoints": 2, "nbuckets": 10,
                              "ymax": 200}).json()
    assert (len(fine["times"]), fine["step"]) == (6, 1)
    assert (wide["times"], wide["step"]) == ([start, start + 3], 3)
    # A wide column holds the sum of its slots (an interval metric).
    for col in range(2):
        summed = [sum(fine["counts"][3 * col + i][row] for i in range(3)) for row in range(10)]
        assert wide["counts"][col] == pytest.approx(summed, rel=1e-4, abs=1e-3)
    # Without start and end: `duration` seconds in `ndatapoints` columns, ending with the latest slot.
    recent = client.get(f"{API}/instrumentations/{heat}/heatmap",
                        params={"duration": 60, "ndatapoints": 6}).json()
    assert (len(recent["times"]), recent["step"]) == (6, 10)
    # Cell details over a whole wide column.
    details = client.get(f"{API}/instrumentations/{heat}/heatmap/details",
                         params={"t": start, "duration": 3, "ymin": 0, "ymax": 200}).json()
    assert details["total"] == pytest.approx(sum(wide["counts"][0]) + wide["clipped_above"][0], rel=1e-3)
    assert_error(client.get(f"{API}/instrumentations/{heat}/heatmap", params={"ndatapoints": 0}), 422,
                 "ndatapoints")
    assert_error(client.get(f"{API}/instrumentations/{heat}/heatmap/details",
                            params={"t": start, "duration": 0, "ymin": 0, "ymax": 1}), 422, "duration")
    assert_error(client.get(f"{API}/instrumentations/{heat}/heatmap/details",
                            params={"t": -5, "ymin": 0, "ymax": 1}), 422, "t")
