"""Local times of a log to epoch seconds.

The tools print local wall-clock times (``vmstat -t`` names the zone in its header; sadf
prints UTC unless asked otherwise; ``iostat``/``mpstat`` print neither, and ISO times with
an offset under ``S_TIME_FORMAT=ISO``). :class:`Clock` reads them in one IANA zone
(``--tz``; UTC by default). Cost: one :mod:`zoneinfo` conversion per new hour of the log,
the rest is arithmetic (a vmstat line costs about 0.3 us here).

Clock changes: in the hour repeated when summer time ends, a time earlier than the one
before it is read as the second occurrence (``fold=1``); a log whose times still go
backwards (the clock was set back) starts a new run there: the sample that would have a
negative interval is dropped and counted (:attr:`Clock.backwards`).
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fleetscope.perflogs.errors import LogError

UTC = dt.UTC


def zone(name: str | None) -> dt.tzinfo:
    """The zone called ``name`` (UTC for None/"UTC"); ValueError naming it if unknown."""
    if name is None or name.upper() in ("UTC", "GMT", "Z"):
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (an IANA name such as 'Europe/Paris')") from None


class Clock:
    """Epoch seconds of local times in one zone."""

    __slots__ = ("_hours", "backwards", "last", "tz")

    def __init__(self, tz: dt.tzinfo = UTC) -> None:
        self.tz = tz
        self._hours: dict[tuple[int, int, int, int], int] = {}  # (y, m, d, h) -> epoch of h:00
        self.last = -1  # the latest time read
        self.backwards = 0  # times read that went backwards

    def hour(self, y: int, mo: int, d: int, h: int) -> int:
        """The epoch second of ``y-mo-d h:00`` local time (its first occurrence; ValueError if
        no such date)."""
        base = self._hours.get((y, mo, d, h))
        if base is None:
            base = self._hours[y, mo, d, h] = int(dt.datetime(y, mo, d, h, tzinfo=self.tz).timestamp())
        return base

    def epoch(self, y: int, mo: int, d: int, h: int, mi: int, s: int) -> int:
        """The epoch second of ``y-mo-d h:mi:s`` local time (ValueError if no such time)."""
        t = self.hour(y, mo, d, h) + mi * 60 + s
        if t <= self.last and self.tz is not UTC:
            later = int(dt.datetime(y, mo, d, h, mi, s, fold=1, tzinfo=self.tz).timestamp())
            if later > self.last:
                t = later
        if t < self.last:
            self.backwards += 1
        self.last = t
        return t


def clock_for(tz: str | None, name: str) -> Clock:
    """The clock of a log read with ``--tz tz`` (UTC without); LogError naming file ``name``
    for a zone that does not exist."""
    try:
        return Clock(zone(tz))
    except ValueError as exc:
        raise LogError(name, None, str(exc)) from None
