"""History: persisted tiers of data points, exact rollups, retention, and reading ranges back.

The layout follows the Prometheus TSDB model:

* **head** (:mod:`fleetscope.store.head`): the final (or revised) slots of
  persisted instrumentations, as the aggregator hands them to
  :meth:`History.record`, buffered in memory;
* **chunks**: :meth:`History.flush` writes the head as one chunk per
  instrumentation and span (:mod:`fleetscope.store.chunkio`, encoded by
  :mod:`fleetscope.store.chunkenc`) in one transaction, every few seconds and
  on shutdown, so a crash loses at most the unflushed seconds;
* **compaction** (:meth:`History.compact`, :mod:`fleetscope.store.compact`):
  rolls complete minutes and hours up from the tier below (exactly: sums and
  counts add, histograms merge bucket by bucket, breakdowns keep their top keys
  and fold the rest into ``(other)``: :mod:`fleetscope.store.rollup`), rolls up
  again the slots that late data changed, merges the small chunks of a span
  into one, deletes chunks past their tier's retention and gives the space
  back.

Reading (:meth:`History.read`) merges, for the raw tier, stored chunks, the
head and the aggregator's real-time window (the window wins where both hold a
slot); for a coarser tier, the stored rollups up to its watermark and, after
it, a rollup of the tier below computed on the fly. So a range never has a
hole where data exists and never counts a slot twice. Stored chunks are read
through a cache of decoded blocks (:mod:`fleetscope.store.cache`).

Every method takes ``now`` (epoch seconds) so that tests and benchmarks can
drive synthetic days; by default it is the wall clock.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import NamedTuple

from fleetscope.model.instrumentation import Instrumentation
from fleetscope.model.series import DataPoint
from fleetscope.model.tiers import DEFAULT_RETENTION, Tier, tiers_for
from fleetscope.store.base import HistoryChange, NewChunk
from fleetscope.store.block import Block, empty, from_points, merge, to_points
from fleetscope.store.cache import ChunkCache
from fleetscope.store.chunkio import ChunkReader, to_chunks
from fleetscope.store.compact import Compactor
from fleetscope.store.head import Head
from fleetscope.store.rollup import rollup
from fleetscope.store.stats import TierReport, store_report, tier_reports


class HistoryConfig(NamedTuple):
    """How history is kept."""

    retention: Mapping[str, int] = DEFAULT_RETENTION  # per tier name, unless an instrumentation says
    flush_every: float = 5.0  # seconds between flushes of the head (and compactions)
    settle: int = 5  # seconds after a slot ends before it is rolled up (late data is rolled up again)
    topk: int = 50  # keys kept per rolled-up point of a breakdown
    merge_small: int = 12  # small chunks of an unfinished span merged into one
    cache_bytes: int = 128 << 20  # decoded chunks kept in memory for the next query (0: none)


class History:
    """The history of every persisted instrumentation in one store."""

    def __init__(self, store, config: HistoryConfig | None = None,
                 owns: Callable[[int], bool] | None = None) -> None:
        """``owns(inst_id)``: whether this process rolls up and compacts that instrumentation's
        history (in a fleet, the aggregator holding its lease; default: every one)."""
        self.store = store
        self.config = config or HistoryConfig()
        self.owns = owns
        self.head = Head()
        self._maint = threading.Lock()  # one flush or compaction at a time
        self.counters: Counter[str] = Counter()
        self._cache = ChunkCache(self.config.cache_bytes) if self.config.cache_bytes else None
        self.chunks = ChunkReader(store, self._cache)
        self._compactor = Compactor(store, self.config, self.chunks, self.tiers, owns)

    def tiers(self, inst: Instrumentation) -> tuple[Tier, ...]:
        """The tiers of ``inst``, finest first, with their effective retention."""
        return tiers_for(inst.granularity, inst.history, self.config.retention)

    # -- writing -------------------------------------------------------------------------------

    def record(self, inst: Instrumentation, point: DataPoint) -> None:
        """Buffer a final or revised slot of ``inst`` (an aggregator listener). Cheap: no I/O."""
        if not inst.persist or point.value is None:
            return
        self.head.record(inst, point)

    def write(self, inst: Instrumentation, points: Sequence[DataPoint]) -> None:
        """Buffer many points at once (as :meth:`record` does each)."""
        for p in points:
            self.record(inst, p)

    def buffered(self) -> int:
        """Points in the head, not yet flushed."""
        return self.head.buffered()

    def flush(self, now: float | None = None) -> int:
        """Write the head to the store (one transaction); returns the number of points written.
        On a store error the points go back to the head and the error is raised."""
        with self._maint:
            return self._flush()

    def _flush(self) -> int:
        head = self.head.drain()
        if not head:
            return 0
        marks = self.store.watermarks()
        add: list[NewChunk] = []
        pending: set[tuple[int, int, int]] = set()
        npoints = 0
        for inst, pts in head.values():
            tiers = self.tiers(inst)
            block = from_points(list(pts.values()), inst.shape)
            npoints += block.n
            add += to_chunks(inst.id, tiers[0], block)
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
            # While the store is away the head holds at most a day per instrumentation.
            self.counters["dropped_points"] += self.head.restore(head)
            self.counters["flush_errors"] += 1
            raise
        self.counters["points_written"] += npoints
        self.counters["chunks_written"] += len(add)
        return npoints

    def write_block(self, inst: Instrumentation, block: Block) -> int:
        """Write raw-tier points given in columns straight to the store (bulk loading:
        benchmarks, imports); bytes written."""
        add = to_chunks(inst.id, self.tiers(inst)[0], block)
        self.store.write_history(HistoryChange(add=add))
        return sum(len(c.data) for c in add)

    # -- compaction ------------------------------------------------------------------------------

    def compact(self, now: float | None = None) -> Counter[str]:
        """Flush, then roll up, roll up again after late data, merge small chunks, enforce
        retention and reclaim space. Returns what was done (counts by kind)."""
        now = int(time.time() if now is None else now)
        report: Counter[str] = Counter()
        with self._maint:
            report["flushed"] = self._flush()
            self._compactor.run(now, report)
        self.counters.update(report)
        return report

    def maintain(self, now: float | None = None) -> Counter[str]:
        """What the server runs every ``flush_every`` seconds: :meth:`compact` (which flushes)."""
        return self.compact(now)

    def clear_cache(self) -> None:
        """Forget the decoded chunks (benchmarks measure cold reads with this)."""
        if self._cache is not None:
            self._cache.clear()

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
            return empty(inst.shape)
        if idx == 0:
            stored_end = end if window_from is None else min(end, window_from)
            parts = []
            if stored_end > start:
                parts.append(self.chunks.read(inst, tier, start, stored_end))
                parts.append(from_points(self.head.points(inst.id, start, stored_end), inst.shape))
            inside = [p for p in window if start <= p.start_time < end]
            if inside:
                parts.append(from_points(inside, inst.shape))
            return merge(parts, inst.shape)
        mark = self.store.watermarks().get((inst.id, tier.level))
        upto = start if mark is None else max(start, min(end, mark))
        parts = [self.chunks.read(inst, tier, start, upto)] if upto > start else []
        if end > upto:
            finer = self.read(inst, tiers[idx - 1], upto, end, now, window, window_from)
            parts.append(rollup(finer, inst.shape, upto, tier.resolution, inst.keys_kept(self.config.topk)))
        return merge(parts, inst.shape)

    def export(self, inst: Instrumentation, tier: Tier, start: int, end: int, step: int,
               now: float | None = None, window: Sequence[DataPoint] = (),
               window_from: int | None = None) -> Iterator[DataPoint]:
        """Data points of ``step`` seconds over ``[start, end)`` (gaps left out), read a
        span at a time so that any range streams in bounded memory."""
        piece = -(-tier.span // step) * step
        # Only the pieces where the tier can hold data (its retention to now), not every piece
        # of a range that may reach from 1970 to 2**53.
        now = time.time() if now is None else now
        skip = max(0, (int(now) - tier.retention - start) // piece)
        for s in range(start + skip * piece, min(end, int(now) + piece), piece):
            e = min(end, s + piece)
            block = self.read(inst, tier, s, e, now, window, window_from)
            if step != tier.resolution:
                block = rollup(block, inst.shape, s, step, inst.keys_kept(self.config.topk))
            yield from to_points(block, inst.shape, inst.kind, step)

    # -- statistics ------------------------------------------------------------------------------

    def report(self, insts: Sequence[Instrumentation] | None = None) -> dict:
        """What ``fleetscope store stats`` and ``GET /api/v1/store/stats`` show: per
        instrumentation and tier (with its metric), totals, the bytes the store takes on disk.
        Given ``insts``, only theirs, without the store's own figures (disk, head)."""
        return store_report(self.store, self.tiers, self.buffered(), insts)

    def stats(self, insts: Sequence[Instrumentation] | None = None) -> list[TierReport]:
        """Per instrumentation and tier: chunks, points, samples, bytes, bytes per sample, oldest
        and newest time (payload bytes; :meth:`Store.disk_bytes` is the whole store)."""
        return tier_reports(self.store, self.tiers, insts)
