"""Tables of materialised answers: an instrumentation's answer over one import, kept.

A mixin of :class:`fleetscope.store.sql.SQLStore`: the same SQL on SQLite and PostgreSQL.
What the answers are, and how they are read, is :mod:`fleetscope.store.importplace`; who
makes them is :mod:`fleetscope.api.imported`.

* ``import_results``: one row per (instrumentation, import): the ``definition`` the answer
  was made for (metric, predicate, decomposition, kind and shape, and the format
  version of the answer: one that no longer matches is made again), the ``run`` that made
  it (a random 63-bit number), its ``state`` (``making`` while a maker writes, ``ready``
  once every chunk is written) and ``claimed`` (when the maker last said it is alive);
* ``import_result_chunks``: the answer's chunks (:mod:`fleetscope.store.chunkenc`, the
  format live history uses), per (instrumentation, import, run, tier), indexed by
  (instrumentation, import, tier, start).

Making one is a compare-and-set on ``run``, so several threads or API processes sharing
one store never read a half-made answer nor keep two: :meth:`claim_import_result` claims
the row (a new one, one made for another definition, or one whose maker has said nothing
for :data:`STALE_CLAIM` seconds, whose chunks go then); the maker writes chunks in short
transactions and renews the claim (:meth:`renew_import_result`) as it goes;
:meth:`finish_import_result` makes it ``ready`` only if the row is still its own. A maker
that lost its row (taken over, its import or instrumentation deleted) deletes its own
chunks. Readers read only the chunks of a ``ready`` run. Deleting an import or an
instrumentation deletes its rows of both tables (:meth:`delete_import_results`, called by
``delete_import`` and by the history's deletion); forgetting them makes them again.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

from fleetscope.store.base import Chunk

IMPORT_RESULTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS import_results (
    inst_id BIGINT NOT NULL,
    import_id BIGINT NOT NULL,
    definition TEXT NOT NULL,
    run BIGINT NOT NULL,
    state TEXT NOT NULL,
    claimed {real} NOT NULL,
    PRIMARY KEY (inst_id, import_id)
);
CREATE TABLE IF NOT EXISTS import_result_chunks (
    id {id},
    inst_id BIGINT NOT NULL,
    import_id BIGINT NOT NULL,
    run BIGINT NOT NULL,
    tier SMALLINT NOT NULL,
    start_time BIGINT NOT NULL,
    end_time BIGINT NOT NULL,
    npoints INTEGER NOT NULL,
    data {blob} NOT NULL
);
CREATE INDEX IF NOT EXISTS import_result_chunks_by_time
    ON import_result_chunks (inst_id, import_id, tier, start_time);
CREATE INDEX IF NOT EXISTS import_result_chunks_by_import ON import_result_chunks (import_id);
"""
IMPORT_RESULT_TABLES = ("import_results", "import_result_chunks")
MAKING, READY = "making", "ready"
# A claim not renewed for this long is a maker that died (a restart mid-way): another may take
# it over. A maker renews it with every few chunks of the import it evaluates (a fraction of a
# second apart), so a minute is far; until then readers evaluate as before.
STALE_CLAIM = 60.0
RUN_BITS = 63
# An answer is claimed and finished only while its import exists, so deleting an import
# beside a maker leaves nothing behind (the parameter: the import's id). An instrumentation's
# deletion is seen by the maker's next write (its row goes with it).
_IMPORT_THERE = "EXISTS (SELECT 1 FROM imports WHERE id = ?)"


class ImportResult(NamedTuple):
    """The state of one instrumentation's answer over one import."""

    import_id: int
    definition: str
    run: int
    state: str


class NewResultChunk(NamedTuple):
    tier: int
    start: int
    end: int  # exclusive
    npoints: int
    data: bytes


class ImportResultTables:
    """Materialised answers over imports; needs the host class's ``_tx``."""

    def _tx(self) -> Any:  # provided by SQLStore
        raise NotImplementedError

    def import_results(self, inst_id: int) -> dict[int, ImportResult]:
        """The answers of ``inst_id`` over imports, made or being made, by import id."""
        with self._tx() as db:
            rows = db.execute("SELECT import_id, definition, run, state FROM import_results "
                              "WHERE inst_id = ?", (inst_id,)).fetchall()
        return {int(i): ImportResult(int(i), d, int(r), s) for i, d, r, s in rows}

    def import_results_over(self, import_ids: Sequence[int]) -> dict[tuple[int, int], ImportResult]:
        """The answers over these imports, made or being made, by (instrumentation, import)."""
        out: dict[tuple[int, int], ImportResult] = {}
        with self._tx() as db:
            for i in range(0, len(import_ids), 500):
                part = list(import_ids[i:i + 500])
                rows = db.execute("SELECT inst_id, import_id, definition, run, state FROM import_results "
                                  f"WHERE import_id IN ({', '.join('?' * len(part))})", part).fetchall()
                out.update(((int(n), int(m)), ImportResult(int(m), d, int(r), st)) for n, m, d, r, st in rows)
        return out

    def claim_import_result(self, inst_id: int, import_id: int, definition: str,
                            now: float | None = None) -> int | None:
        """A new run that may make the answer of ``inst_id`` over ``import_id`` for
        ``definition``; None when one is made already or another maker's claim is alive."""
        now = time.time() if now is None else now
        run = random.getrandbits(RUN_BITS)
        with self._tx() as db:
            old = db.execute("SELECT definition, run, state, claimed FROM import_results "
                             "WHERE inst_id = ? AND import_id = ?", (inst_id, import_id)).fetchone()
            if old is None:  # only for an import that is there
                cur = db.execute("INSERT INTO import_results (inst_id, import_id, definition, run, state, "
                                 f"claimed) SELECT ?, ?, ?, ?, ?, ? WHERE {_IMPORT_THERE} "
                                 "ON CONFLICT DO NOTHING",
                                 (inst_id, import_id, definition, run, MAKING, now, import_id))
                return run if cur.rowcount == 1 else None
            same, state, claimed = old[0] == definition, old[2], float(old[3])
            if same and (state == READY or claimed > now - STALE_CLAIM):
                return None
            # Atomic on both databases: only the row as read changes hands.
            cur = db.execute("UPDATE import_results SET definition = ?, run = ?, state = ?, claimed = ? "
                             "WHERE inst_id = ? AND import_id = ? AND run = ?",
                             (definition, run, MAKING, now, inst_id, import_id, int(old[1])))
            if cur.rowcount != 1:
                return None
            db.execute("DELETE FROM import_result_chunks WHERE inst_id = ? AND import_id = ? AND run = ?",
                       (inst_id, import_id, int(old[1])))
        return run

    def add_import_result_chunks(self, inst_id: int, import_id: int, run: int,
                                 chunks: Sequence[NewResultChunk], now: float | None = None) -> bool:
        """Write chunks of a run and renew its claim, in one transaction; False (nothing
        written) when the run no longer holds its row."""
        now = time.time() if now is None else now
        with self._tx() as db:
            cur = db.execute("UPDATE import_results SET claimed = ? WHERE inst_id = ? AND import_id = ? "
                             "AND run = ? AND state = ?", (now, inst_id, import_id, run, MAKING))
            if cur.rowcount != 1:
                return False
            if chunks:
                db.executemany("INSERT INTO import_result_chunks (inst_id, import_id, run, tier, "
                               "start_time, end_time, npoints, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                               [(inst_id, import_id, run, *c) for c in chunks])
        return True

    def finish_import_result(self, inst_id: int, import_id: int, run: int) -> bool:
        """Make a run's answer ``ready`` if the run still holds its row and its import is still
        there; else delete its chunks (and its row: one a deletion
        that ran beside the claim did not see)."""
        with self._tx() as db:
            cur = db.execute("UPDATE import_results SET state = ? WHERE inst_id = ? AND import_id = ? "
                             f"AND run = ? AND state = ? AND {_IMPORT_THERE}",
                             (READY, inst_id, import_id, run, MAKING, import_id))
            if cur.rowcount == 1:
                return True
            for table in IMPORT_RESULT_TABLES:
                db.execute(f"DELETE FROM {table} WHERE inst_id = ? AND import_id = ? AND run = ?",
                           (inst_id, import_id, run))
        return False

    def abandon_import_result(self, inst_id: int, import_id: int, run: int) -> None:
        """A maker gives up (an error): its row and chunks go, so the next reader makes it again."""
        with self._tx() as db:
            db.execute("DELETE FROM import_results WHERE inst_id = ? AND import_id = ? AND run = ?",
                       (inst_id, import_id, run))
            db.execute("DELETE FROM import_result_chunks WHERE inst_id = ? AND import_id = ? AND run = ?",
                       (inst_id, import_id, run))

    def read_import_result_chunks(self, inst_id: int, import_id: int, run: int, tier: int, start: int,
                                  end: int, with_data: bool = True) -> list[Chunk]:
        """The chunks of a run and tier that overlap ``[start, end)``, by start."""
        data = "data" if with_data else "NULL"
        with self._tx() as db:
            rows = db.execute(
                f"SELECT id, start_time, end_time, npoints, 0, {data} FROM import_result_chunks "
                "WHERE inst_id = ? AND import_id = ? AND tier = ? AND start_time < ? AND end_time > ? "
                "AND run = ? ORDER BY start_time, id", (inst_id, import_id, tier, end, start, run)).fetchall()
        return [Chunk(int(r[0]), int(r[1]), int(r[2]), int(r[3]), 0, bytes(r[5] or b"")) for r in rows]

    def read_import_result_ids(self, ids: Sequence[int]) -> dict[int, bytes]:
        """The data of the result chunks with these ids."""
        out: dict[int, bytes] = {}
        with self._tx() as db:
            for i in range(0, len(ids), 500):
                part = list(ids[i:i + 500])
                rows = db.execute("SELECT id, data FROM import_result_chunks WHERE id IN "
                                  f"({', '.join('?' * len(part))})", part).fetchall()
                out.update((int(r[0]), bytes(r[1])) for r in rows)
        return out

    def delete_import_results(self, inst_id: int | None = None, import_id: int | None = None) -> None:
        """Forget the answers of an instrumentation, of an import, or both given: of that pair
        (the next read makes them again)."""
        where = " AND ".join(f"{col} = ?" for col, v in (("inst_id", inst_id), ("import_id", import_id))
                             if v is not None)
        assert where, "an instrumentation or an import"
        params = [v for v in (inst_id, import_id) if v is not None]
        with self._tx() as db:
            _delete_results(db, where, params)

    def import_result_bytes(self, inst_id: int | None = None) -> int:
        """Bytes of materialised answers (of one instrumentation, or all)."""
        sql = "SELECT COALESCE(SUM(LENGTH(data)), 0) FROM import_result_chunks"
        with self._tx() as db:
            row = db.execute(sql + ("" if inst_id is None else " WHERE inst_id = ?"),
                             () if inst_id is None else (inst_id,)).fetchone()
        return int(row[0])


def _delete_results(db: Any, where: str, params: Sequence[Any]) -> None:
    """Delete the rows of both tables matching ``where`` in a transaction already open."""
    for table in IMPORT_RESULT_TABLES:
        db.execute(f"DELETE FROM {table} WHERE {where}", list(params))


def delete_results_in(db: Any, inst_id: int | None = None, import_id: int | None = None) -> None:
    """:meth:`ImportResultTables.delete_import_results` inside another transaction (an import's
    or an instrumentation's deletion)."""
    if inst_id is not None:
        _delete_results(db, "inst_id = ?", (inst_id,))
    if import_id is not None:
        _delete_results(db, "import_id = ?", (import_id,))
