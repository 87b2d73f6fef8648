"""Container metrics from control groups, on cgroup v1, cgroup v2, or both side by side.

One source (:class:`CgroupSource`), one module per concern:

* ``hierarchy.py``: the mounted hierarchies (``/proc/self/mounts``);
* ``walk.py``: which cgroups are containers (walking each hierarchy, noticing
  when to walk again); the names come from ``sources/containers.py``;
* ``files.py``: cgroup files kept open and re-read with ``pread``, and the
  parsers both versions share;
* ``v1.py`` and ``v2.py``: the readers of each figure, per cgroup version;
* ``source.py``: the metrics, which reader serves each, the rates, and the
  containers' CPU time by mode for the host source's ``cpu.usage``.

Every metric takes a container's figure from the first hierarchy that has the
container's cgroup and the controller the figure needs, v1 first:

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

Memory limits of "unlimited" give no row. ``container.pressure`` is the
kernel's 10-second average of the share of time some (or all) tasks of the
cgroup stalled on the resource, in percent (cgroup v2 only, when the kernel has
PSI). Each file is read once per tick, only for metrics being collected.
"""

from fleetscope.sources.cgroup.hierarchy import Hierarchy, find_hierarchies
from fleetscope.sources.cgroup.source import COLUMNS, METRICS, CgroupSource

__all__ = ["COLUMNS", "METRICS", "CgroupSource", "Hierarchy", "find_hierarchies"]
