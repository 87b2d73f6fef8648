"""Fleet mode end to end: real nats-server, real PostgreSQL, two aggregators, two API servers and
three agents as separate processes, each agent a host of its own on the network (its own network
namespace and address); failures of each kind, and what the operator sees."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import VENV_BIN, free_port, make_token, stop_process
from tests.nats_server import NatsServer
from tests.netns import Host
from tests.store_backends import pg_url  # noqa: F401 - fixture
from tests.webhook import SECRET, Webhook

API = "/api/v1"
HOSTS = ("fleet-h1", "fleet-h2", "fleet-h3")
NCPU = os.cpu_count() or 1


class Proc:
    """A fleetscope process of the fleet, with its log."""

    def __init__(self, name: str, args: list[str], log_dir: Path, host: Host | None = None) -> None:
        self.name, self.args, self.log = name, args, log_dir / f"{name}.log"
        self.host = host
        self.proc: subprocess.Popen | None = None

    def start(self) -> Proc:
        cmd = [str(VENV_BIN / "fleetscope"), *self.args]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.host.command(cmd) if self.host else cmd, stdout=log,
                                         stderr=subprocess.STDOUT)
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        stop_process(self.proc, sig)


class Fleet:
    def __init__(self, tmp: Path, store: str) -> None:
        # Listening on every address: the agents reach it over their veth links.
        self.nats = NatsServer(tmp, listen="0.0.0.0", monitor=True)
        self.store = store
        self.tmp = tmp
        self.ports = [free_port(), free_port()]
        bus = ["--bus", self.nats.url]
        self.aggregators = [Proc(f"agg{i}", ["aggregator", *bus, "--store", store, "--name", f"agg{i}"], tmp)
                            for i in (1, 2)]
        self.apis = [Proc(f"api{i}", ["api", *bus, "--store", store, "--port", str(p)], tmp)
                     for i, p in enumerate(self.ports, 1)]
        self.hosts = {h: Host(i) for i, h in enumerate(HOSTS, 1)}
        self.agents = {h: Proc(h, ["agent", "--bus", f"nats://{host.gateway}:{self.nats.port}",
                                   "--hostname", h, "--label", f"rack=r{i}"], tmp, host)
                       for i, (h, host) in enumerate(self.hosts.items(), 1)}

        self.clients: list[httpx.Client] = []

    def url(self, i: int) -> str:
        return f"http://127.0.0.1:{self.ports[i]}"

    def log_in(self) -> None:
        """An admin token made into the shared store, as an operator makes a fleet's first one:
        either API server accepts it."""
        auth = {"Authorization": f"Bearer {make_token(self.store, 'fleet-admin')}"}
        self.clients = [httpx.Client(base_url=self.url(i) + API, headers=auth, timeout=10) for i in (0, 1)]

    def api(self, i: int) -> httpx.Client:
        return self.clients[i]

    def processes(self) -> list[Proc]:
        return [*self.aggregators, *self.apis, *self.agents.values()]

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.log.read_text()[-1500:]}" for p in self.processes()
                         if p.log.exists())


def wait_for(fn, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = fn()
            if last:
                return last
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            last = exc
        time.sleep(0.3)
    raise AssertionError(f"{what}: not within {timeout} s (last: {last!r})")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, pg_url: str) -> Iterator[Fleet]:  # noqa: F811
    f = Fleet(tmp_path_factory.mktemp("fleet"), pg_url)
    for host in f.hosts.values():
        host.create()
    f.nats.start()
    # Any order works; start the agents first, the API servers last.
    for p in [*f.agents.values(), *f.aggregators, *f.apis]:
        p.start()
    try:
        for i in (0, 1):
            wait_for(lambda i=i: httpx.get(f.url(i) + "/healthz", timeout=2).status_code == 200, 30,
                     f"api{i + 1} up")
        f.log_in()
        wait_for(lambda: {h["hostname"] for h in f.api(0).get("/hosts").json()["hosts"]}
                 >= set(HOSTS), 30, "every agent known to the API")
        yield f
    except BaseException:
        print(f.logs())
        raise
    finally:
        for c in f.clients:
            c.close()
        for p in f.processes():
            p.stop()
        f.nats.stop()
        for host in f.hosts.values():
            host.delete()


def create(api: httpx.Client, body: dict) -> dict:
    resp = api.post("/instrumentations", json=body)
    assert resp.status_code == 201, resp.text
    return resp.json()


def points(api: httpx.Client, inst_id: int, n: int) -> list[dict]:
    return api.get(f"/instrumentations/{inst_id}/value", params={"ndatapoints": n}).json()


def complete(api: httpx.Client, inst_id: int, n: int, nsources: int) -> list[dict] | None:
    """The last ``n`` points if they all have data from ``nsources`` sources (an interval metric's
    first tick on a host has no rows yet: its points are empty breakdowns)."""
    pts = points(api, inst_id, n)
    return pts if all(p["value"] and p["nsources"] == nsources for p in pts) else None


def assert_not_double_counted(pts: list[dict]) -> None:
    """Each host's ``cpu.usage`` (every mode, idle included) of a second is the CPU time of this
    machine's NCPU CPUs in that second: NCPU seconds, within the tick-length jitter the agent leaves
    unscaled (0.75 to 1.25 s). A batch merged twice would give 2 x NCPU. Each host contributes
    at most its own key (none on an interval metric's first tick)."""
    for p in pts:
        if p["value"] is None:
            continue
        assert len(p["value"]) <= p["nsources"] <= len(HOSTS), p
        for host, cpu in p["value"].items():
            assert 0.7 * NCPU <= cpu <= 1.3 * NCPU, f"{host} at {p['start_time']}: {cpu} CPU-s, not {NCPU}"


def test_fleet_wide_values_through_either_api_server(fleet: Fleet) -> None:
    inst = create(fleet.api(0), {"module": "cpu", "stat": "usage", "decomposition": ["hostname"],
                                 "persist": True})
    pts = wait_for(lambda: complete(fleet.api(1), inst["id"], 3, 3), 20, "3 sources via the other API")
    for p in pts:
        assert set(p["value"]) == set(HOSTS)
        assert p["expected"] == 3
    assert_not_double_counted(pts)
    # The metric catalogue came from the agents (API servers have no sources of their own).
    names = {m["name"] for m in fleet.api(1).get("/metrics").json()["metrics"]}
    assert {"cpu.usage", "proc.cpu"} <= names

    def all_online() -> bool:
        hosts = fleet.api(1).get("/hosts").json()["hosts"]
        return {h["hostname"]: h["status"] for h in hosts if h["hostname"] in HOSTS} == dict.fromkeys(
            HOSTS, "online")

    wait_for(all_online, 20, "every agent online (status within the last 15 s)")


def test_each_agent_is_a_host_of_its_own_on_the_network(fleet: Fleet) -> None:
    """nats-server sees each agent connect from its own namespace's address, and nothing of the
    machine's loopback is reachable from inside one."""
    connz = httpx.get(f"http://127.0.0.1:{fleet.nats.monitor_port}/connz", timeout=5).json()
    seen = {c.get("name", ""): c["ip"] for c in connz["connections"]}
    assert {h: seen.get(f"fleetscope agent {h}") for h in HOSTS} == {
        h: host.address for h, host in fleet.hosts.items()}
    probe = "import socket,sys; s=socket.socket(); s.settimeout(2); sys.exit(s.connect_ex(('127.0.0.1', %d)))"
    inside = subprocess.run(fleet.hosts["fleet-h1"].command([sys.executable, "-c", probe % fleet.ports[0]]))
    assert inside.returncode != 0, "the API server on the machine's loopback is not reachable from a host"


def test_host_limited_instrumentations(fleet: Fleet) -> None:
    by_name = create(fleet.api(1), {"module": "cpu", "stat": "usage", "decomposition": ["hostname"],
                                    "predicate": 'hostname == "fleet-h2"'})
    by_label = create(fleet.api(0), {"module": "cpu", "stat": "usage", "decomposition": ["hostname"],
                                     "predicate": 'rack in ["r1", "r3"]'})
    pts = wait_for(lambda: complete(fleet.api(0), by_name["id"], 3, 1), 20, "host-limited values")
    assert all(set(p["value"]) == {"fleet-h2"} and p["expected"] == 1 for p in pts)
    pts = wait_for(lambda: complete(fleet.api(1), by_label["id"], 3, 2), 20, "label-limited values")
    assert all(set(p["value"]) == {"fleet-h1", "fleet-h3"} for p in pts)
    wait_for(lambda: by_name["id"] in {h["hostname"]: h for h in fleet.api(0).get(
        "/hosts").json()["hosts"]}["fleet-h2"]["instrumentations"], 15, "h2 reports it")
    hosts = {h["hostname"]: h for h in fleet.api(0).get("/hosts").json()["hosts"]}
    assert by_name["id"] not in hosts["fleet-h1"]["instrumentations"], "h1 was never asked to run it"


def every_second(api: httpx.Client, inst_id: int, start: int, end: int) -> list[dict]:
    """The points of ``[start, end)`` if there is one for every second and every host is in each;
    else raises ValueError naming the seconds that are not (wait_for shows the last)."""
    pts = api.get(f"/instrumentations/{inst_id}/value", params={"start_time": start, "end_time": end}).json()
    if len(pts) == end - start and all(p["nsources"] == len(HOSTS) for p in pts):
        return pts
    raise ValueError("incomplete: " + ", ".join(f"{p['start_time']}: {p['nsources']}/{p['expected']}"
                                                for p in pts if p["nsources"] != len(HOSTS)))


def test_killing_an_aggregator_moves_its_work_losing_nothing_and_counting_nothing_twice(fleet: Fleet) -> None:
    """The seconds between the kill and the takeover arrive late: the agents send again what no
    aggregator acknowledged, and the survivor sends its partials again to the new owner."""
    inst = create(fleet.api(0), {"module": "cpu", "stat": "usage", "decomposition": ["hostname"]})
    wait_for(lambda: complete(fleet.api(0), inst["id"], 3, 3), 20, "values before the kill")
    killed_at = int(time.time())
    fleet.aggregators[0].stop(signal.SIGKILL)
    try:
        # Values continue within 10 s (lease time-out), whichever aggregator held it.
        wait_for(lambda: points(fleet.api(0), inst["id"], 1)[0]["start_time"] > killed_at + 1
                 and complete(fleet.api(0), inst["id"], 3, 3), 20, "values after the takeover")
        after = int(time.time())
        pts = wait_for(lambda: every_second(fleet.api(1), inst["id"], killed_at - 3, after), 30,
                       f"every second around the kill at {killed_at}, from every host")
        assert_not_double_counted(pts)
        assert all(p["expected"] == len(HOSTS) for p in pts), pts
    finally:
        fleet.aggregators[0].start()


def lease_owner(fleet: Fleet, inst_id: int) -> Proc | None:
    """The aggregator that holds ``inst_id``'s lease now, as the shared store says."""
    import psycopg

    with psycopg.connect(fleet.store) as db:
        row = db.execute("SELECT owner FROM leases WHERE inst_id = %s AND expires > %s",
                         (inst_id, time.time())).fetchone()
    return next((a for a in fleet.aggregators if row and row[0] == a.args[-1]), None)


def test_an_alert_moves_with_its_instrumentation_and_fires_once(fleet: Fleet, tmp_path: Path) -> None:
    """A rule fires on the aggregator that owns the instrumentation; that aggregator is killed;
    the one that takes over goes on from the stored state: no second firing, and the resolve
    comes from it when the load stops."""
    hook = Webhook()
    api = fleet.api(0)
    try:
        made = api.post("/alerts/receivers", json={"name": "fleet-hook", "kind": "webhook",
                                                   "settings": {"url": hook.url, "secret": SECRET}})
        assert made.status_code == 201, made.text
        inst = create(api, {"metric": "proc.cpu",
                            "predicate": 'execname == "fleetburn" and hostname == "fleet-h1"'})
        rule = api.post("/alerts/rules", json={"instrumentation": inst["id"], "when": "value > 0.5",
                                               "clear": 0.1, "receivers": ["fleet-hook"]})
        assert rule.status_code == 201, rule.text
        exe = tmp_path / "fleetburn"
        exe.symlink_to("/bin/sh")
        burner = subprocess.Popen([str(exe), "-c", "while :; do :; done"])
        try:
            wait_for(lambda: hook.statuses() == ["firing"], 30, "the owner fires")
            owner = wait_for(lambda: lease_owner(fleet, inst["id"]), 10, "the lease holder")
            owner.stop(signal.SIGKILL)
            try:
                other = wait_for(lambda: lease_owner(fleet, inst["id"]) not in (None, owner)
                                 and lease_owner(fleet, inst["id"]), 30, "the takeover")
                # The new owner evaluates the still-firing rule for a while: nothing is sent again.
                seen = wait_for(lambda: (p := points(api, inst["id"], 1)[0])["value"] and
                                p["start_time"] > time.time() - 3 and p, 30, "values from the new owner")
                wait_for(lambda: points(api, inst["id"], 1)[0]["start_time"] >= seen["start_time"] + 5, 30,
                         "five more seconds evaluated")
                assert hook.statuses() == ["firing"], f"{other.name} took over and did not fire again"
            finally:
                owner.start()
        finally:
            burner.kill()
            burner.wait()
        wait_for(lambda: hook.statuses() == ["firing", "resolved"], 30, "resolved by whoever owns it now")
        assert hook.bad_signatures == 0
    finally:
        hook.close()


def partition_holders(fleet: Fleet) -> dict[str, int]:
    """How many partitions each aggregator holds now, as the shared store says."""
    import psycopg

    with psycopg.connect(fleet.store) as db:
        rows = db.execute("SELECT owner, COUNT(*) FROM partition_leases WHERE expires > %s GROUP BY owner",
                          (time.time(),)).fetchall()
    return dict(rows)


def data_subscriptions(fleet: Fleet) -> dict[str, list[str]]:
    """The data subjects each aggregator's connection subscribes to, as nats-server sees them."""
    connz = httpx.get(f"http://127.0.0.1:{fleet.nats.monitor_port}/connz", params={"subs": 1},
                      timeout=5).json()
    return {c["name"].removeprefix("fleetscope aggregator "): [
        s for s in c.get("subscriptions_list", []) if s.startswith("fleetscope.data.")]
        for c in connz["connections"] if c.get("name", "").startswith("fleetscope aggregator ")}


def test_aggregators_receive_only_their_partitions_and_rebalance_to_a_new_one(fleet: Fleet) -> None:
    names = {a.args[-1] for a in fleet.aggregators}
    held = wait_for(lambda: (h := partition_holders(fleet)).keys() == names and sum(h.values()) == 64 and h,
                    30, "every partition held by the two aggregators")
    assert all(n == 32 for n in held.values()), held
    subs = wait_for(lambda: (s := data_subscriptions(fleet)).keys() == names
                    and all(len(s[n]) == held[n] for n in names) and s, 15, "subscriptions follow the leases")
    for name, subjects in subs.items():  # one subject per partition held, never every host's data
        assert "fleetscope.data.>" not in subjects, name
        assert all(s.endswith(".>") for s in subjects), (name, subjects)
    assert not set(subs["agg1"]) & set(subs["agg2"])
    third = Proc("agg3", ["aggregator", "--bus", fleet.nats.url, "--store", fleet.store, "--name", "agg3"],
                 fleet.tmp).start()
    try:
        wait_for(lambda: (h := partition_holders(fleet)).keys() == names | {"agg3"}
                 and max(h.values()) <= 22 and sum(h.values()) == 64, 30, "partitions rebalanced over three")
        inst = create(fleet.api(0), {"module": "cpu", "stat": "usage", "decomposition": ["hostname"]})
        pts = wait_for(lambda: complete(fleet.api(1), inst["id"], 5, 3), 30, "every host through three")
        assert_not_double_counted(pts)
        assert all(p["expected"] == 3 for p in pts)
    finally:
        third.stop()


def test_a_nats_restart_that_the_agents_survive_first_loses_nothing(fleet: Fleet) -> None:
    """nats-server stops for 5 s; the agents reconnect and send what they buffered before any
    aggregator is back (the aggregators are paused meanwhile), so those messages reach nobody:
    nothing acknowledges them, the agents send them again, and every second arrives."""
    inst = create(fleet.api(0), {"module": "cpu", "stat": "usage", "decomposition": ["hostname"]})
    wait_for(lambda: complete(fleet.api(0), inst["id"], 3, 3), 30, "values before the outage")
    backs = {h: fleet.agents[h].log.read_text().count("bus back") for h in HOSTS}
    down_from = int(time.time())
    fleet.nats.stop()
    for agg in fleet.aggregators:
        os.kill(agg.proc.pid, signal.SIGSTOP)
    try:
        time.sleep(5)
        fleet.nats.start()
        wait_for(lambda: all(fleet.agents[h].log.read_text().count("bus back") > backs[h] for h in HOSTS), 20,
                 "every agent reconnected and sent its buffer")
    finally:
        for agg in fleet.aggregators:
            os.kill(agg.proc.pid, signal.SIGCONT)
    back = int(time.time())
    pts = wait_for(lambda: every_second(fleet.api(0), inst["id"], down_from, back), 60,
                   "every second of the outage from every agent")
    assert_not_double_counted(pts)

    def buffers() -> dict[str, dict]:
        return {h["hostname"]: h["buffer"] for h in fleet.api(0).get("/hosts").json()["hosts"]
                if h["hostname"] in HOSTS}

    def all_sent() -> dict[str, dict] | None:
        now = buffers()
        return now if all(b["queued"] == 0 for b in now.values()) else None

    sent = wait_for(all_sent, 30, "the buffers sent")
    assert all(b["dropped"] == 0 and b["replayed"] > 0 for b in sent.values()), sent


def test_an_agent_restart(fleet: Fleet) -> None:
    inst = create(fleet.api(1), {"module": "cpu", "stat": "usage", "decomposition": ["hostname"]})
    wait_for(lambda: complete(fleet.api(1), inst["id"], 3, 3), 20, "values before the restart")
    agent = fleet.agents["fleet-h3"]
    agent.stop()
    wait_for(lambda: points(fleet.api(1), inst["id"], 2)[-1]["expected"] == 2, 20,
             "a stopped host is not expected any more")
    agent.start()
    wait_for(lambda: complete(fleet.api(1), inst["id"], 3, 3), 30, "the restarted agent reports again")


def test_an_api_server_restart(fleet: Fleet) -> None:
    inst = create(fleet.api(1), {"module": "cpu", "stat": "usage", "decomposition": ["hostname"]})
    wait_for(lambda: complete(fleet.api(1), inst["id"], 5, 3), 20, "values before the restart")
    api = fleet.apis[1]
    api.stop()
    api.start()
    wait_for(lambda: httpx.get(fleet.url(1) + "/healthz", timeout=2).status_code == 200, 30, "api2 back")
    # The window before the restart is backfilled from the aggregators, and new values flow.
    pts = wait_for(lambda: complete(fleet.api(1), inst["id"], 10, 3), 30, "values after the restart")
    assert_not_double_counted(pts)
    assert fleet.api(1).get(f"/instrumentations/{inst['id']}").json()["id"] == inst["id"]
