"""Every error the API answers is JSON ``{"error": {"code", "message", "field"}}``, never a traceback."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from fleetscope.model.errors import InputError

log = logging.getLogger(__name__)


def error_response(status: int, message: str, field: str | None = None) -> JSONResponse:
    return JSONResponse(InputError(field, message, status).to_json(), status_code=status)


async def _input_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, InputError)
    return JSONResponse(exc.to_json(), status_code=exc.status)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = exc.errors()
    first = problems[0] if problems else {"loc": (), "msg": "invalid request", "type": ""}
    loc = [str(x) for x in first.get("loc", ())]
    if first.get("type") == "json_invalid":
        return error_response(400, f"the body is not valid JSON: {first.get('msg')}", "body")
    if loc and loc[0] == "body" and len(loc) == 1:
        return error_response(400, "the body must be a JSON object", "body")
    # loc is ("query" | "path" | "body", name, ...): name the parameter or top-level body field.
    field = loc[1] if len(loc) > 1 else (loc[0] if loc else None)
    return error_response(422, str(first.get("msg", "invalid")), field)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    messages = {404: "no such resource", 405: "method not allowed"}
    return error_response(exc.status_code, str(exc.detail or messages.get(exc.status_code, "error")))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return JSONResponse({"error": {"code": "internal", "message": "internal error (logged on the server)",
                                   "field": None}}, status_code=500)


def install(app: FastAPI) -> None:
    app.add_exception_handler(InputError, _input_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
