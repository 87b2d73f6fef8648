"""The mounted cgroup hierarchies, from ``/proc/self/mounts``.

Each v1 mount names its controllers in its mount options (``cpu``, ``cpuacct``,
``memory``, ``blkio``, ``pids``...); the v2 mount lists them in its
``cgroup.controllers``. A hybrid host (v1 controllers with a v2 mount beside
them, as systemd sets up) has both.
"""

from __future__ import annotations

from typing import NamedTuple

from fleetscope.sources.procfs import read_file

# Mount options of a v1 cgroup mount that are not controllers (besides the key=value ones).
NOT_CONTROLLERS = frozenset({"rw", "ro", "relatime", "nosuid", "nodev", "noexec", "clone_children"})


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
        p = line.split()  # device, mount point, type, options...
        if len(p) < 4 or p[1] in seen:
            continue
        mount = p[1].replace("\\040", " ")
        if p[2] == "cgroup":
            ctrls = frozenset(o for o in p[3].split(",") if "=" not in o and o not in NOT_CONTROLLERS)
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
