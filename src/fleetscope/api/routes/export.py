"""``GET /api/v1/instrumentations/{id}/export``: any range as CSV, JSON Lines or OpenMetrics, streamed."""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from fleetscope.api import export, queries
from fleetscope.api.auth import Viewer
from fleetscope.api.errors import responses
from fleetscope.api.params import MAX_TIME, InstId
from fleetscope.api.services import Svc

router = APIRouter(prefix="/api/v1/instrumentations/{id}", tags=["export"])

_STREAMED = {200: {"content": {t.split(";")[0]: {} for t in export.MEDIA_TYPES.values()},
                   "description": "the points of the range, streamed"}}


@router.get("/export", summary="Export a range as CSV, JSON Lines or OpenMetrics",
            responses={**_STREAMED, **responses(404, 422)})
def export_range(
    id: InstId,
    svc: Svc,
    caller: Viewer,
    since: Annotated[str | None, Query(description="how far back, e.g. 7d (default 1h)")] = None,
    start_time: Annotated[int | None, Query(ge=0, le=MAX_TIME, description=(
        "epoch seconds (instead of since)"))] = None,
    end_time: Annotated[int | None, Query(ge=0, le=MAX_TIME, description=(
        "epoch seconds (default now)"))] = None,
    step: Annotated[int | None, Query(ge=1, le=MAX_TIME, description=(
        "seconds per point (default: the finest tier holding the range)"))] = None,
    format: Literal["csv", "json", "openmetrics"] = "csv",
) -> Any:
    inst = svc.used(caller, id)
    now = time.time()
    tiers = svc.tiers(inst)
    start, end, step = queries.export_plan(inst, tiers, start_time, end_time, since, step, now)
    window = svc.aggregator.window(inst.id)
    finals = window.points(start, end) if window else []
    if svc.history is None or not inst.persist:
        points = queries.window_points(inst, finals, start, step, svc.aggregator.topk)
    else:
        tier = queries.tier_for(tiers, step)
        window_from = min(window.slots) if window and window.slots else None
        points = svc.history.export(inst, tier, start, end, step, now, finals, window_from)
    points = svc.exported(inst, points, start, end, step)  # with imported logs, as /value
    suffix = {"openmetrics": "om", "json": "jsonl"}.get(format, format)
    return StreamingResponse(
        export.export_lines(inst, points, format), media_type=export.MEDIA_TYPES[format],
        headers={"content-disposition": f'attachment; filename="fleetscope-{inst.id}-{start}.{suffix}"',
                 "x-fleetscope-step": str(step)})
