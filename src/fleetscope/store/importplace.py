"""An import's answer on steps: samples of their own length placed on a grid, and the tiers
that keep the placing done once.

An instrumentation's answer over one import starts as its **samples**: one value per sample
of the log (the instrumentation evaluated over the sample's rows), each over its own interval
``[t, t + interval)`` (a second of vmstat, ten minutes of sar). On the steps of a range
(:mod:`fleetscope.api.imported`'s docstring has the rules) a sample adds to every step it
overlaps: an interval metric the share of its activity that falls in the step, a point metric
its level, averaged over the sample *times* that overlap the step.

:func:`place` puts samples on a grid of ``step`` seconds as rows of a
:class:`~fleetscope.store.block.Block` at the start of each step a sample overlaps, in two
blocks: ``starts``, the rows of samples that begin in their step, and ``carried``, those of
samples that began in an earlier step. ``counts`` count distinct sample times (a point
metric's divisor), so rolling each block up by step (:func:`fleetscope.store.rollup.rollup`:
sums and counts add) gives every step's sum and count. An interval metric's shares add up
across steps, so it has no ``carried`` rows: all go to ``starts``.

The tiers (:data:`GRID_TIERS`: minutes and hours) keep :func:`place` of every sample on the
grid of their resolution, ``starts`` and ``carried`` apart. A range of steps that are
multiples of a tier's resolution, and that starts on its grid, is answered from that tier
alone, exactly (:func:`from_grid`): a step is the sum of the ``starts`` of the tier's rows
inside it plus the ``carried`` row of its first (a sample that overlaps a step and began
before it overlaps the step's first row; one that began inside is in ``starts`` once, where
it began). So a day at 60-second steps reads 1,440 rows of the minute tier (and no carried
rows for a log whose samples do not cross a minute), whatever the log's resolution; other
steps place the samples themselves (:func:`from_samples`), as many rows as the range holds
samples. A point metric averaged over a tier thus gives each sample the same weight as when
placed directly (not the weight of the minutes it covers): the answer is the same.

In the samples tier a row's ``counts`` holds the sample's **interval** in seconds, not a
count (the one place a block's ``counts`` means something else; nothing but this module
reads that tier); a time appears once per distinct interval. Values are kept whole (no top-K
folding): an import's keys are bounded by its columns, and the reader folds the answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from fleetscope.model.metrics import INTERVAL
from fleetscope.store.block import Block, Hists, concat, empty, take
from fleetscope.store.rollup import rollup


class GridTier(NamedTuple):
    """A tier of placed samples: rows of ``resolution`` seconds on the epoch's grid."""

    starts: int  # the store's tier number of the ``starts`` rows
    carried: int  # and of the ``carried`` rows
    resolution: int
    span: int  # seconds of rows per chunk


SAMPLES = 0  # the store's tier number of the samples
SAMPLE_CHUNK = 3600  # samples per chunk (of a log's usual interval): an hour of 1-second samples
GRID_TIERS = (GridTier(1, 2, 60, 86400), GridTier(3, 4, 3600, 30 * 86400))  # finest first


class Placed(NamedTuple):
    """Samples placed on a grid: rows at step starts, sums with distinct-time counts."""

    starts: Block
    carried: Block


def place(samples: Block, shape: str, kind: str, start: int, step: int, lo: int, hi: int) -> Placed:
    """The rows of ``samples`` (the samples tier's block) on the steps ``start + i * step``
    that lie in ``[lo, hi)`` (see the module docstring)."""
    if not samples.n:
        return Placed(empty(shape), empty(shape))
    t = samples.times
    length = np.maximum(samples.counts, 1)
    ends = t + length
    lo_slot = -(-(lo - start) // step)
    hi_slot = (hi - start - 1) // step
    first = np.maximum((t - start) // step, lo_slot)
    last = np.minimum((ends - 1 - start) // step, hi_slot)
    m = np.maximum(last - first + 1, 0)
    total = int(m.sum())
    if not total:
        return Placed(empty(shape), empty(shape))
    if m.max() == 1:
        # Every sample in one step (a 1-second log on steps of a second or more): in time order
        # already, the rows are the samples themselves (those in the range).
        row = None if total == samples.n else np.flatnonzero(m)
        step_start = start + (first if row is None else first[row]) * step
        placed, times = (samples, t) if row is None else (take(samples, row), t[row])
    else:
        row = np.repeat(np.arange(samples.n), m)
        slot = first[row] + (np.arange(total) - np.repeat(np.cumsum(m) - m, m))
        step_start = start + slot * step
        # rows by step, then sample time (stable: the samples are in time order)
        order = np.argsort(step_start, kind="stable")
        row, step_start = row[order], step_start[order]
        placed, times = take(samples, row), t[row]
    if kind == INTERVAL:
        sample_ends, lengths = (ends, length) if row is None else (ends[row], length[row])
        share = (np.minimum(sample_ends, step_start + step) - np.maximum(times, step_start)) / lengths
        if (share != 1.0).any():
            placed = _scaled(placed, share)
        counts = np.ones(total, np.int64)
        carried = None
    else:
        # one count per distinct sample time in a step (sar's -r and -S give one time twice)
        counts = np.r_[True, (step_start[1:] != step_start[:-1]) | (times[1:] != times[:-1])].astype(np.int64)
        carried = times < step_start
        if not carried.any():
            carried = None
    placed = placed._replace(times=step_start, counts=counts, nsources=np.ones(total, np.int64),
                             expected=np.ones(total, np.int64), revised=np.zeros(total, bool))
    if carried is None:
        return Placed(placed, empty(shape))
    return Placed(take(placed, ~carried), take(placed, carried))


def _scaled(block: Block, share: np.ndarray) -> Block:
    """``block`` with every number (sums, counts of histograms) multiplied by its row's share."""
    col = share[:, None]
    if block.values is not None:
        return block._replace(values=block.values * col)
    hs = block.hists
    return block._replace(hists=Hists(hs.schema, hs.zero_threshold, hs.zero_count * col, hs.count * col,
                                      hs.sum * col, hs.min, hs.max, hs.bucket_key, hs.bucket_index,
                                      hs.buckets * col))


def steps_of(placed: Placed, shape: str, start: int, step: int) -> Block:
    """Every step's sum and count from rows placed on this very grid."""
    return rollup(concat([placed.starts, placed.carried], shape), shape, start, step, None)


def grid_rows(placed: Placed, shape: str, step: int) -> Placed:
    """Placed rows made one row per step and part (sums and counts added): what a tier keeps."""
    return Placed(rollup(placed.starts, shape, 0, step, None), rollup(placed.carried, shape, 0, step, None))


def from_samples(samples: Block, shape: str, kind: str, start: int, step: int, n: int) -> Block:
    """The sum and count of each of ``n`` steps of ``step`` seconds from ``start``."""
    end = start + n * step
    return steps_of(place(samples, shape, kind, start, step, start, end), shape, start, step)


def from_grid(tier: Placed, shape: str, start: int, step: int) -> Block:
    """The steps of ``step`` seconds from ``start`` (both multiples of the tier's resolution)
    from a tier's rows in the range: each step's ``starts`` and its first row's ``carried``."""
    carried = tier.carried
    if carried.n:
        carried = take(carried, (carried.times - start) % step == 0)
    return rollup(concat([tier.starts, carried], shape), shape, start, step, None)


def grid_for(step: int, start: int) -> GridTier | None:
    """The coarsest tier that answers steps of ``step`` seconds from ``start``, if any."""
    fits = [g for g in GRID_TIERS if step % g.resolution == 0 and start % g.resolution == 0]
    return fits[-1] if fits else None


def sample_span(intervals: Sequence[int] | np.ndarray) -> int:
    """Seconds of samples per chunk: :data:`SAMPLE_CHUNK` samples of the usual interval."""
    usual = int(np.median(intervals)) if len(intervals) else 1
    return SAMPLE_CHUNK * max(1, usual)
