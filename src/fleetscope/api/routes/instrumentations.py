"""``/api/v1/instrumentations``: create, validate, read, change and delete instrumentations."""

from __future__ import annotations

from fastapi import APIRouter, Response

from fleetscope.api.bodies import InstrumentationCreate, InstrumentationUpdate
from fleetscope.api.errors import responses
from fleetscope.api.params import InstId
from fleetscope.api.services import Svc
from fleetscope.model import predicate as predicates
from fleetscope.model.instrumentation import validate_spec

router = APIRouter(prefix="/api/v1/instrumentations", tags=["instrumentations"])
ONE = "/{id:idseg}"  # not /validate, which is a route of its own


@router.get("", summary="Every instrumentation")
def list_instrumentations(svc: Svc) -> dict:
    return {"instrumentations": [i.to_json() for i in svc.control.list()]}


@router.post("", status_code=201, summary="Create an instrumentation", responses=responses(400, 404, 422))
async def create_instrumentation(body: InstrumentationCreate, svc: Svc) -> dict:
    inst = await svc.control.create(body.model_dump(exclude_none=True))
    return inst.to_json()


@router.post("/validate", summary="Check a create body without creating anything",
             responses=responses(400, 404, 422))
def validate_instrumentation(body: InstrumentationCreate, svc: Svc) -> dict:
    spec = validate_spec(body.model_dump(exclude_none=True), svc.control.catalog)
    return {**spec, "metric": f"{spec['module']}.{spec['stat']}",
            "predicate_text": predicates.to_text(spec["predicate"]) if spec["predicate"] else ""}


@router.get(ONE, summary="One instrumentation", responses=responses(404, 422))
def get_instrumentation(id: InstId, svc: Svc) -> dict:
    return svc.control.get(id).to_json()


@router.patch(ONE, summary="Change retention, idle_max, persist or history",
              responses=responses(400, 404, 422))
async def update_instrumentation(id: InstId, body: InstrumentationUpdate, svc: Svc) -> dict:
    return (await svc.control.update(id, body.model_dump(exclude_none=True))).to_json()


@router.delete(ONE, status_code=204, summary="Delete an instrumentation", response_class=Response,
               responses=responses(404, 422))
async def delete_instrumentation(id: InstId, svc: Svc) -> Response:
    await svc.control.delete(id)
    return Response(status_code=204)
