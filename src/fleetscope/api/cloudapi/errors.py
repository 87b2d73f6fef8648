"""Errors as CloudAPI answered them: ``{"code": "ResourceNotFound", "message": "..."}`` with
restify's statuses (an invalid argument is 409, as restify's ``InvalidArgumentError``).

node-smartdc prints ``code`` and ``message`` (``sdc-getinstrumentation: error
(ResourceNotFound): ...``), so every refusal of these routes has both."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import Request
from fastapi.responses import JSONResponse

from fleetscope.model.errors import InputError

INVALID_ARGUMENT = "InvalidArgument"
MISSING_PARAMETER = "MissingParameter"
NOT_FOUND = "ResourceNotFound"
INVALID_CREDENTIALS = "InvalidCredentials"
NOT_AUTHORIZED = "NotAuthorized"
THROTTLED = "RequestThrottled"

_BY_STATUS = {401: INVALID_CREDENTIALS, 403: NOT_AUTHORIZED, 404: NOT_FOUND, 429: THROTTLED}


class CloudApiError(Exception):
    """A refusal in the original API's shape."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}

    def to_json(self) -> dict:
        return {"code": self.code, "message": self.message}


def invalid(message: str) -> CloudApiError:
    return CloudApiError(409, INVALID_ARGUMENT, message)


def not_found(message: str) -> CloudApiError:
    return CloudApiError(404, NOT_FOUND, message)


def unauthorized(message: str) -> CloudApiError:
    return CloudApiError(401, INVALID_CREDENTIALS, message)


def from_input_error(exc: InputError) -> CloudApiError:
    """fleetscope's own refusal (naming a field) as the original's: an invalid argument is 409."""
    message = f"{exc.field}: {exc.message}" if exc.field else exc.message
    status = exc.status if exc.status in _BY_STATUS else 409
    return CloudApiError(status, _BY_STATUS.get(exc.status, INVALID_ARGUMENT), message)


@contextmanager
def translated() -> Iterator[None]:
    """Turn fleetscope's :class:`InputError` raised inside into :class:`CloudApiError`."""
    try:
        yield
    except InputError as exc:
        raise from_input_error(exc) from None


async def handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, CloudApiError)
    challenge = 'Signature realm="fleetscope",headers="date"'
    headers = {**exc.headers, **({"www-authenticate": challenge} if exc.status == 401 else {})}
    return JSONResponse(exc.to_json(), status_code=exc.status, headers=headers)
