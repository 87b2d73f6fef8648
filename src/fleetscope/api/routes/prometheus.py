"""``/prometheus/api/v1/…``: the Prometheus HTTP API's discovery endpoints, for Grafana and
promtool (``status/buildinfo``, ``labels``, ``label/<name>/values``, ``series``,
``metadata``), GET or form-encoded POST, in Prometheus' JSON envelope and error types.

The mapping from instrumentations to series is :mod:`fleetscope.api.promseries`. A caller sees
only the instrumentations of its scope (:meth:`fleetscope.api.services.Services.listed`).
Without ``start`` and ``end`` a request covers the last hour.
"""

from __future__ import annotations

import math
import time
from datetime import datetime
from typing import Literal
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from fleetscope import __version__
from fleetscope.api import promseries, queries
from fleetscope.api.auth import Caller, Viewer
from fleetscope.api.services import Services, Svc
from fleetscope.model import values
from fleetscope.model.errors import InputError
from fleetscope.model.instrumentation import Instrumentation


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


def success(data: object, warnings: list[str] | None = None) -> JSONResponse:
    body: dict = {"status": "success", "data": data}
    if warnings:
        body["warnings"] = warnings
    return JSONResponse(body)


def failure(error_type: str, message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"status": "error", "errorType": error_type, "error": message}, status_code=status)


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
        self.end = timestamp(p.get("end", [None])[-1], "end", now)
        self.start = timestamp(p.get("start", [None])[-1], "start", self.end - DEFAULT_SPAN)
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
            if not ask.matchers or any(promseries.matches(labels, ms) for ms in ask.matchers):
                out.append(labels)
                if len(out) > promseries.MAX_SERIES:
                    raise InputError("match[]", f"selects over {promseries.MAX_SERIES} series: narrow it")
    return out


@router.api_route("/status/buildinfo", methods=METHODS, summary="Prometheus API: the server's version")
def buildinfo(caller: Viewer) -> JSONResponse:
    return success({"version": __version__, "revision": "", "branch": "", "buildUser": "fleetscope",
                    "buildDate": "", "goVersion": ""})


@router.api_route("/labels", methods=METHODS, summary="Prometheus API: label names")
async def label_names(request: Request, svc: Svc, caller: Viewer) -> JSONResponse:
    try:
        ask = Ask(await params(request))
        if ask.matchers:
            found = await run_in_threadpool(selected, svc, caller, ask)
            names = {n for labels in found for n in labels}
        else:
            names = {n for inst in svc.listed(caller) for n in promseries.label_names(inst)}
    except InputError as exc:
        return failure("bad_data", f"{exc.field}: {exc.message}")
    return success(sorted(names))


@router.api_route("/label/{name}/values", methods=METHODS, summary="Prometheus API: the values of a label")
async def label_values(name: str, request: Request, svc: Svc, caller: Viewer) -> JSONResponse:
    try:
        ask = Ask(await params(request))
        if name == promseries.NAME and not ask.matchers:
            found = {n for inst in svc.listed(caller) for n in promseries.names(inst)}
        else:
            series = await run_in_threadpool(selected, svc, caller, ask)
            found = {labels[name] for labels in series if name in labels}
    except InputError as exc:
        return failure("bad_data", f"{exc.field}: {exc.message}")
    return success(sorted(found))


@router.api_route("/series", methods=METHODS, summary="Prometheus API: the series selectors match")
async def list_series(request: Request, svc: Svc, caller: Viewer) -> JSONResponse:
    try:
        ask = Ask(await params(request), need_match=True)
        found = await run_in_threadpool(selected, svc, caller, ask)
    except InputError as exc:
        return failure("bad_data", f"{exc.field}: {exc.message}")
    return success(found)


@router.api_route("/metadata", methods=METHODS, summary="Prometheus API: metric types, help and units")
async def metadata(request: Request, svc: Svc, caller: Viewer) -> JSONResponse:
    try:
        p = await params(request)
    except InputError as exc:
        return failure("bad_data", f"{exc.field}: {exc.message}")
    wanted = p.get("metric", [None])[-1]
    out: dict[str, list[dict]] = {}
    for inst in svc.listed(caller):
        help_text = f"instrumentation {inst.id}: {inst.metric}" + (
            f" by {', '.join(inst.decomposition)}" if inst.decomposition else "")
        for metric, entries in promseries.metadata(inst, help_text).items():
            if wanted in (None, metric):
                out.setdefault(metric, []).extend(entries)
    return success(out)
