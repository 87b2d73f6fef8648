"""The windows of a range vector at every step, for the functions over ranges.

Window ``j`` of series ``i`` is the samples with ``ends[j] - range <= t <= ends[j]`` (both
ends inclusive, as in Prometheus 2.x), found by two ``np.searchsorted`` per series. The
functions then sweep the windows column by column: column ``c`` is the ``c``-th sample of
every window at once (``active`` where the window has that many), so a function runs its
loop once per position in the longest window, each time over all series and steps with
NumPy, and adds in the order Prometheus adds (its results come out bit for bit where the
order matters, e.g. the Kahan sums of ``sum_over_time``).

Series are taken in chunks of at most :data:`CHUNK_CELLS` windows, which bounds the memory
of the sweeps whatever the number of series and steps.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from fleetscope.promql.values import RawSeries

CHUNK_CELLS = 1 << 18  # windows (series x steps) swept at once: a few MB per column array
GATHER_CELLS = 1 << 21  # samples gathered at once where a function needs whole windows (quantile)


def chunks(n_series: int, n_steps: int) -> Iterator[slice]:
    """Slices of the series such that each chunk holds at most CHUNK_CELLS windows."""
    per = max(1, CHUNK_CELLS // max(n_steps, 1))
    for start in range(0, n_series, per):
        yield slice(start, min(start + per, n_series))


class Windows:
    """The windows of float series (see the module docstring). ``lo``/``hi`` are ``(m, k)``
    absolute indices into the concatenated ``times``/``values``; ``count = hi - lo``."""

    __slots__ = ("_first", "count", "ends", "finite", "hi", "lo", "range_ms", "times", "values", "width")

    def __init__(self, series: list[RawSeries], range_ms: int, ends: np.ndarray) -> None:
        self.range_ms = range_ms
        self.ends = ends
        m, k = len(series), len(ends)
        self.times = np.concatenate([s.times for s in series]) if series else np.empty(0, np.int64)
        self.values = np.concatenate([s.values for s in series]) if series else np.empty(0)
        self.lo = np.empty((m, k), dtype=np.int64)
        self.hi = np.empty((m, k), dtype=np.int64)
        offset = 0
        for i, s in enumerate(series):
            self.lo[i] = offset + np.searchsorted(s.times, ends - range_ms, side="left")
            self.hi[i] = offset + np.searchsorted(s.times, ends, side="right")
            offset += len(s.times)
        self.count = self.hi - self.lo
        self.width = int(self.count.max()) if self.count.size else 0
        self.finite = bool(np.isfinite(self.values).all())
        lengths = np.array([len(s.times) for s in series], dtype=np.int64)
        self._first = np.zeros(len(self.values), dtype=bool)  # where each series starts
        self._first[(np.cumsum(lengths) - lengths)[lengths > 0]] = True

    def window_sum(self, per_sample: np.ndarray, skip_first: bool = False) -> np.ndarray:
        """The sum of ``per_sample`` (one value per sample) over every window (without its first
        sample if ``skip_first``), from prefix sums in extended precision: the fast path for
        finite values, within a few ulps of adding one by one."""
        prefix = np.zeros(len(per_sample) + 1, dtype=np.longdouble)
        np.cumsum(per_sample, dtype=np.longdouble, out=prefix[1:])
        lo = np.minimum(self.lo + 1, self.hi) if skip_first else self.lo
        return (prefix[self.hi] - prefix[lo]).astype(np.float64)

    def window_count(self, per_sample: np.ndarray, skip_first: bool = False) -> np.ndarray:
        """How many samples of each window (without its first if ``skip_first``) are True."""
        prefix = np.zeros(len(per_sample) + 1, dtype=np.int64)
        np.cumsum(per_sample, out=prefix[1:])
        lo = np.minimum(self.lo + 1, self.hi) if skip_first else self.lo
        return (prefix[self.hi] - prefix[lo]).astype(np.float64)

    def previous(self) -> tuple[np.ndarray, np.ndarray]:
        """``(values of the sample before, whether there is one in the same series)`` per sample."""
        before = np.empty_like(self.values)
        if len(before):
            before[0] = 0.0
            before[1:] = self.values[:-1]
        return before, ~self._first

    def window_extreme(self, pick: np.ufunc) -> np.ndarray:
        """``pick`` (``np.fmax``/``np.fmin``) over every window, by a sparse table: O(n log w)."""
        tables = [self.values]
        span = 1
        while span * 2 <= max(self.width, 1):
            last = tables[-1]
            tables.append(pick(last[:-span], last[span:]) if len(last) > span else last[:0])
            span *= 2
        level = np.floor(np.log2(np.maximum(self.count, 1))).astype(np.int64)
        out = np.zeros(self.count.shape)
        for k, table in enumerate(tables):
            at = (level == k) & (self.count > 0)
            if not at.any():
                continue
            lo = self.lo[at]
            out[at] = pick(table[lo], table[self.hi[at] - (1 << k)])
        return out

    def _at(self, array: np.ndarray, index: np.ndarray) -> np.ndarray:
        if not len(array):
            return np.zeros(index.shape, dtype=array.dtype)
        return array[np.clip(index, 0, len(array) - 1)]

    def value(self, index: np.ndarray) -> np.ndarray:
        """Values at absolute indices (anything where the index is out of its window)."""
        return self._at(self.values, index)

    def time(self, index: np.ndarray) -> np.ndarray:
        return self._at(self.times, index)

    def column(self, c: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(values, times, active)`` of the ``c``-th sample of every window."""
        index = self.lo + c
        return self.value(index), self.time(index), c < self.count

    def rows(self) -> Iterator[tuple[tuple[np.ndarray, np.ndarray], np.ndarray, np.ndarray]]:
        """Every window as a row of its values, in blocks of at most GATHER_CELLS values:
        ``(where, values (b, width), active (b, width))`` with ``where`` the ``(i, j)``
        indices of the block's windows."""
        width = max(self.width, 1)
        flat_lo, flat_count = self.lo.ravel(), self.count.ravel()
        per = max(1, GATHER_CELLS // width)
        offsets = np.arange(width)
        for start in range(0, len(flat_lo), per):
            stop = min(start + per, len(flat_lo))
            index = flat_lo[start:stop, None] + offsets
            active = offsets < flat_count[start:stop, None]
            where = np.unravel_index(np.arange(start, stop), self.lo.shape)
            yield where, self.value(index), active
