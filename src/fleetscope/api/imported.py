"""Instrumentations over imported performance logs: the read half of imports.

An import keeps the rows of a host's logs (:mod:`fleetscope.store.imports`), not the
answers to questions, so every instrumentation (made before or after the import) answers
over them: the instrumentation's predicate and decomposition are evaluated over the rows of
each sample with the agent's own code (:class:`fleetscope.agent.evaluate.Plan`, compiled
once per import and column layout, the import's host folded in as ``hostname``), then each
sample's value is placed on the range's steps (:mod:`fleetscope.store.importplace`):

* samples shorter than the step add up into it (interval metrics) or are averaged (point
  metrics), as a rollup of live slots would;
* a sample longer than the step (a 10-minute sar interval read at 1-minute steps) stays one
  value over its whole interval: an interval metric's activity is spread evenly over the
  steps it covers (by the share of the interval each covers), a point metric's level holds
  in each. The import's own resolution is in the import's listing.

Imports of several hosts add up per step like sources do (``nsources`` counts them). Which
imports an instrumentation may read is :func:`fleetscope.api.scope.import_readable`'s
decision; the instrumentation's predicate holds its tenant's scope already, so a tenant's
instrumentation sees only the imported rows its scope admits. A field the log does not have
(a host label, ``execname``) is empty for its rows: a predicate that asks for a value of it
does not match them; a numeric decomposition over a numeric field the log lacks gets nothing.

**Answers are made once.** Evaluating costs one ``Plan.evaluate`` per sample (a few
microseconds: half a second for a day of 1-second samples), so each instrumentation's
answer over each import is evaluated once and kept (:func:`make_answer`): its samples, and
the minute and hour tiers of them placed, as chunks of the format live history uses, in the
tables of :mod:`fleetscope.store.importresults`. A range then reads what live history of the
same size reads (a day at 60-second steps: a day of the minute tier, 1,440 rows) through
the same blocks and rollups (:func:`imported_points`), and gives the same answer as
evaluating (the tests compare both): measured on a month of 1-second vmstat, a day at 60 s
in 2.9 ms warm (live history: 2.6 ms; evaluating: 0.5 s), an hour at 1 s in 7.4 ms (live:
6.5 ms); a range off the minute grid places the day's samples instead, about 10 ms
(docs/benchmarks.md). Making one streams the import a few chunks at a time (memory: one
chunk of the import, an hour of samples, a day of minutes and a month of hours; a month of
1-second samples: about 17 s of CPU). Several API processes sharing one store may start the
same answer: the store lets one make it (a claim on its row) and the others read as before
meanwhile.

**Made before they are asked.** Each API process has one maker (:class:`_Maker`: one
thread at niceness :data:`LOW_PRIORITY`, one answer at a time), fed from three places:
an import becoming ready (:func:`queue_import`: the answers of every persisted
instrumentation that can read it, :func:`holds`), an instrumentation created
(:func:`queue_instrumentation`: its answers over the imports it can read, if it persists),
and the process's start (:func:`start_making`: whatever is missing, which is how a restart
resumes). A first read of an import whose answer is not made asks for it too, ahead of the
rest. Instrumentations that cannot read an import (not persisted, another tenant's import,
a predicate or tenant scope that cannot match its host) cost nothing. The queue holds at most
:data:`MAX_QUEUED` pairs: past them one sweep of everything is remembered instead and finds
what did not fit once the queue has drained, so nothing is lost and memory stays bounded.
A process that stops (SIGTERM) gives up the answer it is making between two chunks of the
import (its row and chunks go) and the next start makes it again; one killed leaves its
claim, which another maker takes over once it is :data:`~fleetscope.store.importresults.STALE_CLAIM`
old (the maker looks again then). An import's listing says of its persisted readers how many
answers are ``ready`` and how many ``pending`` (:func:`answer_counts`).

**A read before its answer is made is bounded.** Evaluating costs a few microseconds a
sample, so a range that would evaluate more than :data:`EVALUATE_BUDGET` samples of imports
whose answers are not made (about a second: two days of 1-second data) is refused with a 422
naming ``start_time`` that says the import is being indexed; a shorter range, and the same
one once the answer is made (seconds to a few minutes), are answered. The refusal is the
honest choice: answers are read only once whole (a run's chunks become readable when it is
``ready``), so "the finished part plus the rest evaluated" would either read a half-made run
(which another maker may be deleting) or evaluate the same unbounded rest. Exports, which
stream in pieces of :data:`EXPORT_PIECE` steps, evaluate on.
An answer is made for the instrumentation's definition (metric, predicate,
decomposition: :func:`definition`) and goes with its import or its instrumentation;
:meth:`~fleetscope.store.importresults.ImportResultTables.delete_import_results` forgets
answers, which are then made again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterable, Iterator
from itertools import pairwise

import numpy as np

from fleetscope.agent.evaluate import Plan
from fleetscope.api import scope
from fleetscope.api.queries import Range
from fleetscope.model import values
from fleetscope.model.errors import InputError
from fleetscope.model.instrumentation import Instrumentation
from fleetscope.model.predicate import fields_of, may_match
from fleetscope.model.series import DataPoint
from fleetscope.perflogs.metrics import COLUMNS, VALUE_FIELD
from fleetscope.store import chunkenc
from fleetscope.store.block import (
    POINT_COLUMNS,
    Block,
    between,
    compact_columns,
    concat,
    empty,
    from_points,
    take,
    to_points,
)
from fleetscope.store.cache import ChunkCache
from fleetscope.store.importenc import decode
from fleetscope.store.importplace import (
    GRID_TIERS,
    SAMPLES,
    Placed,
    from_grid,
    from_samples,
    grid_for,
    grid_rows,
    place,
    sample_span,
)
from fleetscope.store.importresults import READY as ANSWER_READY
from fleetscope.store.importresults import STALE_CLAIM, NewResultChunk
from fleetscope.store.imports import READY, ImportInfo
from fleetscope.store.rollup import rollup

HOSTNAME = "hostname"
EXPORT_PIECE = 4096  # steps of an export read from the imports at a time (bounded memory)
# The format of a made answer: a change to what is kept or how samples are placed raises it,
# and answers made before are made again.
ANSWER_VERSION = 1
CLUSTER_CHUNKS = 8  # chunks of an import read at a time when making an answer (overlapping ones: all)
CACHE_BYTES = 32 << 20  # decoded answer chunks kept per store, as History keeps live ones
# Made before they are asked (the module docstring): this process's one maker.
MAX_QUEUED = 4096  # pairs (and sweeps) waiting per process; past them one sweep of everything
LOW_PRIORITY = 10  # the maker thread's niceness: requests' threads come first
IDLE_LOOK = 1.0  # seconds between looks while only another maker's claims are left
STOP_WAIT = 10.0  # seconds a stopping process waits for its maker (it stops between chunks)
IMPORT, INSTRUMENTATION, EVERYTHING = "import", "instrumentation", "everything"
# A range evaluated over imports whose answers are not made yet reads at most this many of
# their samples (a few microseconds each: about a second); a longer one is refused while the
# import is indexed (the module docstring).
EVALUATE_BUDGET = 200_000
log = logging.getLogger(__name__)


def columns_of(metric: str, info: ImportInfo) -> tuple[str, ...] | None:
    """The fields (without hostname) of an import's rows of ``metric``, in their keys' order:
    a metric imports know, or one a CSV import defined (kept in its document); None if the
    import cannot hold it."""
    columns = COLUMNS.get(metric)
    if columns is None:
        made = info.document.get("defined", {}).get(metric)
        if made is not None:
            columns = tuple(f["name"] for f in made["fields"][1:])
    return columns


def definition(inst: Instrumentation) -> str:
    """What an answer over an import is made for: another definition makes it again."""
    return json.dumps({"v": ANSWER_VERSION, "metric": inst.metric, "predicate": inst.predicate,
                       "decomposition": list(inst.decomposition), "kind": inst.kind, "shape": inst.shape},
                      sort_keys=True)


def holds(inst: Instrumentation, info: ImportInfo) -> bool:
    """Whether ``inst`` reads ``info``: ready, in scope, a metric it may hold, a predicate (its
    tenant's scope in it) that can match the import's host (the agents' rule,
    :func:`~fleetscope.model.predicate.may_match`)."""
    metrics = info.document.get("metrics")
    return (info.state == READY and info.start is not None and scope.import_readable(inst, info)
            and columns_of(inst.metric, info) is not None and (metrics is None or inst.metric in metrics)
            and may_match(inst.predicate, {HOSTNAME: info.host}))


def _plan(inst: Instrumentation, host: str, columns: tuple[str, ...]) -> tuple[Plan | None, bool]:
    """The plan of ``inst`` over the rows of ``host``'s imports of its metric, and whether a
    row's stored value is a numeric field (then its measure is 1); None when nothing of them
    can match."""
    valued = inst.metric in VALUE_FIELD
    wanted = (fields_of(inst.predicate) | set(inst.decomposition)) - set(columns) - {HOSTNAME}
    if inst.numeric is not None and inst.numeric not in columns:
        return None, valued
    constants = {HOSTNAME: host, **dict.fromkeys(wanted, "")}
    try:
        return Plan(inst, columns, constants), valued
    except (KeyError, ValueError, TypeError):  # a numeric comparison with an absent field
        return None, valued


# -- evaluating: the samples of an import ---------------------------------------------------------


class _Evaluator:
    """``inst`` evaluated over the rows of one import: its samples, as a block of the samples
    tier (:mod:`fleetscope.store.importplace`: ``counts`` holds each sample's interval)."""

    def __init__(self, inst: Instrumentation, info: ImportInfo) -> None:
        self.inst = inst
        columns = columns_of(inst.metric, info)
        assert columns is not None
        self.plan, self.valued = _plan(inst, info.host, columns)

    def samples(self, data: Iterable[bytes], start: int | None = None, end: int | None = None) -> Block:
        """The samples of these chunks (those that overlap ``[start, end)``, when given)."""
        shape, plan = self.inst.shape, self.plan
        if plan is None:
            return empty(shape)
        by_sample: dict[tuple[int, int], values.Value] = {}
        for raw in data:
            chunk = decode(raw)
            ends = chunk.times + chunk.intervals
            inside = np.ones(len(ends), bool) if start is None else (chunk.times < end) & (ends > start)
            keys = chunk.keys
            present = ~np.isnan(chunk.values)
            times, intervals = chunk.times.tolist(), chunk.intervals.tolist()
            for i in np.nonzero(inside)[0].tolist():
                row_values = chunk.values[i].tolist()
                mask = present[i].tolist()
                if self.valued:
                    rows = [(*keys[j], x, 1.0) for j, x in enumerate(row_values) if mask[j]]
                else:
                    rows = [(*keys[j], x) for j, x in enumerate(row_values) if mask[j]]
                if not rows:
                    continue
                # weighted: a row of an events import (csvevents) counts its events at one value
                v = plan.evaluate(rows, weighted=True)
                key = (times[i], intervals[i])
                acc = by_sample.get(key)
                by_sample[key] = v if acc is None else values.merge_into(acc, v, shape)
        return _samples_block(by_sample, shape)


def _samples_block(by_sample: dict[tuple[int, int], values.Value], shape: str) -> Block:
    """A samples-tier block: one row per (time, interval), ``counts`` the interval."""
    parts = []
    for length in sorted({i for _, i in by_sample}):
        points = [DataPoint(t, i, v, 1, 1) for (t, i), v in by_sample.items() if i == length]
        block = from_points(points, shape)
        parts.append(block._replace(counts=np.full(block.n, length, np.int64)))
    return concat(parts, shape) if parts else empty(shape)


# -- making an answer: evaluated once, kept as chunks -------------------------------------------


class _Lost(Exception):
    """The answer's row was taken over, or its import or instrumentation deleted."""


class _AnswerWriter:
    """The chunks of one answer, written as their spans complete (see the module docstring)."""

    def __init__(self, store, inst: Instrumentation, import_id: int, run: int, sample_span: int) -> None:
        self.store, self.inst, self.import_id, self.run = store, inst, import_id, run
        self.spans = {SAMPLES: sample_span, **{g.starts: g.span for g in GRID_TIERS},
                      **{g.carried: g.span for g in GRID_TIERS}}
        self.pending: dict[int, list[Block]] = {tier: [] for tier in self.spans}

    def add(self, samples: Block) -> None:
        if not samples.n:
            return
        shape = self.inst.shape
        self.pending[SAMPLES].append(samples)
        lo = int(samples.times.min())
        hi = int((samples.times + np.maximum(samples.counts, 1)).max())
        for g in GRID_TIERS:
            rows = grid_rows(place(samples, shape, self.inst.kind, 0, g.resolution, lo - lo % g.resolution,
                                   hi), shape, g.resolution)
            self.pending[g.starts].append(rows.starts)
            self.pending[g.carried].append(rows.carried)

    def flush(self, upto: int | None) -> None:
        """Write the spans that end by ``upto`` (every one: None); later samples begin there."""
        shape = self.inst.shape
        out: list[NewResultChunk] = []
        for tier, span in self.spans.items():
            parts = [b for b in self.pending[tier] if b.n]
            if not parts:
                continue
            block = concat(parts, shape)
            if tier != SAMPLES:  # one row per step: rows of a step from two reads add up
                block = rollup(block, shape, 0, self._resolution(tier), None)
            cut = block.n if upto is None else int(np.searchsorted(block.times, upto - upto % span))
            rest = take(block, slice(cut, None))
            self.pending[tier] = [rest] if rest.n else []
            out += self._chunks(tier, span, take(block, slice(0, cut)))
        # Also with nothing to write: it renews the claim, and finds out whether it was lost.
        if not self.store.add_import_result_chunks(self.inst.id, self.import_id, self.run, out):
            raise _Lost

    @staticmethod
    def _resolution(tier: int) -> int:
        return next(g.resolution for g in GRID_TIERS if tier in (g.starts, g.carried))

    def _chunks(self, tier: int, span: int, block: Block) -> list[NewResultChunk]:
        out = []
        if not block.n:
            return out
        cut = block.times // span
        for key in np.unique(cut).tolist():
            part = compact_columns(between(block, key * span, (key + 1) * span))
            end = int((part.times + part.counts).max()) if tier == SAMPLES else \
                int(part.times[-1]) + self._resolution(tier)
            out.append(NewResultChunk(tier, int(part.times[0]), end, part.n, chunkenc.encode(part)))
        return out


def _clusters(index: list[tuple[int, int, int]]) -> Iterator[tuple[list[int], int | None]]:
    """The import's chunk ids in groups of at most :data:`CLUSTER_CHUNKS` (more only where
    their times overlap: one time's samples must be evaluated together), each with the time
    from which the next group's samples begin (None after the last)."""
    group: list[int] = []
    reach = None
    for chunk_id, start, end in index:
        if group and start >= reach and len(group) >= CLUSTER_CHUNKS:
            yield group, start
            group = []
        group.append(chunk_id)
        reach = end if reach is None else max(reach, end)
    if group:
        yield group, None


def make_answer(store, inst: Instrumentation, info: ImportInfo, stop: threading.Event | None = None) -> bool:
    """Evaluate ``inst`` over the whole of ``info`` once and keep the answer; False when it is
    made already, another maker is at it, it was lost meanwhile, or ``stop`` was set (the
    answer given up: see the module docstring)."""
    if not holds(inst, info):
        return False
    run = store.claim_import_result(inst.id, info.id, definition(inst))
    if run is None:
        return False
    try:
        index = store.import_chunk_index(info.id, inst.metric)
        evaluator = _Evaluator(inst, info)
        span = sample_span([int(info.document.get("interval") or 1)])
        writer = _AnswerWriter(store, inst, info.id, run, span)
        if evaluator.plan is not None:
            for ids, upto in _clusters(index):
                if stop is not None and stop.is_set():
                    raise _Stopped
                writer.add(evaluator.samples(c.data for c in store.read_import_chunk_ids(ids)))
                writer.flush(upto)
        writer.flush(None)
    except _Lost:
        store.finish_import_result(inst.id, info.id, run)  # deletes what it wrote
        return False
    except _Stopped:
        store.abandon_import_result(inst.id, info.id, run)
        return False
    except BaseException:
        store.abandon_import_result(inst.id, info.id, run)
        raise
    return store.finish_import_result(inst.id, info.id, run)


class _Stopped(Exception):
    """This process is stopping: the answer being made is given up, made again at the next start."""


class _Maker:
    """This process's maker of answers for one store (see the module docstring, "Made before
    they are asked"): one thread, at most one answer at a time, at low priority; a bounded
    queue of (instrumentation, import) pairs and of sweeps (an import, an instrumentation or
    everything) that the thread turns into pairs. The thread ends when nothing is left to
    make, and starts again with the next thing asked."""

    def __init__(self, store) -> None:
        self.store = weakref.ref(store)
        self.lock = threading.Lock()
        self.todo: deque[tuple[Instrumentation, ImportInfo]] = deque()
        self.queued: set[tuple[int, int]] = set()  # (instrumentation id, import id) of todo
        self.sweeps: deque[tuple[str, int]] = deque()  # (IMPORT | INSTRUMENTATION | EVERYTHING, id)
        self.thread: threading.Thread | None = None
        self.stopping = threading.Event()
        self.retry_at: float | None = None  # another maker's claim seen: look again then
        self.current: tuple[int, int] | None = None

    # -- asked by readers, hooks and the process's start ---------------------------------------

    def want(self, inst: Instrumentation, info: ImportInfo) -> None:
        """A reader evaluated ``info`` for ``inst``: its answer goes first."""
        self._add_pair(inst, info, first=True)

    def sweep(self, kind: str, ident: int = 0) -> None:
        """Look for the answers to make of an import, an instrumentation or everything."""
        with self.lock:
            if self.stopping.is_set() or (kind, ident) in self.sweeps or (EVERYTHING, 0) in self.sweeps:
                return
            if kind == EVERYTHING or len(self.sweeps) >= MAX_QUEUED:
                self.sweeps.clear()  # one sweep of everything finds what the others would
                kind, ident = EVERYTHING, 0
            self.sweeps.append((kind, ident))
            self._start()

    def _add_pair(self, inst: Instrumentation, info: ImportInfo, first: bool = False) -> bool:
        key = (inst.id, info.id)
        with self.lock:
            if self.stopping.is_set() or key in self.queued or key == self.current:
                return True
            if len(self.todo) >= MAX_QUEUED:
                return False  # the caller sweeps everything once the queue has room
            self.queued.add(key)
            self.todo.appendleft((inst, info)) if first else self.todo.append((inst, info))
            self._start()
            return True

    def _start(self) -> None:
        if self.thread is None:
            self.thread = threading.Thread(target=self._run, name="fleetscope-import-answers", daemon=True)
            self.thread.start()

    def stop(self, timeout: float = STOP_WAIT) -> None:
        """Stop making (the answer being made is given up: its row goes, the next start makes it)."""
        self.stopping.set()
        with self.lock:
            thread = self.thread
            self.todo.clear()
            self.queued.clear()
            self.sweeps.clear()
        if thread is not None:
            thread.join(timeout)

    def idle(self) -> bool:
        with self.lock:
            return self.thread is None

    def pending(self) -> int:
        """Pairs queued or being made, and sweeps not yet looked at."""
        with self.lock:
            return len(self.todo) + len(self.sweeps) + (self.current is not None)

    # -- the thread ------------------------------------------------------------------------------

    def _run(self) -> None:
        with contextlib.suppress(OSError):  # Linux: a thread's niceness is its own
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), LOW_PRIORITY)
        while not self.stopping.is_set():
            with self.lock:
                if self.todo:
                    pair = self.todo.popleft()
                    key = self.current = (pair[0].id, pair[1].id)
                    self.queued.discard(key)
                    sweep = None
                elif self.sweeps:
                    key, sweep = None, self.sweeps.popleft()
                elif self.retry_at is not None:
                    key = sweep = None
                else:
                    self.thread = None
                    return
            store = self.store()
            if store is None:
                break
            try:
                if key is not None:
                    self._make(store, *pair)
                elif sweep is not None:
                    self._expand(store, *sweep)
                elif self.retry_at is not None and time.time() >= self.retry_at:
                    self.retry_at = None  # another maker's claims seen: stale by now, or made
                    self.sweep(EVERYTHING)
                else:  # waiting for that, a second at a time so new work is not kept waiting
                    self.stopping.wait(IDLE_LOOK)
            except Exception:  # the store closed, a deleted import: the next sweep or read asks again
                log.debug("answers over imports: %s not made", key or sweep, exc_info=True)
            finally:
                del store
                with self.lock:
                    self.current = None
        with self.lock:
            self.thread = None

    def _make(self, store, inst: Instrumentation, info: ImportInfo) -> None:
        if inst.persist and store.get_instrumentation(inst.id) is None:
            return  # deleted while queued: its claim would outlive it
        if not make_answer(store, inst, info, stop=self.stopping):
            row = store.import_results(inst.id).get(info.id)
            if row is not None and row.state != ANSWER_READY and not self.stopping.is_set():
                self.retry_at = time.time() + STALE_CLAIM  # another maker's, alive or not

    def _expand(self, store, kind: str, ident: int) -> None:
        """Queue the answers a sweep finds to make: persisted instrumentations and ready imports
        they can read (:func:`holds`), not made already for their definition."""
        if kind == IMPORT:
            info = store.get_import(ident)
            infos = [] if info is None else [info]
        else:
            infos = store.list_imports()
        insts = [i for i in store.list_instrumentations() if i.persist and (kind != INSTRUMENTATION or
                                                                             i.id == ident)]
        for inst in insts:
            readable = [info for info in infos if holds(inst, info)]
            if not readable:
                continue
            made = store.import_results(inst.id)
            wanted = definition(inst)
            for info in readable:
                row = made.get(info.id)
                if row is not None and row.state == ANSWER_READY and row.definition == wanted:
                    continue
                if not self._add_pair(inst, info):
                    self.sweep(EVERYTHING)  # the queue is full: what did not fit is found again
                    return


_makers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_caches: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_registry = threading.Lock()


def _of(table: weakref.WeakKeyDictionary, store, make):
    """What this process keeps for ``store`` in ``table`` (``make()`` on first use; it goes
    with the store)."""
    with _registry:
        found = table.get(store)
        if found is None:
            found = table[store] = make()
        return found


def _maker(store) -> _Maker:
    return _of(_makers, store, lambda: _Maker(store))


def _cache(store) -> ChunkCache:
    return _of(_caches, store, lambda: ChunkCache(CACHE_BYTES))


def making(store) -> bool:
    """Whether this process is making answers over imports for ``store`` now."""
    with _registry:
        maker = _makers.get(store)
    return maker is not None and not maker.idle()


def queue_import(store, info: ImportInfo) -> None:
    """``info`` became ready: make the answers of the persisted instrumentations that read it."""
    _maker(store).sweep(IMPORT, info.id)


def queue_instrumentation(store, inst: Instrumentation) -> None:
    """``inst`` was created: make its answers over the imports it reads (when it persists)."""
    if inst.persist:
        _maker(store).sweep(INSTRUMENTATION, inst.id)


def start_making(store) -> None:
    """A process starts: make what is missing (what a stopped process gave up or left claimed)."""
    _maker(store).sweep(EVERYTHING)


def stop_making(store) -> None:
    """A process stops: the answer being made is given up between two chunks of its import."""
    _maker(store).stop()


def answer_counts(store, infos: Iterable[ImportInfo]) -> dict[int, dict[str, int]]:
    """Of each ready import, how many persisted instrumentations that read it have their answer
    ``ready`` and how many are ``pending`` (queued, being made, or not asked for yet)."""
    infos = [i for i in infos if i.state == READY and i.start is not None]
    if not infos:
        return {}
    insts = [i for i in store.list_instrumentations() if i.persist]
    out = {info.id: {"ready": 0, "pending": 0} for info in infos}
    made = store.import_results_over([info.id for info in infos])  # one query, however many
    for inst in insts:
        readable = [info for info in infos if holds(inst, info)]
        if not readable:
            continue
        wanted = definition(inst)
        for info in readable:
            row = made.get((inst.id, info.id))
            done = row is not None and row.state == ANSWER_READY and row.definition == wanted
            out[info.id]["ready" if done else "pending"] += 1
    return out


def listed(store, infos: Iterable[ImportInfo]) -> list[dict]:
    """The imports' JSON, a ready one's with its ``answers`` (:func:`answer_counts`)."""
    infos = list(infos)
    counts = answer_counts(store, infos)
    return [{**i.to_json(), **({"answers": counts[i.id]} if i.id in counts else {})} for i in infos]


def clear_cache(store) -> None:
    """Forget the decoded answer chunks of ``store`` (benchmarks measure cold reads with this)."""
    _cache(store).clear()


# -- reading ---------------------------------------------------------------------------------------


def _read_tier(store, inst: Instrumentation, import_id: int, run: int, tier: int, start: int,
               end: int) -> Block:
    """The rows of one tier of a made answer that overlap ``[start, end)``, through the cache
    (chunks never change: a run writes each once)."""
    cache = _cache(store)
    index = store.read_import_result_chunks(inst.id, import_id, run, tier, start, end, with_data=False)
    keys = [(run, c.id) for c in index]
    blocks = cache.get_many(keys)
    missing = [key[1] for key, b in blocks.items() if b is None]
    if missing:
        for chunk_id, data in store.read_import_result_ids(missing).items():
            blocks[run, chunk_id] = b = chunkenc.decode(data)
            cache.put((run, chunk_id), b)
    return _joined([b for b in (blocks[key] for key in keys) if b is not None], inst.shape)


def _joined(parts: list[Block], shape: str) -> Block:
    """:func:`concat` of a tier's chunks; chunks of numbers over the same keys, one after the
    other (a log's samples, hour after hour), simply put end to end."""
    if len(parts) < 2 or any(b.values is None or b.keys != parts[0].keys for b in parts) or \
            any(a.times[-1] > b.times[0] for a, b in pairwise(parts) if a.n and b.n):
        return concat(parts, shape)
    columns = [np.concatenate([getattr(b, name) for b in parts]) for name in POINT_COLUMNS]
    return Block(*columns, parts[0].keys, np.concatenate([b.values for b in parts]), None)


def _answered(store, inst: Instrumentation, import_id: int, run: int, rng: Range) -> Block:
    """Every step's sum and count of ``rng`` from a made answer."""
    shape = inst.shape
    grid = grid_for(rng.duration, rng.start)
    if grid is None:
        samples = _read_tier(store, inst, import_id, run, SAMPLES, rng.start, rng.end)
        if samples.n:  # the rows of the chunks that may overlap the range
            samples = between(samples, rng.start - int(samples.counts.max()) + 1, rng.end)
        return from_samples(samples, shape, inst.kind, rng.start, rng.duration, rng.n)
    tier = Placed(*(between(_read_tier(store, inst, import_id, run, t, rng.start, rng.end), rng.start,
                            rng.end) for t in (grid.starts, grid.carried)))
    return from_grid(tier, shape, rng.start, rng.duration)


def _evaluated(store, inst: Instrumentation, info: ImportInfo, rng: Range) -> Block:
    """Every step's sum and count of ``rng``, evaluated over the import's rows now."""
    chunks = store.import_chunks(inst.metric, rng.start, rng.end, [info.id])
    samples = _Evaluator(inst, info).samples((c.data for c in chunks), rng.start, rng.end)
    return from_samples(samples, inst.shape, inst.kind, rng.start, rng.duration, rng.n)


def _samples_within(info: ImportInfo, rng: Range) -> int:
    """About how many samples of ``info`` evaluating ``rng`` reads (its samples spread evenly)."""
    overlap = max(0, min(rng.end, info.end) - max(rng.start, info.start))
    return int(info.document.get("samples", 0)) * overlap // max(1, info.end - info.start)


def imported_points(store, inst: Instrumentation, rng: Range, topk: int,
                    imports: Iterable[ImportInfo] | None = None, make: bool = True,
                    budget: bool = True) -> dict[int, DataPoint]:
    """The data points of ``inst`` over ``rng`` from the imports it may read, by step start
    (steps without imported data are absent): from the answers made over them, else
    evaluated now (and, with ``make``, the answer asked for in the background). With
    ``budget``, InputError (``start_time``, 422) when what would be evaluated exceeds
    :data:`EVALUATE_BUDGET` samples (an export, which streams in pieces, reads on)."""
    infos = sorted((i for i in (store.list_imports() if imports is None else imports)
                    if holds(inst, i) and i.start < rng.end and i.end > rng.start), key=lambda i: i.id)
    if not infos:
        return {}
    made = store.import_results(inst.id)
    wanted = definition(inst)
    shape = inst.shape
    ready = {info.id for info in infos if (answer := made.get(info.id)) is not None
             and answer.state == ANSWER_READY and answer.definition == wanted}
    unmade = [info for info in infos if info.id not in ready]
    if make:
        for info in unmade:
            _maker(store).want(inst, info)
    if budget and unmade and (samples := sum(_samples_within(i, rng) for i in unmade)) > EVALUATE_BUDGET:
        raise InputError("start_time", f"import {', '.join(str(i.id) for i in unmade)} is being indexed for "
                         f"this instrumentation: until its answer is made, a range may evaluate at most "
                         f"{EVALUATE_BUDGET} of its samples, and this one would evaluate {samples}; ask "
                         "a shorter range, or this one again once the import's answers are ready "
                         "(GET /api/v1/imports)")
    steps: list[Block] = []
    for info in infos:
        if info.id in ready:
            block = _answered(store, inst, info.id, made[info.id].run, rng)
        else:
            block = _evaluated(store, inst, info, rng)
        if block.n:
            steps.append(block)
    out: dict[int, DataPoint] = {}
    for block in steps:
        for p in to_points(block, shape, inst.kind, rng.duration):
            q = out.get(p.start_time)
            out[p.start_time] = p if q is None else DataPoint(
                p.start_time, rng.duration, values.merge_into(q.value, p.value, shape), q.nsources + 1,
                q.expected + 1)
    keep = inst.keys_kept(topk)
    if shape in (values.DISCRETE, values.DISCRETE_HISTOGRAM):  # a value of fewer keys stays as it is
        out = {s: p._replace(value=values.fold_top_k(p.value, keep, shape)) if len(p.value) > keep else p
               for s, p in out.items()}
    return out


def with_imported(points: list[DataPoint], imported: dict[int, DataPoint], shape: str,
                  topk: int | None = None) -> list[DataPoint]:
    """``points`` (live: window and history) with the imported points added step by step:
    a step that only one of them holds keeps that one; a step both hold adds up."""
    if not imported:
        return points
    out = []
    for p in points:
        imp = imported.get(p.start_time)
        if imp is None:
            out.append(p)
        elif p.value is None:
            out.append(imp)
        else:
            v = values.merge_into(_copy(p.value, shape), imp.value, shape)
            if topk is not None:
                v = values.fold_top_k(v, topk, shape)
            out.append(DataPoint(p.start_time, p.duration, v, p.nsources + imp.nsources,
                                 p.expected + imp.expected, p.revised))
    return out


def _copy(v: values.Value, shape: str) -> values.Value:
    """A copy of ``v`` that merging into leaves ``v`` alone."""
    return values.merge_into(values.empty(shape), v, shape) if shape != values.SCALAR else v



def stream_with_imported(store, inst: Instrumentation, points: Iterable[DataPoint], start: int, end: int,
                         step: int, topk: int) -> Iterator[DataPoint]:
    """``points`` (steps of ``step`` from ``start``, in time order, gaps left out: an export's)
    with the imported points of ``[start, end)`` added step by step, as :func:`with_imported`
    adds them to a range's; the imports are read :data:`EXPORT_PIECE` steps at a time, so a
    long export streams in bounded memory."""
    infos = [i for i in store.list_imports() if holds(inst, i) and i.start < end and i.end > start]
    if not infos:
        yield from points
        return
    shape = inst.shape
    live = iter(points)
    pending = next(live, None)
    piece = EXPORT_PIECE * step
    for s in range(start, end, piece):
        n = -(-(min(end, s + piece) - s) // step)
        extra = imported_points(store, inst, Range(s, step, n), topk, infos, budget=False)
        held: list[DataPoint] = []
        while pending is not None and pending.start_time < s + n * step:
            held.append(pending)
            pending = next(live, None)
        if not extra:
            yield from held
            continue
        mine = {p.start_time: p for p in held}
        for t in sorted(mine.keys() | extra.keys()):
            p, imp = mine.get(t), extra.get(t)
            if imp is None or p is None:
                yield p or imp
            else:
                yield with_imported([p], {t: imp}, shape, topk)[0]
    if pending is not None:
        yield pending
        yield from live
