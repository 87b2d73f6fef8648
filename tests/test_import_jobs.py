"""Imports as jobs against a real `fleetscope serve`: ``Prefer: respond-async`` answers 202 at once,
the import shows how far the server has read it until it is ready, or failed with the file, the
line and the reason and nothing of it kept; a job is its tenant's alone; a server killed or
stopped while reading leaves no half import (its restart fails it, and the same files import
again, counted once); the CLI draws the parse's progress in a terminal."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Server, free_port, wait_for
from tests.test_imports import API, Api

T0 = 1_709_546_400  # 2024-03-04 10:00 UTC
QPS = {"time_column": "time", "metrics": [{"metric": "jobs.qps", "field": "route", "kind": "interval"}]}
ROWS = 600_000  # about 12 MB: a few seconds of parsing, several progress reports
ASYNC = {"prefer": "respond-async"}


def big_csv(path: Path, rows: int = ROWS, start: int = T0, bad_at: int | None = None) -> Path:
    """``rows`` seconds of two routes' requests per second; the row ``bad_at`` (0-based) holds
    a word where a number goes. The figures: login = i % 7, search = 1."""
    with open(path, "w") as f:
        f.write("time,login,search\n")
        for i in range(rows):
            f.write(f"{start + i},{'lots' if i == bad_at else i % 7},1\n")
    return path


class Client(Api):
    def post(self, path: Path, headers: dict | None = None, **fields) -> object:
        data = {"format": "csv", "host": "jobs-host", "mapping": json.dumps(QPS),
                **{k: str(v) for k, v in fields.items()}}
        with open(path, "rb") as f:
            return self.c.post(f"{API}/imports", data=data, headers=headers or {},
                               files=[("file", (path.name, f, "text/csv"))])

    def watch(self, import_id: int, timeout: float = 120) -> list[dict]:
        """The import as GET shows it, every 50 ms, until it is no longer loading."""
        seen: list[dict] = []

        def done() -> bool:
            r = self.c.get(f"{API}/imports/{import_id}")
            assert r.status_code == 200, r.text
            seen.append(r.json())
            return seen[-1]["state"] != "loading"

        wait_for(done, timeout=timeout, interval=0.05)
        return seen


def _start(tmp: Path) -> tuple[Server, dict[str, Client]]:
    server = Server(tmp, free_port(), auth=True).start()
    admin = Client(server, server.token("jobs-admin", "admin"))
    for name in ("acme", "globex"):
        made = admin.c.post(f"{API}/tenants", json={"name": name, "scope": f'hostname == "{name}-db"'})
        assert made.status_code == 201, made.text
    return server, {"operator": Client(server, server.token("jobs-op", "operator")),
                    "acme": Client(server, server.token("jobs-acme", "operator", "acme")),
                    "globex": Client(server, server.token("jobs-globex", "operator", "globex"))}


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, dict[str, Client]]]:
    server, clients = _start(tmp_path_factory.mktemp("jobs"))
    yield server, clients
    server.stop()


def test_async_import_reports_progress_then_ready_to_its_tenant_alone(srv, tmp_path: Path) -> None:
    _, c = srv
    f = big_csv(tmp_path / "big.csv")
    r = c["acme"].post(f, ASYNC, host="acme-db")
    assert r.status_code == 202, r.text
    first = r.json()
    assert r.headers["location"] == f"{API}/imports/{first['id']}"
    assert r.headers["preference-applied"] == "respond-async"
    assert first["state"] == "loading" and first["progress"]["bytes"] == f.stat().st_size
    # Another tenant neither sees nor deletes the job; the operators (no tenant) see it.
    assert c["globex"].c.get(f"{API}/imports/{first['id']}").status_code == 404
    assert c["globex"].c.delete(f"{API}/imports/{first['id']}").status_code == 404
    assert first["id"] not in [i["id"] for i in c["globex"].c.get(f"{API}/imports").json()["imports"]]
    assert first["id"] in [i["id"] for i in c["operator"].c.get(f"{API}/imports").json()["imports"]]
    busy = c["acme"].c.delete(f"{API}/imports/{first['id']}")  # not while it is being read
    assert busy.status_code == 409 and "being read" in busy.json()["error"]["message"], busy.text
    seen = c["acme"].watch(first["id"])
    loading = [s["progress"]["read"] for s in seen if s["state"] == "loading"]
    assert any(0 < x < f.stat().st_size for x in loading), loading  # seen part way
    assert loading == sorted(loading)  # never backwards
    last = seen[-1]
    assert last["state"] == "ready" and last["samples"] == ROWS, last
    assert last["progress"]["read"] == last["progress"]["bytes"] == f.stat().st_size
    # What it holds: the file's own figures (interval metric: per-second rates times 1 s).
    inst = c["acme"].instrument("jobs.qps", ["route"])
    whole = c["acme"].values_once_indexed(inst, T0, T0 + ROWS, ROWS)[0]["value"]
    assert whole == {"login": sum(i % 7 for i in range(ROWS)), "search": ROWS}


def test_a_failed_job_says_file_line_reason_and_keeps_nothing(srv, tmp_path: Path) -> None:
    _, c = srv
    start = T0 + 10 * ROWS
    f = big_csv(tmp_path / "late-error.csv", rows=200_000, start=start, bad_at=199_990)
    r = c["operator"].post(f, ASYNC)
    assert r.status_code == 202, r.text
    last = c["operator"].watch(r.json()["id"])[-1]
    error = last["error"]
    assert last["state"] == "failed" and "samples" not in last
    assert (error["file"], error["line"], error["status"]) == ("late-error.csv", 199_992, 422)
    assert error["field"] == "file"
    assert error["reason"] == "column 'login': not a number: 'lots'"
    assert error["message"] == "late-error.csv: line 199992: column 'login': not a number: 'lots'"
    inst = c["operator"].instrument("jobs.qps", [], {"eq": ["hostname", "jobs-host"]})
    assert [p for p in c["operator"].values(inst, start, start + 200_000, 200_000) if p["value"]] == []
    # Nothing claims its files: the same content goes again (and fails again), not a 409.
    again = c["operator"].post(f, ASYNC)
    assert again.status_code == 202, again.text
    assert c["operator"].watch(again.json()["id"])[-1]["state"] == "failed"
    # Without the header the request waits and answers the error itself: then not even a row.
    before = c["operator"].c.get(f"{API}/imports").json()["imports"]
    r = c["operator"].post(f)
    assert r.status_code == 422 and r.json()["error"]["message"] == error["message"], r.text
    assert c["operator"].c.get(f"{API}/imports").json()["imports"] == before
    for imp_id in (last["id"], again.json()["id"]):  # a failed row goes with DELETE
        assert c["operator"].c.delete(f"{API}/imports/{imp_id}").status_code == 204


def test_duplicates_and_bad_requests_are_refused_at_once(srv, tmp_path: Path) -> None:
    _, c = srv
    f = big_csv(tmp_path / "small.csv", rows=100, start=T0 + 20 * ROWS)
    r = c["operator"].post(f, ASYNC)
    assert r.status_code == 202, r.text
    assert c["operator"].watch(r.json()["id"])[-1]["state"] == "ready"
    again = c["operator"].post(f, ASYNC)
    assert again.status_code == 409 and "imported already" in again.json()["error"]["message"]
    bad = c["operator"].post(f, ASYNC, mapping=json.dumps({"time_column": "time"}))
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "mapping"


def test_imports_past_two_wait_their_turn(srv, tmp_path: Path) -> None:
    """Two files are read at once per server (parsing takes a core): a third waits, queued."""
    _, c = srv
    made = []
    for n in range(3):
        f = big_csv(tmp_path / f"turn{n}.csv", start=T0 + (40 + n) * ROWS)
        r = c["operator"].post(f, ASYNC, host=f"turn-{n}")
        assert r.status_code == 202, r.text
        made.append(r.json())
    assert made[2]["progress"]["phase"] == "queued" and made[2]["progress"]["read"] == 0, made[2]
    seen = c["operator"].watch(made[2]["id"])
    phases = [s["progress"]["phase"] for s in seen if s["state"] == "loading"]
    assert phases[0] == "queued" and "reading" in phases, phases
    assert seen[-1]["state"] == "ready"
    for imp in made[:2]:
        assert c["operator"].watch(imp["id"])[-1]["state"] == "ready"


def _loading(client: Client, import_id: int) -> bool:
    imp = client.c.get(f"{API}/imports/{import_id}").json()
    assert imp["state"] == "loading", imp  # still reading when the server goes
    return imp["progress"]["read"] > 0


def test_a_server_stopped_mid_parse_leaves_no_half_import(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    server, c = _start(tmp_path / "data")
    try:
        f = big_csv(tmp_path / "restart.csv")
        for sig in (signal.SIGKILL, signal.SIGTERM):  # killed: the restart finds it; stopped: it fails it
            r = c["operator"].post(f, ASYNC)
            assert r.status_code == 202, r.text
            imp_id = r.json()["id"]
            wait_for(lambda imp_id=imp_id: _loading(c["operator"], imp_id), timeout=60, interval=0.05)
            server.proc.send_signal(sig)
            server.proc.wait(30)
            server.start()
            imp = c["operator"].c.get(f"{API}/imports/{imp_id}").json()
            assert imp["state"] == "failed" and "server stopped" in imp["error"]["message"], (sig, imp)
            assert "samples" not in imp
        # Nothing of either is known (its metric neither), and the same file imports again, counted once.
        made = c["operator"].c.post(f"{API}/instrumentations", json={"metric": "jobs.qps"})
        assert made.status_code == 404, made.text
        r = c["operator"].post(f, ASYNC)
        assert r.status_code == 202, r.text
        assert c["operator"].watch(r.json()["id"])[-1]["state"] == "ready"
        inst = c["operator"].instrument("jobs.qps", ["route"])
        whole = c["operator"].values_once_indexed(inst, T0, T0 + ROWS, ROWS)[0]["value"]
        assert whole == {"login": sum(i % 7 for i in range(ROWS)), "search": ROWS}
    finally:
        server.stop()


def test_the_cli_draws_the_parse_progress_in_a_terminal(srv, tmp_path: Path) -> None:
    server, _ = srv
    f = big_csv(tmp_path / "cli.csv", start=T0 + 30 * ROWS)
    exe = Path(os.environ.get("VIRTUAL_ENV", Path(__file__).parents[1] / ".venv")) / "bin" / "fleetscope"
    token = server.token("jobs-cli", "operator")
    command = (f"{exe} --token {token} import csv {f} --host cli-jobs --time-column time --metric jobs.qps "
               f"--field route --kind interval --url {server.url}")
    # util-linux's script: the CLI runs in a pseudo-terminal, as in a person's shell.
    started = time.monotonic()
    done = subprocess.run(["script", "-qefc", command, "/dev/null"], capture_output=True, text=True,
                          timeout=180, env={**os.environ, "COLUMNS": "120", "TERM": "xterm"})
    assert done.returncode == 0, done.stdout + done.stderr
    screen = done.stdout
    assert "reading cli.csv" in screen, screen[-2000:]
    assert f"{ROWS} samples every 1 s" in screen and "metrics jobs.qps" in screen, screen[-2000:]
    # The bar moved: more than one figure of the bytes read drawn while the server read.
    drawn = {part.split("/")[0].strip().split()[-1]
             for part in screen.split("reading cli.csv")[1:] if "/" in part}
    assert len(drawn) >= 2, (drawn, time.monotonic() - started)
