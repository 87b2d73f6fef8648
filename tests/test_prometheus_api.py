"""The Prometheus HTTP API's discovery endpoints under /prometheus (#16): a real `fleetscope serve`,
Prometheus' own `promtool` as a client, two tenants and an operator, and bad requests answered in
Prometheus' error envelope."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import Server, free_port, wait_for

PROM = "/prometheus/api/v1"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, dict[str, str], dict]]:
    """A server with an operator's cpu.usage by mode, and tenant red's proc.cpu by execname (its
    scope: the server's own process, busy every second)."""
    srv = Server(tmp_path_factory.mktemp("promapi"), free_port(), auth=True).start()
    try:
        admin = srv.token("prom-admin")
        headers = {"authorization": f"Bearer {admin}"}
        api = httpx.Client(base_url=srv.url + "/api/v1", headers=headers, timeout=10)
        made = api.post("/tenants", json={"name": "red", "scope": 'execname == "fleetscope"'})
        assert made.status_code == 201, made.text
        tokens = {"admin": admin, "red": srv.token("prom-red", "operator", "red"),
                  "viewer": srv.token("prom-viewer", "viewer")}
        cpu = api.post("/instrumentations", json={"metric": "cpu.usage", "decomposition": ["mode"]}).json()
        red = httpx.post(srv.url + "/api/v1/instrumentations", timeout=10,
                         headers={"authorization": f"Bearer {tokens['red']}"},
                         json={"metric": "proc.cpu", "decomposition": ["execname"]}).json()
        for inst in (cpu, red):
            wait_for(lambda inst=inst: [p for p in api.get(f"/instrumentations/{inst['id']}/value",
                                                           params={"ndatapoints": 3}).json() if p["value"]],
                     timeout=20)
        yield srv, tokens, {"cpu": cpu, "red": red}
    finally:
        srv.stop()


def get(srv: Server, token: str, path: str, **params) -> httpx.Response:
    return httpx.get(srv.url + PROM + path, params=params, timeout=10,
                     headers={"authorization": f"Bearer {token}"})


def test_buildinfo_labels_and_values_in_prometheus_envelope(served) -> None:
    srv, tokens, insts = served
    info = get(srv, tokens["viewer"], "/status/buildinfo").json()
    assert info["status"] == "success" and info["data"]["version"]
    labels = get(srv, tokens["viewer"], "/labels").json()
    assert labels["status"] == "success"
    assert {"__name__", "instrumentation", "mode", "execname"} <= set(labels["data"])
    names = get(srv, tokens["viewer"], "/label/__name__/values").json()["data"]
    assert {"fleetscope_cpu_usage", "fleetscope_proc_cpu"} <= set(names)
    only_cpu = {"match[]": "fleetscope_cpu_usage"}
    modes = get(srv, tokens["viewer"], "/label/mode/values", **only_cpu).json()["data"]
    assert {"user", "system"} <= set(modes), modes  # idle may be 0 on a busy machine
    # Form-encoded POST, as Grafana sends it.
    ours = f'fleetscope_cpu_usage{{instrumentation="{insts["cpu"]["id"]}"}}'
    posted = httpx.post(srv.url + PROM + "/labels", data={"match[]": ours}, timeout=10,
                        headers={"authorization": f"Bearer {tokens['viewer']}"}).json()
    assert set(posted.get("data", posted)) == {"__name__", "instrumentation", "mode"}, posted


def test_series_select_with_all_four_matchers(served) -> None:
    srv, tokens, insts = served
    cpu = str(insts["cpu"]["id"])
    selector = f'fleetscope_cpu_usage{{instrumentation="{cpu}"}}'
    series = get(srv, tokens["admin"], "/series", **{"match[]": selector}).json()["data"]
    assert series
    assert all(s["__name__"] == "fleetscope_cpu_usage" and s["instrumentation"] == cpu for s in series)
    assert {s["mode"] for s in series} >= {"user", "system"}
    selector = f'fleetscope_cpu_usage{{mode=~"us.*|idle", mode!="idle", instrumentation="{cpu}"}}'
    picked = get(srv, tokens["admin"], "/series", **{"match[]": selector})
    assert {s["mode"] for s in picked.json()["data"]} == {"user"}
    others = get(srv, tokens["admin"], "/series",
                 **{"match[]": f'fleetscope_cpu_usage{{mode!~"idle|user", instrumentation="{cpu}"}}'})
    assert {"user", "idle"}.isdisjoint({s["mode"] for s in others.json()["data"]})
    assert {s["mode"] for s in others.json()["data"]} >= {"system"}


def test_a_tenant_sees_only_its_own_series(served) -> None:
    srv, tokens, insts = served
    names = get(srv, tokens["red"], "/label/__name__/values").json()["data"]
    assert names == ["fleetscope_proc_cpu"], "not the operators' cpu.usage"
    assert get(srv, tokens["red"], "/series", **{"match[]": "fleetscope_cpu_usage"}).json()["data"] == []
    theirs = get(srv, tokens["red"], "/series", **{"match[]": "fleetscope_proc_cpu"}).json()["data"]
    assert {s["instrumentation"] for s in theirs} == {str(insts["red"]["id"])}
    assert theirs and {s.get("execname") for s in theirs} <= {"fleetscope", "(other)"}, theirs
    meta = get(srv, tokens["red"], "/metadata").json()["data"]
    assert list(meta) == ["fleetscope_proc_cpu"] and meta["fleetscope_proc_cpu"][0]["type"] == "gauge"


def test_bad_requests_get_prometheus_errors(served) -> None:
    srv, tokens, _ = served
    for params, words in ((
            {}, "no match[]"), ({"match[]": "fleetscope_cpu_usage{"}, "not a series selector"),
            ({"match[]": 'fleetscope_cpu_usage{mode=~"("}'}, "regex"),
            ({"match[]": '{mode=~".*"}'}, "non-empty matcher"),
            ({"match[]": "fleetscope_cpu_usage", "start": "yesterday"}, "timestamp"),
            ({"match[]": "fleetscope_cpu_usage", "start": "200", "end": "100"}, "before start")):
        r = get(srv, tokens["viewer"], "/series", **params)
        assert r.status_code == 400, (params, r.text)
        body = r.json()
        assert body["status"] == "error" and body["errorType"] == "bad_data" and words in body["error"], body
    assert httpx.get(srv.url + PROM + "/labels", timeout=10).status_code == 401, "a token is needed"


def test_promtool_is_a_client(served) -> None:
    """promtool 2.42 sends credentials only as basic auth in the URL: the token is the password."""
    srv, tokens, _ = served
    promtool = shutil.which("promtool")
    assert promtool, "promtool (Debian's prometheus package) is installed by make test"
    url = srv.url.replace("http://", f"http://grafana:{tokens['viewer']}@") + "/prometheus"
    labels = subprocess.run([promtool, "query", "labels", url, "mode"], capture_output=True, text=True,
                            timeout=30)
    assert labels.returncode == 0, labels.stderr
    assert {"user", "system"} <= set(labels.stdout.split()), labels.stdout
    series = subprocess.run([promtool, "query", "series", "--match=fleetscope_cpu_usage", url],
                            capture_output=True, text=True, timeout=30)
    assert series.returncode == 0, series.stderr
    assert 'mode="user"' in series.stdout and "fleetscope_cpu_usage" in series.stdout, series.stdout
    wrong = srv.url.replace("http://", "http://grafana:not-a-token@") + "/prometheus"
    refused = subprocess.run([promtool, "query", "labels", wrong, "mode"], capture_output=True, text=True,
                             timeout=30)
    assert refused.returncode != 0
    basic = httpx.get(srv.url + "/api/v1/instrumentations", auth=("x", tokens["viewer"]), timeout=10)
    assert basic.status_code == 401, "basic credentials only for the Prometheus API"
