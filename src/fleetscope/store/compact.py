"""Compaction of the history: rollups, rollups again after late data, merging small chunks,
retention.

:meth:`Compactor.run` does, per instrumentation this process owns:

* **rollup**: complete minutes (hours...) from the tier below, up to ``settle``
  seconds before now and, for the coarser tiers, up to the finer tier's own
  watermark; the watermark (``rollups`` table) moves in the same transaction
  as the rolled-up chunk;
* **reroll**: the slots that late data changed after they were rolled up
  (``pending_rollups``, written with the late data), and the coarser slots
  above them in turn;
* **merge**: the chunks of a finished span into one, and the small chunks of
  the span being written once there are ``merge_small`` of them;
* **expire**: chunks past their tier's retention, and the history of deleted
  instrumentations; then the space goes back to the file system.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence

from fleetscope.model.instrumentation import Instrumentation
from fleetscope.model.tiers import Tier
from fleetscope.store import chunkenc
from fleetscope.store.base import HistoryChange
from fleetscope.store.block import empty, merge
from fleetscope.store.chunkio import ChunkReader, to_chunks
from fleetscope.store.rollup import rollup

# A chunk of the span being written is "small" below this share of the span's points
# (a flush every few seconds writes a chunk of a few points), and below at least MIN_SMALL.
SMALL_SHARE = 30  # 1/30 of a span: two minutes of an hour's seconds
MIN_SMALL = 2


class Compactor:
    """Compaction of one store's history (see the module docstring).

    ``tiers(inst)``: the tiers of an instrumentation, finest first; ``owns(inst_id)``: whether
    this process compacts it (None: every one); ``config``: the history's
    :class:`~fleetscope.store.history.HistoryConfig` (``settle``, ``topk``, ``merge_small``)."""

    def __init__(self, store, config, reader: ChunkReader,
                 tiers: Callable[[Instrumentation], tuple[Tier, ...]],
                 owns: Callable[[int], bool] | None = None) -> None:
        self.store = store
        self.config = config
        self.reader = reader
        self.tiers = tiers
        self.owns = owns

    def run(self, now: int, report: Counter[str]) -> None:
        """Roll up, roll up again, merge and expire; what was done is added to ``report``."""
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
                    stop, rolled = limit, empty(inst.shape)  # nothing more to roll up
                else:
                    mark = max(mark, nxt // res * res)
                    stop = min(limit, (mark // tier.span + 1) * tier.span)
                    block = self.reader.read(inst, finer, mark, stop)
                    rolled = rollup(block, inst.shape, mark, res, inst.keys_kept(self.config.topk))
                self.store.write_history(HistoryChange(add=to_chunks(inst.id, tier, rolled),
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
            parts = [rollup(self.reader.read(inst, finer, s, s + res), inst.shape, s, res,
                            inst.keys_kept(self.config.topk)) for s in starts]
            block = merge(parts, inst.shape)
            nxt: list[tuple[int, int, int]] = []
            if i + 1 < len(tiers):
                coarser = tiers[i + 1]
                mark = marks.get((inst.id, coarser.level))
                if mark is not None:
                    up = {s - s % coarser.resolution for s in starts if s < mark}
                    todo[coarser.level] |= up
                    nxt = [(inst.id, coarser.level, s) for s in sorted(up)]
            self.store.write_history(HistoryChange(
                add=to_chunks(inst.id, tier, block), pending_add=nxt,
                pending_done=[(inst.id, tier.level, s) for s in starts]))
            report[f"rerolled_{tier.name}"] += len(starts)

    def _merge_chunks(self, inst: Instrumentation, tiers: Sequence[Tier], now: int,
                      report: Counter[str]) -> None:
        for tier in tiers:
            groups: dict[int, list] = defaultdict(list)
            for c in self.store.chunk_index(inst.id, tier.level):
                groups[c.start // tier.span].append(c)
            small_below = max(MIN_SMALL, tier.span // tier.resolution // SMALL_SHARE)
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
                merged = merge([chunkenc.decode(c.data) for c in found], inst.shape)
                self.store.write_history(HistoryChange(add=to_chunks(inst.id, tier, merged),
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

