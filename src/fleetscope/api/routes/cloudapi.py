"""CloudAPI's analytics routes at the root of the address: ``/:login/analytics...``.

As CloudAPI 7 served them to node-smartdc 8 (``sdc-describeanalytics``,
``sdc-createinstrumentation``, ``sdc-listinstrumentations``, ``sdc-getinstrumentation
[--value]``, ``sdc-deleteinstrumentation``): requests signed with an SSH key of the account
(:mod:`fleetscope.api.cloudapi.httpsig`), the account being a tenant (its scope AND-ed into
everything it creates, and it sees only its own instrumentations, through
:mod:`fleetscope.api.scope` as every native route does), answers and errors in the original
shapes. ``/my/analytics`` is the signer's own account. Not in the OpenAPI document (see
:mod:`fleetscope.api.cloudapi`).

CloudAPI's routes: DescribeAnalytics, List/Create/Get/Delete/CloneInstrumentation (``POST
.../:id?action=clone``), GetInstrumentationValue (``value/raw``), GetInstrumentationHeatmap and
...HeatmapDetails, each GET with its HEAD. From Cloud Analytics' own API, which CloudAPI did not
route: ``PUT .../:id`` (modify retention-time, idle-max, persist-data) and
``value/heatmap/average`` and ``.../percentile``. Anything else under ``/:login/analytics`` is
answered as restify did (``ResourceNotFound``, ``MethodNotAllowedError``).

This router is included last, so that fleetscope's own paths are matched first; tenant names
that collide with them cannot be made (``model.access.RESERVED_LOGINS``).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Annotated
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Request, Response

from fleetscope.api import heatmap, queries, scope
from fleetscope.api.audit import audit
from fleetscope.api.cloudapi import mapping, shapes
from fleetscope.api.cloudapi.errors import CloudApiError, invalid, not_found, translated
from fleetscope.api.cloudapi.httpsig import SignatureAuth
from fleetscope.api.cloudapi.reversedns import ReverseDns
from fleetscope.api.cloudapi.transforms import Transforms
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
READ = ["GET", "HEAD"]  # CloudAPI mounted a HEAD beside every GET


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


def _transforms(request: Request) -> Transforms:
    """The server's transformations (processes set them from --reverse-dns and --geoip-db; an
    app made without them looks names up with the system's resolver)."""
    found = getattr(request.app.state, "cloudapi_transforms", None)
    if found is None:
        found = request.app.state.cloudapi_transforms = Transforms(ReverseDns())
    return found


Reader = Annotated[Caller, signed(access.VIEWER)]
Writer = Annotated[Caller, signed(access.OPERATOR)]


def _offers(svc: Services, caller: Caller | None = None) -> list[mapping.Offered]:
    """What ``caller`` may instrument (None: every metric, to show existing instrumentations)."""
    catalog = svc.control.catalog
    return mapping.offered(catalog, None if caller is None else scope.catalog_for(caller, catalog))


def _shown(svc: Services, inst: Instrumentation, caller: Caller, transforms: Transforms) -> dict:
    offer = mapping.for_instrumentation(_offers(svc), inst.metric)
    return shapes.instrumentation(inst, offer, caller.tenant_name or "my",
                                  transforms.for_decomposition(inst.decomposition))


def _requested(request: Request, inst: Instrumentation, transforms: Transforms) -> list[str]:
    """The ``transformations`` a value request asks for, each one offered and supported."""
    return transforms.check(_list_param(request, "transformations"),
                            transforms.for_decomposition(inst.decomposition))


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


async def _body(request: Request) -> object:
    """A create or modify body: JSON, form fields, or the query string (the original took all
    three); checked by the caller."""
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
        body = {k: v for k, v in request.query_params.items() if k not in ("as-role", "action")}
    return body


@router.api_route(ROOT, methods=READ)
def describe_analytics(login: str, request: Request, svc: Svc, caller: Reader) -> dict:
    """DescribeAnalytics: modules, fields, types, metrics and transformations this account may use."""
    return mapping.describe(_offers(svc, caller), _transforms(request).describe())


@router.api_route(INSTS, methods=READ)
def list_instrumentations(login: str, request: Request, svc: Svc, caller: Reader) -> list:
    transforms = _transforms(request)
    return [_shown(svc, i, caller, transforms) for i in svc.listed(caller)]


@router.post(INSTS, status_code=201)
async def create_instrumentation(login: str, request: Request, response: Response, svc: Svc,
                                 caller: Writer) -> dict:
    """CreateInstrumentation; with ``clone``, as CloneInstrumentation."""
    body = shapes.check_create_body(await _body(request))
    return await _create(login, request, response, svc, caller, body)


@router.post(ONE, status_code=201)
async def clone_instrumentation(login: str, id: str, request: Request, response: Response, svc: Svc,
                                caller: Writer) -> dict:
    """CloneInstrumentation (``POST .../:id?action=clone``): a new instrumentation with the
    properties of ``id``, those in the request overriding them."""
    body = await _body(request)
    action = request.query_params.get("action")
    if isinstance(body, dict) and action is None:
        action = body.pop("action", None)
    if action != "clone":
        raise invalid(f"{action or 'no action'} is not a valid action (action=clone makes a copy)")
    body = shapes.check_create_body({**(body if isinstance(body, dict) else {}), "clone": id})
    return await _create(login, request, response, svc, caller, body)


async def _create(login: str, request: Request, response: Response, svc: Services, caller: Caller,
                  body: dict) -> dict:
    base = None
    if "clone" in body:
        source = _inst(svc, caller, str(body["clone"]))
        base = {k: v for k, v in _shown(svc, source, caller, _transforms(request)).items()
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
    shown = _shown(svc, inst, caller, _transforms(request))
    response.headers["location"] = shown["uri"]
    return shown


@router.put(ONE)
async def modify_instrumentation(login: str, id: str, request: Request, svc: Svc, caller: Writer) -> dict:
    """Cloud Analytics' "Modify Instrumentation Properties": ``retention-time``, ``idle-max``
    and ``persist-data`` may change (CloudAPI did not route it; CA's own API had it)."""
    inst = _inst(svc, caller, id)
    changes = shapes.modify_spec(await _body(request))
    with translated():
        inst = await svc.control.update(inst.id, changes, caller)
    audit(svc, caller, "instrumentation.update", f"instrumentation {inst.id}", {**changes, "via": "cloudapi"})
    return _shown(svc, inst, caller, _transforms(request))


@router.api_route(ONE, methods=READ)
def get_instrumentation(login: str, id: str, request: Request, svc: Svc, caller: Reader) -> dict:
    return _shown(svc, _inst(svc, caller, id), caller, _transforms(request))


@router.delete(ONE, status_code=204, response_class=Response)
async def delete_instrumentation(login: str, id: str, svc: Svc, caller: Writer) -> Response:
    inst = _inst(svc, caller, id)
    with translated():
        await svc.control.delete(inst.id)
    audit(svc, caller, "instrumentation.delete", f"instrumentation {inst.id}",
          {"metric": inst.metric, "via": "cloudapi"})
    return Response(status_code=204)


@router.api_route(ONE + "/value/raw", methods=READ)
def value_raw(login: str, id: str, request: Request, svc: Svc, caller: Reader) -> dict | list:
    """GetInstrumentationValue: one value, or ``ndatapoints`` of them (an array)."""
    inst = _inst(svc, caller, id)
    transforms = _transforms(request)
    wanted = _requested(request, inst, transforms)
    points, asked, requested = _values(svc, inst, request)
    offer = mapping.for_instrumentation(_offers(svc), inst.metric)
    transformed = transforms.apply_each(wanted, [p.value if isinstance(p.value, dict) else ()
                                                 for p in points])
    out = [shapes.raw_value(p, inst, offer, requested, t) for p, t in zip(points, transformed, strict=True)]
    return out if asked["ndatapoints"] is not None else out[-1]


def _values(svc: Services, inst: Instrumentation, request: Request) -> tuple[list, dict, dict]:
    """The points a value request asks for (``start_time``, ``end_time``, ``duration``,
    ``ndatapoints``), what it asked, and the ``requested_*`` properties of the answer."""
    svc.control.touch(inst.id)
    asked = {name: _int_param(request, name) for name in RANGE_PARAMS}
    with translated():
        rng = queries.resolve_range(inst, svc.latest(inst), asked["start_time"], asked["end_time"],
                                    asked["duration"], asked["ndatapoints"], tiers=svc.tiers(inst))
        points = svc.points(inst, rng)
    requested = {f"requested_{k}": v for k, v in asked.items() if v is not None and k != "ndatapoints"}
    return points, asked, requested


@router.api_route(ONE + "/value/heatmap/average", methods=READ)
def heatmap_average(login: str, id: str, request: Request, svc: Svc, caller: Reader) -> dict | list:
    """Cloud Analytics' "Retrieve Heatmap Column Average Value": ``average`` of each value."""
    return _estimate(svc, caller, id, request, "average", lambda h, _: h.mean())


@router.api_route(ONE + "/value/heatmap/percentile", methods=READ)
def heatmap_percentile(login: str, id: str, request: Request, svc: Svc, caller: Reader) -> dict | list:
    """Cloud Analytics' "Retrieve heatmap column Nth percentile value": ``percentile`` (the value
    below which that fraction of the data lies) of each value."""
    fraction = _float_param(request, "percentile")
    if fraction is None:
        raise CloudApiError(409, "MissingParameter", "percentile is required (a number from 0 to 1)")
    if not 0.0 <= fraction <= 1.0:
        raise invalid("percentile: must be a number from 0 (0 %) to 1 (100 %)")
    return _estimate(svc, caller, id, request, "percentile", lambda h, _: h.quantile(fraction))


def _estimate(svc: Services, caller: Caller, id: str, request: Request, name: str, estimate) -> dict | list:
    """Average or percentile per value, estimated from fleetscope's buckets (finer than a
    heatmap's rows, so the original's ``nbuckets``, ``ymin`` and ``ymax``, which chose the rows
    it estimated from, are checked and need change nothing); null for a gap."""
    inst = _inst(svc, caller, id)
    with translated():
        queries.require_distribution(inst)
    for param in ("ymin", "ymax"):
        _float_param(request, param)
    _int_param(request, "nbuckets")
    _requested(request, inst, _transforms(request))
    points, asked, requested = _values(svc, inst, request)
    out = []
    for p in points:
        h = queries.histogram_of(p.value, inst.shape)
        value = queries.finite_or_none(estimate(h, p)) if h is not None and h.count else None
        out.append({name: value, "transformations": {}, "start_time": p.start_time, "duration": p.duration,
                    "end_time": p.start_time + p.duration, "nsources": p.nsources,
                    "minreporting": p.expected, **requested})
    return out if asked["ndatapoints"] is not None else out[-1]


# -- heatmaps -------------------------------------------------------------------------------------------

HEATMAP_WIDTH, HEATMAP_HEIGHT, HEATMAP_BUCKETS = 600, 300, 100  # the original's portal drew these
DECOMPOSE_ALL_MAX = 20  # keys decompose_all highlights at most (the largest first)


def _list_param(request: Request, name: str) -> list[str]:
    """An array parameter as the original's clients sent one: ``selected=a&selected=b``,
    ``selected[]=a`` or ``selected[0]=a`` (qs), or a JSON array."""
    out = []
    for key, value in request.query_params.multi_items():
        if key == name or key == f"{name}[]" or (key.startswith(f"{name}[") and key.endswith("]")):
            if key == name and value.startswith("["):
                try:
                    parsed = json.loads(value)
                except ValueError:
                    raise invalid(f"{name}: not a JSON array") from None
                if not isinstance(parsed, list) or not all(isinstance(v, str) for v in parsed):
                    raise invalid(f"{name}: must be an array of strings")
                out += parsed
            else:
                out.append(value)
    return out


def _bool_param(request: Request, name: str) -> bool:
    text = request.query_params.get(name)
    if text is None or text == "":
        return False
    if text.lower() not in ("true", "false", "1", "0"):
        raise invalid(f"{name}: must be true or false")
    return text.lower() in ("true", "1")


def _float_param(request: Request, name: str) -> float | None:
    text = request.query_params.get(name)
    if text is None or text == "":
        return None
    try:
        value = float(text)
    except ValueError:
        raise invalid(f"{name}: must be a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise invalid(f"{name}: must be a finite number")
    return value


class _Heatmap:
    """What an image and its details share: the range, the columns and the matrix."""

    def __init__(self, svc: Services, caller: Caller, id: str, request: Request) -> None:
        inst = _inst(svc, caller, id)
        with translated():
            queries.require_distribution(inst)  # heatmaps are of numeric decompositions only
        svc.control.touch(inst.id)
        if _list_param(request, "hues"):
            raise invalid("hues: choosing the hues is not supported (fleetscope draws the appliance's: the "
                          "first selected key at 21 degrees, each next one 91 degrees further)")
        self.transforms = _transforms(request)
        self.wanted = _requested(request, inst, self.transforms)
        self.inst = inst
        self.asked = {name: _int_param(request, name) for name in ("start_time", "duration")}
        width, height, nbuckets = (_int_param(request, n) for n in ("width", "height", "nbuckets"))
        self.width = HEATMAP_WIDTH if width is None else width
        self.height = HEATMAP_HEIGHT if height is None else height
        self.nbuckets = HEATMAP_BUCKETS if nbuckets is None else nbuckets
        ymin, self.ymax = _float_param(request, "ymin"), _float_param(request, "ymax")
        self.ymin = 0.0 if ymin is None else ymin
        flags = {name: _bool_param(request, name) for name in ("isolate", "exclude", "decompose_all")}
        if sum(flags.values()) > 1:
            raise invalid("at most one of isolate, exclude and decompose_all may be given")
        self.isolate, self.exclude = flags["isolate"], flags["exclude"]
        with translated():
            self.range = queries.heatmap_range(inst, svc.latest(inst), self.asked["start_time"], None,
                                               self.asked["duration"], None, None, tiers=svc.tiers(inst))
            self.points = svc.points(inst, self.range)
        self.columns = [p.value for p in self.points]
        self.present = sorted({k for c in self.columns if isinstance(c, dict) for k in c})
        selected = _list_param(request, "selected")
        if flags["decompose_all"]:
            totals: dict[str, float] = {}
            for c in self.columns:
                for k, h in (c.items() if isinstance(c, dict) else ()):
                    totals[k] = totals.get(k, 0.0) + h.count
            selected = sorted(totals, key=lambda k: -totals[k])[:DECOMPOSE_ALL_MAX]
        if selected and inst.discrete is None:
            raise invalid("selected: this instrumentation has no discrete decomposition to select from")
        self.selected = selected
        with translated():
            self.matrix = heatmap.heatmap_matrix(self.columns, ymin=self.ymin, ymax=self.ymax,
                                                 nbuckets=self.nbuckets, selected=selected,
                                                 isolate=self.isolate, exclude=self.exclude)

    def common(self) -> dict:
        rng = self.range
        span = rng.n * rng.duration
        nsources = min((p.nsources for p in self.points if p.value is not None), default=0)
        expected = max((p.expected for p in self.points), default=0)
        requested = {f"requested_{k}": v for k, v in self.asked.items() if v is not None}
        return {"ymin": self.matrix.ymin, "ymax": self.matrix.ymax, "nbuckets": self.nbuckets,
                "width": self.width, "height": self.height, "start_time": rng.start, "duration": span,
                "end_time": rng.start + span, "nsources": nsources, "minreporting": expected,
                "transformations": {}, **requested}


@router.api_route(ONE + "/value/heatmap/image", methods=READ)
def heatmap_image(login: str, id: str, request: Request, svc: Svc, caller: Reader) -> dict:
    """GetInstrumentationHeatmap: a base64 PNG of the range, with the keys present in it."""
    hm = _Heatmap(svc, caller, id, request)
    with translated():
        png = heatmap.render_png(hm.matrix, width=hm.width, height=hm.height, selected_order=hm.selected)
    return {**hm.common(), "image": base64.b64encode(png).decode(), "present": hm.present,
            "transformations": hm.transforms.apply(hm.wanted, hm.present)}


@router.api_route(ONE + "/value/heatmap/details", methods=READ)
def heatmap_details(login: str, id: str, request: Request, svc: Svc, caller: Reader) -> dict:
    """GetInstrumentationHeatmapDetails: the bucket under pixel (x, y) of the image drawn with the
    same parameters (top-left is the origin): its time, value range, total and counts by key."""
    x, y = _int_param(request, "x"), _int_param(request, "y")
    if x is None or y is None:
        raise CloudApiError(409, "MissingParameter", "x and y are required (a pixel of the image)")
    hm = _Heatmap(svc, caller, id, request)
    if not (0 <= x < hm.width and 0 <= y < hm.height):
        raise invalid(f"x and y must be inside the {hm.width} x {hm.height} image")
    column = x * hm.range.n // hm.width
    row = hm.nbuckets - 1 - y * hm.nbuckets // hm.height  # rows count from the bottom
    edges = hm.matrix.edges()
    low, high = float(edges[row]), float(edges[row + 1])
    times = hm.range.times()
    with translated():
        cell = heatmap.cell_details(hm.columns, times, times[column], low, high)
    return {**hm.common(), "bucket_time": times[column], "bucket_ymin": low, "bucket_ymax": high,
            "present": cell["keys"], "total": cell["total"]}


# -- what CloudAPI did not route -------------------------------------------------------------------

ANY = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


@router.api_route(ROOT + "/{rest:path}", methods=ANY)
def not_routed(login: str, rest: str, request: Request) -> None:
    """What restify answered for a path CloudAPI had no route for (``ResourceNotFound``) or for
    a method its route did not take (``MethodNotAllowedError``, with ``Allow``): before the
    signature is looked at, since these say nothing about any account. Registered last."""
    path = request.url.path
    allowed: set[str] = set()
    for route in router.routes:
        if route.endpoint is not not_routed and route.path_regex.match(path):
            allowed |= route.methods
    if allowed:
        raise CloudApiError(405, "MethodNotAllowedError", f"{request.method} is not allowed",
                            {"allow": ", ".join(sorted(allowed))})
    raise not_found(f"{path} does not exist")
