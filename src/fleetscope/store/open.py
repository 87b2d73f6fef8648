"""Opening a store from its URL: the factory that picks an implementation (SQLite or PostgreSQL).

It lives beside the implementations, not in the interface (``store/base.py``), so that the
interface imports none of them.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import unquote, urlparse

from fleetscope.model.errors import InputError
from fleetscope.store.base import Store

SCHEMES = ("sqlite", "postgresql", "postgres")


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
