"""``GET /api/v1/hosts``: every agent that has reported."""

from __future__ import annotations

from fastapi import APIRouter

from fleetscope.api.services import Svc

router = APIRouter(prefix="/api/v1", tags=["hosts"])


@router.get("/hosts", summary="Every agent: status, last report, version, clock offset, instrumentations")
def list_hosts(svc: Svc) -> dict:
    return {"hosts": svc.control.host_list()}
