"""The one error type for bad input, everywhere in fleetscope."""

from __future__ import annotations


class InputError(ValueError):
    """Bad input: names the field at fault and the reason.

    ``status`` is the HTTP status the API answers with: 400 (malformed), 401 (no valid
    token), 403 (a role or origin the request lacks), 404 (unknown id), 409 (conflict),
    422 (well-formed but invalid), 429 (too many failed logins).
    """

    def __init__(self, field: str | None, message: str, status: int = 422) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message
        self.status = status

    def to_json(self) -> dict:
        code = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                409: "conflict", 429: "too_many_requests"}.get(self.status, "invalid")
        return {"error": {"code": code, "message": self.message, "field": self.field}}


class NotFound(InputError):
    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(field, message, status=404)
