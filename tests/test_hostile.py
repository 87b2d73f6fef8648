"""A real agent (`fleetscope serve`) under hostile instrumentations.

(a) the ReDoS predicate ``cmd ~ "(a+)+$"`` over a real process whose command line is
``... aaaa…a!``; (b) a breakdown by a StatsD tag with 100,000 distinct values; (c) an
instrumentation too costly for its budget: that breakdown with a predicate of the largest
size. In each case every other instrumentation on the host still delivers each second (every
consecutive slot of the observed interval final with its one source), the hostile one is
answered, bounded or paused with a warning the API and `fleetscope hosts` show, and the agent's
CPU over the interval (from /proc) stays far below the core a runaway would take.
"""

from __future__ import annotations

import math
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fleetscope.model import values
from fleetscope.model.predicate import MAX_REGEXES
from fleetscope.sources.proc import CMD_MAX
from tests.conftest import VENV_BIN, Server, free_port, wait_for

API = "/api/v1"
SHARDS = 100_000
OBSERVED = 10  # seconds of slots checked one by one
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SLEEPER = "import time; time.sleep(600)"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (all its threads), from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime: fields 14, 15


def create(client: httpx.Client, body: dict) -> int:
    resp = client.post(f"{API}/instrumentations", json=body)
    assert resp.status_code in (200, 201), resp.text
    return resp.json()["id"]


def host_warnings(client: httpx.Client) -> dict[str, str]:
    (host,) = [h for h in client.get(f"{API}/hosts").json()["hosts"] if h["hostname"] == socket.gethostname()]
    return host["warnings"]


def latest_start(client: httpx.Client, inst_id: int) -> int:
    resp = client.get(f"{API}/instrumentations/{inst_id}/value")
    return resp.json()["start_time"] if resp.status_code == 200 else -1


def observe(client: httpx.Client, server: Server, others: list[int]) -> tuple[float, int]:
    """Watch ``OBSERVED`` seconds: the agent's CPU share over them, and their first slot."""
    first = int(time.time()) + 1
    wall, cpu = time.monotonic(), cpu_seconds(server.proc.pid)
    # Done when the last of them is final everywhere (or its deadline passed: then it is missing).
    wait_for(lambda: all(latest_start(client, i) >= first + OBSERVED - 1 for i in others)
             or time.time() > first + OBSERVED + 10, timeout=OBSERVED + 20, interval=0.25)
    share = (cpu_seconds(server.proc.pid) - cpu) / (time.monotonic() - wall)
    print(f"agent CPU over {OBSERVED} s: {share:.1%} of a core")
    return share, first


def assert_every_second(client: httpx.Client, inst_id: int, first: int) -> list[dict]:
    """Every slot of ``[first, first + OBSERVED)`` final with the one source it expects."""
    points = client.get(f"{API}/instrumentations/{inst_id}/value",
                        params={"start_time": first, "end_time": first + OBSERVED}).json()
    assert [p["start_time"] for p in points] == list(range(first, first + OBSERVED)), points
    late = [(p["start_time"], p["nsources"], p["expected"]) for p in points
            if (p["nsources"], p["expected"]) != (1, 1)]
    assert not late, f"instrumentation {inst_id}: slots without their source: {late}"
    return points


def everyone_else(client: httpx.Client, hostile: set[int]) -> list[int]:
    listed = client.get(f"{API}/instrumentations").json()["instrumentations"]
    return [i["id"] for i in listed if i["id"] not in hostile]


def hosts_table(server: Server) -> str:
    exe = shutil.which("fleetscope", path=str(VENV_BIN)) or "fleetscope"
    out = subprocess.run([exe, "hosts", "--url", server.url], capture_output=True, text=True, timeout=30,
                         env={**os.environ, "COLUMNS": "2000"})
    assert out.returncode == 0, out.stderr
    return " ".join(out.stdout.split())  # the table's cell borders and padding aside


def send_gauges(port: int) -> dict[str, float]:
    """``SHARDS`` gauges ``app.queue``, one per ``shard`` tag, over StatsD/TCP; returned when the
    agent has read them all (it closes the connection after the last line)."""
    sent = {f"s{i:06d}": float(i % 97 + 1) for i in range(SHARDS)}
    lines = "".join(f"queue:{v:g}|g|#shard:{k}\n" for k, v in sent.items()).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=60) as conn:
        conn.sendall(lines + b"jobs:1|c|#queue:mail\n")
        conn.shutdown(socket.SHUT_WR)
        assert conn.recv(1) == b""
    return sent


def statsd_server(tmp_path_factory: pytest.TempPathFactory, *extra: str) -> Iterator[tuple[Server, dict]]:
    port = free_port()
    srv = Server(tmp_path_factory.mktemp("hostile"), free_port(),
                 ["--statsd", f"127.0.0.1:{port}", "--ingest-max-keys", str(2 * SHARDS), *extra]).start()
    try:
        sent = send_gauges(port)
        with srv.client() as client:  # the agent tells the control plane of its new metrics
            wait_for(lambda: any(m["name"] == "app.queue"
                                 for m in client.get(f"{API}/metrics").json()["metrics"]))
        yield srv, sent
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def budgeted(tmp_path_factory) -> Iterator[tuple[Server, dict]]:
    """A serve with the default budget (50 ms per instrumentation per tick) and 100,000 gauges."""
    yield from statsd_server(tmp_path_factory)


@pytest.fixture(scope="module")
def roomy(tmp_path_factory) -> Iterator[tuple[Server, dict]]:
    """A serve whose budget (1 s) lets the 100,000-value breakdown run, so that it is bounded."""
    yield from statsd_server(tmp_path_factory, "--tick-budget", "1s")


@pytest.fixture
def api(budgeted) -> Iterator[httpx.Client]:
    with budgeted[0].client() as client:
        yield client


# -- RE2 through the real API --------------------------------------------------------------


@pytest.mark.parametrize(("predicate", "reason"), [
    ('cmd ~ "(a)\\\\1"', "invalid escape sequence: \\1"),
    ({"re": ["cmd", "(?=a)"]}, "invalid perl operator: (?="),
    ({"re": ["cmd", "a" * 1025]}, "longer than 1024 characters"),
])
def test_a_pattern_re2_refuses_is_422_naming_the_field(api: httpx.Client, predicate, reason: str) -> None:
    resp = api.post(f"{API}/instrumentations", json={"module": "proc", "stat": "cpu", "predicate": predicate})
    assert resp.status_code == 422, resp.text
    error = resp.json()["error"]
    assert error["field"] == "predicate"
    assert "field 'cmd'" in error["message"] and reason in error["message"], error


# -- (a) ReDoS -------------------------------------------------------------------------------


def test_redos_predicate_over_a_real_process(budgeted) -> None:
    server, _ = budgeted
    prefix = f"{sys.executable} -c {SLEEPER} "
    n = CMD_MAX - len(prefix) - 1  # the "!" is the last character the agent keeps of the command line
    assert n >= 40, "Python's re would take 2^n steps: at 40, days"
    bang = subprocess.Popen([sys.executable, "-c", SLEEPER, "a" * n + "!"])
    plain = subprocess.Popen([sys.executable, "-c", SLEEPER, "a" * n])
    created = []
    try:
        with server.client() as client:
            redos = 'cmd ~ "(a+)+$"'
            created.append(hostile := create(client, {"module": "proc", "stat": "cpu", "predicate": redos,
                                                      "decomposition": ["pid"]}))
            created.append(rss := create(client, {"module": "proc", "stat": "rss", "predicate": redos,
                                                  "decomposition": ["pid"]}))

            def matched() -> dict | None:
                value = client.get(f"{API}/instrumentations/{rss}/value").json().get("value") or {}
                return value if str(plain.pid) in value else None

            wait_for(matched, timeout=20)
            share, first = observe(client, server, [hostile, rss])
            # RE2 answers at once: the ReDoS instrumentation itself delivers every second...
            for inst_id in everyone_else(client, set()):
                assert_every_second(client, inst_id, first)
            for point in assert_every_second(client, rss, first):
                # ...and correctly: "aaa…a" ends a run of a's, "aaa…a!" does not.
                assert str(plain.pid) in point["value"] and str(bang.pid) not in point["value"]
            assert share < 0.5, f"the agent used {share:.0%} of a core"
            assert str(hostile) not in host_warnings(client)
    finally:
        for proc in (bang, plain):
            proc.kill()
            proc.wait()
        with server.client() as client:
            for inst_id in created:
                client.delete(f"{API}/instrumentations/{inst_id}")


# -- (b) a breakdown by 100,000 values -------------------------------------------------------


def test_a_breakdown_by_100000_values_is_bounded(roomy) -> None:
    server, sent = roomy
    with server.client() as client:
        wide = create(client, {"module": "app", "stat": "queue", "decomposition": ["shard"]})
        text = f"broken down by {SHARDS} values of 'shard' in one tick: the top {values.AGENT_TOP_K} sent"
        wait_for(lambda: text in host_warnings(client).get(str(wide), ""), timeout=20)
        assert text in hosts_table(server)
        share, first = observe(client, server, everyone_else(client, set()))
        for inst_id in everyone_else(client, {wide}):
            assert_every_second(client, inst_id, first)
        top = sorted(sent, key=lambda k: (-sent[k], k))[:values.TOP_K]
        for point in assert_every_second(client, wide, first):
            value = point["value"]
            # The answer folds once more, ranking (other) like any key: 49 or 50 keys besides it.
            kept = [k for k in value if k != values.OTHER]
            assert len(kept) >= values.TOP_K - 1 and values.OTHER in value
            assert {k: value[k] for k in kept} == {k: sent[k] for k in top[:len(kept)]}
            assert math.fsum(value.values()) == math.fsum(sent.values()), "the total stays exact"
        # Reading and folding 100,000 rows costs about 0.15 s a second here; the limit leaves room.
        assert share < 0.7, f"the agent used {share:.0%} of a core"
        client.delete(f"{API}/instrumentations/{wide}")


# -- (c) too costly for its budget -----------------------------------------------------------


def test_an_instrumentation_over_its_budget_is_paused(budgeted) -> None:
    server, _ = budgeted
    # The largest predicate: MAX_REGEXES regexes, each run on every one of the 100,000 distinct
    # values (too many to remember): about 2 s of CPU a tick without the budget.
    largest = " or ".join(f'shard ~ "^s0*{i}[0-9]*7$"' for i in range(MAX_REGEXES))
    with server.client() as client:
        slow = create(client, {"module": "app", "stat": "queue", "decomposition": ["shard"],
                               "predicate": largest})
        warning = wait_for(lambda: host_warnings(client).get(str(slow)), timeout=20)
        assert f"instrumentation {slow} paused on this host" in warning
        assert "over its budget of 50 ms per tick; paused until 20" in warning
        assert f"instrumentation {slow} paused on this host" in hosts_table(server)
        share, first = observe(client, server, everyone_else(client, {slow}))
        for inst_id in everyone_else(client, {slow}):
            assert_every_second(client, inst_id, first)
        points = client.get(f"{API}/instrumentations/{slow}/value",
                            params={"start_time": first, "end_time": first + OBSERVED}).json()
        assert all(p["nsources"] == 0 for p in points), "paused: no value at all, not a zero"
        assert share < 0.3, f"the agent used {share:.0%} of a core"
        client.delete(f"{API}/instrumentations/{slow}")


@pytest.mark.parametrize("command", ["serve", "agent"])
@pytest.mark.parametrize(("budget", "reason"), [("2s", "outside 1ms..1s"), ("fast", "not a number")])
def test_a_bad_tick_budget_is_refused(tmp_path: Path, command: str, budget: str, reason: str) -> None:
    exe = shutil.which("fleetscope", path=str(VENV_BIN)) or "fleetscope"
    extra = ["--port", str(free_port()), "--data-dir", str(tmp_path)] if command == "serve" else []
    out = subprocess.run([exe, command, *extra, "--tick-budget", budget], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 1
    assert f"error: tick-budget: {budget!r}" in out.stderr and reason in out.stderr, out.stderr
