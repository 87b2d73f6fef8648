"""Tenant isolation in a real fleet: nats-server, an aggregator, an API server and two agents
(two hosts), with real cgroups: tenants acme and beta each own two containers, and a fifth
container belongs to no tenant. Every read path answers a tenant only from its own
instrumentations, whatever predicate it writes (``or``, ``not``, regexes, none), and another
tenant's ids look exactly like ids that do not exist."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port, stop_process, wait_for
from tests.nats_server import NatsServer
from tests.test_cgroup import V1, Cgroup

API = "/api/v1"
HOSTS = ("tn-h1", "tn-h2")
# Each container's processes use a little CPU, so that every key has data every second.
WORK = "import time\nwhile True:\n    sum(range(20000))\n    time.sleep(0.02)\n"


class Fleet:
    def __init__(self, url: str, tokens: dict[str, str], prefix: str, inst: dict[str, list[int]]) -> None:
        self.url = url
        self.tokens = tokens
        self.prefix = prefix
        self.inst = inst  # the ids each tenant made

    def get(self, who: str, path: str, **params) -> httpx.Response:
        return httpx.get(self.url + path, params=params, timeout=20,
                         headers={"authorization": f"Bearer {self.tokens[who]}"})

    def post(self, who: str, path: str, body: dict) -> httpx.Response:
        return httpx.post(self.url + path, json=body, timeout=20,
                          headers={"authorization": f"Bearer {self.tokens[who]}"})

    def containers(self, tenant: str) -> set[str]:
        return {f"/{self.prefix}-{tenant}-{n}" for n in ("web", "db")}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    if os.geteuid() != 0 or "cpuacct" not in V1:
        pytest.fail("needs root and the v1 cpuacct hierarchy", pytrace=False)
    tmp = tmp_path_factory.mktemp("tenants")
    prefix = f"fstn{os.getpid()}"
    mounts = [V1["cpuacct"].mount]
    groups = [Cgroup(mounts, f"{prefix}-{t}-{n}") for t in ("acme", "beta") for n in ("web", "db")]
    groups.append(Cgroup(mounts, f"{prefix}-nobody-x"))
    workers = [g.start(WORK) for g in groups]
    nats = NatsServer(tmp).start()
    exe = str(Path(sys.executable).parent / "fleetscope")
    store = f"sqlite:///{tmp / 'fleet.db'}"
    port = free_port()

    def run(*args: str) -> str:
        return subprocess.run([exe, *args], capture_output=True, text=True, timeout=60, check=True).stdout

    admin = run("token", "create", "tn-admin", "--role", "admin", "--store", store).strip()
    logs = []
    procs = []
    for name, cmd in [("agg", ["aggregator", "--bus", nats.url, "--store", store]),
                      ("api", ["api", "--bus", nats.url, "--store", store, "--port", str(port)]),
                      *[(h, ["agent", "--bus", nats.url, "--hostname", h]) for h in HOSTS]]:
        log = open(tmp / f"{name}.log", "wb")  # noqa: SIM115 - closed below
        logs.append(log)
        procs.append(subprocess.Popen([exe, *cmd], stdout=log, stderr=subprocess.STDOUT))
    url = f"http://127.0.0.1:{port}"
    tokens = {"admin": admin}
    try:
        auth = {"authorization": f"Bearer {admin}"}

        def hosts_up() -> bool:
            try:
                r = httpx.get(url + f"{API}/hosts", headers=auth, timeout=5)
            except httpx.HTTPError:
                return False
            return r.status_code == 200 and {h["hostname"] for h in r.json()["hosts"]} == set(HOSTS)

        wait_for(hosts_up, 60)
        for name, hide in (("acme", False), ("beta", True)):
            made = httpx.post(url + f"{API}/tenants", headers=auth, timeout=10, json={
                "name": name, "scope": f'container ~ "^/{prefix}-{name}-"', "hide_hosts": hide})
            assert made.status_code == 201, made.text
            tokens[name] = run("--token", admin, "token", "create", f"tn-{name}", "--role", "operator",
                               "--tenant", name, "--url", url).strip()
        tokens["acme-viewer"] = run("--token", admin, "token", "create", "tn-acme-v", "--role", "viewer",
                                    "--tenant", "acme", "--url", url).strip()
        f = Fleet(url, tokens, prefix, {})
        # The same questions from each tenant, including ones that try to reach past its scope.
        other = f"/{prefix}-nobody-x"
        questions = [
            {"metric": "container.cpu", "decomposition": ["container"]},
            {"metric": "proc.cpu", "decomposition": ["container"]},
            {"metric": "proc.cpu", "decomposition": ["container"], "predicate": f'container == "{other}"'},
            {"metric": "proc.cpu", "decomposition": ["container"],
             "predicate": f'container == "{other}" or execname != "nothing"'},
            {"metric": "proc.cpu", "decomposition": ["container"],
             "predicate": 'not container ~ "acme|beta"'},
            {"metric": "proc.cpu", "decomposition": ["container"], "predicate": 'container ~ ".*"'},
            {"metric": "proc.cpu", "decomposition": ["container", "utilization"]},
        ]
        for tenant in ("acme", "beta"):
            f.inst[tenant] = []
            for q in questions:
                r = f.post(tenant, f"{API}/instrumentations", {**q, "persist": True, "retention": 600})
                assert r.status_code == 201, r.text
                f.inst[tenant].append(r.json()["id"])
        r = f.post("admin", f"{API}/instrumentations", {"metric": "proc.cpu", "decomposition": ["container"]})
        f.inst["operators"] = [r.json()["id"]]
        # Data from both hosts for the instrumentations that match anything.
        for tenant in ("acme", "beta"):
            first = f.inst[tenant][1]
            wait_for(lambda t=tenant, i=first: len(keys(f, t, i)) == 2 and nsources(f, t, i) == 2, 60)
        wait_for(lambda: len({k for k in keys(f, "admin", f.inst["operators"][0]) if prefix in k}) == 5, 60)
        yield f
    finally:
        for p in procs:
            stop_process(p)
        for log in logs:
            log.close()
        nats.stop()
        for w in workers:
            w.kill()
            w.wait()
        for g in groups:
            g.remove()


def values(f: Fleet, who: str, inst_id: int, n: int = 20) -> list[dict]:
    r = f.get(who, f"{API}/instrumentations/{inst_id}/value", duration=1, ndatapoints=n)
    assert r.status_code == 200, r.text
    return r.json()


def keys(f: Fleet, who: str, inst_id: int) -> set[str]:
    found: set[str] = set()
    for p in values(f, who, inst_id):
        found |= set(p["value"] or {})
    return found


def nsources(f: Fleet, who: str, inst_id: int) -> int:
    return max((p["nsources"] for p in values(f, who, inst_id)), default=0)


@pytest.mark.parametrize("tenant", ["acme", "beta"])
def test_values_hold_only_the_tenants_containers(fleet: Fleet, tenant: str) -> None:
    own = fleet.containers(tenant)
    ids = fleet.inst[tenant]
    for inst_id in (ids[0], ids[1], ids[5]):  # no predicate, plain, and a regex matching everything
        assert keys(fleet, tenant, inst_id) == own, inst_id
        assert nsources(fleet, tenant, inst_id) == 2, "both hosts report the tenant's containers"
    # Past the scope: the other's container, `or`, `not`: nothing or only its own.
    assert keys(fleet, tenant, ids[2]) == set()
    assert keys(fleet, tenant, ids[3]) == own
    assert keys(fleet, tenant, ids[4]) == set()
    # The operators see every container of the fleet, the tenant's among them.
    everything = keys(fleet, "admin", fleet.inst["operators"][0])
    assert own | fleet.containers("acme" if tenant == "beta" else "beta") | {f"/{fleet.prefix}-nobody-x"} \
        <= everything


@pytest.mark.parametrize("tenant", ["acme", "beta"])
def test_the_scope_is_shown_and_cannot_be_changed(fleet: Fleet, tenant: str) -> None:
    inst = fleet.get(tenant, f"{API}/instrumentations/{fleet.inst[tenant][3]}").json()
    assert inst["tenant"] == tenant and inst["scope"] == {"re": ["container", f"^/{fleet.prefix}-{tenant}-"]}
    assert inst["predicate"]["and"][0] == inst["scope"]
    r = httpx.patch(fleet.url + f"{API}/instrumentations/{inst['id']}", json={"predicate": {}},
                    headers={"authorization": f"Bearer {fleet.tokens[tenant]}"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "predicate"


def test_heatmaps_and_details_show_only_the_tenants_keys(fleet: Fleet) -> None:
    for tenant in ("acme", "beta"):
        heat_id = fleet.inst[tenant][6]
        everyone = sorted(fleet.containers("acme") | fleet.containers("beta") | {f"/{fleet.prefix}-nobody-x"})
        body = fleet.get(tenant, f"{API}/instrumentations/{heat_id}/heatmap", duration=20,
                         selected=",".join(everyone)).json()
        drawn = {k for k, col in body["keys"].items() if any(any(c) for c in col)}
        assert drawn == fleet.containers(tenant), drawn
        assert sum(map(sum, body["counts"])) == 0, "no key but these: the rest is empty"
        assert len(next(iter(body["keys"].values()))) == len(body["times"]), "a row of buckets per column"
        busy = [i for i in range(len(body["times"])) if any(any(col[i]) for col in body["keys"].values())]
        t = body["times"][busy[-1]]
        details = fleet.get(tenant, f"{API}/instrumentations/{heat_id}/heatmap/details",
                            t=int(t), ymin=0, ymax=1000).json()
        assert details["keys"] and set(details["keys"]) <= fleet.containers(tenant), details
        # The key search's list: the tenant's keys of the same columns, none of another's.
        listed = fleet.get(tenant, f"{API}/instrumentations/{heat_id}/heatmap/keys", duration=20).json()
        assert drawn <= {k["key"] for k in listed["keys"]} <= fleet.containers(tenant), listed


def test_another_tenants_ids_look_like_missing_ones(fleet: Fleet) -> None:
    """Counting ids: every id that is not the tenant's answers the same 404, on every route."""
    top = max(i for ids in fleet.inst.values() for i in ids)
    acme = set(fleet.inst["acme"])
    for inst_id in range(1, top + 3):
        for path in ("", "/value", "/heatmap", "/heatmap/keys", "/export", "/percentiles"):
            r = fleet.get("acme", f"{API}/instrumentations/{inst_id}{path}")
            if inst_id in acme:
                assert r.status_code in (200, 409), (inst_id, path, r.text)  # 409: not a distribution
            else:
                assert r.status_code == 404, (inst_id, path)
                assert r.json() == {"error": {"code": "not_found", "field": "id",
                                              "message": f"no instrumentation {inst_id}"}}
        if inst_id not in acme:  # (an own stream would go on: test_streams_carry_only_the_tenants)
            r = fleet.get("acme", f"{API}/stream", ids=str(inst_id))
            assert r.status_code == 404 and r.json()["error"]["message"] == f"no instrumentation {inst_id}"
    victim = fleet.inst["beta"][0]
    headers = {"authorization": f"Bearer {fleet.tokens['acme']}"}
    assert httpx.delete(fleet.url + f"{API}/instrumentations/{victim}", headers=headers).status_code == 404
    assert httpx.patch(fleet.url + f"{API}/instrumentations/{victim}", json={"retention": 60},
                       headers=headers).status_code == 404
    assert fleet.get("beta", f"{API}/instrumentations/{victim}").status_code == 200, "still there"


def test_lists_discovery_hosts_and_store_stats_are_scoped(fleet: Fleet) -> None:
    for tenant in ("acme", "beta"):
        listed = {i["id"] for i in fleet.get(tenant, f"{API}/instrumentations").json()["instrumentations"]}
        assert listed == set(fleet.inst[tenant])
        stats = fleet.get(tenant, f"{API}/store/stats").json()
        assert {row["inst_id"] for row in stats["tiers"]} <= set(fleet.inst[tenant])
        assert stats["disk_bytes"] is None
        metrics = {m["name"]: m for m in fleet.get(tenant, f"{API}/metrics").json()["metrics"]}
        assert "memory.used" not in metrics, "a metric the scope cannot apply to is not offered"
        assert "proc.cpu" in metrics and "container.cpu" in metrics
    everyone = {i["id"] for i in fleet.get("admin", f"{API}/instrumentations").json()["instrumentations"]}
    assert set(fleet.inst["acme"]) | set(fleet.inst["beta"]) <= everyone
    only = fleet.get("admin", f"{API}/instrumentations", tenant="acme").json()["instrumentations"]
    assert {i["id"] for i in only} == set(fleet.inst["acme"])
    # acme sees the hosts that run its instrumentations, with only those; beta sees no host name.
    hosts = fleet.get("acme", f"{API}/hosts").json()["hosts"]
    assert {h["hostname"] for h in hosts} == set(HOSTS)
    for h in hosts:
        assert set(h["instrumentations"]) <= set(fleet.inst["acme"]) and h["labels"] == {}
    assert fleet.get("beta", f"{API}/hosts").json()["hosts"] == []
    beta_metrics = {m["name"]: m for m in fleet.get("beta", f"{API}/metrics").json()["metrics"]}
    assert "hostname" not in {fl["name"] for fl in beta_metrics["proc.cpu"]["fields"]}
    refused = fleet.post("beta", f"{API}/instrumentations",
                         {"metric": "proc.cpu", "decomposition": ["hostname"]})
    assert refused.status_code == 422 and refused.json()["error"]["field"] == "decomposition"
    by_host = fleet.post("acme", f"{API}/instrumentations", {"metric": "memory.used"})
    assert by_host.status_code == 422 and by_host.json()["error"]["field"] == "metric"


def test_viewers_of_a_tenant_read_but_do_not_change(fleet: Fleet) -> None:
    own = fleet.inst["acme"][1]
    assert fleet.get("acme-viewer", f"{API}/instrumentations/{own}").status_code == 200
    r = fleet.post("acme-viewer", f"{API}/instrumentations", {"metric": "proc.cpu"})
    assert r.status_code == 403


def test_exports_and_metrics_hold_only_the_tenants(fleet: Fleet) -> None:
    for tenant, other in (("acme", "beta"), ("beta", "acme")):
        text = fleet.get(tenant, f"{API}/instrumentations/{fleet.inst[tenant][1]}/export", since="1m").text
        assert fleet.prefix + f"-{tenant}-" in text
        assert fleet.prefix + f"-{other}-" not in text and "nobody" not in text
        scraped = fleet.get(tenant, "/metrics").text
        ids = {int(x.split('"')[0]) for x in scraped.split('instrumentation="')[1:]}
        assert ids and ids <= set(fleet.inst[tenant]), ids
        assert fleet.prefix + f"-{other}-" not in scraped and "nobody" not in scraped


def test_streams_carry_only_the_tenants(fleet: Fleet) -> None:
    own = fleet.inst["acme"][1]
    events: list[dict] = []
    headers = {"authorization": f"Bearer {fleet.tokens['acme']}"}
    deadline = time.monotonic() + 20
    with httpx.stream("GET", fleet.url + f"{API}/stream", params={"ids": str(own)}, headers=headers,
                      timeout=20) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
            if len(events) >= 3 or time.monotonic() > deadline:
                break
    assert len(events) >= 3
    for e in events:
        assert e["instrumentation"] == own
        assert set(e["value"] or {}) <= fleet.containers("acme")


def test_dashboards_are_the_tenants_own(fleet: Fleet) -> None:
    mine = fleet.post("acme", f"{API}/dashboards",
                      {"name": "acme board", "panels": [{"instrumentation": fleet.inst["acme"][0]}]})
    assert mine.status_code == 201 and mine.json()["tenant"] == "acme"
    stolen = fleet.post("acme", f"{API}/dashboards",
                        {"name": "peek", "panels": [{"instrumentation": fleet.inst["beta"][0]}]})
    assert stolen.status_code == 422
    same_name = fleet.post("beta", f"{API}/dashboards", {"name": "acme board", "panels": []})
    assert same_name.status_code == 201, "names are per tenant"
    assert fleet.get("beta", f"{API}/dashboards/{mine.json()['id']}").status_code == 404
    assert [d["name"] for d in fleet.get("beta", f"{API}/dashboards").json()["dashboards"]] == ["acme board"]
    assert {d["id"] for d in fleet.get("admin", f"{API}/dashboards").json()["dashboards"]} >= {
        mine.json()["id"], same_name.json()["id"]}
