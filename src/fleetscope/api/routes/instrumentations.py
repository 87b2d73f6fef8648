"""``/api/v1/instrumentations``: create, validate, read, change and delete instrumentations."""

from __future__ import annotations

from fastapi import APIRouter, Query, Response

from fleetscope.api import scope
from fleetscope.api.audit import audit
from fleetscope.api.auth import Operator, Viewer
from fleetscope.api.bodies import InstrumentationCreate, InstrumentationUpdate
from fleetscope.api.errors import responses
from fleetscope.api.params import InstId
from fleetscope.api.services import Services, Svc
from fleetscope.model import predicate as predicates
from fleetscope.model.access import Caller
from fleetscope.model.instrumentation import Instrumentation

router = APIRouter(prefix="/api/v1/instrumentations", tags=["instrumentations"])


def shown(svc: Services, caller: Caller, inst: Instrumentation) -> dict:
    """An instrumentation as the API shows it: its definition, and the warnings its agents
    report now (paused over its time budget, a breakdown folded, a source failing), by host."""
    return {**inst.to_json(), "warnings": scope.warnings_for(caller, svc.control.warnings_of(inst.id))}
ONE = "/{id:idseg}"  # not /validate, which is a route of its own


@router.get("", summary="Every instrumentation (a tenant's own; operators may filter by tenant)")
def list_instrumentations(svc: Svc, caller: Viewer, tenant: str | None = Query(
        None, description="only this tenant's (operators; a tenant always gets its own)")) -> dict:
    wanted = scope.tenant_filter(caller, tenant)
    insts = svc.listed(caller)
    if wanted is not None:
        insts = [i for i in insts if i.tenant == wanted]
    return {"instrumentations": [shown(svc, caller, i) for i in insts]}


@router.post("", status_code=201, summary="Create an instrumentation",
             responses=responses(400, 404, 409, 422))
async def create_instrumentation(body: InstrumentationCreate, svc: Svc, caller: Operator) -> dict:
    inst = await svc.control.create(body.model_dump(exclude_none=True), caller)
    audit(svc, caller, "instrumentation.create", f"instrumentation {inst.id}",
          {"metric": inst.metric, "predicate": inst.predicate, "decomposition": list(inst.decomposition)})
    return shown(svc, caller, inst)


@router.post("/validate", summary="Check a create body without creating anything",
             responses=responses(400, 404, 409, 422))
def validate_instrumentation(body: InstrumentationCreate, svc: Svc, caller: Operator) -> dict:
    spec = svc.control.spec_for(body.model_dump(exclude_none=True), caller)
    return {**spec, "metric": f"{spec['module']}.{spec['stat']}",
            "predicate_text": predicates.to_text(spec["predicate"]) if spec["predicate"] else ""}


@router.get(ONE, summary="One instrumentation", responses=responses(404, 422))
def get_instrumentation(id: InstId, svc: Svc, caller: Viewer) -> dict:
    return shown(svc, caller, svc.get(caller, id))


@router.patch(ONE, summary="Change retention, idle_max, persist or history",
              responses=responses(400, 404, 422))
async def update_instrumentation(id: InstId, body: InstrumentationUpdate, svc: Svc, caller: Operator) -> dict:
    svc.get(caller, id)
    changes = body.model_dump(exclude_none=True)
    inst = await svc.control.update(id, changes, caller)
    audit(svc, caller, "instrumentation.update", f"instrumentation {id}", changes)
    return shown(svc, caller, inst)


@router.delete(ONE, status_code=204, summary="Delete an instrumentation", response_class=Response,
               responses=responses(404, 422))
async def delete_instrumentation(id: InstId, svc: Svc, caller: Operator) -> Response:
    inst = svc.get(caller, id)
    await svc.control.delete(id)
    audit(svc, caller, "instrumentation.delete", f"instrumentation {id}", {"metric": inst.metric})
    return Response(status_code=204)
