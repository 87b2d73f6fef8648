"""sysstat data files (``/var/log/sysstat/saDD``, ``/var/log/sa/saDD``), read through
``sadf -j`` so that sysstat itself decodes every version of its binary format; or the JSON
``sadf -j`` wrote, given as is.

The JSON is read one statistics record at a time (``json.JSONDecoder.raw_decode`` on a
buffer refilled from sadf's output), so a month of 1-second records takes the memory of one.
Host name (``nodename``) and CPU count come from the file; each record gives its own time
(the end of its interval: sadf prints UTC unless the JSON says ``"utc": 0``, then
``--tz`` applies) and interval, so a 10-minute sar interval stays 10 minutes.

Mapped (``I`` the interval; sysstat gives rates per second and percentages):

* ``cpu-load`` per CPU -> ``cpu.usage`` (percent x I / 100 CPU seconds per mode),
  ``cpu.steal``, ``cpu.utilization`` (100 - idle); a file of totals only (``all``) ->
  ``cpu.usage`` of CPU ``all`` times the CPU count;
* ``process-and-context-switch`` -> ``cpu.events`` (forks, switches);
* ``queue`` -> ``cpu.runqueue`` and ``cpu.load``;
* ``memory`` -> ``memory.used`` (used, free, buffers, cached, swap; KiB);
* ``swap-pages`` -> ``memory.swap`` (4 KiB pages); ``paging`` -> ``memory.paging``;
* ``disk`` per device -> ``disk.ops`` (direction ``all``: sar counts transfers, not reads
  and writes), ``disk.bytes``, ``disk.busy``, ``disk.await``;
* ``network`` ``net-dev``/``net-edev`` -> ``net.packets``, ``net.bytes``, ``net.errors``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from typing import IO

from fleetscope.perflogs.clock import UTC, Clock, clock_for
from fleetscope.perflogs.errors import LogError
from fleetscope.perflogs.metrics import ALL, HOST_CONTAINER, HOST_RUNTIME
from fleetscope.perflogs.sink import Column, Layout, Options, Sink

# The first bytes of a sysstat data file (FILE_MAGIC 0xd596, little-endian).
SA_MAGIC = (b"\x96\xd5", b"\xd5\x96")
# What sadf is asked for: every activity fleetscope maps, per CPU, devices by name.
SAR_ARGS = ("-u", "ALL", "-P", "ALL", "-r", "-S", "-B", "-W", "-q", "-d", "-p", "-n", "DEV,EDEV", "-w")
READ_SIZE = 1 << 16
PAGE = 4096.0  # bytes per page of swap-pages (x86_64, arm64 with 4 KiB pages)
KIB = 1024.0
SECTOR = 512.0
# sadf -j's CPU figures (sar's text prints them with a "%": %usr, %idle) -> cpu.usage modes.
MODES = {"usr": "user", "user": "user", "nice": "nice", "sys": "system", "system": "system",
         "iowait": "iowait", "steal": "steal", "irq": "irq", "soft": "softirq", "guest": "guest",
         "gnice": "guest_nice", "idle": "idle"}


def is_binary(head: bytes) -> bool:
    """Whether ``head`` (the first bytes of a file) starts a sysstat data file."""
    return head[:2] in SA_MAGIC


def sadf_json(path: str, name: str) -> Iterator[str]:
    """The text ``sadf -j`` prints for the data file at ``path``, in pieces; LogError with
    sadf's own message when it refuses the file."""
    sadf = shutil.which("sadf")
    if sadf is None:
        raise LogError(name, None, "sadf is not installed on the server (Debian's sysstat package)")
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([sadf, "-j", path, "--", *SAR_ARGS], stdout=subprocess.PIPE, stderr=err,
                                stdin=subprocess.DEVNULL, env={**os.environ, "LC_ALL": "C"})
        try:
            assert proc.stdout is not None
            while piece := proc.stdout.read(READ_SIZE):
                yield piece.decode("utf-8", "replace")
        finally:
            proc.stdout.close()
            code = proc.wait()
        err.seek(0)
        message = err.read().decode(errors="replace").strip()
    if code != 0 or message:
        raise LogError(name, None, "sadf refused the file: " + (message.splitlines()[-1] if message
                                                                 else f"exit status {code}"))


def text_pieces(stream: IO[bytes]) -> Iterator[str]:
    while piece := stream.read(READ_SIZE):
        yield piece.decode("utf-8", "replace")


_HOST = re.compile(r'"nodename":\s*"([^"]*)"')
_CPUS = re.compile(r'"number-of-cpus":\s*(\d+)')
_STATS = re.compile(r'"statistics":\s*\[')


def records(pieces: Iterator[str], name: str) -> Iterator[tuple[dict, dict]]:
    """``(header, record)`` for each statistics record of sadf's JSON (one host: sadf writes
    one per file). ``header``: ``nodename`` and ``cpus``."""
    buf = ""
    for piece in pieces:
        buf += piece
        m = _STATS.search(buf)
        if m:
            break
        if len(buf) > 1 << 20:
            break
    else:
        m = None
    if not m:
        raise LogError(name, None, "not sysstat data: no statistics in sadf's JSON" if buf.lstrip()
                       .startswith("{") else "not a sysstat data file (nor the JSON of sadf -j)")
    head = buf[:m.start()]
    host, cpus = _HOST.search(head), _CPUS.search(head)
    header = {"nodename": host[1] if host else None, "cpus": int(cpus[1]) if cpus else 1}
    pos = m.end()
    decoder = json.JSONDecoder()
    n = 0
    more = True
    while True:
        while pos < len(buf) and buf[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(buf) and more:
            nxt = next(pieces, None)
            if nxt is None:
                more = False
            else:
                buf = buf[pos:] + nxt
                pos = 0
            continue
        if pos < len(buf) and buf[pos] == "]":
            return
        if pos >= len(buf):
            raise LogError(name, n + 1, "the file ends inside its statistics (truncated?)", "record")
        try:
            obj, end = decoder.raw_decode(buf, pos)
        except json.JSONDecodeError as exc:
            nxt = next(pieces, None) if more else None
            if nxt is None:
                more = False
                raise LogError(name, n + 1, f"malformed record ({exc.msg})", "record") from None
            buf = buf[pos:] + nxt
            pos = 0
            continue
        n += 1
        if not isinstance(obj, dict) or not isinstance(obj.get("timestamp"), dict):
            raise LogError(name, n, "a statistics record without a timestamp", "record")
        yield header, obj
        pos = end
        if pos > READ_SIZE:
            buf = buf[pos:]
            pos = 0


class _Record:
    """The columns and values of one record, collected in order."""

    def __init__(self) -> None:
        self.cols: list[Column] = []
        self.vals: list[float] = []

    def put(self, metric: str, key: tuple[str, ...], value: object) -> None:
        if isinstance(value, int | float) and not isinstance(value, bool):
            self.cols.append(Column(metric, key))
            self.vals.append(float(value))


def _time(ts: dict, clock: Clock, utc_clock: Clock) -> int:
    d, t = str(ts["date"]), str(ts["time"])
    c = utc_clock if ts.get("utc", 1) else clock
    return c.epoch(int(d[0:4]), int(d[5:7]), int(d[8:10]), int(t[0:2]), int(t[3:5]), int(t[6:8]))


def _cpu(rec: _Record, cpus: list, ncpus: int, interval: int) -> None:
    per_cpu = [c for c in cpus if isinstance(c, dict) and str(c.get("cpu")) != ALL]
    rows, scale = (per_cpu, 1.0) if per_cpu else ([c for c in cpus if isinstance(c, dict)], float(ncpus))
    for c in rows:
        cpu = str(c.get("cpu"))
        for field, mode in MODES.items():
            v = c.get(field)
            if isinstance(v, int | float):
                rec.put("cpu.usage", (cpu, mode, HOST_CONTAINER, HOST_RUNTIME), v * scale * interval / 100.0)
        if per_cpu:
            rec.put("cpu.steal", (cpu,), c.get("steal", 0.0) * interval / 100.0)
            idle = c.get("idle")
            if isinstance(idle, int | float):
                rec.put("cpu.utilization", (cpu,), 100.0 - idle)


def _values(r: dict, ncpus: int, interval: int) -> _Record:
    rec = _Record()
    put = rec.put
    I = interval  # noqa: E741  (the interval's seconds, as in the module docstring)
    if isinstance(r.get("cpu-load"), list):
        _cpu(rec, r["cpu-load"], ncpus, I)
    pcs = r.get("process-and-context-switch") or {}
    put("cpu.events", ("forks",), pcs["proc"] * I if "proc" in pcs else None)
    put("cpu.events", ("switches",), pcs["cswch"] * I if "cswch" in pcs else None)
    q = r.get("queue") or {}
    put("cpu.runqueue", ("runnable",), q.get("runq-sz"))
    put("cpu.runqueue", ("blocked",), q.get("blocked"))
    for period, key in (("1m", "ldavg-1"), ("5m", "ldavg-5"), ("15m", "ldavg-15")):
        put("cpu.load", (period,), q.get(key))
    mem = r.get("memory") or {}
    for kind, key in (("used", "memused"), ("free", "memfree"), ("buffers", "buffers"), ("cached", "cached"),
                      ("swap", "swpused")):
        if key in mem:
            put("memory.used", (kind,), mem[key] * KIB)
    sw = r.get("swap-pages") or {}
    if "pswpin" in sw:
        put("memory.swap", ("in",), sw["pswpin"] * PAGE * I)
        put("memory.swap", ("out",), sw.get("pswpout", 0.0) * PAGE * I)
    pg = r.get("paging") or {}
    for kind, key in (("fault", "fault"), ("majfault", "majflt"), ("freed", "pgfree")):
        if key in pg:
            put("memory.paging", (kind,), pg[key] * I)
    for d in r.get("disk") or ():
        if not isinstance(d, dict):
            continue
        dev = str(d.get("disk-device"))
        if "tps" in d:
            put("disk.ops", (dev, ALL), d["tps"] * I)
        if "rkB" in d:
            put("disk.bytes", (dev, "read"), d["rkB"] * KIB * I)
            put("disk.bytes", (dev, "write"), d.get("wkB", 0.0) * KIB * I)
        elif "rd_sec" in d:
            put("disk.bytes", (dev, "read"), d["rd_sec"] * SECTOR * I)
            put("disk.bytes", (dev, "write"), d.get("wr_sec", 0.0) * SECTOR * I)
        put("disk.busy", (dev,), d.get("util-percent"))
        put("disk.await", (dev, ALL), d.get("await"))
    net = r.get("network") or {}
    for n in net.get("net-dev") or ():
        nic = str(n.get("iface"))
        for direction, pck, kb in (("in", "rxpck", "rxkB"), ("out", "txpck", "txkB")):
            if pck in n:
                put("net.packets", (nic, direction), n[pck] * I)
            if kb in n:
                put("net.bytes", (nic, direction), n[kb] * KIB * I)
    for n in net.get("net-edev") or ():
        nic = str(n.get("iface"))
        for direction, kind, key in (("in", "error", "rxerr"), ("out", "error", "txerr"),
                                     ("in", "drop", "rxdrop"), ("out", "drop", "txdrop")):
            if key in n:
                put("net.errors", (nic, direction, kind), n[key] * I)
    return rec


def parse(stream: IO[bytes], name: str, opts: Options, sink: Sink, path: str | None = None) -> Clock:
    """Read a sysstat data file (through sadf, which needs its ``path``) or sadf's JSON from
    ``stream`` into ``sink``."""
    head = stream.read(2)
    if is_binary(head):
        if path is None:
            raise LogError(name, None, "a sysstat data file needs a path for sadf")
        pieces = sadf_json(path, name)
    else:
        stream.seek(0)
        pieces = text_pieces(stream)
    clock = clock_for(opts.tz, name)
    utc_clock = Clock(UTC)
    layouts: dict[Layout, Layout] = {}
    named = False
    for n, (header, r) in enumerate(records(pieces, name), 1):
        if not named and header["nodename"]:
            sink.host(header["nodename"])
            named = True
        ts = r["timestamp"]
        try:
            interval = int(ts.get("interval", 0))
            end = _time(ts, clock, utc_clock)
        except (KeyError, ValueError, TypeError):
            raise LogError(name, n, f"bad timestamp {ts!r}", "record") from None
        if interval <= 0:
            continue  # a restart marker or a record without an interval
        try:
            rec = _values(r, header["cpus"], interval)
        except (TypeError, ValueError, AttributeError) as exc:
            raise LogError(name, n, f"unexpected values in the record ({exc})", "record") from None
        if rec.cols:
            cols = tuple(rec.cols)
            layout = layouts.setdefault(cols, cols)
            sink.add(end - interval, interval, layout, rec.vals)
    return clock
