"""``/api/v1/annotations``: marks on the time axis, drawn on every panel of the same time.

``POST`` (operator) keeps one: ``{"text": "deploy api v42", "time": 1765000000, "end_time":
null, "tags": ["deploy"]}`` (``time`` defaults to now; ``end_time`` makes it a window).
``GET ?start_time=&end_time=`` (viewer) lists those of the range with the alert state changes
of the range (``"kind": "alert"``) and the imported performance logs it overlaps (``"kind":
"import"``, their time as a window), each as ``{id, kind, time, end_time, text, tags}``; a
tenant sees only its own annotations, the alerts of its own instrumentations
(:func:`fleetscope.model.access.may_see`) and its own imports (:func:`scope.imports_for`).
``DELETE /{id}`` (operator) removes one of the caller's own.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query, Response

from fleetscope.api.annotations import visible_annotations
from fleetscope.api.audit import audit
from fleetscope.api.auth import Operator, Viewer
from fleetscope.api.errors import responses
from fleetscope.api.params import MAX_TIME, known_id
from fleetscope.api.services import Svc
from fleetscope.model.errors import InputError, NotFound

router = APIRouter(prefix="/api/v1/annotations", tags=["annotations"])

MAX_TEXT = 500
MAX_TAGS = 10
MAX_TAG = 64
EpochSeconds = Annotated[float, Query(ge=0, le=MAX_TIME, description="epoch seconds")]
_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["text"], "additionalProperties": False,
    "properties": {
        "text": {"type": "string", "minLength": 1, "maxLength": MAX_TEXT},
        "time": {"type": "number", "minimum": 0, "maximum": MAX_TIME,
                 "description": "epoch seconds (default now)"},
        "end_time": {"type": ["number", "null"], "minimum": 0, "maximum": MAX_TIME,
                     "description": "epoch seconds: a window that ends then"},
        "tags": {"type": "array", "maxItems": MAX_TAGS, "uniqueItems": True,
                 "items": {"type": "string", "minLength": 1, "maxLength": MAX_TAG}}}}}}}}


async def _annotation_id(id: Annotated[int, Path(description="an annotation id")]) -> int:
    return known_id(id, "annotation")


def _time(value: object, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= MAX_TIME:
        raise InputError(field, f"must be epoch seconds between 0 and {MAX_TIME}")
    return float(value)


def validate_annotation(body: object, now: float) -> dict:
    """The annotation ``body`` describes, or InputError naming the field at fault."""
    if not isinstance(body, dict):
        raise InputError("body", "must be a JSON object", 400)
    unknown = set(body) - {"text", "time", "end_time", "tags"}
    if unknown:
        raise InputError(sorted(unknown)[0], "unknown field (allowed: end_time, tags, text, time)")
    text = body.get("text")
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_TEXT:
        raise InputError("text", f"is required: 1 to {MAX_TEXT} characters")
    at = _time(body.get("time", now), "time")
    end = body.get("end_time")
    if end is not None and _time(end, "end_time") <= at:
        raise InputError("end_time", "must be after time")
    tags = body.get("tags", [])
    if not isinstance(tags, list) or len(tags) > MAX_TAGS or len(set(map(str, tags))) != len(tags) or not all(
            isinstance(t, str) and 0 < len(t) <= MAX_TAG for t in tags):
        raise InputError("tags", f"must be at most {MAX_TAGS} different strings of 1 to {MAX_TAG} characters")
    return {"time": at, "end_time": None if end is None else float(end), "text": text.strip(), "tags": tags}


@router.post("", status_code=201, summary="Keep an annotation (a deploy, a maintenance window)",
             openapi_extra=_BODY, responses=responses(400, 422))
def create_annotation(svc: Svc, caller: Operator, body: Any = Body(..., include_in_schema=False)) -> dict:
    doc = validate_annotation(body, time.time())
    made = svc.control.store.add_annotation(caller.tenant_name or "", {**doc, "who": caller.who})
    audit(svc, caller, "annotation.create", f"annotation {made['id']}", {"text": doc["text"]})
    return {**made, "kind": "annotation"}


@router.get("", summary="Annotations and alert state changes of a range, oldest first",
            responses=responses(422))
def list_annotations(svc: Svc, caller: Viewer, start_time: EpochSeconds, end_time: EpochSeconds) -> dict:
    if end_time <= start_time:
        raise InputError("end_time", "must be after start_time")
    return {"annotations": visible_annotations(svc, caller, start_time, end_time)}


@router.delete("/{id}", status_code=204, summary="Delete an annotation", responses=responses(404, 422))
def delete_annotation(svc: Svc, caller: Operator, id: Annotated[int, Depends(_annotation_id)]) -> Response:
    owner = None if caller.tenant is None else caller.tenant_name
    if not svc.control.store.delete_annotation(id, owner):
        raise NotFound("id", f"no annotation {id}")
    audit(svc, caller, "annotation.delete", f"annotation {id}")
    return Response(status_code=204)
