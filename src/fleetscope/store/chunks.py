"""Columnar blocks of data points, and their compressed chunk encoding.

A :class:`Block` holds the points of one instrumentation in one tier, oldest
first, one per slot, in columns (numpy arrays):

* ``times`` (slot starts), ``counts`` (how many raw slots were rolled into the
  point: 1 in the raw tier), ``nsources``, ``expected``, ``revised``;
* numbers (shapes ``scalar`` and ``discrete``): ``values[n, k]``, one column
  per key (``keys`` sorted; a scalar has the single key ``""``), NaN where a
  key is absent;
* histograms (shapes ``histogram`` and ``discrete_histogram``): a
  :class:`Hists` with the same ``[n, k]`` layout for schema, zero threshold,
  zero count, count and sum (NaN where the key has no histogram at that point)
  and one column of bucket counts per (key, bucket index) pair.

Values are stored as **sums**: a point metric's average is ``value / count``
and is only formed when points are read (:func:`to_points`), so rollups of
rollups stay exact (``(s1 + s2) / (c1 + c2)``, never an average of averages).

A chunk is a Block encoded by :func:`encode`. Every matrix of numbers (the
per-point columns, the values, the histogram fields, the bucket counts) goes
through one column encoder (:func:`_encode_matrix`): a column whose values are
decimals of at most 12 digits after the point that round-trip exactly (byte
counts, CPU ticks, histogram counts...) is stored as integers, raw or
delta-encoded (whichever is smaller), zigzagged, in the narrowest of 1, 2, 4 or
8 bytes, split into byte planes. A value a few units in the last place off its
decimal (a sum of decimals carries such float noise: 0.1 + 0.2) counts as that
decimal, and the difference is kept as a small integer per value (almost all
zero), so the round trip stays exact; any other column as float64 XOR-ed with its
previous value, split into byte planes (the Gorilla idea, left for the
compressor to pack). Absent values cost one bit in a presence bitmap, so
histograms are sparse: only non-empty buckets are stored, and the bucket
indices of each key are delta-encoded varints. The whole is packed with
msgpack and compressed with zlib. Lossless: ``decode(encode(b))`` equals ``b``
bit for bit.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from itertools import chain, compress
from typing import NamedTuple

import msgspec
import numpy as np

from fleetscope.model import values
from fleetscope.model.histogram import MAX_BUCKETS, Histogram
from fleetscope.model.metrics import POINT
from fleetscope.model.series import DataPoint

FORMAT = 1
MAX_DECIMALS = 12
MAX_ULPS = 4  # how far (in units in the last place) a value may be from its decimal
_EXACT_INT = float(2**53)
_NUMBER_SHAPES = (values.SCALAR, values.DISCRETE)
_KEYED_SHAPES = (values.DISCRETE, values.DISCRETE_HISTOGRAM)


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


# -- building blocks ---------------------------------------------------------------------------


def is_histogram(shape: str) -> bool:
    if shape in _NUMBER_SHAPES:
        return False
    if shape in (values.HISTOGRAM, values.DISCRETE_HISTOGRAM):
        return True
    raise ValueError(f"unknown value shape {shape!r}")


def _nan(shape: tuple[int, ...]) -> np.ndarray:
    return np.full(shape, np.nan)


def empty(shape: str) -> Block:
    """A block without points."""
    return _frame(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64),
                  np.zeros(0, np.int64), np.zeros(0, bool), (), shape, [])


def _frame(times, counts, nsources, expected, revised, keys, shape, hist_cells) -> Block:
    """A block from its per-point columns; values from ``hist_cells`` or a NaN matrix."""
    n, k = len(times), len(keys)
    if not is_histogram(shape):
        return Block(times, counts, nsources, expected, revised, tuple(keys), _nan((n, k)), None)
    return Block(times, counts, nsources, expected, revised, tuple(keys), None,
                 _hists_from_cells(n, k, hist_cells))


def _hists_from_cells(n: int, k: int, cells: Sequence[tuple[int, int, Histogram]]) -> Hists:
    """Dense histogram columns from ``(row, key index, histogram)`` cells."""
    fields = [_nan((n, k)) for _ in range(5)]
    pairs = sorted({(j, i) for _, j, h in cells for i in h.buckets})
    col_of = {p: c for c, p in enumerate(pairs)}
    buckets = _nan((n, len(pairs)))
    for r, j, h in cells:
        fields[0][r, j] = h.schema
        fields[1][r, j] = h.zero_threshold
        fields[2][r, j] = h.zero_count
        fields[3][r, j] = h.count
        fields[4][r, j] = h.sum
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
        return _frame(times, cnt, nsrc, exp, rev, ("",), shape, cells)
    if shape == values.DISCRETE_HISTOGRAM:
        keys = sorted({key for p, _ in pts for key in p.value})
        col = {key: j for j, key in enumerate(keys)}
        cells = [(r, col[key], h) for r, (p, _) in enumerate(pts) for key, h in p.value.items()]
        return _frame(times, cnt, nsrc, exp, rev, keys, shape, cells)
    raise ValueError(f"unknown value shape {shape!r}")


def _cells(block: Block, rows: Sequence[int] | None = None) -> dict[int, dict[int, Histogram]]:
    """``{row: {key index: Histogram}}`` of a histogram block (all rows, or ``rows``)."""
    hs = block.hists
    assert hs is not None
    out: dict[int, dict[int, Histogram]] = {}
    if hs.count.size == 0:
        return out
    k = len(block.keys)
    if rows is not None:
        sub = take(block, np.asarray(rows, np.int64))
        return {int(rows[r]): per for r, per in _cells(sub).items()}
    # Every non-empty bucket in row-major order: within a row grouped by key, then by index,
    # so each histogram's buckets are one slice of these lists.
    rr, cc = np.nonzero(~np.isnan(hs.buckets))
    counts = hs.buckets[rr, cc].tolist()
    index = hs.bucket_index[cc].tolist()
    cell_of_bucket = rr * k + hs.bucket_key[cc]
    er, ek = np.nonzero(~np.isnan(hs.count))
    cells = er * k + ek
    lo = np.searchsorted(cell_of_bucket, cells, "left").tolist()
    hi = np.searchsorted(cell_of_bucket, cells, "right").tolist()
    fields = [a[er, ek].tolist() for a in (hs.schema, hs.zero_threshold, hs.zero_count, hs.count, hs.sum)]
    new = Histogram.__new__
    for e, (r, j) in enumerate(zip(er.tolist(), ek.tolist(), strict=True)):
        h = new(Histogram)
        h.schema = int(fields[0][e])
        h.zero_threshold = fields[1][e]
        h.zero_count = fields[2][e]
        h.count = fields[3][e]
        h.sum = fields[4][e]
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
    cells = _cells(block)
    if shape == values.HISTOGRAM:
        return [cells[r][0] if r in cells else Histogram() for r in range(n)]
    return [{keys[j]: h for j, h in cells.get(r, {}).items()} for r in range(n)]


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
                 None if hs is None else Hists(*(a[rows] for a in hs[:5]), hs.bucket_key,
                                               hs.bucket_index, hs.buckets[rows]))


def between(block: Block, start: int, end: int) -> Block:
    """The points with ``start <= time < end``."""
    a, b = np.searchsorted(block.times, [start, end])
    if a == 0 and b == block.n:
        return block
    return take(block, slice(a, b))


def merge(blocks: Sequence[Block], shape: str) -> Block:
    """One block with every slot of ``blocks``; where several hold a slot the last one wins."""
    blocks = [b for b in blocks if b.n]
    if not blocks:
        return empty(shape)
    if len(blocks) == 1:
        return blocks[0]
    times = np.concatenate([b.times for b in blocks])
    prio = np.concatenate([np.full(b.n, i) for i, b in enumerate(blocks)])
    order = np.lexsort((prio, times))
    # the last of each run of equal times: the highest priority
    keep = order[np.r_[times[order][1:] != times[order][:-1], True]]
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

    fields = [widen(lambda b, f=f: b.hists[f], len(keys), key_cols) for f in range(5)]
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
        hists=Hists(*(a[:, used_keys] for a in hs[:5]), remap[hs.bucket_key[used_cols]],
                    hs.bucket_index[used_cols], hs.buckets[:, used_cols]))


# -- rolling up --------------------------------------------------------------------------------


def rollup(block: Block, shape: str, start: int, step: int, topk: int | None) -> Block:
    """Points of ``step`` seconds from ``start`` (aligned: ``start + i * step``), each the sum
    of the points of ``block`` that start inside it; steps without points are left out.

    Sums add, counts add, ``nsources`` is the smallest and ``expected`` the
    largest of the parts, ``revised`` any. Breakdowns keep the ``topk`` largest
    keys of each step and fold the rest into ``(other)`` (``values.fold_top_k``),
    so totals stay exact. Histograms are merged bucket by bucket as
    ``Histogram.merge`` does (coarser schema wins, then at most MAX_BUCKETS).
    """
    if not block.n:
        return empty(shape)
    group = (block.times - start) // step
    heads = np.r_[0, np.flatnonzero(np.diff(group)) + 1]
    times = start + group[heads] * step
    counts = np.add.reduceat(block.counts, heads)
    nsrc = np.minimum.reduceat(block.nsources, heads)
    exp = np.maximum.reduceat(block.expected, heads)
    rev = np.logical_or.reduceat(block.revised, heads)
    if block.values is not None:
        vals = block.values
        present = np.logical_or.reduceat(~np.isnan(vals), heads, axis=0) if vals.shape[1] else \
            np.zeros((len(heads), 0), bool)
        sums = np.add.reduceat(np.nan_to_num(vals, nan=0.0), heads, axis=0) if vals.shape[1] else \
            np.zeros((len(heads), 0))
        sums[~present] = np.nan
        out = Block(times, counts, nsrc, exp, rev, block.keys, sums, None)
        if topk is not None and shape == values.DISCRETE:
            out = fold_numbers(out, topk)
        return compact_columns(out)
    return _rollup_hists(block, shape, heads, Block(times, counts, nsrc, exp, rev, block.keys, None, None),
                         topk)


def fold_numbers(block: Block, k: int) -> Block:
    """``values.fold_top_k`` on every row, vectorised."""
    vals = block.values
    present = ~np.isnan(vals)
    over = np.flatnonzero(present.sum(axis=1) > k)
    if not len(over):
        return block
    keys = block.keys
    if values.OTHER not in keys:
        keys = tuple(sorted((*keys, values.OTHER)))
        o = keys.index(values.OTHER)
        vals = np.insert(vals, o, np.nan, axis=1)
        present = np.insert(present, o, False, axis=1)
    else:
        vals = vals.copy()
    o = keys.index(values.OTHER)
    sub = vals[over]
    subp = present[over]
    # Rank by value, largest first; keys are sorted, so a stable sort breaks ties by name.
    ranking = np.where(subp, -sub, np.inf)
    order = np.argsort(ranking, axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(sub.shape[1])[None, :].repeat(len(over), 0), axis=1)
    kept = (rank < k) & subp
    rest = subp & ~kept
    other = np.where(kept[:, o], sub[:, o], 0.0)
    restv = np.where(rest, sub, 0.0)
    if np.array_equal(restv, np.rint(restv)) and np.abs(restv).sum(axis=1).max() < _EXACT_INT:
        folded = restv.sum(axis=1)  # whole numbers: any order of addition is exact
    else:  # correctly rounded, as values.fold_top_k does
        folded = np.array([math.fsum(row[m]) for row, m in zip(sub, rest, strict=True)])
    sub = np.where(kept, sub, np.nan)
    sub[:, o] = other + folded
    vals[over] = sub
    return block._replace(keys=keys, values=vals)


def _rollup_hists(block: Block, shape: str, heads: np.ndarray, out: Block, topk: int | None) -> Block:
    hs = block.hists
    ng, k = len(heads), len(block.keys)
    present = ~np.isnan(hs.count)
    if k:
        anyp = np.logical_or.reduceat(present, heads, axis=0)
        smin = np.fmin.reduceat(hs.schema, heads, axis=0)
        smax = np.fmax.reduceat(hs.schema, heads, axis=0)
        zmin = np.fmin.reduceat(hs.zero_threshold, heads, axis=0)
        zmax = np.fmax.reduceat(hs.zero_threshold, heads, axis=0)

        def add(m):
            s = np.add.reduceat(np.nan_to_num(m, nan=0.0), heads, axis=0)
            s[~anyp] = np.nan
            return s

        zero_count, count, total = add(hs.zero_count), add(hs.count), add(hs.sum)
        if hs.buckets.shape[1]:
            bpresent = np.logical_or.reduceat(~np.isnan(hs.buckets), heads, axis=0)
            buckets = np.add.reduceat(np.nan_to_num(hs.buckets, nan=0.0), heads, axis=0)
            buckets[~bpresent] = np.nan
            # buckets per (step, key): columns are grouped by key
            csum = np.concatenate([np.zeros((ng, 1), np.int64), np.cumsum(bpresent, axis=1)], axis=1)
            edges = np.searchsorted(hs.bucket_key, np.arange(k + 1))
            nb = csum[:, edges[1:]] - csum[:, edges[:-1]]
        else:
            buckets = np.zeros((ng, 0))
            nb = np.zeros((ng, k), np.int64)
        # Where schemas or zero thresholds differ, or a merge overflows, Histogram.merge decides.
        slow = anyp & ((smin != smax) | (zmin != zmax) | (nb > MAX_BUCKETS))
        schema, zt = smin, zmin
    else:
        schema = zt = zero_count = count = total = np.zeros((ng, 0))
        buckets = np.zeros((ng, 0))
        slow = np.zeros((ng, 0), bool)
    merged = out._replace(hists=Hists(schema, zt, zero_count, count, total, hs.bucket_key, hs.bucket_index,
                                      buckets))
    nkeys = (~np.isnan(count)).sum(axis=1) if k else np.zeros(ng, np.int64)
    fold_rows = np.flatnonzero(nkeys > topk) if topk is not None and shape in _KEYED_SHAPES else []
    slow_rows = sorted(set(np.flatnonzero(slow.any(axis=1)).tolist()) | set(np.asarray(fold_rows).tolist()))
    if not slow_rows:
        return compact_columns(merged)
    # Rebuild the few difficult points with Histogram.merge and fold_top_k.
    ends = np.r_[heads[1:], block.n]
    source = _cells(block)
    fixed: dict[int, dict[str, Histogram]] = {}
    for g in slow_rows:
        acc: dict[str, Histogram] = {}
        for r in range(heads[g], ends[g]):
            for j, h in source.get(r, {}).items():
                key = block.keys[j]
                if key in acc:
                    acc[key].merge(h)
                else:
                    acc[key] = h.copy()
        if topk is not None and shape in _KEYED_SHAPES:
            acc = values.fold_top_k(acc, topk, values.DISCRETE_HISTOGRAM)
        fixed[g] = acc
    keep = [g for g in range(ng) if g not in fixed]
    cells_now = _cells(merged, keep)
    keys = sorted(set(block.keys) | {key for acc in fixed.values() for key in acc})
    kidx = {key: j for j, key in enumerate(keys)}
    cells = [(g, kidx[merged.keys[j]], h) for g, per in cells_now.items() for j, h in per.items()]
    cells += [(g, kidx[key], h) for g, acc in fixed.items() for key, h in acc.items()]
    return compact_columns(_frame(out.times, out.counts, out.nsources, out.expected, out.revised, keys,
                                  shape, cells))


# -- encoding ----------------------------------------------------------------------------------


def _zigzag(a: np.ndarray) -> np.ndarray:
    a = a.astype(np.int64)
    return ((a << 1) ^ (a >> 63)).view(np.uint64)


def _unzigzag(u: np.ndarray) -> np.ndarray:
    signed = np.ascontiguousarray(u).view(np.int64)
    return (np.ascontiguousarray(u) >> np.uint64(1)).view(np.int64) ^ -(signed & 1)


def _varints(u: np.ndarray) -> bytes:
    """LEB128: 7 bits per byte, high bit set on all but the last byte of a value."""
    if not u.size:
        return b""
    nb = np.ones(u.shape, np.int64)
    rest = u >> np.uint64(7)
    while rest.any():
        nb += rest != 0
        rest >>= np.uint64(7)
    ends = np.cumsum(nb)
    starts = ends - nb
    out = np.empty(int(ends[-1]), np.uint8)
    for k in range(int(nb.max())):
        sel = nb > k
        part = ((u[sel] >> np.uint64(7 * k)) & np.uint64(0x7F)).astype(np.uint8)
        out[starts[sel] + k] = part | ((nb[sel] > k + 1).astype(np.uint8) << 7)
    return out.tobytes()


def _unvarints(buf: bytes, count: int) -> np.ndarray:
    b = np.frombuffer(buf, np.uint8)
    ends = np.flatnonzero(b < 0x80)
    if len(ends) != count:
        raise ValueError(f"corrupt chunk: {len(ends)} varints where {count} were expected")
    if not count:
        return np.zeros(0, np.uint64)
    starts = np.r_[0, ends[:-1] + 1]
    pos = np.arange(len(b)) - np.repeat(starts, ends - starts + 1)
    parts = (b & 0x7F).astype(np.uint64) << (7 * pos).astype(np.uint64)
    return np.bitwise_or.reduceat(parts, starts)


def _planes(u: np.ndarray, present: np.ndarray, size: int) -> bytes:
    """The present values of ``u`` (columns as rows: ``[c, n]``) column by column, ``size``
    bytes each, as byte planes."""
    stream = u.ravel() if present.all() else u[present]
    dtype = np.dtype(f"<u{size}")
    return np.ascontiguousarray(stream.astype(dtype)).view(np.uint8).reshape(-1, size).T.tobytes()


def _unplanes(data: bytes, present: np.ndarray, size: int) -> np.ndarray:
    """The inverse of :func:`_planes`: ``[c, n]`` uint64 with zeros where absent."""
    count = int(present.sum())
    planes = np.frombuffer(data, np.uint8)
    if planes.size != count * size:
        raise ValueError("corrupt chunk: column sizes do not match")
    stream = np.ascontiguousarray(planes.reshape(size, count).T).view(f"<u{size}").ravel()
    if count == present.size:
        return stream.astype(np.uint64).reshape(present.shape)
    out = np.zeros(present.shape, np.uint64)
    out[present] = stream
    return out


def _ulps(value: np.ndarray, decimal: np.ndarray) -> np.ndarray:
    """How many units in the last place ``value`` lies above ``decimal`` (same signs, or zero)."""
    return value.view(np.int64) - decimal.view(np.int64)


def _near(decimal: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Where ``value`` is within MAX_ULPS units in the last place of ``decimal``."""
    same_sign = np.signbit(decimal) == np.signbit(value)
    return same_sign & (np.abs(_ulps(value, decimal)) <= MAX_ULPS)


def _decimals(sample: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """Per row of ``sample``, the fewest decimals (0..MAX_DECIMALS) that hold its values
    exactly, or -1; rows not ``allowed`` get -1."""
    out = np.full(sample.shape[0], -1, np.int64)
    todo = allowed.copy()
    for k in range(MAX_DECIMALS + 1):
        if not todo.any():
            break
        s = 10.0 ** k
        with np.errstate(over="ignore", invalid="ignore"):
            iv = np.rint(sample * s)
            ok = todo & (np.abs(iv) < _EXACT_INT).all(axis=1) & _near(iv / s, sample).all(axis=1)
        out[ok] = k
        todo &= ~ok
    return out


def _encode_matrix(m: np.ndarray) -> dict:
    """Encode a float matrix column by column (NaN: absent), see the module docstring.

    Works on the transpose (one row per column, contiguous): a column's values are then
    neighbours in memory, as they are in the encoding.
    """
    n, c = m.shape
    cols = np.ascontiguousarray(m.T)
    present = ~np.isnan(cols)
    out: dict = {"n": n, "c": c}
    everything = bool(present.all())
    if not everything:
        out["p"] = np.packbits(present.ravel()).tobytes()
    if not c or not n:
        return out
    z = np.where(present, cols, 0.0)
    if everything:
        filled = z
    else:
        # Forward-fill absent values so that a delta spans only present ones.
        idx = np.where(present, np.arange(n)[None, :], 0)
        np.maximum.accumulate(idx, axis=1, out=idx)
        filled = np.take_along_axis(z, idx, axis=1)
    decimals = np.full(c, -1, np.int64)
    ints = np.zeros((c, n), np.int64)
    off = np.zeros((c, n), np.int64)  # units in the last place between a value and its decimal
    # The fewest decimals that represent a column exactly: guessed on its first values (so
    # that columns of arbitrary doubles cost one pass, not one per candidate), then checked.
    guess = _decimals(filled[:, :16], ~(np.signbit(z) & (z == 0)).any(axis=1))
    for k in range(MAX_DECIMALS + 1):
        rows = np.flatnonzero((guess >= 0) & (guess <= k) & (decimals < 0))
        if not len(rows):
            if not ((guess >= 0) & (decimals < 0)).any():
                break
            continue
        s = 10.0 ** k
        sub = filled[rows]
        with np.errstate(over="ignore", invalid="ignore"):  # huge values simply do not qualify
            iv = np.rint(sub * s)
            back = iv / s
            ok = (np.abs(iv) < _EXACT_INT).all(axis=1) & _near(back, sub).all(axis=1)
        good = rows[ok]
        decimals[good] = k
        ints[good] = iv[ok].astype(np.int64)
        off[good] = _ulps(sub[ok], back[ok])
    is_int = decimals >= 0
    out["k"] = (decimals + 1).astype(np.uint8).tobytes()
    if is_int.any():
        ic = ints[is_int]
        ip = present[is_int]
        delta = np.diff(ic, axis=1, prepend=0)
        # Delta-encode a column when that makes its numbers smaller (L1: cheap, and close enough
        # to the size the compressor achieves).
        use_delta = (np.abs(np.where(ip, delta, 0)).sum(axis=1, dtype=float)
                     <= np.abs(np.where(ip, ic, 0)).sum(axis=1, dtype=float))
        chosen = _zigzag(np.where(use_delta[:, None], delta, ic))
        out["d"] = np.packbits(use_delta).tobytes()
        # Each column in the narrowest of 1, 2, 4 or 8 bytes, columns of one width
        # together, split into byte planes: high planes are mostly zeros, which zlib packs.
        top = np.where(ip, chosen, np.uint64(0)).max(axis=1)
        width = np.select([top < 1 << 8, top < 1 << 16, top < 1 << 32], [0, 1, 2], 3).astype(np.uint8)
        out["w"] = width.tobytes()
        out["i"] = [_planes(chosen[width == w], ip[width == w], 1 << w) for w in range(4)]
        ulps = np.where(ip, off[is_int], 0)
        if ulps.any():
            out["u"] = np.ascontiguousarray(ulps[ip]).astype(np.int8).tobytes()
    if (~is_int).any():
        fc = filled[~is_int]
        fp = present[~is_int]
        raw = fc.view(np.uint64)
        xored = raw ^ np.concatenate([np.zeros((raw.shape[0], 1), np.uint64), raw[:, :-1]], axis=1)
        stream = np.ascontiguousarray(xored[fp])
        out["f"] = stream.view(np.uint8).reshape(-1, 8).T.tobytes()
    return out


def _decode_matrix(d: dict) -> np.ndarray:
    n, c = d["n"], d["c"]
    if "p" in d:
        present = np.unpackbits(np.frombuffer(d["p"], np.uint8), count=n * c).reshape(c, n).view(bool)
    else:
        present = np.ones((c, n), bool)
    cols = np.full((c, n), np.nan)
    if not c or not n:
        return cols.T
    decimals = np.frombuffer(d["k"], np.uint8).astype(np.int64) - 1
    is_int = decimals >= 0
    if is_int.any():
        ip = present[is_int]
        width = np.frombuffer(d["w"], np.uint8)
        zz = np.zeros(ip.shape, np.uint64)
        for w in range(4):
            sel = width == w
            if sel.any():
                zz[sel] = _unplanes(d["i"][w], ip[sel], 1 << w)
        ic = _unzigzag(zz)
        use_delta = np.unpackbits(np.frombuffer(d["d"], np.uint8), count=ip.shape[0]).view(bool)
        # Absent cells hold 0: a delta carries over them, so cumulate the deltas as they are.
        if use_delta.all():
            np.cumsum(ic, axis=1, out=ic)
        elif use_delta.any():
            ic[use_delta] = np.cumsum(ic[use_delta], axis=1)
        vals = ic / (10.0 ** decimals[is_int])[:, None]
        if "u" in d:
            ulps = np.zeros(ip.shape, np.int64)
            ulps[ip] = np.frombuffer(d["u"], np.int8)
            vals = (vals.view(np.int64) + ulps).view(np.float64)
        if not ip.all():
            vals[~ip] = np.nan
        cols[is_int] = vals
    if (~is_int).any():
        fp = present[~is_int]
        count = int(fp.sum())
        planes = np.frombuffer(d["f"], np.uint8)
        if planes.size != count * 8:
            raise ValueError("corrupt chunk: column sizes do not match")
        xored = np.ascontiguousarray(planes.reshape(8, count).T).view(np.uint64).ravel()
        # Undo the XOR with the previous present value of the same column: a prefix XOR
        # over the whole stream, reset at each column start.
        prefix = np.bitwise_xor.accumulate(xored) if count else xored
        per_col = fp.sum(axis=1)
        starts = np.cumsum(per_col) - per_col
        before = np.where(starts > 0, prefix[np.maximum(starts - 1, 0)], np.uint64(0))
        raw = prefix ^ np.repeat(before, per_col)
        fc = np.full(fp.shape, np.nan)
        fc[fp] = raw.view(np.float64)
        cols[~is_int] = fc
    return cols.T


def encode(block: Block, level: int = 6) -> bytes:
    """The chunk bytes of ``block`` (see the module docstring)."""
    meta = np.column_stack([block.times, block.counts, block.nsources, block.expected,
                            block.revised.astype(np.int64)]).astype(float)
    doc: dict = {"v": FORMAT, "keys": list(block.keys), "meta": _encode_matrix(meta)}
    if block.values is not None:
        doc["values"] = _encode_matrix(block.values)
    else:
        hs = block.hists
        doc["hist"] = _encode_matrix(np.hstack(hs[:5]))
        doc["bkey"] = _varints(hs.bucket_key.astype(np.uint64))
        # bucket indices: delta within a key (sorted), the first of a key zigzagged
        doc["bidx"] = _varints(_zigzag(np.diff(hs.bucket_index, prepend=0)))
        doc["buckets"] = _encode_matrix(hs.buckets)
    return zlib.compress(msgspec.msgpack.encode(doc), level)


def decode(data: bytes) -> Block:
    """The block a chunk holds. ValueError ("corrupt chunk: ...") if the bytes are not a chunk
    of this format."""
    try:
        doc = msgspec.msgpack.decode(zlib.decompress(data))
    except (zlib.error, msgspec.DecodeError) as exc:
        raise ValueError(f"corrupt chunk: {exc}") from None
    if not isinstance(doc, dict) or doc.get("v") != FORMAT:
        raise ValueError("corrupt chunk: unknown format")
    try:
        return _decode_doc(doc)
    except (KeyError, TypeError, IndexError, ValueError) as exc:
        raise ValueError(f"corrupt chunk: {exc!r}") from None


def _decode_doc(doc: dict) -> Block:
    meta = _decode_matrix(doc["meta"])
    times, counts, nsrc, exp, rev = (meta[:, i].astype(np.int64) for i in range(5))
    keys = tuple(doc["keys"])
    if "values" in doc:
        return Block(times, counts, nsrc, exp, rev.astype(bool), keys, _decode_matrix(doc["values"]), None)
    k = len(keys)
    fields = _decode_matrix(doc["hist"])
    ncols = doc["buckets"]["c"]
    bkey = _unvarints(doc["bkey"], ncols).astype(np.int64)
    bidx = np.cumsum(_unzigzag(_unvarints(doc["bidx"], ncols)))
    hs = Hists(*(fields[:, i * k:(i + 1) * k] for i in range(5)), bkey, bidx,
               _decode_matrix(doc["buckets"]))
    return Block(times, counts, nsrc, exp, rev.astype(bool), keys, None, hs)
