"""NATS authorization: a real nats-server with the permissions of bus/permissions.py, each
process with its own NKey; an agent can speak only for its own host."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fleetscope.agent.agent import Agent
from fleetscope.aggregator.aggregator import Aggregator
from fleetscope.api.control import ControlPlane
from fleetscope.bus import messages as m
from fleetscope.bus import permissions
from fleetscope.bus.base import Msg
from fleetscope.bus.nats import NatsBus, NatsOptions
from fleetscope.sources.registry import catalog, local_sources
from fleetscope.store.open import open_store
from tests.conftest import free_port, stop_process, wait_for
from tests.nats_server import NatsServer

HOSTS = ("auth-a", "auth-b.example.com")


@pytest.fixture
def users() -> dict[str, permissions.User]:
    made = {h: permissions.new_user("agent", h) for h in HOSTS}
    made["auth-a.example.com"] = permissions.new_user("agent", "auth-a.example.com")
    made["aggregator"] = permissions.new_user("aggregator", "agg1")
    made["api"] = permissions.new_user("api", "api1")
    return made


@pytest.fixture
def secured(tmp_path: Path, users: dict[str, permissions.User]) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path, config=permissions.authorization_block(users.values())).start()
    yield server
    server.stop()


def bus_for(server: NatsServer, user: permissions.User, tmp_path: Path) -> NatsBus:
    seed = tmp_path / f"{user.role}-{user.name}.nk"
    seed.write_bytes(user.seed)
    seed.chmod(0o600)
    inbox = m.agent_inbox(user.name) if user.role == "agent" else "_INBOX"
    return NatsBus(NatsOptions(server.url, nkey=str(seed), inbox_prefix=inbox, name=user.name))


async def settle(bus: NatsBus) -> None:
    """A round trip to the server: what was sent before has been processed by it. Twice:
    nats-py's flush() writes its PING straight to the socket, ahead of commands (a SUB, a PUB)
    still in its buffer, which its flusher task writes while the first PONG is awaited."""
    await bus.nc.flush(timeout=5)
    await bus.nc.flush(timeout=5)


def test_the_authorization_block_names_each_role_and_only_public_keys(users) -> None:
    block = permissions.authorization_block(users.values())
    for user in users.values():
        assert user.public_key in block and user.public_key.startswith("U")
        assert user.seed.decode() not in block, "no secret in the server's configuration"
    assert f'"{m.data_subject("auth-a")}"' in block
    with pytest.raises(ValueError, match="unknown role"):
        permissions.new_user("root", "x")


def test_each_user_may_use_only_its_subjects(secured: NatsServer, users, tmp_path: Path) -> None:
    async def scenario() -> dict:
        watcher = bus_for(secured, users["aggregator"], tmp_path)
        agent_a = bus_for(secured, users["auth-a"], tmp_path)
        api = bus_for(secured, users["api"], tmp_path)
        for bus in (watcher, agent_a, api):
            await bus.connect()
        seen: list[str] = []

        async def record(msg: Msg) -> None:
            seen.append(msg.subject)

        await watcher.subscribe(f"{m.DATA}.>", record)
        await watcher.subscribe(f"{m.AGENT_STATUS}.>", record)
        await settle(watcher)
        # Its own subjects go through; another host's are refused by the server.
        await agent_a.publish(m.data_subject("auth-a"), b"own")
        await agent_a.publish(m.status_subject("auth-a"), b"own")
        await agent_a.publish(m.data_subject("auth-b.example.com"), b"forged")
        await agent_a.publish(m.status_subject("auth-b.example.com"), b"forged")
        await agent_a.publish(m.data_subject("auth-a.example.com"), b"forged")  # a longer name
        await agent_a.publish(m.CTL_ENABLE, b"forged")  # no control messages from an agent
        # Nor may it listen to what is meant for another host.
        snooped: list[str] = []

        async def snoop(msg: Msg) -> None:
            snooped.append(msg.subject)

        await agent_a.subscribe(m.agent_subject("auth-b.example.com"), snoop)
        await agent_a.subscribe("_INBOX.>", snoop)
        await settle(agent_a)
        await api.publish(m.agent_subject("auth-b.example.com"), b"for b only")
        await settle(api)
        await wait_async(lambda: agent_a.permission_errors >= 6)
        # The watcher's callback runs in a task of its own: wait for the two allowed messages. A
        # forged one that got through was routed before the server's refusals and would show too.
        await wait_async(lambda: len(seen) >= 2)
        await settle(watcher)
        result = {"seen": sorted(seen), "snooped": snooped, "refused": agent_a.permission_errors}
        for bus in (watcher, agent_a, api):
            await bus.close()
        return result

    result = asyncio.run(scenario())
    assert result["seen"] == sorted([m.data_subject("auth-a"), m.status_subject("auth-a")])
    assert result["snooped"] == []
    assert result["refused"] == 6  # 3 forged publishes, the control message and 2 subscriptions


async def wait_async(condition, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not met")
        await asyncio.sleep(0.05)


def test_a_fleet_runs_with_least_privilege_and_forged_batches_never_arrive(secured: NatsServer, users,
                                                                          tmp_path: Path) -> None:
    """Control plane (api key), aggregator (aggregator key) and a real agent (its own key) run a
    fleet-wide instrumentation; the agent lists its instrumentations through its own inbox; a
    batch that agent forges for another host is refused by the server, not counted."""

    async def scenario() -> dict:
        store = open_store(f"sqlite:///{tmp_path / 'defs.db'}")
        api_bus = bus_for(secured, users["api"], tmp_path)
        agg_bus = bus_for(secured, users["aggregator"], tmp_path)
        agent_bus = bus_for(secured, users["auth-a"], tmp_path)
        for bus in (api_bus, agg_bus, agent_bus):
            await bus.connect()
        control = ControlPlane(store, api_bus, catalog(local_sources()))
        aggregator = Aggregator(agg_bus)
        await control.start()
        await aggregator.start()
        inst = await control.create({"module": "cpu", "stat": "usage", "decomposition": ["hostname"]})
        agent = Agent(agent_bus, local_sources(), hostname="auth-a")
        running = asyncio.get_running_loop().create_task(agent.run())
        try:
            await wait_async(lambda: "auth-a" in control.hosts, 15)
            await wait_async(lambda: any(p.nsources == 1 and p.value for p in points(aggregator, inst.id)),
                             15)
            forged = m.Batch("auth-b.example.com", int(time.time()), time.time(),
                             [m.Partial(inst.id, {"auth-b.example.com": 1.0})])
            await agent_bus.publish(m.data_subject("auth-b.example.com"), m.encode(forged))
            await wait_async(lambda: agent_bus.permission_errors >= 1)
            await settle(agg_bus)
            keys = set().union(*(set(p.value) for p in points(aggregator, inst.id)))
            return {"keys": keys, "running": inst.id in agent.instrumentations,
                    "drops": dict(aggregator.dropped), "refused": agent_bus.permission_errors}
        finally:
            agent.stop()
            await running
            agent.close()
            await aggregator.stop()
            await control.stop()
            for bus in (api_bus, agg_bus, agent_bus):
                await bus.close()
            store.close()

    result = asyncio.run(scenario())
    assert result["running"], "the agent learnt its instrumentations through its own inbox"
    assert result["keys"] == {"auth-a"}
    assert result["refused"] == 1
    assert "host_not_subject" not in result["drops"], "the server refused it before any aggregator"


def points(aggregator: Aggregator, inst_id: int) -> list:
    window = aggregator.window(inst_id)
    return window.points(0, 2**40) if window else []


def test_a_connection_without_a_known_key_is_refused(secured: NatsServer, tmp_path: Path) -> None:
    import nats
    from nats.errors import Error as NatsError

    stranger = tmp_path / "stranger.nk"
    stranger.write_bytes(permissions.new_user("agent", "auth-a").seed)  # a key the server does not list

    async def attempt(**auth) -> None:
        await nats.connect(secured.url, allow_reconnect=False, connect_timeout=2, **auth)

    for auth in ({}, {"nkeys_seed": str(stranger)}):
        with pytest.raises(NatsError, match="Authorization Violation"):
            asyncio.run(attempt(**auth))


def test_nats_config_secures_a_fleet_of_real_processes(tmp_path: Path) -> None:
    """`fleetscope nats-config` writes the keys and the server block; a real aggregator, API
    server and agent run on them; an agent started under another host's name with that key
    gets nothing through (the server refuses its subjects) and says so in its log."""
    exe = str(Path(sys.executable).parent / "fleetscope")
    keys = tmp_path / "keys"
    made = subprocess.run([exe, "nats-config", "--agent", "e2e-host", "--out", str(keys)],
                          capture_output=True, text=True, timeout=60, check=True)
    assert sorted(p.name for p in keys.iterdir()) == [
        "agent-e2e-host.nk", "aggregator-aggregator.nk", "api-api.nk"]
    assert all((p.stat().st_mode & 0o077) == 0 for p in keys.iterdir()), "seeds are private"
    for p in keys.iterdir():
        assert p.read_text() not in made.stdout, "no seed is printed"
    server = NatsServer(tmp_path, config=made.stdout).start()
    store = f"sqlite:///{tmp_path / 'fleet.db'}"
    port = free_port()
    logs = {name: open(tmp_path / f"{name}.log", "wb")  # noqa: SIM115 - closed below
            for name in ("agg", "api", "agent", "forger")}
    common = ["--bus", server.url]
    procs = {
        "agg": [exe, "aggregator", *common, "--store", store,
                "--nats-nkey", str(keys / "aggregator-aggregator.nk")],
        "api": [exe, "api", *common, "--store", store, "--port", str(port),
                "--nats-nkey", str(keys / "api-api.nk")],
        "agent": [exe, "agent", *common, "--hostname", "e2e-host",
                  "--nats-nkey", str(keys / "agent-e2e-host.nk")],
        "forger": [exe, "agent", *common, "--hostname", "forged-host",
                   "--nats-nkey", str(keys / "agent-e2e-host.nk")],
    }
    admin = subprocess.run([exe, "token", "create", "e2e", "--role", "admin", "--store", store],
                           capture_output=True, text=True, timeout=60, check=True).stdout.strip()
    running = {name: subprocess.Popen(cmd, stdout=logs[name], stderr=subprocess.STDOUT)
               for name, cmd in procs.items()}
    url = f"http://127.0.0.1:{port}/api/v1"
    try:
        # The API server learns the metrics from the agent's status, which only its key may send.
        wait_for(lambda: (_get(url + "/hosts", admin) or {}).get("hosts"), 30)
        made = httpx.post(url + "/instrumentations", timeout=10, headers=_bearer(admin),
                          json={"metric": "cpu.usage", "decomposition": ["hostname"]})
        assert made.status_code == 201, made.text
        inst = made.json()

        def keys_seen() -> set[str]:
            points = _get(f"{url}/instrumentations/{inst['id']}/value?duration=1&ndatapoints=30", admin) or []
            return set().union(*(set(p["value"] or {}) for p in points))

        assert wait_for(lambda: keys_seen() == {"e2e-host"} and keys_seen(), 30)
        wait_for(lambda: b"NATS refused" in (tmp_path / "forger.log").read_bytes(), 30)
        hosts = {h["hostname"] for h in _get(url + "/hosts", admin)["hosts"]}
        assert hosts == {"e2e-host"}, "the forger could not even announce itself"
        assert keys_seen() == {"e2e-host"}
    finally:
        for proc in running.values():
            stop_process(proc)
        for f in logs.values():
            f.close()
        server.stop()


def _bearer(token: str) -> dict:
    return {"authorization": f"Bearer {token}"}


def _get(url: str, token: str) -> dict | list | None:
    try:
        r = httpx.get(url, timeout=5, headers=_bearer(token))
    except httpx.HTTPError:
        return None
    return r.json() if r.status_code == 200 else None
