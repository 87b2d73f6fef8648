"""History through a real `fleetscope serve`: SIGKILL during writes, SIGTERM flushes, restarts keep
history and show the outage as a gap, export and store stats over HTTP and the CLI."""

from __future__ import annotations

import csv
import io
import json
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from fleetscope.store.open import open_store
from tests import store_backends
from tests.conftest import VENV_BIN, Server, free_port, wait_for
from tests.store_backends import BACKENDS, empty_pg

pg_url = store_backends.pg_url  # the fixture

API = "/api/v1"




def cpu_id(c: httpx.Client) -> int:
    for inst in c.get(f"{API}/instrumentations").json()["instrumentations"]:
        if inst["metric"] == "cpu.usage" and inst["decomposition"] == ["mode"]:
            return inst["id"]
    raise AssertionError("no default cpu.usage instrumentation")


def raw_stats(c: httpx.Client, inst_id: int) -> dict | None:
    for row in c.get(f"{API}/store/stats").json()["tiers"]:
        if row["inst_id"] == inst_id and row["tier"] == "second":
            return row
    return None


@pytest.fixture(params=BACKENDS)
def serve_args(request: pytest.FixtureRequest, tmp_path: Path) -> list[str]:
    """Extra `fleetscope serve` arguments selecting the store (SQLite in the data dir, or PostgreSQL)."""
    if request.param == "sqlite":
        return []
    return ["--store", empty_pg(request.getfixturevalue("pg_url"))]


def test_sigkill_during_writes_keeps_history_intact_and_shows_the_gap(tmp_path: Path,
                                                                     serve_args: list[str]) -> None:
    srv = Server(tmp_path, free_port(), ["--flush-every", "0.2", *serve_args]).start()
    try:
        with srv.client() as c:
            inst = cpu_id(c)
            stats = wait_for(lambda: (s := raw_stats(c, inst)) and s["points"] >= 4 and s)
            flushed = (stats["oldest"], stats["newest"])  # on disk: must survive the kill
            before = c.get(f"{API}/instrumentations/{inst}/value",
                           params={"start_time": flushed[0], "end_time": flushed[1]}).json()
            assert all(p["value"] is not None for p in before[-3:])
        srv.stop(signal.SIGKILL)  # writes happen every 0.2 s: this lands during or between them
        killed_at = time.time()
    finally:
        srv.stop(signal.SIGKILL)
    if not serve_args:
        db = sqlite3.connect(tmp_path / "fleetscope.db")
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        db.close()
    else:
        store = open_store(serve_args[1])
        assert store.history_stats(), "chunks are readable after the kill"
        store.close()
    time.sleep(1.5)  # an outage long enough to be seen
    srv.start()
    try:
        with srv.client() as c:
            after = c.get(f"{API}/instrumentations/{inst}/value",
                          params={"start_time": flushed[0], "end_time": flushed[1]}).json()
            assert after == before, "history written before the kill is intact"
            restarted = wait_for(lambda: c.get(f"{API}/instrumentations/{inst}/value").json()["value"]
                                 and c.get(f"{API}/instrumentations/{inst}/value").json()["start_time"])
            span = c.get(f"{API}/instrumentations/{inst}/value",
                         params={"start_time": flushed[0], "end_time": restarted + 1}).json()
            after_kill = [p for p in span if p["start_time"] >= int(killed_at)]
            resumed = next(i for i, p in enumerate(after_kill) if p["value"] is not None)
            gap = after_kill[:resumed]
            assert len(gap) >= 2 and all(p["nsources"] == 0 for p in gap), "the outage is a gap, not zeros"
            assert span[-1]["value"] is not None, "the instrumentation resumed"
    finally:
        srv.stop()


def test_sigterm_flushes_every_final_slot(tmp_path: Path) -> None:
    # Flushing only every 10 minutes: whatever is on disk was written at shutdown.
    srv = Server(tmp_path, free_port(), ["--flush-every", "600"]).start()
    with srv.client() as c:
        inst = cpu_id(c)
        latest = wait_for(lambda: (v := c.get(f"{API}/instrumentations/{inst}/value").json())["value"]
                          and v["start_time"])
    assert srv.stop(signal.SIGTERM) in (0, -signal.SIGTERM)  # uvicorn re-raises it after shutting down
    store = open_store(f"sqlite:///{tmp_path / 'fleetscope.db'}")
    try:
        assert store.integrity_check() == "ok"
        assert (store.last_chunk_end(inst, 0) or 0) >= latest + 1, "the last slots shown were flushed"
    finally:
        store.close()


def test_bad_store_url_stops_serve_with_a_clear_error(tmp_path: Path) -> None:
    exe = VENV_BIN / "fleetscope"
    # (the other bad URLs and retentions are checked in test_history.py without a process each)
    for args, needle in ((["--store", "postgresql://127.0.0.1:1/x", "--history", "second=1d"],
                          "store: cannot open"),):
        proc = subprocess.run([str(exe), "serve", "--port", str(free_port()), "--data-dir", str(tmp_path),
                               *args], capture_output=True, text=True, timeout=30)
        assert proc.returncode == 1, proc.stderr
        assert needle in proc.stderr and "Traceback" not in proc.stderr


def test_export_formats(client: httpx.Client) -> None:
    inst = cpu_id(client)
    wait_for(lambda: len([p for p in client.get(f"{API}/instrumentations/{inst}/value",
                                                params={"ndatapoints": 3}).json() if p["value"]]) == 3)
    url = f"{API}/instrumentations/{inst}/export"
    text = client.get(url, params={"since": "20s", "format": "csv"})
    assert text.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(text.text)))
    assert rows and set(rows[0]) == {"start_time", "duration", "nsources", "expected", "key", "value"}
    assert {r["key"] for r in rows} <= {"user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
                                        "guest", "guest_nice"}
    lines = client.get(url, params={"since": "20s", "format": "json"}).text.splitlines()
    first = json.loads(lines[0])
    assert set(first) == {"start_time", "duration", "value", "nsources", "expected"}
    by_time = {r["start_time"]: r for r in (json.loads(x) for x in lines)}
    t = int(rows[0]["start_time"])
    assert by_time[t]["value"][rows[0]["key"]] == float(rows[0]["value"])
    om = client.get(url, params={"since": "20s", "format": "openmetrics", "step": 5}).text
    assert om.startswith("# TYPE fleetscope_cpu_usage gauge\n") and om.endswith("# EOF\n")
    sample = next(line for line in om.splitlines() if not line.startswith("#"))
    assert sample.startswith(f'fleetscope_cpu_usage{{instrumentation="{inst}",mode="')
    heat = next(i["id"] for i in client.get(f"{API}/instrumentations").json()["instrumentations"]
                if i["shape"] == "histogram")
    om = client.get(f"{API}/instrumentations/{heat}/export", params={"since": "10s", "format": "openmetrics"})
    assert "# TYPE fleetscope_proc_cpu gaugehistogram" in om.text and 'le="+Inf"' in om.text


@pytest.mark.parametrize(
    ("params", "status", "field"),
    [
        ({"since": "soon"}, 422, "since"),
        ({"since": "0s"}, 422, "since"),
        ({"since": "1h", "start_time": 5}, 422, "since"),
        ({"start_time": 100, "end_time": 50}, 422, "end_time"),
        ({"start_time": -1}, 422, "start_time"),
        ({"step": 0}, 422, "step"),
        ({"format": "xml"}, 422, "format"),
        ({"since": "30d", "step": 1}, 422, "step"),
    ],
)
def test_export_rejects_bad_parameters(client: httpx.Client, params: dict, status: int, field: str) -> None:
    resp = client.get(f"{API}/instrumentations/{cpu_id(client)}/export", params=params)
    assert resp.status_code == status, resp.text
    assert resp.json()["error"]["field"] == field


def test_unknown_ids_are_404_everywhere(client: httpx.Client) -> None:
    for path in ("export", "value", "heatmap"):
        resp = client.get(f"{API}/instrumentations/987654/{path}")
        assert resp.status_code == 404 and resp.json()["error"]["field"] == "id"


def test_responses_say_which_resolution_answered(client: httpx.Client) -> None:
    inst = cpu_id(client)
    now = int(time.time())
    points = client.get(f"{API}/instrumentations/{inst}/value", params={"ndatapoints": 3}).json()
    assert all(p["resolution"] == 1 for p in points)
    day = client.get(f"{API}/instrumentations/{inst}/value",
                     params={"start_time": now - 86400, "end_time": now, "ndatapoints": 100}).json()
    assert len(day) <= 100 and {p["resolution"] for p in day} == {60} and day[0]["duration"] == 900
    year = client.get(f"{API}/instrumentations/{inst}/value",
                      params={"start_time": now - 300 * 86400, "end_time": now, "ndatapoints": 50}).json()
    assert {p["resolution"] for p in year} == {3600}
    old = client.get(f"{API}/instrumentations/{inst}/value",
                     params={"start_time": now - 10 * 86400, "end_time": now - 10 * 86400 + 60,
                             "duration": 1})
    assert old.status_code == 422 and old.json()["error"]["field"] == "duration"
    heat = next(i["id"] for i in client.get(f"{API}/instrumentations").json()["instrumentations"]
                if i["shape"] == "histogram")
    hm = client.get(f"{API}/instrumentations/{heat}/heatmap",
                    params={"duration": 7200, "ndatapoints": 60}).json()
    assert (hm["step"], hm["resolution"]) == (120, 60) and len(hm["times"]) <= 61


def test_store_stats_endpoint(client: httpx.Client) -> None:
    inst = cpu_id(client)
    stats = wait_for(lambda: raw_stats(client, inst), timeout=20)
    assert stats["metric"] == "cpu.usage" and stats["resolution"] == 1 and stats["retention"] == 7 * 86400
    assert stats["points"] > 0 and stats["bytes"] > 0 and stats["oldest"] < stats["newest"]
    body = client.get(f"{API}/store/stats").json()
    assert body["disk_bytes"] > 0 and body["samples"] >= stats["samples"]


def fleetscope(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(VENV_BIN / "fleetscope"), *args], capture_output=True, text=True, timeout=60)


def test_cli_export_and_store_stats(server: Server, tmp_path: Path) -> None:
    with server.client() as c:
        inst = cpu_id(c)
        wait_for(lambda: raw_stats(c, inst), timeout=20)
    out = fleetscope("export", str(inst), "--since", "15s", "--format", "json", "--url", server.url)
    assert out.returncode == 0, out.stderr
    points = [json.loads(line) for line in out.stdout.splitlines()]
    assert points and all(p["duration"] == 1 and p["value"] is not None for p in points)
    target = tmp_path / "cpu.om"
    out = fleetscope("export", str(inst), "--since", "15s", "--format", "openmetrics", "-o", str(target),
                     "--url", server.url)
    assert out.returncode == 0 and target.read_text().endswith("# EOF\n")
    stats = fleetscope("store", "stats", "--json", "--url", server.url)
    body = json.loads(stats.stdout)
    assert any(r["inst_id"] == inst and r["tier"] == "second" for r in body["tiers"])
    table = fleetscope("store", "stats", "--store", f"sqlite:///{server.data_dir / 'fleetscope.db'}")
    assert table.returncode == 0 and "cpu.usage" in table.stdout and "B/sample" in table.stdout
    for args, needle in ((["export", "424242"], "error: id: no instrumentation 424242"),
                         (["store", "stats", "--store", "mysql://x/y"], "error: store: unsupported")):
        bad = fleetscope(*args, "--url", server.url)
        assert bad.returncode == 1 and needle in bad.stderr, bad.stderr
