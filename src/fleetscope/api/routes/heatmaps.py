"""``/api/v1/instrumentations/{id}/heatmap`` (JSON matrix, PNG or Grafana cells), its cell details
and the keys of its range."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response

from fleetscope.api import exposition, heatmap, queries
from fleetscope.api.annotations import visible_marks
from fleetscope.api.auth import Viewer
from fleetscope.api.errors import responses
from fleetscope.api.heatmap.matrix import MAX_NBUCKETS
from fleetscope.api.heatmap.png import MAX_PIXELS, Line
from fleetscope.api.linechart import change_label, value_label
from fleetscope.api.params import MAX_TIME, InstId, RangeEnd, RangeStart
from fleetscope.api.services import Svc
from fleetscope.model.errors import InputError
from fleetscope.model.instrumentation import Instrumentation
from fleetscope.model.types import NUMBER, Type, format_quantity

router = APIRouter(prefix="/api/v1/instrumentations/{id}", tags=["heatmaps"])

HeatmapColumns = Annotated[int | None, Query(ge=1, le=queries.MAX_POINTS, description=(
    "number of columns (default: one per slot, at most 1000)"))]
HeatmapDuration = Annotated[int | None, Query(ge=1, le=MAX_TIME, description=(
    "seconds covered (default 60 slots)"))]
Pixels = Annotated[int | None, Query(ge=1, le=MAX_PIXELS, description="pixels (png; default one per cell)")]
MAX_LINES = 8  # lines over a map: the panel offers four

_FORMATS = {
    200: {"description": "the matrix (json), an image (png) or Grafana heatmap cells (grafana)",
          "content": {"application/json": {},
                      "image/png": {"schema": {"type": "string", "format": "binary"}}}},
}


@router.get("/heatmap", summary="Heatmap: JSON matrix or PNG",
            responses={**_FORMATS, **responses(404, 409, 422)})
def get_heatmap(
    id: InstId,
    svc: Svc,
    caller: Viewer,
    start_time: RangeStart = None,
    end_time: RangeEnd = None,
    duration: HeatmapDuration = None,
    ndatapoints: HeatmapColumns = None,
    step: Annotated[int | None, Query(ge=1, le=MAX_TIME, description=(
        "seconds per column (default: what fits ndatapoints columns)"))] = None,
    width: Pixels = None,
    height: Pixels = None,
    ymin: float = 0.0,
    ymax: float | None = None,
    nbuckets: Annotated[int, Query(ge=1, le=MAX_NBUCKETS, description="rows")] = 100,
    selected: Annotated[str, Query(description="keys drawn in their own hue, comma-separated")] = "",
    isolate: bool = False,
    exclude: bool = False,
    coloring: Literal["rank", "linear"] = "rank",
    scale: Literal["linear", "log"] = "linear",
    annotations: Annotated[bool, Query(description=(
        "png: draw the annotations, alert state changes and imports of the range the caller "
        "may see (GET /api/v1/annotations) as markers"))] = True,
    lines: Annotated[str, Query(max_length=200, description=(
        "png: lines over the map, comma-separated: avg (the average), pNN (a percentile, e.g. p90), "
        "of what the map shows (the selected keys with isolate, all but them with exclude)"))] = "",
    compare: Annotated[int | None, Query(ge=1, le=MAX_TIME, description=(
        "png: also the average and the `lines` of the same columns this many seconds earlier (the "
        "dashboard: 86400 or 604800), dashed, and both averages and counts in a caption"))] = None,
    format: Annotated[Literal["json", "png", "grafana"], Query(
        description="json: the matrix; png: an image; grafana: Grafana heatmap cells "
                    "[{xMin (epoch ms), yMin, yMax, count}] for the JSON/Infinity data source")] = "json",
) -> Any:
    inst = svc.distribution(caller, id)
    # Columns of `step` seconds, else at most `ndatapoints` (default queries.HEATMAP_COLUMNS),
    # from the finest history tier that holds the range.
    rng = queries.heatmap_range(inst, svc.latest(inst), start_time, end_time, duration, step, ndatapoints,
                                tiers=svc.tiers(inst))
    columns = [p.value for p in svc.points(inst, rng)]
    keys = [k for k in selected.split(",") if k]
    matrix = heatmap.heatmap_matrix(columns, ymin=ymin, ymax=ymax, nbuckets=nbuckets,
                                    selected=keys, isolate=isolate, exclude=exclude,
                                    log=scale == "log")
    if format == "png":
        marks = visible_marks(svc, caller, rng.start, rng.end) if annotations else []
        wanted = _line_names(lines)
        shown = [heatmap.keys_shown(c, keys, isolate=isolate, exclude=exclude) for c in columns]
        drawn = _lines(shown, wanted)
        caption = ""
        if compare:
            past = [heatmap.keys_shown(p.value, keys, isolate=isolate, exclude=exclude)
                    for p in svc.earlier_points(inst, rng, compare)]
            drawn += [line._replace(earlier=True) for line in _lines(past, {"avg": None, **wanted})]
            caption = _compare_caption(inst, svc.unit(inst), shown, past)
        png = heatmap.render_png(matrix, width=width, height=height, coloring=coloring,
                                 selected_order=keys, marks=marks, lines=drawn, caption=caption)
        return Response(png, media_type="image/png")
    if format == "grafana":
        return exposition.grafana_cells(matrix.edges(), rng.times(),
                                        [matrix.counts, *matrix.keys.values()])
    body = matrix.to_json(rng.times())
    body.update({"start_time": rng.start, "duration": rng.n * rng.duration, "step": rng.duration,
                 "resolution": svc.resolution(inst, rng), "unit": _json(svc.unit(inst))})
    return body


@router.get("/heatmap/details", summary="The counts in one heatmap cell, by key",
            responses=responses(404, 409, 422))
def heatmap_details(
    id: InstId,
    svc: Svc,
    caller: Viewer,
    t: Annotated[int, Query(ge=0, le=MAX_TIME, description="epoch seconds inside the cell's column")],
    ymin: float,
    ymax: float,
    duration: Annotated[int | None, Query(ge=1, le=MAX_TIME, description=(
        "seconds in the cell's column (default: the granularity)"))] = None,
) -> dict:
    inst = svc.distribution(caller, id)
    if ymax <= ymin:
        raise InputError("ymax", "must be greater than ymin")
    rng = queries.resolve_range(inst, None, start_time=t, duration=duration, ndatapoints=1,
                                tiers=svc.tiers(inst))
    columns = [p.value for p in svc.points(inst, rng)]
    details = heatmap.cell_details(columns, rng.times(), rng.start, ymin, ymax)
    return {**details, "step": rng.duration, "resolution": svc.resolution(inst, rng)}


MAX_KEYS_LISTED = 10_000  # keys one answer lists (a breakdown keeps at most its top K a slot)


@router.get("/heatmap/keys", summary="Every key of a range's breakdown with its count, largest first",
            responses=responses(404, 409, 422))
def heatmap_keys(
    id: InstId,
    svc: Svc,
    caller: Viewer,
    start_time: RangeStart = None,
    end_time: RangeEnd = None,
    duration: HeatmapDuration = None,
    ndatapoints: HeatmapColumns = None,
) -> dict:
    """What a heatmap's key search looks among: the keys of the columns the same range parameters
    would draw (so the work is that of one heatmap of the range), not only the selected ones."""
    inst = svc.distribution(caller, id)
    if not inst.discrete:
        raise InputError("decomposition", f"instrumentation {id} has no discrete field in its decomposition: "
                         "it has no keys", 409)
    rng = queries.heatmap_range(inst, svc.latest(inst), start_time, end_time, duration, None, ndatapoints,
                                tiers=svc.tiers(inst))
    ranked = heatmap.key_totals([p.value for p in svc.points(inst, rng)])
    return {"start_time": rng.start, "duration": rng.n * rng.duration, "field": inst.discrete,
            "total_keys": len(ranked),
            "keys": [{"key": k, "count": n} for k, n in ranked[:MAX_KEYS_LISTED]]}


def _line_names(text: str) -> dict[str, float | None]:
    """``avg,p90`` as ``{name: quantile}`` (``avg``: None), in order, each line once: ``avg`` or
    ``pNN`` with NN above 0 and below 100."""
    names: dict[str, float | None] = {}
    for name in (n.strip() for n in text.split(",") if n.strip()):
        try:
            # To a millionth of a percent, as percentile_lines names its lines: one line a name.
            q = None if name == "avg" else round(float(name[1:]), 6) / 100 if name[:1] == "p" else math.nan
        except ValueError:
            q = math.nan
        if q is not None and not 0 < q < 1:
            raise InputError("lines", f"{name[:20]!r} is neither avg nor a percentile such as p90")
        if q not in names.values():
            names[name] = q
    if len(names) > MAX_LINES:
        raise InputError("lines", f"at most {MAX_LINES} lines, not {len(names)}")
    return names


def _lines(columns: list, names: dict[str, float | None]) -> list[Line]:
    """The lines ``names`` of ``columns`` (:func:`fleetscope.api.heatmap.average_line`,
    :func:`~fleetscope.api.heatmap.percentile_lines`)."""
    qs = [q for q in names.values() if q is not None]
    found = iter(heatmap.percentile_lines(columns, qs).values() if qs else ())
    return [Line(n, heatmap.average_line(columns) if q is None else next(found)) for n, q in names.items()]


def _compare_caption(inst: Instrumentation, unit: Type | None, now: list, past: list) -> str:
    """``avg 20 ms vs 10 ms (+100.0 %) · n 2,900 vs 2,800``: the averages of both ranges (the mean of
    their merged histograms) and their counts, as the heatmap panel's toolbar says them."""
    def whole(columns: list) -> tuple[float | None, int]:
        total, n = 0.0, 0
        for c in columns:
            h = queries.histogram_of(c, inst.shape)
            if h is not None and h.count:
                total += h.mean() * h.count
                n += h.count
        return (total / n if n else None), n

    (a, na), (b, nb) = whole(now), whole(past)
    shown = unit or NUMBER
    return (f"avg {value_label(a, shown, False)} vs {value_label(b, shown, False)}{change_label(a, b)}"
            f" · n {format_quantity(na, NUMBER)} vs {format_quantity(nb, NUMBER)}")


def _json(unit: Type | None) -> dict | None:
    return unit.to_json() if unit else None
