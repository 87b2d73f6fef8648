"""``/api/v1/dashboards``: named arrangements of panels.

The documents are checked by :mod:`fleetscope.api.dashboards`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Response

from fleetscope.api import scope
from fleetscope.api.audit import audit
from fleetscope.api.auth import Operator, Viewer
from fleetscope.api.dashboards import DASHBOARD_SCHEMA, validate_dashboard
from fleetscope.api.errors import responses
from fleetscope.api.params import DashboardId
from fleetscope.api.services import Services, Svc
from fleetscope.model import access
from fleetscope.model.access import Caller
from fleetscope.model.errors import InputError, NotFound

router = APIRouter(prefix="/api/v1/dashboards", tags=["dashboards"])
_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": DASHBOARD_SCHEMA}}}}


def _exists(svc: Services, caller: Caller):
    """Whether a panel's instrumentation exists for ``caller`` (another tenant's does not)."""
    def exists(inst_id: int) -> bool:
        inst = svc.control.store.get_instrumentation(inst_id)
        return inst is not None and scope.visible(caller, inst)
    return exists


def _visible(caller: Caller) -> Any:
    return lambda doc: access.may_see(caller, doc.get("tenant"))


def _unique(svc: Services, caller: Caller, name: str, except_id: int | None = None) -> None:
    """Names are unique among the dashboards the caller can see (tenants have their own)."""
    for d in filter(_visible(caller), svc.control.store.list_dashboards()):
        if d["name"] == name and d["id"] != except_id and d.get("tenant") == caller.tenant_name:
            raise InputError("name", f"dashboard {d['id']} is already called {name!r}", 409)


def _found(svc: Services, caller: Caller, dashboard_id: int) -> dict:
    doc = svc.control.store.get_dashboard(dashboard_id)
    if doc is None or not _visible(caller)(doc):
        raise NotFound("id", f"no dashboard {dashboard_id}")
    return doc


@router.get("", summary="Every dashboard (a tenant's own)")
def list_dashboards(svc: Svc, caller: Viewer) -> dict:
    return {"dashboards": list(filter(_visible(caller), svc.control.store.list_dashboards()))}


@router.post("", status_code=201, summary="Create a dashboard", openapi_extra=_BODY,
             responses=responses(400, 409, 422))
def create_dashboard(svc: Svc, caller: Operator, body: Any = Body(..., include_in_schema=False)) -> dict:
    doc = validate_dashboard(body, _exists(svc, caller))
    _unique(svc, caller, doc["name"])
    made = svc.control.store.create_dashboard({**doc, "tenant": caller.tenant_name})
    audit(svc, caller, "dashboard.create", f"dashboard {made['id']}", {"name": doc["name"]})
    return made


@router.get("/{id}", summary="One dashboard", responses=responses(404, 422))
def get_dashboard(id: DashboardId, svc: Svc, caller: Viewer) -> dict:
    return _found(svc, caller, id)


@router.put("/{id}", summary="Replace a dashboard's name and panels", openapi_extra=_BODY,
            responses=responses(400, 404, 409, 422))
def update_dashboard(id: DashboardId, svc: Svc, caller: Operator,
                     body: Any = Body(..., include_in_schema=False)) -> dict:
    current = _found(svc, caller, id)
    doc = validate_dashboard(body, _exists(svc, caller))
    _unique(svc, caller, doc["name"], id)
    updated = svc.control.store.update_dashboard(id, {**doc, "tenant": current.get("tenant")})
    if updated is None:  # deleted meanwhile
        raise NotFound("id", f"no dashboard {id}")
    audit(svc, caller, "dashboard.update", f"dashboard {id}", {"name": doc["name"]})
    return updated


@router.delete("/{id}", status_code=204, summary="Delete a dashboard", response_class=Response,
               responses=responses(404, 422))
def delete_dashboard(id: DashboardId, svc: Svc, caller: Operator) -> Response:
    _found(svc, caller, id)
    if not svc.control.store.delete_dashboard(id):
        raise NotFound("id", f"no dashboard {id}")
    audit(svc, caller, "dashboard.delete", f"dashboard {id}")
    return Response(status_code=204)
