"""Every SQL statement of the store, shared by SQLite and PostgreSQL.

The schema is the same on both (only the spelling of the id and blob types
differs). Statements are written with ``?`` placeholders; the PostgreSQL store
turns them into ``%s``. A subclass provides :meth:`SQLStore._tx`, one
transaction holding the store's lock, and the few things that are not SQL
(opening, reclaiming space, checking integrity).

History lives in three tables:

* ``chunks``: one row per encoded chunk (:mod:`fleetscope.store.chunkenc`) of
  one instrumentation and tier, indexed by (instrumentation, tier, start).
  ``end_time`` is exclusive (the end of the last slot). Where chunks overlap,
  the one written last (the larger id) wins.
* ``rollups``: per instrumentation and coarser tier, the time up to which that
  tier has been rolled up from the tier below.
* ``pending_rollups``: slots of coarser tiers to roll up again because data
  arrived late for a slot already rolled up; written in the same transaction
  as the late data, so a crash never loses the obligation.
"""

from __future__ import annotations

import contextlib
import json
import random
import time
from collections.abc import Iterator, Sequence
from typing import Any

from fleetscope.model.instrumentation import Instrumentation
from fleetscope.store.access import ACCESS_SCHEMA, AccessTables
from fleetscope.store.alerts import ALERTS_SCHEMA, AlertTables, mark_changed
from fleetscope.store.annotations import ANNOTATIONS_SCHEMA, AnnotationTables
from fleetscope.store.base import Chunk, HistoryChange, TierStats
from fleetscope.store.importresults import IMPORT_RESULTS_SCHEMA, ImportResultTables, delete_results_in
from fleetscope.store.imports import IMPORTS_SCHEMA, ImportTables

SCHEMA = """
CREATE TABLE IF NOT EXISTS instrumentations (
    id {id},
    definition TEXT NOT NULL,
    created {real} NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS aggregators (
    name TEXT PRIMARY KEY,
    seen {real} NOT NULL
);
CREATE TABLE IF NOT EXISTS leases (
    inst_id BIGINT PRIMARY KEY,
    owner TEXT NOT NULL,
    expires {real} NOT NULL
);
CREATE TABLE IF NOT EXISTS partition_leases (
    inst_id BIGINT PRIMARY KEY,
    owner TEXT NOT NULL,
    expires {real} NOT NULL
);
CREATE TABLE IF NOT EXISTS dashboards (
    id {id},
    document TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS chunks (
    id {id},
    inst_id BIGINT NOT NULL,
    tier SMALLINT NOT NULL,
    start_time BIGINT NOT NULL,
    end_time BIGINT NOT NULL,
    npoints INTEGER NOT NULL,
    nsamples BIGINT NOT NULL,
    data {blob} NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_by_time ON chunks (inst_id, tier, start_time);
CREATE TABLE IF NOT EXISTS rollups (
    inst_id BIGINT NOT NULL,
    tier SMALLINT NOT NULL,
    done_until BIGINT NOT NULL,
    PRIMARY KEY (inst_id, tier)
);
CREATE TABLE IF NOT EXISTS pending_rollups (
    inst_id BIGINT NOT NULL,
    tier SMALLINT NOT NULL,
    start_time BIGINT NOT NULL,
    PRIMARY KEY (inst_id, tier, start_time)
);
"""


_LEASE_TABLES = ("leases", "partition_leases")  # of instrumentations and of partitions of hosts


class SQLStore(AccessTables, AlertTables, ImportTables, ImportResultTables, AnnotationTables):
    """Definitions, dashboards, access (tokens, tenants, audit), alerts and history over SQL; see the
    module docstring."""

    ID_TYPE = "INTEGER PRIMARY KEY"
    # Rounds of lease keeping run one at a time (their row locks would otherwise deadlock);
    # SQLite serialises writers already.
    LEASE_LOCK: str | None = None
    BLOB_TYPE = "BLOB"
    REAL_TYPE = "REAL"

    def schema(self) -> str:
        return (SCHEMA + ACCESS_SCHEMA + ALERTS_SCHEMA + IMPORTS_SCHEMA + IMPORT_RESULTS_SCHEMA
                + ANNOTATIONS_SCHEMA).format(
            id=self.ID_TYPE, blob=self.BLOB_TYPE, real=self.REAL_TYPE)

    @contextlib.contextmanager
    def _tx(self) -> Iterator[Any]:
        """One transaction: yields an object with ``execute(sql, params)`` and
        ``executemany(sql, rows)`` returning cursors; commits, or rolls back on error."""
        raise NotImplementedError
        yield

    # -- definitions ------------------------------------------------------------------------------

    def create_instrumentation(self, spec: dict, created: float) -> Instrumentation:
        with self._tx() as db:
            row = db.execute("INSERT INTO instrumentations (definition, created) VALUES (?, ?) "
                             "RETURNING id", ("{}", created)).fetchall()[0]
            inst = Instrumentation(id=int(row[0]), created=created, **spec)
            db.execute("UPDATE instrumentations SET definition = ? WHERE id = ?",
                       (json.dumps(inst.to_json()), inst.id))
        return inst

    def get_instrumentation(self, inst_id: int) -> Instrumentation | None:
        with self._tx() as db:
            row = db.execute("SELECT definition FROM instrumentations WHERE id = ?", (inst_id,)).fetchone()
        return Instrumentation.from_json(json.loads(row[0])) if row else None

    def list_instrumentations(self) -> list[Instrumentation]:
        with self._tx() as db:
            rows = db.execute("SELECT definition FROM instrumentations ORDER BY id").fetchall()
        return [Instrumentation.from_json(json.loads(r[0])) for r in rows]

    def update_instrumentation(self, inst: Instrumentation) -> None:
        with self._tx() as db:
            db.execute("UPDATE instrumentations SET definition = ? WHERE id = ?",
                       (json.dumps(inst.to_json()), inst.id))

    def delete_instrumentation(self, inst_id: int) -> bool:
        """Delete an instrumentation and its history."""
        with self._tx() as db:
            cur = db.execute("DELETE FROM instrumentations WHERE id = ?", (inst_id,))
            found = cur.rowcount > 0
            if found:
                self._delete_history(db, inst_id)
                ids = [r[0] for r in db.execute("SELECT id FROM alert_rules WHERE inst_id = ?", (inst_id,))]
                for rule_id in ids:  # its alert rules go with it
                    db.execute("DELETE FROM alert_states WHERE rule_id = ?", (rule_id,))
                db.execute("DELETE FROM alert_rules WHERE inst_id = ?", (inst_id,))
                if ids:
                    mark_changed(db)
        return found

    def get_meta(self, key: str) -> str | None:
        with self._tx() as db:
            row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO meta (key, value) VALUES (?, ?) "
                       "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value))

    # -- leases: which aggregator aggregates which instrumentation (fleetscope.aggregator.shards) --

    def keep_leases(self, name: str, inst_ids: Sequence[int], now: float, ttl: float,
                    table: str = "leases") -> set[int]:
        """One round for aggregator ``name``: heartbeat, renew its leases up to its fair share of
        ``inst_ids`` (the rest given back), claim free or expired ones; the ids it holds now.
        ``table``: ``leases`` (instrumentations) or ``partition_leases`` (partitions of hosts)."""
        assert table in _LEASE_TABLES, table
        with self._tx() as db:
            if self.LEASE_LOCK:
                db.execute(self.LEASE_LOCK)
            db.execute("INSERT INTO aggregators (name, seen) VALUES (?, ?) "
                       "ON CONFLICT (name) DO UPDATE SET seen = excluded.seen", (name, now))
            db.execute("DELETE FROM aggregators WHERE seen < ?", (now - 100 * ttl,))
            live = db.execute("SELECT COUNT(*) FROM aggregators WHERE seen > ?", (now - ttl,)).fetchone()[0]
            wanted = set(inst_ids)
            fair = -(-len(wanted) // max(1, int(live)))
            held = sorted(int(r[0]) for r in db.execute(
                f"SELECT inst_id FROM {table} WHERE owner = ? AND expires > ?", (name, now)).fetchall())
            keep = [i for i in held if i in wanted][:fair]
            for inst_id in set(held) - set(keep):  # over the share, or deleted meanwhile
                db.execute(f"DELETE FROM {table} WHERE inst_id = ? AND owner = ?", (inst_id, name))
            for inst_id in keep:
                db.execute(f"UPDATE {table} SET expires = ? WHERE inst_id = ? AND owner = ?",
                           (now + ttl, inst_id, name))
            taken = {int(r[0]) for r in db.execute(f"SELECT inst_id FROM {table} WHERE expires > ?",
                                                   (now,)).fetchall()}
            free = sorted(wanted - taken)
            random.Random(name).shuffle(free)  # aggregators starting together try different ones first
            for inst_id in free[: max(0, fair - len(keep))]:
                # Atomic on both databases: only a missing or expired lease changes hands.
                cur = db.execute(
                    f"INSERT INTO {table} (inst_id, owner, expires) VALUES (?, ?, ?) "
                    "ON CONFLICT (inst_id) DO UPDATE SET owner = excluded.owner, expires = excluded.expires "
                    f"WHERE {table}.expires <= ?", (inst_id, name, now + ttl, now))
                if cur.rowcount:
                    keep.append(inst_id)
        return set(keep)

    def release_leases(self, name: str) -> None:
        """Aggregator ``name`` stops: its instrumentations are free at once."""
        with self._tx() as db:
            for table in _LEASE_TABLES:
                db.execute(f"DELETE FROM {table} WHERE owner = ?", (name,))
            db.execute("DELETE FROM aggregators WHERE name = ?", (name,))

    # -- dashboards: one JSON document per row, validated by the API -----------------------------

    def list_dashboards(self) -> list[dict]:
        with self._tx() as db:
            rows = db.execute("SELECT id, document FROM dashboards ORDER BY id").fetchall()
        return [{**json.loads(doc), "id": int(i)} for i, doc in rows]

    def get_dashboard(self, dashboard_id: int) -> dict | None:
        with self._tx() as db:
            row = db.execute("SELECT document FROM dashboards WHERE id = ?", (dashboard_id,)).fetchone()
        return {**json.loads(row[0]), "id": dashboard_id} if row else None

    def create_dashboard(self, doc: dict) -> dict:
        now = time.time()
        stored = {**doc, "created": now, "updated": now}
        stored.pop("id", None)
        with self._tx() as db:
            row = db.execute("INSERT INTO dashboards (document) VALUES (?) RETURNING id",
                             (json.dumps(stored),)).fetchall()[0]
        return {**stored, "id": int(row[0])}

    def update_dashboard(self, dashboard_id: int, doc: dict) -> dict | None:
        with self._tx() as db:
            row = db.execute("SELECT document FROM dashboards WHERE id = ?", (dashboard_id,)).fetchone()
            if row is None:
                return None
            stored = {**doc, "created": json.loads(row[0])["created"], "updated": time.time()}
            stored.pop("id", None)
            db.execute("UPDATE dashboards SET document = ? WHERE id = ?", (json.dumps(stored), dashboard_id))
        return {**stored, "id": dashboard_id}

    def delete_dashboard(self, dashboard_id: int) -> bool:
        with self._tx() as db:
            cur = db.execute("DELETE FROM dashboards WHERE id = ?", (dashboard_id,))
        return cur.rowcount > 0

    # -- history ----------------------------------------------------------------------------------

    def write_history(self, change: HistoryChange) -> None:
        """Apply ``change`` atomically: all of it or nothing."""
        with self._tx() as db:
            if change.delete:
                db.executemany("DELETE FROM chunks WHERE id = ?", [(i,) for i in change.delete])
            if change.add:
                db.executemany(
                    "INSERT INTO chunks (inst_id, tier, start_time, end_time, npoints, nsamples, data) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)", [tuple(c) for c in change.add])
            if change.pending_done:
                db.executemany("DELETE FROM pending_rollups "
                               "WHERE inst_id = ? AND tier = ? AND start_time = ?", list(change.pending_done))
            if change.pending_add:
                db.executemany("INSERT INTO pending_rollups (inst_id, tier, start_time) VALUES (?, ?, ?) "
                               "ON CONFLICT DO NOTHING", list(change.pending_add))
            if change.watermarks:
                db.executemany("INSERT INTO rollups (inst_id, tier, done_until) VALUES (?, ?, ?) "
                               "ON CONFLICT (inst_id, tier) DO UPDATE SET done_until = excluded.done_until",
                               list(change.watermarks))

    def read_chunks(self, inst_id: int, tier: int, start: int, end: int, span: int,
                    with_data: bool = True) -> list[Chunk]:
        """The chunks of ``inst_id`` and ``tier`` that overlap ``[start, end)``, oldest write
        first. ``span`` bounds how far before ``start`` a chunk may begin (no chunk is longer)."""
        data = "data" if with_data else "NULL"
        with self._tx() as db:
            rows = db.execute(
                f"SELECT id, start_time, end_time, npoints, nsamples, {data} FROM chunks "
                "WHERE inst_id = ? AND tier = ? AND start_time >= ? AND start_time < ? AND end_time > ? "
                "ORDER BY id", (inst_id, tier, start - span, end, start)).fetchall()
        return [Chunk(int(r[0]), int(r[1]), int(r[2]), int(r[3]), int(r[4]), bytes(r[5] or b""))
                for r in rows]

    def read_chunk_ids(self, ids: Sequence[int]) -> list[Chunk]:
        """The chunks with these ids, oldest write first."""
        out: list[Chunk] = []
        with self._tx() as db:
            for i in range(0, len(ids), 500):
                part = list(ids[i:i + 500])
                marks = ", ".join("?" * len(part))
                rows = db.execute(f"SELECT id, start_time, end_time, npoints, nsamples, data FROM chunks "
                                  f"WHERE id IN ({marks})", part).fetchall()
                out += [Chunk(int(r[0]), int(r[1]), int(r[2]), int(r[3]), int(r[4]), bytes(r[5]))
                        for r in rows]
        return sorted(out)

    def chunk_index(self, inst_id: int, tier: int, since: int = 0) -> list[Chunk]:
        """Every chunk of ``inst_id`` and ``tier`` starting at or after ``since``, without data."""
        with self._tx() as db:
            rows = db.execute("SELECT id, start_time, end_time, npoints, nsamples FROM chunks "
                              "WHERE inst_id = ? AND tier = ? AND start_time >= ? ORDER BY id",
                              (inst_id, tier, since)).fetchall()
        return [Chunk(int(r[0]), int(r[1]), int(r[2]), int(r[3]), int(r[4]), b"") for r in rows]

    def first_chunk_start(self, inst_id: int, tier: int, since: int) -> int | None:
        """The start of the earliest chunk of ``inst_id`` and ``tier`` ending after ``since``."""
        with self._tx() as db:
            row = db.execute("SELECT min(start_time) FROM chunks WHERE inst_id = ? AND tier = ? "
                             "AND end_time > ?", (inst_id, tier, since)).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def last_chunk_end(self, inst_id: int, tier: int) -> int | None:
        with self._tx() as db:
            row = db.execute("SELECT max(end_time) FROM chunks WHERE inst_id = ? AND tier = ?",
                             (inst_id, tier)).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def watermarks(self) -> dict[tuple[int, int], int]:
        """``{(inst_id, tier): done_until}``."""
        with self._tx() as db:
            rows = db.execute("SELECT inst_id, tier, done_until FROM rollups").fetchall()
        return {(int(a), int(b)): int(c) for a, b, c in rows}

    def pending_rollups(self) -> list[tuple[int, int, int]]:
        with self._tx() as db:
            rows = db.execute("SELECT inst_id, tier, start_time FROM pending_rollups "
                              "ORDER BY inst_id, tier, start_time").fetchall()
        return [(int(a), int(b), int(c)) for a, b, c in rows]

    def expire_chunks(self, inst_id: int, tier: int, before: int) -> int:
        """Delete the chunks of ``inst_id`` and ``tier`` that end at or before ``before``."""
        with self._tx() as db:
            cur = db.execute("DELETE FROM chunks WHERE inst_id = ? AND tier = ? AND start_time < ? "
                             "AND end_time <= ?", (inst_id, tier, before, before))
        return max(cur.rowcount, 0)

    def history_ids(self) -> list[int]:
        """The instrumentations that have history (or rollup state)."""
        with self._tx() as db:
            rows = db.execute("SELECT DISTINCT inst_id FROM chunks UNION "
                              "SELECT DISTINCT inst_id FROM rollups").fetchall()
        return sorted(int(r[0]) for r in rows)

    def delete_history(self, inst_id: int) -> None:
        with self._tx() as db:
            self._delete_history(db, inst_id)

    @staticmethod
    def _delete_history(db: Any, inst_id: int) -> None:
        for table in ("chunks", "rollups", "pending_rollups"):
            db.execute(f"DELETE FROM {table} WHERE inst_id = ?", (inst_id,))
        delete_results_in(db, inst_id=inst_id)  # its answers over imports

    def history_stats(self) -> list[TierStats]:
        """Per instrumentation and tier: chunks, points, samples, payload bytes, oldest, newest."""
        with self._tx() as db:
            rows = db.execute("SELECT inst_id, tier, count(*), sum(npoints), sum(nsamples), "
                              "sum(length(data)), min(start_time), max(end_time) FROM chunks "
                              "GROUP BY inst_id, tier "
                              "ORDER BY inst_id, tier").fetchall()
        return [TierStats(*(int(x) for x in r)) for r in rows]

    # -- provided by the backend ------------------------------------------------------------------

    def disk_bytes(self) -> int:
        """Bytes the whole store takes on disk."""
        raise NotImplementedError

    def reclaim(self) -> None:
        """Give the space of deleted rows back (to the file system where the backend can)."""

    def integrity_check(self) -> str:
        """``"ok"``, or what the backend found wrong."""
        return "ok"

    def close(self) -> None:
        raise NotImplementedError
