"""Exponential histograms, in the bucket layout of Prometheus native histograms
and OpenTelemetry exponential histograms.

Bucket ``i`` covers ``(base**(i-1), base**i]`` with ``base = 2**(2**-schema)``.
Default schema 3 (8 buckets per doubling). Values ``<= zero_threshold`` (0 by
default; negative values too) go to the zero bucket. Buckets are sparse
``{index: count}``; counts are floats (point metrics averaged over time give
fractional counts). ``count`` and ``sum`` are kept exactly. When a histogram
holds more than ``MAX_BUCKETS`` (160) buckets it downscales (schema n -> n-1,
index i -> ceil(i/2) i.e. ``(i + 1) >> 1`` ... as Prometheus does) until it fits.
Merging two histograms first downscales the finer one to the coarser schema,
then adds counts: exact and associative. (A histogram without buckets adopts
the other's schema, so an empty histogram is an identity for merge.)

Notes for exporters and readers:

* Indices are Prometheus indices (upper bound inclusive). The OpenTelemetry
  exponential histogram index of the same bucket is ``index - 1`` (OTel bucket
  ``k`` covers ``(base**k, base**(k+1)]``); the schema is OTel's ``scale``.
* Downscaling by ``d`` maps index ``i`` to ``((i - 1) >> d) + 1``, which is
  Prometheus's ``targetIdx`` (for ``d == 1`` it equals ``(i + 1) >> 1``); in
  OTel indices it is the usual ``k >> d``. Bucket bounds of neighbouring schemas
  nest bit for bit, so recording at schema s and downscaling gives exactly the
  histogram recorded at the lower schema.
* "Exact" means: bucket counts and ``count`` are sums of the recorded weights,
  exact while they are integers below 2**53; ``sum`` is a float sum and, like
  any float sum, exact only when the additions are (integer or dyadic values of
  moderate range). Merges never lose anything beyond that.
* :meth:`Histogram.quantile` interpolates exponentially inside a bucket, as
  PromQL's ``histogram_quantile`` does for native histograms with standard
  schemas (Prometheus 3, PR #14677), and linearly inside the zero bucket. The
  estimate lies in the bucket that holds the true (nearest-rank) quantile, so its
  relative error is below ``base - 1`` (9.05 % at schema 3). The "under 5 %" of
  the design holds for a midpoint of that bucket (geometric midpoint:
  ``sqrt(base) - 1`` = 4.43 % at schema 3); see :meth:`Histogram.quantile_bounds`.

Minimum and maximum (as OpenTelemetry's exponential histogram keeps them):

* ``min`` and ``max`` are the smallest and largest value recorded, exactly; merge
  takes the smaller ``min`` and the larger ``max``, so they stay exact through
  any merge, rollup and round trip, like the counts.
* An empty histogram has none: ``min = inf`` and ``max = -inf``, the identities of
  min and max, so that neither recording nor merging tests for emptiness (the
  agent's hot path costs two comparisons more, see ``docs/benchmarks.md``).
* When they are not known (the source does not report them: Prometheus native
  histograms; histograms stored or sent before they were kept) they are NaN,
  and NaN sticks: a merge with such a histogram does not know them either. The
  two are independent (a cumulative OTLP series may tell a new maximum but not
  its minimum). Either way not finite: ``math.isfinite(h.max)`` says whether
  ``max`` is known. :meth:`Histogram.forget_range` marks them unknown.
* Estimates are clamped to them where they are known: the bucket that holds a
  quantile is narrowed to ``[min, max]`` before interpolating in it (the last
  bucket, above all after downscaling, often reaches far past the largest
  value: a p99.9 of values up to 100 came out as 107), :meth:`Histogram.mean`
  and :meth:`Histogram.max_value` are kept within them. Values in the zero
  bucket lie in ``[min, zero_threshold]``, negative ones too, so with ``min``
  known quantiles there reach below 0. A ``min``/``max`` that contradicts the
  buckets (an outside source's rounding) is ignored rather than trusted.
* Equality (``==``) compares the distribution (schema, zero bucket, counts, sum,
  buckets), not ``min``/``max``: a histogram whose range is unknown equals one
  with the same buckets whose range is known.
"""

from __future__ import annotations

import math
import operator
import sys
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from math import frexp, inf, ldexp
from typing import Annotated

import msgspec

from fleetscope.model.errors import InputError

DEFAULT_SCHEMA = 3
MAX_BUCKETS = 160
MIN_SCHEMA = -4
MAX_SCHEMA = 8

# _FRACS[s] (s > 0) holds the mantissas in [0.5, 1) of the bucket bounds of one
# doubling: _FRACS[s][j] = 2**(j / 2**s) / 2. record() finds a bucket with frexp
# plus a bisection of this table and bucket_bounds() builds bounds from the very
# same numbers, so a value equal to a bound always lands in the bucket it closes.
# The exponents j / 2**s are exact binary fractions, hence the tables of two
# schemas share their common bounds bit for bit and downscaling is exact.
_FRACS: list[list[float]] = [[]] + [
    [ldexp(2.0 ** (j / (1 << s)), -1) for j in range(1 << s)] for s in range(1, MAX_SCHEMA + 1)
]


def bucket_index(x: float, schema: int) -> int:
    """The index of the bucket holding the positive finite value ``x`` at ``schema``."""
    frac, exp = frexp(x)  # x == frac * 2**exp, 0.5 <= frac < 1
    if schema > 0:
        return bisect_left(_FRACS[schema], frac) + ((exp - 1) << schema)
    # x is in (2**(exp-1), 2**exp], unless it is exactly 2**(exp-1).
    i = exp - 1 if frac == 0.5 else exp
    return ((i - 1) >> -schema) + 1 if schema else i


def bucket_upper(index: int, schema: int) -> float:
    """``base**index`` at ``schema``: the (inclusive) upper bound of bucket ``index``;
    ``inf`` past the float range. Bounds below 2**-1022 (subnormal) are rounded
    to the nearest float, so there a value may equal its bucket's lower bound."""
    try:
        if schema > 0:
            q, r = divmod(index, 1 << schema)
            return ldexp(_FRACS[schema][r], q + 1)
        return ldexp(1.0, index << -schema)
    except OverflowError:
        return inf


# The indices a finite value can have, per schema: from_json refuses the others.
_INDEX_RANGE = {
    s: (bucket_index(5e-324, s), bucket_index(sys.float_info.max, s))
    for s in range(MIN_SCHEMA, MAX_SCHEMA + 1)
}


def _check_schema(schema: object) -> int:
    # operator.index: any integer type (numpy's too) becomes a plain int.
    try:
        value = operator.index(schema) if not isinstance(schema, bool) else None
    except TypeError:
        value = None
    if value is None or not MIN_SCHEMA <= value <= MAX_SCHEMA:
        raise ValueError(f"schema must be an integer in [{MIN_SCHEMA}, {MAX_SCHEMA}]: {schema!r}")
    return value


class Histogram:
    """A sparse exponential histogram. Attributes: schema, zero_threshold,
    zero_count, count, sum, buckets (dict[int, float]), min, max (see the module
    docstring: ``inf``/``-inf`` when empty, NaN when not known).

    >>> h = Histogram()
    >>> for x in (12.0, 17.5, 98.0):
    ...     h.record(x)
    >>> h.min, h.max, h.quantile(1.0)  # not 98.4: the top of 98's bucket
    (12.0, 98.0, 98.0)
    """

    __slots__ = ("buckets", "count", "max", "min", "schema", "sum", "zero_count", "zero_threshold")

    def __init__(self, schema: int = DEFAULT_SCHEMA, zero_threshold: float = 0.0) -> None:
        self.schema = _check_schema(schema)
        if not 0.0 <= zero_threshold < inf:
            raise ValueError(f"zero_threshold must be finite and >= 0: {zero_threshold!r}")
        self.zero_threshold = float(zero_threshold)
        self.zero_count = 0.0
        self.count = 0.0
        self.sum = 0.0
        self.buckets: dict[int, float] = {}
        self.min = inf  # empty: the identities of min() and max()
        self.max = -inf

    # -- recording ---------------------------------------------------------

    def record(self, x: float, weight: float = 1.0) -> None:
        """Add ``weight`` observations of value ``x``.

        ``weight`` 0 records nothing. ValueError for a NaN or infinite ``x`` and a
        negative, NaN or infinite ``weight`` (they would poison ``sum``/``count``).
        """
        if not 0.0 < weight < inf:
            if weight == 0.0:
                return
            raise ValueError(f"weight must be finite and >= 0: {weight!r}")
        if x > self.zero_threshold:
            if x == inf:
                raise ValueError("cannot record an infinite value")
            # bucket_index() inlined: this is the agent's hot path.
            frac, exp = frexp(x)
            schema = self.schema
            if schema > 0:
                i = bisect_left(_FRACS[schema], frac) + ((exp - 1) << schema)
            else:
                i = exp - 1 if frac == 0.5 else exp
                if schema:
                    i = ((i - 1) >> -schema) + 1
            buckets = self.buckets
            if i in buckets:
                buckets[i] += weight
            else:
                buckets[i] = float(weight)
                if len(buckets) > MAX_BUCKETS:
                    self._fit()
        elif x == x and x != -inf:
            self.zero_count += weight
        else:
            raise ValueError(f"cannot record {x!r}")
        # x is finite here. A NaN min or max (not known) compares false and stays.
        if x < self.min:
            self.min = x
        if x > self.max:
            self.max = x
        self.count += weight
        self.sum += x * weight

    def merge(self, other: Histogram) -> Histogram:
        """Add ``other`` into self (in place, downscaling as needed); return self.
        ``other`` is unchanged.

        The result has the coarser schema of the two, except that a histogram
        without buckets (empty, or only a zero bucket) has no resolution to keep:
        its schema does not count. So an empty histogram is a true identity, and
        the schema of a merge is the coarsest schema among its inputs that hold
        buckets, whatever the order (associative).

        With different zero thresholds the larger one wins and grows, as in
        Prometheus, to the upper bound of any bucket reaching below it; such
        buckets move into the zero bucket.

        ``min`` and ``max`` become the smaller and the larger of the two (an empty
        side's ``inf``/``-inf`` changes nothing); NaN (not known) on either side
        gives NaN.
        """
        if other is self:
            other = other.copy()
        incoming = other.buckets
        if other.schema != self.schema:  # (rare: the aggregators' hot path skips all this)
            if not self.buckets:
                if incoming or other.schema < self.schema:
                    self.schema = other.schema  # nothing to downscale
            elif incoming and other.schema < self.schema:
                self.downscale(self.schema - other.schema)
        buckets = self.buckets
        get = buckets.get
        shift = other.schema - self.schema
        if shift > 0:
            for i, c in incoming.items():
                j = ((i - 1) >> shift) + 1
                buckets[j] = get(j, 0.0) + c
        else:
            for i, c in incoming.items():
                buckets[i] = get(i, 0.0) + c
        self.zero_count += other.zero_count
        self.count += other.count
        self.sum += other.sum
        lo, hi = other.min, other.max
        if lo < self.min or lo != lo:
            self.min = lo
        if hi > self.max or hi != hi:
            self.max = hi
        if other.zero_threshold != self.zero_threshold:
            self._widen_zero(max(self.zero_threshold, other.zero_threshold))
        if len(buckets) > MAX_BUCKETS:
            self._fit()
        return self

    def copy(self) -> Histogram:
        """An independent copy."""
        h = object.__new__(type(self))
        h.schema = self.schema
        h.zero_threshold = self.zero_threshold
        h.zero_count = self.zero_count
        h.count = self.count
        h.sum = self.sum
        h.buckets = dict(self.buckets)
        h.min = self.min
        h.max = self.max
        return h

    def forget_range(self) -> Histogram:
        """Mark ``min`` and ``max`` as not known (NaN), for a source that does not report
        them; an empty histogram stays empty (``inf``/``-inf``). Returns self."""
        if self.count > 0.0:
            self.min = self.max = math.nan
        return self

    def scale(self, factor: float) -> Histogram:
        """A new histogram with every count (and sum) multiplied by ``factor``.

        ``factor`` must be finite and >= 0 (ValueError otherwise); buckets whose
        count becomes 0 are dropped. ``min`` and ``max`` stay (the values are the
        same, their weights change), unless nothing is left.
        """
        if not 0.0 <= factor < inf:
            raise ValueError(f"factor must be finite and >= 0: {factor!r}")
        h = self.copy()
        h.zero_count *= factor
        h.count *= factor
        h.sum *= factor
        h.buckets = {i: c * factor for i, c in self.buckets.items() if c * factor > 0.0}
        if not h.count > 0.0:
            h.min, h.max = inf, -inf
        return h

    def downscale(self, by: int = 1) -> None:
        """Lower the schema by ``by`` in place, merging neighbouring buckets.

        ValueError if that would go below ``MIN_SCHEMA``.
        """
        if by < 0 or self.schema - by < MIN_SCHEMA:
            raise ValueError(f"cannot downscale schema {self.schema} by {by}")
        if by == 0:
            return
        merged: dict[int, float] = {}
        # Sorted, so that the float additions happen in one order whatever the
        # insertion order was (only matters for fractional counts).
        for i in sorted(self.buckets):
            j = ((i - 1) >> by) + 1
            merged[j] = merged.get(j, 0.0) + self.buckets[i]
        self.buckets = merged
        self.schema -= by

    def _fit(self) -> None:
        # At MIN_SCHEMA every finite value fits in ~130 buckets, so this ends.
        while len(self.buckets) > MAX_BUCKETS and self.schema > MIN_SCHEMA:
            self.downscale(1)

    def _widen_zero(self, threshold: float) -> None:
        # Move into the zero bucket every bucket reaching below `threshold`,
        # growing the threshold to that bucket's upper bound so that no bucket
        # overlaps the zero bucket (Prometheus's widenZeroBucket).
        buckets = self.buckets
        for i in sorted(buckets):
            lower, upper = self.bucket_bounds(i)
            if lower >= threshold:
                break
            self.zero_count += buckets.pop(i)
            threshold = max(threshold, upper)
        self.zero_threshold = threshold

    # -- reading -----------------------------------------------------------

    def bucket_bounds(self, index: int) -> tuple[float, float]:
        """``(lower, upper)`` of bucket ``index`` at this histogram's schema."""
        return bucket_upper(index - 1, self.schema), bucket_upper(index, self.schema)

    def iter_buckets(self) -> Iterator[tuple[float, float, float]]:
        """Yield ``(lower, upper, count)`` in increasing order, the zero bucket
        first as ``(0.0, zero_threshold, zero_count)`` when it is non-empty."""
        if self.zero_count > 0.0:
            yield 0.0, self.zero_threshold, self.zero_count
        for i in sorted(self.buckets):
            lower, upper = self.bucket_bounds(i)
            yield lower, upper, self.buckets[i]

    def _locate(self, q: float) -> tuple[float, float, float, bool] | None:
        """``(lower, upper, fraction, in_zero_bucket)`` for the bucket holding the
        ``q`` quantile, ``fraction`` being the part of its count below the rank.
        ``lower`` and ``upper`` are narrowed to ``[min, max]`` where those are
        known and agree with the bucket (then ``lower`` may be the quantile itself)."""
        if not 0.0 <= q <= 1.0:
            raise InputError("q", f"must be a number between 0 and 1, not {q!r}")
        if self.count <= 0.0:
            return None
        rank = q * self.count
        cum = self.zero_count
        lo, hi = self.min, self.max  # NaN when not known: every comparison below is then false
        if (cum > 0.0 and cum >= rank) or not self.buckets:  # (the latter: float rounding)
            lower, upper = 0.0, self.zero_threshold
            if lo <= upper:  # the zero bucket's values (negative ones too) lie in [min, threshold]
                lower = lo
            if lower <= hi < upper:
                upper = hi
            return lower, upper, min(rank / cum, 1.0) if cum > 0.0 else 1.0, True
        buckets = self.buckets
        for i in sorted(buckets):
            c = buckets[i]
            if cum + c >= rank:
                f = min(max((rank - cum) / c, 0.0), 1.0)
                break
            cum += c
        else:  # float rounding left the rank past the last bucket: its top
            f = 1.0
        lower, upper = self.bucket_bounds(i)
        # A bucket may reach below a positive zero threshold; no value of it does.
        lower = min(max(lower, self.zero_threshold), upper)
        if lower < lo <= upper:
            lower = lo
        if lower <= hi < upper:
            upper = hi
        return lower, upper, f, False

    def quantile(self, q: float) -> float:
        """Estimate the ``q`` quantile (0 <= q <= 1), interpolating inside a bucket
        (relative error bounded by the bucket width). NaN when empty.

        The bucket is the one where the cumulative count first reaches
        ``q * count``, i.e. the bucket holding the nearest-rank quantile, its
        bounds narrowed to ``[min, max]`` when those are known. Inside it the
        estimate is ``lower * (upper / lower) ** f`` (exponential, as PromQL does
        for native histograms), ``f`` being the fraction of the bucket's count
        below the rank; in the zero bucket it is linear from 0 (or ``min``) to
        ``zero_threshold`` (or ``max``). Hence ``|estimate - true| / true < base - 1``
        for positive quantiles (9.05 % at schema 3), the estimate never leaves
        ``[min, max]``, and ``quantile(0)``, ``quantile(1)`` are ``min``, ``max``
        when known. InputError("q") outside [0, 1].
        """
        found = self._locate(q)
        if found is None:
            return math.nan
        lower, upper, f, in_zero = found
        if f >= 1.0:  # the top of the bucket: exactly (max itself, where it is the top)
            return upper if upper != inf else lower
        if in_zero or lower <= 0.0:
            return lower + (upper - lower) * f
        if upper == inf:  # the top bucket of the float range
            return lower
        return min(max(lower * (upper / lower) ** f, lower), upper)

    def quantile_bounds(self, q: float) -> tuple[float, float]:
        """``(lower, upper)`` of the bucket holding the ``q`` quantile, narrowed to
        ``[min, max]`` when those are known: the true quantile lies in
        ``(lower, upper]`` (where ``min`` is the lower end, ``lower`` is the float
        just below it, so the interval stays half-open). ``(nan, nan)`` when empty.

        Its geometric midpoint ``sqrt(lower * upper)`` is within ``sqrt(base) - 1``
        (4.43 % at schema 3) of the true quantile.
        """
        found = self._locate(q)
        if found is None:
            return math.nan, math.nan
        lower = found[0]
        return math.nextafter(lower, -inf) if lower == self.min else lower, found[1]

    def mean(self) -> float:
        """``sum / count``, kept within ``[min, max]`` when known (float rounding of the
        sum, or a source's estimated sum, can carry it past); NaN when empty."""
        if not self.count > 0.0:
            return math.nan
        m = self.sum / self.count
        if m < self.min:
            return self.min
        if m > self.max:
            return self.max
        return m

    def max_value(self) -> float:
        """The largest value, ``max``, when known; else the upper bound of the highest
        non-empty bucket. 0.0 when empty."""
        if not self.count > 0.0:
            return 0.0
        if -inf < self.max < inf:
            return self.max
        if self.buckets:
            return bucket_upper(max(self.buckets), self.schema)
        return self.zero_threshold

    # -- wire format ---------------------------------------------------------

    def to_json(self) -> dict:
        """``{"schema", "zero_threshold", "zero_count", "count", "sum", "min", "max",
        "buckets": {str(index): count}}``, ``min`` and ``max`` each only when known
        (never for an empty histogram)."""
        out = {
            "schema": self.schema,
            "zero_threshold": self.zero_threshold,
            "zero_count": self.zero_count,
            "count": self.count,
            "sum": self.sum,
        }
        if -inf < self.min < inf:
            out["min"] = self.min
        if -inf < self.max < inf:
            out["max"] = self.max
        out["buckets"] = {str(i): self.buckets[i] for i in sorted(self.buckets)}
        return out

    @classmethod
    def from_json(cls, obj: object, field: str = "value") -> Histogram:
        """Validate and build; :class:`~fleetscope.model.errors.InputError` naming
        ``field`` when malformed.

        The six keys of :data:`_KEYS` are required, ``min`` and ``max`` optional
        (finite, ``min <= max``; absent: not known, as from a sender that did not
        keep them; ignored when ``count`` is 0), and no other is allowed. Bucket
        keys are canonical decimal integers (``"-3"``, not ``"-03"`` or ``" 3"``;
        int keys are accepted too) within the float range of the schema; counts
        are finite and >= 0 (zero counts are dropped); ``count`` must equal
        ``zero_count`` plus the bucket counts (to float rounding). More than
        ``MAX_BUCKETS`` buckets are downscaled, as a histogram would do itself.
        """
        h = cls._from_json_fast(obj)
        return h if h is not None else cls._from_json_checked(obj, field)

    @classmethod
    def _from_json_fast(cls, obj: object) -> Histogram | None:
        """:meth:`from_json` of a valid histogram with checks in bulk (C loops: aggregators decode
        thousands a second); None when anything needs the closer look that names the error."""
        if type(obj) is not dict:
            return None
        keys = obj.keys()
        if keys == _KEYS_RANGE:  # what to_json writes when min and max are known
            scalars = (obj["zero_threshold"], obj["zero_count"], obj["count"], obj["sum"], obj["min"],
                       obj["max"])
        elif keys == _KEYS:  # neither known, or empty
            scalars = (obj["zero_threshold"], obj["zero_count"], obj["count"], obj["sum"])
        else:  # one of min and max (rare: a cumulative OTLP series), or not a histogram
            return None
        raw = obj["buckets"]
        if (type(obj["schema"]) is not int or type(raw) is not dict
                or not set(map(type, scalars)) <= _NUMBER_TYPES
                or not set(map(type, raw.values())) <= _NUMBER_TYPES):
            return None
        try:
            return cls._from_parts(obj["schema"], raw, *map(float, scalars))
        except OverflowError:
            return None

    @classmethod
    def from_wire(cls, wire: HistogramWire) -> Histogram | None:
        """The histogram ``wire`` holds (msgspec checked the types), or None when it is not a
        valid one: :meth:`from_json` of the same data names what is wrong."""
        least, most = wire.min, wire.max
        return cls._from_parts(wire.schema, wire.buckets, wire.zero_threshold, wire.zero_count, wire.count,
                               wire.sum, None if least is msgspec.UNSET else least,
                               None if most is msgspec.UNSET else most)

    @classmethod
    def from_wires(cls, wires: Iterable[HistogramWire]) -> list[Histogram] | None:
        """:meth:`from_wire` of each of ``wires`` (the histograms of one breakdown, or one), or None
        when any is not a valid histogram.

        The aggregators' hot path: a heatmap partial is 20 small histograms, and one aggregator
        decodes thousands of partials a second. msgspec has checked the numbers' ranges
        (:class:`HistogramWire`); bucket keys are checked against those already seen valid at the
        schema (:data:`_KNOWN_KEYS`), all of a histogram's keys in one set operation, and the
        result is built without the constructor's checks. A wire this does not recognise at once
        (a key not seen yet, only one of ``min`` and ``max``, a float overflow) goes to
        :meth:`from_wire`, which decides, and teaches the keys of valid ones. Measured on the fleet
        bench's partials, msgspec's decoding included (``values.decode_msgpack``): 3.7 us for a
        histogram of 26 buckets (6.3 us one by one through :meth:`from_wire`), 29 us for a heatmap
        of 20 histograms of 5 buckets (63 us).
        """
        wires = wires if isinstance(wires, list) else list(wires)
        try:
            out = cls._from_known_wires(wires)
        except OverflowError:  # fsum of finite counts past the float range
            out = None
        if out is not None:
            return out
        out = [cls.from_wire(wire) for wire in wires]
        if None in out:
            return None
        if sum(map(len, _KNOWN_KEYS.values())) < _KNOWN_KEYS_MAX:  # valid, hence canonical and in range
            for wire in wires:
                known = _KNOWN_KEYS[wire.schema]
                for key in wire.buckets:
                    if key not in known:
                        known[key] = int(key)
        return out

    @classmethod
    def _from_known_wires(cls, wires: list[HistogramWire]) -> list[Histogram] | None:
        """:meth:`from_wires` when every bucket key is known valid and both or neither of ``min``
        and ``max`` are given; None otherwise. The checks msgspec has not made are those of
        :meth:`_from_parts`, in the same expressions."""
        out = []
        for wire in wires:
            known = _KNOWN_KEYS[wire.schema]  # (msgspec checked the schema's range)
            raw = wire.buckets
            if not raw.keys() <= known.keys():
                return None
            count, zero_count = wire.count, wire.zero_count
            total = math.fsum([zero_count, *raw.values()])  # finite, or OverflowError
            if abs(count - total) > 1e-9 * max(1.0, count):
                return None
            least, most = wire.min, wire.max
            if least is msgspec.UNSET:
                if most is not msgspec.UNSET:
                    return None
                least = most = math.nan  # not known
            elif most is msgspec.UNSET or least > most:
                return None
            h = _new(cls)
            h.schema = wire.schema
            h.zero_threshold = wire.zero_threshold
            h.zero_count = zero_count
            h.count = count
            h.sum = wire.sum
            if count > 0.0:
                h.min, h.max = least, most
            else:
                h.min, h.max = inf, -inf
            h.buckets = {known[key]: c for key, c in raw.items()}  # (twice as fast as dict(zip(...)))
            if len(raw) > MAX_BUCKETS:
                h._fit()
            out.append(h)
        return out

    @classmethod
    def _from_parts(cls, schema: int, raw: dict, threshold: float, zero_count: float, count: float,
                    total_sum: float, least: float | None = None,
                    most: float | None = None) -> Histogram | None:
        """A histogram from fields of the right types, checked in bulk; None if invalid.
        ``least``/``most``: min and max, None when not given."""
        if not MIN_SCHEMA <= schema <= MAX_SCHEMA:
            return None
        if least is not None or most is not None:
            if not (least is None or -inf < least < inf) or not (most is None or -inf < most < inf):
                return None
            if least is not None and most is not None and least > most:
                return None
        counts = list(raw.values())
        index = _canonical_indexes(raw)
        if index is None:
            return None
        try:
            total = math.fsum([zero_count, *counts])
        except (ValueError, OverflowError):
            return None
        lo, hi = _INDEX_RANGE[schema]
        if ((counts and (min(counts) < 0 or min(index) < lo or max(index) > hi))
                or not all(map(math.isfinite, (total, total_sum, threshold, count)))
                or min(threshold, zero_count, count) < 0 or abs(count - total) > 1e-9 * max(1.0, count)):
            return None
        h = cls(schema)
        h.zero_threshold, h.zero_count, h.count, h.sum = threshold, zero_count, count, total_sum
        if count > 0.0:
            h.min = math.nan if least is None else least
            h.max = math.nan if most is None else most
        if counts and min(counts) == 0:  # zero counts are dropped
            h.buckets = {i: float(c) for i, c in zip(index, counts, strict=True) if c > 0}
        else:
            h.buckets = dict(zip(index, map(float, counts), strict=True))
        h._fit()
        return h

    @classmethod
    def _from_json_checked(cls, obj: object, field: str) -> Histogram:
        if not isinstance(obj, dict):
            raise InputError(field, "must be a histogram object")
        missing = _KEYS - obj.keys()
        if missing:
            raise InputError(f"{field}.{sorted(missing)[0]}", "is required")
        extra = obj.keys() - _KEYS_RANGE
        if extra:
            raise InputError(field, f"unknown key {sorted(map(str, extra))[0]!r}")
        schema = obj["schema"]
        if type(schema) is not int or not MIN_SCHEMA <= schema <= MAX_SCHEMA:
            raise InputError(
                f"{field}.schema", f"must be an integer between {MIN_SCHEMA} and {MAX_SCHEMA}"
            )
        h = cls(schema)
        h.zero_threshold = _number(obj["zero_threshold"], f"{field}.zero_threshold", 0.0)
        h.zero_count = _number(obj["zero_count"], f"{field}.zero_count", 0.0)
        h.count = _number(obj["count"], f"{field}.count", 0.0)
        h.sum = _number(obj["sum"], f"{field}.sum", None)
        least = _number(obj["min"], f"{field}.min", None) if "min" in obj else math.nan
        most = _number(obj["max"], f"{field}.max", None) if "max" in obj else math.nan
        if least > most:
            raise InputError(f"{field}.min", f"is {least!r}, above max {most!r}")
        if h.count > 0.0:
            h.min, h.max = least, most
        raw = obj["buckets"]
        if not isinstance(raw, dict):
            raise InputError(f"{field}.buckets", "must be an object {index: count}")
        lo, hi = _INDEX_RANGE[schema]
        buckets = h.buckets
        for key, value in raw.items():
            where = f"{field}.buckets.{key}"
            i = _index_key(key, where)
            if not lo <= i <= hi:
                raise InputError(where, f"index out of range [{lo}, {hi}] for schema {schema}")
            if i in buckets:
                raise InputError(where, "duplicate bucket index")
            buckets[i] = _number(value, where, 0.0)
        h.buckets = {i: c for i, c in buckets.items() if c > 0.0}
        try:
            total = math.fsum([h.zero_count, *h.buckets.values()])
        except OverflowError:  # finite counts, their sum not: no count can match it
            total = inf
        if abs(h.count - total) > 1e-9 * max(1.0, h.count):
            raise InputError(
                f"{field}.count", f"is {h.count!r} but the buckets hold {total!r} observations"
            )
        h._fit()
        return h

    def __eq__(self, other: object) -> bool:
        """The same distribution: schema, zero bucket, count, sum and buckets (not ``min``
        and ``max``, see the module docstring)."""
        if not isinstance(other, Histogram):
            return NotImplemented
        return (
            self.schema == other.schema
            and self.zero_threshold == other.zero_threshold
            and self.zero_count == other.zero_count
            and self.count == other.count
            and self.sum == other.sum
            and self.buckets == other.buckets
        )

    def __repr__(self) -> str:
        return (
            f"Histogram(schema={self.schema}, count={self.count!r}, sum={self.sum!r}, "
            f"zero_count={self.zero_count!r}, min={self.min!r}, max={self.max!r}, "
            f"buckets={len(self.buckets)})"
        )


_KEYS = frozenset(("schema", "zero_threshold", "zero_count", "count", "sum", "buckets"))  # required
_KEYS_RANGE = _KEYS | {"min", "max"}  # every key, the optional ones too
_FLOAT_MAX = sys.float_info.max
# A float that msgspec refuses unless it is finite (NaN is outside every range).
FiniteFloat = Annotated[float, msgspec.Meta(ge=-_FLOAT_MAX, le=_FLOAT_MAX)]
_NonNegative = Annotated[float, msgspec.Meta(ge=0.0, le=_FLOAT_MAX)]
_Positive = Annotated[float, msgspec.Meta(gt=0.0, le=_FLOAT_MAX)]


class HistogramWire(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """:meth:`Histogram.to_json` as msgspec decodes it from the bus, its types and the ranges of
    its numbers checked in C (a NaN or an infinity is outside every range). Zero bucket counts,
    which :meth:`Histogram.from_json` accepts and drops, are refused here: a histogram never
    writes them, and what this refuses goes the slow way (``values.decode_msgpack``). Not
    tracked by the garbage collector (``gc=False``): it holds numbers and a dict of numbers,
    never a cycle."""

    schema: Annotated[int, msgspec.Meta(ge=MIN_SCHEMA, le=MAX_SCHEMA)]
    zero_threshold: _NonNegative
    zero_count: _NonNegative
    count: _NonNegative
    sum: FiniteFloat
    buckets: dict[str, _Positive]
    # Absent: not known (or empty). UNSET, not None: a nil sent is refused, as from_json does.
    min: FiniteFloat | msgspec.UnsetType = msgspec.UNSET
    max: FiniteFloat | msgspec.UnsetType = msgspec.UNSET


_NUMBER_TYPES = frozenset((int, float))  # exact types: bool is not a number here


# Bucket keys seen canonical and in the float range of a schema, per schema, to their index:
# from_wires checks keys with one look-up each (a histogram's keys as one set operation in C).
_KNOWN_KEYS: dict[int, dict[str, int]] = {s: {} for s in range(MIN_SCHEMA, MAX_SCHEMA + 1)}
_KNOWN_KEYS_MAX = 1 << 16  # a bound on that memory (a fleet's latencies use a few hundred keys)
_new = object.__new__

_CANONICAL: dict[str, int] = {}  # bucket keys seen in canonical form, to their index
_CANONICAL_MAX = 1 << 16  # a bound on that memory: beyond it keys are parsed each time


def _canonical_indexes(keys: Iterable[object]) -> list[int] | None:
    """The indexes of canonical decimal bucket keys (``"-3"``), or None if any key is not one.
    Keys repeat from histogram to histogram, so they are parsed once and looked up after."""
    found = list(map(_CANONICAL.get, keys))
    if None not in found:
        return found
    out = []
    for key in keys:
        i = _CANONICAL.get(key)
        if i is None:
            if type(key) is not str or not 0 < len(key) <= 12:
                return None
            try:
                i = int(key)
            except ValueError:
                return None
            if str(i) != key:
                return None
            if len(_CANONICAL) < _CANONICAL_MAX:
                _CANONICAL[key] = i
        out.append(i)
    return out


def _number(v: object, field: str, minimum: float | None) -> float:
    """``v`` as a finite float (not a bool), ``>= minimum`` unless that is None."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise InputError(field, "must be a number")
    try:
        f = float(v)
    except OverflowError:
        raise InputError(field, "must be a finite number") from None
    if not math.isfinite(f):
        raise InputError(field, "must be a finite number")
    if minimum is not None and f < minimum:
        raise InputError(field, f"must be >= {minimum}")
    return f


def _index_key(key: object, field: str) -> int:
    """A bucket key: a canonical decimal integer string, or an int."""
    if isinstance(key, int) and not isinstance(key, bool):
        return key
    if isinstance(key, str) and 0 < len(key) <= 12 and key.lstrip("-").isdigit():
        # isdigit() also accepts non-ASCII digits; the round trip rejects them,
        # and leading zeros, signs other than one "-", and "-0".
        try:
            i = int(key)
        except ValueError:
            i = None
        if i is not None and str(i) == key:
            return i
    raise InputError(field, "bucket key must be an integer")
