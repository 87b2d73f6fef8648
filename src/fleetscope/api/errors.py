"""Every error the API answers is JSON ``{"error": {"code", "message", "field"}}``, never a traceback."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Literal

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException
from starlette.routing import Match

from fleetscope.api.jsonbody import is_json_type
from fleetscope.model.errors import InputError

log = logging.getLogger(__name__)


class ErrorDetail(BaseModel):
    code: Literal["bad_request", "unauthorized", "forbidden", "not_found", "conflict", "invalid",
                  "too_many_requests", "internal"] = Field(
        description="bad_request (400), unauthorized (401), forbidden (403), not_found (404), "
                    "conflict (409), invalid (422), too_many_requests (429)")
    message: str = Field(description="what is wrong, for people")
    field: str | None = Field(description="the parameter or body field at fault (panels[2].options.width)")


class ErrorBody(BaseModel):
    """Every error the API answers."""

    error: ErrorDetail


_MEANING = {
    400: "malformed: the body is not JSON, or not a JSON object",
    401: "no valid token: missing, wrong, expired or revoked (WWW-Authenticate: Bearer)",
    403: "the token lacks the role this needs (the message names it), or a cookie write from "
         "another origin",
    404: "no such resource (the field names the id)",
    405: "method not allowed (the Allow header lists those that are)",
    409: "conflict with the resource's state (e.g. a name in use, no numeric decomposition)",
    411: "the request must say its length (Content-Length): uploads are bounded",
    413: "the upload is larger than the server takes (the message says how large it may be)",
    422: "well-formed but invalid (the field names the parameter or body field)",
    429: "too many: failed logins from this address, or imports this server is reading (the message "
         "says which): try again later",
}


def responses(*codes: int, json_route: bool = True) -> dict[int | str, dict]:
    """OpenAPI ``responses`` for the error statuses a route answers, each with :class:`ErrorBody`.

    ``json_route=False`` for a route whose own answers are not JSON (an event stream): FastAPI
    would file its errors under the route's media type, so they name the schema themselves.
    """
    if json_route:
        return {code: {"model": ErrorBody, "description": _MEANING[code]} for code in codes}
    ref = {"$ref": f"#/components/schemas/{ErrorBody.__name__}"}
    return {code: {"description": _MEANING[code], "content": {"application/json": {"schema": ref}}}
            for code in codes}


def error_response(status: int, message: str, field: str | None = None) -> JSONResponse:
    return JSONResponse(InputError(field, message, status).to_json(), status_code=status)


async def _input_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, InputError)
    headers = {"www-authenticate": "Bearer"} if exc.status == 401 else None
    return JSONResponse(exc.to_json(), status_code=exc.status, headers=headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = exc.errors()
    first = problems[0] if problems else {"loc": (), "msg": "invalid request", "type": ""}
    loc = [str(x) for x in first.get("loc", ())]
    if first.get("type") == "json_invalid":
        return error_response(400, f"the body is not valid JSON: {first.get('msg')}", "body")
    if loc and loc[0] == "body" and len(loc) == 1:
        content_type = request.headers.get("content-type")
        if first.get("type") == "missing":
            return error_response(400, "a JSON object is required as the body", "body")
        if isinstance(first.get("input"), bytes | str) and not is_json_type(content_type):
            return error_response(400, f"the body is not JSON (Content-Type: {content_type or 'none'}); "
                                  "send a JSON object", "body")
        return error_response(400, "the body must be a JSON object", "body")
    # loc is ("query" | "path" | "body", name, ...): name the parameter or top-level body field.
    field = loc[1] if len(loc) > 1 else (loc[0] if loc else None)
    return error_response(422, str(first.get("msg", "invalid")), field)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    messages = {404: "no such resource", 405: "method not allowed"}
    response = error_response(exc.status_code, str(exc.detail or messages.get(exc.status_code, "error")))
    response.headers.update(exc.headers or {})
    if exc.status_code == 405:
        response.headers["allow"] = ", ".join(_allowed(request))
    return response


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def _allowed(request: Request) -> list[str]:
    """Every method some route answers at this path. Starlette's own Allow names only the
    methods of the first route whose path matches (GET of ``GET /x`` and ``POST /x``), so ask
    every route, through the public ``matches``, whether it fully matches each method."""
    return [method for method in _METHODS
            if any(route.matches({**request.scope, "method": method})[0] == Match.FULL
                   for route in request.app.router.routes)]


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return JSONResponse({"error": {"code": "internal", "message": "internal error (logged on the server)",
                                   "field": None}}, status_code=500)


def install(app: FastAPI) -> None:
    app.add_exception_handler(InputError, _input_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)


def document(routers: Iterable[APIRouter]) -> None:
    """Declare, on every route of ``routers`` that takes parameters or a body and does not say
    already, the 422 (and for a body the 400) it can answer, in the shape the server sends
    (FastAPI would otherwise document its own validation shape, which the server never sends).
    Call it before the routers are included in an app."""
    for route in (r for router in routers for r in router.routes):
        if not isinstance(route, APIRoute):
            continue
        d = route.dependant
        has_params = any(x.query_params or x.path_params or x.header_params or x.body_params
                         for x in (d, *d.dependencies))
        events = getattr(route.response_class, "media_type", None) == "text/event-stream"
        wanted = ([422] if has_params else []) + ([400] if d.body_params else [])
        missing = [code for code in wanted if code not in route.responses]
        if missing:
            route.responses = {**route.responses, **responses(*missing, json_route=not events)}
