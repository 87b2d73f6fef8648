"""The sources an agent runs on its own host, and the catalogue of their metrics."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from fleetscope.model.metrics import Catalog
from fleetscope.sources.base import Source
from fleetscope.sources.cgroup import CgroupSource
from fleetscope.sources.host import HostSource
from fleetscope.sources.proc import ProcSource
from fleetscope.sources.runtimes import Names
from fleetscope.sources.virt import LibvirtSource


def local_sources(container_labels: Sequence[str] = ()) -> list[Source]:
    """A fresh instance of every source that reads this host: host counters, processes,
    containers (cgroups) and virtual machines (libvirt, when a daemon runs).

    The host source splits ``cpu.usage`` by container with the cgroup source's reading, so
    that both share one discovery of the containers and one read of each file per tick; the
    process and cgroup sources share one :class:`Names` (each container's runtime state is
    read once), which makes a field of each of ``container_labels``."""
    names = Names(container_labels)
    cgroups = CgroupSource(names=names)
    return [HostSource(cpu_by_container=cgroups.cpu_by_container), ProcSource(names=names), cgroups,
            LibvirtSource()]


def catalog(sources: Iterable[Source]) -> Catalog:
    """The metrics of ``sources`` by name (a later source's metric replaces an earlier one's)."""
    return Catalog(m for s in sources for m in s.metrics())
