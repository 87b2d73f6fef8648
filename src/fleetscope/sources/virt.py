"""Virtual machine metrics through libvirt, for every hypervisor libvirt drives.

One connection (``uri``; None lets libvirt choose, e.g. ``qemu:///system`` as
root) serves the ``vm.*`` metrics of every domain it lists: KVM/QEMU, Xen, LXC,
OpenVZ/Virtuozzo, VMware ESX, or the built-in test driver (``test:///default``).
``hypervisor`` is the connection's driver type in lower case (``qemu``,
``xen``, ``lxc``, ``esx``, ``test``...).

========  ========  =====================================================  =========================
metric    kind      fields (besides hostname, vm, hypervisor)              from
========  ========  =====================================================  =========================
vm.cpu    interval  vcpu, utilization (CPU seconds per second per vCPU)    ``virDomainGetVcpus``
vm.memory point     type: balloon_current, balloon_maximum, rss (bytes)    ``virDomainGetInfo``,
                                                                           ``virDomainMemoryStats``
vm.disk   interval  device, direction (bytes)                              ``virDomainBlockStats``
vm.disk_ops interval device, direction (operations)                        ``virDomainBlockStats``
vm.net    interval  interface, direction (bytes)                           ``virDomainInterfaceStats``
vm.net_packets interval interface, direction (packets)                     ``virDomainInterfaceStats``
vm.state  point     state: running, blocked, paused, shutdown, shut off,   ``virDomainGetState``
                    crashed, pmsuspended, nostate (1 per domain)
========  ========  =====================================================  =========================

A domain's disks and interfaces are read from its XML description once per
domain (by UUID). Statistics only running domains have are skipped for the
others. Without the ``libvirt`` Python module, or when the connection cannot be
opened, the source has no metrics: VMs are then still seen as processes and
cgroups (``vm`` field of ``proc.*`` and ``container.*``). Errors of one domain
(it stopped between the listing and a read) leave that domain out of the tick.

A daemon that starts after the source (or comes back after a restart) is found
within :data:`RETRY_EVERY` seconds: while there is no connection, each reading of
:attr:`LibvirtSource.generation` (the agent's, once per tick) lists
:data:`SOCKET_DIR` at most once per :data:`RETRY_EVERY` and opens a connection when
a socket is there (a refused open is retried after :data:`OPEN_BACKOFF`); the
``vm.*`` metrics are then offered (``sources/base.py``). A connection that fails
while listing the domains (the daemon stopped) is dropped, that tick's instrumentations
get the error as a warning, and the source looks for the daemon again.
"""

from __future__ import annotations

import contextlib
import math
import os
import xml.etree.ElementTree as ET
from collections import Counter
from typing import Any

from fleetscope.model.errors import NotFound
from fleetscope.model.metrics import DISCRETE, INTERVAL, NUMERIC, POINT, Field, Metric, metric
from fleetscope.model.types import BYTES, NUMBER, PERCENT, SECONDS
from fleetscope.sources.base import MAX_GAP, Rows, tick_length
from fleetscope.sources.procfs import clock

_libvirt: Any = None  # the libvirt module, imported on first use (it costs memory)
_imported = False
# libvirt's daemons' sockets: without one (and without an explicit URI) nothing is tried.
SOCKET_DIR = "/run/libvirt"
RETRY_EVERY = 1.0  # seconds between looks for a daemon while there is no connection
OPEN_BACKOFF = 5.0  # seconds before opening again after a refusal (a daemon stopping or starting)

STATES = ("nostate", "running", "blocked", "paused", "shutdown", "shut off", "crashed", "pmsuspended")

VM = Field("vm", DISCRETE, "virtual machine")
HYPERVISOR = Field("hypervisor", DISCRETE, "hypervisor")
VCPU = Field("vcpu", DISCRETE, "virtual CPU")
UTILIZATION = Field("utilization", NUMERIC, "vCPU utilization", PERCENT)
MEMORY_TYPE = Field("type", DISCRETE, "memory type")
DEVICE = Field("device", DISCRETE, "disk device")
INTERFACE = Field("interface", DISCRETE, "network interface")
DIRECTION = Field("direction", DISCRETE, "direction")
STATE = Field("state", DISCRETE, "domain state")

METRICS = (
    metric("vm", "cpu", "VM vCPU time", SECONDS, INTERVAL, VM, HYPERVISOR, VCPU, UTILIZATION),
    metric("vm", "memory", "VM memory", BYTES, POINT, VM, HYPERVISOR, MEMORY_TYPE),
    metric("vm", "disk", "VM disk bytes", BYTES, INTERVAL, VM, HYPERVISOR, DEVICE, DIRECTION),
    metric("vm", "disk_ops", "VM disk operations", NUMBER, INTERVAL, VM, HYPERVISOR, DEVICE, DIRECTION),
    metric("vm", "net", "VM network bytes", BYTES, INTERVAL, VM, HYPERVISOR, INTERFACE, DIRECTION),
    metric("vm", "net_packets", "VM network packets", NUMBER, INTERVAL, VM, HYPERVISOR, INTERFACE,
           DIRECTION),
    metric("vm", "state", "VM state", NUMBER, POINT, VM, HYPERVISOR, STATE),
)
COLUMNS = {m.name: tuple(f.name for f in m.fields[1:]) for m in METRICS}


def _module() -> Any:
    """The libvirt module, or None when libvirt-python is not installed."""
    global _libvirt, _imported
    if not _imported:
        _imported = True
        try:
            import libvirt
        except ImportError:
            libvirt = None
        _libvirt = libvirt
    return _libvirt


def available() -> bool:
    """Whether the libvirt Python module is installed."""
    return _module() is not None


def daemon_running(socket_dir: str | None = None) -> bool:
    """Whether a libvirt daemon socket exists in ``socket_dir`` (default :data:`SOCKET_DIR`):
    libvirtd's or a modular daemon's (virtqemud...)."""
    try:
        names = os.listdir(SOCKET_DIR if socket_dir is None else socket_dir)
        return any(n.endswith(("-sock", "-sock-ro")) for n in names)
    except OSError:
        return False


def devices(xml: str) -> tuple[list[str], list[str]]:
    """The disk target names and interface target names of a domain's XML description."""
    root = ET.fromstring(xml)
    disks = [t.get("dev") for t in root.findall("./devices/disk/target") if t.get("dev")]
    nics = [t.get("dev") for t in root.findall("./devices/interface/target") if t.get("dev")]
    return disks, nics


class LibvirtSource:
    """The ``vm.*`` metrics of the domains of one libvirt connection (read-only).

    With ``uri`` None, the ``FLEETSCOPE_LIBVIRT_URI`` environment variable, else libvirt's
    default URI when a libvirt daemon's socket exists; otherwise no connection is tried.
    """

    name = "libvirt"

    def __init__(self, uri: str | None = None, socket_dir: str | None = None) -> None:
        """``socket_dir``: where to look for a daemon's socket (default :data:`SOCKET_DIR`)."""
        self.uri = uri
        self.socket_dir = socket_dir
        self.reads: Counter[str] = Counter()
        self._conn: Any = None
        self.hypervisor = ""
        self._devices: dict[str, tuple[list[str], list[str]]] = {}  # uuid -> (disks, nics)
        self._rows: dict[str, Rows] = {}
        self._domains: list | None = None
        self._prev: dict[str, tuple[float, dict]] = {}
        self._connections = 0  # connections opened so far: the generation
        self._looked = self._refused = -math.inf  # clock() of the last look, of the last refusal
        if uri is None:
            self.uri = os.environ.get("FLEETSCOPE_LIBVIRT_URI") or None
        self._connect()

    def _connect(self) -> None:
        """Open the connection if a daemon is there (an explicit URI is always tried)."""
        now = self._looked = clock()
        lv = _module()
        if lv is None or now - self._refused < OPEN_BACKOFF:
            return
        if self.uri is None and not daemon_running(self.socket_dir):
            return
        self.reads["connect"] += 1
        with contextlib.suppress(Exception):
            lv.registerErrorHandler(lambda *_: None, None)  # no messages on stderr
        try:
            conn = lv.openReadOnly(self.uri)
            self.hypervisor = conn.getType().lower()
        except lv.libvirtError:
            self._refused = now
            return
        self._conn = conn
        self._connections += 1

    @property
    def generation(self) -> int:
        """How many connections were opened: moves when a daemon is found after the source was
        made (its ``vm.*`` metrics appear). Without a connection, looks for the daemon (at
        most once per :data:`RETRY_EVERY` seconds: one listing of the socket directory)."""
        if self._conn is None and clock() - self._looked >= RETRY_EVERY:
            self._connect()
        return self._connections

    @property
    def connection(self) -> Any:
        """The libvirt connection (None without one)."""
        return self._conn

    def metrics(self) -> list[Metric]:
        """The ``vm.*`` metrics once a connection was ever opened (none before)."""
        return list(METRICS) if self._connections else []

    def begin_tick(self, now: float) -> None:
        self._rows.clear()
        self._domains = None

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    def collect(self, metric: str) -> Rows:
        rows = self._rows.get(metric)
        if rows is None:
            if metric not in COLUMNS:
                raise NotFound("metric", f"libvirt source has no metric {metric!r}")
            if self._conn is None:
                raise ConnectionError("no connection to libvirt (its daemon stopped?): looking for it")
            rows = self._rows[metric] = Rows(COLUMNS[metric], self._build(metric))
        return rows

    # --- reading ---------------------------------------------------------------------------

    def _list(self) -> list:
        if self._domains is None:
            self.reads["list"] += 1
            try:
                self._domains = self._conn.listAllDomains()
            except _module().libvirtError:
                self.close()  # the daemon stopped: look for it again (see generation)
                raise
        return self._domains

    def _devs(self, dom) -> tuple[list[str], list[str]]:
        uuid = dom.UUIDString()
        got = self._devices.get(uuid)
        if got is None:
            got = self._devices[uuid] = devices(dom.XMLDesc(0))
        return got

    def _read(self, metric: str) -> dict[tuple, float]:
        """Counters (or levels) by row labels, for every domain that answers."""
        out: dict[tuple, float] = {}
        hv = self.hypervisor
        for dom in self._list():
            try:
                name = dom.name()
                state = dom.state()[0]
                if metric == "vm.state":
                    label = STATES[state] if 0 <= state < len(STATES) else "nostate"
                    out[(name, hv, label)] = 1
                    continue
                if not dom.isActive():
                    continue
                if metric == "vm.cpu":
                    for num, _, ns, _ in dom.vcpus()[0]:
                        out[(name, hv, str(num))] = ns
                elif metric == "vm.memory":
                    info = dom.info()
                    out[(name, hv, "balloon_maximum")] = info[1] * 1024
                    out[(name, hv, "balloon_current")] = info[2] * 1024
                    rss = dom.memoryStats().get("rss")
                    if rss is not None:
                        out[(name, hv, "rss")] = rss * 1024
                elif metric in ("vm.disk", "vm.disk_ops"):
                    for dev in self._devs(dom)[0]:
                        rd_req, rd_bytes, wr_req, wr_bytes, _ = dom.blockStats(dev)
                        r, w = (rd_bytes, wr_bytes) if metric == "vm.disk" else (rd_req, wr_req)
                        out[(name, hv, dev, "read")] = r
                        out[(name, hv, dev, "write")] = w
                else:  # vm.net, vm.net_packets
                    for nic in self._devs(dom)[1]:
                        s = dom.interfaceStats(nic)
                        i, o = (s[0], s[4]) if metric == "vm.net" else (s[1], s[5])
                        out[(name, hv, nic, "in")] = i
                        out[(name, hv, nic, "out")] = o
            except _module().libvirtError:
                continue  # the domain went away or cannot say: leave it out of this tick
        return out

    def _build(self, metric: str) -> list[tuple]:
        now = clock()
        cur = self._read(metric)
        if metric in ("vm.state", "vm.memory"):
            return [(*k, v) for k, v in cur.items()]
        prev = self._prev.get(metric)
        self._prev[metric] = (now, cur)
        if prev is None or not 0 < now - prev[0] <= MAX_GAP:
            return []
        elapsed = tick_length(now - prev[0])
        rows = []
        for k, v in cur.items():
            was = prev[1].get(k)
            if was is None or v < was:
                continue
            rate = (v - was) / elapsed
            if metric == "vm.cpu":
                rate *= 1e-9
                rows.append((*k, 100.0 * rate, rate))
            else:
                rows.append((*k, rate))
        return rows
