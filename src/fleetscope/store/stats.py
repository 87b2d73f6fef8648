"""What the history holds, per instrumentation and tier: ``fleetscope store stats`` and
``GET /api/v1/store/stats``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

from fleetscope.model.instrumentation import Instrumentation
from fleetscope.model.tiers import NAMES, RESOLUTIONS, Tier
from fleetscope.store.base import TierStats


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


def tier_report(s: TierStats, tier: Tier | None) -> TierReport:
    """The report row of one stored tier; ``tier`` None for an instrumentation that is gone
    (its tier named by level, retention 0)."""
    name = tier.name if tier else NAMES[s.tier]
    return TierReport(s.inst_id, name, tier.resolution if tier else RESOLUTIONS[s.tier],
                      tier.retention if tier else 0, s.chunks, s.points, s.samples, s.bytes,
                      round(s.bytes / s.samples, 3) if s.samples else 0.0, s.oldest, s.newest)


def tier_reports(store, tiers: Callable[[Instrumentation], Sequence[Tier]],
                 insts: Sequence[Instrumentation] | None = None) -> list[TierReport]:
    """Per instrumentation and tier: chunks, points, samples, bytes, bytes per sample, oldest
    and newest time (payload bytes; :meth:`Store.disk_bytes` is the whole store)."""
    known = {i.id: i for i in (insts if insts is not None else store.list_instrumentations())}
    out = []
    for s in store.history_stats():
        inst = known.get(s.inst_id)
        tier = next((t for t in tiers(inst) if t.level == s.tier), None) if inst else None
        out.append(tier_report(s, tier))
    return out


def store_report(store, tiers: Callable[[Instrumentation], Sequence[Tier]], buffered: int,
                 only: Sequence[Instrumentation] | None = None) -> dict:
    """Per instrumentation and tier (with its metric), totals, the bytes the store takes on
    disk, and the points ``buffered`` in the head; with ``only``, just those instrumentations
    and neither of the store's own figures (which would tell of the others')."""
    insts = {i.id: i for i in (store.list_instrumentations() if only is None else only)}
    rows = []
    for t in tier_reports(store, tiers, list(insts.values())):
        if only is not None and t.inst_id not in insts:
            continue  # another tenant's, or history of a deleted instrumentation
        row = t.to_json()
        inst = insts.get(t.inst_id)
        row["metric"] = inst.metric if inst else None
        row["decomposition"] = list(inst.decomposition) if inst else []
        rows.append(row)
    samples = sum(r["samples"] for r in rows)
    payload = sum(r["bytes"] for r in rows)
    if only is not None:
        return {"tiers": rows, "samples": samples, "bytes": payload, "disk_bytes": None,
                "bytes_per_sample": round(payload / samples, 3) if samples else None, "buffered": None}
    disk = store.disk_bytes()
    return {"tiers": rows, "samples": samples, "bytes": payload, "disk_bytes": disk,
            "bytes_per_sample": round(disk / samples, 3) if samples else None,
            "buffered": buffered}
