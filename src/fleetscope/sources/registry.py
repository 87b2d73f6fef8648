"""The sources an agent runs on its own host, and the catalogue of their metrics."""

from __future__ import annotations

from collections.abc import Iterable

from fleetscope.model.metrics import Catalog
from fleetscope.sources.base import Source
from fleetscope.sources.cgroup import CgroupSource
from fleetscope.sources.host import HostSource
from fleetscope.sources.proc import ProcSource
from fleetscope.sources.virt import LibvirtSource


def local_sources() -> list[Source]:
    """A fresh instance of every source that reads this host: host counters, processes,
    containers (cgroups) and virtual machines (libvirt, when a daemon runs)."""
    return [HostSource(), ProcSource(), CgroupSource(), LibvirtSource()]


def catalog(sources: Iterable[Source]) -> Catalog:
    """The metrics of ``sources`` by name (a later source's metric replaces an earlier one's)."""
    return Catalog(m for s in sources for m in s.metrics())
