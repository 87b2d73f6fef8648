"""``sar`` text output (sysstat 10 to 12): what ``sar -u ALL -r -b -d -n DEV 1 3`` prints
while it runs, and what ``sar -f saDD ...`` prints of a data file, 24-hour or ``AM``/``PM``
times, devices by name or ``devM-N``.

The two layouts differ: a running sar prints every activity of a report together, each
under a column header stamped with the time of the report before (the start of the
interval); ``sar -f`` prints one activity at a time over the whole file, its header stamped
with the first record's time. Both are read the same way: an activity (a *section*) is
known by its header's column names, and each of its rows covers the time since the
section's previous rows (or since its header). Rows of one time form one report of the
section (one per CPU, device or interface). Each section keeps its own day: the date is the
banner's and moves to the next day when a section's time of day goes back (a run across
midnight), as mpstat's. Local times are read in ``--tz`` (default UTC). ``Average:`` and
``Summary:`` lines are skipped, and so are activities fleetscope does not map (``-I``,
``-F``, ``-m``, ...). A key printed twice at one time, or a ``LINUX RESTART`` line, starts a
new run of the section (the rows that would have a negative or no interval are dropped).

Mapped (``I`` the interval; sar prints rates per second, percentages and KiB):

* ``-u``/``-P`` (``CPU``): per-CPU rows -> ``cpu.usage`` by CPU and mode (percent x I /
  100 CPU seconds), ``cpu.steal``, ``cpu.utilization`` (100 - ``%idle``); the ``all`` row
  alone -> ``cpu.usage`` of CPU ``all`` times the banner's CPU count;
* ``-w`` -> ``cpu.events`` (forks, switches); ``-q`` -> ``cpu.runqueue``, ``cpu.load``;
* ``-r`` -> ``memory.used`` (used, free, buffers, cached); ``-S`` -> ``memory.used`` swap;
  ``-W`` -> ``memory.swap`` (4 KiB pages); ``-B`` -> ``memory.paging``;
* ``-d`` (``DEV``) -> ``disk.ops`` (direction ``all``), ``disk.bytes``, ``disk.busy``,
  ``disk.await``; ``-b`` -> ``disk.ops`` and ``disk.bytes`` of disk ``all`` (512-byte
  blocks), only in a file without ``-d`` (its devices hold the same I/O: counted twice
  otherwise);
* ``-n DEV``/``-n EDEV`` (``IFACE``) -> ``net.packets``, ``net.bytes``, ``net.errors``.

The mapping is :mod:`fleetscope.perflogs.sysstat`'s (the same activities read from sadf's
JSON), so a day imported from its ``sa`` file and from ``sar -f``'s text answer alike.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import re
from typing import IO, NamedTuple

from fleetscope.perflogs import banner as banners
from fleetscope.perflogs.clock import UTC, Clock, clock_for
from fleetscope.perflogs.errors import LogError
from fleetscope.perflogs.metrics import ALL, HOST_CONTAINER, HOST_RUNTIME
from fleetscope.perflogs.mpstat import FOLD
from fleetscope.perflogs.sink import Column, Layout, Options, Sink
from fleetscope.perflogs.sysstat import KIB, MODES, PAGE, SECTOR

KEY = None  # in a key template: the row's CPU, device or interface
SKIPPED = (b"Average:", b"Summary:")
DEVICE_HEADER = re.compile(rb"\sDEV\s+tps\s")  # sar -d's header (not -n DEV's: IFACE first)
SCAN_BLOCK = 1 << 20


class _Spec(NamedTuple):
    """What a column of a section becomes: ``metric`` with ``key`` (KEY: the row's key), the
    figure times ``factor``, times the interval's seconds where ``per``."""

    metric: str
    key: tuple[str | None, ...]
    factor: float
    per: bool


def _s(metric: str, key: tuple[str | None, ...], factor: float = 1.0, per: bool = False) -> _Spec:
    return _Spec(metric, key, factor, per)


# (the section's key column or None, column name) -> spec. CPU columns are built below.
_SPECS: dict[tuple[str | None, str], _Spec] = {
    (None, "proc/s"): _s("cpu.events", ("forks",), per=True),
    (None, "cswch/s"): _s("cpu.events", ("switches",), per=True),
    (None, "runq-sz"): _s("cpu.runqueue", ("runnable",)),
    (None, "blocked"): _s("cpu.runqueue", ("blocked",)),
    (None, "ldavg-1"): _s("cpu.load", ("1m",)),
    (None, "ldavg-5"): _s("cpu.load", ("5m",)),
    (None, "ldavg-15"): _s("cpu.load", ("15m",)),
    (None, "kbmemused"): _s("memory.used", ("used",), KIB),
    (None, "kbmemfree"): _s("memory.used", ("free",), KIB),
    (None, "kbbuffers"): _s("memory.used", ("buffers",), KIB),
    (None, "kbcached"): _s("memory.used", ("cached",), KIB),
    (None, "kbswpused"): _s("memory.used", ("swap",), KIB),
    (None, "pswpin/s"): _s("memory.swap", ("in",), PAGE, True),
    (None, "pswpout/s"): _s("memory.swap", ("out",), PAGE, True),
    (None, "fault/s"): _s("memory.paging", ("fault",), per=True),
    (None, "majflt/s"): _s("memory.paging", ("majfault",), per=True),
    (None, "pgfree/s"): _s("memory.paging", ("freed",), per=True),
    ("DEV", "tps"): _s("disk.ops", (KEY, ALL), per=True),
    ("DEV", "rkB/s"): _s("disk.bytes", (KEY, "read"), KIB, True),
    ("DEV", "wkB/s"): _s("disk.bytes", (KEY, "write"), KIB, True),
    ("DEV", "rd_sec/s"): _s("disk.bytes", (KEY, "read"), SECTOR, True),
    ("DEV", "wr_sec/s"): _s("disk.bytes", (KEY, "write"), SECTOR, True),
    ("DEV", "%util"): _s("disk.busy", (KEY,)),
    ("DEV", "await"): _s("disk.await", (KEY, ALL)),
    ("IFACE", "rxpck/s"): _s("net.packets", (KEY, "in"), per=True),
    ("IFACE", "txpck/s"): _s("net.packets", (KEY, "out"), per=True),
    ("IFACE", "rxkB/s"): _s("net.bytes", (KEY, "in"), KIB, True),
    ("IFACE", "txkB/s"): _s("net.bytes", (KEY, "out"), KIB, True),
    ("IFACE", "rxerr/s"): _s("net.errors", (KEY, "in", "error"), per=True),
    ("IFACE", "txerr/s"): _s("net.errors", (KEY, "out", "error"), per=True),
    ("IFACE", "rxdrop/s"): _s("net.errors", (KEY, "in", "drop"), per=True),
    ("IFACE", "txdrop/s"): _s("net.errors", (KEY, "out", "drop"), per=True),
}
# sar -b: host totals, only where no sar -d section holds the devices.
_TOTALS = {
    (None, "rtps"): _s("disk.ops", (ALL, "read"), per=True),
    (None, "wtps"): _s("disk.ops", (ALL, "write"), per=True),
    (None, "bread/s"): _s("disk.bytes", (ALL, "read"), SECTOR, True),
    (None, "bwrtn/s"): _s("disk.bytes", (ALL, "write"), SECTOR, True),
}
for _name, _mode in MODES.items():
    _SPECS["CPU", "%" + _name] = _s("cpu.usage", (KEY, _mode, HOST_CONTAINER, HOST_RUNTIME), 0.01, True)
KEYED = ("CPU", "DEV", "IFACE")


class _Section:
    """One activity: its columns, where its current interval starts, its day."""

    __slots__ = ("day", "group", "keyed", "last_tod", "names", "specs", "start")

    def __init__(self, names: tuple[str, ...], totals: bool) -> None:
        self.names = names
        self.keyed = names[0] in KEYED
        key = names[0] if self.keyed else None
        table = {**_SPECS, **_TOTALS} if totals else _SPECS
        figures = names[1:] if self.keyed else names
        # (index among the row's figures, spec) of the columns fleetscope maps
        self.specs = [(i, table[key, n]) for i, n in enumerate(figures) if (key, n) in table]
        self.start: int | None = None  # the start of the interval the next rows end
        self.group: tuple[int, dict[str, list[float]]] | None = None  # (time, {key: mapped figures})
        self.day = 0  # days after the banner's date
        self.last_tod = -1


def has_devices(stream: IO[bytes]) -> bool:
    """Whether the text in ``stream`` (at its start) has a ``sar -d`` section. A file is read
    with ``pread``: its offset, which an import's progress shows (:mod:`fleetscope.api.importjobs`),
    stays at the start instead of running to the end and back."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        fd = None
    tail = b""
    found = False
    offset = 0
    while block := os.pread(fd, SCAN_BLOCK, offset) if fd is not None else stream.read(SCAN_BLOCK):
        offset += len(block)
        if DEVICE_HEADER.search(tail + block):
            found = True
            break
        tail = block[-64:]
    if fd is None:
        stream.seek(0)
    return found


def parse(stream: IO[bytes], name: str, opts: Options, sink: Sink) -> Clock:
    """Read sar's text output from ``stream`` (a seekable binary file) into ``sink``."""
    clock = clock_for(opts.tz, name)
    totals = not has_devices(stream)
    cpus = opts.cpus or 1
    date: tuple[int, int, int] | None = None
    sections: dict[tuple[str, ...], _Section] = {}
    current: _Section | None = None
    layouts: dict[Layout, Layout] = {}

    def time_of(tokens: list[bytes], lineno: int) -> tuple[int, int, int, int]:
        """(hour, minute, second, fields the time took) of a line's leading time."""
        half = tokens[1].decode() if len(tokens) > 1 and tokens[1] in (b"AM", b"PM") else None
        try:
            h, mi, s = banners.clock(tokens[0].decode(), half)
        except (ValueError, UnicodeDecodeError):
            raise LogError(name, lineno, "not sar output: expected a time, found "
                           f"{tokens[0].decode(errors='replace')[:40]!r}") from None
        if date is None:
            raise LogError(name, lineno, "not sar output: no banner ('Linux ... (host) date ... (N CPU)') "
                           "before the figures")
        return h, mi, s, 2 if half else 1

    def epoch(sec: _Section, h: int, mi: int, s: int) -> int:
        """The epoch second of ``h:mi:s`` on ``sec``'s day (the next day once its time of day
        went back, unless by less than an hour of summer time given back)."""
        tod = h * 3600 + mi * 60 + s
        if tod < sec.last_tod and not (clock.tz is not UTC and sec.last_tod - tod < FOLD):
            sec.day += 1
        sec.last_tod = tod
        y, mo, d = (dt.date(*date) + dt.timedelta(days=sec.day)).timetuple()[:3]
        return clock.epoch(y, mo, d, h, mi, s)

    def emit(sec: _Section) -> None:
        """Hand the sink the section's report held (if any): one sample over its interval."""
        if sec.group is None:
            return
        t, rows = sec.group
        sec.group = None
        start, sec.start = sec.start, t
        if start is None or t <= start:
            return  # no start known (a new run), or the clock went back
        interval = t - start
        cols: list[Column] = []
        vals: list[float] = []
        if sec.names[0] == "CPU":
            per_cpu = [k for k in rows if k != ALL]
            keys, scale = (per_cpu, 1.0) if per_cpu else (list(rows), float(cpus))
        else:
            keys, scale = list(rows), 1.0
        cpu = sec.names[0] == "CPU"
        for k in keys:
            for x, (_, spec) in zip(rows[k], sec.specs, strict=True):
                cols.append(Column(spec.metric, tuple(k if f is KEY else f for f in spec.key)))
                vals.append(x * spec.factor * scale * (interval if spec.per else 1.0))
                if cpu and k != ALL and spec.key[1] == "steal":
                    cols.append(Column("cpu.steal", (k,)))
                    vals.append(x * interval / 100.0)
                elif cpu and k != ALL and spec.key[1] == "idle":
                    cols.append(Column("cpu.utilization", (k,)))
                    vals.append(100.0 - x)
        if cols:
            key = tuple(cols)
            sink.add(start, interval, layouts.setdefault(key, key), vals)

    for lineno, raw in enumerate(stream, 1):
        p = raw.split()
        if not p or p[0] in SKIPPED:
            continue
        if p[0] == b"Linux" and len(p) > 2 and p[2].startswith(b"("):
            b = banners.banner(raw)
            if b is None:
                raise LogError(name, lineno, "not a sar banner")
            for sec in sections.values():
                emit(sec)
            date, cpus = b.date, opts.cpus or b.cpus
            sections.clear()  # a new file's output: its sections start again
            current = None
            sink.host(b.host)
            continue
        h, mi, s, took = time_of(p, lineno)
        rest = p[took:]
        if not rest:
            raise LogError(name, lineno, "a time without figures (truncated?)")
        if rest[0] == b"LINUX" and rest[1:2] == [b"RESTART"]:
            if current is not None:  # a new run of the section starts here
                emit(current)
                current.start = epoch(current, h, mi, s)
            continue
        if not _number(rest[-1]):  # a column header: the start of the section's next interval
            try:
                names = tuple(x.decode() for x in rest)
            except UnicodeDecodeError:
                raise LogError(name, lineno, "not sar output (not text)") from None
            current = sections.get(names)
            if current is None:
                current = sections[names] = _Section(names, totals)
            emit(current)
            current.start = epoch(current, h, mi, s)
            continue
        if current is None:
            raise LogError(name, lineno, "not sar output: figures before a column header")
        if not current.specs:
            continue  # an activity fleetscope does not map
        t = epoch(current, h, mi, s)
        n = len(current.names)
        if len(rest) != n:
            raise LogError(name, lineno, f"expected {n} fields after the time ({' '.join(current.names)}), "
                           f"found {len(rest)}" + (" (truncated?)" if len(rest) < n else ""))
        figures = rest[1:] if current.keyed else rest
        try:
            mapped = [float(figures[i]) for i, _ in current.specs]
        except ValueError:
            raise LogError(name, lineno, "expected numbers, found "
                           f"{raw.decode(errors='replace').strip()[:80]!r}") from None
        key = rest[0].decode(errors="replace") if current.keyed else ""
        group = current.group
        if group is not None and (group[0] != t or key in group[1]):
            emit(current)  # a new time, or a key again at the same time: a new run
            group = None
        if group is None:
            group = current.group = (t, {})
        group[1][key] = mapped
    for sec in sections.values():
        emit(sec)
    return clock


def _number(token: bytes) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True
