"""The cgroup source: the ``container.*`` metrics, and the containers' CPU time by mode.

Every metric takes a container's figure from the first hierarchy that has the
container's cgroup and the controller the figure needs, v1 first
(:data:`PROVIDERS`; the readers are ``v1.py`` and ``v2.py``). ``container.cpu``
adds a row for the host itself (container ``/``, runtime ``host``): the root's
CPU time minus the containers' (processes of a non-leaf cgroup that is not a
container count as the host's). A v1 ``memory.stat`` is read again only when
``memory.usage_in_bytes`` moved since the last reading, or after
:data:`MEMORY_STAT_REUSE` ticks.

:meth:`CgroupSource.cpu_by_container` reads the containers' CPU time by mode
for the host source's ``cpu.usage`` by container: the containers of the first
v1 hierarchy with ``cpuacct`` from ``cpuacct.usage_all`` (user and system time
per CPU, counted by the same scheduler ticks as ``/proc/stat``), then those of
the v2 mount that are not already counted there (neither the same cgroup, nor
inside one, nor holding one) from ``cpu.stat`` user_usec and system_usec (no
per-CPU split). Each file is read once per tick: a v2 ``cpu.stat`` serves
``container.cpu``, ``container.throttled`` and the split alike; the
``cpuacct.usage`` readings of ``container.cpu`` (read once per tick for both)
tell which v1 containers used no CPU time since the last tick, whose
``cpuacct.usage_all`` is then not read; an unchanged file is not parsed again.
"""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from collections.abc import Callable

from fleetscope.model.errors import NotFound
from fleetscope.model.hostmetrics import CONTAINER, RUNTIME
from fleetscope.model.metrics import DISCRETE, INTERVAL, NUMERIC, POINT, Field, Metric, metric
from fleetscope.model.types import BYTES, NUMBER, PERCENT, SECONDS
from fleetscope.sources.base import MAX_GAP, Rows, tick_length
from fleetscope.sources.cgroup import v1, v2
from fleetscope.sources.cgroup.files import MAX_KEPT_FILES, CgroupFiles, Read, pids
from fleetscope.sources.cgroup.hierarchy import Hierarchy, find_hierarchies
from fleetscope.sources.cgroup.netns import NetNamespaces
from fleetscope.sources.cgroup.walk import LEAF_NLINK, Walker, ancestors, covered
from fleetscope.sources.container_cpu import SECONDS_PER_NS, ContainerCpu
from fleetscope.sources.containers import HOST, Container
from fleetscope.sources.procfs import clock, read_devices
from fleetscope.sources.runtimes import Names

RESCAN_EVERY = 60.0
# v1 memory.stat costs about five times memory.usage_in_bytes to generate and parse: a cgroup
# whose usage did not move since the last reading keeps that reading's rss/cache/swap split,
# for at most this many ticks.
MEMORY_STAT_REUSE = 10
# cgroups whose last memory.stat split is kept (past that, all are forgotten at once)
MAX_MEMORY_MEMO = 4 * MAX_KEPT_FILES
PERCENT_OF_ONE_CPU = 100.0  # utilization: CPU seconds per second as a percent of one CPU



def _network(read: Read, d: str) -> dict:
    """Stands for :meth:`NetNamespaces.traffic` of the source in PROVIDERS."""
    raise AssertionError("replaced by the source's own reader")


# metric -> [(version, controller needed or "" for none, reader)], in order of preference
PROVIDERS: dict[str, list[tuple[int, str, Callable]]] = {
    "container.cpu": [(1, "cpuacct", v1.cpu), (2, "", v2.cpu)],
    "container.throttled": [(1, "cpu", v1.throttled), (2, "cpu", v2.throttled)],
    "container.throttled_periods": [(1, "cpu", v1.throttled_periods), (2, "cpu", v2.throttled_periods)],
    "container.memory": [(1, "memory", v1.memory), (2, "memory", v2.memory)],
    "container.memory_limit": [(1, "memory", v1.limit), (2, "memory", v2.limit)],
    "container.io": [(1, "blkio", v1.io), (2, "io", v2.io)],
    "container.io_ops": [(1, "blkio", v1.io_ops), (2, "io", v2.io_ops)],
    "container.pressure": [(2, "", v2.pressure)],
    "container.stall": [(2, "", v2.stall)],
    "container.pids": [(1, "pids", pids), (2, "pids", pids)],
    "container.oom_kills": [(1, "memory", v1.oom_kills), (2, "memory", v2.oom_kills)],
    # any hierarchy holding the container's processes (memory: where runtimes put them all)
    "container.net": [(1, "memory", _network), (2, "", _network)],
    "container.net_packets": [(1, "memory", _network), (2, "", _network)],
}
# Metrics read together: one reading serves both.
SAME_READING = {"container.net_packets": "container.net"}
# Counters of a dict {(key, kind): value} per container -> (whether the key is a device number to
# name, which element of a tuple value or None, scale to the metric's unit). A key not seen before
# counts from 0 for disks (a container's first I/O to a disk) and is skipped for the others.
KEYED_COUNTERS: dict[str, tuple[bool, int | None, float]] = {
    "container.io": (True, None, 1.0),
    "container.io_ops": (True, None, 1.0),
    "container.stall": (False, None, SECONDS_PER_NS),
    "container.net": (False, 0, 1.0),
    "container.net_packets": (False, 1, 1.0),
}
COUNTS = ("container.throttled_periods", "container.oom_kills")

# --- metrics ------------------------------------------------------------------------------------

POD = Field("pod", DISCRETE, "pod (Kubernetes or podman; the uid where the name is unknown)")
VM = Field("vm", DISCRETE, "virtual machine")
IMAGE = Field("image", DISCRETE, "container image")
NAMESPACE = Field("namespace", DISCRETE, "Kubernetes namespace")
NIC = Field("nic", DISCRETE, "network interface (of the container's network namespace)")
UTILIZATION = Field("utilization", NUMERIC, "CPU utilization", PERCENT)
MEMORY_TYPE = Field("type", DISCRETE, "memory type")
DISK = Field("disk", DISCRETE, "disk")
DIRECTION = Field("direction", DISCRETE, "direction")
RESOURCE = Field("resource", DISCRETE, "stalled resource")
STALL = Field("type", DISCRETE, "stall type (some, full)")
_C = (CONTAINER, RUNTIME, POD, VM, IMAGE, NAMESPACE)  # then the operator's labels (Names.fields)

METRICS = (
    metric("container", "cpu", "container CPU time", SECONDS, INTERVAL, *_C, UTILIZATION),
    metric("container", "throttled", "container CPU throttled time", SECONDS, INTERVAL, *_C),
    metric("container", "throttled_periods", "container CPU periods throttled", NUMBER, INTERVAL, *_C),
    metric("container", "memory", "container memory", BYTES, POINT, *_C, MEMORY_TYPE),
    metric("container", "memory_limit", "container memory limit", BYTES, POINT, *_C),
    metric("container", "io", "container disk bytes", BYTES, INTERVAL, *_C, DISK, DIRECTION),
    metric("container", "io_ops", "container disk operations", NUMBER, INTERVAL, *_C, DISK, DIRECTION),
    metric("container", "pressure", "container stall pressure (PSI avg10)", PERCENT, POINT, *_C,
           RESOURCE, STALL),
    metric("container", "stall", "container stall time (PSI total)", SECONDS, INTERVAL, *_C, RESOURCE,
           STALL),
    metric("container", "pids", "container tasks", NUMBER, POINT, *_C),
    metric("container", "oom_kills", "container processes killed out of memory", NUMBER, INTERVAL, *_C),
    metric("container", "net", "container network bytes", BYTES, INTERVAL, *_C, NIC, DIRECTION),
    metric("container", "net_packets", "container network packets", NUMBER, INTERVAL, *_C, NIC,
           DIRECTION),
)
COLUMNS = {m.name: tuple(f.name for f in m.fields[1:]) for m in METRICS}
NAMING_FIELDS = 1 + len(_C)  # hostname and _C: the labels' fields go after them


def with_labels(metrics: tuple[Metric, ...], names: Names) -> tuple[Metric, ...]:
    """``metrics`` with a field per container label of ``names`` after the naming fields."""
    extra = tuple(Field(f, DISCRETE, f"container label {k}")
                  for f, k in zip(names.fields[2:], names.labels, strict=True))
    if not extra:
        return metrics
    return tuple(m._replace(fields=(*m.fields[:NAMING_FIELDS], *extra, *m.fields[NAMING_FIELDS:]))
                 for m in metrics)


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
                 rescan_every: float = RESCAN_EVERY, names: Names | None = None) -> None:
        self.hierarchies = find_hierarchies(procfs + "/self/mounts") if hierarchies is None \
            else hierarchies
        self.procfs = procfs
        self.names = Names() if names is None else names
        self._metrics = with_labels(METRICS, self.names)
        self.columns = {m.name: tuple(f.name for f in m.fields[1:]) for m in self._metrics}
        self.reads: Counter[str] = Counter()
        self._net = NetNamespaces(procfs, self.reads)
        self._files = CgroupFiles(self.reads)
        self._walker = Walker(rescan_every, self.reads, self._walked_again)
        self._devices: dict[str, str] = {}  # block device names by maj:min, read again after a walk
        self._rows: dict[str, Rows] = {}
        self._prev: dict[str, tuple[float, dict]] = {}
        self._has_containers = False  # some cgroup was ever seen below a root
        self._tick = 0
        self._memory_memo: dict[str, tuple[bytes, int, dict[str, int]]] = {}  # dir -> (usage, tick, split)
        self._provider_cache: dict[str, list[tuple[Hierarchy, Callable]]] = {}
        self._now: float | None = None  # the tick's wall-clock time, as begin_tick was told
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
        for version, ctrl, reader in PROVIDERS[name]:
            for h in self.hierarchies:
                if h.version == version and (not ctrl or ctrl in h.controllers):
                    out.append((h, reader))
        return out

    def metrics(self) -> list[Metric]:
        """The metrics some mounted hierarchy provides; none while the host has no containers
        (no cgroup below any hierarchy's root; see :attr:`generation`)."""
        if not self._has_containers:
            self._has_containers = self._any_cgroup()
        if not self._has_containers:
            return []
        return [m for m in self._metrics if self._providers(m.name)]

    @property
    def generation(self) -> int:
        """0 while the host has no containers, 1 from the first (then for good: the agent's
        catalogue only grows), so an agent started on a bare host offers the ``container.*``
        metrics from the tick after the first cgroup is made (``sources/base.py``). While
        there is none, each reading costs a stat of each hierarchy's root."""
        if not self._has_containers:
            self._has_containers = self._any_cgroup()
        return int(self._has_containers)

    def _any_cgroup(self) -> bool:
        """Whether some hierarchy has a cgroup below its root. That is whether a walk finds a
        container (each sub-tree ends in containers or leaves), told by the root's link count
        (:data:`LEAF_NLINK` plus its sub-directories, as kernfs keeps it) without a walk."""
        for h in self.hierarchies:
            try:
                st = os.stat(h.mount)
            except OSError:
                continue  # unmounted: no containers there
            if st.st_nlink > LEAF_NLINK or (st.st_nlink < LEAF_NLINK and self.containers(h)):
                return True
        return False

    def begin_tick(self, now: float) -> None:
        self._tick += 1
        self._now = now
        self._rows.clear()
        self._walker.begin_tick()
        self._files.begin_tick()
        self._readings.clear()
        self._cpu_modes = None
        self._net.begin_tick()

    def close(self) -> None:
        """Close the cgroup files kept open."""
        self._files.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    def collect(self, metric: str) -> Rows:
        rows = self._rows.get(metric)
        if rows is None:
            if metric not in PROVIDERS:
                raise NotFound("metric", f"cgroup source has no metric {metric!r}")
            built = self._build(metric)
            rows = self._rows[metric] = Rows(self.columns[metric], built, warning=self.names.warning())
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
        v1_h = next((h for h in self.hierarchies if h.version == 1 and "cpuacct" in h.controllers), None)
        if v1_h is not None:
            taken = self.containers(v1_h)
            # container.cpu's cpuacct.usage of this tick (read for it anyway by default): a
            # container whose usage did not move got no tick either, so its cpuacct.usage_all
            # (half as dear again to read, and parsed) is not read.
            first = self._providers("container.cpu")
            usage = self._reading("container.cpu")[1] if first and first[0][0] is v1_h else {}
            self._read_modes(v1_h, list(taken.items()), "/cpuacct.usage_all", v1.cpu_modes, out, memo,
                             usage)
        v2_h = next((h for h in self.hierarchies if h.version == 2), None)
        if v2_h is not None:
            conts = [(p, c) for p, c in self.containers(v2_h).items() if p not in taken]
            if conts and taken:
                holders = ancestors(taken)
                conts = [(p, c) for p, c in conts if not covered(p, taken, holders)]
            self._read_modes(v2_h, conts, "/cpu.stat", v2.cpu_modes, out, memo)
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
                data = self._files.read_now(file) if usage is not None else self._files.read(file)
            except FileNotFoundError:
                self._walker.forget(mount, path)  # gone: walk again next time
                continue
            except OSError:
                continue
            if was is None or was[1] != data:
                try:
                    was = (None, data, parse(self.names.named(c), data))
                except (ValueError, KeyError):
                    continue
                self.reads["cpu_modes.parse"] += 1
            if used is not None:
                was = (used[1], *was[1:])
            memo[file] = was
            out[(h.version, path)] = was[2]

    # --- discovery -------------------------------------------------------------------------

    def containers(self, h: Hierarchy) -> dict[str, Container]:
        """The containers of hierarchy ``h`` by cgroup path (see ``walk.py``)."""
        return self._walker.containers(h)

    def _walked_again(self, mount: str, found: dict[str, Container]) -> None:
        self._devices = {}
        self._files.close_gone(mount, found)
        self._net.forget({h.mount + p for h in self.hierarchies for p in self._walker.known(h.mount)}
                         | {mount + p for p in found})

    def _read_all(self, metric: str) -> dict[str, tuple[Container, object]]:
        """path -> (container, raw figure) for every container, each from its first provider;
        for container.cpu, the root of the first provider under ``"/"``."""
        out: dict[str, tuple[Container, object]] = {}
        providers = self._providers(metric)
        read = self._files.read
        for i, (h, reader) in enumerate(providers):
            if reader is v1.memory:
                reader = self._memory_v1_reused
            elif reader is _network:
                reader = self._net.traffic
            conts = self.containers(h)
            mount = h.mount
            for path, c in list(conts.items()):
                if path in out:
                    continue
                try:
                    out[path] = (c, reader(read, mount + path))
                except FileNotFoundError:
                    self._walker.forget(mount, path)  # gone: walk again next time
                except (OSError, ValueError, KeyError):
                    continue
            if i == 0 and metric == "container.cpu":
                with contextlib.suppress(OSError, ValueError, KeyError):
                    out["/"] = (HOST, reader(read, h.mount))
        self.reads["file"] += len(out)
        return out

    def _memory_v1_reused(self, read: Read, d: str) -> dict[str, int]:
        """:func:`v1.memory`, or its last result for ``d`` if ``memory.usage_in_bytes`` is the
        same as then and that result is under :data:`MEMORY_STAT_REUSE` ticks old."""
        usage = v1.memory_usage(read, d)
        memo = self._memory_memo.get(d)
        if memo is not None and memo[0] == usage and self._tick - memo[1] < MEMORY_STAT_REUSE:
            return memo[2]
        self.reads["memory.stat"] += 1
        split = v1.memory(read, d)
        if len(self._memory_memo) > MAX_MEMORY_MEMO:
            self._memory_memo.clear()
        self._memory_memo[d] = (usage, self._tick, split)
        return split

    def _reading(self, metric: str) -> tuple[float, dict[str, tuple[Container, object]]]:
        """(clock() when read, :meth:`_read_all`) of ``metric``, read once per tick: container.cpu's
        is also what :meth:`cpu_by_container` looks at first."""
        metric = SAME_READING.get(metric, metric)
        got = self._readings.get(metric)
        if got is None:
            got = self._readings[metric] = (clock(), self._read_all(metric))
        return got

    def _build(self, metric: str) -> list[tuple]:
        now, cur = self._reading(metric)
        row = self.names.row
        if metric in ("container.memory_limit", "container.pids"):
            return [(*row(c), v) for p, (c, v) in cur.items() if p != "/" and v is not None]
        if metric == "container.memory":
            return [(*row(c), t, v) for p, (c, got) in cur.items() if p != "/" for t, v in got.items()]
        if metric == "container.pressure":
            return [(*row(c), res, kind, v) for p, (c, got) in cur.items() if p != "/"
                    for (res, kind), v in got.items()]
        # interval metrics
        prev = self._prev.get(metric)
        self._prev[metric] = (now, cur)
        if prev is None or not 0 < now - prev[0] <= MAX_GAP:
            return []
        elapsed = tick_length(now - prev[0])
        old = prev[1]
        rows = []
        if metric in KEYED_COUNTERS:
            if metric in ("container.io", "container.io_ops") and not self._devices:
                self._devices = read_devices(self.procfs)
            devices = self._devices
            # (how to name a key's first part, which part of a value, the counter's scale)
            rename, part, scale = KEYED_COUNTERS[metric]
            for p, (c, got) in cur.items():
                was = old.get(p)
                if p == "/" or was is None:
                    continue
                prefix = row(c)
                for (key, kind), v in got.items():
                    w = was[1].get((key, kind))
                    if part is not None:
                        v, w = v[part], (w[part] if w is not None else None)
                    if w is None:
                        w = 0 if rename else None  # a disk's first I/O: counted from 0
                    if w is not None and v >= w:
                        rows.append((*prefix, devices.get(key, key) if rename else key, kind,
                                     (v - w) * scale / elapsed))
            return rows
        if metric in COUNTS:  # whole-number counters: container.throttled_periods, oom_kills
            for p, (c, v) in cur.items():
                was = old.get(p)
                if p != "/" and was is not None and v >= was[1]:
                    rows.append((*row(c), (v - was[1]) / elapsed))
            return rows
        # ns counters: container.cpu, container.throttled
        scale = SECONDS_PER_NS / elapsed
        total = 0.0
        first = self._containers_of_first(metric)
        for p, (c, v) in cur.items():
            was = old.get(p)
            if p == "/" or was is None or v < was[1]:
                continue
            rate = (v - was[1]) * scale
            if p in first:
                total += rate
            rows.append((*row(c), PERCENT_OF_ONE_CPU * rate, rate) if metric == "container.cpu"
                        else (*row(c), rate))
        root, was = cur.get("/"), old.get("/")
        if metric == "container.cpu" and root is not None and was is not None and root[1] >= was[1]:
            host = max(0.0, (root[1] - was[1]) * scale - total)
            rows.append((*row(HOST), PERCENT_OF_ONE_CPU * host, host))
        return rows

    def _containers_of_first(self, metric: str) -> dict[str, Container]:
        providers = self._providers(metric)
        return self._walker.known(providers[0][0].mount) if providers else {}
