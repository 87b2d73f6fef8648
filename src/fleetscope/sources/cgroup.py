"""Container metrics from control groups, on cgroup v1, cgroup v2, or both side by side.

The hierarchies are found in ``/proc/self/mounts``: each v1 mount names its
controllers (``cpu``, ``cpuacct``, ``memory``, ``blkio``, ``pids``...), the v2
mount lists them in ``cgroup.controllers``. A hybrid host (v1 controllers with a
v2 mount beside them, as systemd sets up) has both; every metric takes a
container's figure from the first hierarchy that has the container's cgroup and
the controller the figure needs, v1 first:

======================  ==============================================  ===============================
metric                  cgroup v1 (controller)                          cgroup v2 (controller)
======================  ==============================================  ===============================
container.cpu           ``cpuacct.usage`` (cpuacct)                     ``cpu.stat`` usage_usec (none)
container.throttled     ``cpu.stat`` throttled_time (cpu)               ``cpu.stat`` throttled_usec (cpu)
container.memory        ``memory.stat`` total_rss, total_cache,         ``memory.stat`` anon, file,
                        total_swap (memory)                             ``memory.swap.current`` (memory)
container.memory_limit  ``memory.limit_in_bytes`` (memory)              ``memory.max`` (memory)
container.io            ``blkio.throttle.io_service_bytes_recursive``   ``io.stat`` rbytes, wbytes (io)
container.io_ops        ``blkio.throttle.io_serviced_recursive``        ``io.stat`` rios, wios (io)
container.pressure      (none)                                          ``{cpu,memory,io}.pressure``
container.pids          ``pids.current`` (pids)                         ``pids.current`` (pids)
======================  ==============================================  ===============================

Which cgroups are containers: walking down each hierarchy, a cgroup that
:func:`~fleetscope.sources.containers.resolve` recognises as a whole container
(Docker, Podman, containerd, CRI-O, LXC, a libvirt machine, an nspawn machine)
is one, and its sub-cgroups belong to it; otherwise a cgroup without
sub-cgroups (a systemd service or scope, a plain leaf cgroup) is one. So
containers do not overlap, and ``container.cpu`` adds a row for the host itself
(container ``/``, runtime ``host``): the root's CPU time minus the containers'
(processes of a non-leaf cgroup that is not a container count as the host's).
The walk is redone at a tick where the link count of a directory it listed
changed (a cgroup made or removed below it; a few stats per tick), and every
``rescan_every`` seconds in any case; a container that disappears is dropped at
its first failed read. Files are kept open and re-read with ``pread``. A v1
``memory.stat`` is read again only when ``memory.usage_in_bytes`` moved since the
last reading, or after :data:`MEMORY_STAT_REUSE` ticks.

The same source reads the containers' CPU time by mode for the host source's
``cpu.usage`` by container (:meth:`CgroupSource.cpu_by_container`): the
containers of the first v1 hierarchy with ``cpuacct`` from
``cpuacct.usage_all`` (user and system time per CPU, counted by the same
scheduler ticks as ``/proc/stat``), then those of the v2 mount that are not
already counted there (neither the same cgroup, nor inside one, nor holding
one) from ``cpu.stat`` user_usec and system_usec (no per-CPU split). Each file
is read once per tick: a v2 ``cpu.stat`` serves ``container.cpu``,
``container.throttled`` and the split alike; the ``cpuacct.usage`` readings of
``container.cpu`` (read once per tick for both) tell which v1 containers used
no CPU time since the last tick, whose ``cpuacct.usage_all`` is then not read;
an unchanged file is not parsed again.

Memory limits of "unlimited" give no row. ``container.pressure`` is the
kernel's 10-second average of the share of time some (or all) tasks of the
cgroup stalled on the resource, in percent (cgroup v2 only, when the kernel has
PSI). Each file is read once per tick, only for metrics being collected.
"""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from collections.abc import Callable, Iterable
from typing import NamedTuple

from fleetscope.model.errors import NotFound
from fleetscope.model.metrics import DISCRETE, INTERVAL, NUMERIC, POINT, Field, Metric, metric
from fleetscope.model.types import BYTES, NUMBER, PERCENT, SECONDS
from fleetscope.sources.base import Rows, tick_length
from fleetscope.sources.containers import CONTAINER, HOST, RUNTIME, Container, is_container, resolve
from fleetscope.sources.host import MAX_GAP, ContainerCpu, clock, read_file

RESCAN_EVERY = 60.0
READ_SIZE = 16384  # one pread; a longer file (io.stat of very many disks) is read whole
MAX_KEPT_FILES = 1024
# v1 memory.stat costs about five times memory.usage_in_bytes to generate and parse: a cgroup
# whose usage did not move since the last reading keeps that reading's rss/cache/swap split,
# for at most this many ticks.
MEMORY_STAT_REUSE = 10  # cgroup files kept open for pread; more are opened and closed each read
UNLIMITED = 1 << 62  # v1 reports "no limit" as a page-rounded LONG_MAX
PRESSURE_RESOURCES = ("cpu", "memory", "io")
# Files that several metrics read: read once per tick and shared (v2 cpu.stat holds container.cpu's
# usage_usec, container.throttled's throttled_usec and cpu.usage's user_usec and system_usec).
SHARED_FILES = ("/cpu.stat",)


class Hierarchy(NamedTuple):
    """One mounted cgroup hierarchy."""

    mount: str
    version: int  # 1 or 2
    controllers: frozenset[str]


def find_hierarchies(mounts: str = "/proc/self/mounts") -> list[Hierarchy]:
    """The cgroup hierarchies mounted on this host: v1 ones first, in mount order."""
    out: list[Hierarchy] = []
    try:
        data = read_file(mounts).decode()
    except OSError:
        return out
    seen: set[str] = set()
    for line in data.splitlines():
        p = line.split()
        if len(p) < 4 or p[1] in seen:
            continue
        mount = p[1].replace("\\040", " ")
        if p[2] == "cgroup":
            ctrls = frozenset(o for o in p[3].split(",") if o not in ("rw", "ro") and "=" not in o
                              and o not in ("relatime", "nosuid", "nodev", "noexec", "clone_children"))
            out.append(Hierarchy(mount, 1, ctrls))
        elif p[2] == "cgroup2":
            try:
                ctrls = frozenset(read_file(mount + "/cgroup.controllers").split())
                ctrls = frozenset(c.decode() for c in ctrls)
            except OSError:
                ctrls = frozenset()
            out.append(Hierarchy(mount, 2, ctrls))
        seen.add(p[1])
    return sorted(out, key=lambda h: h.version)


# --- file parsers ---------------------------------------------------------------------------


def _keyed(data: bytes) -> dict[str, int]:
    """``key value`` lines (``cpu.stat``, ``memory.stat``) as a dict."""
    out = {}
    for line in data.split(b"\n"):
        k, _, v = line.partition(b" ")
        if v:
            out[k.decode()] = int(v)
    return out


def _int(data: bytes) -> int | None:
    """A single number; None for ``max``."""
    s = data.strip()
    return None if s == b"max" else int(s)


def parse_blkio(data: bytes) -> dict[tuple[str, str], int]:
    """v1 ``blkio.throttle.io_service*``: ``{(maj:min, read|write): n}``."""
    out = {}
    for line in data.split(b"\n"):
        p = line.split()
        if len(p) == 3 and p[1] in (b"Read", b"Write"):
            out[(p[0].decode(), p[1].decode().lower())] = int(p[2])
    return out


def parse_io_stat(data: bytes, key_read: str, key_write: str) -> dict[tuple[str, str], int]:
    """v2 ``io.stat``: ``{(maj:min, read|write): n}`` for the two keys given (rbytes/wbytes...)."""
    out = {}
    for line in data.split(b"\n"):
        p = line.split()
        if not p:
            continue
        dev = p[0].decode()
        for kv in p[1:]:
            k, _, v = kv.decode().partition("=")
            if k == key_read:
                out[(dev, "read")] = int(v)
            elif k == key_write:
                out[(dev, "write")] = int(v)
    return out


def parse_usage_all(data: bytes) -> dict[str, tuple[int, int]]:
    """v1 ``cpuacct.usage_all``: ``{cpu: (user ns, system ns)}`` (user counts nice and guest
    time, system counts irq and softirq time)."""
    out = {}
    for line in data.split(b"\n")[1:]:  # after the header "cpu user system"
        p = line.split()
        if len(p) == 3:
            out[p[0].decode()] = (int(p[1]), int(p[2]))
    return out


def _cpu_modes_v1(c: Container, data: bytes) -> ContainerCpu:
    percpu = parse_usage_all(data)
    return ContainerCpu(c, sum(v[0] for v in percpu.values()), sum(v[1] for v in percpu.values()),
                        percpu)


def _cpu_modes_v2(c: Container, data: bytes) -> ContainerCpu:
    data = b"\n" + data
    user, system = _find(data, b"\nuser_usec "), _find(data, b"\nsystem_usec ")
    if user is None or system is None:
        raise ValueError("no user_usec or system_usec in cpu.stat")
    return ContainerCpu(c, user * 1000, system * 1000)


def _covered(path: str, taken: dict[str, Container], holders: set[str]) -> bool:
    """Whether cgroup ``path`` of one hierarchy is, sits inside, or holds (``holders``: the
    ancestors of ``taken``'s paths) one of the containers ``taken`` from another."""
    if path in taken or path in holders:
        return True
    i = path.rfind("/")
    while i > 0:
        if path[:i] in taken:
            return True
        i = path.rfind("/", 0, i)
    return False


def _ancestors(paths: Iterable[str]) -> set[str]:
    out = set()
    for p in paths:
        i = p.rfind("/")
        while i > 0:
            out.add(p[:i])
            i = p.rfind("/", 0, i)
    return out


def parse_pressure(data: bytes) -> dict[str, float]:
    """A PSI file: ``{"some": avg10, "full": avg10}`` (percent)."""
    out = {}
    for line in data.split(b"\n"):
        p = line.split()
        if len(p) >= 2 and p[1].startswith(b"avg10="):
            out[p[0].decode()] = float(p[1][6:])
    return out


def read_devices(procfs: str = "/proc") -> dict[str, str]:
    """Block device names by ``major:minor`` (from ``/proc/diskstats``)."""
    out = {}
    try:
        for line in read_file(procfs + "/diskstats").split(b"\n"):
            p = line.split()
            if len(p) >= 3:
                out[f"{p[0].decode()}:{p[1].decode()}"] = p[2].decode()
    except OSError:
        pass
    return out


# --- what each metric reads -------------------------------------------------------------------
# A reader gets (directory, hierarchy version) and returns the raw figure(s) of one cgroup.


def _cpu_v1(read: Callable[[str], bytes], d: str) -> int:
    return int(read(d + "/cpuacct.usage"))  # ns


def _cpu_v2(read: Callable[[str], bytes], d: str) -> int:
    usec = _find(b"\n" + read(d + "/cpu.stat"), b"\nusage_usec ")
    if usec is None:
        raise ValueError("no usage_usec in cpu.stat")
    return usec * 1000


def _throttled_v1(read: Callable[[str], bytes], d: str) -> int:
    return _keyed(read(d + "/cpu.stat")).get("throttled_time", 0)


def _throttled_v2(read: Callable[[str], bytes], d: str) -> int:
    return _keyed(read(d + "/cpu.stat")).get("throttled_usec", 0) * 1000


def _find(data: bytes, key: bytes, start: int = 0) -> int | None:
    """The number after ``key`` (``b"\\nname "``) in ``data`` from ``start``, or None."""
    i = data.find(key, start)
    if i < 0:
        return None
    j = i + len(key)
    k = data.find(b"\n", j)
    return int(data[j : k if k >= 0 else len(data)])


def _memory_v1(read: Callable[[str], bytes], d: str) -> dict[str, int]:
    # Look up three keys rather than parse the ~70 lines (the parse cost most of the read).
    # The total_* lines (hierarchical) come last, total_cache first among them.
    s = read(d + "/memory.stat")
    start = max(0, s.find(b"\ntotal_cache "))
    out = {"rss": _find(s, b"\ntotal_rss ", start) or 0, "cache": _find(s, b"\ntotal_cache ", start) or 0}
    swap = _find(s, b"\ntotal_swap ", start)
    if swap is not None:  # only with swap accounting (memsw)
        out["swap"] = swap
    return out


def _memory_v2(read: Callable[[str], bytes], d: str) -> dict[str, int]:
    s = _keyed(read(d + "/memory.stat"))
    out = {"rss": s.get("anon", 0), "cache": s.get("file", 0)}
    with contextlib.suppress(OSError):
        out["swap"] = int(read(d + "/memory.swap.current"))
    return out


def _limit_v1(read: Callable[[str], bytes], d: str) -> int | None:
    v = int(read(d + "/memory.limit_in_bytes"))
    return None if v >= UNLIMITED else v


def _limit_v2(read: Callable[[str], bytes], d: str) -> int | None:
    return _int(read(d + "/memory.max"))


def _io_v1(read: Callable[[str], bytes], d: str) -> dict:
    return parse_blkio(read(d + "/blkio.throttle.io_service_bytes_recursive"))


def _io_v2(read: Callable[[str], bytes], d: str) -> dict:
    return parse_io_stat(read(d + "/io.stat"), "rbytes", "wbytes")


def _io_ops_v1(read: Callable[[str], bytes], d: str) -> dict:
    return parse_blkio(read(d + "/blkio.throttle.io_serviced_recursive"))


def _io_ops_v2(read: Callable[[str], bytes], d: str) -> dict:
    return parse_io_stat(read(d + "/io.stat"), "rios", "wios")


def _pressure_v2(read: Callable[[str], bytes], d: str) -> dict[tuple[str, str], float]:
    out = {}
    for res in PRESSURE_RESOURCES:
        try:
            got = parse_pressure(read(f"{d}/{res}.pressure"))
        except OSError:  # no PSI for this resource (or the kernel has none)
            continue
        for kind, v in got.items():
            out[(res, kind)] = v
    return out


def _pids(read: Callable[[str], bytes], d: str) -> int:
    return int(read(d + "/pids.current"))


# metric -> [(version, controller needed or "" for none, reader)], in order of preference
_PROVIDERS: dict[str, list[tuple[int, str, Callable]]] = {
    "container.cpu": [(1, "cpuacct", _cpu_v1), (2, "", _cpu_v2)],
    "container.throttled": [(1, "cpu", _throttled_v1), (2, "cpu", _throttled_v2)],
    "container.memory": [(1, "memory", _memory_v1), (2, "memory", _memory_v2)],
    "container.memory_limit": [(1, "memory", _limit_v1), (2, "memory", _limit_v2)],
    "container.io": [(1, "blkio", _io_v1), (2, "io", _io_v2)],
    "container.io_ops": [(1, "blkio", _io_ops_v1), (2, "io", _io_ops_v2)],
    "container.pressure": [(2, "", _pressure_v2)],
    "container.pids": [(1, "pids", _pids), (2, "pids", _pids)],
}

# --- metrics ------------------------------------------------------------------------------------

POD = Field("pod", DISCRETE, "Kubernetes pod uid")
VM = Field("vm", DISCRETE, "virtual machine")
UTILIZATION = Field("utilization", NUMERIC, "CPU utilization", PERCENT)
MEMORY_TYPE = Field("type", DISCRETE, "memory type")
DISK = Field("disk", DISCRETE, "disk")
DIRECTION = Field("direction", DISCRETE, "direction")
RESOURCE = Field("resource", DISCRETE, "stalled resource")
STALL = Field("type", DISCRETE, "stall type (some, full)")
_C = (CONTAINER, RUNTIME, POD, VM)

METRICS = (
    metric("container", "cpu", "container CPU time", SECONDS, INTERVAL, *_C, UTILIZATION),
    metric("container", "throttled", "container CPU throttled time", SECONDS, INTERVAL, *_C),
    metric("container", "memory", "container memory", BYTES, POINT, *_C, MEMORY_TYPE),
    metric("container", "memory_limit", "container memory limit", BYTES, POINT, *_C),
    metric("container", "io", "container disk bytes", BYTES, INTERVAL, *_C, DISK, DIRECTION),
    metric("container", "io_ops", "container disk operations", NUMBER, INTERVAL, *_C, DISK, DIRECTION),
    metric("container", "pressure", "container stall pressure (PSI avg10)", PERCENT, POINT, *_C,
           RESOURCE, STALL),
    metric("container", "pids", "container tasks", NUMBER, POINT, *_C),
)
COLUMNS = {m.name: tuple(f.name for f in m.fields[1:]) for m in METRICS}


class CgroupSource:
    """The ``container.*`` metrics of every container (cgroup) of the host.

    ``hierarchies`` defaults to the mounted ones; ``reads`` counts walks (``walk``), change
    checks (``check``), figures read (``file``), v1 ``memory.stat`` reads (``memory.stat``),
    readings of CPU time by mode (``cpu_modes``), the files parsed for them
    (``cpu_modes.parse``) and reads saved by sharing a file read at the same tick (``shared``).
    Call :meth:`close` to release the files it keeps open.
    """

    name = "cgroup"

    def __init__(self, hierarchies: list[Hierarchy] | None = None, procfs: str = "/proc",
                 rescan_every: float = RESCAN_EVERY) -> None:
        self.hierarchies = find_hierarchies(procfs + "/self/mounts") if hierarchies is None \
            else hierarchies
        self.procfs = procfs
        self.rescan_every = rescan_every
        self.reads: Counter[str] = Counter()
        self._walked: dict[str, float] = {}  # mount -> clock() of its last walk
        self._containers: dict[str, dict[str, Container]] = {}  # mount -> {path: container}
        self._devices: dict[str, str] = {}
        self._rows: dict[str, Rows] = {}
        self._prev: dict[str, tuple[float, dict]] = {}
        self._has_containers: bool | None = None
        self._fds: dict[str, int] = {}  # file path -> fd kept open
        self._listed: dict[str, dict[str, int]] = {}  # mount -> {dir walked: its link count}
        self._checked: set[str] = set()  # mounts checked for changes at this tick
        self._tick = 0
        self._memory_memo: dict[str, tuple[bytes, int, dict[str, int]]] = {}  # dir -> (usage, tick, split)
        self._provider_cache: dict[str, list[tuple[Hierarchy, Callable]]] = {}
        self._now: float | None = None  # the tick's wall-clock time, as begin_tick was told
        self._shared: dict[str, bytes] = {}  # SHARED_FILES read at this tick
        self._readings: dict[str, tuple[float, dict]] = {}  # metric -> this tick's reading
        self._cpu_modes: dict[tuple[int, str], ContainerCpu] | None = None  # this tick's reading
        # file -> (container.cpu's figure then, or None; the file's content; parsed) at its last read
        self._cpu_memo: dict[str, tuple[object, bytes, ContainerCpu]] = {}

    def _providers(self, name: str) -> list[tuple[Hierarchy, Callable]]:
        """The (hierarchy, reader) pairs that can give ``name``, in order of preference."""
        out = self._provider_cache.get(name)
        if out is not None:
            return out
        out = self._provider_cache[name] = []
        for version, ctrl, reader in _PROVIDERS[name]:
            for h in self.hierarchies:
                if h.version == version and (not ctrl or ctrl in h.controllers):
                    out.append((h, reader))
        return out

    def metrics(self) -> list[Metric]:
        """The metrics some mounted hierarchy provides; none on a host without containers
        (no cgroup below the roots when the source is made)."""
        if self._has_containers is None:
            self._has_containers = any(self.containers(h) for h in self.hierarchies)
        if not self._has_containers:
            return []
        return [m for m in METRICS if self._providers(m.name)]

    def begin_tick(self, now: float) -> None:
        self._tick += 1
        self._now = now
        self._rows.clear()
        self._checked.clear()
        self._shared.clear()
        self._readings.clear()
        self._cpu_modes = None

    def close(self) -> None:
        """Close the cgroup files kept open."""
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    def _pread(self, path: str) -> bytes:
        """The content of cgroup file ``path``: kept open and re-read at offset 0 (kernfs files
        are regenerated by a read at offset 0), which costs about half an open-read-close.
        A file of SHARED_FILES is read once per tick."""
        if path.endswith(SHARED_FILES):
            data = self._shared.get(path)
            if data is None:
                data = self._shared[path] = self._pread_now(path)
            else:
                self.reads["shared"] += 1
            return data
        return self._pread_now(path)

    def _pread_now(self, path: str) -> bytes:
        fd = self._fds.get(path)
        if fd is None:
            if len(self._fds) >= MAX_KEPT_FILES:
                return read_file(path)
            fd = self._fds[path] = os.open(path, os.O_RDONLY)
        try:
            data = os.pread(fd, READ_SIZE, 0)
        except OSError as exc:  # ENODEV once the cgroup is removed
            os.close(self._fds.pop(path))
            raise FileNotFoundError(exc.errno, exc.strerror, path) from exc
        return data if len(data) < READ_SIZE else read_file(path)

    def collect(self, metric: str) -> Rows:
        rows = self._rows.get(metric)
        if rows is None:
            if metric not in _PROVIDERS:
                raise NotFound("metric", f"cgroup source has no metric {metric!r}")
            rows = self._rows[metric] = Rows(COLUMNS[metric], self._build(metric))
        return rows

    # --- CPU time by mode, for the host source's cpu.usage by container -----------------------

    def cpu_by_container(self, now: float) -> dict[tuple[int, str], ContainerCpu]:
        """The CPU time by mode of every container, by (cgroup version, path); containers do
        not overlap (see the module's doc). Read once per tick: ``now`` is the tick's time, as
        given to :meth:`begin_tick` (a new ``now`` starts a tick, for a caller that drives
        this source alone)."""
        if now != self._now:
            self.begin_tick(now)
        if self._cpu_modes is None:
            self.reads["cpu_modes"] += 1
            self._cpu_modes = self._read_cpu_modes()
        return self._cpu_modes

    def _read_cpu_modes(self) -> dict[tuple[int, str], ContainerCpu]:
        out: dict[tuple[int, str], ContainerCpu] = {}
        memo: dict[str, tuple[object, bytes, ContainerCpu]] = {}
        taken: dict[str, Container] = {}
        v1 = next((h for h in self.hierarchies if h.version == 1 and "cpuacct" in h.controllers), None)
        if v1 is not None:
            taken = self.containers(v1)
            # container.cpu's cpuacct.usage of this tick (read for it anyway by default): a
            # container whose usage did not move got no tick either, so its cpuacct.usage_all
            # (half as dear again to read, and parsed) is not read.
            first = self._providers("container.cpu")
            usage = self._reading("container.cpu")[1] if first and first[0][0] is v1 else {}
            self._read_modes(v1, list(taken.items()), "/cpuacct.usage_all", _cpu_modes_v1, out, memo,
                             usage)
        v2 = next((h for h in self.hierarchies if h.version == 2), None)
        if v2 is not None:
            conts = [(p, c) for p, c in self.containers(v2).items() if p not in taken]
            if conts and taken:
                holders = _ancestors(taken)
                conts = [(p, c) for p, c in conts if not _covered(p, taken, holders)]
            self._read_modes(v2, conts, "/cpu.stat", _cpu_modes_v2, out, memo)
        self._cpu_memo = memo  # forget containers that are gone
        return out

    def _read_modes(self, h: Hierarchy, conts: list[tuple[str, Container]], name: str,
                    parse: Callable[[Container, bytes], ContainerCpu],
                    out: dict[tuple[int, str], ContainerCpu], memo: dict,
                    usage: dict[str, tuple[Container, object]] | None = None) -> None:
        """Read file ``name`` of each of ``conts`` in ``h`` into ``out``. An idle container
        gives the same object as at the last tick: one whose figure in ``usage`` (path ->
        (container, CPU time)) did not move, or whose file's content did not change."""
        mount = h.mount
        for path, c in conts:
            file = mount + path + name
            was = self._cpu_memo.get(file)
            used = usage.get(path) if usage else None
            if was is not None and used is not None and was[0] == used[1]:
                memo[file] = was
                out[(h.version, path)] = was[2]
                continue
            try:
                data = self._pread_now(file) if usage is not None else self._pread(file)
            except FileNotFoundError:
                self._walked.pop(mount, None)  # gone: walk again next time
                self._containers.get(mount, {}).pop(path, None)
                continue
            except OSError:
                continue
            if was is None or was[1] != data:
                try:
                    was = (None, data, parse(c, data))
                except (ValueError, KeyError):
                    continue
                self.reads["cpu_modes.parse"] += 1
            if used is not None:
                was = (used[1], *was[1:])
            memo[file] = was
            out[(h.version, path)] = was[2]

    # --- discovery -------------------------------------------------------------------------

    def containers(self, h: Hierarchy) -> dict[str, Container]:
        """The containers of hierarchy ``h`` by cgroup path.

        Walked again every ``rescan_every`` seconds, and at a tick where the link count of a
        directory the last walk listed changed (a cgroup was made or removed below it): a few
        stats per tick instead of a walk."""
        now = clock()
        mount = h.mount
        last = self._walked.get(mount)
        stale = last is None or now - last >= self.rescan_every
        if not stale and mount not in self._checked:
            self._checked.add(mount)
            stale = self._changed(mount)
        if stale:
            self.reads["walk"] += 1
            found: dict[str, Container] = {}
            listed: dict[str, int] = {}
            with contextlib.suppress(OSError):  # an unmounted hierarchy has no containers
                self._walk(mount, "", os.stat(mount).st_nlink, found, listed)
            self._containers[mount] = found
            self._listed[mount] = listed
            self._walked[mount] = now
            self._checked.add(mount)
            self._devices = {}
            prefix = mount + "/"
            for path in [p for p in self._fds if p.startswith(prefix)]:
                rel = path[len(mount) : path.rfind("/")]
                if rel and rel not in found:  # not a container any more
                    os.close(self._fds.pop(path))
        return self._containers[mount]

    def _changed(self, mount: str) -> bool:
        self.reads["check"] += 1
        for rel, nlink in self._listed.get(mount, {}).items():
            try:
                if os.stat(mount + rel).st_nlink != nlink:
                    return True
            except OSError:
                return True
        return False

    def _walk(self, top: str, rel: str, nlink: int, found: dict[str, Container],
              listed: dict[str, int]) -> None:
        """Add the containers under ``top + rel`` to ``found``, and the directories listed with
        their link count to ``listed``.

        A directory's link count is 2 plus its number of sub-directories (kernfs keeps it so):
        a leaf cgroup is recognised by one stat instead of listing its ~30 files."""
        try:
            subs = [e for e in os.scandir(top + rel) if e.is_dir(follow_symlinks=False)]
        except OSError:
            return
        listed[rel] = nlink
        for e in subs:
            path = f"{rel}/{e.name}"
            c = resolve(path)
            if is_container(c):
                found[path] = c
                continue
            try:
                n = e.stat(follow_symlinks=False).st_nlink
            except OSError:
                continue
            if n == 2 or (n < 2 and not self._has_subdirs(top + path)):
                found[path] = c  # a leaf
            else:
                self._walk(top, path, n, found, listed)

    @staticmethod
    def _has_subdirs(d: str) -> bool:
        try:
            return any(e.is_dir(follow_symlinks=False) for e in os.scandir(d))
        except OSError:
            return False

    def _read_all(self, metric: str) -> dict[str, tuple[Container, object]]:
        """path -> (container, raw figure) for every container, each from its first provider;
        for container.cpu, the root of the first provider under ``"/"``."""
        out: dict[str, tuple[Container, object]] = {}
        providers = self._providers(metric)
        read = self._pread
        for i, (h, reader) in enumerate(providers):
            if reader is _memory_v1:
                reader = self._memory_v1_reused
            conts = self.containers(h)
            mount = h.mount
            for path, c in list(conts.items()):
                if path in out:
                    continue
                try:
                    out[path] = (c, reader(read, mount + path))
                except FileNotFoundError:
                    self._walked.pop(mount, None)  # gone: walk again next time
                    conts.pop(path, None)
                except (OSError, ValueError, KeyError):
                    continue
            if i == 0 and metric == "container.cpu":
                with contextlib.suppress(OSError, ValueError, KeyError):
                    out["/"] = (HOST, reader(self._pread, h.mount))
        self.reads["file"] += len(out)
        return out

    def _memory_v1_reused(self, read: Callable[[str], bytes], d: str) -> dict[str, int]:
        """:func:`_memory_v1`, or its last result for ``d`` if ``memory.usage_in_bytes`` is the
        same as then and that result is under :data:`MEMORY_STAT_REUSE` ticks old."""
        usage = read(d + "/memory.usage_in_bytes")
        memo = self._memory_memo.get(d)
        if memo is not None and memo[0] == usage and self._tick - memo[1] < MEMORY_STAT_REUSE:
            return memo[2]
        self.reads["memory.stat"] += 1
        split = _memory_v1(read, d)
        if len(self._memory_memo) > 4 * MAX_KEPT_FILES:
            self._memory_memo.clear()
        self._memory_memo[d] = (usage, self._tick, split)
        return split

    def _reading(self, metric: str) -> tuple[float, dict[str, tuple[Container, object]]]:
        """(clock() when read, :meth:`_read_all`) of ``metric``, read once per tick: container.cpu's
        is also what :meth:`cpu_by_container` looks at first."""
        got = self._readings.get(metric)
        if got is None:
            got = self._readings[metric] = (clock(), self._read_all(metric))
        return got

    def _build(self, metric: str) -> list[tuple]:
        now, cur = self._reading(metric)
        if metric in ("container.memory_limit", "container.pids"):
            return [(*c, v) for p, (c, v) in cur.items() if p != "/" and v is not None]
        if metric == "container.memory":
            return [(*c, t, v) for p, (c, got) in cur.items() if p != "/" for t, v in got.items()]
        if metric == "container.pressure":
            return [(*c, res, kind, v) for p, (c, got) in cur.items() if p != "/"
                    for (res, kind), v in got.items()]
        # interval metrics
        prev = self._prev.get(metric)
        self._prev[metric] = (now, cur)
        if prev is None or not 0 < now - prev[0] <= MAX_GAP:
            return []
        elapsed = tick_length(now - prev[0])
        old = prev[1]
        rows = []
        if metric in ("container.io", "container.io_ops"):
            if not self._devices:
                self._devices = read_devices(self.procfs)
            for p, (c, got) in cur.items():
                was = old.get(p)
                if p == "/" or was is None:
                    continue
                for (dev, direction), v in got.items():
                    d = v - was[1].get((dev, direction), 0)
                    if d >= 0:
                        rows.append((*c, self._devices.get(dev, dev), direction, d / elapsed))
            return rows
        # ns counters: container.cpu, container.throttled
        scale = 1e-9 / elapsed
        total = 0.0
        first = self._containers_of_first(metric)
        for p, (c, v) in cur.items():
            was = old.get(p)
            if p == "/" or was is None or v < was[1]:
                continue
            rate = (v - was[1]) * scale
            if p in first:
                total += rate
            rows.append((*c, 100.0 * rate, rate) if metric == "container.cpu" else (*c, rate))
        root, was = cur.get("/"), old.get("/")
        if metric == "container.cpu" and root is not None and was is not None and root[1] >= was[1]:
            host = max(0.0, (root[1] - was[1]) * scale - total)
            rows.append((*HOST, 100.0 * host, host))
        return rows

    def _containers_of_first(self, metric: str) -> dict[str, Container]:
        providers = self._providers(metric)
        return self._containers.get(providers[0][0].mount, {}) if providers else {}
