"""The API's contract with clients, against a real `fleetscope serve`: bodies without a JSON
Content-Type, ids no store can hold, 405s with Allow, strict types, the one-or-many rule, the
OpenAPI document describing what the server really answers, and the docs page offline."""

from __future__ import annotations

import re
import socket

import httpx
import pytest

from tests.test_api import API, assert_error, default_id, wait_for

HUGE_IDS = [2**63, 2**63 + 1, 42364927420206627684352]


def raw_request(server_url: str, method: str, path: str, body: bytes, headers: dict[str, str]) -> tuple:
    """Send exactly these bytes (no client adds a Content-Type); ``(status, headers, body)``."""
    host, port = server_url.removeprefix("http://").split(":")
    head = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: close",
            f"Content-Length: {len(body)}", *(f"{k}: {v}" for k, v in headers.items())]
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head_text, _, payload = data.partition(b"\r\n\r\n")
    lines = head_text.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    got = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    return status, got, payload


@pytest.mark.parametrize("headers", [{}, {"Content-Type": "application/x-www-form-urlencoded"},
                                     {"Content-Type": "text/plain"}])
def test_json_bodies_count_whatever_the_content_type(server, client: httpx.Client, headers: dict) -> None:
    """What `curl -d '{...}'` sends (form-urlencoded), or no Content-Type at all, is taken as JSON."""
    body = b'{"metric": "cpu.load", "idle_max": 0}'
    status, _, payload = raw_request(server.url, "POST", f"{API}/instrumentations", body, headers)
    assert status == 201, payload
    created = httpx.Response(status, content=payload).json()
    assert created["metric"] == "cpu.load" and created["idle_max"] == 0
    assert client.get(f"{API}/instrumentations/{created['id']}").json() == created
    name = f"curl {sorted(headers.items())}"
    status, _, payload = raw_request(server.url, "POST", f"{API}/dashboards",
                                     b'{"name": "%s", "panels": [{"instrumentation": %d}]}'
                                     % (name.encode(), created["id"]), headers)
    assert status == 201, payload
    dash = httpx.Response(status, content=payload).json()
    assert client.get(f"{API}/dashboards/{dash['id']}").json()["name"] == name
    status, _, payload = raw_request(server.url, "PATCH", f"{API}/instrumentations/{created['id']}",
                                     b'{"retention": 1200}', headers)
    assert status == 200 and httpx.Response(200, content=payload).json()["retention"] == 1200
    assert client.get(f"{API}/instrumentations/{created['id']}").json()["retention"] == 1200
    assert client.delete(f"{API}/dashboards/{dash['id']}").status_code == 204
    assert client.delete(f"{API}/instrumentations/{created['id']}").status_code == 204


def test_a_body_that_is_not_json_says_what_came(server, client: httpx.Client) -> None:
    before = client.get(f"{API}/instrumentations").json()
    status, _, payload = raw_request(server.url, "POST", f"{API}/instrumentations", b"metric=cpu.load",
                                     {"Content-Type": "application/x-www-form-urlencoded"})
    err = httpx.Response(status, content=payload).json()["error"]
    assert status == 400 and err["field"] == "body"
    assert "not JSON" in err["message"] and "application/x-www-form-urlencoded" in err["message"]
    assert client.get(f"{API}/instrumentations").json() == before


def id_routes(doc: dict) -> list[tuple[str, str]]:
    """Every (method, path) of the document with an ``{id}`` of an instrumentation or a dashboard."""
    return [(method, path) for path, ops in doc["paths"].items() if "{id}" in path for method in ops]


def test_ids_no_store_can_hold_are_404_on_every_id_route(client: httpx.Client) -> None:
    doc = client.get(f"{API}/openapi.json").json()
    routes = id_routes(doc)
    assert {p for _, p in routes} >= {f"{API}/instrumentations/{{id}}", f"{API}/dashboards/{{id}}",
                                     f"{API}/instrumentations/{{id}}/heatmap"}
    bodies = {"patch": {"retention": 60}, "put": {"name": "x", "panels": []}}
    for method, path in routes:
        for big in HUGE_IDS:
            params = {"t": 1, "ymin": 0, "ymax": 1} if path.endswith("/details") else None
            resp = client.request(method.upper(), path.replace("{id}", str(big)), params=params,
                                  json=bodies.get(method))
            assert resp.status_code == 404, (method, path, big, resp.text)
            assert resp.json()["error"]["field"] in ("id", "ids"), (method, path)
    assert_error(client.get(f"{API}/stream", params={"ids": f"1,{2**63}"}), 404, "ids")
    cpu = default_id(client, "cpu.usage", ["mode"])
    assert_error(client.post(f"{API}/dashboards", json={"name": "huge", "panels": [
        {"instrumentation": cpu}, {"instrumentation": 2**64}]}), 422, "panels[1].instrumentation")


def test_405_names_the_methods_allowed(client: httpx.Client) -> None:
    resp = client.patch(f"{API}/instrumentations/validate", json={"metric": "cpu.load"})
    assert_error(resp, 405, None)
    assert resp.headers["allow"] == "POST"
    resp = client.put(f"{API}/instrumentations", json={})
    assert resp.status_code == 405 and set(resp.headers["allow"].split(", ")) == {"GET", "POST"}
    resp = client.post(f"{API}/dashboards/1", json={})
    assert resp.status_code == 405 and set(resp.headers["allow"].split(", ")) == {"GET", "PUT", "DELETE"}
    assert_error(client.get(f"{API}/instrumentations/abc"), 422, "id"), "other words are still ids"


@pytest.mark.parametrize("flag", [0, 1, "true", "false", 0.0])
def test_persist_is_a_strict_bool(client: httpx.Client, flag) -> None:
    before = client.get(f"{API}/instrumentations").json()
    assert_error(client.post(f"{API}/instrumentations", json={"metric": "cpu.load", "persist": flag}),
                 422, "persist")
    assert_error(client.post(f"{API}/instrumentations/validate",
                             json={"metric": "cpu.load", "persist": flag}), 422, "persist")
    assert client.get(f"{API}/instrumentations").json() == before
    inst = before["instrumentations"][0]
    assert_error(client.patch(f"{API}/instrumentations/{inst['id']}", json={"persist": flag}), 422, "persist")
    assert client.get(f"{API}/instrumentations/{inst['id']}").json() == inst


def test_one_or_many_is_one_rule_for_value_percentiles_and_average(client: httpx.Client) -> None:
    heat = default_id(client, "proc.cpu", ["utilization"])
    url = f"{API}/instrumentations/{heat}"
    wait_for(lambda: len([p for p in client.get(f"{url}/value", params={"ndatapoints": 3}).json()
                          if p["value"]]) == 3)
    latest = client.get(f"{url}/value").json()["start_time"]
    # (parameters, number of points in the array answered, or None for one object)
    cases = [({}, None), ({"end_time": latest + 1}, None), ({"start_time": latest - 2}, None),
             ({"ndatapoints": 3}, 3), ({"end_time": latest + 1, "ndatapoints": 2}, 2),
             ({"start_time": latest - 2, "end_time": latest + 1}, 3)]
    for params, n in cases:
        shapes = {}
        for path in ("value", "percentiles", "average"):
            got = client.get(f"{url}/{path}", params=params).json()
            shapes[path] = ((len(got), [p["start_time"] for p in got]) if isinstance(got, list)
                            else (None, [got["start_time"]]))
        assert shapes["value"][0] == n, (params, shapes)
        if "start_time" in params or "end_time" in params:
            assert shapes["percentiles"] == shapes["value"] == shapes["average"], (params, shapes)
        else:  # "the latest": a new second may become final between the three requests
            assert {len(s[1]) for s in shapes.values()} == {n or 1} and \
                {s[0] for s in shapes.values()} == {n}, (params, shapes)
        if "end_time" in params:
            assert shapes["value"][1][-1] == params["end_time"] - 1, "the points end at end_time"
    doc = client.get(f"{API}/openapi.json").json()
    descriptions = {p: doc["paths"][f"{API}/instrumentations/{{id}}/{p}"]["get"]["description"]
                    for p in ("value", "percentiles", "average")}
    assert all("an array when `ndatapoints` is given" in d for d in descriptions.values())


def test_average_is_sum_over_count_of_the_same_slot(client: httpx.Client) -> None:
    """The average equals the histogram's own sum / count (histograms keep the sum exactly)."""
    heat = default_id(client, "proc.cpu", ["utilization"])
    url = f"{API}/instrumentations/{heat}"
    value = wait_for(lambda: (v := client.get(f"{url}/value").json())["value"] and v)
    t = value["start_time"]
    h = client.get(f"{url}/value", params={"start_time": t}).json()["value"]
    avg = client.get(f"{url}/average", params={"start_time": t}).json()
    assert avg["start_time"] == t and avg["count"] == pytest.approx(h["count"])
    assert avg["average"] == pytest.approx(h["sum"] / h["count"], rel=1e-9)


def test_openapi_declares_what_the_server_answers(client: httpx.Client) -> None:
    doc = client.get(f"{API}/openapi.json").json()
    schemas = doc["components"]["schemas"]
    error = schemas["ErrorBody"]
    assert error["required"] == ["error"]
    detail = schemas[error["properties"]["error"]["$ref"].rsplit("/", 1)[1]]
    assert set(detail["required"]) == {"code", "message", "field"}
    ops = {(m, p): op for p, item in doc["paths"].items() for m, op in item.items()}
    for (method, path), op in ops.items():
        errors = {code for code in op["responses"] if code.startswith("4")}
        for code in errors:
            if path == "/prometheus/api/v1/read" and code in ("400", "413"):  # plain text, as Prometheus'
                assert op["responses"][code]["content"]["text/plain"], (method, path, code)
                continue
            ref = op["responses"][code]["content"]["application/json"]["schema"]["$ref"]
            # The Prometheus API refuses a parameter in Prometheus' own envelope.
            prometheus = path.startswith("/prometheus/") and code == "400"
            assert ref.endswith("/PrometheusError" if prometheus else "/ErrorBody"), (method, path, code)
        if "{id}" in path:
            assert {"404", "422"} <= errors, (method, path)
        if method in ("post", "put", "patch") and "requestBody" in op:
            assert {"400", "422"} <= errors, (method, path)
    assert "409" in ops[("post", f"{API}/dashboards")]["responses"]
    assert "409" in ops[("get", f"{API}/instrumentations/{{id}}/heatmap")]["responses"]
    assert "HTTPValidationError" not in schemas, "no 422 shape the server never sends"
    create = schemas["InstrumentationCreate"]
    assert {"required": ["metric"]} in create["anyOf"] and {"required": ["module", "stat"]} in create["anyOf"]
    assert create["additionalProperties"] is False
    assert create["properties"]["persist"]["type"] == "boolean", "strict, and not null"
    dash = ops[("post", f"{API}/dashboards")]["requestBody"]["content"]["application/json"]["schema"]
    assert dash["required"] == ["name"] and dash["properties"]["panels"]["items"]["required"] == [
        "instrumentation"]
    value = ops[("get", f"{API}/instrumentations/{{id}}/value")]
    params = {p["name"]: p["schema"] for p in value["parameters"]}
    assert params["duration"]["anyOf"][0]["minimum"] == 1
    assert params["ndatapoints"]["anyOf"][0]["minimum"] == 1
    heatmap = ops[("get", f"{API}/instrumentations/{{id}}/heatmap")]["responses"]["200"]["content"]
    assert {"application/json", "image/png"} <= set(heatmap)


def test_the_openapi_bounds_are_the_servers(client: httpx.Client) -> None:
    """Each declared bound is where the server starts refusing: at the bound it answers, one
    past it a 422 naming the parameter."""
    heat = default_id(client, "proc.cpu", ["utilization"])
    doc = client.get(f"{API}/openapi.json").json()
    op = doc["paths"][f"{API}/instrumentations/{{id}}/heatmap"]["get"]
    bounds = {p["name"]: p["schema"] for p in op["parameters"]}
    nbuckets = bounds["nbuckets"]
    url = f"{API}/instrumentations/{heat}/heatmap"
    assert client.get(url, params={"nbuckets": nbuckets["maximum"], "duration": 2}).status_code == 200
    assert_error(client.get(url, params={"nbuckets": nbuckets["maximum"] + 1}), 422, "nbuckets")
    assert_error(client.get(url, params={"nbuckets": nbuckets["minimum"] - 1}), 422, "nbuckets")


def test_docs_page_needs_nothing_from_outside(client: httpx.Client) -> None:
    page = client.get(f"{API}/docs")
    assert page.status_code == 200 and "SwaggerUIBundle" in page.text
    urls = re.findall(r"""(?:src|href|url)\s*[:=]\s*['"]([^'"]+)['"]""", page.text)
    assert urls and all(u.startswith("/") for u in urls), urls
    assert "http://" not in page.text and "https://" not in page.text
    for u in urls:
        resp = client.get(u)
        assert resp.status_code == 200, u
        assert len(resp.content) > 1000, u
    assert_error(client.get(f"{API}/docs/assets/index.html"), 404, "name")
