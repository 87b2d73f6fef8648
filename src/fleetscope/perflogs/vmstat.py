"""``vmstat`` text output (procps 3.3 and 4: ``vmstat -t``, ``-w``, ``-n``, with or without
the ``gu`` column of procps 4.0.4).

Columns are found by the header's names (``r b swpd free buff cache si so bi bo in cs us
sy id wa st [gu]``), so wide output, repeated headers and newer columns need nothing more;
columns fleetscope does not map (``-a``'s ``inact``/``active``) are skipped. With ``-t``
each line ends with the date and time, in the zone the header names (``--tz`` overrides).
Without it, ``--start`` (the time of the first line) and ``--interval`` place the lines.

Read fast: ``-t`` figures between repeats of one header are read together with numpy
(:mod:`fleetscope.perflogs.digits`: about a fifth of the per-line cost, docs/benchmarks.md);
lines that are not all plain figures and a time, or whose times do not simply increase,
are read line by line, the checked way, which gives the same values and names the line of
a refusal.

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

import re
from typing import IO

import numpy as np

from fleetscope.perflogs import digits
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
READ_SIZE = 1 << 19  # bytes read at once: about 4,700 lines of -t output
_HEADER = re.compile(rb"^[ \t]*(?:procs|r[ \t])[^\n]*(?:\n|$)", re.M)  # vmstat's two header lines


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


class _Reader:
    """The state of one file's reading: the header in force, the clock, the last time."""

    def __init__(self, name: str, opts: Options, sink: Sink) -> None:
        self.name, self.opts, self.sink = name, opts, sink
        self.cpus = opts.cpus or 1
        self.header: _Header | None = None
        self.headers: dict[tuple[str, ...], _Header] = {}  # vmstat repeats its header every screenful
        self.clock: Clock | None = None
        self.stamped = False
        self.prev: int | None = None  # the time of the line before (the start of the next interval)
        self.header_line_seen: bytes | None = None  # the -t header in force, as it was printed
        self.k = 0  # lines since the first, for logs without times

    def header_line(self, lineno: int, p: list[bytes]) -> None:
        try:
            names = [x.decode() for x in p]
        except UnicodeDecodeError:
            raise LogError(self.name, lineno, "not vmstat output (the header is not text)") from None
        tzname = None
        if names[-1] not in KNOWN:  # -t: the zone of the timestamps ends the header
            tzname = names.pop()
        if not {"us", "sy", "id"} <= set(names):
            raise LogError(self.name, lineno, "not a vmstat header (no us, sy, id columns)")
        header = self.headers.get(tuple(names))
        if header is None:
            header = self.headers[tuple(names)] = _Header(names, self.cpus)
        self.header = header
        self.stamped = tzname is not None
        if self.clock is None:
            try:
                self.clock = Clock(zone(self.opts.tz or tzname))
            except ValueError as exc:
                raise LogError(self.name, lineno, f"{exc}: give the zone with --tz") from None

    def data_line(self, lineno: int, line: bytes) -> None:
        """One line of figures, the checked way (names the line and the reason of a refusal)."""
        header, opts, name = self.header, self.opts, self.name
        if header is None:
            raise LogError(name, lineno, "not vmstat output: no header ('r  b   swpd   free ...') "
                           "before the first figures")
        p = line.split()
        n = header.n
        stamped = self.stamped
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
                assert self.clock is not None
                now = self.clock.epoch(int(d[0:4]), int(d[5:7]), int(d[8:10]), int(t[0:2]), int(t[3:5]),
                                       int(t[6:8]))
            else:
                if opts.start is None or not opts.interval:
                    raise LogError(name, lineno, "vmstat output without timestamps (no -t): "
                                   "give --start and --interval")
                now = opts.start + self.k * opts.interval
                self.k += 1
        except ValueError:
            raise LogError(name, lineno, "expected numbers and a 'YYYY-MM-DD HH:MM:SS' time, found "
                           f"{line.decode(errors='replace').strip()[:80]!r}") from None
        prev = self.prev
        self.prev = now
        if prev is None or now <= prev:
            return  # the first line (since boot), or the clock went back: a new run starts
        self.sink.add(prev, now - prev, header.layout, nums)

    def line(self, lineno: int, line: bytes) -> None:
        """Any line, the checked way: a header, a blank line, or figures."""
        p = line.split()
        if not p or p[0] == b"procs":
            return
        if p[0] == b"r":
            self.header_line(lineno, p)
        else:
            self.data_line(lineno, line)

    def lines(self, text: bytes, first: int) -> int:
        """The lines of ``text`` (``first`` the number of its first), the fast way where it can
        (:meth:`figures`: the figures between repeats of one header together); how many lines
        it held."""
        n = 0
        at = 0
        parts: list[tuple[bytes, int]] = []  # figures not read yet, with their first lines' numbers
        for m in _HEADER.finditer(text):
            if m.start() > at:
                part = text[at:m.start()]
                parts.append((part, first + n))
                n += part.count(b"\n")
            line = m[0].strip()
            if line != self.header_line_seen and not line.startswith(b"procs"):
                self.figures(parts)  # a new header: the figures before it are read first
                parts = []
                self.line(first + n, line)
                self.header_line_seen = line if self.stamped else None  # the same again changes nothing
            n += 1
            at = m.end()
        if at < len(text):
            part = text[at:]
            parts.append((part, first + n))
            n += part.count(b"\n") + (0 if part.endswith(b"\n") else 1)
        self.figures(parts)
        return n

    def figures(self, parts: list[tuple[bytes, int]]) -> None:
        """Lines of figures (each part's lines, and the number of its first): -t figures read
        at once (:func:`digits.stamped_rows`), or line by line, the checked way, when they are
        not all plain figures and a time, or their times do not simply increase (a clock
        change: :class:`Clock` decides)."""
        if not parts:
            return
        text = b"".join(p for p, _ in parts)
        if not text.endswith(b"\n"):
            text += b"\n"
        header, clock = self.header, self.clock
        rows = times = None
        if self.stamped and header is not None and clock is not None:
            rows = digits.stamped_rows(text, text.count(b"\n"), header.n)
            if rows is not None:
                times = digits.epochs(rows[:, header.n:], clock)
        if rows is None or times is None or (self.prev is not None and times[0] <= self.prev) or not (
                np.diff(times) > 0).all():
            for part, first in parts:
                for i, line in enumerate(part.split(b"\n")):
                    if line or i < part.count(b"\n"):
                        self.line(first + i, line)
            return
        assert header is not None and clock is not None
        clock.last = int(times[-1])
        ends = times if self.prev is None else np.concatenate(([self.prev], times))
        nums = rows[:, :header.n] if self.prev is not None else rows[1:, :header.n]
        self.prev = int(times[-1])
        if len(nums):
            self.sink.add_block(ends[:-1], np.diff(ends), header.layout, nums.astype(np.float64))


def parse(stream: IO[bytes], name: str, opts: Options, sink: Sink) -> Clock:
    """Read vmstat output from ``stream`` (a binary file) into ``sink``.

    The file is read :data:`READ_SIZE` at a time; the lines between two headers (vmstat
    repeats its header every screenful) are read with numpy at once when they are ``-t``
    figures, else line by line: the same values and the same refusals either way."""
    r = _Reader(name, opts, sink)
    lineno = 1
    tail = b""
    while True:
        block = stream.read(READ_SIZE)
        text = tail + block
        if block:
            cut = text.rfind(b"\n") + 1
            text, tail = text[:cut], text[cut:]
        if text:
            lineno += r.lines(text, lineno)
        if not block:
            break
    return r.clock or Clock(UTC)
