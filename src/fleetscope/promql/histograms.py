"""Native histograms in PromQL, as Prometheus 2.42 treats them.

fleetscope's :class:`~fleetscope.model.histogram.Histogram` has Prometheus' bucket layout
(bucket ``i`` covers ``(base**(i-1), base**i]``, a zero bucket ``[-t, t]``) and no negative
buckets. Here are PromQL's operations on them: ``histogram_quantile`` (linear interpolation
inside the bucket, as in 2.42), ``histogram_fraction``, the rate of a counter histogram
(``histogramRate``, with its counter-reset detection), the sum of histograms, and the
bucket list of the HTTP API. Results of rates and deltas may hold negative counts (a delta of
a gauge histogram), so the arithmetic here works on the fields and never calls
``Histogram.merge`` (which would also downscale past 160 buckets, as Prometheus does not).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

from fleetscope.model.histogram import Histogram

CLOSED = 3  # the zero bucket [-t, t]
LEFT_OPEN = 0  # a positive bucket (lower, upper]


def _new(schema: int, zero_threshold: float) -> Histogram:
    h = Histogram(schema, zero_threshold)
    h.min = h.max = math.nan  # not known, as for any histogram from Prometheus
    return h


def at_schema(h: Histogram, schema: int) -> Histogram:
    """A copy of ``h`` at a schema no finer than its own (neighbouring buckets added)."""
    out = h.copy()
    if schema < out.schema:
        out.downscale(out.schema - schema)
    return out


def with_zero_threshold(h: Histogram, threshold: float) -> Histogram:
    """A copy with the zero bucket widened to ``threshold``, and further to the upper bound of
    any bucket reaching below it (Prometheus' zeroCountForLargerThreshold)."""
    out = h.copy()
    if threshold <= out.zero_threshold:
        return out
    for i in sorted(out.buckets):
        lower, upper = out.bucket_bounds(i)
        if lower >= threshold:
            break
        out.zero_count += out.buckets.pop(i)
        threshold = max(threshold, upper)
    out.zero_threshold = threshold
    return out


def _reconciled(a: Histogram, b: Histogram) -> tuple[Histogram, Histogram]:
    schema = min(a.schema, b.schema)
    a, b = at_schema(a, schema), at_schema(b, schema)
    threshold = max(a.zero_threshold, b.zero_threshold)
    a, b = with_zero_threshold(a, threshold), with_zero_threshold(b, threshold)
    if a.zero_threshold != b.zero_threshold:  # one widened past the other: widen both to it
        threshold = max(a.zero_threshold, b.zero_threshold)
        a, b = with_zero_threshold(a, threshold), with_zero_threshold(b, threshold)
    return a, b


def add(a: Histogram, b: Histogram, sign: float = 1.0) -> Histogram:
    """``a + sign * b`` at the coarser schema of the two."""
    a, b = _reconciled(a, b)
    out = _new(a.schema, a.zero_threshold)
    out.zero_count = a.zero_count + sign * b.zero_count
    out.count = a.count + sign * b.count
    out.sum = a.sum + sign * b.sum
    out.buckets = dict(a.buckets)
    for i, c in b.buckets.items():
        out.buckets[i] = out.buckets.get(i, 0.0) + sign * c
    return out


def scaled(h: Histogram, factor: float) -> Histogram:
    out = _new(h.schema, h.zero_threshold)
    out.zero_count = h.zero_count * factor
    out.count = h.count * factor
    out.sum = h.sum * factor
    out.buckets = {i: c * factor for i, c in h.buckets.items()}
    return out


def total(hists: Sequence[Histogram]) -> Histogram:
    """The sum of histograms, in order (PromQL's ``sum``)."""
    out = hists[0]
    for h in hists[1:]:
        out = add(out, h)
    return out


def is_reset(curr: Histogram, prev: Histogram) -> bool:
    """Prometheus' DetectReset: a counter histogram went down somewhere."""
    if curr.count < prev.count or curr.schema > prev.schema or curr.zero_threshold < prev.zero_threshold:
        return True
    old = with_zero_threshold(at_schema(prev, curr.schema), curr.zero_threshold)
    if old.zero_threshold != curr.zero_threshold or curr.zero_count < old.zero_count:
        return True
    return any(curr.buckets.get(i, 0.0) < c for i, c in old.buckets.items())


def rate(hists: Sequence[Histogram], is_counter: bool) -> Histogram:
    """The increase from the first to the last histogram of a window (histogramRate): the last
    minus the first at the smallest schema seen, plus what each counter reset lost."""
    first, last = hists[0], hists[-1]
    schema = min(first.schema, last.schema)
    if is_counter:
        schema = min([schema, *(h.schema for h in hists[1:-1])])
    out = add(at_schema(last, schema), first, -1.0)
    if is_counter:
        prev = first
        for curr in hists[1:]:
            if is_reset(curr, prev):
                out = add(out, prev)
            prev = curr
    return out


class Bucket(tuple):
    """``(lower, upper, count, boundary_rule)`` as Prometheus' bucket iterator yields them."""

    __slots__ = ()

    lower = property(lambda self: self[0])
    upper = property(lambda self: self[1])
    count = property(lambda self: self[2])
    rule = property(lambda self: self[3])


def buckets(h: Histogram) -> Iterator[Bucket]:
    """The zero bucket (when it holds anything), then the positive buckets, lower bounds
    clamped to the zero threshold (AllBucketIterator)."""
    if h.zero_count > 0:
        yield Bucket((-h.zero_threshold, h.zero_threshold, h.zero_count, CLOSED))
    for i in sorted(h.buckets):
        lower, upper = h.bucket_bounds(i)
        yield Bucket((max(lower, h.zero_threshold), upper, h.buckets[i], LEFT_OPEN))


def quantile(q: float, h: Histogram) -> float:
    """``histogram_quantile`` of a native histogram (Prometheus 2.42: linear interpolation in
    the bucket; 0 is the lower bound of the zero bucket when all other buckets are positive)."""
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    if h.count == 0 or math.isnan(q):
        return math.nan
    rank = q * h.count
    count = 0.0
    bucket = None
    for bucket in buckets(h):
        count += bucket.count
        if count >= rank:
            break
    if bucket is None:
        return math.nan
    lower, upper = bucket.lower, bucket.upper
    if lower < 0 < upper and h.buckets:
        lower = 0.0
    count = min(count, h.count)
    if count < rank:
        return upper
    rank -= count - bucket.count
    return lower + (upper - lower) * (rank / bucket.count)


def fraction(lower: float, upper: float, h: Histogram) -> float:
    """``histogram_fraction``: the share of observations between ``lower`` and ``upper``."""
    if h.count == 0 or math.isnan(lower) or math.isnan(upper):
        return math.nan
    if lower >= upper:
        return 0.0
    rank = lower_rank = upper_rank = 0.0
    lower_set = upper_set = False
    for b in buckets(h):
        b_lower, b_upper = b.lower, b.upper
        if b_lower < 0 < b_upper and h.buckets:
            b_lower = 0.0
        if not lower_set and b_lower >= lower:
            lower_rank, lower_set = rank, True
        if not upper_set and b_lower >= upper:
            upper_rank, upper_set = rank, True
        if lower_set and upper_set:
            break
        if not lower_set and b_lower < lower < b_upper:
            lower_rank, lower_set = rank + b.count * (lower - b_lower) / (b_upper - b_lower), True
        if not upper_set and b_lower < upper < b_upper:
            upper_rank, upper_set = rank + b.count * (upper - b_lower) / (b_upper - b_lower), True
        if lower_set and upper_set:
            break
        rank += b.count
    if not lower_set or lower_rank > h.count:
        lower_rank = h.count
    if not upper_set or upper_rank > h.count:
        upper_rank = h.count
    return (upper_rank - lower_rank) / h.count
