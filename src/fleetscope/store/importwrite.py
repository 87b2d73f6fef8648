"""Writing one import: samples from a parser, as chunks, into the store.

:class:`ImportWriter` is the :class:`~fleetscope.perflogs.sink.Sink` a parser fills. It keeps
at most :data:`~fleetscope.store.importenc.CHUNK_ROWS` samples in memory (lists of floats:
about 150 bytes a sample for vmstat's 22 values), then encodes one chunk per metric and
writes them in one short transaction: memory stays bounded whatever the file's size. Samples
of different layouts (a device that appears halfway through a sysstat file) share a chunk,
with NaN where a sample had no such column.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fleetscope.perflogs.sink import Column, Layout, Scaled
from fleetscope.store.importenc import CHUNK_ROWS, ImportChunk, encode
from fleetscope.store.imports import NewImportChunk


class ImportWriter:
    """Chunks of one import, written as they fill (see the module docstring)."""

    def __init__(self, store, import_id: int, chunk_rows: int = CHUNK_ROWS) -> None:
        self.store = store
        self.import_id = import_id
        self.chunk_rows = chunk_rows
        self.named_host: str | None = None
        self.samples = 0
        self.values = 0
        self.bytes = 0
        self.start: int | None = None
        self.end: int | None = None
        self.metrics: set[str] = set()
        self.intervals: dict[int, int] = {}  # interval -> samples of that length
        self._times: list[int] = []
        self._intervals: list[int] = []
        self._rows: list[Sequence[float]] = []
        self._layouts: list[tuple[int, Layout]] = []  # (first row, layout) of each run

    # -- Sink ------------------------------------------------------------------------------------

    def host(self, name: str) -> None:
        if self.named_host is None:
            self.named_host = name

    def add(self, time: int, interval: int, layout: Layout, values: Sequence[float]) -> None:
        if not self._layouts or self._layouts[-1][1] is not layout:
            self._layouts.append((len(self._rows), layout))
        self._times.append(time)
        self._intervals.append(interval)
        self._rows.append(values)
        if len(self._rows) >= self.chunk_rows:
            self.flush()

    # -- writing ---------------------------------------------------------------------------------

    def flush(self) -> None:
        """Encode and write the samples held (one transaction)."""
        n = len(self._rows)
        if not n:
            return
        times = np.array(self._times, np.int64)
        intervals = np.array(self._intervals, np.int64)
        columns: dict[Column, int] = {}
        for _, layout in self._layouts:
            for col in layout:
                columns.setdefault(col, len(columns))
        matrix = np.full((n, len(columns)), np.nan)
        bounds = [r for r, _ in self._layouts[1:]] + [n]
        for (first, layout), last in zip(self._layouts, bounds, strict=True):
            idx = np.fromiter((columns[c] for c in layout), np.int64, len(layout))
            run = np.array(self._rows[first:last], float)
            if isinstance(layout, Scaled):  # raw figures: scale them here, the whole run at once
                run = run[:, list(layout.take)] * np.array(layout.factor)
                per = np.array(layout.per)
                run[:, per] *= intervals[first:last, None]
            matrix[first:last, idx] = run.reshape(last - first, len(layout))
        by_metric: dict[str, list[int]] = {}
        for col, j in columns.items():
            by_metric.setdefault(col.metric, []).append(j)
        keys_of = list(columns)
        order = np.argsort(times, kind="stable")
        if (order != np.arange(n)).any():
            times, intervals, matrix = times[order], intervals[order], matrix[order]
        start, end = int(times[0]), int((times + intervals).max())
        chunks = []
        for metric, cols in by_metric.items():
            values = matrix[:, cols]
            present = ~np.isnan(values).all(axis=1)
            if not present.any():
                continue
            chunk = ImportChunk(tuple(keys_of[j].key for j in cols), times[present], intervals[present],
                                values[present])
            data = encode(chunk)
            self.bytes += len(data)
            self.values += int(np.count_nonzero(~np.isnan(chunk.values)))
            chunks.append(NewImportChunk(metric, int(chunk.times[0]),
                                         int((chunk.times + chunk.intervals).max()), len(chunk.times), data))
            self.metrics.add(metric)
        self.store.add_import_chunks(self.import_id, chunks)
        self.samples += n
        self.start = start if self.start is None else min(self.start, start)
        self.end = end if self.end is None else max(self.end, end)
        for i, c in zip(*np.unique(intervals, return_counts=True), strict=True):
            self.intervals[int(i)] = self.intervals.get(int(i), 0) + int(c)
        self._times, self._intervals, self._rows, self._layouts = [], [], [], []

    def summary(self) -> dict:
        """What the import's document records of its rows."""
        interval = max(self.intervals, key=self.intervals.__getitem__) if self.intervals else None
        return {"samples": self.samples, "values": self.values, "bytes": self.bytes,
                "metrics": sorted(self.metrics), "interval": interval}
