"""Answers over imports made before they are asked (#18: the first view of a month is not slow).

Through a real ``fleetscope serve`` on SQLite and a real PostgreSQL: once an upload is ready,
the persisted instrumentations that can read it get their answers without any read (the
import's listing counts them ``ready``/``pending``), an instrumentation made afterwards gets
its own, and those that cannot read it (not persisted, a predicate for another host, a
tenant scoped to another host) get none; deleting the import while answers are made leaves
none of its rows; a server stopped mid-way makes the rest after its restart, and a claim
left by a killed one is taken over once stale (on the store, both backends); and a read that
would evaluate more than the budget before its answer is made is refused with a 422 naming
``start_time``, then answered once the answer is made.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from fleetscope.api import imported
from fleetscope.api.queries import Range
from fleetscope.model.instrumentation import validate_spec
from fleetscope.model.metrics import Catalog
from fleetscope.perflogs.metrics import METRICS
from fleetscope.perflogs.sink import Column
from fleetscope.store.importresults import MAKING, READY, STALE_CLAIM
from fleetscope.store.open import open_store
from tests.conftest import Server, free_port, make_token, wait_for
from tests.store_backends import backend_url, pg_url  # noqa: F401  (fixtures)
from tests.test_import_answers import _import

START = 1_600_000_000  # on a 20-second boundary, neither a minute nor an hour
SMALL = 3 * 3600 + 1  # lines of a 3-hour 1-second log
# A log of more 1-second samples than a read may evaluate before its answer is made: each
# default instrumentation's answer takes about a second to make, so the making is seen.
BIG = imported.EVALUATE_BUDGET + 4 * 3600


def _vmstat_log(path: Path, lines: int, start: int = START) -> Path:
    """``vmstat -t 1`` output of a host (procps 4's layout)."""
    head = ("procs -----------memory---------- ---swap-- -----io---- -system-- -------cpu------- "
            "-----timestamp-----\n r  b   swpd   free   buff  cache   si   so    bi    bo   in   cs us sy "
            "id wa st gu                 UTC\n")
    out = [head]
    for i in range(lines):
        us = (7 * i) % 50
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(start + i))
        out.append(f" 1  0      0 {800000 + i % 1000:6d}  12345 400000    0    0     0    {i % 9:2d}  500 "
                   f" 900 {us:2d}  5 {95 - us:2d}  0  0  0 {when}\n")
    path.write_text("".join(out))
    return path


class Served:
    """A serve on ``url`` with an operator's client."""

    def __init__(self, tmp_path: Path, url: str) -> None:
        self.url, self.data = url, tmp_path / "data"
        self.data.mkdir(exist_ok=True)
        self.srv = Server(self.data, free_port(), extra=["--store", url], auth=True)
        self.op = ""

    def start(self) -> Served:
        self.srv.start(timeout=60)
        self.op = self.op or make_token(self.url, "op", "operator")
        self.c = httpx.Client(base_url=self.srv.url, timeout=120,
                              headers={"authorization": f"Bearer {self.op}"})
        return self

    def make(self, spec: dict, token: str | None = None) -> int:
        headers = {"authorization": f"Bearer {token}"} if token else None
        r = self.c.post("/api/v1/instrumentations", json=spec, headers=headers)
        assert r.status_code == 201, r.text
        return r.json()["id"]

    def upload(self, log: Path, host: str = "old1") -> int:
        r = self.c.post("/api/v1/imports", data={"format": "vmstat", "host": host},
                        files=[("file", (log.name, log.read_bytes(), "text/plain"))])
        assert r.status_code == 201, r.text
        return r.json()["id"]

    def answers(self, import_id: int) -> dict | None:
        r = self.c.get(f"/api/v1/imports/{import_id}")
        return r.json().get("answers") if r.status_code == 200 else None


def _states(url: str, import_id: int) -> dict[int, str]:
    """``{instrumentation: state}`` of the answers over ``import_id``, read from the store."""
    store = open_store(url)
    try:
        return {inst.id: row.state for inst in store.list_instrumentations()
                if (row := store.import_results(inst.id).get(import_id)) is not None}
    finally:
        store.close()


def _rows_of(url: str, import_id: int) -> int:
    """Rows of both answer tables of ``import_id``."""
    store = open_store(url)
    try:
        with store._tx() as db:
            return sum(int(db.execute(f"SELECT COUNT(*) FROM {t} WHERE import_id = ?",
                                      (import_id,)).fetchone()[0])
                       for t in ("import_results", "import_result_chunks"))
    finally:
        store.close()


CPU = {"metric": "cpu.usage", "decomposition": ["mode"], "persist": True}
CPU_COLUMNS = tuple(Column("cpu.usage", ("all", m, "", "")) for m in ("user", "system"))


def test_answers_are_made_without_a_read_for_those_that_can_read_the_import(backend_url, tmp_path) -> None:  # noqa: F811
    s = Served(tmp_path, backend_url).start()
    try:
        admin = make_token(backend_url, "admin")
        r = s.c.post("/api/v1/tenants", json={"name": "acme", "scope": 'hostname == "elsewhere"'},
                     headers={"authorization": f"Bearer {admin}"})
        assert r.status_code == 201, r.text
        before = s.make({**CPU, "predicate": {"eq": ["hostname", "old1"]}})
        transient = s.make({**CPU, "persist": False})
        other_host = s.make({**CPU, "predicate": {"eq": ["hostname", "web9"]}})
        tenants = s.make(CPU, make_token(backend_url, "acme-op", "operator", "acme"))
        import_id = s.upload(_vmstat_log(tmp_path / "vmstat.log", SMALL))
        # No read of any instrumentation: the answers come from the import becoming ready.
        counts = wait_for(lambda: (a := s.answers(import_id)) and a["pending"] == 0 and a, timeout=120)
        states = _states(backend_url, import_id)
        assert states.get(before) == READY
        assert set(states.values()) == {READY} and counts["ready"] == len(states)
        for none in (transient, other_host, tenants):
            assert none not in states, none
        after = s.make({**CPU, "predicate": {"eq": ["hostname", "old1"]}, "decomposition": []})
        wait_for(lambda: _states(backend_url, import_id).get(after) == READY, timeout=120)
        assert s.answers(import_id) == {"ready": counts["ready"] + 1, "pending": 0}
        # Read from what was made: the first minute's user share summed from the log's lines
        # (the first line only marks the start), and the total equals the modes' sum.
        def minute(inst: int):
            r = s.c.get(f"/api/v1/instrumentations/{inst}/value",
                        params={"start_time": START, "end_time": START + 3600, "duration": 60})
            assert r.status_code == 200, r.text
            return next(p["value"] for p in r.json() if p["start_time"] == START - START % 60)

        # That minute ends 20 s after the log's first line: lines 1 to 20, each a second.
        modes = minute(before)
        assert modes["user"] == pytest.approx(sum((7 * i) % 50 / 100 for i in range(1, 21)))
        assert modes["system"] == pytest.approx(1.0)
        assert minute(after) == pytest.approx(sum(modes.values()))
    finally:
        s.srv.stop()


def test_deleting_an_import_while_its_answers_are_made_leaves_nothing(backend_url, tmp_path) -> None:  # noqa: F811
    s = Served(tmp_path, backend_url).start()
    try:
        s.make(CPU)
        import_id = s.upload(_vmstat_log(tmp_path / "big.log", BIG))
        wait_for(lambda: MAKING in _states(backend_url, import_id).values(), timeout=120)
        r = s.c.delete(f"/api/v1/imports/{import_id}")
        assert r.status_code == 204, r.text
        # The maker works in order: once a later import's answers are made, it is past this one.
        later = s.upload(_vmstat_log(tmp_path / "small.log", 600, START + 10 * 86400))
        wait_for(lambda: (a := s.answers(later)) and a["ready"] and a["pending"] == 0, timeout=180)
        assert _rows_of(backend_url, import_id) == 0
    finally:
        s.srv.stop()


def test_a_server_stopped_while_making_makes_the_rest_after_a_restart(backend_url, tmp_path) -> None:  # noqa: F811
    s = Served(tmp_path, backend_url).start()
    try:
        s.make(CPU)
        import_id = s.upload(_vmstat_log(tmp_path / "big.log", BIG))
        wait_for(lambda: MAKING in _states(backend_url, import_id).values(), timeout=120)
        pending = s.answers(import_id)["pending"]
        assert pending > 0
    finally:
        s.srv.stop()  # SIGTERM: the answer being made is given up, not left claimed
    assert MAKING not in _states(backend_url, import_id).values()
    s.start()
    try:
        wait_for(lambda: (a := s.answers(import_id)) and a["pending"] == 0, timeout=240)
        assert set(_states(backend_url, import_id).values()) == {READY}
    finally:
        s.srv.stop()


def test_a_read_beyond_the_budget_before_the_answer_is_made_is_refused(backend_url, tmp_path) -> None:  # noqa: F811
    s = Served(tmp_path, backend_url).start()
    try:
        import_id = s.upload(_vmstat_log(tmp_path / "big.log", BIG))
        # Not persisted: no answer is made for it until it reads.
        inst = s.make({**CPU, "persist": False})
        params = {"start_time": START, "end_time": START + BIG, "duration": 3600}
        r = s.c.get(f"/api/v1/instrumentations/{inst}/value", params=params)
        assert r.status_code == 422, r.text
        assert r.json()["error"]["field"] == "start_time" and "being indexed" in r.text, r.text
        shorter = s.c.get(f"/api/v1/instrumentations/{inst}/value",
                          params={**params, "end_time": START + 86400})
        assert shorter.status_code == 200, shorter.text
        wait_for(lambda: _states(backend_url, import_id).get(inst) == READY, timeout=120)
        r = s.c.get(f"/api/v1/instrumentations/{inst}/value", params=params)
        assert r.status_code == 200, r.text
        # Every whole hour of the log: (7 i) % 50 runs through 0..49 72 times, 1,225 % each.
        whole = [p for p in r.json() if p["start_time"] > START and p["start_time"] + 3600 <= START + BIG - 1]
        assert len(whole) >= 50 and all(p["value"]["user"] == pytest.approx(882.0) for p in whole)
        assert all((a["start_time"], a["value"]) == (b["start_time"], pytest.approx(b["value"]))
                   for a, b in zip(r.json()[:24], shorter.json()[:24], strict=True))
    finally:
        s.srv.stop()


def test_a_claim_left_by_a_killed_maker_is_taken_over_at_start(backend_url) -> None:  # noqa: F811
    # A process killed mid-way (no SIGTERM) leaves its row claimed: a start makes it once the
    # claim is older than STALE_CLAIM, here written as that old.
    store = open_store(backend_url)
    try:
        info = _import(store, "old1", [(START + i, 1, CPU_COLUMNS, [7.0 * (i % 7), 5.0]) for i in range(600)])
        inst = store.create_instrumentation(validate_spec(CPU, Catalog(METRICS)), 0.0)
        left = store.claim_import_result(inst.id, info.id, imported.definition(inst),
                                         now=time.time() - STALE_CLAIM - 1)
        assert left is not None and store.import_results(inst.id)[info.id].state == MAKING
        imported.start_making(store)
        wait_for(lambda: store.import_results(inst.id)[info.id].state == READY, timeout=60)
        assert store.import_results(inst.id)[info.id].run != left
        minute = START - START % 60 + 60  # 20 s after the first sample: samples 20 to 79, 1 s each
        got = imported.imported_points(store, inst, Range(minute, 60, 1), 50, make=False)
        user = sum(7.0 * (i % 7) for i in range(20, 80))
        assert got[minute].value == pytest.approx({"user": user, "system": 300.0})
    finally:
        imported.stop_making(store)
        store.close()
