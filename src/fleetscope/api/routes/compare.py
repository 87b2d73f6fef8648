"""``/api/v1/instrumentations/{id}/compare``: one instrumentation over two runs (imports or
time ranges) aligned to their starts, with the difference of averages and percentiles
(:mod:`fleetscope.api.compare`). Viewers may compare; a run that is an import must be one the
caller may list and the instrumentation may read (:func:`fleetscope.api.scope.comparable_import`),
else it is answered as an import that does not exist.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from fleetscope.api import compare, queries, scope
from fleetscope.api.auth import Viewer
from fleetscope.api.errors import responses
from fleetscope.api.params import MAX_ID, MAX_TIME, InstId
from fleetscope.api.services import Services, Svc
from fleetscope.model.access import Caller
from fleetscope.model.errors import InputError, NotFound
from fleetscope.model.instrumentation import Instrumentation

router = APIRouter(prefix="/api/v1/instrumentations/{id}", tags=["values"])

ImportParam = Annotated[int | None, Query(ge=1, le=MAX_ID, description="an import: the run is its rows over "
                                          "its own range")]
TimeParam = Annotated[int | None, Query(ge=0, le=MAX_TIME, description="with the other bound: the run is "
                                        "this range, everything the instrumentation reads there")]
StepParam = Annotated[int | None, Query(ge=1, le=86400 * 366, description="seconds per step (default: the "
                                        "coarser resolution of the runs, at most 1000 steps a run)")]


def _run(svc: Services, caller: Caller, inst: Instrumentation, which: str, import_id: int | None,
         start: int | None, end: int | None) -> compare.Run:
    if import_id is not None:
        if start is not None or end is not None:
            raise InputError(f"{which}_import", f"a run is an import or a range: not both {which}_import "
                             f"and {which}_start/{which}_end")
        info = svc.control.store.get_import(import_id)
        if info is None or info.state != "ready" or not scope.comparable_import(caller, inst, info):
            raise NotFound(f"{which}_import", f"no import {import_id}")
        return compare.ImportRun(info)
    if start is None or end is None:
        raise InputError(f"{which}_start", f"run {which}: give {which}_import, or {which}_start and "
                         f"{which}_end")
    if end <= start:
        raise InputError(f"{which}_end", f"must be after {which}_start")
    return compare.RangeRun(start, end)


def _range(svc: Services, inst: Instrumentation, run: compare.RangeRun, step: int | None) -> queries.Range:
    """The steps a range run is read on: ``step`` (rounded up as its tier needs), or the
    finest that keeps it within :data:`compare.MAX_STEPS`."""
    return queries.resolve_range(inst, svc.latest(inst), run.start, run.end, step,
                                 None if step else compare.MAX_STEPS, tiers=svc.tiers(inst))


@router.get("/compare", summary="Compare two runs (imports or ranges), aligned to their starts",
            description="Each run is an import (`a_import`) or a range (`a_start`, `a_end`); likewise `b`. "
            "The answer has the runs, the step, the aligned series (`offsets`, `series.a`, `series.b`) and "
            "per key the average, percentiles and extremes of each run with their difference (b - a) and "
            "change ((b - a) / |a|).", responses=responses(404, 422))
def compare_runs(id: InstId, svc: Svc, caller: Viewer,
                 a_import: ImportParam = None, a_start: TimeParam = None, a_end: TimeParam = None,
                 b_import: ImportParam = None, b_start: TimeParam = None, b_end: TimeParam = None,
                 step: StepParam = None) -> dict:
    inst = svc.used(caller, id)
    runs = (_run(svc, caller, inst, "a", a_import, a_start, a_end),
            _run(svc, caller, inst, "b", b_import, b_start, b_end))
    ranges = [r for r in runs if isinstance(r, compare.RangeRun)]
    chosen = step
    if chosen is None:
        resolutions = [r.resolution() if isinstance(r, compare.ImportRun) else 1 for r in runs]
        finest = [_range(svc, inst, r, None).duration for r in ranges]
        chosen = max(compare.default_step(runs, resolutions), *finest, 1)
    longest = max(end - start for start, end in (r.span for r in runs))
    if longest / chosen > compare.MAX_STEPS:
        raise InputError("step", f"steps of {chosen} s make more than {compare.MAX_STEPS} of a run: "
                         "use a longer step")
    for _ in range(2):  # a range's tier may round the step up: the other run follows
        chosen = max(chosen, *(_range(svc, inst, r, chosen).duration for r in ranges), 1)
    topk = inst.keys_kept(svc.aggregator.topk)
    points = tuple(compare.import_points(svc.control.store, inst, r, chosen, topk)
                   if isinstance(r, compare.ImportRun) else svc.points(inst, _range(svc, inst, r, chosen))
                   for r in runs)
    return compare.compare(inst, runs, points, chosen)
