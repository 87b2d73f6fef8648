"""History: persisted tiers of data points, exact rollups, retention, and reading ranges back.

The layout follows the Prometheus TSDB model:

* **head**: the final (or revised) slots of persisted instrumentations, as the
  aggregator hands them to :meth:`History.record`, buffered in memory;
* **chunks**: :meth:`History.flush` writes the head as one chunk per
  instrumentation (:mod:`fleetscope.store.chunks`) in one transaction, every
  few seconds and on shutdown, so a crash loses at most the unflushed seconds;
* **compaction** (:meth:`History.compact`): rolls complete minutes and hours up
  from the tier below (exactly: sums and counts add, histograms merge bucket by
  bucket, breakdowns keep their top keys and fold the rest into ``(other)``),
  rolls up again the slots that late data changed, merges the small chunks of
  a span into one, deletes chunks past their tier's retention and gives the
  space back.

Reading (:meth:`History.read`) merges, for the raw tier, stored chunks, the
head and the aggregator's real-time window (the window wins where both hold a
slot); for a coarser tier, the stored rollups up to its watermark and, after
it, a rollup of the tier below computed on the fly. So a range never has a
hole where data exists and never counts a slot twice.

Every method takes ``now`` (epoch seconds) so that tests and benchmarks can
drive synthetic days; by default it is the wall clock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from itertools import pairwise
from typing import NamedTuple

import numpy as np

from fleetscope.model.instrumentation import Instrumentation
from fleetscope.model.series import DataPoint
from fleetscope.model.tiers import DEFAULT_RETENTION, NAMES, RESOLUTIONS, Tier, tiers_for
from fleetscope.store import chunks
from fleetscope.store.chunks import Block
from fleetscope.store.sql import HistoryChange, NewChunk, TierStats

log = logging.getLogger(__name__)

MAX_HEAD_POINTS = 86400  # per instrumentation, kept in memory while the store cannot be written


class HistoryConfig(NamedTuple):
    """How history is kept."""

    retention: Mapping[str, int] = DEFAULT_RETENTION  # per tier name, unless an instrumentation says
    flush_every: float = 5.0  # seconds between flushes of the head (and compactions)
    settle: int = 5  # seconds after a slot ends before it is rolled up (late data is rolled up again)
    topk: int = 50  # keys kept per rolled-up point of a breakdown
    merge_small: int = 12  # small chunks of an unfinished span merged into one
    cache_bytes: int = 128 << 20  # decoded chunks kept in memory for the next query (0: none)


class TierReport(NamedTuple):
    """One row of ``fleetscope store stats``."""

    inst_id: int
    tier: str
    resolution: int
    retention: int
    chunks: int
    points: int
    samples: int
    bytes: int
    bytes_per_sample: float
    oldest: int
    newest: int

    def to_json(self) -> dict:
        return self._asdict()


class History:
    """The history of every persisted instrumentation in one store."""

    def __init__(self, store, config: HistoryConfig | None = None,
                 owns: Callable[[int], bool] | None = None) -> None:
        """``owns(inst_id)``: whether this process rolls up and compacts that instrumentation's
        history (in a fleet, the aggregator holding its lease; default: every one)."""
        self.store = store
        self.config = config or HistoryConfig()
        self.owns = owns
        self._head: dict[int, tuple[Instrumentation, dict[int, DataPoint]]] = {}
        self._lock = threading.Lock()  # the head
        self._maint = threading.Lock()  # one flush or compaction at a time
        self.counters: Counter[str] = Counter()
        # Chunks never change once written (a rewrite gets a new id), so decoded blocks can be
        # kept by id: a dashboard that asks again every few seconds decodes only new chunks.
        self._cache: OrderedDict[int, Block] = OrderedDict()
        self._cache_size = 0
        self._cache_lock = threading.Lock()

    def tiers(self, inst: Instrumentation) -> tuple[Tier, ...]:
        """The tiers of ``inst``, finest first, with their effective retention."""
        return tiers_for(inst.granularity, inst.history, self.config.retention)

    # -- writing -------------------------------------------------------------------------------

    def record(self, inst: Instrumentation, point: DataPoint) -> None:
        """Buffer a final or revised slot of ``inst`` (an aggregator listener). Cheap: no I/O."""
        if not inst.persist or point.value is None:
            return
        with self._lock:
            entry = self._head.get(inst.id)
            if entry is None or entry[0] is not inst:
                entry = self._head[inst.id] = (inst, entry[1] if entry else {})
            entry[1][point.start_time] = point

    def write(self, inst: Instrumentation, points: Sequence[DataPoint]) -> None:
        """Buffer many points at once (as :meth:`record` does each)."""
        for p in points:
            self.record(inst, p)

    def buffered(self) -> int:
        """Points in the head, not yet flushed."""
        with self._lock:
            return sum(len(pts) for _, pts in self._head.values())

    def flush(self, now: float | None = None) -> int:
        """Write the head to the store (one transaction); returns the number of points written.
        On a store error the points go back to the head and the error is raised."""
        with self._maint:
            return self._flush()

    def _flush(self) -> int:
        with self._lock:
            head, self._head = self._head, {}
        if not head:
            return 0
        marks = self.store.watermarks()
        add: list[NewChunk] = []
        pending: set[tuple[int, int, int]] = set()
        npoints = 0
        for inst, pts in head.values():
            tiers = self.tiers(inst)
            block = chunks.from_points(list(pts.values()), inst.shape)
            npoints += block.n
            add += self._encode(inst.id, tiers[0], block)
            if len(tiers) > 1:
                # Late data for a minute already rolled up: roll it up again.
                mark = marks.get((inst.id, tiers[1].level))
                res = tiers[1].resolution
                if mark is not None:
                    pending |= {(inst.id, tiers[1].level, t - t % res)
                                for t in block.times[block.times < mark].tolist()}
        try:
            self.store.write_history(HistoryChange(add=add, pending_add=sorted(pending)))
        except Exception:
            with self._lock:
                for inst_id, (inst, pts) in head.items():
                    entry = self._head.setdefault(inst_id, (inst, {}))
                    for t, p in pts.items():
                        entry[1].setdefault(t, p)  # a newer point recorded meanwhile wins
                    # While the store is away the head holds at most a day per instrumentation.
                    excess = len(entry[1]) - MAX_HEAD_POINTS
                    for t in sorted(entry[1])[:max(excess, 0)]:
                        del entry[1][t]
                        self.counters["dropped_points"] += 1
            self.counters["flush_errors"] += 1
            raise
        self.counters["points_written"] += npoints
        self.counters["chunks_written"] += len(add)
        return npoints

    def write_block(self, inst: Instrumentation, block: Block) -> int:
        """Write raw-tier points given in columns straight to the store (bulk loading:
        benchmarks, imports); bytes written."""
        add = self._encode(inst.id, self.tiers(inst)[0], block)
        self.store.write_history(HistoryChange(add=add))
        return sum(len(c.data) for c in add)

    def _encode(self, inst_id: int, tier: Tier, block: Block) -> list[NewChunk]:
        """``block`` as chunks of ``tier``, one per span it touches."""
        if not block.n:
            return []
        span_of = block.times // tier.span
        cuts = np.r_[0, np.flatnonzero(np.diff(span_of)) + 1, block.n]
        out = []
        for a, b in pairwise(cuts.tolist()):
            part = chunks.compact_columns(chunks.take(block, slice(a, b)))
            out.append(NewChunk(inst_id, tier.level, part.start, part.last + tier.resolution, part.n,
                                chunks.nsamples(part), chunks.encode(part)))
        return out

    # -- compaction ------------------------------------------------------------------------------

    def compact(self, now: float | None = None) -> Counter[str]:
        """Flush, then roll up, roll up again after late data, merge small chunks, enforce
        retention and reclaim space. Returns what was done (counts by kind)."""
        now = int(time.time() if now is None else now)
        report: Counter[str] = Counter()
        with self._maint:
            report["flushed"] = self._flush()
            insts = {i.id: i for i in self.store.list_instrumentations()}
            marks = self.store.watermarks()
            pending: dict[int, list[tuple[int, int]]] = defaultdict(list)
            for inst_id, level, start in self.store.pending_rollups():
                pending[inst_id].append((level, start))
            for inst in insts.values():
                if self.owns is not None and not self.owns(inst.id):
                    pending.pop(inst.id, None)  # its owner rolls it up (two would race)
                    continue
                tiers = self.tiers(inst)
                self._rollup(inst, tiers, marks, now, report)
                self._reroll(inst, tiers, marks, pending.pop(inst.id, []), report)
                self._merge_chunks(inst, tiers, now, report)
            for inst_id, items in pending.items():  # instrumentations deleted meanwhile
                self.store.write_history(HistoryChange(pending_done=[(inst_id, lv, s) for lv, s in items]))
            self._expire(insts, now, report)
        self.counters.update(report)
        return report

    def maintain(self, now: float | None = None) -> Counter[str]:
        """What the server runs every ``flush_every`` seconds: :meth:`compact` (which flushes)."""
        return self.compact(now)

    def _stored(self, inst: Instrumentation, tier: Tier, start: int, end: int) -> Block:
        """The stored points of ``tier`` in ``[start, end)``, later writes winning."""
        if not self.config.cache_bytes:
            found = self.store.read_chunks(inst.id, tier.level, start, end, tier.span)
            return chunks.merge([chunks.between(chunks.decode(c.data), start, end) for c in found],
                                inst.shape)
        for _ in range(3):
            index = self.store.read_chunks(inst.id, tier.level, start, end, tier.span, with_data=False)
            with self._cache_lock:
                blocks = {c.id: self._cache.get(c.id) for c in index}
                for i, b in blocks.items():
                    if b is not None:
                        self._cache.move_to_end(i)
            missing = [i for i, b in blocks.items() if b is None]
            for c in self.store.read_chunk_ids(missing) if missing else ():
                blocks[c.id] = b = chunks.decode(c.data)
                self._remember(c.id, b)
            if all(b is not None for b in blocks.values()):
                break
            # A compaction replaced chunks between the two reads: read the index again.
        parts = [chunks.between(blocks[c.id], start, end) for c in index if blocks[c.id] is not None]
        return chunks.merge(parts, inst.shape)

    def _remember(self, chunk_id: int, block: Block) -> None:
        size = _nbytes(block)
        if size > self.config.cache_bytes // 4:
            return
        with self._cache_lock:
            if chunk_id in self._cache:
                return
            self._cache[chunk_id] = block
            self._cache_size += size
            while self._cache_size > self.config.cache_bytes:
                _, old = self._cache.popitem(last=False)
                self._cache_size -= _nbytes(old)

    def clear_cache(self) -> None:
        """Forget the decoded chunks (benchmarks measure cold reads with this)."""
        with self._cache_lock:
            self._cache.clear()
            self._cache_size = 0

    def _rollup(self, inst: Instrumentation, tiers: Sequence[Tier], marks: dict, now: int,
                report: Counter[str]) -> None:
        for i in range(1, len(tiers)):
            tier, finer = tiers[i], tiers[i - 1]
            res = tier.resolution
            limit = (now - self.config.settle) // res * res
            if i > 1:  # only what the finer tier has rolled up itself
                finer_mark = marks.get((inst.id, finer.level))
                if finer_mark is None:
                    continue
                limit = min(limit, finer_mark // res * res)
            mark = marks.get((inst.id, tier.level))
            if mark is None:
                first = self.store.first_chunk_start(inst.id, finer.level, -1)
                if first is None:
                    continue
                mark = first // res * res
            while mark < limit:
                nxt = self.store.first_chunk_start(inst.id, finer.level, mark)
                if nxt is None or nxt >= limit:
                    stop, rolled = limit, chunks.empty(inst.shape)  # nothing more to roll up
                else:
                    mark = max(mark, nxt // res * res)
                    stop = min(limit, (mark // tier.span + 1) * tier.span)
                    block = self._stored(inst, finer, mark, stop)
                    rolled = chunks.rollup(block, inst.shape, mark, res, self.config.topk)
                self.store.write_history(HistoryChange(add=self._encode(inst.id, tier, rolled),
                                                       watermarks=[(inst.id, tier.level, stop)]))
                report[f"rolled_{tier.name}"] += rolled.n
                marks[inst.id, tier.level] = mark = stop

    def _reroll(self, inst: Instrumentation, tiers: Sequence[Tier], marks: dict,
                items: list[tuple[int, int]], report: Counter[str]) -> None:
        if not items:
            return
        levels = {t.level: i for i, t in enumerate(tiers)}
        todo = defaultdict(set)
        for level, start in items:
            todo[level].add(start)
        done = [(inst.id, lv, s) for lv, starts in todo.items() if lv not in levels or levels[lv] == 0
                for s in starts]
        if done:
            self.store.write_history(HistoryChange(pending_done=done))
        for i in range(1, len(tiers)):
            tier, finer = tiers[i], tiers[i - 1]
            starts = sorted(todo.get(tier.level, ()))
            if not starts:
                continue
            res = tier.resolution
            parts = [chunks.rollup(self._stored(inst, finer, s, s + res), inst.shape, s, res,
                                   self.config.topk) for s in starts]
            block = chunks.merge(parts, inst.shape)
            nxt: list[tuple[int, int, int]] = []
            if i + 1 < len(tiers):
                coarser = tiers[i + 1]
                mark = marks.get((inst.id, coarser.level))
                if mark is not None:
                    up = {s - s % coarser.resolution for s in starts if s < mark}
                    todo[coarser.level] |= up
                    nxt = [(inst.id, coarser.level, s) for s in sorted(up)]
            self.store.write_history(HistoryChange(
                add=self._encode(inst.id, tier, block), pending_add=nxt,
                pending_done=[(inst.id, tier.level, s) for s in starts]))
            report[f"rerolled_{tier.name}"] += len(starts)

    def _merge_chunks(self, inst: Instrumentation, tiers: Sequence[Tier], now: int,
                      report: Counter[str]) -> None:
        for tier in tiers:
            groups: dict[int, list] = defaultdict(list)
            for c in self.store.chunk_index(inst.id, tier.level):
                groups[c.start // tier.span].append(c)
            small_below = max(2, tier.span // tier.resolution // 30)
            for key, group in groups.items():
                if len(group) < 2:
                    continue
                if (key + 1) * tier.span <= now - self.config.settle:
                    ids = [c.id for c in group]  # a finished span: one chunk
                else:
                    small = [c for c in group if c.npoints < small_below]
                    if len(small) < self.config.merge_small:
                        continue
                    # The merged chunk wins over every older one, so it must hold every
                    # chunk written after the first small one.
                    first = min(c.id for c in small)
                    ids = [c.id for c in group if c.id >= first]
                found = self.store.read_chunk_ids(ids)
                merged = chunks.merge([chunks.decode(c.data) for c in found], inst.shape)
                self.store.write_history(HistoryChange(add=self._encode(inst.id, tier, merged),
                                                       delete=[c.id for c in found]))
                report["merged_chunks"] += len(found)

    def _expire(self, insts: Mapping[int, Instrumentation], now: int, report: Counter[str]) -> None:
        deleted = 0
        for inst in insts.values():
            for tier in self.tiers(inst):
                deleted += self.store.expire_chunks(inst.id, tier.level, now - tier.retention)
        for orphan in set(self.store.history_ids()) - set(insts):
            self.store.delete_history(orphan)
            deleted += 1
        if deleted:
            self.store.reclaim()
        report["expired_chunks"] += deleted

    # -- reading ---------------------------------------------------------------------------------

    def read(self, inst: Instrumentation, tier: Tier, start: int, end: int, now: float | None = None,
             window: Sequence[DataPoint] = (), window_from: int | None = None) -> Block:
        """The points of ``tier`` with ``start <= time < end`` (``start`` aligned to the
        tier's resolution), as sums with their counts.

        ``window`` are the real-time window's final points (raw slots) and
        ``window_from`` the oldest slot it holds: from there on the window alone
        answers for the raw tier. Points older than the tier's retention are not
        returned, even while their chunk still exists.
        """
        now = time.time() if now is None else now
        tiers = self.tiers(inst)
        idx = next(i for i, t in enumerate(tiers) if t.level == tier.level)
        tier = tiers[idx]
        oldest = int(now) - tier.retention
        if start < oldest:  # expired, whether or not its chunk is deleted yet
            start = -(-oldest // tier.resolution) * tier.resolution
        if start >= end:
            return chunks.empty(inst.shape)
        if idx == 0:
            stored_end = end if window_from is None else min(end, window_from)
            parts = []
            if stored_end > start:
                parts.append(self._stored(inst, tier, start, stored_end))
                parts.append(chunks.from_points(self.head_points(inst.id, start, stored_end), inst.shape))
            inside = [p for p in window if start <= p.start_time < end]
            if inside:
                parts.append(chunks.from_points(inside, inst.shape))
            return chunks.merge(parts, inst.shape)
        mark = self.store.watermarks().get((inst.id, tier.level))
        upto = start if mark is None else max(start, min(end, mark))
        parts = [self._stored(inst, tier, start, upto)] if upto > start else []
        if end > upto:
            finer = self.read(inst, tiers[idx - 1], upto, end, now, window, window_from)
            parts.append(chunks.rollup(finer, inst.shape, upto, tier.resolution, self.config.topk))
        return chunks.merge(parts, inst.shape)

    def head_points(self, inst_id: int, start: int, end: int) -> list[DataPoint]:
        with self._lock:
            entry = self._head.get(inst_id)
            return [p for t, p in entry[1].items() if start <= t < end] if entry else []

    def export(self, inst: Instrumentation, tier: Tier, start: int, end: int, step: int,
               now: float | None = None, window: Sequence[DataPoint] = (),
               window_from: int | None = None) -> Iterator[DataPoint]:
        """Data points of ``step`` seconds over ``[start, end)`` (gaps left out), read a
        span at a time so that any range streams in bounded memory."""
        piece = -(-tier.span // step) * step
        for s in range(start, end, piece):
            e = min(end, s + piece)
            block = self.read(inst, tier, s, e, now, window, window_from)
            if step != tier.resolution:
                block = chunks.rollup(block, inst.shape, s, step, self.config.topk)
            yield from chunks.to_points(block, inst.shape, inst.kind, step)

    def report(self) -> dict:
        """What ``fleetscope store stats`` and ``GET /api/v1/store/stats`` show: per
        instrumentation and tier (with its metric), totals, the bytes the store takes on disk."""
        insts = {i.id: i for i in self.store.list_instrumentations()}
        rows = []
        for t in self.stats(list(insts.values())):
            row = t.to_json()
            inst = insts.get(t.inst_id)
            row["metric"] = inst.metric if inst else None
            row["decomposition"] = list(inst.decomposition) if inst else []
            rows.append(row)
        samples = sum(r["samples"] for r in rows)
        disk = self.store.disk_bytes()
        return {"tiers": rows, "samples": samples, "bytes": sum(r["bytes"] for r in rows), "disk_bytes": disk,
                "bytes_per_sample": round(disk / samples, 3) if samples else None,
                "buffered": self.buffered()}

    def stats(self, insts: Sequence[Instrumentation] | None = None) -> list[TierReport]:
        """Per instrumentation and tier: chunks, points, samples, bytes, bytes per sample, oldest
        and newest time (payload bytes; :meth:`Store.disk_bytes` is the whole store)."""
        known = {i.id: i for i in (insts if insts is not None else self.store.list_instrumentations())}
        out = []
        for s in self.store.history_stats():
            inst = known.get(s.inst_id)
            tier = next((t for t in self.tiers(inst) if t.level == s.tier), None) if inst else None
            out.append(_report(s, tier))
        return out


def _report(s: TierStats, tier: Tier | None) -> TierReport:
    name = tier.name if tier else NAMES[s.tier]
    return TierReport(s.inst_id, name, tier.resolution if tier else RESOLUTIONS[s.tier],
                      tier.retention if tier else 0, s.chunks, s.points, s.samples, s.bytes,
                      round(s.bytes / s.samples, 3) if s.samples else 0.0, s.oldest, s.newest)


def _nbytes(block: Block) -> int:
    arrays = [block.times, block.counts, block.nsources, block.expected, block.revised]
    arrays += [block.values] if block.values is not None else list(block.hists)
    return sum(a.nbytes for a in arrays) + 64 * len(block.keys)
