"""CloudAPI's analytics routes at the root of the address: ``/:login/analytics...``.

As CloudAPI 7 served them to node-smartdc 8 (``sdc-describeanalytics``,
``sdc-createinstrumentation``, ``sdc-listinstrumentations``, ``sdc-getinstrumentation
[--value]``, ``sdc-deleteinstrumentation``): requests signed with an SSH key of the account
(:mod:`fleetscope.api.cloudapi.httpsig`), the account being a tenant (its scope AND-ed into
everything it creates, and it sees only its own instrumentations, through
:mod:`fleetscope.api.scope` as every native route does), answers and errors in the original
shapes. ``/my/analytics`` is the signer's own account. Not in the OpenAPI document (see
:mod:`fleetscope.api.cloudapi`).

This router is included last, so that fleetscope's own paths are matched first; tenant names
that collide with them cannot be made (``model.access.RESERVED_LOGINS``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Request, Response

from fleetscope.api import queries, scope
from fleetscope.api.audit import audit
from fleetscope.api.cloudapi import mapping, shapes
from fleetscope.api.cloudapi.errors import CloudApiError, invalid, not_found, translated
from fleetscope.api.cloudapi.httpsig import SignatureAuth
from fleetscope.api.services import Services, Svc
from fleetscope.model import access
from fleetscope.model.access import Caller
from fleetscope.model.instrumentation import Instrumentation

router = APIRouter(include_in_schema=False)
ROOT = "/{login}/analytics"
INSTS = ROOT + "/instrumentations"
ONE = INSTS + "/{id}"
MAX_BODY = 65_536
RANGE_PARAMS = ("start_time", "end_time", "duration", "ndatapoints")


def _signatures(request: Request) -> SignatureAuth:
    found = getattr(request.app.state, "cloudapi_signatures", None)
    if found is None:
        svc: Services = request.app.state.services
        found = request.app.state.cloudapi_signatures = SignatureAuth(svc.control.store, svc.auth.limiter)
    return found


def signed(role: str):
    """A dependency: the caller a signed request stands for, who must have at least ``role``. A
    change that is refused frees its signature again (httpsig.ReplayGuard.release)."""
    access.check_role(role)

    def dependency(request: Request, login: str) -> Iterator[Caller]:
        signatures = _signatures(request)
        caller, signature = signatures.caller(request, login)
        try:
            if not access.allows(caller.role, role):
                raise CloudApiError(403, "NotAuthorized", f"this needs a key with the role {role!r} "
                                    f"(this key has {caller.role!r})")
            request.state.caller = caller
            yield caller
        except Exception:
            signatures.replays.release(signature)
            raise

    return Depends(dependency)


Reader = Annotated[Caller, signed(access.VIEWER)]
Writer = Annotated[Caller, signed(access.OPERATOR)]


def _offers(svc: Services, caller: Caller | None = None) -> list[mapping.Offered]:
    """What ``caller`` may instrument (None: every metric, to show existing instrumentations)."""
    catalog = svc.control.catalog
    return mapping.offered(catalog, None if caller is None else scope.catalog_for(caller, catalog))


def _shown(svc: Services, inst: Instrumentation, caller: Caller) -> dict:
    return shapes.instrumentation(inst, mapping.for_instrumentation(_offers(svc), inst.metric),
                                  caller.tenant_name or "my")


def _inst(svc: Services, caller: Caller, id: str) -> Instrumentation:
    if not id.isdigit() or len(id) > 18:
        raise not_found(f"no instrumentation {id!r}")
    with translated():
        return svc.get(caller, int(id))


def _int_param(request: Request, name: str) -> int | None:
    text = request.query_params.get(name)
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        raise invalid(f"{name}: must be a whole number") from None


async def _body(request: Request) -> dict:
    """The create body: JSON, form fields, or the query string (the original took all three)."""
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise invalid(f"the body is larger than {MAX_BODY} bytes")
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if raw.strip() and (kind in ("", "application/json") or kind.endswith("+json")):
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            raise invalid("the body is not valid JSON") from None
    elif kind == "application/x-www-form-urlencoded":
        body = dict(parse_qsl(raw.decode("utf-8", "replace")))
    else:
        body = {k: v for k, v in request.query_params.items() if k != "as-role"}
    return shapes.check_create_body(body)


@router.get(ROOT)
def describe_analytics(login: str, svc: Svc, caller: Reader) -> dict:
    """DescribeAnalytics: modules, fields, types, metrics and transformations this account may use."""
    return mapping.describe(_offers(svc, caller))


@router.get(INSTS)
def list_instrumentations(login: str, svc: Svc, caller: Reader) -> list:
    return [_shown(svc, i, caller) for i in svc.listed(caller)]


@router.post(INSTS, status_code=201)
async def create_instrumentation(login: str, request: Request, response: Response, svc: Svc,
                                 caller: Writer) -> dict:
    body = await _body(request)
    base = None
    if "clone" in body:
        source = _inst(svc, caller, str(body["clone"]))
        base = {k: v for k, v in _shown(svc, source, caller).items()
                if k in shapes.CREATE_FIELDS}
    module, stat = body.get("module") or base["module"], body.get("stat") or base["stat"]
    offer = mapping.find(_offers(svc, caller), str(module), str(stat))
    if offer is None:
        raise invalid(f"unknown metric {module}.{stat} (GET /{login}/analytics lists them)")
    spec = shapes.create_spec(body, offer, base)
    with translated():
        inst = await svc.control.create(spec, caller)
    audit(svc, caller, "instrumentation.create", f"instrumentation {inst.id}",
          {"metric": inst.metric, "predicate": inst.predicate, "decomposition": list(inst.decomposition),
           "via": "cloudapi"})
    shown = _shown(svc, inst, caller)
    response.headers["location"] = shown["uri"]
    return shown


@router.get(ONE)
def get_instrumentation(login: str, id: str, svc: Svc, caller: Reader) -> dict:
    return _shown(svc, _inst(svc, caller, id), caller)


@router.delete(ONE, status_code=204, response_class=Response)
async def delete_instrumentation(login: str, id: str, svc: Svc, caller: Writer) -> Response:
    inst = _inst(svc, caller, id)
    with translated():
        await svc.control.delete(inst.id)
    audit(svc, caller, "instrumentation.delete", f"instrumentation {inst.id}",
          {"metric": inst.metric, "via": "cloudapi"})
    return Response(status_code=204)


@router.get(ONE + "/value/raw")
def value_raw(login: str, id: str, request: Request, svc: Svc, caller: Reader) -> dict | list:
    """GetInstrumentationValue: one value, or ``ndatapoints`` of them (an array)."""
    inst = _inst(svc, caller, id)
    svc.control.touch(inst.id)
    asked = {name: _int_param(request, name) for name in RANGE_PARAMS}
    with translated():
        rng = queries.resolve_range(inst, svc.latest(inst), asked["start_time"], asked["end_time"],
                                    asked["duration"], asked["ndatapoints"], tiers=svc.tiers(inst))
        points = svc.points(inst, rng)
    offer = mapping.for_instrumentation(_offers(svc), inst.metric)
    requested = {f"requested_{k}": v for k, v in asked.items() if v is not None and k != "ndatapoints"}
    out = [shapes.raw_value(p, inst, offer, requested) for p in points]
    return out if asked["ndatapoints"] is not None else out[-1]

