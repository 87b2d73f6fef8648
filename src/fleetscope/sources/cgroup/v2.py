"""cgroup v2 readers: one figure of one cgroup each, from the unified hierarchy's files.

See ``Documentation/admin-guide/cgroup-v2.rst`` in the kernel (``cpu.stat``,
``memory.stat``, ``io.stat``, PSI in ``Documentation/accounting/psi.rst``).
CPU time is given in µs and returned in ns, as v1 gives it.
"""

from __future__ import annotations

import contextlib

from fleetscope.sources.cgroup.files import Read, find_number, keyed
from fleetscope.sources.container_cpu import ContainerCpu
from fleetscope.sources.containers import Container

NS_PER_USEC = 1000
PRESSURE_RESOURCES = ("cpu", "memory", "io")
PSI_AVG10 = b"avg10="  # the field of a PSI line read: the 10-second average
PSI_TOTAL = b"total="  # the stall time since the cgroup was made, in µs


def parse_io_stat(data: bytes, key_read: str, key_write: str) -> dict[tuple[str, str], int]:
    """v2 ``io.stat``: ``{(maj:min, read|write): n}`` for the two keys given (rbytes/wbytes...)."""
    out = {}
    for line in data.split(b"\n"):
        p = line.split()  # maj:min, then key=value pairs
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


def parse_pressure(data: bytes) -> dict[str, float]:
    """A PSI file: ``{"some": avg10, "full": avg10}`` (percent)."""
    out = {}
    for line in data.split(b"\n"):
        p = line.split()  # some|full, avg10=, avg60=, avg300=, total=
        if len(p) >= 2 and p[1].startswith(PSI_AVG10):
            out[p[0].decode()] = float(p[1][len(PSI_AVG10):])
    return out


def parse_pressure_totals(data: bytes) -> dict[str, int]:
    """A PSI file: ``{"some": total, "full": total}`` (µs stalled since the cgroup was made)."""
    out = {}
    for line in data.split(b"\n"):
        p = line.split()
        if p and p[-1].startswith(PSI_TOTAL):
            out[p[0].decode()] = int(p[-1][len(PSI_TOTAL):])
    return out


def cpu_modes(c: Container, data: bytes) -> ContainerCpu:
    """A container's CPU time by mode from its ``cpu.stat`` (no per-CPU split in v2)."""
    data = b"\n" + data
    user, system = find_number(data, b"\nuser_usec "), find_number(data, b"\nsystem_usec ")
    if user is None or system is None:
        raise ValueError("no user_usec or system_usec in cpu.stat")
    return ContainerCpu(c, user * NS_PER_USEC, system * NS_PER_USEC)


def cpu(read: Read, d: str) -> int:
    usec = find_number(b"\n" + read(d + "/cpu.stat"), b"\nusage_usec ")
    if usec is None:
        raise ValueError("no usage_usec in cpu.stat")
    return usec * NS_PER_USEC


def throttled(read: Read, d: str) -> int:
    return keyed(read(d + "/cpu.stat")).get("throttled_usec", 0) * NS_PER_USEC


def memory(read: Read, d: str) -> dict[str, int]:
    s = keyed(read(d + "/memory.stat"))
    out = {"rss": s.get("anon", 0), "cache": s.get("file", 0)}
    with contextlib.suppress(OSError):
        out["swap"] = int(read(d + "/memory.swap.current"))
    return out


def limit(read: Read, d: str) -> int | None:
    s = read(d + "/memory.max").strip()
    return None if s == b"max" else int(s)


def io(read: Read, d: str) -> dict:
    return parse_io_stat(read(d + "/io.stat"), "rbytes", "wbytes")


def io_ops(read: Read, d: str) -> dict:
    return parse_io_stat(read(d + "/io.stat"), "rios", "wios")


def pressure(read: Read, d: str) -> dict[tuple[str, str], float]:
    out = {}
    for res in PRESSURE_RESOURCES:
        try:
            got = parse_pressure(read(f"{d}/{res}.pressure"))
        except OSError:  # no PSI for this resource (or the kernel has none)
            continue
        for kind, v in got.items():
            out[(res, kind)] = v
    return out


def stall(read: Read, d: str) -> dict[tuple[str, str], int]:
    """Stall time by (resource, some|full), in ns (PSI ``total=``, given in µs)."""
    out = {}
    for res in PRESSURE_RESOURCES:
        try:
            got = parse_pressure_totals(read(f"{d}/{res}.pressure"))
        except OSError:
            continue
        for kind, v in got.items():
            out[(res, kind)] = v * NS_PER_USEC
    return out


def throttled_periods(read: Read, d: str) -> int:
    return keyed(read(d + "/cpu.stat")).get("nr_throttled", 0)


def oom_kills(read: Read, d: str) -> int:
    """Processes the OOM killer killed in the cgroup and below (``memory.events`` oom_kill)."""
    n = find_number(b"\n" + read(d + "/memory.events"), b"\noom_kill ")
    if n is None:
        raise ValueError("no oom_kill in memory.events")
    return n
