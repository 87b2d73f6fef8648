"""The embedded SQLite store (WAL mode, incremental auto-vacuum).

All SQL is in :mod:`fleetscope.store.sql`; this module opens the file and does
what only SQLite does. WAL with ``synchronous=NORMAL`` makes every committed
transaction survive the process being killed (SIGKILL), and a half-written one
is rolled back on the next open: the file is never corrupt.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

from fleetscope.store.sql import SQLStore


class SQLiteStore(SQLStore):
    """A :class:`fleetscope.store.base.Store` in one SQLite file."""

    ID_TYPE = "INTEGER PRIMARY KEY AUTOINCREMENT"  # ids are never reused, even after a delete

    def __init__(self, path: str, create: bool = True) -> None:
        self.path = path
        # One connection shared by the event loop and worker threads, serialised by a lock;
        # `with self._db` is one transaction (committed, or rolled back on error). Without
        # ``create``, mode=rw: a file that is not there is an error, never a new empty store.
        target = path if create else f"{Path(path).absolute().as_uri()}?mode=rw"
        self._db = sqlite3.connect(target, check_same_thread=False, timeout=30, uri=not create)
        self._lock = threading.RLock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        if self._db.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:
            # Incremental auto-vacuum lets retention give space back to the file system.
            # It must be chosen before the first table exists, or be applied by a VACUUM
            # (instant on a store that only holds definitions).
            self._db.execute("PRAGMA auto_vacuum=INCREMENTAL")
            self._db.execute("VACUUM")
        self._db.executescript(self.schema())

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock, self._db:
            yield self._db

    def disk_bytes(self) -> int:
        return sum(os.path.getsize(p) for p in (self.path, self.path + "-wal") if os.path.exists(p))

    def reclaim(self) -> None:
        with self._lock:
            # executescript steps the pragma to its end (execute() would free a single page).
            self._db.executescript("PRAGMA incremental_vacuum;")
            # Move the freed pages out of the WAL so the main file really shrinks.
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def integrity_check(self) -> str:
        with self._lock:
            rows = self._db.execute("PRAGMA integrity_check").fetchall()
        return "; ".join(str(r[0]) for r in rows)

    def close(self) -> None:
        with self._lock:
            self._db.close()
