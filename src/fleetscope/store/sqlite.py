"""The embedded SQLite store (WAL mode)."""

from __future__ import annotations

import json
import sqlite3
import threading
import time

from fleetscope.model.instrumentation import Instrumentation

SCHEMA = """
CREATE TABLE IF NOT EXISTS instrumentations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    definition TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS dashboards (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    document TEXT NOT NULL
);
"""


class SQLiteStore:
    """A :class:`fleetscope.store.base.Store` in one SQLite file."""

    def __init__(self, path: str) -> None:
        self.path = path
        # One connection shared by the event loop and worker threads, serialised by a lock;
        # `with self._db` is one transaction (committed, or rolled back on error).
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._lock = threading.Lock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    def create_instrumentation(self, spec: dict, created: float) -> Instrumentation:
        with self._lock, self._db:
            cur = self._db.execute(
                "INSERT INTO instrumentations (definition, created) VALUES (?, ?)", ("{}", created)
            )
            inst = Instrumentation(id=cur.lastrowid, created=created, **spec)
            self._db.execute("UPDATE instrumentations SET definition = ? WHERE id = ?",
                             (json.dumps(inst.to_json()), inst.id))
        return inst

    def get_instrumentation(self, inst_id: int) -> Instrumentation | None:
        with self._lock:
            row = self._db.execute("SELECT definition FROM instrumentations WHERE id = ?",
                                   (inst_id,)).fetchone()
        return Instrumentation.from_json(json.loads(row[0])) if row else None

    def list_instrumentations(self) -> list[Instrumentation]:
        with self._lock:
            rows = self._db.execute("SELECT definition FROM instrumentations ORDER BY id").fetchall()
        return [Instrumentation.from_json(json.loads(r[0])) for r in rows]

    def update_instrumentation(self, inst: Instrumentation) -> None:
        with self._lock, self._db:
            self._db.execute("UPDATE instrumentations SET definition = ? WHERE id = ?",
                             (json.dumps(inst.to_json()), inst.id))

    def delete_instrumentation(self, inst_id: int) -> bool:
        with self._lock, self._db:
            cur = self._db.execute("DELETE FROM instrumentations WHERE id = ?", (inst_id,))
        return cur.rowcount > 0

    def get_meta(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self._lock, self._db:
            self._db.execute("INSERT INTO meta (key, value) VALUES (?, ?) "
                             "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))

    # -- dashboards: one JSON document per row, validated by the API --------------------------

    def list_dashboards(self) -> list[dict]:
        with self._lock:
            rows = self._db.execute("SELECT id, document FROM dashboards ORDER BY id").fetchall()
        return [{**json.loads(doc), "id": i} for i, doc in rows]

    def get_dashboard(self, dashboard_id: int) -> dict | None:
        with self._lock:
            row = self._db.execute("SELECT document FROM dashboards WHERE id = ?",
                                   (dashboard_id,)).fetchone()
        return {**json.loads(row[0]), "id": dashboard_id} if row else None

    def create_dashboard(self, doc: dict) -> dict:
        now = time.time()
        stored = {**doc, "created": now, "updated": now}
        stored.pop("id", None)
        with self._lock, self._db:
            cur = self._db.execute("INSERT INTO dashboards (document) VALUES (?)", (json.dumps(stored),))
        return {**stored, "id": cur.lastrowid}

    def update_dashboard(self, dashboard_id: int, doc: dict) -> dict | None:
        with self._lock, self._db:
            row = self._db.execute("SELECT document FROM dashboards WHERE id = ?",
                                   (dashboard_id,)).fetchone()
            if row is None:
                return None
            stored = {**doc, "created": json.loads(row[0])["created"], "updated": time.time()}
            stored.pop("id", None)
            self._db.execute("UPDATE dashboards SET document = ? WHERE id = ?",
                             (json.dumps(stored), dashboard_id))
        return {**stored, "id": dashboard_id}

    def delete_dashboard(self, dashboard_id: int) -> bool:
        with self._lock, self._db:
            cur = self._db.execute("DELETE FROM dashboards WHERE id = ?", (dashboard_id,))
        return cur.rowcount > 0

    def close(self) -> None:
        with self._lock:
            self._db.close()
