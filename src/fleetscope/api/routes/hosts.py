"""``GET /api/v1/hosts``: every agent that has reported."""

from __future__ import annotations

from fastapi import APIRouter

from fleetscope.api import scope
from fleetscope.api.auth import Viewer
from fleetscope.api.services import Svc

router = APIRouter(prefix="/api/v1", tags=["hosts"])


@router.get("/hosts", summary="Every agent: status, last report, version, clock offset, instrumentations")
def list_hosts(svc: Svc, caller: Viewer) -> dict:
    return {"hosts": scope.hosts_for(caller, svc.control.host_list(), {i.id for i in svc.listed(caller)})}
