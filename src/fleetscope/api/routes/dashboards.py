"""``/api/v1/dashboards``: named arrangements of panels.

The documents are checked by :mod:`fleetscope.api.dashboards`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Response

from fleetscope.api.dashboards import DASHBOARD_SCHEMA, validate_dashboard
from fleetscope.api.errors import responses
from fleetscope.api.params import DashboardId
from fleetscope.api.services import Services, Svc
from fleetscope.model.errors import InputError, NotFound

router = APIRouter(prefix="/api/v1/dashboards", tags=["dashboards"])
_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": DASHBOARD_SCHEMA}}}}


def _exists(svc: Services):
    return lambda inst_id: svc.control.store.get_instrumentation(inst_id) is not None


def _unique(svc: Services, name: str, except_id: int | None = None) -> None:
    for d in svc.control.store.list_dashboards():
        if d["name"] == name and d["id"] != except_id:
            raise InputError("name", f"dashboard {d['id']} is already called {name!r}", 409)


def _found(svc: Services, dashboard_id: int) -> dict:
    doc = svc.control.store.get_dashboard(dashboard_id)
    if doc is None:
        raise NotFound("id", f"no dashboard {dashboard_id}")
    return doc


@router.get("", summary="Every dashboard")
def list_dashboards(svc: Svc) -> dict:
    return {"dashboards": svc.control.store.list_dashboards()}


@router.post("", status_code=201, summary="Create a dashboard", openapi_extra=_BODY,
             responses=responses(400, 409, 422))
def create_dashboard(svc: Svc, body: Any = Body(..., include_in_schema=False)) -> dict:
    doc = validate_dashboard(body, _exists(svc))
    _unique(svc, doc["name"])
    return svc.control.store.create_dashboard(doc)


@router.get("/{id}", summary="One dashboard", responses=responses(404, 422))
def get_dashboard(id: DashboardId, svc: Svc) -> dict:
    return _found(svc, id)


@router.put("/{id}", summary="Replace a dashboard's name and panels", openapi_extra=_BODY,
            responses=responses(400, 404, 409, 422))
def update_dashboard(id: DashboardId, svc: Svc, body: Any = Body(..., include_in_schema=False)) -> dict:
    _found(svc, id)
    doc = validate_dashboard(body, _exists(svc))
    _unique(svc, doc["name"], id)
    updated = svc.control.store.update_dashboard(id, doc)
    if updated is None:  # deleted meanwhile
        raise NotFound("id", f"no dashboard {id}")
    return updated


@router.delete("/{id}", status_code=204, summary="Delete a dashboard", response_class=Response,
               responses=responses(404, 422))
def delete_dashboard(id: DashboardId, svc: Svc) -> Response:
    if not svc.control.store.delete_dashboard(id):
        raise NotFound("id", f"no dashboard {id}")
    return Response(status_code=204)
