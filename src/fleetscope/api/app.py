"""The HTTP API (JSON, OpenAPI at /api/v1/openapi.json)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, FastAPI, Query, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict

from fleetscope import __version__
from fleetscope.aggregator.aggregator import Aggregator
from fleetscope.api import dashboards, errors, exposition, heatmap, promproto, queries, stream
from fleetscope.api import history as history_api
from fleetscope.api.control import ControlPlane
from fleetscope.model import predicate as predicates
from fleetscope.model.errors import InputError
from fleetscope.model.instrumentation import Instrumentation, validate_spec
from fleetscope.store.history import History

WEB_DIR = Path(__file__).resolve().parent.parent / "web"

Seconds = int | str  # a number of seconds or a duration such as "10m"


class InstrumentationCreate(BaseModel):
    """The body of a create. ``predicate`` is the JSON form or the text form."""

    model_config = ConfigDict(extra="forbid")
    module: str | None = None
    stat: str | None = None
    metric: str | None = None
    predicate: dict[str, Any] | str | None = None
    decomposition: list[str] | None = None
    granularity: Seconds | None = None
    retention: Seconds | None = None
    idle_max: Seconds | None = None
    persist: bool | None = None
    history: dict[str, Any] | str | None = None  # retention per history tier: {"minute": "90d"}


class InstrumentationUpdate(BaseModel):
    """The body of a change: only these may change after creation."""

    model_config = ConfigDict(extra="forbid")
    retention: Seconds | None = None
    idle_max: Seconds | None = None
    persist: bool | None = None
    history: dict[str, Any] | str | None = None


class Services:
    """What the API reads from: the control plane, the real-time window and the history."""

    def __init__(self, control: ControlPlane, aggregator: Aggregator, history: History | None = None) -> None:
        self.control = control
        self.aggregator = aggregator
        self.history = history


RangeStart = Annotated[int | None, Query(description="epoch seconds of the first point")]
RangeEnd = Annotated[int | None, Query(description="epoch seconds where the range ends")]
RangeDuration = Annotated[int | None, Query(description="seconds per data point (multiple of granularity)")]
RangePoints = Annotated[int | None, Query(description="number of data points (an array is returned)")]
HeatmapColumns = Annotated[int | None, Query(description="number of columns (default: one per slot)")]


def build_router(svc: Services) -> APIRouter:
    r = APIRouter(prefix="/api/v1")
    control, aggregator = svc.control, svc.aggregator

    def used(id: int) -> Instrumentation:
        inst = control.get(id)
        control.touch(id)
        return inst

    def points(inst: Instrumentation, start_time, end_time, duration, ndatapoints, default_points=1):
        window = aggregator.window(inst.id)
        latest = window.latest() if window else None
        rng = queries.resolve_range(inst, latest, start_time, end_time, duration, ndatapoints,
                                    default_points, tiers=queries.tiers_of(inst, svc.history))
        return rng, queries.data_points(inst, window, rng, aggregator.topk, svc.history)

    @r.get("/metrics", summary="Metrics, their fields and units (discovery)")
    def list_metrics() -> dict:
        return {"metrics": [mt.to_json() for mt in control.catalog]}

    @r.get("/hosts", summary="Every agent: status, last report, version, clock offset, instrumentations")
    def list_hosts() -> dict:
        return {"hosts": control.host_list()}

    @r.get("/instrumentations", summary="Every instrumentation")
    def list_instrumentations() -> dict:
        return {"instrumentations": [i.to_json() for i in control.list()]}

    @r.post("/instrumentations", status_code=201, summary="Create an instrumentation")
    async def create_instrumentation(body: InstrumentationCreate) -> dict:
        inst = await control.create(body.model_dump(exclude_none=True))
        return inst.to_json()

    @r.post("/instrumentations/validate", summary="Check a create body without creating anything")
    def validate_instrumentation(body: InstrumentationCreate) -> dict:
        spec = validate_spec(body.model_dump(exclude_none=True), control.catalog)
        return {**spec, "metric": f"{spec['module']}.{spec['stat']}",
                "predicate_text": predicates.to_text(spec["predicate"]) if spec["predicate"] else ""}

    @r.get("/instrumentations/{id}", summary="One instrumentation")
    def get_instrumentation(id: int) -> dict:
        return control.get(id).to_json()

    @r.patch("/instrumentations/{id}", summary="Change retention, idle_max or persist")
    async def update_instrumentation(id: int, body: Annotated[InstrumentationUpdate, Body()]) -> dict:
        return (await control.update(id, body.model_dump(exclude_none=True))).to_json()

    @r.delete("/instrumentations/{id}", status_code=204, summary="Delete an instrumentation")
    async def delete_instrumentation(id: int) -> Response:
        await control.delete(id)
        return Response(status_code=204)

    @r.get("/instrumentations/{id}/value", summary="Values: one point, or an array with ndatapoints")
    def value(id: int, start_time: RangeStart = None, end_time: RangeEnd = None,
              duration: RangeDuration = None, ndatapoints: RangePoints = None) -> Any:
        inst = used(id)
        rng, pts = points(inst, start_time, end_time, duration, ndatapoints)
        res = queries.resolution(inst, rng, svc.history)  # the tier that answered
        out = [{**p.to_json(inst.shape), "resolution": res} for p in pts]
        as_array = ndatapoints is not None or (start_time is not None and end_time is not None)
        return out if as_array else out[-1]

    def distribution_points(id, start_time, end_time, duration, ndatapoints):
        inst = used(id)
        queries.require_distribution(inst)
        rng, pts = points(inst, start_time, end_time, duration, ndatapoints)
        return inst, pts, queries.resolution(inst, rng, svc.history)

    @r.get("/instrumentations/{id}/percentiles", summary="Percentiles estimated from the buckets")
    def percentiles(id: int, q: str = "0.5,0.9,0.99", start_time: RangeStart = None,
                    end_time: RangeEnd = None, duration: RangeDuration = None,
                    ndatapoints: RangePoints = None) -> Any:
        qs = queries.parse_quantiles(q)
        inst, pts, res = distribution_points(id, start_time, end_time, duration, ndatapoints)
        out = []
        for p in pts:
            h = queries.histogram_of(p.value, inst.shape)
            out.append({"start_time": p.start_time, "duration": p.duration, "resolution": res,
                        "nsources": p.nsources, "expected": p.expected, "count": h.count if h else 0,
                        "percentiles": {f"{x:g}": queries.finite_or_none(h.quantile(x)) if h else None
                                        for x in qs}})
        return out if ndatapoints is not None or end_time is not None else out[-1]

    @r.get("/instrumentations/{id}/average", summary="Average estimated from the buckets")
    def average(id: int, start_time: RangeStart = None, end_time: RangeEnd = None,
                duration: RangeDuration = None, ndatapoints: RangePoints = None) -> Any:
        inst, pts, res = distribution_points(id, start_time, end_time, duration, ndatapoints)
        out = []
        for p in pts:
            h = queries.histogram_of(p.value, inst.shape)
            out.append({"start_time": p.start_time, "duration": p.duration, "resolution": res,
                        "nsources": p.nsources, "expected": p.expected, "count": h.count if h else 0,
                        "average": queries.finite_or_none(h.mean()) if h else None})
        return out if ndatapoints is not None or end_time is not None else out[-1]

    def heatmap_columns(id: int, start_time, end_time, duration, ndatapoints=None, step=None):
        inst = used(id)
        queries.require_distribution(inst)
        window = aggregator.window(inst.id)
        latest = window.latest() if window else None
        # Columns of `step` seconds, else at most `ndatapoints` (default queries.HEATMAP_COLUMNS),
        # from the finest history tier that holds the range.
        rng = queries.heatmap_range(inst, latest, start_time, end_time, duration, step, ndatapoints,
                                    tiers=queries.tiers_of(inst, svc.history))
        pts = queries.data_points(inst, window, rng, aggregator.topk, svc.history)
        return inst, rng, [p.value for p in pts]

    @r.get("/instrumentations/{id}/heatmap", summary="Heatmap: JSON matrix or PNG")
    def get_heatmap(
        id: int,
        start_time: RangeStart = None,
        end_time: RangeEnd = None,
        duration: Annotated[int | None, Query(description="seconds covered (default 60 slots)")] = None,
        ndatapoints: HeatmapColumns = None,
        step: Annotated[int | None, Query(description="seconds per column (default: what fits "
                                          "ndatapoints columns)")] = None,
        width: int | None = None,
        height: int | None = None,
        ymin: float = 0.0,
        ymax: float | None = None,
        nbuckets: int = 100,
        selected: str = "",
        isolate: bool = False,
        exclude: bool = False,
        coloring: Literal["rank", "linear"] = "rank",
        scale: Literal["linear", "log"] = "linear",
        format: Annotated[Literal["json", "png", "grafana"], Query(
            description="json: the matrix; png: an image; grafana: Grafana heatmap cells "
                        "[{xMin (epoch ms), yMin, yMax, count}] for the JSON/Infinity data source")] = "json",
    ) -> Any:
        inst, rng, columns = heatmap_columns(id, start_time, end_time, duration, ndatapoints, step)
        keys = [k for k in selected.split(",") if k]
        matrix = heatmap.heatmap_matrix(columns, ymin=ymin, ymax=ymax, nbuckets=nbuckets,
                                        selected=keys, isolate=isolate, exclude=exclude,
                                        log=scale == "log")
        if format == "png":
            png = heatmap.render_png(matrix, width=width, height=height, coloring=coloring,
                                     selected_order=keys)
            return Response(png, media_type="image/png")
        if format == "grafana":
            return exposition.grafana_cells(matrix.edges(), rng.times(),
                                            [matrix.counts, *matrix.keys.values()])
        body = matrix.to_json(rng.times())
        body.update({"start_time": rng.start, "duration": rng.n * rng.duration, "step": rng.duration,
                     "resolution": queries.resolution(inst, rng, svc.history),
                     "unit": _numeric_unit(control, inst)})
        return body

    @r.get("/instrumentations/{id}/heatmap/details", summary="The counts in one heatmap cell, by key")
    def heatmap_details(id: int, t: int, ymin: float, ymax: float,
                        duration: Annotated[int | None, Query(description="seconds in the cell's column "
                                                              "(default: the granularity)")] = None) -> dict:
        inst = used(id)
        queries.require_distribution(inst)
        if ymax <= ymin:
            raise InputError("ymax", "must be greater than ymin")
        if t < 0:
            raise InputError("t", "must not be negative")
        window = aggregator.window(inst.id)
        rng = queries.resolve_range(inst, None, start_time=t, duration=duration, ndatapoints=1,
                                    tiers=queries.tiers_of(inst, svc.history))
        pts = queries.data_points(inst, window, rng, aggregator.topk, svc.history)
        details = heatmap.cell_details([p.value for p in pts], rng.times(), rng.start, ymin, ymax)
        return {**details, "step": rng.duration, "resolution": queries.resolution(inst, rng, svc.history)}

    return r


def _numeric_unit(control: ControlPlane, inst: Instrumentation) -> dict | None:
    try:
        metric = control.catalog.get(inst.module, inst.stat)
        return metric.field(inst.numeric).type.to_json() if inst.numeric else metric.unit.to_json()
    except InputError:
        return None


def create_app(svc: Services, lifespan=None) -> FastAPI:
    """The API application over ``svc``; ``lifespan`` starts and stops the services around it."""
    app = FastAPI(
        title="fleetscope",
        version=__version__,
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/v1/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    errors.install(app)
    app.include_router(build_router(svc))
    app.include_router(stream.build_router(svc.control, svc.aggregator))
    app.include_router(history_api.build_router(svc))
    app.include_router(dashboards.build_router(
        svc.control.store, lambda i: svc.control.store.get_instrumentation(i) is not None))

    @app.get("/metrics", include_in_schema=False)
    def prometheus_metrics(request: Request) -> Response:
        """Every instrumentation's current value in the Prometheus text format, or
        OpenMetrics, or the protobuf exposition with native histograms, as the scraper
        asks: see api/exposition.py and api/promproto.py."""
        accept = request.headers.get("accept")
        samples = exposition.current_samples(svc.control.list(), svc.aggregator.window)
        if promproto.wants_protobuf(accept):  # native histograms, exact
            return Response(promproto.render(samples), media_type=promproto.CONTENT_TYPE)
        om = exposition.wants_openmetrics(accept)
        return Response(exposition.render(samples, om),
                        media_type=exposition.OPENMETRICS if om else exposition.TEXT)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok", "version": __version__})

    if (WEB_DIR / "index.html").exists():
        @app.get("/", include_in_schema=False)
        def index() -> FileResponse:
            return FileResponse(WEB_DIR / "index.html")

        app.mount("/web", StaticFiles(directory=WEB_DIR), name="web")

    return app
