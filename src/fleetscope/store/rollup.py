"""Rolling blocks up into coarser steps, exactly, in columns.

:func:`rollup` turns the points of a block into points of ``step`` seconds:
sums and counts add, ``nsources`` takes the smallest and ``expected`` the
largest part, histograms merge bucket by bucket (their min and max: the
smallest and the largest, not known where a part does not know its own).
Breakdowns keep their top keys and fold the rest into ``(other)``
(:func:`fold_numbers`), so totals stay exact. The result equals
:func:`fleetscope.model.series.rollup` over the same points (the tests compare
the two), at numpy speed: the few points where histograms of different schemas
meet, or a merge overflows, are rebuilt with ``Histogram.merge`` itself.
"""

from __future__ import annotations

import math

import numpy as np

from fleetscope.model import values
from fleetscope.model.histogram import MAX_BUCKETS, Histogram
from fleetscope.store.block import (
    EXACT_INT,
    KEYED_SHAPES,
    Block,
    Hists,
    compact_columns,
    empty,
    from_columns,
    hist_cells,
)


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
    if np.array_equal(restv, np.rint(restv)) and np.abs(restv).sum(axis=1).max() < EXACT_INT:
        folded = restv.sum(axis=1)  # whole numbers: any order of addition is exact
    else:  # correctly rounded, as values.fold_top_k does
        folded = np.array([math.fsum(row[m]) for row, m in zip(sub, rest, strict=True)])
    sub = np.where(kept, sub, np.nan)
    sub[:, o] = other + folded
    vals[over] = sub
    return block._replace(keys=keys, values=vals)


def _range(hs: Hists, heads: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The min and max of the merged histograms of each step and key, as ``Histogram.merge``
    makes them: the smallest min and largest max of the histograms that hold values, NaN (not
    known) as soon as one of them does not know its own, NaN (none) when none holds a value."""
    holds = hs.count > 0.0  # false where absent (NaN) or empty: those change nothing
    # np.minimum/np.maximum (unlike fmin/fmax) carry a NaN through: not known stays not known.
    least = np.minimum.reduceat(np.where(holds, hs.min, np.inf), heads, axis=0)
    most = np.maximum.reduceat(np.where(holds, hs.max, -np.inf), heads, axis=0)
    none = ~np.logical_or.reduceat(holds, heads, axis=0)
    least[none] = np.nan
    most[none] = np.nan
    return least, most


def _rollup_hists(block: Block, shape: str, heads: np.ndarray, out: Block, topk: int | None) -> Block:
    """:func:`rollup` of a histogram block: ``heads`` the first row of each step, ``out`` the
    rolled-up per-point columns. Names: ``*_min``/``*_max`` the smallest and largest schema or
    zero threshold (``zt``) of a step's histograms of one key; ``nbuckets[step, key]`` the
    buckets the merged histogram would have; ``least``/``most`` the merged min and max."""
    hs = block.hists
    nsteps, k = len(heads), len(block.keys)
    present = ~np.isnan(hs.count)
    if k:
        any_present = np.logical_or.reduceat(present, heads, axis=0)
        schema_min = np.fmin.reduceat(hs.schema, heads, axis=0)
        schema_max = np.fmax.reduceat(hs.schema, heads, axis=0)
        zt_min = np.fmin.reduceat(hs.zero_threshold, heads, axis=0)
        zt_max = np.fmax.reduceat(hs.zero_threshold, heads, axis=0)

        def add(m):
            s = np.add.reduceat(np.nan_to_num(m, nan=0.0), heads, axis=0)
            s[~any_present] = np.nan
            return s

        zero_count, count, total = add(hs.zero_count), add(hs.count), add(hs.sum)
        least, most = _range(hs, heads)
        if hs.buckets.shape[1]:
            bucket_present = np.logical_or.reduceat(~np.isnan(hs.buckets), heads, axis=0)
            buckets = np.add.reduceat(np.nan_to_num(hs.buckets, nan=0.0), heads, axis=0)
            buckets[~bucket_present] = np.nan
            # buckets per (step, key): columns are grouped by key
            cum_present = np.concatenate([np.zeros((nsteps, 1), np.int64),
                                          np.cumsum(bucket_present, axis=1)], axis=1)
            edges = np.searchsorted(hs.bucket_key, np.arange(k + 1))
            nbuckets = cum_present[:, edges[1:]] - cum_present[:, edges[:-1]]
        else:
            buckets = np.zeros((nsteps, 0))
            nbuckets = np.zeros((nsteps, k), np.int64)
        # Where schemas or zero thresholds differ, or a merge overflows, Histogram.merge decides.
        slow = any_present & ((schema_min != schema_max) | (zt_min != zt_max) | (nbuckets > MAX_BUCKETS))
        schema, zero_threshold = schema_min, zt_min
    else:
        schema = zero_threshold = zero_count = count = total = least = most = np.zeros((nsteps, 0))
        buckets = np.zeros((nsteps, 0))
        slow = np.zeros((nsteps, 0), bool)
    merged = out._replace(hists=Hists(schema, zero_threshold, zero_count, count, total, least, most,
                                      hs.bucket_key, hs.bucket_index, buckets))
    nkeys = (~np.isnan(count)).sum(axis=1) if k else np.zeros(nsteps, np.int64)
    fold_rows = np.flatnonzero(nkeys > topk) if topk is not None and shape in KEYED_SHAPES else []
    slow_rows = sorted(set(np.flatnonzero(slow.any(axis=1)).tolist()) | set(np.asarray(fold_rows).tolist()))
    if not slow_rows:
        return compact_columns(merged)
    # Rebuild the few difficult points with Histogram.merge and fold_top_k.
    ends = np.r_[heads[1:], block.n]
    source = hist_cells(block)
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
        if topk is not None and shape in KEYED_SHAPES:
            acc = values.fold_top_k(acc, topk, values.DISCRETE_HISTOGRAM)
        fixed[g] = acc
    keep = [g for g in range(nsteps) if g not in fixed]
    cells_now = hist_cells(merged, keep)
    keys = sorted(set(block.keys) | {key for acc in fixed.values() for key in acc})
    kidx = {key: j for j, key in enumerate(keys)}
    cells = [(g, kidx[merged.keys[j]], h) for g, per in cells_now.items() for j, h in per.items()]
    cells += [(g, kidx[key], h) for g, acc in fixed.items() for key, h in acc.items()]
    return compact_columns(from_columns(out.times, out.counts, out.nsources, out.expected, out.revised,
                                        keys, shape, cells))

