"""``mpstat`` text output (sysstat 10 to 12: ``mpstat [-P ALL|list] INTERVAL [COUNT]``, 24-hour
or ``AM``/``PM`` times).

Figures are grouped into reports by their time. The date is the banner's, and moves to the
next day when the time of day goes back (a run across midnight); local times are read in
``--tz`` (default UTC). The first report covers the time since the column header before it
(mpstat prints the header at its start); each later one the time since the report before.
Sections other than CPU utilisation (``-I``, ``-A``'s interrupts, ``-N``'s nodes) are
skipped, and so are the ``Average:`` lines.

Mapped (``I`` the interval): per CPU rows -> ``cpu.usage`` by CPU and mode (percent x I /
100 CPU seconds), ``cpu.steal`` and ``cpu.utilization`` (100 - ``%idle``); a log of the
``all`` row alone -> ``cpu.usage`` of CPU ``all`` times the banner's CPU count.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from fleetscope.perflogs import banner as banners
from fleetscope.perflogs.clock import UTC, Clock, clock_for
from fleetscope.perflogs.errors import LogError
from fleetscope.perflogs.metrics import ALL, HOST_CONTAINER, HOST_RUNTIME
from fleetscope.perflogs.sink import Column, Layout, Options, Sink

_MODES = {"%usr": "user", "%user": "user", "%nice": "nice", "%sys": "system", "%system": "system",
          "%iowait": "iowait", "%irq": "irq", "%soft": "softirq", "%steal": "steal", "%guest": "guest",
          "%gnice": "guest_nice", "%idle": "idle"}
DAY = 86400
FOLD = 7200  # a time of day going back by less than this in a zone with summer time: a DST fold


def parse(lines: Iterable[bytes], name: str, opts: Options, sink: Sink) -> Clock:
    """Read mpstat output from ``lines`` into ``sink``."""
    clock = clock_for(opts.tz, name)
    cpus = opts.cpus or 1
    date: tuple[int, int, int] | None = None
    day = 0  # days after the banner's date
    last_tod = -1
    names: list[str] | None = None  # the current section's columns (None: not a CPU section)
    prev: int | None = None
    current: tuple[int, list[tuple[str, list[float]]]] | None = None
    layouts: dict[Layout, Layout] = {}

    def when(tokens: list[str], lineno: int) -> tuple[int, int]:
        """(epoch, fields the time took) of a line's leading time."""
        nonlocal day, last_tod
        half = tokens[1] if len(tokens) > 1 and tokens[1] in ("AM", "PM") else None
        try:
            h, mi, s = banners.clock(tokens[0], half)
        except ValueError:
            raise LogError(name, lineno, f"expected a time, found {tokens[0]!r}") from None
        if date is None:
            raise LogError(name, lineno, "not mpstat output: no banner ('Linux ... (host) date ... "
                           "(N CPU)') before the figures")
        tod = h * 3600 + mi * 60 + s
        if tod < last_tod and not (clock.tz is not UTC and last_tod - tod < FOLD):
            day += 1
        last_tod = tod
        y, mo, d = (dt.date(*date) + dt.timedelta(days=day)).timetuple()[:3]
        return clock.epoch(y, mo, d, h, mi, s), 2 if half else 1

    def emit() -> None:
        nonlocal prev
        if current is None:
            return
        t, rows = current
        if prev is None or t <= prev:
            prev = t
            return
        interval = t - prev
        prev = t
        per_cpu = [r for r in rows if r[0] != ALL]
        use, scale = (per_cpu, 1.0) if per_cpu else (rows, float(cpus))
        cols, vals = [], []
        for cpu, nums in use:
            for col, x in zip(names_of[cpu], nums, strict=True):
                mode = _MODES.get(col)
                if mode is not None:
                    cols.append(Column("cpu.usage", (cpu, mode, HOST_CONTAINER, HOST_RUNTIME)))
                    vals.append(x * scale * interval / 100.0)
                    if per_cpu and mode == "steal":
                        cols.append(Column("cpu.steal", (cpu,)))
                        vals.append(x * interval / 100.0)
                    if per_cpu and mode == "idle":
                        cols.append(Column("cpu.utilization", (cpu,)))
                        vals.append(100.0 - x)
        if cols:
            key = tuple(cols)
            sink.add(t - interval, interval, layouts.setdefault(key, key), vals)

    names_of: dict[str, list[str]] = {}
    for lineno, raw in enumerate(lines, 1):
        p = raw.split()
        if not p:
            continue
        try:
            tokens = [x.decode() for x in p]
        except UnicodeDecodeError:
            raise LogError(name, lineno, "not mpstat output (not text)") from None
        if tokens[0] == "Linux" and date is None:
            b = banners.banner(raw)
            if b is None:
                raise LogError(name, lineno, "not an mpstat banner")
            date, cpus = b.date, opts.cpus or b.cpus
            sink.host(b.host)
            continue
        if tokens[0] == "Average:":
            continue
        t, skip = when(tokens, lineno)
        rest = tokens[skip:]
        if rest and rest[0] == "CPU":
            names = rest[1:] if "%idle" in rest else None
            if names is not None and prev is None and current is None:
                prev = t  # the header's time: the start of the first interval
            continue
        if names is None:
            continue  # a section fleetscope does not map
        if len(rest) != len(names) + 1:
            raise LogError(name, lineno, f"expected a CPU and {len(names)} figures, found {len(rest)} "
                           "fields" + (" (truncated?)" if len(rest) <= len(names) else ""))
        try:
            nums = [float(x) for x in rest[1:]]
        except ValueError:
            raise LogError(name, lineno, f"expected numbers, found {' '.join(rest)[:80]!r}") from None
        if current is None or current[0] != t:
            emit()
            current = (t, [])
        current[1].append((rest[0], nums))
        names_of[rest[0]] = names
    emit()
    return clock

