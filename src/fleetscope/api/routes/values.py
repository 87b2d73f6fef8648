"""Values of an instrumentation: ``/value``, and for distributions ``/percentiles`` and ``/average``.

All three take the same range parameters (:mod:`fleetscope.api.queries`) and
answer one point or an array by one rule, :func:`fleetscope.api.params.one_or_many`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, NamedTuple

from fastapi import APIRouter, Depends, Query

from fleetscope.api import heatmap, queries
from fleetscope.api.auth import Viewer
from fleetscope.api.errors import responses
from fleetscope.api.params import (
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


@router.get("/value", summary="Values: one point, or an array", description=ONE_OR_MANY,
            responses=responses(404, 409, 422))
def value(id: InstId, svc: Svc, caller: Viewer, start_time: RangeStart = None, end_time: RangeEnd = None,
          duration: RangeDuration = None, ndatapoints: RangePoints = None,
          envelope: Annotated[bool, Query(description=ENVELOPE)] = False) -> Any:
    inst = svc.used(caller, id)
    if envelope and inst.shape not in (values.SCALAR, values.DISCRETE):
        raise InputError("envelope", f"instrumentation {inst.id} is a distribution: its heatmap shows "
                         "what each step holds (envelopes are for numbers and breakdowns)", 409)
    rng = _range(svc, inst, start_time, end_time, duration, ndatapoints)
    pts, res = svc.points(inst, rng), svc.resolution(inst, rng)
    out = [{**p.to_json(inst.shape), "resolution": res} for p in pts]
    if envelope:
        found = svc.envelopes(inst, rng)
        for p in out:
            e = found.get(p["start_time"])
            p["envelope"] = e.to_json() if e else None
    return one_or_many(out, start_time, end_time, ndatapoints)


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
