"""Who is calling: bearer tokens and the dashboard's session cookie, turned into a
:class:`~fleetscope.model.access.Caller`, and the role each route needs.

A route declares its role by the type of one parameter::

    def list_instrumentations(caller: Viewer) -> ...: ...
    def delete_instrumentation(id: int, caller: Operator) -> ...: ...

and reads through :mod:`fleetscope.api.scope` with that caller, which is what keeps tenants
apart. ``tests/test_security.py`` walks every route of the OpenAPI document and checks that
each one refuses a caller without a token, unless it is in :data:`PUBLIC_PATHS`.

Tokens are looked up by their SHA-256 (the store keeps nothing else of them) and cached for
:data:`CACHE_SECONDS`, so a revocation made on another API server takes effect within that
time (at once on the server that made it). Failed attempts are counted per client address;
past :data:`FAILURES_ALLOWED` in :data:`FAILURE_WINDOW` seconds that address is answered 429
until the window has passed. No token ever reaches a log line, an error message or the audit
log: they name tokens by id and name.
"""

from __future__ import annotations

import base64
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request

from fleetscope.model import access
from fleetscope.model.access import Caller, Tenant, TokenInfo
from fleetscope.model.errors import InputError

SESSION_COOKIE = "fleetscope_session"
SESSION_SECONDS = 7 * 86400
LOGIN_LINK_SECONDS = 24 * 3600  # the one-time link `serve` prints
CACHE_SECONDS = 5.0
FAILURES_ALLOWED = 10
FAILURE_WINDOW = 60.0
TRACKED_ADDRESSES = 10_000  # the failure counter forgets the oldest addresses past this
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Reachable without a token: the health check, the login exchange, and the dashboard's own
# files (which hold no data; the page asks for a login when the API answers 401).
PUBLIC_PATHS = frozenset({"/healthz", "/login", "/api/v1/login", "/"})
PUBLIC_PREFIXES = ("/web/",)


def unauthorized(message: str) -> InputError:
    return InputError("authorization", message, 401)


@dataclass(frozen=True)
class AuthConfig:
    enabled: bool = True
    failures_allowed: int = FAILURES_ALLOWED  # per client address in FAILURE_WINDOW seconds


class FailureLimiter:
    """Counts failed authentications per client address in a sliding window."""

    def __init__(self, allowed: int = FAILURES_ALLOWED, window: float = FAILURE_WINDOW) -> None:
        self.allowed, self.window = allowed, window
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def _recent(self, address: str, now: float) -> deque[float]:
        times = self._failures.setdefault(address, deque())
        while times and times[0] <= now - self.window:
            times.popleft()
        return times

    def check(self, address: str, now: float) -> None:
        with self._lock:
            if len(self._recent(address, now)) >= self.allowed:
                raise InputError("authorization", f"too many failed attempts from {address}: "
                                 f"try again in {self.window:.0f} s", 429)

    def failed(self, address: str, now: float) -> None:
        with self._lock:
            self._recent(address, now).append(now)
            self._failures.move_to_end(address)
            while len(self._failures) > TRACKED_ADDRESSES:
                self._failures.popitem(last=False)


class Authenticator:
    """Turns requests into callers, over the store's tokens and tenants."""

    def __init__(self, store: Any, config: AuthConfig) -> None:
        self.store = store
        self.config = config
        self.limiter = FailureLimiter(config.failures_allowed)
        self._cache: dict[str, tuple[float, TokenInfo, Tenant | None]] = {}
        self._lock = threading.Lock()

    # -- tokens -----------------------------------------------------------------------------------

    def issue(self, name: str, role: str, tenant: str | None = None, kind: str = "api",
              expires_in: float | None = None) -> tuple[str, TokenInfo]:
        """A new token and what the store keeps of it; the secret is returned once, here."""
        access.check_role(role)
        secret = access.new_token()
        expires = time.time() + expires_in if expires_in else None
        info = self.store.create_token(name, role, tenant, kind, access.token_hash(secret), expires)
        return secret, info

    def forget(self, token_id: int | None = None) -> None:
        """Drop cached lookups (of one token, or all): a revocation on this server is immediate."""
        with self._lock:
            if token_id is None:
                self._cache.clear()
            else:
                self._cache = {h: v for h, v in self._cache.items() if v[1].id != token_id}

    def _lookup(self, secret: str, now: float) -> tuple[TokenInfo, Tenant | None] | None:
        digest = access.token_hash(secret)
        with self._lock:
            hit = self._cache.get(digest)
        if hit and now - hit[0] < CACHE_SECONDS:
            info, tenant = hit[1], hit[2]
        else:
            info = self.store.token_by_hash(digest)
            if info is None:
                return None
            tenant = self.store.get_tenant(info.tenant) if info.tenant else None
            if info.tenant and tenant is None:
                return None  # its tenant was deleted
            with self._lock:
                self._cache[digest] = (now, info, tenant)
        if not info.valid_at(now) or info.kind == "login":
            return None  # login links are for /login only
        return info, tenant

    def caller_from(self, secret: str, address: str) -> Caller:
        """The caller a token stands for; 401 (or 429 after too many failures) otherwise."""
        now = time.time()
        self.limiter.check(address, now)
        found = self._lookup(secret, now) if access.looks_like_token(secret) else None
        if found is None:
            self.limiter.failed(address, now)
            raise unauthorized("the token is not valid (wrong, expired or revoked)")
        info, tenant = found
        return Caller(info.role, tenant, info, address)

    def take_login_link(self, secret: str, address: str) -> tuple[str, TokenInfo]:
        """Exchange a one-time login token (or any valid token) for a new session token."""
        now = time.time()
        self.limiter.check(address, now)
        info = None
        if access.looks_like_token(secret):
            info = self.store.take_token(access.token_hash(secret), "login", now)
            if info is None:
                found = self._lookup(secret, now)
                info = found[0] if found else None
        if info is None:
            self.limiter.failed(address, now)
            raise unauthorized("the login link or token is not valid (wrong, used, expired or revoked)")
        return self.issue(f"session of {info.name}", info.role, info.tenant, "session", SESSION_SECONDS)

    # -- requests ---------------------------------------------------------------------------------

    def caller(self, request: Request) -> Caller:
        address = request.client.host if request.client else ""
        if not self.config.enabled:
            return Caller(access.ADMIN, None, None, address)
        header = request.headers.get("authorization")
        if header is not None:
            scheme, _, secret = header.partition(" ")
            if scheme.lower() == "basic" and request.url.path.startswith(BASIC_PREFIX):
                secret = basic_password(secret)
            elif scheme.lower() != "bearer" or not secret.strip():
                raise unauthorized("use 'Authorization: Bearer <token>'")
            return self.caller_from(secret.strip(), address)
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            caller = self.caller_from(cookie, address)
            if request.method not in SAFE_METHODS:
                check_origin(request)
            return caller
        raise unauthorized("a token is needed: 'Authorization: Bearer <token>' "
                           "(fleetscope token create), or log in to the dashboard")


# Prometheus' clients (promtool, older Grafana set-ups) send a token only as a basic-auth password:
# the Prometheus API takes the token there too, whatever the user name.
BASIC_PREFIX = "/prometheus/"


def basic_password(credentials: str) -> str:
    """The password of HTTP basic credentials (``base64(user:password)``)."""
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        raise unauthorized("malformed basic credentials") from None
    password = decoded.partition(":")[2]
    if not password:
        raise unauthorized("basic credentials need the token as password")
    return password


def check_origin(request: Request) -> None:
    """A write made with the session cookie must come from the dashboard's own origin (the
    cookie is SameSite=Strict too; this also covers browsers that predate it)."""
    origin = request.headers.get("origin")
    own = f"{request.url.scheme}://{request.headers.get('host', '')}"
    if origin != own:
        raise InputError("origin", f"a write with the session cookie must come from {own}", 403)


def require(role: str):
    """A FastAPI dependency: the caller, who must have at least ``role``."""
    access.check_role(role)

    def dependency(request: Request) -> Caller:
        auth: Authenticator = request.app.state.auth
        caller = auth.caller(request)
        if not access.allows(caller.role, role):
            raise InputError("authorization", f"this needs the role {role!r} (the token has {caller.role!r})",
                             403)
        request.state.caller = caller
        return caller

    dependency.required_role = role  # type: ignore[attr-defined]  # read by the route walker test
    return Depends(dependency)


def required_role(route: Any) -> str | None:
    """The role a route declared (through a :data:`Viewer`, :data:`Operator` or :data:`Admin`
    parameter), or None for a public one."""
    for dep in getattr(getattr(route, "dependant", None), "dependencies", []):
        role = getattr(dep.call, "required_role", None)
        if role is not None:
            return role
    return None


def document(app: Any, routers: Iterable[Any]) -> None:
    """Declare the bearer and session schemes in ``app``'s OpenAPI document and, on each route
    of ``routers`` that needs a role, its 401 and 403 answers and the role (``x-role``), so that
    clients know before they ask. Call it before the routers are included."""
    from fleetscope.api.errors import responses

    for route in (r for router in routers for r in router.routes):
        role = required_role(route)
        if role is None:
            continue
        # An event stream's own errors are JSON all the same (errors.responses explains why).
        events = getattr(route.response_class, "media_type", None) == "text/event-stream"
        route.responses = {**responses(401, 403, 429, json_route=not events), **route.responses}
        route.openapi_extra = {**(route.openapi_extra or {}), "x-role": role,
                               "security": [{"bearer": []}, {"session": []}]}
    original = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = original()
            schema.setdefault("components", {})["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "a token from `fleetscope token create`"},
                "session": {"type": "apiKey", "in": "cookie", "name": SESSION_COOKIE,
                            "description": "the dashboard's session (POST /api/v1/login)"},
            }
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi


Viewer = Annotated[Caller, require(access.VIEWER)]
Operator = Annotated[Caller, require(access.OPERATOR)]
Admin = Annotated[Caller, require(access.ADMIN)]
