"""A container's network traffic, from the network namespace its processes live in.

cgroups do not count network traffic; a container's network namespace does:
``/proc/<pid>/net/dev`` of any process inside it lists the namespace's
interfaces (see ``proc(5)``). For each container, one of its processes is found
in its cgroup's ``cgroup.procs`` (or, for a container whose top cgroup holds no
process, such as a libvirt machine, in its sub-cgroups) and kept while it lives;
its namespace is ``/proc/<pid>/ns/net`` (one ``readlink`` per container and
tick). Each namespace is read once per tick and counted once: containers that
share one (a Kubernetes pod's, a podman pod's) get its traffic on the first of
them in cgroup path order, and a container in the host's namespace
(``--network host``) gets none (its traffic is the host's ``net.*``).
"""

from __future__ import annotations

import os

from fleetscope.sources.procfs import read_file

MAX_DEPTH = 4  # sub-cgroups searched for a process below a container's own cgroup
# /proc/<pid>/net/dev columns after "iface:" (receive then transmit): bytes, packets at 0, 1, 8, 9
RX_BYTES, RX_PACKETS, TX_BYTES, TX_PACKETS = 0, 1, 8, 9


def parse_netdev(data: bytes) -> dict[tuple[str, str], tuple[int, int]]:
    """``/proc/<pid>/net/dev``: {(interface, in|out): (bytes, packets)}."""
    out = {}
    for line in data.split(b"\n")[2:]:
        name, sep, rest = line.partition(b":")
        if not sep:
            continue
        v = rest.split()
        nic = name.strip().decode()
        out[(nic, "in")] = (int(v[RX_BYTES]), int(v[RX_PACKETS]))
        out[(nic, "out")] = (int(v[TX_BYTES]), int(v[TX_PACKETS]))
    return out


class NetNamespaces:
    """Traffic per container, each network namespace read once per tick.

    :meth:`traffic` is a cgroup reader (``read``, cgroup directory); call :meth:`begin_tick`
    first at each tick. ``reads`` counts ``net/dev`` reads (``netdev``) and process look-ups
    (``procs``)."""

    def __init__(self, procfs: str, reads) -> None:
        self.procfs = procfs
        self.reads = reads
        try:
            self.host = os.readlink(f"{procfs}/1/ns/net")
        except OSError:
            self.host = ""
        self._pids: dict[str, str] = {}  # cgroup directory -> pid of a process in it
        self._seen: set[str] = set()  # namespaces counted at this tick

    def begin_tick(self) -> None:
        self._seen.clear()

    def forget(self, keep: set[str]) -> None:
        """Let go of the processes of containers gone (directories not in ``keep``)."""
        for d in [d for d in self._pids if d not in keep]:
            del self._pids[d]

    def traffic(self, read, d: str) -> dict[tuple[str, str], tuple[int, int]]:
        """The traffic of the namespace of cgroup ``d``'s processes; {} where another container
        counted it at this tick, or it is the host's, or the cgroup has no process."""
        ns = None
        pid = self._pids.get(d)
        if pid is not None:
            try:
                ns = os.readlink(f"{self.procfs}/{pid}/ns/net")
            except OSError:  # exited: find another
                del self._pids[d]
                pid = None
        if pid is None:
            self.reads["procs"] += 1
            pid = _a_process(d, 0)
            if pid is None:
                return {}
            try:
                ns = os.readlink(f"{self.procfs}/{pid}/ns/net")
            except OSError:
                return {}
            self._pids[d] = pid
        if ns == self.host or ns in self._seen:
            return {}
        self._seen.add(ns)
        self.reads["netdev"] += 1
        try:
            return parse_netdev(read_file(f"{self.procfs}/{pid}/net/dev"))
        except OSError:
            return {}


def _a_process(d: str, depth: int) -> str | None:
    """The pid of a process in cgroup ``d`` or below (None if none)."""
    try:
        data = read_file(d + "/cgroup.procs")
    except FileNotFoundError:
        raise
    except OSError:
        return None
    first = data.split(b"\n", 1)[0].strip()
    if first:
        return first.decode()
    if depth >= MAX_DEPTH:
        return None
    try:
        subs = sorted(e.path for e in os.scandir(d) if e.is_dir(follow_symlinks=False))
    except OSError:
        return None
    for sub in subs:
        got = _a_process(sub, depth + 1)
        if got is not None:
            return got
    return None
