"""Writing one import: samples from a parser, as chunks, into the store.

:class:`ImportWriter` is the :class:`~fleetscope.perflogs.sink.Sink` a parser fills. It keeps
at most :data:`~fleetscope.store.importenc.CHUNK_ROWS` samples in memory (numpy blocks from
:meth:`ImportWriter.add_block`, or lists of floats from :meth:`ImportWriter.add`: about 150
bytes a sample for vmstat's 22 values), then encodes one chunk per metric and
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
        # Samples held: pieces (layout, times, intervals, values) in numpy, and the open run of
        # add() in lists (one layout), made a piece when the layout changes or at a flush.
        self._pieces: list[tuple[Layout, np.ndarray, np.ndarray, np.ndarray]] = []
        self._held = 0
        self._layout: Layout | None = None
        self._times: list[int] = []
        self._intervals: list[int] = []
        self._rows: list[Sequence[float]] = []

    # -- Sink ------------------------------------------------------------------------------------

    def host(self, name: str) -> None:
        if self.named_host is None:
            self.named_host = name

    def add(self, time: int, interval: int, layout: Layout, values: Sequence[float]) -> None:
        if self._layout is not layout:
            self._close_run()
            self._layout = layout
        self._times.append(time)
        self._intervals.append(interval)
        self._rows.append(values)
        self._held += 1
        if self._held >= self.chunk_rows:
            self.flush()

    def add_block(self, times: np.ndarray, intervals: np.ndarray, layout: Layout, values: np.ndarray) -> None:
        self._close_run()
        i, n = 0, len(times)
        while i < n:
            j = min(n, i + self.chunk_rows - self._held)
            self._pieces.append((layout, times[i:j], intervals[i:j], values[i:j]))
            self._held += j - i
            i = j
            if self._held >= self.chunk_rows:
                self.flush()

    def _close_run(self) -> None:
        if self._rows:
            assert self._layout is not None
            self._pieces.append((self._layout, np.array(self._times, np.int64),
                                 np.array(self._intervals, np.int64), np.array(self._rows, float)))
            self._times, self._intervals, self._rows = [], [], []
        self._layout = None

    # -- writing ---------------------------------------------------------------------------------

    def flush(self) -> None:
        """Encode and write the samples held (one transaction)."""
        self._close_run()
        n = self._held
        if not n:
            return
        pieces, self._pieces, self._held = self._pieces, [], 0
        times = np.concatenate([p[1] for p in pieces])
        intervals = np.concatenate([p[2] for p in pieces])
        columns: dict[Column, int] = {}
        for layout, *_ in pieces:
            for col in layout:
                columns.setdefault(col, len(columns))
        matrix = np.full((n, len(columns)), np.nan)
        first = 0
        for layout, _, run_intervals, run in pieces:
            last = first + len(run)
            idx = np.fromiter((columns[c] for c in layout), np.int64, len(layout))
            if isinstance(layout, Scaled):  # raw figures: scale them here, the whole run at once
                run = run[:, list(layout.take)] * np.array(layout.factor)
                per = np.array(layout.per)
                run[:, per] *= run_intervals[:, None]
            matrix[first:last, idx] = run.reshape(last - first, len(layout))
            first = last
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

    def summary(self) -> dict:
        """What the import's document records of its rows."""
        interval = max(self.intervals, key=self.intervals.__getitem__) if self.intervals else None
        return {"samples": self.samples, "values": self.values, "bytes": self.bytes,
                "metrics": sorted(self.metrics), "interval": interval}
