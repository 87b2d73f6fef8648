"""The store interface and how a store URL selects an implementation."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlparse

from fleetscope.model.errors import InputError
from fleetscope.model.instrumentation import Instrumentation
from fleetscope.store.sql import Chunk, HistoryChange, TierStats

SCHEMES = ("sqlite", "postgresql", "postgres")


class Store(Protocol):
    """Definitions and history kept across restarts. Methods are synchronous and each call is
    atomic (one transaction)."""

    def create_instrumentation(self, spec: dict, created: float) -> Instrumentation: ...

    def get_instrumentation(self, inst_id: int) -> Instrumentation | None: ...

    def list_instrumentations(self) -> list[Instrumentation]: ...

    def update_instrumentation(self, inst: Instrumentation) -> None: ...

    def delete_instrumentation(self, inst_id: int) -> bool: ...

    def get_meta(self, key: str) -> str | None: ...

    def set_meta(self, key: str, value: str) -> None: ...

    # Dashboards: JSON documents ``{name, panels, ...}`` validated by the API. The store adds
    # ``id`` (an integer), ``created`` and ``updated`` (epoch seconds) and returns the whole.

    def list_dashboards(self) -> list[dict]: ...

    def get_dashboard(self, dashboard_id: int) -> dict | None: ...

    def create_dashboard(self, doc: dict) -> dict: ...

    def update_dashboard(self, dashboard_id: int, doc: dict) -> dict | None: ...

    def delete_dashboard(self, dashboard_id: int) -> bool: ...

    # History (see fleetscope.store.sql for the tables and fleetscope.store.history for their use).

    def write_history(self, change: HistoryChange) -> None: ...

    def read_chunks(self, inst_id: int, tier: int, start: int, end: int, span: int,
                    with_data: bool = True) -> list[Chunk]: ...

    def read_chunk_ids(self, ids: Sequence[int]) -> list[Chunk]: ...

    def chunk_index(self, inst_id: int, tier: int, since: int = 0) -> list[Chunk]: ...

    def first_chunk_start(self, inst_id: int, tier: int, since: int) -> int | None: ...

    def last_chunk_end(self, inst_id: int, tier: int) -> int | None: ...

    def watermarks(self) -> dict[tuple[int, int], int]: ...

    def pending_rollups(self) -> list[tuple[int, int, int]]: ...

    def expire_chunks(self, inst_id: int, tier: int, before: int) -> int: ...

    def history_ids(self) -> list[int]: ...

    def delete_history(self, inst_id: int) -> None: ...

    def history_stats(self) -> list[TierStats]: ...

    def disk_bytes(self) -> int: ...

    def reclaim(self) -> None: ...

    def integrity_check(self) -> str: ...

    def close(self) -> None: ...


def open_store(url: str, *, create: bool = True) -> Store:
    """Open (creating if need be) the store a URL names.

    ``sqlite:///path/to/file.db`` (an absolute path; ``sqlite:relative/file.db``
    for a relative one) or ``postgresql://user@host:port/dbname`` (``postgres://``
    too). InputError (field ``store``, status 400) for anything else, a missing
    file or database name, or a store that cannot be opened or reached.
    ``create=False`` opens only a store that exists (to read one, as ``fleetscope
    store stats --store`` does): an SQLite file that is not there is an InputError
    (status 404) naming its path, and nothing is created.
    """
    if not isinstance(url, str) or not url.strip():
        raise InputError("store", "is empty (use sqlite:///path/to/fleetscope.db or postgresql://...)", 400)
    parsed = urlparse(url.strip())
    if parsed.scheme == "sqlite":
        from fleetscope.store.sqlite import SQLiteStore

        path = unquote(parsed.netloc + parsed.path)
        if not path or path.endswith("/"):
            raise InputError("store", f"{url!r} names no file (use sqlite:///path/to/fleetscope.db)", 400)
        if not create and not Path(path).is_file():
            raise InputError("store", f"no store at {path} (the file does not exist)", 404)
        try:
            if create:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            return SQLiteStore(path, create=create)
        except (OSError, sqlite3.Error) as exc:
            raise InputError("store", f"cannot open {path}: {exc}", 400) from None
    if parsed.scheme in ("postgresql", "postgres"):
        from fleetscope.store.postgres import PostgresStore

        if not parsed.path.strip("/"):
            raise InputError("store", f"{url!r} names no database (use postgresql://user@host/dbname)", 400)
        return PostgresStore(url.strip())
    raise InputError("store", f"unsupported store URL {url!r} (use sqlite:///path/to/fleetscope.db "
                     "or postgresql://user@host/dbname)", 400)
