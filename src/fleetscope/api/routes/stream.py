"""Live values as server-sent events (the protocol is described in :mod:`fleetscope.api.stream`)."""

from __future__ import annotations

from fastapi import APIRouter, Header, Query, Request

from fleetscope.api import stream
from fleetscope.api.auth import Viewer
from fleetscope.api.errors import responses
from fleetscope.api.services import Svc
from fleetscope.api.stream import EventStream, Hub
from fleetscope.model.errors import InputError

router = APIRouter(prefix="/api/v1", tags=["stream"])

_SSE = {"status_code": 200, "response_class": EventStream,
        "responses": {200: {"description": "`event: value` per final data point, as it is finalised",
                            "content": {"text/event-stream": {}}}, **responses(404, 422, json_route=False)}}


def _hub(request: Request) -> Hub:
    return request.app.state.hub


@router.get("/stream", summary="Live values of several instrumentations (server-sent events)", **_SSE)
async def stream_many(request: Request, svc: Svc, caller: Viewer,
                      ids: str = Query(..., description="comma-separated instrumentation ids"),
                      last_event_id: str | None = Header(None)) -> EventStream:
    ids_ = stream.parse_ids(ids)
    return stream.open_stream(svc, caller, _hub(request), ids_, last_event_id)


@router.get("/instrumentations/{id}/stream",
            summary="Live values of one instrumentation (server-sent events)", **_SSE)
async def stream_one(request: Request, svc: Svc, caller: Viewer, id: int,
                     last_event_id: str | None = Header(None)) -> EventStream:
    if id <= 0:
        raise InputError("id", "must be a positive integer")
    return stream.open_stream(svc, caller, _hub(request), [id], last_event_id)
