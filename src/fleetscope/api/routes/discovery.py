"""``GET /api/v1/metrics``: the metrics the fleet's agents know, with their fields and units."""

from __future__ import annotations

from fastapi import APIRouter

from fleetscope.api import scope
from fleetscope.api.auth import Viewer
from fleetscope.api.services import Svc

router = APIRouter(prefix="/api/v1", tags=["discovery"])


@router.get("/metrics", summary="Metrics, their fields and units (discovery)")
def list_metrics(svc: Svc, caller: Viewer) -> dict:
    return {"metrics": [mt.to_json() for mt in scope.catalog_for(caller, svc.control.catalog)]}
