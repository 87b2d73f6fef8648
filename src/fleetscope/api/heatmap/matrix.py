"""The heatmap matrix: counts per (column, row) of histogram columns over a value axis.

A heatmap has one column per time slot and ``nbuckets`` rows over the value
axis ``[ymin, ymax)`` (linear, or logarithmic with ``log=True``). A column is
``None`` (no data: a gap), a :class:`~fleetscope.model.histogram.Histogram`
(numeric decomposition only) or ``dict[str, Histogram]`` (broken down by a
discrete field too). Buckets are spread over the rows by :mod:`.spread`; mass
outside ``[ymin, ymax)`` is dropped from the rows and reported per column as
``clipped_below`` / ``clipped_above``.

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

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from fleetscope.api.heatmap import args
from fleetscope.api.heatmap.spread import collect
from fleetscope.model.errors import InputError
from fleetscope.model.histogram import Histogram

Column = Histogram | dict[str, Histogram] | None

MAX_NBUCKETS = 1000

_TIDY_STEPS = (1.0, 2.0, 2.5, 5.0, 10.0)
_LARGEST = 1e300  # an automatic ymax above this would not stay finite


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
        return axis_edges(self.ymin, self.ymax, self.nbuckets, self.log)

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


def keys_shown(col: Column, selected: Iterable[str], *, isolate: bool = False,
               exclude: bool = False) -> Column:
    """The part of column ``col`` a heatmap with the same ``isolate`` or ``exclude`` draws: only the
    ``selected`` keys, or every key but them (neither: all of it). A plain histogram has no keys:
    isolate hides it (an empty histogram), exclude keeps it. A gap (None) stays a gap.

    What average and percentile lines are of, so that they describe the map they are drawn over.
    """
    if isolate and exclude:
        raise InputError("exclude", "isolate and exclude cannot both be set")
    chosen = set(args.keys(selected, "selected"))
    if col is None or not (isolate or exclude):
        return col
    if isinstance(col, Histogram):
        return Histogram() if isolate else col
    return {k: h for k, h in col.items() if (k in chosen) == isolate}


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
    nbuckets = args.integer(nbuckets, "nbuckets", 1, MAX_NBUCKETS)
    ymin = args.number(ymin, "ymin")
    if log and ymin <= 0:
        raise InputError("ymin", "must be greater than 0 on a log axis")
    if isolate and exclude:
        raise InputError("exclude", "isolate and exclude cannot both be set")
    chosen = args.keys(selected, "selected")
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

    buckets = collect(hists, groups)
    ymax = _auto_ymax(buckets.max_value(), ymin) if ymax is None else args.number(ymax, "ymax")
    if ymax <= ymin:
        raise InputError("ymax", "must be greater than ymin")
    edges = axis_edges(ymin, ymax, nbuckets, log)
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


def axis_edges(ymin: float, ymax: float, nbuckets: int, log: bool) -> np.ndarray:
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
