"""Columnar blocks of data points: the model the history keeps, reads and rolls up.

A :class:`Block` holds the points of one instrumentation in one tier, oldest
first, one per slot, in columns (numpy arrays):

* ``times`` (slot starts), ``counts`` (how many raw slots were rolled into the
  point: 1 in the raw tier), ``nsources``, ``expected``, ``revised``;
* numbers (shapes ``scalar`` and ``discrete``): ``values[n, k]``, one column
  per key (``keys`` sorted; a scalar has the single key ``""``), NaN where a
  key is absent;
* histograms (shapes ``histogram`` and ``discrete_histogram``): a
  :class:`Hists` with the same ``[n, k]`` layout for each of
  :data:`HIST_FIELDS` (NaN where the key has no histogram at that point) and
  one column of bucket counts per (key, bucket index) pair. ``min`` and ``max``
  are NaN also where the histogram has none (empty: ``count`` 0; or not known),
  the histogram's ``inf``/``-inf`` or NaN coming back when cells are read.

Values are stored as **sums**: a point metric's average is ``value / count``
and is only formed when points are read (:func:`to_points`), so rollups of
rollups stay exact (``(s1 + s2) / (c1 + c2)``, never an average of averages).

Here: building blocks from data points and back (:func:`from_points`,
:func:`to_points`), selecting (:func:`take`, :func:`between`) and merging
(:func:`merge`: later blocks win per slot). Rolling up is
:mod:`fleetscope.store.rollup`; the bytes of a chunk are
:mod:`fleetscope.store.chunkenc`.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain, compress
from typing import NamedTuple

import numpy as np

from fleetscope.model import values
from fleetscope.model.histogram import Histogram
from fleetscope.model.metrics import POINT
from fleetscope.model.series import DataPoint

# The per-(point, key) fields of a histogram, the first fields of :class:`Hists` in this order.
HIST_FIELDS = ("schema", "zero_threshold", "zero_count", "count", "sum", "min", "max")
NHIST_FIELDS = len(HIST_FIELDS)
# The last of them, kept apart in a chunk (chunks written before they existed have none).
RANGE_FIELDS = ("min", "max")
# The per-point columns of a block, the first fields of :class:`Block` in this order.
POINT_COLUMNS = ("times", "counts", "nsources", "expected", "revised")
# Integers up to this magnitude are exact in a float64 (and so are their sums below it).
EXACT_INT = float(2**53)
NUMBER_SHAPES = (values.SCALAR, values.DISCRETE)
KEYED_SHAPES = (values.DISCRETE, values.DISCRETE_HISTOGRAM)


class Hists(NamedTuple):
    """Histograms of a block: ``[n, k]`` matrices per histogram field (NaN: no
    histogram for that key at that point) and ``buckets[n, C]`` bucket counts,
    column ``c`` being bucket ``bucket_index[c]`` of key ``bucket_key[c]``
    (columns sorted by key, then index; NaN: empty bucket)."""

    schema: np.ndarray
    zero_threshold: np.ndarray
    zero_count: np.ndarray
    count: np.ndarray
    sum: np.ndarray
    min: np.ndarray
    max: np.ndarray
    bucket_key: np.ndarray
    bucket_index: np.ndarray
    buckets: np.ndarray


class Block(NamedTuple):
    """Points of one instrumentation and tier, in columns (see the module docstring)."""

    times: np.ndarray
    counts: np.ndarray
    nsources: np.ndarray
    expected: np.ndarray
    revised: np.ndarray
    keys: tuple[str, ...]
    values: np.ndarray | None  # numbers shapes: [n, k] sums
    hists: Hists | None  # histogram shapes

    @property
    def n(self) -> int:
        """The number of points."""
        return len(self.times)

    @property
    def start(self) -> int | None:
        return int(self.times[0]) if len(self.times) else None

    @property
    def last(self) -> int | None:
        return int(self.times[-1]) if len(self.times) else None


assert Hists._fields[:NHIST_FIELDS] == HIST_FIELDS and HIST_FIELDS[-len(RANGE_FIELDS):] == RANGE_FIELDS
assert Block._fields[:len(POINT_COLUMNS)] == POINT_COLUMNS


# -- building blocks ---------------------------------------------------------------------------


def is_histogram(shape: str) -> bool:
    if shape in NUMBER_SHAPES:
        return False
    if shape in (values.HISTOGRAM, values.DISCRETE_HISTOGRAM):
        return True
    raise ValueError(f"unknown value shape {shape!r}")


def _nan(shape: tuple[int, ...]) -> np.ndarray:
    return np.full(shape, np.nan)


def empty(shape: str) -> Block:
    """A block without points."""
    return from_columns(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64),
                        np.zeros(0, np.int64), np.zeros(0, bool), (), shape, [])


def from_columns(times, counts, nsources, expected, revised, keys, shape,
                 cells: Sequence[tuple[int, int, Histogram]]) -> Block:
    """A block from its per-point columns; histograms from ``cells`` (``(row, key index,
    histogram)``), numbers a NaN matrix to fill."""
    n, k = len(times), len(keys)
    if not is_histogram(shape):
        return Block(times, counts, nsources, expected, revised, tuple(keys), _nan((n, k)), None)
    return Block(times, counts, nsources, expected, revised, tuple(keys), None,
                 _hists_from_cells(n, k, cells))


def _hists_from_cells(n: int, k: int, cells: Sequence[tuple[int, int, Histogram]]) -> Hists:
    """Dense histogram columns from ``(row, key index, histogram)`` cells."""
    fields = [_nan((n, k)) for _ in HIST_FIELDS]
    pairs = sorted({(j, i) for _, j, h in cells for i in h.buckets})
    col_of = {p: c for c, p in enumerate(pairs)}
    buckets = _nan((n, len(pairs)))
    for r, j, h in cells:
        fields[0][r, j] = h.schema
        fields[1][r, j] = h.zero_threshold
        fields[2][r, j] = h.zero_count
        fields[3][r, j] = h.count
        fields[4][r, j] = h.sum
        if -np.inf < h.min < np.inf:  # else NaN: none (empty) or not known
            fields[5][r, j] = h.min
        if -np.inf < h.max < np.inf:
            fields[6][r, j] = h.max
        for i, c in h.buckets.items():
            buckets[r, col_of[j, i]] = c
    return Hists(*fields, np.array([p[0] for p in pairs], np.int64),
                 np.array([p[1] for p in pairs], np.int64), buckets)


def from_points(points: Sequence[DataPoint], shape: str, counts: Sequence[int] | None = None) -> Block:
    """A block from data points (gaps skipped; a later point of the same slot wins).

    The values are taken as they are: raw slots count 1 each (``counts`` gives
    the counts of points that are already sums of several slots).
    """
    latest: dict[int, tuple[DataPoint, int]] = {}
    for i, p in enumerate(points):
        if p.value is not None:
            latest[p.start_time] = (p, 1 if counts is None else counts[i])
    order = sorted(latest)
    pts = [latest[t] for t in order]
    times = np.array(order, np.int64)
    cnt = np.array([c for _, c in pts], np.int64)
    nsrc = np.array([p.nsources for p, _ in pts], np.int64)
    exp = np.array([p.expected for p, _ in pts], np.int64)
    rev = np.array([p.revised for p, _ in pts], bool)
    if shape == values.SCALAR:
        vals = np.array([p.value for p, _ in pts], float).reshape(len(pts), 1)
        return Block(times, cnt, nsrc, exp, rev, ("",), vals, None)
    if shape == values.DISCRETE:
        found: set[str] = set()
        for p, _ in pts:
            found.update(p.value)
        keys = sorted(found)
        col = {key: j for j, key in enumerate(keys)}
        vals = _nan((len(pts), len(keys)))
        # One pass of C-level iteration per column: this is the hot path of every query
        # that reads the real-time window.
        dicts = [p.value for p, _ in pts]
        cols = np.fromiter(map(col.__getitem__, chain.from_iterable(dicts)), np.int64)
        xs = np.fromiter(chain.from_iterable(d.values() for d in dicts), float, len(cols))
        vals[np.repeat(np.arange(len(dicts)), [len(d) for d in dicts]), cols] = xs
        return Block(times, cnt, nsrc, exp, rev, tuple(keys), vals, None)
    if shape == values.HISTOGRAM:
        cells = [(r, 0, p.value) for r, (p, _) in enumerate(pts)]
        return from_columns(times, cnt, nsrc, exp, rev, ("",), shape, cells)
    if shape == values.DISCRETE_HISTOGRAM:
        keys = sorted({key for p, _ in pts for key in p.value})
        col = {key: j for j, key in enumerate(keys)}
        cells = [(r, col[key], h) for r, (p, _) in enumerate(pts) for key, h in p.value.items()]
        return from_columns(times, cnt, nsrc, exp, rev, keys, shape, cells)
    raise ValueError(f"unknown value shape {shape!r}")


def hist_cells(block: Block, rows: Sequence[int] | None = None) -> dict[int, dict[int, Histogram]]:
    """``{row: {key index: Histogram}}`` of a histogram block (all rows, or ``rows``)."""
    hs = block.hists
    assert hs is not None
    out: dict[int, dict[int, Histogram]] = {}
    if hs.count.size == 0:
        return out
    k = len(block.keys)
    if rows is not None:
        sub = take(block, np.asarray(rows, np.int64))
        return {int(rows[r]): per for r, per in hist_cells(sub).items()}
    # Every non-empty bucket in row-major order: within a row grouped by key, then by index,
    # so each histogram's buckets are one slice of these lists. Legend: (rr, cc) row and
    # bucket column of each non-empty bucket; (er, ek) row and key index of each histogram
    # present; a "cell" is one (row, key) pair numbered row * k + key index.
    rr, cc = np.nonzero(~np.isnan(hs.buckets))
    counts = hs.buckets[rr, cc].tolist()
    index = hs.bucket_index[cc].tolist()
    cell_of_bucket = rr * k + hs.bucket_key[cc]
    er, ek = np.nonzero(~np.isnan(hs.count))
    cells = er * k + ek
    lo = np.searchsorted(cell_of_bucket, cells, "left").tolist()
    hi = np.searchsorted(cell_of_bucket, cells, "right").tolist()
    fields = [a[er, ek] for a in hs[:NHIST_FIELDS]]  # copies (fancy indexing)
    # A NaN min/max is an empty histogram's inf/-inf; one that holds values does not know them.
    empty_cells = fields[3] == 0.0
    fields[5][empty_cells] = np.inf
    fields[6][empty_cells] = -np.inf
    fields = [a.tolist() for a in fields]
    new = Histogram.__new__
    for e, (r, j) in enumerate(zip(er.tolist(), ek.tolist(), strict=True)):
        h = new(Histogram)
        h.schema = int(fields[0][e])
        h.zero_threshold = fields[1][e]
        h.zero_count = fields[2][e]
        h.count = fields[3][e]
        h.sum = fields[4][e]
        h.min = fields[5][e]
        h.max = fields[6][e]
        a, b = lo[e], hi[e]
        h.buckets = dict(zip(index[a:b], counts[a:b], strict=True))
        per = out.get(r)
        if per is None:
            per = out[r] = {}
        per[j] = h
    return out


def row_values(block: Block, shape: str) -> list[values.Value]:
    """The stored value (a sum) of every point of ``block``."""
    n = block.n
    keys = block.keys
    if shape == values.SCALAR:
        return block.values[:, 0].tolist() if n else []
    if shape == values.DISCRETE:
        present = (~np.isnan(block.values)).tolist()
        return [dict(compress(zip(keys, row, strict=True), mask))
                for row, mask in zip(block.values.tolist(), present, strict=True)]
    by_row = hist_cells(block)
    if shape == values.HISTOGRAM:
        return [by_row[r][0] if r in by_row else Histogram() for r in range(n)]
    return [{keys[j]: h for j, h in by_row.get(r, {}).items()} for r in range(n)]


def to_points(block: Block, shape: str, kind: str, duration: int) -> list[DataPoint]:
    """Data points of ``duration`` seconds; a point metric's sums are divided by their counts."""
    out = []
    counts = block.counts.tolist()
    for r, (t, v) in enumerate(zip(block.times.tolist(), row_values(block, shape), strict=True)):
        if kind == POINT and counts[r] > 1:
            v = values.scale(v, 1.0 / counts[r], shape)
        out.append(DataPoint(t, duration, v, int(block.nsources[r]), int(block.expected[r]),
                             bool(block.revised[r])))
    return out


def nsamples(block: Block) -> int:
    """Numbers stored: one per present key (numbers), per bucket plus count and sum (histograms)."""
    if block.values is not None:
        return int(np.count_nonzero(~np.isnan(block.values)))
    hs = block.hists
    return int(np.count_nonzero(~np.isnan(hs.buckets)) + 2 * np.count_nonzero(~np.isnan(hs.count))
               + np.count_nonzero(hs.zero_count > 0))


# -- selecting and merging ---------------------------------------------------------------------


def take(block: Block, rows: np.ndarray) -> Block:
    """The points at ``rows`` (indices or a boolean mask), keys unchanged."""
    hs = block.hists
    return Block(block.times[rows], block.counts[rows], block.nsources[rows], block.expected[rows],
                 block.revised[rows], block.keys,
                 None if block.values is None else block.values[rows],
                 None if hs is None else Hists(*(a[rows] for a in hs[:NHIST_FIELDS]), hs.bucket_key,
                                               hs.bucket_index, hs.buckets[rows]))


def between(block: Block, start: int, end: int) -> Block:
    """The points with ``start <= time < end``."""
    a, b = np.searchsorted(block.times, [start, end])
    if a == 0 and b == block.n:
        return block
    return take(block, slice(a, b))


def merge(blocks: Sequence[Block], shape: str) -> Block:
    """One block with every slot of ``blocks``; where several hold a slot the last one wins."""
    return _combine(blocks, shape, True)


def concat(blocks: Sequence[Block], shape: str) -> Block:
    """One block with every row of ``blocks`` by time, rows of the same slot all kept (parts of
    one step, for :func:`fleetscope.store.rollup.rollup` to add up)."""
    return _combine(blocks, shape, False)


def _combine(blocks: Sequence[Block], shape: str, dedup: bool) -> Block:
    blocks = [b for b in blocks if b.n]
    if not blocks:
        return empty(shape)
    if len(blocks) == 1:
        return blocks[0]
    times = np.concatenate([b.times for b in blocks])
    prio = np.concatenate([np.full(b.n, i) for i, b in enumerate(blocks)])
    order = np.lexsort((prio, times))
    # the last of each run of equal times: the highest priority
    keep = order[np.r_[times[order][1:] != times[order][:-1], True]] if dedup else order
    keys = tuple(sorted(set().union(*(b.keys for b in blocks))))
    kidx = {key: j for j, key in enumerate(keys)}
    n = len(times)

    def cat(get):
        return np.concatenate([get(b) for b in blocks])

    counts, nsrc, exp, rev = (cat(lambda b, f=f: getattr(b, f))
                              for f in ("counts", "nsources", "expected", "revised"))
    offsets = np.cumsum([0] + [b.n for b in blocks])

    def widen(get, width, colmap):
        out = _nan((n, width))
        for b, off in zip(blocks, offsets, strict=False):
            m = get(b)
            if m.shape[1]:
                out[off:off + b.n, colmap(b)] = m
        return out

    def key_cols(b):
        return np.array([kidx[key] for key in b.keys], np.int64)

    if not is_histogram(shape):
        vals = widen(lambda b: b.values, len(keys), key_cols)
        merged = Block(times, counts, nsrc, exp, rev, keys, vals, None)
        return take(merged, keep)
    pairs = sorted({(kidx[b.keys[j]], i) for b in blocks
                    for j, i in zip(b.hists.bucket_key.tolist(), b.hists.bucket_index.tolist(),
                                    strict=True)})
    pcol = {p: c for c, p in enumerate(pairs)}

    def bucket_cols(b):
        hk = b.hists
        return np.array([pcol[kidx[b.keys[j]], i] for j, i in
                         zip(hk.bucket_key.tolist(), hk.bucket_index.tolist(), strict=True)], np.int64)

    fields = [widen(lambda b, f=f: b.hists[f], len(keys), key_cols) for f in range(NHIST_FIELDS)]
    buckets = widen(lambda b: b.hists.buckets, len(pairs), bucket_cols)
    hs = Hists(*fields, np.array([p[0] for p in pairs], np.int64),
               np.array([p[1] for p in pairs], np.int64), buckets)
    merged = Block(times, counts, nsrc, exp, rev, keys, None, hs)
    return compact_columns(take(merged, keep))


def compact_columns(block: Block) -> Block:
    """Drop keys and bucket columns that hold nothing."""
    if block.values is not None:
        used = ~np.isnan(block.values).all(axis=0)
        if used.all():
            return block
        return block._replace(keys=tuple(k for k, u in zip(block.keys, used, strict=True) if u),
                              values=block.values[:, used])
    hs = block.hists
    used_keys = ~np.isnan(hs.count).all(axis=0)
    used_cols = ~np.isnan(hs.buckets).all(axis=0)
    if used_keys.all() and used_cols.all():
        return block
    remap = np.cumsum(used_keys) - 1
    return block._replace(
        keys=tuple(k for k, u in zip(block.keys, used_keys, strict=True) if u),
        hists=Hists(*(a[:, used_keys] for a in hs[:NHIST_FIELDS]), remap[hs.bucket_key[used_cols]],
                    hs.bucket_index[used_cols], hs.buckets[:, used_cols]))

