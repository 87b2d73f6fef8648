"""Fixtures for tests that run against both store backends: SQLite and a real PostgreSQL.

The PostgreSQL server is the machine's (``FLEETSCOPE_TEST_POSTGRES``, default
``postgresql://postgres@127.0.0.1:5432/postgres``; ``make system-deps`` starts
it). A database with a unique name is created for the test session and dropped
at its end; each test starts from empty tables. Import the fixtures into a test
module to use them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import pytest

from fleetscope.store.open import open_store

ADMIN_URL = os.environ.get("FLEETSCOPE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
BACKENDS = ("sqlite", "postgresql")
TABLES = ("instrumentations, meta, dashboards, chunks, rollups, pending_rollups, leases, aggregators, "
          "tokens, tenants, audit, account_keys, imports, import_files, import_chunks, annotations, "
          "import_results, import_result_chunks")


def _with_db(url: str, name: str) -> str:
    return urlunparse(urlparse(url)._replace(path=f"/{name}"))


_session: dict[str, object] = {"users": 0}  # one database per session, whichever module asks


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """The URL of a PostgreSQL database of this test session (created, then dropped)."""
    import psycopg

    if not _session["users"]:
        name = f"fleetscope_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        try:
            admin = psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5)
        except psycopg.OperationalError as exc:
            pytest.fail(f"PostgreSQL is not reachable at {ADMIN_URL} ({exc}); start it with "
                        "`make system-deps` or set FLEETSCOPE_TEST_POSTGRES", pytrace=False)
        _drop_stale(admin)
        admin.execute(f'CREATE DATABASE "{name}"')
        _session.update(admin=admin, name=name)
    _session["users"] += 1
    try:
        yield _with_db(ADMIN_URL, str(_session["name"]))
    finally:
        _session["users"] -= 1
        if not _session["users"]:
            admin = _session["admin"]
            admin.execute(f'DROP DATABASE IF EXISTS "{_session["name"]}" WITH (FORCE)')
            admin.close()


def _drop_stale(admin) -> None:
    """Drop the databases of earlier sessions that died before their teardown."""
    rows = admin.execute("SELECT datname FROM pg_database WHERE datname LIKE 'fleetscope_test_%'").fetchall()
    for (db,) in rows:
        parts = db.split("_")
        if len(parts) == 4 and parts[2].isdigit():
            try:
                os.kill(int(parts[2]), 0)
                continue  # its session is still running
            except ProcessLookupError:
                pass
            except PermissionError:
                continue
            admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def empty_pg(url: str) -> str:
    """Empty every fleetscope table of the database at ``url`` (if it has them)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        exists = conn.execute("SELECT to_regclass('chunks')").fetchone()[0]
        if exists:
            conn.execute(f"TRUNCATE {TABLES} RESTART IDENTITY")
    return url


def store_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return empty_pg(request.getfixturevalue("pg_url"))


@pytest.fixture(params=BACKENDS)
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store URL for an empty store, once per backend."""
    return store_url(request.param, tmp_path, request)


@pytest.fixture
def store(backend_url: str):
    """An open, empty store, once per backend."""
    s = open_store(backend_url)
    yield s
    s.close()
