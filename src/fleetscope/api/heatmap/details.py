"""The details of one heatmap cell (its time, its value range, the total count and the count per
key), and the keys of a whole range (what a heatmap's key search looks among)."""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from itertools import pairwise

import numpy as np

from fleetscope.api.heatmap import args
from fleetscope.api.heatmap.matrix import Column
from fleetscope.api.heatmap.spread import collect
from fleetscope.model.errors import InputError
from fleetscope.model.histogram import Histogram


def cell_details(
    columns: Sequence[Column],
    times: Sequence[float],
    t: float,
    ymin: float,
    ymax: float,
) -> dict:
    """The counts of one cell: the column at time ``t``, values in ``[ymin, ymax)``.

    ``t`` picks the column whose time equals it, else the one whose slot
    ``[time, time + step)`` contains it (``step`` = ``times[1] - times[0]``, or
    1 s with a single column). Counts are estimated with the same spread rule
    as :func:`heatmap_matrix`. Returns ``{"time", "index", "ymin", "ymax",
    "present", "total", "keys": {key: count}}``, keys (dict columns only) with a
    non-zero count, largest first.
    """
    if len(times) != len(columns):
        raise InputError("times", f"expected {len(columns)} times, got {len(times)}")
    t = args.number(t, "t")
    ymin = args.number(ymin, "ymin")
    ymax = args.number(ymax, "ymax")
    if ymax <= ymin:
        raise InputError("ymax", "must be greater than ymin")
    index = _column_at(times, t)
    col = columns[index]
    out = {
        "time": times[index],
        "index": index,
        "ymin": ymin,
        "ymax": ymax,
        "present": col is not None,
        "total": 0.0,
        "keys": {},
    }
    if col is None:
        return out
    if isinstance(col, Histogram):
        names, hists = [], [col]
    elif isinstance(col, dict):
        names, hists = list(col), list(col.values())
        if not all(isinstance(h, Histogram) for h in hists):
            raise InputError("columns", f"column {index}: not a dict of histograms")
    else:
        raise InputError("columns", f"column {index}: expected null, a histogram or a dict")
    per = collect(hists, range(len(hists))).spread(np.array([ymin, ymax]), len(hists))[0][:, 0]
    out["total"] = float(per.sum())
    ranked = sorted(zip(names, per.tolist(), strict=False), key=lambda kv: -kv[1])
    out["keys"] = {key: n for key, n in ranked if n > 0}
    return out


def key_totals(columns: Sequence[Column]) -> list[tuple[str, float]]:
    """Every key of ``columns`` (dict columns) with its count over all of them, largest first
    (equal counts by key); histogram-only and empty columns add nothing."""
    totals: dict[str, float] = {}
    for col in columns:
        if isinstance(col, dict):
            for key, hist in col.items():
                totals[key] = totals.get(key, 0.0) + hist.count
    return sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))


def _column_at(times: Sequence[float], t: float) -> int:
    if not times:
        raise InputError("t", "there are no columns")
    if any(b <= a for a, b in pairwise(times)):
        raise InputError("times", "must be strictly increasing")
    i = bisect.bisect_right(times, t) - 1
    step = times[1] - times[0] if len(times) > 1 else 1.0
    if i < 0 or t >= times[i] + step:
        raise InputError("t", f"{t!r} is not inside any column")
    return i
