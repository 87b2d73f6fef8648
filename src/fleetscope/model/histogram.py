"""Exponential histograms, in the bucket layout of Prometheus native histograms
and OpenTelemetry exponential histograms.

CONTRACT (to be implemented; signatures are fixed, other modules rely on them):

Bucket ``i`` covers ``(base**(i-1), base**i]`` with ``base = 2**(2**-schema)``.
Default schema 3 (8 buckets per doubling). Values ``<= zero_threshold`` (0 by
default; negative values too) go to the zero bucket. Buckets are sparse
``{index: count}``; counts are floats (point metrics averaged over time give
fractional counts). ``count`` and ``sum`` are kept exactly. When a histogram
holds more than ``MAX_BUCKETS`` (160) buckets it downscales (schema n -> n-1,
index i -> ceil(i/2) i.e. ``(i + 1) >> 1`` ... as Prometheus does) until it fits.
Merging two histograms first downscales the finer one to the coarser schema,
then adds counts: exact and associative.
"""

from __future__ import annotations

DEFAULT_SCHEMA = 3
MAX_BUCKETS = 160
MIN_SCHEMA = -4
MAX_SCHEMA = 8


class Histogram:
    """A sparse exponential histogram. Attributes: schema, zero_threshold,
    zero_count, count, sum, buckets (dict[int, float])."""

    __slots__ = ("buckets", "count", "schema", "sum", "zero_count", "zero_threshold")

    def __init__(self, schema: int = DEFAULT_SCHEMA, zero_threshold: float = 0.0) -> None:
        raise NotImplementedError

    def record(self, x: float, weight: float = 1.0) -> None:
        """Add ``weight`` observations of value ``x``."""
        raise NotImplementedError

    def merge(self, other: Histogram) -> Histogram:
        """Add ``other`` into self (in place, downscaling as needed); return self. ``other`` is unchanged."""
        raise NotImplementedError

    def copy(self) -> Histogram:
        raise NotImplementedError

    def scale(self, factor: float) -> Histogram:
        """A new histogram with every count (and sum) multiplied by ``factor``."""
        raise NotImplementedError

    def downscale(self, by: int = 1) -> None:
        """Lower the schema by ``by`` in place, merging neighbouring buckets."""
        raise NotImplementedError

    def bucket_bounds(self, index: int) -> tuple[float, float]:
        """``(lower, upper)`` of bucket ``index`` at this histogram's schema."""
        raise NotImplementedError

    def iter_buckets(self):
        """Yield ``(lower, upper, count)`` in increasing order, the zero bucket
        first as ``(0.0, zero_threshold, zero_count)`` when it is non-empty."""
        raise NotImplementedError

    def quantile(self, q: float) -> float:
        """Estimate the ``q`` quantile (0 <= q <= 1), interpolating inside a bucket
        (relative error bounded by the bucket width). NaN when empty."""
        raise NotImplementedError

    def mean(self) -> float:
        """``sum / count``; NaN when empty."""
        raise NotImplementedError

    def max_value(self) -> float:
        """Upper bound of the highest non-empty bucket (0.0 when empty)."""
        raise NotImplementedError

    def to_json(self) -> dict:
        """``{"schema", "zero_threshold", "zero_count", "count", "sum", "buckets": {str(index): count}}``."""
        raise NotImplementedError

    @classmethod
    def from_json(cls, obj: object, field: str = "value") -> Histogram:
        """Validate and build; :class:`~fleetscope.model.errors.InputError` naming ``field`` when malformed."""
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        raise NotImplementedError
