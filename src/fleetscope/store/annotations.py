"""Annotations: marks on the time axis (a deploy, a maintenance window) posted through the API.

A mixin of :class:`fleetscope.store.sql.SQLStore`: the same SQL on SQLite and PostgreSQL. An
annotation belongs to an owner: a tenant's name, or ``""`` for the operators'. Its document is
``{"time", "end_time" (or None), "text", "tags", "who"}``; ``time`` is kept in its own column
too, for reading a range by time.
"""

from __future__ import annotations

import json
from typing import Any

ANNOTATIONS_SCHEMA = """
CREATE TABLE IF NOT EXISTS annotations (
    id {id},
    time {real} NOT NULL,
    owner TEXT NOT NULL,
    document TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS annotations_by_time ON annotations (time);
"""


class AnnotationTables:
    """Annotations (see the module docstring)."""

    def _tx(self) -> Any:  # provided by SQLStore
        raise NotImplementedError

    def add_annotation(self, owner: str, doc: dict) -> dict:
        """Keep ``doc`` (its ``time`` required) for ``owner``; it with its ``id`` and ``owner``."""
        with self._tx() as db:
            row = db.execute("INSERT INTO annotations (time, owner, document) VALUES (?, ?, ?) RETURNING id",
                             (doc["time"], owner, json.dumps(doc))).fetchall()[0]
        return {"id": int(row[0]), **doc, "owner": owner}

    def annotations(self, start: float, end: float, owner: str | None, limit: int = 1000) -> list[dict]:
        """Those with ``start <= time < end``, oldest first, of ``owner`` (None: every owner's)."""
        sql = "SELECT id, owner, document FROM annotations WHERE time >= ? AND time < ?"
        params: tuple = (start, end)
        if owner is not None:
            sql += " AND owner = ?"
            params += (owner,)
        with self._tx() as db:
            rows = db.execute(sql + " ORDER BY time, id LIMIT ?", (*params, limit)).fetchall()
        return [{"id": int(i), **json.loads(doc), "owner": o} for i, o, doc in rows]

    def delete_annotation(self, annotation_id: int, owner: str | None) -> bool:
        """Delete one of ``owner``'s (None: anyone's); whether there was one."""
        sql, params = "DELETE FROM annotations WHERE id = ?", (annotation_id,)
        if owner is not None:
            sql, params = sql + " AND owner = ?", (annotation_id, owner)
        with self._tx() as db:
            return db.execute(sql + " RETURNING id", params).fetchall() != []
