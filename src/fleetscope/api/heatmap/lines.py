"""Lines drawn over a heatmap: the average and percentiles of each column, estimated from its buckets."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from fleetscope.api.heatmap import args
from fleetscope.api.heatmap.matrix import Column
from fleetscope.model.errors import InputError
from fleetscope.model.histogram import Histogram


def percentile_lines(columns: Sequence[Column], qs: Iterable[float]) -> dict[str, list[float | None]]:
    """``{"p50": [...], "p99.9": [...]}``: ``Histogram.quantile(q)`` per column.

    A dict column's histograms are merged first. ``None`` for gaps and empty
    columns.
    """
    quantiles = []
    for q in qs:
        q = args.number(q, "qs")
        if not 0.0 <= q <= 1.0:
            raise InputError("qs", f"{q!r} is outside [0, 1]")
        quantiles.append(q)
    merged = [_merged(col, ci) for ci, col in enumerate(columns)]
    return {
        _quantile_name(q): [None if h is None else _finite(h.quantile(q)) for h in merged]
        for q in quantiles
    }


def average_line(columns: Sequence[Column]) -> list[float | None]:
    """``Histogram.mean()`` per column (dict columns merged first); ``None`` for gaps."""
    merged = [_merged(col, ci) for ci, col in enumerate(columns)]
    return [None if h is None else _finite(h.mean()) for h in merged]


def _merged(col: Column, ci: int) -> Histogram | None:
    """One histogram for a column (a dict's histograms merged); None for gaps."""
    if col is None or isinstance(col, Histogram):
        return col
    if not isinstance(col, dict):
        raise InputError("columns", f"column {ci}: expected null, a histogram or a dict")
    hists = list(col.values())
    if not hists:
        return None
    acc = hists[0].copy()
    for h in hists[1:]:
        acc.merge(h)
    return acc


def _quantile_name(q: float) -> str:
    return f"p{round(q * 100, 6):g}"


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None
