"""The metrics a CSV import defines, across the API processes of a fleet: two real `fleetscope api`
processes on one real PostgreSQL (and a real nats-server). An import made through one is learnt
by the other without a restart (instrumentations can be made on its metric there, and read it),
deleting it through the other forgets the metric in both, and a restart does not bring it back
from the agents' saved catalogue."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port, make_token, wait_for
from tests.nats_server import NatsServer
from tests.store_backends import empty_pg
from tests.store_backends import pg_url as pg_url  # the session's PostgreSQL database
from tests.test_fleet import Proc

API = "/api/v1"
T0 = 1_709_546_400
MAPPING = {"time_column": "time",
           "metrics": [{"metric": "fleetcsv.qps", "field": "route", "kind": "interval",
                        "columns": ["login", "search"]},
                       {"metric": "cpu.runqueue", "columns": ["runq"], "fields": {"state": "runnable"}}]}


@pytest.fixture
def fleet(tmp_path: Path, pg_url: str) -> Iterator[list[tuple[Proc, httpx.Client]]]:
    store = empty_pg(pg_url)
    nats = NatsServer(tmp_path).start()

    apis = []
    token = make_token(store, "import-fleet")
    try:
        for i in (1, 2):
            port = free_port()
            proc = Proc(f"api{i}", ["api", "--bus", nats.url, "--store", store, "--port", str(port)],
                        tmp_path).start()
            client = httpx.Client(base_url=f"http://127.0.0.1:{port}{API}", timeout=30,
                                  headers={"authorization": f"Bearer {token}"})
            apis.append((proc, client))
        for _, client in apis:
            wait_for(lambda client=client: _up(client), timeout=30)
        yield apis
    finally:
        for proc, client in apis:
            client.close()
            proc.stop()
        nats.stop()


def _up(client: httpx.Client) -> bool:
    try:
        return client.get("/metrics").status_code == 200
    except httpx.HTTPError:
        return False


def _names(client: httpx.Client) -> set[str]:
    return {m["name"] for m in client.get("/metrics").json()["metrics"]}


def _knows(client: httpx.Client, name: str) -> bool:
    return name in _names(client)


def test_every_api_process_learns_and_forgets_an_imports_metrics(fleet, tmp_path: Path) -> None:
    (one, a), (two, b) = fleet
    assert not {"fleetcsv.qps", "cpu.runqueue"} & (_names(a) | _names(b))
    f = tmp_path / "run.csv"
    f.write_text("time,login,search,runq\n" + "".join(f"{T0 + i},{i},{2 * i},3\n" for i in range(10)))
    r = a.post("/imports", data={"format": "csv", "host": "lt1", "mapping": json.dumps(MAPPING)},
               files=[("file", (f.name, f.read_bytes(), "text/csv"))])
    assert r.status_code == 201, r.text
    imp = r.json()
    assert _knows(a, "fleetcsv.qps")  # the process that took it knows at once
    wait_for(lambda: _knows(b, "fleetcsv.qps"), timeout=15)  # the other without a restart
    assert _knows(b, "cpu.runqueue")  # and the metrics every import may write (host logs')
    made = b.post("/instrumentations", json={"metric": "fleetcsv.qps", "decomposition": ["route"]})
    assert made.status_code == 201, made.text
    got = b.get(f"/instrumentations/{made.json()['id']}/value",
                params={"start_time": T0, "end_time": T0 + 10, "duration": 10}).json()
    assert got[0]["value"] == {"login": sum(range(10)), "search": 2 * sum(range(10))}
    # Deleted through the other process: both forget it (its instrumentation stays, answering nothing).
    assert b.delete(f"/imports/{imp['id']}").status_code == 204
    assert not _knows(b, "fleetcsv.qps")
    wait_for(lambda: not _knows(a, "fleetcsv.qps"), timeout=15)
    refused = a.post("/instrumentations", json={"metric": "fleetcsv.qps"})
    assert refused.status_code == 404 and "fleetcsv.qps" in refused.text, refused.text
    # A restart does not learn it again (not from the store's saved catalogue either).
    one.stop()
    one.start()
    wait_for(lambda: _up(a), timeout=30)
    assert not _knows(a, "fleetcsv.qps")
    wait_for(lambda: b.get("/metrics").status_code == 200)
    assert not _knows(b, "fleetcsv.qps") and two.proc.poll() is None
