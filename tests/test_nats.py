"""The NATS transport against a real nats-server, and an agent process riding out a bus outage."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from fleetscope.agent.agent import Agent
from fleetscope.aggregator.aggregator import Aggregator
from fleetscope.api.control import ControlPlane
from fleetscope.bus import messages as m
from fleetscope.bus.base import BusUnavailable, Msg
from fleetscope.bus.connect import connect_bus
from fleetscope.bus.nats import NatsBus, NatsOptions
from fleetscope.model.errors import InputError
from fleetscope.sources.registry import catalog, local_sources
from fleetscope.store.open import open_store
from tests.nats_server import NatsServer


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path).start()
    yield server
    server.stop()


async def start_control_plane(url: str, tmp_path: Path
                              ) -> tuple[ControlPlane, Aggregator, Callable[[], Awaitable[None]]]:
    """A control plane and an aggregator in this process, on the NATS server at ``url``; and the
    coroutine function that stops them."""
    bus = NatsBus(NatsOptions(url))
    await bus.connect()
    store = open_store(f"sqlite:///{tmp_path / 'defs.db'}")
    control = ControlPlane(store, bus, catalog(local_sources()))
    aggregator = Aggregator(bus)
    await control.start()
    await aggregator.start()

    async def stop() -> None:
        await aggregator.stop()
        await control.stop()
        await bus.close()
        store.close()

    return control, aggregator, stop


async def until(condition: Callable[[], object], timeout: float = 15.0, interval: float = 0.05) -> None:
    """Poll ``condition`` until it is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"condition not met within {timeout} s"
        await asyncio.sleep(interval)


async def server_holds_subscriptions_of(subscriber: NatsBus, watcher: NatsBus, timeout: float = 15.0) -> None:
    """Return once the server holds every subscription ``subscriber`` made so far, for messages
    from any connection: ``subscriber`` publishes a marker after them on the same connection
    (which the server reads in order) until ``watcher`` receives one.

    nats-py's own ``flush()`` does not say so: it writes its PING straight to the socket,
    ahead of SUB commands still in the client's buffer, so its PONG can come back before the
    server has read them; a request from another connection then finds no responder."""
    marker = f"test.marker.{os.urandom(4).hex()}"
    seen = asyncio.Event()

    async def on_marker(msg: Msg) -> None:
        seen.set()

    sub = await watcher.subscribe(marker, on_marker)
    deadline = time.monotonic() + timeout
    while not seen.is_set():  # again while the watcher's own subscription is not in place
        assert time.monotonic() < deadline, "the subscriber's marker never arrived"
        await subscriber.publish(marker, b"")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(seen.wait(), 0.1)
    await sub.unsubscribe()


def test_publish_subscribe_queue_and_request(nats_server: NatsServer) -> None:
    async def scenario() -> tuple[list[bytes], list[list[bytes]], bytes]:
        a, b = NatsBus(NatsOptions(nats_server.url)), NatsBus(NatsOptions(nats_server.url))
        await a.connect()
        await b.connect()
        plain: list[bytes] = []
        members: list[list[bytes]] = [[], []]

        async def on_plain(msg: Msg) -> None:
            plain.append(msg.data)

        await b.subscribe("fleetscope.data.>", on_plain)
        for box in members:
            async def on_member(msg: Msg, box: list[bytes] = box) -> None:
                box.append(msg.data)

            await b.subscribe("work", on_member, queue="workers")

        async def echo(msg: Msg) -> None:
            await b.publish(msg.reply, msg.data[::-1])

        await b.subscribe("echo", echo)
        await server_holds_subscriptions_of(b, a)
        for i in range(20):
            await a.publish(m.data_subject("h1"), str(i).encode())
            await a.publish("work", str(i).encode())
        answer = await a.request("echo", b"abc", timeout=5)
        await until(lambda: len(plain) >= 20 and sum(map(len, members)) >= 20)
        await a.close()
        await b.close()  # drains: anything more (a duplicate) would be handled before it returns
        return plain, members, answer

    plain, members, answer = asyncio.run(scenario())
    assert plain == [str(i).encode() for i in range(20)]
    assert sorted(int(x) for box in members for x in box) == list(range(20))
    assert answer == b"cba"


def test_publish_while_disconnected_raises_bus_unavailable(nats_server: NatsServer) -> None:
    async def scenario() -> bool:
        bus = NatsBus(NatsOptions(nats_server.url))
        await bus.connect()
        nats_server.stop()
        for _ in range(100):
            if not bus.connected:
                break
            await asyncio.sleep(0.05)
        try:
            await bus.publish("x", b"y")
            raised = False
        except BusUnavailable:
            raised = True
        await bus.close()
        return raised

    assert asyncio.run(scenario())


def test_bad_bus_urls_are_named() -> None:
    with pytest.raises(InputError) as err:
        connect_bus("kafka://somewhere")
    assert err.value.field == "bus"


def test_agent_buffers_through_a_bus_outage(nats_server: NatsServer, tmp_path: Path) -> None:
    """A real `fleetscope agent` keeps collecting while nats-server is down and delivers it all after."""

    async def scenario() -> tuple[list[int], int, int]:
        control, aggregator, stop = await start_control_plane(nats_server.url, tmp_path)
        inst = await control.create({"module": "cpu", "stat": "usage", "retention": 600})
        exe = Path(sys.executable).parent / "fleetscope"
        log = open(tmp_path / "agent.log", "wb")  # noqa: SIM115 - closed below
        agent = subprocess.Popen([str(exe), "agent", "--bus", nats_server.url, "--hostname", "outage-a"],
                                 stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))
        try:
            window = None
            for _ in range(150):  # a few seconds of data before the outage
                window = aggregator.window(inst.id)
                if window and len(window.points(0, 2**40)) >= 3:
                    break
                await asyncio.sleep(0.1)
            assert window and len(window.points(0, 2**40)) >= 3, "data flows over NATS"
            down_from = int(time.time())
            nats_server.stop()
            await asyncio.sleep(6)
            nats_server.start()
            down_to = int(time.time())
            # Wait for the agent to reconnect and flush its buffer, and for slots to be final.
            for _ in range(150):
                starts = {p.start_time for p in window.points(down_from - 2, down_to + 3)}
                if set(range(down_from - 2, down_to + 3)) <= starts:
                    break
                await asyncio.sleep(0.1)
            starts = sorted(p.start_time for p in window.points(down_from - 2, down_to + 3))
            sources = max(p.nsources for p in window.points(0, 2**40))
            return starts, down_from, down_to, sources
        finally:
            agent.terminate()
            agent.wait(10)
            log.close()
            await stop()

    starts, down_from, down_to, sources = asyncio.run(scenario())
    assert starts == list(range(down_from - 2, down_to + 3)), (
        f"every second of the outage arrived: {starts} for {down_from}..{down_to}")
    assert sources == 1, "nothing was counted twice (one host, at most one source per slot)"


def test_host_limited_instrumentations_reach_only_matching_agents(nats_server: NatsServer,
                                                                  tmp_path: Path) -> None:
    """Two real agents; an instrumentation limited to one of them by hostname, another by label."""

    async def scenario() -> tuple[dict[str, set[str]], dict[str, set[str]], dict[str, int]]:
        control, aggregator, stop = await start_control_plane(nats_server.url, tmp_path)
        ran: dict[str, list[set[int]]] = {}  # host -> the instrumentations in each of its batches

        async def record(msg: Msg) -> None:
            batch = m.decode(msg.data, m.Batch)
            ran.setdefault(batch.host, []).append({p.id for p in batch.partials})

        # On the control plane's connection, so in place before any instrumentation is sent.
        await aggregator.bus.subscribe(f"{m.DATA}.>", record)
        exe = Path(sys.executable).parent / "fleetscope"
        agents = [subprocess.Popen([str(exe), "agent", "--bus", nats_server.url, "--hostname", name,
                                    "--label", f"role={role}"], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
                  for name, role in (("lim-a", "web"), ("lim-b", "db"))]
        try:
            await until(lambda: {"lim-a", "lim-b"} <= set(control.known_hosts))  # both announced
            by_host = await control.create({"module": "cpu", "stat": "usage", "decomposition": ["hostname"],
                                            "predicate": 'hostname == "lim-a"'})
            by_label = await control.create({"module": "cpu", "stat": "usage", "decomposition": ["hostname"],
                                             "predicate": 'role == "db"'})
            everywhere = await control.create({"module": "cpu", "stat": "usage",
                                               "decomposition": ["hostname"]})
            await until(lambda: seen_keys(aggregator, by_host.id) and seen_keys(aggregator, by_label.id)
                        and len(seen_keys(aggregator, everywhere.id)) == 2)

            # The marker: `everywhere` went to each agent after the other two, on the one subject
            # it handles in order, so a batch holding it is made by an agent that has handled any
            # instrumentation it was (wrongly) sent before; wait for a second such batch, a tick
            # later, from each agent.
            def markers(host: str) -> int:
                return sum(everywhere.id in ids for ids in ran.get(host, []))

            await until(lambda: markers("lim-a") >= 2 and markers("lim-b") >= 2)
            seen = {name: seen_keys(aggregator, inst.id) for name, inst in
                    (("by_host", by_host), ("by_label", by_label), ("everywhere", everywhere))}
            names = {by_host.id: "by_host", by_label.id: "by_label", everywhere.id: "everywhere"}
            ran_by_host = {host: {names.get(i, str(i)) for ids in batches for i in ids}
                           for host, batches in ran.items()}
            return seen, ran_by_host, {host: markers(host) for host in ran}
        finally:
            for a in agents:
                a.terminate()
                a.wait(10)
            await stop()

    seen, ran, markers = asyncio.run(scenario())
    assert ran == {"lim-a": {"by_host", "everywhere"}, "lim-b": {"by_label", "everywhere"}}, (
        f"each agent ran only the instrumentations meant for it ({markers} batches with the marker)")
    assert seen == {"by_host": {"lim-a"}, "by_label": {"lim-b"}, "everywhere": {"lim-a", "lim-b"}}


def seen_keys(aggregator: Aggregator, inst_id: int) -> set[str]:
    keys: set[str] = set()
    window = aggregator.window(inst_id)
    for p in window.points(0, 2**40) if window else []:
        keys |= set(p.value)
    return keys


def test_agent_refuses_bad_hostnames_and_labels() -> None:
    exe = Path(sys.executable).parent / "fleetscope"
    for args, field in ((["--hostname", "bad host"], "hostname"), (["--label", "mode=x"], "label"),
                        (["--label", "novalue"], "label"), (["--buffer", "lots"], "buffer")):
        out = subprocess.run([str(exe), "agent", "--bus", "nats://127.0.0.1:1", *args], capture_output=True,
                             text=True, timeout=30)
        assert out.returncode == 1, out
        assert out.stderr.startswith(f"error: {field}:"), out.stderr


def test_agent_takes_its_settings_from_a_config_file_and_the_environment(nats_server: NatsServer,
                                                                          tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(f'bus = "{nats_server.url}"\nbuffer = "8MiB"\n[agent]\n'
                      'labels = {{ rack = "r12", tier = "web" }}\n'.replace("{{", "{").replace("}}", "}"))

    async def scenario() -> dict[str, dict[str, str]]:
        bus = NatsBus(NatsOptions(nats_server.url))
        await bus.connect()
        store = open_store(f"sqlite:///{tmp_path / 'defs.db'}")
        control = ControlPlane(store, bus, catalog(local_sources()))
        await control.start()
        exe = Path(sys.executable).parent / "fleetscope"
        agent = subprocess.Popen([str(exe), "agent", "--config", str(config)], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL,
                                 env={**os.environ, "FLEETSCOPE_HOSTNAME": "from-env"})
        try:
            for _ in range(100):
                if "from-env" in control.known_hosts:
                    break
                await asyncio.sleep(0.1)
            return dict(control.known_hosts)
        finally:
            agent.terminate()
            agent.wait(10)
            await control.stop()
            await bus.close()
            store.close()

    known = asyncio.run(scenario())
    assert known.get("from-env") == {"rack": "r12", "tier": "web"}


def test_fleet_processes_start_before_the_bus_and_stop_cleanly(tmp_path: Path) -> None:
    """`fleetscope api` serves from the store while NATS is not there yet; both it and an
    aggregator waiting for the bus stop at once on SIGTERM."""
    import httpx

    from tests.conftest import free_port, make_token

    exe = str(Path(sys.executable).parent / "fleetscope")
    bus = f"nats://127.0.0.1:{free_port()}"  # nothing listens there
    store = f"sqlite:///{tmp_path / 'fleet.db'}"
    port = free_port()
    api = subprocess.Popen([exe, "api", "--bus", bus, "--store", store, "--port", str(port)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    agg = subprocess.Popen([exe, "aggregator", "--bus", bus, "--store", store],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        auth = {"Authorization": f"Bearer {make_token(store, 'first')}"}
        assert httpx.get(url + "/api/v1/instrumentations", headers=auth).json() == {"instrumentations": []}
        time.sleep(1)
    finally:
        for p in (api, agg):
            p.terminate()
        codes = [p.wait(10) for p in (api, agg)]  # TimeoutExpired if either hangs
    # uvicorn shuts down gracefully and then re-raises the signal it caught.
    assert codes[0] in (0, -signal.SIGTERM) and codes[1] == 0, codes


def test_batches_over_the_servers_size_limit_are_split_and_giant_values_refused(tmp_path: Path) -> None:
    """A server with a 1 KB max_payload: the agent splits a tick's batch into messages under it
    (every instrumentation still arrives); a value too large alone is replaced by a warning."""
    server = NatsServer(tmp_path, max_payload=1024).start()

    async def scenario() -> tuple:
        control, aggregator, stop = await start_control_plane(server.url, tmp_path)
        agent_bus = NatsBus(NatsOptions(server.url))
        small = [await control.create({"module": "cpu", "stat": "usage", "decomposition": ["mode"]})
                 for _ in range(40)]
        giant = await control.create({"module": "proc", "stat": "rss", "decomposition": ["cmd"]})
        per_tick: Counter[int] = Counter()

        async def count(msg: Msg) -> None:
            per_tick[m.decode(msg.data, m.Batch).time] += 1

        await aggregator.bus.subscribe(f"{m.DATA}.>", count)
        agent = Agent(agent_bus, local_sources(), hostname="split-a")
        task = asyncio.create_task(agent.run())
        try:
            complete = []
            for _ in range(300):
                await asyncio.sleep(0.1)
                complete = [i.id for i in small if any(
                    p.nsources == 1 and p.value for p in aggregator.window(i.id).points(0, 2**40))]
                split = max(per_tick.values(), default=0) >= 2
                if len(complete) == len(small) and agent.outbox.oversized >= 2 and split:
                    break
            giant_points = aggregator.window(giant.id).points(0, 2**40)
            return (agent_bus.max_payload, complete, agent.outbox.stats(), agent.warnings.get(giant.id, ""),
                    [p.value for p in giant_points if p.nsources], max(per_tick.values()))
        finally:
            agent.stop()
            await task
            agent.close()
            await agent_bus.close()
            await stop()

    try:
        limit, complete, stats, warning, giant_values, most_per_tick = asyncio.run(scenario())
    finally:
        server.stop()
    assert limit == 1024, "the client learnt the server's limit"
    assert len(complete) == 40, "every instrumentation of the split batches arrived, counted once"
    assert stats["oversized"] >= 2 and stats["dropped"] == 0
    assert "over the bus's 1024 byte message limit" in warning
    assert all(v == {} for v in giant_values), "the giant value arrives as an empty one, not a wrong one"
    assert most_per_tick >= 2, "a tick's batch was split into several messages"
