"""Values of an instrumentation: ``/value`` (JSON, or a line chart as PNG), and for distributions
``/percentiles`` and ``/average``.

All three take the same range parameters (:mod:`fleetscope.api.queries`) and
answer one point or an array by one rule, :func:`fleetscope.api.params.one_or_many`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import tzinfo
from typing import Annotated, Any, Literal, NamedTuple

from fastapi import APIRouter, Depends, Query, Response

from fleetscope.api import heatmap, linechart, queries
from fleetscope.api.annotations import visible_marks
from fleetscope.api.auth import Viewer
from fleetscope.api.errors import responses
from fleetscope.api.heatmap.png import MAX_PIXELS
from fleetscope.api.params import (
    MAX_TIME,
    ONE_OR_MANY,
    InstId,
    RangeDuration,
    RangeEnd,
    RangePoints,
    RangeStart,
    one_or_many,
)
from fleetscope.api.services import Services, Svc
from fleetscope.model import values
from fleetscope.model.access import Caller
from fleetscope.model.errors import InputError
from fleetscope.model.histogram import Histogram
from fleetscope.model.instrumentation import Instrumentation
from fleetscope.model.series import DataPoint
from fleetscope.model.types import NUMBER

router = APIRouter(prefix="/api/v1/instrumentations/{id}", tags=["values"])
DEFAULT_QUANTILES = "0.5,0.9,0.99"
ENVELOPE = ("also the smallest and the largest of the finer points inside each step (a breakdown: "
            "of their totals), as `envelope`: {min, max, resolution} (values of points of "
            "`resolution` seconds), null where the step has no finer points: the peaks a coarse "
            "step averages away")


class KeyChoice(NamedTuple):
    """Which keys of a breakdown percentiles and averages are of: those a heatmap with the same
    ``selected``, ``isolate`` and ``exclude`` draws (:func:`fleetscope.api.heatmap.keys_shown`)."""

    selected: list[str]
    isolate: bool
    exclude: bool


def _key_choice(
    selected: Annotated[str, Query(description="keys, comma-separated, for isolate or exclude")] = "",
    isolate: Annotated[bool, Query(description="of the selected keys only (as the heatmap's isolate)")]
    = False,
    exclude: Annotated[bool, Query(description="of every key but the selected (as the heatmap's exclude)")]
    = False,
) -> KeyChoice:
    return KeyChoice([k for k in selected.split(",") if k], isolate, exclude)


Keys = Annotated[KeyChoice, Depends(_key_choice)]


def _range(svc: Services, inst: Instrumentation, start_time: int | None, end_time: int | None,
           duration: int | None, ndatapoints: int | None) -> queries.Range:
    return queries.resolve_range(inst, svc.latest(inst), start_time, end_time, duration, ndatapoints,
                                 tiers=svc.tiers(inst))


def _range_points(svc: Services, inst: Instrumentation, start_time: int | None, end_time: int | None,
                  duration: int | None, ndatapoints: int | None) -> tuple[list[DataPoint], int]:
    """The points a request asks for, and the resolution (seconds) of the tier that answered."""
    rng = _range(svc, inst, start_time, end_time, duration, ndatapoints)
    return svc.points(inst, rng), svc.resolution(inst, rng)


def _distribution(svc: Services, caller: Caller, id: int, start_time: int | None, end_time: int | None,
                  duration: int | None, ndatapoints: int | None, keys: KeyChoice,
                  estimate: Callable[[Histogram | None], dict]) -> Any:
    """Percentiles or average: per point, the slot, its sources, the count and what ``estimate``
    makes of the point's histogram (None for a gap; of the keys ``keys`` chooses); one or many by
    :func:`one_or_many`."""
    inst = svc.distribution(caller, id)
    pts, res = _range_points(svc, inst, start_time, end_time, duration, ndatapoints)
    out = []
    for p in pts:
        shown = heatmap.keys_shown(p.value, keys.selected, isolate=keys.isolate, exclude=keys.exclude)
        h = queries.histogram_of(shown, inst.shape)
        out.append({"start_time": p.start_time, "duration": p.duration, "resolution": res,
                    "nsources": p.nsources, "expected": p.expected, "count": h.count if h else 0,
                    **estimate(h)})
    return one_or_many(out, start_time, end_time, ndatapoints)


def _zone(tz: Annotated[str, Query(max_length=64, description=(
        "png: the IANA time zone of the time axis and the range in the title (the dashboard "
        "passes the browser's)"))] = "UTC") -> tzinfo:
    try:
        return linechart.zone_named(tz)
    except ValueError as e:
        raise InputError("tz", str(e)) from None


Zone = Annotated[tzinfo, Depends(_zone)]
ChartPixels = Annotated[int, Query(ge=linechart.MIN_PIXELS, le=MAX_PIXELS, description="pixels (png)")]
_FORMATS = {
    200: {"description": "the points (json) or a line chart of them (png)",
          "content": {"application/json": {},
                      "image/png": {"schema": {"type": "string", "format": "binary"}}}},
}


@router.get("/value", summary="Values: one point, or an array; or a line chart (PNG)",
            description=f"{ONE_OR_MANY} `format=png`: the points of the range drawn as the dashboard's "
                        "line panel draws them (interval metrics per second).",
            responses={**_FORMATS, **responses(404, 409, 422)})
def value(id: InstId, svc: Svc, caller: Viewer, start_time: RangeStart = None, end_time: RangeEnd = None,
          duration: RangeDuration = None, ndatapoints: RangePoints = None,
          envelope: Annotated[bool, Query(description=ENVELOPE)] = False,
          format: Annotated[Literal["json", "png"], Query(
              description="json: the points; png: a line chart of them")] = "json",
          width: ChartPixels = 800,
          height: ChartPixels = 300,
          selected: Annotated[str, Query(description=(
              "png: the keys of a breakdown drawn, comma-separated (default the `top` keys by their "
              "total over the range); every other key is summed as (other)"))] = "",
          top: Annotated[int, Query(ge=1, le=linechart.MAX_KEYS_DRAWN, description=(
              "png: keys drawn when none are selected"))] = 8,
          other: Annotated[bool, Query(description=(
              "png: the keys not drawn, summed as (other) (false: as the dashboard's isolate)"))] = True,
          stacked: Annotated[bool, Query(description="png: the keys stacked, their areas filled")] = False,
          ymax: Annotated[float | None, Query(gt=0, description=(
              "png: the top of the value axis (default: a tidy number at or above the largest value "
              "drawn)"))] = None,
          annotations: Annotated[bool, Query(description=(
              "png: draw the annotations, alert state changes and imports of the range the caller "
              "may see (GET /api/v1/annotations) as markers"))] = True,
          compare: Annotated[int | None, Query(ge=1, le=MAX_TIME, description=(
              "png: also the same range this many seconds earlier (the dashboard: 86400 or 604800), "
              "dashed (a breakdown: its total), and both averages in the title"))] = None,
          tz: Zone = None) -> Any:
    inst = svc.used(caller, id)
    lines_only = envelope or format == "png"
    if lines_only and inst.shape not in (values.SCALAR, values.DISCRETE):
        field = "envelope" if envelope else "format"
        raise InputError(field, f"instrumentation {inst.id} is a distribution: its heatmap shows "
                         f"what each step holds ({field} is for numbers and breakdowns)", 409)
    rng = _range(svc, inst, start_time, end_time, duration, ndatapoints)
    pts = svc.points(inst, rng)
    if format == "png":
        look = Look(width, height, selected, top, other, stacked, ymax, annotations, envelope, compare, tz)
        return Response(_chart(svc, caller, inst, rng, pts, look), media_type="image/png")
    res = svc.resolution(inst, rng)
    out = [{**p.to_json(inst.shape), "resolution": res} for p in pts]
    if envelope:
        found = svc.envelopes(inst, rng)
        for p in out:
            e = found.get(p["start_time"])
            p["envelope"] = e.to_json() if e else None
    return one_or_many(out, start_time, end_time, ndatapoints)


class Look(NamedTuple):
    """What a line PNG draws besides the points: the ``/value`` parameters of ``format=png``."""

    width: int
    height: int
    selected: str
    top: int
    other: bool
    stacked: bool
    ymax: float | None
    annotations: bool
    envelope: bool
    compare: int | None
    zone: tzinfo


def _chart(svc: Services, caller: Caller, inst: Instrumentation, rng: queries.Range, pts: list[DataPoint],
           look: Look) -> bytes:
    """The PNG of ``pts`` (:func:`fleetscope.api.linechart.render_lines`)."""
    keys = [k for k in look.selected.split(",") if k]
    if len(keys) > linechart.MAX_KEYS_DRAWN:
        raise InputError("selected", f"at most {linechart.MAX_KEYS_DRAWN} keys are drawn, not {len(keys)}")
    if look.ymax is not None and not math.isfinite(look.ymax):
        raise InputError("ymax", "must be a finite number")
    rate = inst.kind == "interval"
    unit = svc.unit(inst) or NUMBER
    series = linechart.line_series(pts, inst.shape, rate=rate, selected=keys, top=look.top, other=look.other)
    now = linechart.totals(pts, rate=rate)
    band = None
    if look.envelope:
        found = svc.envelopes(inst, rng)
        colour = linechart.MUTED if inst.discrete else linechart.PALETTE[0]
        band = linechart.envelope_band(now, [found.get(p.start_time) for p in pts], rate=rate, colour=colour)
    earlier = None
    said = ""
    if look.compare:
        then = linechart.totals(svc.earlier_points(inst, rng, look.compare), rate=rate)
        earlier = linechart.Series("(earlier)", linechart.MUTED, then)
        said = "  " + linechart.compare_label(now, then, unit, rate)
    end = rng.start + rng.n * rng.duration
    by = f" by {inst.discrete}" if inst.discrete else ""
    title = f"{inst.metric}{by}  {linechart.range_label(rng.start, end, look.zone)}{said}"
    marks = visible_marks(svc, caller, rng.start, end) if look.annotations else []
    return linechart.render_lines(rng.times(), rng.duration, series, width=look.width, height=look.height,
                                  unit=unit, rate=rate, stacked=look.stacked, title=title, ymax=look.ymax,
                                  marks=marks, band=band, earlier=earlier, zone=look.zone)


@router.get("/percentiles", summary="Percentiles estimated from the buckets",
            description=f"{ONE_OR_MANY} Each point has `percentiles`: {{q: value}}, null for a gap.",
            responses=responses(404, 409, 422))
def percentiles(id: InstId, svc: Svc, caller: Viewer,
                q: Annotated[str, Query(description="quantiles between 0 and 1, comma-separated")]
                = DEFAULT_QUANTILES,
                start_time: RangeStart = None, end_time: RangeEnd = None,
                duration: RangeDuration = None, ndatapoints: RangePoints = None, keys: Keys = None) -> Any:
    qs = queries.parse_quantiles(q)
    return _distribution(svc, caller, id, start_time, end_time, duration, ndatapoints, keys, lambda h: {
        "percentiles": {f"{x:g}": queries.finite_or_none(h.quantile(x)) if h else None for x in qs}})


@router.get("/average", summary="Average estimated from the buckets",
            description=f"{ONE_OR_MANY} Each point has `average`, null for a gap.",
            responses=responses(404, 409, 422))
def average(id: InstId, svc: Svc, caller: Viewer, start_time: RangeStart = None, end_time: RangeEnd = None,
            duration: RangeDuration = None, ndatapoints: RangePoints = None, keys: Keys = None) -> Any:
    return _distribution(svc, caller, id, start_time, end_time, duration, ndatapoints, keys, lambda h: {
        "average": queries.finite_or_none(h.mean()) if h else None})
