"""``vmstat`` text output (procps 3.3 and 4: ``vmstat -t``, ``-w``, ``-n``, with or without
the ``gu`` column of procps 4.0.4).

Columns are found by the header's names (``r b swpd free buff cache si so bi bo in cs us
sy id wa st [gu]``), so wide output, repeated headers and newer columns need nothing more;
columns fleetscope does not map (``-a``'s ``inact``/``active``) are skipped. With ``-t``
each line ends with the date and time, in the zone the header names (``--tz`` overrides).
Without it, ``--start`` (the time of the first line) and ``--interval`` place the lines.

The first line vmstat prints holds averages since boot, not an interval: it only marks the
start. Each later line covers the time since the line before (its own timestamp minus the
previous one). Memory and swap figures are KiB (vmstat's default ``-S K``).

Mapped as (``I`` the interval, ``C`` the CPUs given by ``--cpus``, default 1):
``us sy id wa st gu`` -> ``cpu.usage`` of CPU ``all`` (percent x C x I / 100 CPU seconds);
``r b`` -> ``cpu.runqueue``; ``swpd free buff cache`` -> ``memory.used`` (swap, free,
buffers, cached); ``si so`` -> ``memory.swap``; ``bi bo`` -> ``disk.bytes`` of disk ``all``;
``in cs`` -> ``cpu.events`` (interrupts, switches).
"""

from __future__ import annotations

from collections.abc import Iterable

from fleetscope.perflogs.clock import UTC, Clock, zone
from fleetscope.perflogs.errors import LogError
from fleetscope.perflogs.metrics import ALL, HOST_CONTAINER, HOST_RUNTIME
from fleetscope.perflogs.sink import Column, Options, Scaled, Sink

KIB = 1024.0
# header name -> (column, factor, per interval: multiplied by the interval's seconds)
_MAP: dict[str, tuple[Column, float, bool]] = {
    "r": (Column("cpu.runqueue", ("runnable",)), 1.0, False),
    "b": (Column("cpu.runqueue", ("blocked",)), 1.0, False),
    "swpd": (Column("memory.used", ("swap",)), KIB, False),
    "free": (Column("memory.used", ("free",)), KIB, False),
    "buff": (Column("memory.used", ("buffers",)), KIB, False),
    "cache": (Column("memory.used", ("cached",)), KIB, False),
    "si": (Column("memory.swap", ("in",)), KIB, True),
    "so": (Column("memory.swap", ("out",)), KIB, True),
    "bi": (Column("disk.bytes", (ALL, "read")), KIB, True),
    "bo": (Column("disk.bytes", (ALL, "write")), KIB, True),
    "in": (Column("cpu.events", ("interrupts",)), 1.0, True),
    "cs": (Column("cpu.events", ("switches",)), 1.0, True),
}
_MODES = {"us": "user", "sy": "system", "id": "idle", "wa": "iowait", "st": "steal", "gu": "guest"}
KNOWN = set(_MAP) | set(_MODES) | {"inact", "active"}


class _Header:
    """One header's layout: which figures of a line make which values (a :class:`Scaled`
    layout: the sink multiplies)."""

    def __init__(self, names: list[str], cpus: int) -> None:
        self.n = len(names)
        cols, take, factor, per = [], [], [], []
        for i, name in enumerate(names):
            if name in _MODES:
                col = Column("cpu.usage", (ALL, _MODES[name], HOST_CONTAINER, HOST_RUNTIME))
                spec = (col, cpus / 100.0, True)
            elif name in _MAP:
                spec = _MAP[name]
            else:
                continue
            cols.append(spec[0])
            take.append(i)
            factor.append(spec[1])
            per.append(spec[2])
        self.layout = Scaled(cols, take, factor, per)


def parse(lines: Iterable[bytes], name: str, opts: Options, sink: Sink) -> Clock:
    """Read vmstat output from ``lines`` (bytes, as a binary file gives them) into ``sink``."""
    cpus = opts.cpus or 1
    header: _Header | None = None
    headers: dict[tuple[str, ...], _Header] = {}  # vmstat repeats its header every screenful
    clock: Clock | None = None
    stamped = False
    prev: int | None = None
    k = 0  # lines since the first, for logs without times
    for lineno, line in enumerate(lines, 1):
        p = line.split()
        if not p or p[0] == b"procs":
            continue
        if p[0] == b"r":
            try:
                names = [x.decode() for x in p]
            except UnicodeDecodeError:
                raise LogError(name, lineno, "not vmstat output (the header is not text)") from None
            tzname = None
            if names[-1] not in KNOWN:  # -t: the zone of the timestamps ends the header
                tzname = names.pop()
            if not {"us", "sy", "id"} <= set(names):
                raise LogError(name, lineno, "not a vmstat header (no us, sy, id columns)")
            header = headers.get(tuple(names))
            if header is None:
                header = headers[tuple(names)] = _Header(names, cpus)
            stamped = tzname is not None
            if clock is None:
                try:
                    clock = Clock(zone(opts.tz or tzname))
                except ValueError as exc:
                    raise LogError(name, lineno, f"{exc}: give the zone with --tz") from None
            continue
        if header is None:
            raise LogError(name, lineno, "not vmstat output: no header ('r  b   swpd   free ...') "
                           "before the first figures")
        n = header.n
        if len(p) != n + (2 if stamped else 0):
            raise LogError(name, lineno, f"expected {n + (2 if stamped else 0)} fields "
                           f"({n} figures{' and a date and time' if stamped else ''}), found {len(p)}"
                           + (" (truncated?)" if len(p) < n else ""))
        try:
            nums = list(map(float, p[:n]))
            if stamped:
                d, t = p[n], p[n + 1]
                if len(d) != 10 or len(t) != 8:
                    raise ValueError
                now = clock.epoch(int(d[0:4]), int(d[5:7]), int(d[8:10]), int(t[0:2]), int(t[3:5]),
                                  int(t[6:8]))
            else:
                if opts.start is None or not opts.interval:
                    raise LogError(name, lineno, "vmstat output without timestamps (no -t): "
                                   "give --start and --interval")
                now = opts.start + k * opts.interval
                k += 1
        except ValueError:
            raise LogError(name, lineno, "expected numbers and a 'YYYY-MM-DD HH:MM:SS' time, found "
                           f"{line.decode(errors='replace').strip()[:80]!r}") from None
        if prev is None or now <= prev:
            prev = now  # the first line (since boot), or the clock went back: a new run starts
            continue
        interval = now - prev
        prev = now
        sink.add(now - interval, interval, header.layout, nums)
    return clock or Clock(UTC)
