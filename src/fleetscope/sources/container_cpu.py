"""CPU time by container: what a reader of the containers' CPU time gives (:class:`ContainerCpu`),
and how each CPU's time per mode is split between the containers and the host itself.

The host source's ``cpu.usage`` by container uses :func:`split_by_container`
(see ``sources/host.py`` for the rules); the cgroup source reads the
containers' CPU time (``sources/cgroup/``). The kernel gives a container's
time in two parts: user (user, nice, guest and guest_nice time) and system
(system, irq and softirq time); idle, iowait and steal time is always the
host's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import NamedTuple

from fleetscope.sources.containers import Container

CPU_MODES = (
    "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal", "guest", "guest_nice",
)
# Positions in CPU_MODES of the modes the kernel counts as a cgroup's user time and as its
# system time (cgroup v1 cpuacct.usage_all and cgroup v2 cpu.stat alike); the other modes
# (idle, iowait, steal) are never a cgroup's.
USER_MODES = (0, 1, 8, 9)  # user, nice, guest, guest_nice
SYSTEM_MODES = (2, 5, 6)  # system, irq, softirq
SECONDS_PER_NS = 1e-9  # ContainerCpu figures and cgroup CPU counters are in ns


class ContainerCpu(NamedTuple):
    """CPU time one container used since it was made, in ns, in the two parts the kernel keeps:
    ``user`` (user, nice and guest time) and ``system`` (system, irq and softirq time).
    ``percpu`` gives the same per CPU (``{"0": (user, system)}``) where the kernel has it
    (cgroup v1 ``cpuacct.usage_all``), else None (cgroup v2 ``cpu.stat``)."""

    container: Container
    user: int
    system: int
    percpu: dict[str, tuple[int, int]] | None = None


# Given the tick's wall-clock time, every container's CPU time by any key (containers must
# not overlap: a cgroup and a cgroup inside it would count the same time twice).
ContainerCpuReader = Callable[[float], Mapping[object, ContainerCpu]]


def container_seconds(cur: Mapping, old: Mapping, elapsed: float) -> tuple[dict, dict, dict]:
    """Each container's seconds per second between two readings: (container by key,
    {key: {cpu: (user, system)}} where the kernel splits by CPU, {key: (user, system)} where not).
    Idle containers, new ones and counters that went backwards (a cgroup re-made) are left out."""
    scale = SECONDS_PER_NS / elapsed
    names, percpu, spread = {}, {}, {}
    for key, c in cur.items():
        o = old.get(key)
        # The reader hands back the same object for an unchanged file: an idle container.
        if o is None or o is c or c.user < o.user or c.system < o.system or \
                (c.user == o.user and c.system == o.system):
            continue
        names[key] = c.container
        if c.percpu is not None and o.percpu is not None:
            per = {}
            for cpu, (u, s) in c.percpu.items():
                p = o.percpu.get(cpu)
                if p is not None and (u > p[0] or s > p[1]):
                    per[cpu] = (max(0, u - p[0]) * scale, max(0, s - p[1]) * scale)
            percpu[key] = per
        else:
            spread[key] = ((c.user - o.user) * scale, (c.system - o.system) * scale)
    return names, percpu, spread


def split_by_container(
    host: dict[str, list[float]],
    percpu: Mapping[object, Mapping[str, tuple[float, float]]],
    spread: Mapping[object, tuple[float, float]],
) -> tuple[dict[object, dict[str, list[float]]], dict[str, list[float]]]:
    """Split each CPU's time between containers and the host.

    ``host``: {cpu: seconds per mode, in CPU_MODES order}, the whole CPU's time. ``percpu``:
    {container: {cpu: (user, system)}}; ``spread``: {container: (user, system)} for containers
    whose kernel gives no per-CPU figures. Returns ({container: {cpu: seconds per mode}}, the
    host's remainder {cpu: seconds per mode}); for every (cpu, mode) the containers' and the
    host's figures add up to ``host``'s (within float rounding), and none is negative.

    Per-CPU figures are capped at the CPU's time in that part (user or system). Containers
    without per-CPU figures then share what the others left on each CPU, in proportion to it
    (capped likewise). Within a part, a container's time goes to the modes of the part in
    proportion to the CPU's time in each: the kernel does not say which.
    """
    out: dict[object, dict[str, list[float]]] = {}
    rest = {cpu: list(d) for cpu, d in host.items()}
    for part, modes in enumerate((USER_MODES, SYSTEM_MODES)):
        total = {cpu: sum(d[i] for i in modes) for cpu, d in host.items()}
        given = _allocate(total, {k: {cpu: v[part] for cpu, v in per.items()} for k, per in percpu.items()},
                          {k: v[part] for k, v in spread.items()})
        used = dict.fromkeys(total, 0.0)
        for key, per_cpu in given.items():
            mine = out.setdefault(key, {})
            for cpu, v in per_cpu.items():
                used[cpu] += v
                row = mine.setdefault(cpu, [0.0] * len(CPU_MODES))
                t = total[cpu]
                for i in modes:
                    row[i] = v * host[cpu][i] / t
        for cpu, t in total.items():
            if used[cpu] > 0:
                left = max(0.0, 1.0 - used[cpu] / t)
                for i in modes:
                    rest[cpu][i] = host[cpu][i] * left
    return out, rest


def _allocate(total: dict[str, float], percpu: dict[object, dict[str, float]],
              spread: dict[object, float]) -> dict[object, dict[str, float]]:
    """One part's (user or system) seconds per container and CPU, capped so that no CPU gives
    more than its ``total``: see :func:`split_by_container`."""
    claimed = dict.fromkeys(total, 0.0)
    for per in percpu.values():
        for cpu, v in per.items():
            if cpu in claimed:
                claimed[cpu] += v
    # Where the containers claim more than the CPU had (reads a moment apart), scale them down.
    factor = {cpu: min(1.0, total[cpu] / c) if c > 0 else 1.0 for cpu, c in claimed.items()}
    out: dict[object, dict[str, float]] = {}
    for k, per in percpu.items():
        mine = {cpu: v * factor[cpu] for cpu, v in per.items() if cpu in factor}
        out[k] = {cpu: v for cpu, v in mine.items() if v > 0}
    free = {cpu: max(0.0, total[cpu] - claimed[cpu] * factor[cpu]) for cpu in total}
    free_sum = sum(free.values())
    wanted = sum(spread.values())
    if wanted > 0 and free_sum > 0:
        scale = min(1.0, free_sum / wanted) / free_sum
        for k, v in spread.items():
            if v > 0:
                mine = out.setdefault(k, {})
                for cpu, f in free.items():
                    if f > 0:
                        mine[cpu] = mine.get(cpu, 0.0) + v * scale * f
    return out
