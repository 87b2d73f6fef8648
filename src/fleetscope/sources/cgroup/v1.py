"""cgroup v1 readers: one figure of one cgroup each, from the files of its controller.

See ``Documentation/admin-guide/cgroup-v1/`` in the kernel (``cpuacct.rst``,
``memory.rst``, ``blkio-controller.rst``, ``pids.rst``). CPU time is in ns.
"""

from __future__ import annotations

from fleetscope.sources.cgroup.files import Read, find_number, keyed
from fleetscope.sources.container_cpu import ContainerCpu
from fleetscope.sources.containers import Container

UNLIMITED = 1 << 62  # v1 reports "no limit" as a page-rounded LONG_MAX


def parse_blkio(data: bytes) -> dict[tuple[str, str], int]:
    """v1 ``blkio.throttle.io_service*``: ``{(maj:min, read|write): n}``."""
    out = {}
    for line in data.split(b"\n"):
        p = line.split()  # maj:min, operation, count
        if len(p) == 3 and p[1] in (b"Read", b"Write"):
            out[(p[0].decode(), p[1].decode().lower())] = int(p[2])
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


def cpu_modes(c: Container, data: bytes) -> ContainerCpu:
    """A container's CPU time by mode and CPU from its ``cpuacct.usage_all``."""
    percpu = parse_usage_all(data)
    return ContainerCpu(c, sum(v[0] for v in percpu.values()), sum(v[1] for v in percpu.values()),
                        percpu)


def cpu(read: Read, d: str) -> int:
    return int(read(d + "/cpuacct.usage"))  # ns


def throttled(read: Read, d: str) -> int:
    return keyed(read(d + "/cpu.stat")).get("throttled_time", 0)


def memory(read: Read, d: str) -> dict[str, int]:
    # Look up three keys rather than parse the ~70 lines (the parse cost most of the read).
    # The total_* lines (hierarchical) come last, total_cache first among them.
    s = read(d + "/memory.stat")
    start = max(0, s.find(b"\ntotal_cache "))
    out = {"rss": find_number(s, b"\ntotal_rss ", start) or 0,
           "cache": find_number(s, b"\ntotal_cache ", start) or 0}
    swap = find_number(s, b"\ntotal_swap ", start)
    if swap is not None:  # only with swap accounting (memsw)
        out["swap"] = swap
    return out


def memory_usage(read: Read, d: str) -> bytes:
    """``memory.usage_in_bytes`` as it is: a fifth of the cost of :func:`memory`, so a caller
    can tell whether ``memory.stat`` is worth reading again."""
    return read(d + "/memory.usage_in_bytes")


def limit(read: Read, d: str) -> int | None:
    v = int(read(d + "/memory.limit_in_bytes"))
    return None if v >= UNLIMITED else v


def io(read: Read, d: str) -> dict:
    return parse_blkio(read(d + "/blkio.throttle.io_service_bytes_recursive"))


def io_ops(read: Read, d: str) -> dict:
    return parse_blkio(read(d + "/blkio.throttle.io_serviced_recursive"))


def throttled_periods(read: Read, d: str) -> int:
    return keyed(read(d + "/cpu.stat")).get("nr_throttled", 0)


def oom_kills(read: Read, d: str) -> int:
    """Processes the OOM killer killed in the cgroup (``memory.oom_control`` oom_kill, kernel
    4.13 and later)."""
    n = find_number(b"\n" + read(d + "/memory.oom_control"), b"\noom_kill ")
    if n is None:
        raise ValueError("no oom_kill in memory.oom_control (kernel before 4.13)")
    return n
