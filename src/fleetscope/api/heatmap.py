"""Heatmaps of histogram values, drawn the way the appliance drew them.

Pure computation, no HTTP: the API turns requests into calls here.

A heatmap has one column per time slot and ``nbuckets`` rows over the value
axis ``[ymin, ymax)`` (linear, or logarithmic with ``log=True``). A column is
``None`` (no data: a gap), a :class:`~fleetscope.model.histogram.Histogram`
(numeric decomposition only) or ``dict[str, Histogram]`` (broken down by a
discrete field too).

Each stored bucket ``(lower, upper]`` is spread over the rows it overlaps in
proportion to the overlap, as if its values were spread evenly (in value, on
both axes) inside the bucket. A zero bucket with ``zero_threshold == 0`` is a
point mass at 0. Mass outside ``[ymin, ymax)`` is dropped from the rows and
reported per column as ``clipped_below`` / ``clipped_above``.

Selected keys get a layer each and are taken out of the rest; ``isolate``
keeps only the selected layers, ``exclude`` keeps only the rest (without the
selected keys).

``HeatmapMatrix.to_json(times)`` gives::

    {"ymin": float, "ymax": float, "nbuckets": int, "log": bool,
     "times": [t, ...],
     "counts": [[row 0 (lowest y), ..., row nbuckets-1] per column],   # the rest
     "keys": {key: [[...] per column]},                               # selected keys
     "present": [bool per column],
     "clipped_below": [float per column], "clipped_above": [float per column],
     "max": float}                                                    # largest cell
"""

from __future__ import annotations

import bisect
import colorsys
import io
import math
import numbers
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import chain, pairwise
from typing import NamedTuple

import numpy as np
from PIL import Image

from fleetscope.model.errors import InputError
from fleetscope.model.histogram import Histogram

__all__ = [
    "HeatmapMatrix",
    "average_line",
    "cell_details",
    "heatmap_matrix",
    "percentile_lines",
    "render_png",
    "tidy_max",
]

Column = Histogram | dict[str, Histogram] | None

MAX_NBUCKETS = 1000
MAX_PIXELS = 4000
COLORINGS = ("rank", "linear")

FIRST_HUE = 21.0  # degrees; the appliance's first selected key
HUE_STEP = 91.0  # each next key this far round the wheel
BASE_HUE = 220.0  # the rest: a blue-grey ...
BASE_SATURATION = 0.55  # ... never as saturated as a selected key
KEY_SATURATION = 1.0
MIN_SATURATION = 0.08  # the faintest non-empty cell must still differ from white
VALUE = 0.95  # HSV brightness stays high everywhere
_LEVELS = 255  # saturation steps per layer

_TIDY_STEPS = (1.0, 2.0, 2.5, 5.0, 10.0)
_LARGEST = 1e300  # an automatic ymax above this would not stay finite
_FLOAT_MAX = float(np.finfo(np.float64).max)


@dataclass(frozen=True, eq=False)
class HeatmapMatrix:
    """Counts per (column, row) of one heatmap.

    ``counts`` has shape ``(ncolumns, nbuckets)``, row 0 the lowest y, and holds
    the rest (everything not in a selected key). ``keys`` maps each drawn
    selected key to an array of the same shape. ``present``,
    ``clipped_below`` and ``clipped_above`` have one entry per column.
    """

    ymin: float
    ymax: float
    nbuckets: int
    log: bool
    counts: np.ndarray
    keys: dict[str, np.ndarray]
    present: np.ndarray
    clipped_below: np.ndarray
    clipped_above: np.ndarray

    @property
    def ncolumns(self) -> int:
        return self.counts.shape[0]

    def edges(self) -> np.ndarray:
        """The ``nbuckets + 1`` row boundaries in value units, ascending."""
        return _axis_edges(self.ymin, self.ymax, self.nbuckets, self.log)

    def max_count(self) -> float:
        """The largest cell over the rest and every key layer (0.0 when empty)."""
        layers = [self.counts, *self.keys.values()]
        return max((float(a.max()) for a in layers if a.size), default=0.0)

    def to_json(self, times: Sequence[float]) -> dict:
        """The matrix as plain JSON types, with ``times`` labelling the columns."""
        if len(times) != self.ncolumns:
            raise InputError("times", f"expected {self.ncolumns} times, got {len(times)}")
        return {
            "ymin": self.ymin,
            "ymax": self.ymax,
            "nbuckets": self.nbuckets,
            "log": self.log,
            "times": list(times),
            "counts": _round6(self.counts).tolist(),
            "keys": {key: _round6(a).tolist() for key, a in self.keys.items()},
            "present": self.present.tolist(),
            "clipped_below": _round6(self.clipped_below).tolist(),
            "clipped_above": _round6(self.clipped_above).tolist(),
            "max": float(_round6(np.array([self.max_count()]))[0]),
        }


def tidy_max(x: float) -> float:
    """The smallest tidy number (1, 2, 2.5 or 5 times a power of ten) ``>= x``.

    ``1.0`` when ``x <= 0``. ``x`` must be finite.
    """
    if not math.isfinite(x):
        raise ValueError(f"tidy_max: {x!r} is not finite")
    if x <= 0:
        return 1.0
    k = math.floor(math.log10(x))
    for m in _TIDY_STEPS:
        # Through text so that 2.5e-3 is 0.0025, not 0.0025000000000000005.
        candidate = float(f"{m * 10.0**k:.12g}")
        if candidate >= x:
            return candidate
    raise AssertionError("unreachable: the last step, 10 * 10**k, is > x")


def heatmap_matrix(
    columns: Sequence[Column],
    *,
    ymin: float = 0.0,
    ymax: float | None = None,
    nbuckets: int = 100,
    selected: Iterable[str] = (),
    isolate: bool = False,
    exclude: bool = False,
    log: bool = False,
) -> HeatmapMatrix:
    """Spread the buckets of every column over ``nbuckets`` rows of ``[ymin, ymax)``.

    ``ymax=None`` picks ``tidy_max(1.25 * largest max_value())`` over the drawn
    histograms. ``selected`` keys get a matrix each and are left out of
    ``counts``; ``isolate`` leaves ``counts`` empty (only selected keys drawn);
    ``exclude`` draws no key layers and leaves the selected keys out of
    ``counts``. A plain-histogram column has no keys: it is all rest.
    """
    nbuckets = _integer(nbuckets, "nbuckets", 1, MAX_NBUCKETS)
    ymin = _number(ymin, "ymin")
    if log and ymin <= 0:
        raise InputError("ymin", "must be greater than 0 on a log axis")
    if isolate and exclude:
        raise InputError("exclude", "isolate and exclude cannot both be set")
    chosen = _keys(selected, "selected")
    drawn = [] if exclude else chosen
    hidden = set(chosen) if exclude else set()
    nlayers = 1 + len(drawn)
    layer_of = {key: i + 1 for i, key in enumerate(drawn)}

    # Group g = column * nlayers + layer; layer 0 is the rest.
    hists: list[Histogram] = []
    groups: list[int] = []
    present = np.zeros(len(columns), dtype=bool)
    for ci, col in enumerate(columns):
        if col is None:
            continue
        present[ci] = True
        base = ci * nlayers
        if isinstance(col, Histogram):
            if not isolate:
                hists.append(col)
                groups.append(base)
        elif isinstance(col, dict):
            for key, h in col.items():
                if not isinstance(h, Histogram):
                    raise InputError("columns", f"column {ci}, key {key!r}: not a histogram")
                layer = layer_of.get(key)
                if layer is not None:
                    hists.append(h)
                    groups.append(base + layer)
                elif not isolate and key not in hidden:
                    hists.append(h)
                    groups.append(base)
        else:
            raise InputError(
                "columns", f"column {ci}: expected null, a histogram or a dict of histograms"
            )

    buckets = _collect(hists, groups)
    ymax = _auto_ymax(buckets.max_value(), ymin) if ymax is None else _number(ymax, "ymax")
    if ymax <= ymin:
        raise InputError("ymax", "must be greater than ymin")
    edges = _axis_edges(ymin, ymax, nbuckets, log)
    if not np.all(np.diff(edges) > 0):
        raise InputError("nbuckets", "too many rows for so narrow a range")

    ncols = len(columns)
    rows, below, above = buckets.spread(edges, ncols * nlayers)
    cube = rows.reshape(ncols, nlayers, nbuckets)
    return HeatmapMatrix(
        ymin=ymin,
        ymax=ymax,
        nbuckets=nbuckets,
        log=bool(log),
        counts=np.ascontiguousarray(cube[:, 0, :]),
        keys={key: np.ascontiguousarray(cube[:, i + 1, :]) for i, key in enumerate(drawn)},
        present=present,
        clipped_below=below.reshape(ncols, nlayers).sum(axis=1),
        clipped_above=above.reshape(ncols, nlayers).sum(axis=1),
    )


def render_png(
    matrix: HeatmapMatrix,
    *,
    width: int | None = None,
    height: int | None = None,
    coloring: str = "rank",
    selected_order: Iterable[str] = (),
) -> bytes:
    """Draw ``matrix`` as a PNG, ``width`` x ``height`` pixels (default one per cell).

    Key number ``i`` in ``selected_order`` (keys of ``matrix.keys`` not listed
    there follow, in their order) gets hue ``21 + 91 * i`` degrees mod 360; the
    rest is a blue-grey (hue 220, at most saturation 0.55). Saturation grows with
    the cell's normalised count, brightness is 0.95, empty cells are white.
    ``coloring="rank"`` normalises by rank among all non-empty cells of all
    layers, ``"linear"`` by count / largest cell. A cell with several layers
    shows the one with the highest normalised value (the most counts; a selected
    key wins a tie with the rest); no blending, so every pixel has one layer's hue.
    Low values are at the bottom.
    """
    if coloring not in COLORINGS:
        raise InputError("coloring", f"must be one of {', '.join(COLORINGS)}")
    ncols = matrix.ncolumns
    width = max(ncols, 1) if width is None else _integer(width, "width", 1, MAX_PIXELS)
    height = matrix.nbuckets if height is None else _integer(height, "height", 1, MAX_PIXELS)
    order = list(dict.fromkeys([*_keys(selected_order, "selected_order"), *matrix.keys]))

    # Keys first, rest last: argmax picks the first of equals, so a key wins ties.
    keys = list(matrix.keys)
    layers = [*(matrix.keys[k] for k in keys), matrix.counts]
    hues = [(FIRST_HUE + HUE_STEP * order.index(k)) % 360 for k in keys] + [BASE_HUE]
    tops = [KEY_SATURATION] * len(keys) + [BASE_SATURATION]

    norm = _normalise(np.stack(layers) if keys else matrix.counts[None], coloring)
    if keys:
        winner = np.argmax(norm, axis=0)
        best = np.take_along_axis(norm, winner[None], axis=0)[0]
    else:
        winner, best = 0, norm[0]
    # Colour through a lookup table of LEVELS saturation steps per layer (level
    # 0 = empty = white): the per-pixel work is one gather into uint8, not float
    # arithmetic on three channels.
    code = winner * (_LEVELS + 1) + np.ceil(best * _LEVELS).astype(np.intp)
    lut = np.concatenate([_layer_colours(h, top) for h, top in zip(hues, tops, strict=True)])
    # (columns, rows) -> image rows top to bottom = highest y first.
    pixels = lut[code.T[::-1]]
    if ncols == 0:
        pixels = np.full((matrix.nbuckets, 1, 3), 255, dtype=np.uint8)
    image = Image.fromarray(np.ascontiguousarray(pixels))
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.NEAREST)
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=3)  # 2x faster than 6, 5 % larger
    return out.getvalue()


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
    t = _number(t, "t")
    ymin = _number(ymin, "ymin")
    ymax = _number(ymax, "ymax")
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
    per = _collect(hists, range(len(hists))).spread(np.array([ymin, ymax]), len(hists))[0][:, 0]
    out["total"] = float(per.sum())
    ranked = sorted(zip(names, per.tolist(), strict=False), key=lambda kv: -kv[1])
    out["keys"] = {key: n for key, n in ranked if n > 0}
    return out


def percentile_lines(columns: Sequence[Column], qs: Iterable[float]) -> dict[str, list[float | None]]:
    """``{"p50": [...], "p99.9": [...]}``: ``Histogram.quantile(q)`` per column.

    A dict column's histograms are merged first. ``None`` for gaps and empty
    columns.
    """
    quantiles = []
    for q in qs:
        q = _number(q, "qs")
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


# --- spreading buckets over rows -------------------------------------------------
#
# Every histogram of one schema shares the same bucket bounds, so where a bucket
# lands on the axis depends only on its index. _unit_spread works that out once
# per distinct index (for a count of 1) and _Spreader applies it to every
# bucket with a few gathers and one bincount: no loop over columns and little
# numpy work per bucket.


class _Unit(NamedTuple):
    """Where a count of 1 in each of some ranges lands on the axis."""

    first: np.ndarray  # first row with part of the range
    last: np.ndarray  # last such row (== first for most ranges)
    w_first: np.ndarray  # share of the count in row `first`
    w_last: np.ndarray  # share in row `last` when last > first, else 0
    density: np.ndarray  # share per value unit in the rows strictly between
    below: np.ndarray  # share below ymin
    above: np.ndarray  # share at or above ymax
    many: np.ndarray  # last > first


def _unit_spread(lower: np.ndarray, upper: np.ndarray, edges: np.ndarray) -> _Unit:
    """Spread a count of 1 over ``(lower, upper]`` evenly onto the rows of ``edges``.

    ``lower == upper`` is a point mass (a zero bucket with threshold 0). A range
    inside one row puts exactly 1 there; whole ranges off the axis exactly 1
    below or above.
    """
    nrows = len(edges) - 1
    y0, y1 = float(edges[0]), float(edges[-1])
    upper = np.minimum(upper, _FLOAT_MAX)  # the top bucket of the float range ends at inf
    width = upper - lower
    point = width <= 0
    inv = 1.0 / np.where(point, 1.0, width)
    below = np.where(point, upper < y0, np.where(upper <= y0, 1.0, inv * np.maximum(y0 - lower, 0)))
    above = np.where(point, upper >= y1, np.where(lower >= y1, 1.0, inv * np.maximum(upper - y1, 0)))
    inside = 1.0 - below - above
    a, b = np.clip(lower, y0, y1), np.clip(upper, y0, y1)
    first = np.minimum(np.searchsorted(edges, a, side="right") - 1, nrows - 1)  # row holding a
    last = np.searchsorted(edges, b, side="left") - 1  # last row holding values below b
    last = np.where(point, first, np.maximum(last, first))
    many = last > first
    return _Unit(
        first=first,
        last=last,
        w_first=np.where(many, inv * (edges[first + 1] - a), inside),
        w_last=np.where(many, inv * (b - edges[last]), 0.0),
        density=np.where(last - first > 1, inv, 0.0),
        below=below.astype(np.float64),
        above=above.astype(np.float64),
        many=many,
    )


class _Spreader:
    """Collects ``(cell, count)`` contributions of spread buckets and sums them
    with one bincount: a single grid-sized allocation, since fresh pages are
    what costs most here (page faults), more than the arithmetic."""

    def __init__(self, edges: np.ndarray, ngroups: int) -> None:
        self.edges = edges
        self.ngroups = ngroups
        self.nrows = len(edges) - 1
        self.cells: list[np.ndarray] = []  # flat cell = group * nrows + row
        self.weights: list[np.ndarray] = []
        self.below = np.zeros(ngroups)
        self.above = np.zeros(ngroups)

    def add(self, unit: _Unit, group: np.ndarray, u: np.ndarray, count: np.ndarray) -> None:
        """Add ``count[k]`` of range ``u[k]`` of ``unit`` to group ``group[k]``."""
        nrows = self.nrows
        cell = group * nrows
        cell += unit.first[u]
        weight = unit.w_first[u]
        weight *= count
        self.cells.append(cell)
        self.weights.append(weight)
        if unit.below.any():
            self.below += _sum_by(group, count * unit.below[u], self.ngroups)
        if unit.above.any():
            self.above += _sum_by(group, count * unit.above[u], self.ngroups)
        if not unit.many.any():
            return
        m = np.flatnonzero(unit.many[u])
        g, u, c = group[m], u[m], count[m]
        first, last = unit.first[u], unit.last[u]
        self.cells.append(g * nrows + last)
        self.weights.append(c * unit.w_last[u])
        # Rows strictly between first and last are covered whole: one entry each.
        whole = last - first - 1
        m = np.flatnonzero(whole > 0)
        if not m.size:
            return
        reps = whole[m]
        start = np.repeat(first[m] + 1 - np.cumsum(reps) + reps, reps)
        row = start + np.arange(int(reps.sum()))  # first + 1, ..., last - 1 per bucket
        self.cells.append(np.repeat(g[m] * nrows, reps) + row)
        self.weights.append(np.repeat(c[m] * unit.density[u[m]], reps) * np.diff(self.edges)[row])

    def result(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(rows, below, above)``, rows of shape ``(ngroups, nrows)``."""
        cells = self.cells[0] if len(self.cells) == 1 else np.concatenate(self.cells or [[]])
        weights = self.weights[0] if len(self.weights) == 1 else np.concatenate(self.weights or [[]])
        rows = _sum_by(cells.astype(np.intp, copy=False), weights, self.ngroups * self.nrows)
        return rows.reshape(self.ngroups, self.nrows), self.below, self.above


class _Buckets(NamedTuple):
    """Every bucket of some histograms, flat, by group."""

    runs: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]]  # (schema, group, index, count)
    zero: tuple[np.ndarray, np.ndarray, np.ndarray]  # (group, zero_threshold, zero_count)

    def max_value(self) -> float:
        """The largest ``max_value()`` of the histograms (0.0 when all are empty)."""
        largest = 0.0
        for schema, _, index, count in self.runs:
            filled = index[count > 0]
            if filled.size:
                top = Histogram(schema).bucket_bounds(int(filled.max()))[1]
                largest = max(largest, top)
        _, threshold, count = self.zero
        filled = threshold[count > 0]
        return max(largest, float(filled.max())) if filled.size else largest

    def spread(self, edges: np.ndarray, ngroups: int) -> tuple[np.ndarray, ...]:
        """``(rows, below, above)``: rows of shape ``(ngroups, len(edges) - 1)``."""
        spreader = _Spreader(edges, ngroups)
        for schema, group, index, count in self.runs:
            if not index.size:
                continue
            offset, lower, upper = _bounds_table(schema, index)
            spreader.add(_unit_spread(lower, upper, edges), group, index - offset, count)
        group, threshold, count = self.zero
        if group.size:
            unit = _unit_spread(np.zeros_like(threshold), threshold, edges)
            spreader.add(unit, group, np.arange(group.size), count)
        return spreader.result()


def _collect(hists: Sequence[Histogram], groups: Sequence[int]) -> _Buckets:
    """The buckets of ``hists[k]`` (for group ``groups[k]``) as flat arrays.

    Reads the documented attributes (``buckets``, ``schema``, ``zero_count``,
    ``zero_threshold``): ``iter_buckets()`` builds a tuple per bucket in Python,
    which would cost more than all the rest for thousands of columns. Chained
    iterators into ``np.fromiter`` are the cheapest way out of the dicts.
    """
    dicts = [h.buckets for h in hists]
    lengths = np.fromiter(map(len, dicts), dtype=np.intp, count=len(dicts))
    n = int(lengths.sum())
    index = np.fromiter(chain.from_iterable(dicts), dtype=np.int64, count=n)
    count = np.fromiter(chain.from_iterable(map(dict.values, dicts)), dtype=np.float64, count=n)
    owner = np.array(groups, dtype=np.intp)
    group = np.repeat(owner, lengths)
    schemas = [h.schema for h in hists]
    distinct = set(schemas)
    if len(distinct) <= 1:
        runs = [(schemas[0] if schemas else 0, group, index, count)]
    else:
        schema = np.repeat(np.array(schemas), lengths)
        runs = [(s, group[m], index[m], count[m]) for s in distinct for m in [schema == s]]
    zero_count = np.array([h.zero_count for h in hists], dtype=np.float64)
    filled = np.flatnonzero(zero_count)
    thresholds = [hists[k].zero_threshold for k in filled.tolist()]
    zero = (owner[filled], np.array(thresholds, dtype=np.float64), zero_count[filled])
    return _Buckets(runs, zero)


def _bounds_table(schema: int, index: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """``(offset, lower, upper)``: bounds of bucket ``i`` at ``[i - offset]``.

    Filled for the indexes present only, through ``Histogram.bucket_bounds`` so
    that the bounds are the histogram's own, bit for bit.
    """
    offset = int(index.min())
    present = np.zeros(int(index.max()) - offset + 1, dtype=bool)
    present[index - offset] = True
    where = np.flatnonzero(present)
    bucket_bounds = Histogram(schema).bucket_bounds
    bounds = np.array([bucket_bounds(i) for i in (where + offset).tolist()], dtype=np.float64)
    lower = np.zeros(present.size)
    upper = np.zeros(present.size)
    lower[where] = bounds[:, 0]
    upper[where] = bounds[:, 1]
    return offset, lower, upper


def _sum_by(index: np.ndarray, weights: np.ndarray, size: int) -> np.ndarray:
    """``weights`` summed per ``index`` into ``size`` float slots (bincount gives
    ints when nothing is summed)."""
    return np.bincount(index, weights, minlength=size).astype(np.float64, copy=False)


def _axis_edges(ymin: float, ymax: float, nbuckets: int, log: bool) -> np.ndarray:
    if log:
        edges = np.exp(np.linspace(math.log(ymin), math.log(ymax), nbuckets + 1))
    else:
        edges = np.linspace(ymin, ymax, nbuckets + 1)
    edges[0], edges[-1] = ymin, ymax  # exact ends: clipping compares against them
    return edges


def _auto_ymax(largest: float, ymin: float) -> float:
    """``tidy_max(1.25 * largest)``, moved above ``ymin`` when the data is below it."""
    ymax = tidy_max(1.25 * min(largest, _LARGEST))
    return ymax if ymax > ymin else tidy_max(2.0 * ymin)


# --- colour ------------------------------------------------------------------------


def _layer_colours(hue: float, top: float) -> np.ndarray:
    """``(_LEVELS + 1, 3)`` uint8 RGB: white, then saturation rising to ``top``.

    For a fixed hue, HSV is linear in saturation: ``v * (1 - s * (1 - pure))``.
    """
    pure = np.array(colorsys.hsv_to_rgb(hue / 360.0, 1.0, 1.0))
    sat = MIN_SATURATION + (top - MIN_SATURATION) * np.arange(_LEVELS + 1) / _LEVELS
    rgb = VALUE * (1.0 - sat[:, None] * (1.0 - pure))
    rgb[0] = 1.0
    return np.rint(rgb * 255).astype(np.uint8)


def _normalise(stack: np.ndarray, coloring: str) -> np.ndarray:
    """Map counts to (0, 1] (0 stays 0), jointly over every layer."""
    norm = np.zeros_like(stack, dtype=np.float64)
    filled = stack > 0
    values = stack[filled]
    if not values.size:
        return norm
    if coloring == "rank":
        ordered = np.sort(values)
        # Equal counts get equal colour: the rank of the last of them.
        norm[filled] = np.searchsorted(ordered, values, side="right") / ordered.size
    else:
        norm[filled] = values / values.max()
    return norm


# --- small helpers -------------------------------------------------------------------


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


def _quantile_name(q: float) -> str:
    return f"p{round(q * 100, 6):g}"


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _round6(a: np.ndarray) -> np.ndarray:
    """Round to 6 significant digits so that JSON prints short numbers.

    Dividing an integer by an exact power of ten gives the double nearest to
    the decimal, so ``repr`` stays short (no 0.30000000000000004).
    """
    a = np.asarray(a, dtype=np.float64)
    out = np.zeros_like(a)
    nz = a != 0
    v = a[nz]
    e = np.clip(np.floor(np.log10(np.abs(v))) - 5, -300, 300)
    small = e < 0
    p = 10.0 ** np.abs(e)
    v[small] = np.round(v[small] * p[small]) / p[small]
    v[~small] = np.round(v[~small] / p[~small]) * p[~small]
    out[nz] = v
    return out


def _number(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(name, "must be a number")
    x = float(value)
    if not math.isfinite(x):
        raise InputError(name, "must be finite")
    return x


def _integer(value: object, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InputError(name, "must be an integer")
    if not low <= value <= high:
        raise InputError(name, f"must be between {low} and {high}")
    return int(value)


def _keys(value: object, name: str) -> list[str]:
    """A list of distinct keys, in order."""
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise InputError(name, "must be a list of keys")
    keys = list(value)
    if not all(isinstance(k, str) for k in keys):
        raise InputError(name, "keys must be strings")
    return list(dict.fromkeys(keys))
