"""The one HTTP client of the fleetscope API, and the one exception type of its errors.

:class:`Api` knows the base URL (``/api/v1`` under the server's URL), the bearer token
(:func:`from_environment`: ``fleetscope --token``, ``$FLEETSCOPE_TOKEN``, or the one
``fleetscope login`` saved for that URL), whether and how to verify TLS, and the API's routes.
Every error answer becomes an :class:`ApiError` carrying the API's message and the field at
fault; transport failures stay :class:`httpx.HTTPError` so that the caller can name the URL.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import httpx

DEFAULT_URL = "http://127.0.0.1:7070"
API_PREFIX = "/api/v1"
TOKEN_ENV = "FLEETSCOPE_TOKEN"
CA_ENV = "FLEETSCOPE_CA_CERT"
TIMEOUT = 10.0  # seconds: connecting, and each answer (a streamed export waits as long as it takes)


class ApiError(Exception):
    """An error answer from the server, in the API's ``{"error": {...}}`` form.

    ``str()`` is ``<field>: <message>``, or just the message when no field is at fault.
    """

    def __init__(
        self, message: str, field: str | None = None, *, status: int | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.status = status
        self.code = code

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


def error_from_response(response: httpx.Response) -> ApiError:
    """The :class:`ApiError` an error response stands for.

    The API answers ``{"error": {"code", "message", "field"}}``. Anything else (a proxy's
    HTML page, a crash) still becomes a one-line error with the status, never a traceback.
    """
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return ApiError(
            str(error["message"]),
            str(error["field"]) if error.get("field") else None,
            status=response.status_code,
            code=error.get("code"),
        )
    text = " ".join(response.text.split())[:200]
    reason = response.reason_phrase or "error"
    message = f"the server answered {response.status_code} {reason}" + (f": {text}" if text else "")
    return ApiError(message, status=response.status_code)


class Api:
    """A small synchronous client of the fleetscope HTTP API at ``url``.

    Methods return the decoded JSON and raise :class:`ApiError` for error answers; transport
    failures are left as :class:`httpx.HTTPError` so that the caller can name the URL.
    ``token`` is sent as ``Authorization: Bearer <token>``; ``verify`` is httpx's: True (the
    system's CAs), False, or an SSL context (with the CA bundle to trust).
    """

    def __init__(
        self, url: str, *, token: str | None = None, verify: bool | ssl.SSLContext = True,
        timeout: float = TIMEOUT, transport: httpx.BaseTransport | None = None
    ) -> None:
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.Client(
            base_url=self.url + API_PREFIX, timeout=timeout, transport=transport, headers=headers,
            verify=verify,
        )

    @classmethod
    def from_environment(cls, url: str, **options: Any) -> Api:
        """A client of ``url`` with the caller's token: ``fleetscope --token`` (which sets
        ``$FLEETSCOPE_TOKEN``), else the environment, else the one saved by ``fleetscope login``;
        and ``$FLEETSCOPE_CA_CERT`` as the CA bundle for HTTPS, if set."""
        from fleetscope.cli import logins

        token = os.environ.get(TOKEN_ENV) or logins.saved_token(url)
        ca = os.environ.get(CA_ENV)
        options.setdefault("verify", ssl.create_default_context(cafile=ca) if ca else True)
        return cls(url, token=token, **options)

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def request(
        self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
        body: Any = None,
    ) -> Any:
        """Send one request; the decoded JSON answer, or None for an empty one (204)."""
        # Absent parameters are left out so that the server's defaults apply.
        query = {k: v for k, v in (params or {}).items() if v is not None}
        response = self._client.request(method, path, params=query, json=body)
        if response.is_error:
            raise error_from_response(response)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise ApiError(f"the answer to {method} {path} is not JSON") from None

    def metrics(self) -> list[dict]:
        return _field(self.request("GET", "/metrics"), "metrics", list)

    def instrumentations(self) -> list[dict]:
        return _field(self.request("GET", "/instrumentations"), "instrumentations", list)

    def dashboards(self) -> list[dict]:
        return _field(self.request("GET", "/dashboards"), "dashboards", list)

    def create_dashboard(self, body: Mapping[str, Any]) -> dict:
        return expect(self.request("POST", "/dashboards", body=dict(body)), dict)

    def hosts(self) -> list[dict]:
        return _field(self.request("GET", "/hosts"), "hosts", list)

    def instrumentation(self, inst_id: int) -> dict:
        return expect(self.request("GET", f"/instrumentations/{inst_id}"), dict)

    def create(self, body: Mapping[str, Any]) -> dict:
        return expect(self.request("POST", "/instrumentations", body=dict(body)), dict)

    def update(self, inst_id: int, body: Mapping[str, Any]) -> dict:
        return expect(
            self.request("PATCH", f"/instrumentations/{inst_id}", body=dict(body)), dict
        )

    def delete(self, inst_id: int) -> None:
        self.request("DELETE", f"/instrumentations/{inst_id}")

    def values(self, inst_id: int, **params: Any) -> Any:
        """``GET .../value``: one point, or a list of points when ``ndatapoints`` is given."""
        return self.request("GET", f"/instrumentations/{inst_id}/value", params=params)

    def compare(self, inst_id: int, **params: Any) -> dict:
        """``GET .../compare``: runs ``a_import`` or ``a_start``/``a_end``, likewise ``b``."""
        return expect(self.request("GET", f"/instrumentations/{inst_id}/compare", params=params), dict)

    def percentiles(self, inst_id: int, quantiles: Sequence[float], **params: Any) -> Any:
        q = ",".join(f"{x:g}" for x in quantiles)
        return self.request(
            "GET", f"/instrumentations/{inst_id}/percentiles", params={"q": q, **params}
        )

    def whoami(self) -> dict:
        return expect(self.request("GET", "/whoami"), dict)

    def tokens(self, kind: str = "api") -> list[dict]:
        return _field(self.request("GET", "/tokens", params={"kind": kind}), "tokens", list)

    def create_token(self, body: Mapping[str, Any]) -> dict:
        return expect(self.request("POST", "/tokens", body=dict(body)), dict)

    def revoke_token(self, token_id: int) -> dict:
        return expect(self.request("DELETE", f"/tokens/{token_id}"), dict)

    def tenants(self) -> list[dict]:
        return _field(self.request("GET", "/tenants"), "tenants", list)

    def tenant(self, name: str) -> dict:
        return expect(self.request("GET", f"/tenants/{name}"), dict)

    def put_tenant(self, body: Mapping[str, Any], create: bool) -> dict:
        if create:
            return expect(self.request("POST", "/tenants", body=dict(body)), dict)
        return expect(self.request("PUT", f"/tenants/{body['name']}", body=dict(body)), dict)

    def delete_tenant(self, name: str) -> None:
        self.request("DELETE", f"/tenants/{name}")

    def account_keys(self, login: str) -> list[dict]:
        return _field(self.request("GET", f"/accounts/{login}/keys"), "keys", list)

    def add_account_key(self, login: str, body: Mapping[str, Any]) -> dict:
        return expect(self.request("POST", f"/accounts/{login}/keys", body=dict(body)), dict)

    def delete_account_key(self, login: str, fingerprint: str) -> None:
        self.request("DELETE", f"/accounts/{login}/keys/{fingerprint}")

    def audit(self, since: float = 0.0, limit: int = 1000) -> list[dict]:
        return _field(self.request("GET", "/audit", params={"since": since, "limit": limit}), "audit", list)

    def alert_rules(self, instrumentation: int | None = None) -> list[dict]:
        return _field(self.request("GET", "/alerts/rules", params={"instrumentation": instrumentation}),
                      "rules", list)

    def create_alert_rule(self, body: Mapping[str, Any]) -> dict:
        return expect(self.request("POST", "/alerts/rules", body=dict(body)), dict)

    def delete_alert_rule(self, rule_id: int) -> None:
        self.request("DELETE", f"/alerts/rules/{rule_id}")

    def alerts(self, since: float | None = None) -> dict:
        return expect(self.request("GET", "/alerts", params={"since": since}), dict)

    def alert_history(self, since: float = 0.0, limit: int = 1000) -> list[dict]:
        return _field(self.request("GET", "/alerts/history", params={"since": since, "limit": limit}),
                      "events", list)

    def receivers(self) -> list[dict]:
        return _field(self.request("GET", "/alerts/receivers"), "receivers", list)

    def create_receiver(self, body: Mapping[str, Any]) -> dict:
        return expect(self.request("POST", "/alerts/receivers", body=dict(body)), dict)

    def delete_receiver(self, name: str) -> None:
        self.request("DELETE", f"/alerts/receivers/{name}")

    def store_stats(self) -> dict:
        return expect(self.request("GET", "/store/stats"), dict)

    def upload_import(self, fields: Mapping[str, Any], files: Sequence[tuple[str, Any]],
                      respond_async: bool = False) -> dict:
        """``POST /imports``: ``files`` as ``(name, binary file object)``, streamed (the server
        parses as long as it takes: no read timeout). ``respond_async``: the server answers
        once the upload is in, with the import loading (follow it with :meth:`get_import`)."""
        data = {k: str(v) for k, v in fields.items() if v is not None}
        parts = [("file", (name, f, "application/octet-stream")) for name, f in files]
        response = self._client.post("/imports", data=data, files=parts,
                                     headers={"prefer": "respond-async"} if respond_async else None,
                                     timeout=httpx.Timeout(TIMEOUT, read=None, write=None))
        if response.is_error:
            raise error_from_response(response)
        return expect(response.json(), dict)

    def get_import(self, import_id: int) -> dict:
        return expect(self.request("GET", f"/imports/{import_id}"), dict)

    def imports(self) -> list[dict]:
        return _field(self.request("GET", "/imports"), "imports", list)

    def delete_import(self, import_id: int) -> None:
        self.request("DELETE", f"/imports/{import_id}")

    @contextmanager
    def stream(self, path: str, *, params: Mapping[str, Any] | None = None) -> Iterator[Iterator[str]]:
        """``GET path`` read as text while it arrives (an export of weeks of per-second data
        never sits in memory whole); ApiError for an error answer."""
        query = {k: v for k, v in (params or {}).items() if v is not None}
        timeout = httpx.Timeout(self._client.timeout.connect, read=None)
        with self._client.stream("GET", path, params=query, timeout=timeout) as response:
            if response.is_error:
                response.read()
                raise error_from_response(response)
            yield response.iter_text()

    def heatmap(self, inst_id: int, **params: Any) -> dict:
        return expect(
            self.request(
                "GET", f"/instrumentations/{inst_id}/heatmap", params={"format": "json", **params}
            ),
            dict,
        )


def expect(obj: Any, kind: type) -> Any:
    if not isinstance(obj, kind):
        raise ApiError(f"unexpected answer from the server: expected a JSON {kind.__name__}")
    return obj


def _field(obj: Any, name: str, kind: type) -> Any:
    return expect(expect(obj, dict).get(name), kind)


def as_points(obj: Any) -> list[dict]:
    """The list of points of a value or percentiles answer (one object or an array of them)."""
    if isinstance(obj, dict):
        return [obj]
    if isinstance(obj, list):
        return [p for p in obj if isinstance(p, dict)]
    raise ApiError("unexpected answer from the server: expected data points")
