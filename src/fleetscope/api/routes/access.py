"""Who may ask what: logging in and out, tokens, tenants and the audit log.

``/login`` and ``POST /api/v1/login`` are public (they take a token); ``whoami`` needs any
valid caller; everything else here is for admins. A token's secret appears once, in the
answer that creates it; the audit log names tokens by name and id.
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import RedirectResponse

from fleetscope.api import scope
from fleetscope.api.audit import audit
from fleetscope.api.auth import SESSION_COOKIE, SESSION_SECONDS, Admin, Authenticator, Viewer
from fleetscope.api.bodies import AccountKeyBody, Login, TenantBody, TokenCreate
from fleetscope.api.errors import responses
from fleetscope.api.params import InstId
from fleetscope.api.services import Svc
from fleetscope.model import access, sshkeys
from fleetscope.model.access import Caller, Quotas, Tenant
from fleetscope.model.errors import InputError, NotFound
from fleetscope.model.tiers import parse_tier_retention
from fleetscope.model.types import parse_duration

router = APIRouter(tags=["access"])
MAX_TOKEN_LIFETIME = 10 * 366 * 86400
AUDIT_ROWS = 10_000  # at most this many rows in one answer


def _address(request: Request) -> str:
    return request.client.host if request.client else ""


def _auth(request: Request) -> Authenticator:
    return request.app.state.services.auth


def _session_cookie(response: Response, request: Request, secret: str) -> None:
    response.set_cookie(SESSION_COOKIE, secret, max_age=SESSION_SECONDS, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https", path="/")


@router.get("/login", include_in_schema=False)
def login_link(request: Request, svc: Svc, token: str = "") -> Response:
    """The one-time link `fleetscope serve` prints: sets the session cookie, then the dashboard."""
    secret, info = _auth(request).take_login_link(token, _address(request))
    response = RedirectResponse("/", status_code=303)
    _session_cookie(response, request, secret)
    audit(svc, Caller(info.role, None, info, _address(request)), "login", f"token {info.id}")
    return response


@router.post("/api/v1/login", status_code=204, response_class=Response, summary="Log in with a token",
             description="Sets the dashboard's session cookie (HttpOnly, SameSite=Strict).",
             responses=responses(400, 401, 422, 429))
def login(body: Login, request: Request, svc: Svc) -> Response:
    secret, info = _auth(request).take_login_link(body.token, _address(request))
    response = Response(status_code=204)
    _session_cookie(response, request, secret)
    audit(svc, Caller(info.role, None, info, _address(request)), "login", f"token {info.id}")
    return response


@router.post("/api/v1/logout", status_code=204, response_class=Response, summary="End this session",
             responses=responses(401))
def logout(request: Request, svc: Svc, caller: Viewer) -> Response:
    if caller.token is not None and caller.token.kind == "session":
        svc.control.store.revoke_token(caller.token.id, time.time())
        _auth(request).forget(caller.token.id)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/api/v1/whoami", summary="The caller: role, tenant, token", responses=responses(401))
def whoami(caller: Viewer) -> dict:
    return {"role": caller.role, "tenant": caller.tenant.to_json() if caller.tenant else None,
            "token": caller.token.to_json() if caller.token else None, "auth": caller.token is not None}


# -- tokens -------------------------------------------------------------------------------------------


@router.get("/api/v1/tokens", summary="Every token (without secrets)", responses=responses(401, 403))
def list_tokens(svc: Svc, caller: Admin, kind: Annotated[str, Query(
        pattern="^(api|session|login|all)$", description="api (default), session, login or all")]
        = "api") -> dict:
    found = svc.control.store.list_tokens(None if kind == "all" else kind)
    return {"tokens": [t.to_json() for t in found]}


@router.post("/api/v1/tokens", status_code=201, summary="Create a token (its secret is shown once)",
             responses=responses(400, 401, 403, 422))
def create_token(body: TokenCreate, request: Request, svc: Svc, caller: Admin) -> dict:
    if not access.TOKEN_NAME.fullmatch(body.name):
        raise InputError("name", "must be 1-64 letters, digits, '.', '_', '@' or '-'")
    access.check_role(body.role)
    if body.tenant is not None and svc.control.store.get_tenant(body.tenant) is None:
        raise InputError("tenant", f"no tenant {body.tenant!r}")
    lifetime = None
    if body.expires is not None:
        lifetime = parse_duration(body.expires, "expires")
        if not 60 <= lifetime <= MAX_TOKEN_LIFETIME:
            raise InputError("expires", "must be between 1 minute and 10 years")
    secret, info = _auth(request).issue(body.name, body.role, body.tenant, "api", lifetime)
    audit(svc, caller, "token.create", f"token {info.id}",
          {"name": info.name, "role": info.role, "tenant": info.tenant, "expires": info.expires})
    return {**info.to_json(), "token": secret}


@router.delete("/api/v1/tokens/{id}", summary="Revoke a token", responses=responses(401, 403, 404, 422))
def revoke_token(id: InstId, request: Request, svc: Svc, caller: Admin) -> dict:
    info = svc.control.store.revoke_token(id, time.time())
    if info is None:
        raise NotFound("id", f"no token {id}")
    _auth(request).forget(id)
    audit(svc, caller, "token.revoke", f"token {id}", {"name": info.name})
    return info.to_json()


# -- tenants ------------------------------------------------------------------------------------------


def _tenant(body: TenantBody, svc, created: float) -> Tenant:
    access.check_tenant_name(body.name)
    retention, history = body.quotas.retention, body.quotas.history
    quotas = Quotas(body.quotas.instrumentations, body.quotas.keys,
                    None if retention is None else parse_duration(retention, "quotas.retention"),
                    None if history is None else parse_tier_retention(history, "quotas.history"))
    scoped = scope.parse_scope(body.scope, svc.control.catalog)
    return Tenant(body.name, scoped, body.hide_hosts, quotas, created)


def _found(svc, name: str) -> Tenant:
    tenant = svc.control.store.get_tenant(name)
    if tenant is None:
        raise NotFound("name", f"no tenant {name!r}")
    return tenant


@router.get("/api/v1/tenants", summary="Every tenant", responses=responses(401, 403))
def list_tenants(svc: Svc, caller: Admin) -> dict:
    return {"tenants": [t.to_json() for t in svc.control.store.list_tenants()]}


@router.post("/api/v1/tenants", status_code=201, summary="Create a tenant",
             responses=responses(400, 401, 403, 409, 422))
def create_tenant(body: TenantBody, svc: Svc, caller: Admin) -> dict:
    tenant = _tenant(body, svc, time.time())
    if not svc.control.store.put_tenant(tenant, create=True):
        raise InputError("name", f"tenant {tenant.name!r} exists", 409)
    audit(svc, caller, "tenant.create", f"tenant {tenant.name}", tenant.to_json())
    return tenant.to_json()


@router.get("/api/v1/tenants/{name}", summary="One tenant", responses=responses(401, 403, 404))
def get_tenant(name: str, svc: Svc, caller: Admin) -> dict:
    return _found(svc, name).to_json()


@router.put("/api/v1/tenants/{name}", summary="Change a tenant's scope, host hiding or quotas",
            description="The new scope applies to instrumentations created from now on.",
            responses=responses(400, 401, 403, 404, 422))
def update_tenant(name: str, body: TenantBody, request: Request, svc: Svc, caller: Admin) -> dict:
    current = _found(svc, name)
    if body.name != name:
        raise InputError("name", "a tenant cannot be renamed")
    tenant = _tenant(body, svc, current.created)
    if not svc.control.store.put_tenant(tenant, create=False):
        raise NotFound("name", f"no tenant {name!r}")
    _auth(request).forget()
    audit(svc, caller, "tenant.update", f"tenant {name}", tenant.to_json())
    return tenant.to_json()


@router.delete("/api/v1/tenants/{name}", status_code=204, response_class=Response,
               summary="Delete a tenant and revoke its tokens (its instrumentations stay, the operators')",
               responses=responses(401, 403, 404))
def delete_tenant(name: str, request: Request, svc: Svc, caller: Admin) -> Response:
    _found(svc, name)
    revoked = svc.control.store.revoke_tenant_tokens(name, time.time())
    svc.control.store.delete_account_keys(name)
    svc.control.store.delete_tenant(name)
    _auth(request).forget()
    audit(svc, caller, "tenant.delete", f"tenant {name}", {"tokens_revoked": revoked})
    return Response(status_code=204)


# -- CloudAPI account keys ----------------------------------------------------------------------------


@router.get("/api/v1/accounts/{login}/keys", summary="The SSH keys of a CloudAPI account (a tenant's login)",
            responses=responses(401, 403, 404))
def list_account_keys(login: str, svc: Svc, caller: Admin) -> dict:
    _found(svc, login)
    return {"keys": [k.to_json() for k in svc.control.store.account_keys(login)]}


@router.post("/api/v1/accounts/{login}/keys", status_code=201,
             summary="Register an SSH public key to a CloudAPI account (HTTP Signature authentication)",
             description="The account is the tenant of that name; requests signed with the key act as "
                         "that tenant with the key's role (operator unless said).",
             responses=responses(400, 401, 403, 404, 409, 422))
def add_account_key(login: str, body: AccountKeyBody, svc: Svc, caller: Admin) -> dict:
    _found(svc, login)
    access.check_role(body.role)
    try:
        key = sshkeys.parse_public_key(body.key)
    except ValueError as exc:
        raise InputError("key", str(exc)) from None
    name = body.name or key.comment or key.md5
    made = svc.control.store.add_account_key(login, name[:128], body.role, key.kind, key.md5, key.sha256,
                                             key.text)
    if made is None:
        raise InputError("key", f"account {login!r} has this key already ({key.md5})", 409)
    audit(svc, caller, "account.key.add", f"account {login}",
          {"fingerprint": key.md5, "type": key.kind, "role": body.role, "name": made.name})
    return made.to_json()


@router.delete("/api/v1/accounts/{login}/keys/{fingerprint:path}", status_code=204, response_class=Response,
               summary="Remove an SSH key from a CloudAPI account (by its MD5 or SHA256 fingerprint)",
               description="A SHA256 fingerprint may hold '/': it is taken as it is, to the end of the path.",
               responses=responses(401, 403, 404, 422))
def delete_account_key(login: str, fingerprint: str, svc: Svc, caller: Admin) -> Response:
    _found(svc, login)
    try:
        normal = sshkeys.normalise_fingerprint(fingerprint)
    except ValueError as exc:
        raise InputError("fingerprint", str(exc)) from None
    if not svc.control.store.delete_account_keys(login, normal):
        raise NotFound("fingerprint", f"account {login!r} has no key {normal}")
    audit(svc, caller, "account.key.delete", f"account {login}", {"fingerprint": normal})
    return Response(status_code=204)


# -- audit --------------------------------------------------------------------------------------------


@router.get("/api/v1/audit", summary="Changes: who, when, from where, what (newest first)",
            responses=responses(401, 403, 422))
def read_audit(svc: Svc, caller: Admin,
               since: Annotated[float, Query(ge=0, description="epoch seconds")] = 0.0,
               limit: Annotated[int, Query(ge=1, le=AUDIT_ROWS)] = 1000) -> dict:
    return {"audit": list(svc.control.store.read_audit(since, limit))}
