"""What a parser is given: options, and a sink for its samples.

A **layout** is a tuple of :class:`Column` (a metric and its key: the values of the
metric's fields in :data:`~fleetscope.perflogs.metrics.COLUMNS` order). A parser builds a
layout once per shape of its input (a vmstat header, a sysstat record with the same CPUs
and devices as the last one) and hands the sink the same tuple object again while the shape
holds, so the sink can tell a change by identity.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol

import numpy as np


class Column(NamedTuple):
    metric: str
    key: tuple[str, ...]


Layout = tuple[Column, ...]


class Scaled(tuple):
    """A layout whose samples come as the raw figures of a line: the value of column ``j`` is
    ``raw[take[j]] * factor[j]``, times the interval's seconds where ``per[j]``. The sink does
    the arithmetic for a whole chunk at once (numpy), not line by line: about a third of a
    vmstat line's cost."""

    take: tuple[int, ...]
    factor: tuple[float, ...]
    per: tuple[bool, ...]

    def __new__(cls, columns: Sequence[Column], take: Sequence[int], factor: Sequence[float],
                per: Sequence[bool]) -> Scaled:
        self = super().__new__(cls, columns)
        assert len(take) == len(factor) == len(per) == len(self)
        self.take, self.factor, self.per = tuple(take), tuple(factor), tuple(per)
        return self


class Options(NamedTuple):
    """What the user said about the logs (None: taken from the file, or the default)."""

    host: str | None = None  # the host the logs are of
    tz: str | None = None  # IANA zone of local times in the logs (default: the log's, else UTC)
    start: int | None = None  # epoch seconds of the first sample, for logs without times
    interval: int | None = None  # seconds between samples, for logs without times
    cpus: int | None = None  # CPUs of the host, for logs that give shares of all CPUs (vmstat)
    mapping: dict | None = None  # what a CSV's columns are (fleetscope.perflogs.csvlog)


class Sink(Protocol):
    def add(self, time: int, interval: int, layout: Layout, values: Sequence[float]) -> None:
        """One sample over ``[time, time + interval)``: ``values[i]`` for ``layout[i]``."""
        ...

    def add_block(self, times: np.ndarray, intervals: np.ndarray, layout: Layout, values: np.ndarray) -> None:
        """Many samples of one layout at once: ``values[k, i]`` for ``layout[i]`` over
        ``[times[k], times[k] + intervals[k])`` (int64 and float64 arrays)."""
        ...

    def host(self, name: str) -> None:
        """The host the log says it is of (sysstat's nodename, iostat's header)."""
        ...
