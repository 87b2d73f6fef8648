"""History endpoints: export any range of an instrumentation, and the store's statistics."""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from fleetscope.api import export, queries
from fleetscope.model.errors import InputError
from fleetscope.model.instrumentation import Instrumentation
from fleetscope.model.series import DataPoint
from fleetscope.model.types import parse_duration
from fleetscope.store.block import from_points, to_points
from fleetscope.store.history import History
from fleetscope.store.rollup import rollup

DEFAULT_SINCE = 3600


def export_plan(inst: Instrumentation, tiers, start_time: int | None, end_time: int | None,
                since: str | int | None, step: int | None, now: float) -> tuple[int, int, int]:
    """``(start, end, step)`` of an export: from ``start_time`` (or ``since`` seconds ago,
    default an hour) to ``end_time`` (default now), in points of ``step`` seconds (default the
    finest tier that holds the start)."""
    if start_time is not None and since is not None:
        raise InputError("since", "give since or start_time, not both")
    for name, v in (("start_time", start_time), ("end_time", end_time)):
        if v is not None and v < 0:
            raise InputError(name, "must not be negative")
    end = int(now) if end_time is None else end_time
    if start_time is None:
        ago = DEFAULT_SINCE if since is None else parse_duration(since, "since")
        if ago <= 0:
            raise InputError("since", "must be a positive duration such as '7d'")
        start_time = end - ago
    if end <= start_time:
        raise InputError("end_time", "must be after the start of the range")
    g = inst.granularity
    if step is not None and (step <= 0 or step % g):
        raise InputError("step", f"must be a positive multiple of the granularity ({g} s)")
    tier, step = queries.fit_step(tiers, step or g, start_time, now, step is not None, "step")
    start = start_time - start_time % tier.resolution
    return start, end, step


def build_router(svc) -> APIRouter:
    r = APIRouter(prefix="/api/v1")

    def history() -> History:
        return svc.history if svc.history is not None else History(svc.control.store)

    @r.get("/instrumentations/{id}/export", summary="Export a range as CSV, JSON Lines or OpenMetrics",
           responses={200: {"content": {t.split(";")[0]: {} for t in export.MEDIA_TYPES.values()},
                            "description": "the points of the range, streamed"}})
    def export_range(
        id: int,
        since: Annotated[str | None, Query(description="how far back, e.g. 7d (default 1h)")] = None,
        start_time: Annotated[int | None, Query(description="epoch seconds (instead of since)")] = None,
        end_time: Annotated[int | None, Query(description="epoch seconds (default now)")] = None,
        step: Annotated[int | None, Query(description="seconds per point (default: the finest "
                                          "tier holding the range)")] = None,
        format: Literal["csv", "json", "openmetrics"] = "csv",
    ) -> Any:
        inst = svc.control.get(id)
        now = time.time()
        tiers = queries.tiers_of(inst, svc.history)
        start, end, step = export_plan(inst, tiers, start_time, end_time, since, step, now)
        window = svc.aggregator.window(inst.id)
        finals = window.points(start, end) if window else []
        if svc.history is None or not inst.persist:
            points = _window_points(inst, finals, start, step, svc.aggregator.topk)
        else:
            tier = queries.tier_for(tiers, step)
            window_from = min(window.slots) if window and window.slots else None
            points = svc.history.export(inst, tier, start, end, step, now, finals, window_from)
        suffix = {"openmetrics": "om", "json": "jsonl"}.get(format, format)
        return StreamingResponse(
            export.export_lines(inst, points, format), media_type=export.MEDIA_TYPES[format],
            headers={"content-disposition": f'attachment; filename="fleetscope-{inst.id}-{start}.{suffix}"',
                     "x-fleetscope-step": str(step)})

    @r.get("/store/stats", summary="History per instrumentation and tier: points, bytes, bytes per sample")
    def store_stats() -> dict:
        return history().report()

    return r


def _window_points(inst: Instrumentation, finals: list[DataPoint], start: int, step: int,
                   topk: int) -> list[DataPoint]:
    block = from_points(finals, inst.shape)
    if step != inst.granularity:
        block = rollup(block, inst.shape, start, step, topk)
    return to_points(block, inst.shape, inst.kind, step)
