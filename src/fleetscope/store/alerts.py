"""Tables of alerting: rules, receivers, the state of each alert and the history of changes.

A mixin of :class:`fleetscope.store.sql.SQLStore`: the same SQL on SQLite and PostgreSQL.
Alert state lives here, not in the evaluating process, so that when another aggregator takes
an instrumentation over it goes on from the same state: a firing alert is neither sent again
nor forgotten. Receivers belong to an owner: a tenant's name, or ``""`` for the operators'.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from fleetscope.model.alerts import AlertState, Receiver, Rule

ALERTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS alert_rules (
    id {id},
    inst_id BIGINT NOT NULL,
    document TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS alert_receivers (
    owner TEXT NOT NULL,
    name TEXT NOT NULL,
    document TEXT NOT NULL,
    PRIMARY KEY (owner, name)
);
CREATE TABLE IF NOT EXISTS alert_states (
    rule_id BIGINT NOT NULL,
    key TEXT NOT NULL,
    document TEXT NOT NULL,
    PRIMARY KEY (rule_id, key)
);
CREATE TABLE IF NOT EXISTS alert_events (
    id {id},
    time {real} NOT NULL,
    rule_id BIGINT NOT NULL,
    document TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alert_events_by_time ON alert_events (time);
CREATE TABLE IF NOT EXISTS alert_deliveries (
    process TEXT NOT NULL,
    owner TEXT NOT NULL,
    receiver TEXT NOT NULL,
    updated {real} NOT NULL,
    document TEXT NOT NULL,
    PRIMARY KEY (process, owner, receiver)
);
"""

EVENTS_KEPT = 30 * 86400  # seconds of alert history kept
VERSION_KEY = "alerts_version"  # meta key: changes with every change of a rule or a receiver


def mark_changed(db: Any) -> None:
    """Give the rules and receivers a new version (in the transaction of the change), so that
    every evaluating process reloads them, and only then."""
    db.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = "
               "excluded.value", (VERSION_KEY, uuid.uuid4().hex))


def owner_of(tenant: str | None) -> str:
    return tenant or ""


class AlertTables:
    """Rules, receivers, states and events; needs the host class's ``_tx``."""

    def _tx(self) -> Any:  # provided by SQLStore
        raise NotImplementedError

    # -- rules ------------------------------------------------------------------------------------

    def create_alert_rule(self, rule: Rule) -> Rule:
        with self._tx() as db:
            row = db.execute("INSERT INTO alert_rules (inst_id, document) VALUES (?, ?) RETURNING id",
                             (rule.inst_id, "{}")).fetchall()[0]
            made = Rule.from_json({**rule.to_json(), "id": int(row[0])})
            db.execute("UPDATE alert_rules SET document = ? WHERE id = ?",
                       (json.dumps(made.to_json()), made.id))
            mark_changed(db)
        return made

    def get_alert_rule(self, rule_id: int) -> Rule | None:
        with self._tx() as db:
            row = db.execute("SELECT document FROM alert_rules WHERE id = ?", (rule_id,)).fetchone()
        return Rule.from_json(json.loads(row[0])) if row else None

    def list_alert_rules(self) -> list[Rule]:
        with self._tx() as db:
            rows = db.execute("SELECT document FROM alert_rules ORDER BY id").fetchall()
        return [Rule.from_json(json.loads(r[0])) for r in rows]

    def replace_alert_rule(self, rule: Rule) -> bool:
        """Replace a rule; its alerts start over (a changed condition is a new question)."""
        with self._tx() as db:
            cur = db.execute("UPDATE alert_rules SET document = ?, inst_id = ? WHERE id = ?",
                             (json.dumps(rule.to_json()), rule.inst_id, rule.id))
            db.execute("DELETE FROM alert_states WHERE rule_id = ?", (rule.id,))
            mark_changed(db)
        return cur.rowcount > 0

    def delete_alert_rule(self, rule_id: int) -> bool:
        with self._tx() as db:
            cur = db.execute("DELETE FROM alert_rules WHERE id = ?", (rule_id,))
            db.execute("DELETE FROM alert_states WHERE rule_id = ?", (rule_id,))
            mark_changed(db)
        return cur.rowcount > 0

    # -- receivers --------------------------------------------------------------------------------

    def put_alert_receiver(self, receiver: Receiver, create: bool) -> bool:
        """Create (``create``; False if its owner has one of that name) or replace (False if unknown)."""
        owner, doc = owner_of(receiver.tenant), json.dumps(receiver.to_json(masked=False))
        with self._tx() as db:
            exists = db.execute("SELECT 1 FROM alert_receivers WHERE owner = ? AND name = ?",
                                (owner, receiver.name)).fetchone() is not None
            if exists == create:
                return False
            if create:
                db.execute("INSERT INTO alert_receivers (owner, name, document) VALUES (?, ?, ?)",
                           (owner, receiver.name, doc))
            else:
                db.execute("UPDATE alert_receivers SET document = ? WHERE owner = ? AND name = ?",
                           (doc, owner, receiver.name))
            mark_changed(db)
        return True

    def get_alert_receiver(self, tenant: str | None, name: str) -> Receiver | None:
        with self._tx() as db:
            row = db.execute("SELECT document FROM alert_receivers WHERE owner = ? AND name = ?",
                             (owner_of(tenant), name)).fetchone()
        return Receiver.from_json(json.loads(row[0])) if row else None

    def list_alert_receivers(self) -> list[Receiver]:
        with self._tx() as db:
            rows = db.execute("SELECT document FROM alert_receivers ORDER BY owner, name").fetchall()
        return [Receiver.from_json(json.loads(r[0])) for r in rows]

    def delete_alert_receiver(self, tenant: str | None, name: str) -> bool:
        with self._tx() as db:
            cur = db.execute("DELETE FROM alert_receivers WHERE owner = ? AND name = ?",
                             (owner_of(tenant), name))
            mark_changed(db)
        return cur.rowcount > 0

    def alerts_version(self) -> str | None:
        """The version of the rules and receivers (see :func:`mark_changed`)."""
        with self._tx() as db:
            row = db.execute("SELECT value FROM meta WHERE key = ?", (VERSION_KEY,)).fetchone()
        return row[0] if row else None

    # -- states and events ------------------------------------------------------------------------

    def alert_states(self, rule_id: int | None = None) -> list[AlertState]:
        """Every pending or firing alert (of one rule)."""
        where, args = ("WHERE rule_id = ?", (rule_id,)) if rule_id is not None else ("", ())
        with self._tx() as db:
            rows = db.execute(f"SELECT document FROM alert_states {where} ORDER BY rule_id, key",
                              args).fetchall()
        return [AlertState(**json.loads(r[0])) for r in rows]

    def save_alert_changes(self, states: list[AlertState], ended: list[tuple[int, str]],
                           events: list[dict]) -> None:
        """In one transaction: alerts now pending or firing, alerts ``(rule_id, key)`` that ended,
        and the events (state changes) to keep in the history."""
        now = time.time()
        with self._tx() as db:
            for rule_id, key in ended:
                db.execute("DELETE FROM alert_states WHERE rule_id = ? AND key = ?", (rule_id, key))
            for s in states:
                db.execute("DELETE FROM alert_states WHERE rule_id = ? AND key = ?", (s.rule_id, s.key))
                db.execute("INSERT INTO alert_states (rule_id, key, document) VALUES (?, ?, ?)",
                           (s.rule_id, s.key, json.dumps(s.to_json())))
            for e in events:
                db.execute("INSERT INTO alert_events (time, rule_id, document) VALUES (?, ?, ?)",
                           (e["at"], e["rule_id"], json.dumps(e)))
            if events:
                db.execute("DELETE FROM alert_events WHERE time < ?", (now - EVENTS_KEPT,))

    def save_alert_deliveries(self, process: str, counters: dict[tuple[str, str], dict]) -> None:
        """The delivery counters of one process, by (owner, receiver name), as they are now."""
        now = time.time()
        with self._tx() as db:
            for (owner, name), doc in counters.items():
                db.execute("DELETE FROM alert_deliveries WHERE process = ? AND owner = ? AND receiver = ?",
                           (process, owner, name))
                db.execute("INSERT INTO alert_deliveries (process, owner, receiver, updated, document) "
                           "VALUES (?, ?, ?, ?, ?)", (process, owner, name, now, json.dumps(doc)))

    def alert_deliveries(self) -> list[tuple[str, str, str, dict]]:
        """Every process's delivery counters: ``(process, owner, receiver, counters)``."""
        with self._tx() as db:
            rows = db.execute("SELECT process, owner, receiver, document FROM alert_deliveries "
                              "ORDER BY owner, receiver, process").fetchall()
        return [(p, o, r, json.loads(d)) for p, o, r, d in rows]

    def alert_events(self, since: float, limit: int = 1000) -> list[dict]:
        """State changes since ``since``, newest first."""
        with self._tx() as db:
            rows = db.execute("SELECT id, document FROM alert_events WHERE time >= ? "
                              "ORDER BY time DESC, id DESC LIMIT ?", (since, limit)).fetchall()
        return [{"id": int(i), **json.loads(doc)} for i, doc in rows]
