"""Tables of imported performance logs: the imports, their files, their chunks of rows.

A mixin of :class:`fleetscope.store.sql.SQLStore`: the same SQL on SQLite and PostgreSQL.

* ``imports``: one row per import (host, format, owning tenant, state, time range, counts,
  and a JSON document with the files, options and metrics);
* ``import_files``: the SHA-256 of every file an import read, unique across imports: the same
  content imported again is refused (:class:`DuplicateImport`) instead of counted twice;
* ``import_chunks``: the rows (:mod:`fleetscope.store.importenc`), per import, metric and
  span of time, indexed by (metric, start).

An import is written in stages so that a large one never holds the store's write lock for
long: :meth:`ImportTables.begin_import` claims the files' hashes in state ``loading``; the
chunks follow in short transactions; :meth:`ImportTables.finish_import` makes it ``ready``
in one transaction. Readers see only ``ready`` imports, so a failed or half-written import is
never read; :meth:`ImportTables.delete_import` removes everything an import wrote.
While it loads, its writer records how far it has read (:meth:`ImportTables.set_import_progress`,
in the document's ``progress``: also the sign that the writer lives); a failed import keeps
nothing but its row, state ``failed`` with the reason (:meth:`ImportTables.fail_import`), so
that whoever waits for it learns why (:mod:`fleetscope.api.importjobs`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

from fleetscope.store.importresults import delete_results_in

IMPORTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS imports (
    id {id},
    host TEXT NOT NULL,
    format TEXT NOT NULL,
    tenant TEXT,
    state TEXT NOT NULL,
    created {real} NOT NULL,
    start_time BIGINT,
    end_time BIGINT,
    document TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS import_files (
    sha256 TEXT PRIMARY KEY,
    import_id BIGINT NOT NULL,
    name TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS import_chunks (
    id {id},
    import_id BIGINT NOT NULL,
    metric TEXT NOT NULL,
    start_time BIGINT NOT NULL,
    end_time BIGINT NOT NULL,
    nsamples INTEGER NOT NULL,
    data {blob} NOT NULL
);
CREATE INDEX IF NOT EXISTS import_chunks_by_metric ON import_chunks (metric, start_time);
CREATE INDEX IF NOT EXISTS import_chunks_by_import ON import_chunks (import_id);
"""
IMPORT_TABLES = ("imports", "import_files", "import_chunks")
LOADING, READY, FAILED = "loading", "ready", "failed"


class ImportInfo(NamedTuple):
    """One import as listed."""

    id: int
    host: str
    format: str
    tenant: str | None
    state: str
    created: float
    start: int | None
    end: int | None  # exclusive: the end of the last interval
    document: dict  # files [{name, sha256, bytes}], options, metrics, samples, values, bytes

    def to_json(self) -> dict:
        return {"id": self.id, "host": self.host, "format": self.format, "tenant": self.tenant,
                "state": self.state, "created": self.created, "start_time": self.start,
                "end_time": self.end, **self.document}


class NewImportChunk(NamedTuple):
    metric: str
    start: int
    end: int
    nsamples: int
    data: bytes


class StoredImportChunk(NamedTuple):
    import_id: int
    metric: str
    start: int
    end: int
    data: bytes


class DuplicateImport(Exception):
    """A file's content was imported already."""

    def __init__(self, name: str, import_id: int, earlier_name: str) -> None:
        super().__init__(f"{name}: the same content was imported already as import {import_id} "
                         f"({earlier_name})")
        self.name = name
        self.import_id = import_id
        self.earlier_name = earlier_name


_COLUMNS = "id, host, format, tenant, state, created, start_time, end_time, document"


def _info(row: Any) -> ImportInfo:
    i, host, fmt, tenant, state, created, start, end, doc = row
    return ImportInfo(int(i), host, fmt, tenant, state, float(created), None if start is None else int(start),
                      None if end is None else int(end), json.loads(doc))


class ImportTables:
    """Imports, their files and chunks; needs the host class's ``_tx``."""

    def _tx(self) -> Any:  # provided by SQLStore
        raise NotImplementedError

    def begin_import(self, host: str, fmt: str, tenant: str | None, files: Sequence[dict],
                     document: dict) -> int:
        """A new import in state ``loading`` owning the hashes of ``files`` (``{name, sha256,
        bytes}``); DuplicateImport if one of them is owned already (or twice in ``files``)."""
        seen: dict[str, str] = {}
        for f in files:
            if f["sha256"] in seen:
                raise DuplicateImport(f["name"], 0, seen[f["sha256"]])
            seen[f["sha256"]] = f["name"]
        with self._tx() as db:
            for f in files:
                row = db.execute("SELECT import_id, name FROM import_files WHERE sha256 = ?",
                                 (f["sha256"],)).fetchone()
                if row is not None:
                    raise DuplicateImport(f["name"], int(row[0]), row[1])
            doc = {**document, "files": list(files)}
            import_id = int(db.execute(
                "INSERT INTO imports (host, format, tenant, state, created, document) "
                "VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                (host, fmt, tenant, LOADING, time.time(), json.dumps(doc))).fetchall()[0][0])
            db.executemany("INSERT INTO import_files (sha256, import_id, name) VALUES (?, ?, ?)",
                           [(f["sha256"], import_id, f["name"]) for f in files])
        return import_id

    def add_import_chunks(self, import_id: int, chunks: Sequence[NewImportChunk]) -> None:
        with self._tx() as db:
            db.executemany("INSERT INTO import_chunks (import_id, metric, start_time, end_time, nsamples, "
                           "data) VALUES (?, ?, ?, ?, ?, ?)",
                           [(import_id, c.metric, c.start, c.end, c.nsamples, c.data) for c in chunks])

    def finish_import(self, import_id: int, host: str, start: int, end: int, document: dict) -> None:
        """Make a loading import ``ready`` (readable), with its host, range and final document."""
        with self._tx() as db:
            old = db.execute("SELECT document FROM imports WHERE id = ?", (import_id,)).fetchone()
            doc = {**json.loads(old[0]), **document}
            db.execute("UPDATE imports SET host = ?, state = ?, start_time = ?, end_time = ?, document = ? "
                       "WHERE id = ?", (host, READY, start, end, json.dumps(doc), import_id))

    def delete_import(self, import_id: int) -> bool:
        """Delete an import and everything it wrote, in one transaction."""
        with self._tx() as db:
            db.execute("DELETE FROM import_chunks WHERE import_id = ?", (import_id,))
            delete_results_in(db, import_id=import_id)  # every instrumentation's answer over it
            db.execute("DELETE FROM import_files WHERE import_id = ?", (import_id,))
            gone = db.execute("DELETE FROM imports WHERE id = ? RETURNING id", (import_id,)).fetchall()
        return bool(gone)

    def list_imports(self) -> list[ImportInfo]:
        with self._tx() as db:
            rows = db.execute(f"SELECT {_COLUMNS} FROM imports ORDER BY id").fetchall()
        return [_info(r) for r in rows]

    def get_import(self, import_id: int) -> ImportInfo | None:
        with self._tx() as db:
            row = db.execute(f"SELECT {_COLUMNS} FROM imports WHERE id = ?", (import_id,)).fetchone()
        return None if row is None else _info(row)

    def import_chunks(self, metric: str, start: int, end: int,
                      import_ids: Sequence[int] | None = None) -> list[StoredImportChunk]:
        """The chunks of ``metric`` of ready imports that overlap ``[start, end)`` (of the
        imports ``import_ids`` only, when given), oldest first."""
        sql = ("SELECT c.import_id, c.metric, c.start_time, c.end_time, c.data FROM import_chunks c "
               "JOIN imports i ON i.id = c.import_id WHERE c.metric = ? AND c.start_time < ? "
               "AND c.end_time > ? AND i.state = ?")
        params: list[Any] = [metric, end, start, READY]
        if import_ids is not None:
            if not import_ids:
                return []
            sql += f" AND c.import_id IN ({', '.join('?' for _ in import_ids)})"
            params += list(import_ids)
        with self._tx() as db:
            rows = db.execute(sql + " ORDER BY c.start_time, c.id", params).fetchall()
        return [StoredImportChunk(int(i), m, int(s), int(e), bytes(d)) for i, m, s, e, d in rows]

    def import_chunk_index(self, import_id: int, metric: str) -> list[tuple[int, int, int]]:
        """``(id, start, end)`` of every chunk of ``metric`` of a ready import, by start: what a
        reader that streams the whole import reads a few at a time
        (:meth:`read_import_chunk_ids`)."""
        with self._tx() as db:
            rows = db.execute("SELECT c.id, c.start_time, c.end_time FROM import_chunks c JOIN imports i "
                              "ON i.id = c.import_id WHERE c.import_id = ? AND c.metric = ? AND i.state = ? "
                              "ORDER BY c.start_time, c.id", (import_id, metric, READY)).fetchall()
        return [(int(i), int(s), int(e)) for i, s, e in rows]

    def read_import_chunk_ids(self, ids: Sequence[int]) -> list[StoredImportChunk]:
        """The chunks with these ids (of ready imports), by start."""
        if not ids:
            return []
        with self._tx() as db:
            rows = db.execute("SELECT c.import_id, c.metric, c.start_time, c.end_time, c.data "
                              "FROM import_chunks c JOIN imports i ON i.id = c.import_id "
                              f"WHERE c.id IN ({', '.join('?' for _ in ids)}) AND i.state = ? "
                              "ORDER BY c.start_time, c.id", [*ids, READY]).fetchall()
        return [StoredImportChunk(int(i), m, int(s), int(e), bytes(d)) for i, m, s, e, d in rows]

    def import_bytes(self, import_id: int) -> int:
        with self._tx() as db:
            row = db.execute("SELECT COALESCE(SUM(LENGTH(data)), 0) FROM import_chunks WHERE import_id = ?",
                             (import_id,)).fetchone()
        return int(row[0])

    def set_import_progress(self, import_id: int, progress: dict) -> bool:
        """Record how far a loading import has been read (the document's ``progress``); False
        if it is not loading any more (failed, deleted)."""
        with self._tx() as db:
            row = db.execute("SELECT document FROM imports WHERE id = ? AND state = ?",
                             (import_id, LOADING)).fetchone()
            if row is None:
                return False
            doc = {**json.loads(row[0]), "progress": progress}
            db.execute("UPDATE imports SET document = ? WHERE id = ?", (json.dumps(doc), import_id))
        return True

    def fail_import(self, import_id: int, error: dict) -> bool:
        """Delete everything a loading import wrote and its files' hashes (the same files can be
        imported again), and keep its row as ``failed`` with ``error`` (the reason), in one
        transaction; False if it was not loading."""
        with self._tx() as db:
            row = db.execute("SELECT document FROM imports WHERE id = ? AND state = ?",
                             (import_id, LOADING)).fetchone()
            if row is None:
                return False
            db.execute("DELETE FROM import_chunks WHERE import_id = ?", (import_id,))
            db.execute("DELETE FROM import_files WHERE import_id = ?", (import_id,))
            doc = {**json.loads(row[0]), "error": error}
            db.execute("UPDATE imports SET state = ?, document = ? WHERE id = ?",
                       (FAILED, json.dumps(doc), import_id))
        return True
