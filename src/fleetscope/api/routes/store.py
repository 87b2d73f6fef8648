"""``GET /api/v1/store/stats``: what the history holds, per instrumentation and tier."""

from __future__ import annotations

from fastapi import APIRouter

from fleetscope.api.services import Svc
from fleetscope.store.history import History

router = APIRouter(prefix="/api/v1/store", tags=["store"])


@router.get("/stats", summary="History per instrumentation and tier: points, bytes, bytes per sample")
def store_stats(svc: Svc) -> dict:
    history = svc.history if svc.history is not None else History(svc.control.store)
    return history.report()
