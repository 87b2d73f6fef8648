"""What the engine reads: series of samples from a ``Storage``.

The API adapts fleetscope's history to :class:`Storage`; :class:`MemoryStorage` holds a
list of series in memory (tests, and small answers built elsewhere).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol

import numpy as np

from fleetscope.model.histogram import Histogram
from fleetscope.promql.matchers import Matcher, matches

STALE_NAN_BITS = 0x7FF0000000000002  # Prometheus' stale marker (value.StaleNaN): a NaN of these bits
STALE_NAN = float(np.array([STALE_NAN_BITS], dtype=np.uint64).view(np.float64)[0])


def is_stale(values: np.ndarray) -> np.ndarray:
    """Which of ``values`` (float64) are stale markers."""
    return values.view(np.uint64) == STALE_NAN_BITS


class Series(NamedTuple):
    """One series: ``labels`` include ``__name__``; ``times`` are int64 milliseconds,
    ascending; ``values`` the float64 samples (None for a native histogram series), or
    ``histograms`` the native histogram samples (None for a float series), as many as times.

    A value with the bits of Prometheus' stale marker (``0x7ff0000000000002``) ends the
    series there, as in Prometheus: selectors skip it and find nothing before it.
    """

    labels: dict[str, str]
    times: np.ndarray
    values: np.ndarray | None
    histograms: list[Histogram] | None = None


class Storage(Protocol):
    def select(self, matchers: Sequence[Matcher], start_ms: int, end_ms: int, step_ms: int) -> list[Series]:
        """The series every matcher selects, with (at least) their samples in
        ``[start_ms, end_ms]``. ``step_ms`` is a hint: the query's step, 0 for an instant query."""
        ...


class MemoryStorage:
    """A :class:`Storage` over a list of series held in memory.

    >>> s = MemoryStorage([Series({"__name__": "up"}, np.array([0, 15_000]), np.array([1.0, 1.0]))])
    >>> len(s.select([Matcher("__name__", "=", "up")], 0, 10_000, 0)[0].times)
    1
    """

    def __init__(self, series: Sequence[Series]) -> None:
        self.series = list(series)

    def select(self, matchers: Sequence[Matcher], start_ms: int, end_ms: int, step_ms: int) -> list[Series]:
        out = []
        for s in self.series:
            if not matches(s.labels, matchers):
                continue
            lo = int(np.searchsorted(s.times, start_ms, side="left"))
            hi = int(np.searchsorted(s.times, end_ms, side="right"))
            if lo >= hi:
                continue
            values = None if s.values is None else s.values[lo:hi]
            histograms = None if s.histograms is None else s.histograms[lo:hi]
            out.append(Series(s.labels, s.times[lo:hi], values, histograms))
        return out
