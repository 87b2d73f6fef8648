"""Tables of who may ask what: tokens (only their hashes), tenants and the audit log.

A mixin of :class:`fleetscope.store.sql.SQLStore`: the same SQL on SQLite and PostgreSQL.
Every API server of a fleet reads the same rows, so a token made on one is accepted by all,
and a revocation reaches all of them (within their cache's few seconds).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from fleetscope.model.access import AccountKey, Tenant, TokenInfo

ACCESS_SCHEMA = """
CREATE TABLE IF NOT EXISTS tokens (
    id {id},
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    tenant TEXT,
    kind TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    created {real} NOT NULL,
    expires {real},
    revoked {real}
);
CREATE TABLE IF NOT EXISTS tenants (
    name TEXT PRIMARY KEY,
    document TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    id {id},
    time {real} NOT NULL,
    actor TEXT NOT NULL,
    address TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_by_time ON audit (time);
CREATE TABLE IF NOT EXISTS account_keys (
    id {id},
    login TEXT NOT NULL,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    kind TEXT NOT NULL,
    md5 TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    public_key TEXT NOT NULL,
    created {real} NOT NULL,
    UNIQUE (login, md5)
);
"""

_TOKEN_COLUMNS = "id, name, role, tenant, kind, created, expires, revoked"
_KEY_COLUMNS = "id, login, name, role, kind, md5, sha256, public_key, created"


def _token(row: Any) -> TokenInfo:
    i, name, role, tenant, kind, created, expires, revoked = row
    return TokenInfo(int(i), name, role, tenant, kind, float(created),
                     None if expires is None else float(expires), None if revoked is None else float(revoked))


def _key(row: Any) -> AccountKey:
    i, login, name, role, kind, md5, sha256, public_key, created = row
    return AccountKey(int(i), login, name, role, kind, md5, sha256, public_key, float(created))


class AccessTables:
    """Tokens, tenants and audit rows; needs the host class's ``_tx``."""

    def _tx(self) -> Any:  # provided by SQLStore
        raise NotImplementedError

    # -- tokens -----------------------------------------------------------------------------------

    def create_token(self, name: str, role: str, tenant: str | None, kind: str, hash: str,
                     expires: float | None) -> TokenInfo:
        now = time.time()
        with self._tx() as db:
            row = db.execute("INSERT INTO tokens (name, role, tenant, kind, hash, created, expires) "
                             "VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
                             (name, role, tenant, kind, hash, now, expires)).fetchall()[0]
        return TokenInfo(int(row[0]), name, role, tenant, kind, now, expires, None)

    def token_by_hash(self, hash: str) -> TokenInfo | None:
        with self._tx() as db:
            row = db.execute(f"SELECT {_TOKEN_COLUMNS} FROM tokens WHERE hash = ?", (hash,)).fetchone()
        return _token(row) if row else None

    def take_token(self, hash: str, kind: str, now: float) -> TokenInfo | None:
        """Use up a one-time token of ``kind``: it is revoked in the same transaction that finds
        it valid, so two requests racing with the same link cannot both get in."""
        with self._tx() as db:
            row = db.execute(f"SELECT {_TOKEN_COLUMNS} FROM tokens WHERE hash = ? AND kind = ? "
                             "AND revoked IS NULL AND (expires IS NULL OR expires > ?)",
                             (hash, kind, now)).fetchone()
            if row is None:
                return None
            cur = db.execute("UPDATE tokens SET revoked = ? WHERE id = ? AND revoked IS NULL", (now, row[0]))
            if cur.rowcount != 1:
                return None
        return _token(row)._replace(revoked=now)

    def list_tokens(self, kind: str | None = None) -> list[TokenInfo]:
        with self._tx() as db:
            if kind is None:
                rows = db.execute(f"SELECT {_TOKEN_COLUMNS} FROM tokens ORDER BY id").fetchall()
            else:
                rows = db.execute(f"SELECT {_TOKEN_COLUMNS} FROM tokens WHERE kind = ? ORDER BY id",
                                  (kind,)).fetchall()
        return [_token(r) for r in rows]

    def revoke_token(self, token_id: int, now: float) -> TokenInfo | None:
        """Revoke a token (kept, so the audit log and the list still name it); None if unknown."""
        with self._tx() as db:
            db.execute("UPDATE tokens SET revoked = ? WHERE id = ? AND revoked IS NULL", (now, token_id))
            row = db.execute(f"SELECT {_TOKEN_COLUMNS} FROM tokens WHERE id = ?", (token_id,)).fetchone()
        return _token(row) if row else None

    def revoke_tenant_tokens(self, tenant: str, now: float) -> int:
        with self._tx() as db:
            cur = db.execute("UPDATE tokens SET revoked = ? WHERE tenant = ? AND revoked IS NULL",
                             (now, tenant))
        return cur.rowcount

    # -- tenants ----------------------------------------------------------------------------------

    def list_tenants(self) -> list[Tenant]:
        with self._tx() as db:
            rows = db.execute("SELECT document FROM tenants ORDER BY name").fetchall()
        return [Tenant.from_json(json.loads(r[0])) for r in rows]

    def get_tenant(self, name: str) -> Tenant | None:
        with self._tx() as db:
            row = db.execute("SELECT document FROM tenants WHERE name = ?", (name,)).fetchone()
        return Tenant.from_json(json.loads(row[0])) if row else None

    def put_tenant(self, tenant: Tenant, create: bool) -> bool:
        """Create (``create``; False if the name is taken) or replace (False if unknown) a tenant."""
        doc = json.dumps(tenant.to_json())
        with self._tx() as db:
            exists = db.execute("SELECT 1 FROM tenants WHERE name = ?", (tenant.name,)).fetchone() is not None
            if exists == create:
                return False
            if create:
                db.execute("INSERT INTO tenants (name, document) VALUES (?, ?)", (tenant.name, doc))
            else:
                db.execute("UPDATE tenants SET document = ? WHERE name = ?", (doc, tenant.name))
        return True

    def delete_tenant(self, name: str) -> bool:
        with self._tx() as db:
            cur = db.execute("DELETE FROM tenants WHERE name = ?", (name,))
        return cur.rowcount > 0

    # -- account keys (CloudAPI's HTTP Signature authentication) ----------------------------------

    def add_account_key(self, login: str, name: str, role: str, kind: str, md5: str, sha256: str,
                        public_key: str) -> AccountKey | None:
        """Register a public key to account ``login``; None if that account has it already."""
        now = time.time()
        with self._tx() as db:
            if db.execute("SELECT 1 FROM account_keys WHERE login = ? AND md5 = ?", (login, md5)).fetchone():
                return None
            row = db.execute("INSERT INTO account_keys (login, name, role, kind, md5, sha256, public_key, "
                             "created) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                             (login, name, role, kind, md5, sha256, public_key, now)).fetchall()[0]
        return AccountKey(int(row[0]), login, name, role, kind, md5, sha256, public_key, now)

    def account_keys(self, login: str) -> list[AccountKey]:
        with self._tx() as db:
            rows = db.execute(f"SELECT {_KEY_COLUMNS} FROM account_keys WHERE login = ? ORDER BY id",
                              (login,)).fetchall()
        return [_key(r) for r in rows]

    def account_key(self, login: str, fingerprint: str) -> AccountKey | None:
        """The key of ``login`` with this MD5 (``aa:bb:..``) or SHA-256 (``SHA256:...``) fingerprint."""
        column = "sha256" if fingerprint.startswith("SHA256:") else "md5"
        with self._tx() as db:
            row = db.execute(f"SELECT {_KEY_COLUMNS} FROM account_keys WHERE login = ? AND {column} = ?",
                             (login, fingerprint)).fetchone()
        return _key(row) if row else None

    def delete_account_keys(self, login: str, fingerprint: str | None = None) -> int:
        """Remove one key of ``login`` (by fingerprint), or all of them; how many went."""
        with self._tx() as db:
            if fingerprint is None:
                cur = db.execute("DELETE FROM account_keys WHERE login = ?", (login,))
            else:
                column = "sha256" if fingerprint.startswith("SHA256:") else "md5"
                cur = db.execute(f"DELETE FROM account_keys WHERE login = ? AND {column} = ?",
                                 (login, fingerprint))
        return cur.rowcount

    # -- audit ------------------------------------------------------------------------------------

    def add_audit(self, actor: str, address: str, action: str, target: str, detail: dict) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO audit (time, actor, address, action, target, detail) "
                       "VALUES (?, ?, ?, ?, ?, ?)",
                       (time.time(), actor, address, action, target, json.dumps(detail, sort_keys=True)))

    def read_audit(self, since: float = 0.0, limit: int = 1000) -> Iterator[dict]:
        with self._tx() as db:
            rows = db.execute("SELECT id, time, actor, address, action, target, detail FROM audit "
                              "WHERE time >= ? ORDER BY id DESC LIMIT ?", (since, limit)).fetchall()
        for i, t, actor, address, action, target, detail in rows:
            yield {"id": int(i), "time": float(t), "actor": actor, "address": address, "action": action,
                   "target": target, "detail": json.loads(detail)}
