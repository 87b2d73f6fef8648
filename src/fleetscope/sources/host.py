"""Host-wide counters: CPU time, load average, memory, disks, network interfaces.

Everything comes from /proc (``/proc/stat``, ``/proc/meminfo``,
``/proc/diskstats``, ``/proc/net/dev``) and ``os.getloadavg()``. The files are
read with ``os.open``/``os.read`` and parsed here rather than through psutil:
psutil opens them through buffered Python file objects and parses more than is
needed (``swap_memory()`` also reads ``/proc/vmstat``, ``disk_io_counters()``
stats ``/sys/block`` per disk). Measured on the 2-core reference machine: all
nine metrics cost about 0.35-0.5 ms of CPU per tick, against 0.65-0.85 ms for the
psutil calls alone (and 0.5 ms for floor.py's four parsers).

Each file is read at most once per tick, on the first :meth:`HostSource.collect`
that needs it; a metric nobody collects reads nothing. ``HostSource.reads``
counts the reads per file so that both can be checked.

Interval metrics (and ``disk.busy``, a level computed from a counter) compare
the reading of this tick with the reading taken when the same metric was last
collected: the tick's activity, scaled to one second's share only when the two
reads (``CLOCK_BOOTTIME`` at read time, not the tick's wall-clock time) are not
about a second apart (:func:`~fleetscope.sources.base.tick_length`). The first
collection of a metric, or one more than :data:`MAX_GAP` seconds after the
previous one, gives no rows.

Network interfaces are those of the network namespace the agent runs in.

``cpu.usage`` by container: given a reader of the containers' CPU time (the
cgroup source's :meth:`~fleetscope.sources.cgroup.CgroupSource.cpu_by_container`,
wired in by :func:`~fleetscope.sources.registry.local_sources`), each CPU's time
per mode is split between the containers and the host itself (container ``/``,
runtime ``host``) by :func:`~fleetscope.sources.container_cpu.split_by_container`.
The kernel gives a container's time in two parts: user (user, nice, guest and
guest_nice time) and system (system, irq and softirq time); idle, iowait and
steal time is always the host's. Within a part, a container's share goes to the modes in proportion to
the CPU's own time in each, and its share is capped at the CPU's time (the
files are read a moment apart), so the rows of every (cpu, mode) add up to
exactly what ``/proc/stat`` gives and the host row never goes negative. Without
a reader (or without containers) the host row holds everything.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Mapping
from typing import NamedTuple

from fleetscope.model.errors import NotFound
from fleetscope.model.hostmetrics import METRICS
from fleetscope.model.metrics import Metric
from fleetscope.sources.base import MAX_GAP, Rows, tick_length
from fleetscope.sources.container_cpu import (
    CPU_MODES,
    ContainerCpu,
    ContainerCpuReader,
    container_seconds,
    split_by_container,
)
from fleetscope.sources.containers import HOST
from fleetscope.sources.procfs import clock, read_file

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# /proc/diskstats counts 512-byte sectors whatever the device's own sector size.
SECTOR_SIZE = 512
# Virtual block devices that exist by the dozen and are mostly never used; they
# are reported only once they have done some I/O.
IDLE_DEVICE_PREFIXES = ("loop", "ram", "zram")

LOAD_PERIODS = ("1m", "5m", "15m")
MEMORY_TYPES = ("used", "cached", "buffers", "free", "swap")


# --- /proc/stat ---------------------------------------------------------------------------


class CpuTimes(NamedTuple):
    """Clock ticks one CPU spent in each mode since boot, as /proc/stat has them
    (``user`` includes ``guest`` and ``nice`` includes ``guest_nice``)."""

    user: int
    nice: int
    system: int
    idle: int
    iowait: int
    irq: int
    softirq: int
    steal: int
    guest: int
    guest_nice: int


def read_cpu_times(procfs: str = "/proc") -> dict[str, CpuTimes]:
    """Per-CPU times from ``/proc/stat``, keyed by CPU number as a string ("0", "1", ...).

    Offline CPUs are absent. Columns an old kernel lacks are 0.
    """
    data = read_file(procfs + "/stat")
    # The cpu lines come first; the rest (intr, with one counter per IRQ) is long and unused.
    end = data.find(b"\nintr")
    out = {}
    for line in data[: end if end >= 0 else len(data)].split(b"\n"):
        if not line.startswith(b"cpu") or line[3:4] == b" ":
            continue  # not a cpu line, or the all-CPU total
        parts = line.split()
        values = [int(v) for v in parts[1:11]]
        values += [0] * (10 - len(values))
        out[parts[0][3:].decode()] = CpuTimes(*values)
    return out


# --- /proc/meminfo ------------------------------------------------------------------------


class MemInfo(NamedTuple):
    """Memory figures in bytes. ``cached`` is page cache plus reclaimable slab, as psutil
    and free(1) count it."""

    total: int
    free: int
    buffers: int
    cached: int
    swap_total: int
    swap_free: int


def read_meminfo(procfs: str = "/proc") -> MemInfo:
    """The figures of ``/proc/meminfo`` that :class:`MemInfo` holds (a missing one is 0)."""
    # Look up the seven keys rather than split all ~55 lines: a third of the cost.
    data = b"\n" + read_file(procfs + "/meminfo")

    def kib(key: bytes) -> int:
        i = data.find(key)
        return int(data[i + len(key) :].split(None, 1)[0]) * 1024 if i >= 0 else 0

    return MemInfo(
        kib(b"\nMemTotal:"), kib(b"\nMemFree:"), kib(b"\nBuffers:"),
        kib(b"\nCached:") + kib(b"\nSReclaimable:"), kib(b"\nSwapTotal:"), kib(b"\nSwapFree:"),
    )


# --- /proc/diskstats ----------------------------------------------------------------------


class DiskCounters(NamedTuple):
    """I/O of one block device since boot (psutil's names)."""

    read_count: int  # reads completed
    write_count: int  # writes completed
    read_bytes: int
    write_bytes: int
    busy_time: int  # milliseconds with I/O in flight


def read_diskstats(procfs: str = "/proc") -> dict[str, DiskCounters]:
    """Every device of ``/proc/diskstats`` (whole disks and partitions alike), except
    loop, ram and zram devices that have never completed a read or a write.

    Discards and flushes are not counted.
    """
    out = {}
    for line in read_file(procfs + "/diskstats").split(b"\n"):
        p = line.split()
        if len(p) < 14:
            continue
        name = p[2].decode()
        if p[3] == p[7] == b"0" and name.startswith(IDLE_DEVICE_PREFIXES):
            continue  # never read or written
        out[name] = DiskCounters(
            int(p[3]), int(p[7]), int(p[5]) * SECTOR_SIZE, int(p[9]) * SECTOR_SIZE, int(p[12])
        )
    return out


# --- /proc/net/dev ------------------------------------------------------------------------


class NicCounters(NamedTuple):
    """Traffic of one network interface since it appeared (psutil's names)."""

    bytes_recv: int
    bytes_sent: int
    packets_recv: int
    packets_sent: int
    errin: int  # the kernel's rx_errors: all receive errors (frame, fifo, crc ... included)
    errout: int
    dropin: int  # packets dropped on receive (includes rx_missed_errors on recent kernels)
    dropout: int


def read_netdev(procfs: str = "/proc") -> dict[str, NicCounters]:
    """Every interface of ``/proc/net/dev`` (of the reader's network namespace)."""
    out = {}
    for line in read_file(procfs + "/net/dev").split(b"\n")[2:]:
        name, sep, rest = line.partition(b":")
        if not sep:
            continue
        v = rest.split()
        out[name.strip().decode()] = NicCounters(
            int(v[0]), int(v[8]), int(v[1]), int(v[9]), int(v[2]), int(v[10]), int(v[3]), int(v[11])
        )
    return out


def read_loadavg(procfs: str = "/proc") -> tuple[float, float, float]:
    """The 1, 5 and 15 minute load averages (``os.getloadavg``; ``procfs`` is not used)."""
    return os.getloadavg()


# --- metrics ------------------------------------------------------------------------------

# The metrics themselves are defined in fleetscope.model.hostmetrics (imported logs write them too).
COLUMNS = {m.name: tuple(f.name for f in m.fields[1:]) for m in METRICS}

# The file each metric needs, by the name ``HostSource.reads`` counts it under.
_FILES = {
    "cpu.usage": "stat",
    "cpu.steal": "stat",
    "cpu.load": "loadavg",
    "memory.used": "meminfo",
    "disk.ops": "diskstats",
    "disk.bytes": "diskstats",
    "disk.busy": "diskstats",
    "net.bytes": "net/dev",
    "net.packets": "net/dev",
    "net.errors": "net/dev",
}
_READERS: dict[str, Callable] = {
    "stat": read_cpu_times,
    "loadavg": read_loadavg,
    "meminfo": read_meminfo,
    "diskstats": read_diskstats,
    "net/dev": read_netdev,
}


# --- rows ---------------------------------------------------------------------------------
# Each builder gets the current reading and, for rates, the previous one and the seconds
# between them. Counters that went backwards (a device or interface re-created, iowait on
# some kernels) give no row, or 0 for a CPU mode, rather than a negative rate.


def _cpu_seconds(cur: dict, old: dict, elapsed: float) -> dict[str, list[float]]:
    """Seconds per second each CPU spent in each mode (CPU_MODES order) between two readings."""
    out = {}
    scale = 1.0 / (CLOCK_TICKS * elapsed)
    for cpu, c in cur.items():
        p = old.get(cpu)
        if p is None:
            continue
        d = [a - b for a, b in zip(c, p, strict=True)]
        # Linux counts guest time inside user (and guest_nice inside nice): take it out so
        # that the modes add up to the CPU's time.
        d[0] -= d[8]
        d[1] -= d[9]
        out[cpu] = [v * scale if v > 0 else 0.0 for v in d]
    return out


def _cpu_usage(cur: tuple, old: tuple, elapsed: float) -> list[tuple]:
    """Rows of cpu.usage: ``cur`` and ``old`` are (/proc/stat reading, containers' reading or None)."""
    host = _cpu_seconds(cur[0], old[0], elapsed)
    rows: list[tuple] = []
    if cur[1] and old[1]:
        rows, host = _container_rows(host, cur[1], old[1], elapsed)
    for cpu, modes in host.items():
        for mode, v in zip(CPU_MODES, modes, strict=True):
            rows.append((cpu, mode, HOST.name, HOST.runtime, v))
    return rows


def _container_rows(host: dict[str, list[float]], cur: Mapping, old: Mapping,
                    elapsed: float) -> tuple[list[tuple], dict[str, list[float]]]:
    """The rows of the containers that used CPU time, and what is left of ``host`` (the host's)."""
    names, percpu, spread = container_seconds(cur, old, elapsed)
    if not names:  # every container idle: nothing to split (the common case on most ticks)
        return [], host
    shares, rest = split_by_container(host, percpu, spread)
    rows = []
    for key, per_cpu in shares.items():
        c = names[key]
        for cpu, modes in per_cpu.items():
            for mode, v in zip(CPU_MODES, modes, strict=True):
                if v > 0:
                    rows.append((cpu, mode, c.name, c.runtime, v))
    return rows, rest


def _cpu_steal(cur: dict, old: dict, elapsed: float) -> list[tuple]:
    scale = 1.0 / (CLOCK_TICKS * elapsed)
    rows = []
    for cpu, c in cur.items():
        p = old.get(cpu)
        if p is not None:
            d = c.steal - p.steal
            rows.append((cpu, d * scale if d > 0 else 0.0))
    return rows


def _cpu_load(cur: tuple) -> list[tuple]:
    return list(zip(LOAD_PERIODS, cur, strict=True))


def _memory_used(m: MemInfo) -> list[tuple]:
    # used + cached + buffers + free == total (used as free(1) counted it before
    # procps 4: what is neither free nor cache); swap is swap in use.
    used = m.total - m.free - m.buffers - m.cached
    return [
        ("used", used if used > 0 else 0),
        ("cached", m.cached),
        ("buffers", m.buffers),
        ("free", m.free),
        ("swap", m.swap_total - m.swap_free),
    ]


def _rates(attrs: tuple[tuple[tuple, str], ...]) -> Callable:
    """A builder of rate rows: for each key, one row per (labels, counter attribute)."""

    def build(cur: dict, old: dict, elapsed: float) -> list[tuple]:
        rows = []
        for key, c in cur.items():
            p = old.get(key)
            if p is None:
                continue
            for labels, attr in attrs:
                d = getattr(c, attr) - getattr(p, attr)
                if d >= 0:
                    rows.append((key, *labels, d / elapsed))
        return rows

    return build


def _disk_busy(cur: dict, old: dict, elapsed: float) -> list[tuple]:
    rows = []
    for disk, c in cur.items():
        p = old.get(disk)
        if p is None:
            continue
        d = c.busy_time - p.busy_time
        if d >= 0:
            # busy_time ticks in ms and is sampled at slightly different instants than our
            # clock: cap at 100 %.
            rows.append((disk, min(100.0, d / (10.0 * elapsed))))
    return rows


_INTERVAL = {
    "cpu.usage": _cpu_usage,
    "cpu.steal": _cpu_steal,
    "disk.ops": _rates(((("read",), "read_count"), (("write",), "write_count"))),
    "disk.bytes": _rates(((("read",), "read_bytes"), (("write",), "write_bytes"))),
    "disk.busy": _disk_busy,
    "net.bytes": _rates(((("in",), "bytes_recv"), (("out",), "bytes_sent"))),
    "net.packets": _rates(((("in",), "packets_recv"), (("out",), "packets_sent"))),
    "net.errors": _rates((
        (("in", "error"), "errin"), (("out", "error"), "errout"),
        (("in", "drop"), "dropin"), (("out", "drop"), "dropout"),
    )),
}
_POINT = {"cpu.load": _cpu_load, "memory.used": _memory_used}


class HostSource:
    """CPU, load, memory, disk and network metrics of the host the agent runs on.

    ``reads`` counts reads per file (``stat``, ``meminfo``, ``diskstats``, ``net/dev``,
    ``loadavg``) since the source was created. ``cpu_by_container`` reads the containers'
    CPU time for ``cpu.usage`` by container (see the module's doc); without it every
    ``cpu.usage`` row is the host's.
    """

    name = "host"

    def __init__(self, procfs: str = "/proc", cpu_by_container: ContainerCpuReader | None = None) -> None:
        self.procfs = procfs
        self.cpu_by_container = cpu_by_container
        self.reads: Counter[str] = Counter()
        self._now = 0.0
        self._files: dict[str, tuple[float, object]] = {}  # this tick's readings
        self._rows: dict[str, Rows] = {}  # this tick's answers
        self._prev: dict[str, tuple[float, object]] = {}  # metric -> its previous reading

    def metrics(self) -> list[Metric]:
        return list(METRICS)

    def begin_tick(self, now: float) -> None:
        self._now = now
        self._files.clear()
        self._rows.clear()

    def collect(self, metric: str) -> Rows:
        rows = self._rows.get(metric)
        if rows is None:
            rows = self._rows[metric] = Rows(COLUMNS.get(metric, ()), self._build(metric))
        return rows

    def close(self) -> None:
        """Nothing to release: host files are opened and closed at each read."""

    def _read(self, name: str) -> tuple[float, object]:
        got = self._files.get(name)
        if got is None:
            self.reads[name] += 1
            got = self._files[name] = (clock(), _READERS[name](self.procfs))
        return got

    def _build(self, metric: str) -> list[tuple]:
        if metric not in _FILES:
            raise NotFound("metric", f"host source has no metric {metric!r}")
        t, cur = self._read(_FILES[metric])
        point = _POINT.get(metric)
        if point is not None:
            return point(cur)
        if metric == "cpu.usage":
            # Read right after /proc/stat, so that both cover the same interval.
            cur = (cur, self._containers_cpu())
        prev = self._prev.get(metric)
        self._prev[metric] = (t, cur)
        if prev is None or not 0 < t - prev[0] <= MAX_GAP:
            return []
        return _INTERVAL[metric](cur, prev[1], tick_length(t - prev[0]))

    def _containers_cpu(self) -> Mapping[object, ContainerCpu] | None:
        if self.cpu_by_container is None:
            return None
        try:
            return self.cpu_by_container(self._now)
        except OSError:  # the split is a refinement: without it the host row holds everything
            return None
