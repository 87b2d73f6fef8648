"""The interface between sources and the agent.

A source knows some metrics. At each tick the agent calls :meth:`Source.begin_tick`
once, then :meth:`Source.collect` for each metric some instrumentation needs. A
source reads each underlying thing (a /proc file, a process table) at most once
per tick however many metrics or instrumentations use it, and nothing that no
collected metric needs.

A source whose set of metrics can change while the agent runs has a ``generation``
(an int, read with ``getattr``), which moves whenever :meth:`Source.metrics` changes:
StatsD, OTLP and remote write learn names from what they receive; the cgroup source
gains its metrics when the first cgroup appears below a hierarchy's root, the libvirt
source when a libvirt daemon it could not reach starts. The agent reads every
generation once per tick, before the tick, and announces its catalogue again when one
moved (metrics are only ever added to it). Reading ``generation`` may look (a stat, a
directory listing): it must stay cheap enough for once a second.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

from fleetscope.model.metrics import Metric

# A normal tick: one second, give or take scheduling jitter.
NORMAL_TICK = (0.75, 1.25)
# A previous reading older than this is not used for a rate: a metric switched
# off and on again starts afresh instead of reporting a long average as "now".
MAX_GAP = 30.0


def tick_length(elapsed: float) -> float:
    """What to divide a counter's increase over ``elapsed`` seconds by, to get one tick's activity.

    Ticks are one second apart. Over a normal tick the increase is the tick's activity as it is:
    exact counts (CPU clock ticks, bytes, operations) that add up over time to the counter's own
    increase, and compress to a few bits in history. Over a shorter or a longer gap (the first
    tick after a stall) it is scaled to one second's share.
    """
    low, high = NORMAL_TICK
    return 1.0 if low <= elapsed <= high else elapsed


class Rows(NamedTuple):
    """The rows of one metric at one tick.

    ``columns`` names the fields in each row, in order, without ``hostname`` (the
    agent supplies it). Each row is a tuple of those field values (discrete
    values as ``str``, numeric values as numbers in the field's unit) followed by
    the measure: for an interval metric the activity during the tick (see
    :func:`tick_length`), for a point metric the level now.

    ``weighted`` rows are pre-aggregated (StatsD timers): each row stands for as
    many observations of its numeric field as its measure says, so a numeric
    decomposition records the row's value with the measure as weight instead of
    once. (Unweighted rows are recorded once each, whatever their measure.) The
    numeric field of a weighted row may also hold a ready
    :class:`~fleetscope.model.histogram.Histogram` (OTLP and scraped native
    histograms), its measure being its count: the agent merges it whole, exactly,
    instead of recording one value.

    ``warning`` says what the source had to skip while reading (a runtime's state file it
    could not parse...): the rows are good, and the agent shows the warning on the
    instrumentations that use them.
    """

    columns: tuple[str, ...]
    rows: list[tuple]
    weighted: bool = False
    warning: str = ""


class Source(Protocol):
    """What the agent needs of a source."""

    name: str

    def metrics(self) -> list[Metric]:
        """The metrics this source can collect on this host."""
        ...

    def begin_tick(self, now: float) -> None:
        """Start a tick at wall-clock time ``now``: forget what was read at the previous tick."""
        ...

    def collect(self, metric: str) -> Rows:
        """The rows of ``metric`` (``module.stat``) at the current tick. May raise OSError;
        the agent reports that as a warning on the instrumentations that need it.
        Interval metrics give no rows on the first tick they are collected (no previous reading)."""
        ...

    def close(self) -> None:
        """Release what the source holds open (files, connections)."""
        ...
