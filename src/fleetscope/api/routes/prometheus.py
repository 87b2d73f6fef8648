"""``/prometheus/api/v1/…``: the Prometheus HTTP API, for Grafana, promtool and Prometheus.

- PromQL: ``query`` and ``query_range`` (evaluated by :mod:`fleetscope.promql`; limits as
  Prometheus' ``query.timeout``, ``query.max-samples`` and its 11,000 points per series).
  ``instrument=true`` creates the instrumentations a query needs (:mod:`fleetscope.api.promdemand`;
  the operator role, within the caller's quotas); without it their absence is a warning.
- Discovery: ``status/buildinfo``, ``labels``, ``label/<name>/values``, ``series``,
  ``metadata`` (without ``start`` and ``end``, the last hour); ``query_exemplars`` (none: Grafana
  asks for them beside each query).
- Remote read: ``read`` (snappy-compressed protobuf, samples response).

GET or form-encoded POST, in Prometheus' JSON envelope, error types and statuses. The
mapping from instrumentations to series is :mod:`fleetscope.api.promseries`; a caller reads
only the instrumentations of its scope (:meth:`fleetscope.api.services.Services.listed`).
"""

from __future__ import annotations

import gzip
import math
import time
from datetime import datetime
from typing import Literal
from urllib.parse import parse_qsl

import msgspec
import promql_parser
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from fleetscope import __version__
from fleetscope.api import promdemand, promseries, queries, scope
from fleetscope.api.audit import audit
from fleetscope.api.auth import Caller, Viewer
from fleetscope.api.services import Services, Svc
from fleetscope.formats import promremote
from fleetscope.model import access, values
from fleetscope.model.errors import InputError
from fleetscope.model.instrumentation import Instrumentation
from fleetscope.promql import engine
from fleetscope.promql.errors import Limits, PromQLError
from fleetscope.promql.matchers import Matcher


class PrometheusError(BaseModel):
    """An error of these routes, in Prometheus' envelope (not fleetscope's ``{"error": …}``)."""

    status: Literal["error"]
    errorType: str  # Prometheus' name
    error: str


router = APIRouter(prefix="/prometheus/api/v1", tags=["prometheus"], responses={
    400: {"description": "bad_data: a parameter Prometheus would refuse too", "model": PrometheusError}})
METHODS = ["GET", "POST"]
DEFAULT_SPAN = 3600.0
MAX_FORM = 1 << 20
MAX_READ = 8 << 20  # bytes of a remote-read request
LIMITS = Limits()
GZIP_FROM = 4096  # bytes of an answer worth compressing
STATUS = {"bad_data": 400, "execution": 422, "timeout": 503, "canceled": 503, "internal": 500}


def get_and_post(path: str, summary: str):
    """Route ``path`` to the function for GET and for form-encoded POST, as Prometheus takes
    both, each with an operation id of its own in the OpenAPI document."""
    def register(fn):
        for method in METHODS:
            router.add_api_route(path, fn, methods=[method], summary=summary,
                                 operation_id=f"prometheus_{fn.__name__}_{method.lower()}")
        return fn
    return register


def success(data: object, warnings: list[str] | None = None, request: Request | None = None) -> Response:
    """Prometheus' envelope around ``data``; gzip-compressed when ``request`` accepts it and the
    body is large (a range query's answer: megabytes of JSON, a quarter of it compressed)."""
    body: dict = {"status": "success", "data": data}
    if warnings:
        body["warnings"] = warnings
    encoded = msgspec.json.encode(body)
    headers = {}
    accepts = request is not None and "gzip" in request.headers.get("accept-encoding", "")
    if accepts and len(encoded) > GZIP_FROM:
        encoded = gzip.compress(encoded, compresslevel=1)
        headers = {"content-encoding": "gzip", "vary": "Accept-Encoding"}
    return Response(encoded, media_type="application/json", headers=headers)


def failure(error_type: str, message: str, status: int = 400) -> Response:
    return JSONResponse({"status": "error", "errorType": error_type, "error": message}, status_code=status)


def bad_parameter(exc: InputError) -> Response:
    """An InputError as Prometheus words a bad parameter (its status when it is not a 422)."""
    status = 400 if exc.status == 422 else exc.status
    return failure("bad_data", f"invalid parameter {exc.field!r}: {exc.message}".replace("'", '"'), status)


async def params(request: Request) -> dict[str, list[str]]:
    """The query string and, for a POST, the form (``application/x-www-form-urlencoded``, at most
    MAX_FORM bytes): every value of each name."""
    pairs = list(request.query_params.multi_items())
    if request.method == "POST":
        kind = request.headers.get("content-type", "").split(";")[0].strip()
        if kind != "application/x-www-form-urlencoded":
            raise InputError("content-type", "a POST must be application/x-www-form-urlencoded")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM:
                raise InputError("body", f"over {MAX_FORM} bytes")
        try:
            pairs += parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError:
            raise InputError("body", "not UTF-8") from None
    out: dict[str, list[str]] = {}
    for name, value in pairs:
        out.setdefault(name, []).append(value)
    return out


def one(p: dict[str, list[str]], name: str) -> str | None:
    """The last value of parameter ``name`` (Prometheus reads the last), or None."""
    return p.get(name, [None])[-1]


def duration(text: str | None, field: str, default: float) -> float:
    """A Prometheus duration: seconds (may be fractional) or ``1m30s``."""
    if text is None or text == "":
        return default
    try:
        d = float(text)
    except ValueError:
        try:
            d = promql_parser.parse_duration(text).total_seconds()
        except (ValueError, RuntimeError):
            raise InputError(field, f"cannot parse {text!r} to a valid duration") from None
    if not math.isfinite(d):
        raise InputError(field, f"cannot parse {text!r} to a valid duration")
    return d


def timestamp(text: str | None, field: str, default: float) -> float:
    """A Prometheus time: Unix seconds (may be fractional) or RFC 3339."""
    if text is None or text == "":
        return default
    try:
        t = float(text)
    except ValueError:
        try:
            t = datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
        except ValueError:
            raise InputError(field, f"cannot parse {text!r} to a valid timestamp") from None
    if not math.isfinite(t) or t < 0:
        raise InputError(field, f"cannot parse {text!r} to a valid timestamp")
    return t


class Ask:
    """What a discovery request asks: its selectors and its range."""

    def __init__(self, p: dict[str, list[str]], need_match: bool = False) -> None:
        self.matchers = [promseries.parse_selector(s) for s in p.get("match[]", [])]
        if need_match and not self.matchers:
            raise InputError("match[]", "no match[] parameter provided")
        now = time.time()
        self.end = timestamp(one(p, "end"), "end", now)
        self.start = timestamp(one(p, "start"), "start", self.end - DEFAULT_SPAN)
        if self.end < self.start:
            raise InputError("end", "end timestamp must not be before start time")


def keys_of(svc: Services, inst: Instrumentation, start: float, end: float) -> set[str]:
    """The keys ``inst``'s breakdown had in ``[start, end]``, from at most KEY_POINTS points."""
    if inst.shape not in (values.DISCRETE, values.DISCRETE_HISTOGRAM):
        return set()
    first, last = int(start), max(int(end) + 1, int(start) + inst.granularity)
    rng = queries.resolve_range(inst, svc.latest(inst), start_time=first, end_time=last,
                                ndatapoints=promseries.KEY_POINTS, tiers=svc.tiers(inst))
    return {k for p in svc.points(inst, rng) if p.value for k in p.value}


def selected(svc: Services, caller: Caller, ask: Ask) -> list[dict[str, str]]:
    """The series of the caller's instrumentations that ``ask`` selects, at most MAX_SERIES."""
    out: list[dict[str, str]] = []
    for inst in svc.listed(caller):
        for labels in promseries.series(inst, keys_of(svc, inst, ask.start, ask.end)):
            if not ask.matchers or any(promseries.selects(inst, labels, ms) for ms in ask.matchers):
                out.append(labels)
                if len(out) > promseries.MAX_SERIES:
                    raise InputError("match[]", f"selects over {promseries.MAX_SERIES} series: narrow it")
    return out


@get_and_post("/status/buildinfo", summary="Prometheus API: the server's version")
def buildinfo(caller: Viewer) -> Response:
    return success({"version": __version__, "revision": "", "branch": "", "buildUser": "fleetscope",
                    "buildDate": "", "goVersion": ""})


@get_and_post("/labels", summary="Prometheus API: label names")
async def label_names(request: Request, svc: Svc, caller: Viewer) -> Response:
    try:
        ask = Ask(await params(request))
        if ask.matchers:
            found = await run_in_threadpool(selected, svc, caller, ask)
            names = {n for labels in found for n in labels}
        else:
            names = {n for inst in svc.listed(caller) for n in promseries.label_names(inst)}
    except InputError as exc:
        return bad_parameter(exc)
    return success(sorted(names))


@get_and_post("/label/{name}/values", summary="Prometheus API: the values of a label")
async def label_values(name: str, request: Request, svc: Svc, caller: Viewer) -> Response:
    try:
        ask = Ask(await params(request))
        if name == promseries.NAME and not ask.matchers:
            found = {n for inst in svc.listed(caller) for n in promseries.names(inst)}
        else:
            series = await run_in_threadpool(selected, svc, caller, ask)
            found = {labels[name] for labels in series if name in labels}
    except InputError as exc:
        return bad_parameter(exc)
    return success(sorted(found))


@get_and_post("/series", summary="Prometheus API: the series selectors match")
async def list_series(request: Request, svc: Svc, caller: Viewer) -> Response:
    try:
        ask = Ask(await params(request), need_match=True)
        found = await run_in_threadpool(selected, svc, caller, ask)
    except InputError as exc:
        return bad_parameter(exc)
    return success(found)


@get_and_post("/metadata", summary="Prometheus API: metric types, help and units")
async def metadata(request: Request, svc: Svc, caller: Viewer) -> Response:
    try:
        p = await params(request)
    except InputError as exc:
        return bad_parameter(exc)
    wanted = one(p, "metric")
    out: dict[str, list[dict]] = {}
    for inst in svc.listed(caller):
        help_text = f"instrumentation {inst.id}: {inst.metric}" + (
            f" by {', '.join(inst.decomposition)}" if inst.decomposition else "")
        for metric, entries in promseries.metadata(inst, help_text).items():
            if wanted in (None, metric):
                out.setdefault(metric, []).extend(entries)
    return success(out)


# -- PromQL ---------------------------------------------------------------------------------------


class Question:
    """What a query asks: its expression, time or range (milliseconds), timeout and whether to
    instrument. Raises InputError for a bad parameter, PromQLError for what the engine refuses
    (checked here, before anything is created for the query)."""

    def __init__(self, p: dict[str, list[str]], ranged: bool) -> None:
        self.text = one(p, "query") or ""
        if not self.text:
            raise InputError("query", "no query given")
        self.expr = engine.parse(self.text)
        now = time.time()
        self.timeout = min(duration(one(p, "timeout"), "timeout", LIMITS.timeout_s), LIMITS.timeout_s)
        if self.timeout <= 0:
            raise InputError("timeout", "must be positive")
        self.instrument = (one(p, "instrument") or "").lower() in ("1", "true", "yes")
        if not ranged:
            self.start = self.end = round(timestamp(one(p, "time"), "time", now) * 1000)
            self.step = 0
            return
        for name in ("start", "end", "step"):
            if one(p, name) in (None, ""):
                raise InputError(name, f"no {name} given")
        self.start = round(timestamp(one(p, "start"), "start", now) * 1000)
        self.end = round(timestamp(one(p, "end"), "end", now) * 1000)
        self.step = round(duration(one(p, "step"), "step", 0.0) * 1000)
        engine.check_range(self.start, self.end, self.step)


def answered_names(insts: list[Instrumentation]) -> set[str]:
    return {n for inst in insts for n in promseries.names(inst)} | {
        f"{promseries.family_name(i)}_bucket" for i in insts if promseries.is_distribution(i)}


async def on_demand(svc: Services, caller: Caller, q: Question) -> list[str]:
    """The instrumentations ``q`` needs and no one has made: made when it asks (``instrument``),
    else named in warnings that say how."""
    needed = promdemand.proposals(q.expr, answered_names(svc.listed(caller)),
                                  scope.catalog_for(caller, svc.control.catalog))
    warnings = []
    for prop in needed:
        if prop.problem is not None:
            warnings.append(f"no instrumentation answers {prop.selector} and none can be made for it: "
                            f"{prop.problem}")
        elif not q.instrument:
            warnings.append(f"no instrumentation answers {prop.selector}: add instrument=true to the "
                            f"request to create one ({promdemand.describe(prop.spec)})")
        elif not access.allows(caller.role, access.OPERATOR):
            raise InputError("instrument", f"creating instrumentations needs the role {access.OPERATOR!r} "
                             f"(the token has {caller.role!r})", 403)
        else:
            inst = await svc.control.create(prop.spec, caller)
            audit(svc, caller, "instrumentation.create", f"instrumentation {inst.id}",
                  {"metric": inst.metric, "predicate": inst.predicate, "from": "promql",
                   "decomposition": list(inst.decomposition)})
            warnings.append(f"created instrumentation {inst.id} ({promdemand.describe(prop.spec)}) for "
                            f"{prop.selector}: it answers from now on")
    return warnings


async def evaluate(request: Request, svc: Services, caller: Caller, ranged: bool) -> Response:
    try:
        q = Question(await params(request), ranged)
        warnings = await on_demand(svc, caller, q)
        storage = promseries.InstrumentationStorage(svc, caller)
        limits = LIMITS._replace(timeout_s=q.timeout)
        if ranged:
            result = await run_in_threadpool(engine.range_query, q.text, storage, q.start, q.end, q.step,
                                             limits)
        else:
            result = await run_in_threadpool(engine.instant, q.text, storage, q.start, limits)
    except InputError as exc:
        return bad_parameter(exc)
    except PromQLError as exc:
        return failure(exc.error_type, exc.message, STATUS.get(exc.error_type, 400))
    for inst_id in storage.read:  # read: none of them expires while a dashboard shows it
        svc.control.touch(inst_id)
    return success(result.data, warnings + result.warnings, request)


@get_and_post("/query", summary="Prometheus API: a PromQL query at one time")
async def query(request: Request, svc: Svc, caller: Viewer) -> Response:
    return await evaluate(request, svc, caller, ranged=False)


@get_and_post("/query_range", summary="Prometheus API: a PromQL query over a range")
async def query_range(request: Request, svc: Svc, caller: Viewer) -> Response:
    return await evaluate(request, svc, caller, ranged=True)


@get_and_post("/query_exemplars", summary="Prometheus API: exemplars (none kept)")
async def query_exemplars(request: Request, caller: Viewer) -> Response:
    try:
        p = await params(request)
        Question({**p, "time": p.get("end", [])}, ranged=False)  # the query must be valid PromQL
    except InputError as exc:
        return bad_parameter(exc)
    except PromQLError as exc:
        return failure(exc.error_type, exc.message, STATUS.get(exc.error_type, 400))
    return success([])


# -- remote read ----------------------------------------------------------------------------------


def read_results(svc: Services, caller: Caller, asked: list[promremote.ReadQuery]) -> bytes:
    storage = promseries.InstrumentationStorage(svc, caller)
    results = []
    for rq in asked:
        found = storage.select([Matcher(*m) for m in rq.matchers], rq.start_ms, rq.end_ms, rq.step_ms)
        results.append([promremote.Series(
            s.labels, zip(s.times.tolist(), s.values.tolist(), strict=True) if s.values is not None else (),
            zip(s.times.tolist(), s.histograms, strict=True) if s.histograms is not None else (),
            promremote.RESET_GAUGE) for s in found])
    return promremote.encode_read_response(results)


@router.post("/read", summary="Prometheus remote read (snappy-compressed protobuf, samples response)",
             response_class=Response, responses={
                 code: {"description": what, "content": {"text/plain": {"schema": {"type": "string"}}}}
                 for code, what in ((400, "not a remote-read request (plain text, as Prometheus answers)"),
                                    (413, f"a request over {MAX_READ} bytes"))})
async def remote_read(request: Request, svc: Svc, caller: Viewer) -> Response:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_READ:
            return PlainTextResponse(f"request over {MAX_READ} bytes", status_code=413)
    try:
        asked = promremote.decode_read_request(body)
        answer = await run_in_threadpool(read_results, svc, caller, asked)
    except (promremote.RemoteError, InputError) as exc:
        return PlainTextResponse(str(exc), status_code=400)
    return Response(answer, headers=promremote.READ_RESPONSE_HEADERS)
