"""``GET /api/v1/store/stats``: what the history holds, per instrumentation and tier."""

from __future__ import annotations

from fastapi import APIRouter

from fleetscope.api.auth import Viewer
from fleetscope.api.services import Svc
from fleetscope.store.history import History

router = APIRouter(prefix="/api/v1/store", tags=["store"])


@router.get("/stats", summary="History per instrumentation and tier: points, bytes, bytes per sample")
def store_stats(svc: Svc, caller: Viewer) -> dict:
    history = svc.history if svc.history is not None else History(svc.control.store)
    if caller.tenant is None:
        return history.report()
    return history.report(svc.listed(caller))  # only the tenant's, without the store's own totals
