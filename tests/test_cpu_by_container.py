"""``cpu.usage`` by container: the host's CPU time split between its containers and itself.

The split arithmetic is checked on numbers; the rest against real cgroups made here (as root)
in the v1 ``cpuacct`` hierarchy and in the v2 mount, with a real busy loop moved into them,
through the host source and through a real ``fleetscope serve``.
"""

from __future__ import annotations

import os
import random
import subprocess
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fleetscope.sources.cgroup import CgroupSource
from fleetscope.sources.cgroup.v1 import parse_usage_all
from fleetscope.sources.container_cpu import CPU_MODES, split_by_container
from fleetscope.sources.host import METRICS, HostSource, read_cpu_times
from fleetscope.sources.procfs import clock
from tests import test_cgroup
from tests.conftest import Server, wait_for
from tests.test_cgroup import BURN, CLK, V1, V2, Cgroup, needs_root, proc_cpu, remove_dirs

# test_cgroup.py's fixtures: cgroups made in given hierarchies and removed at the end; the check
# that this runs as root with both hierarchies.
cgroups = test_cgroup.cgroups
_root_and_cgroups = test_cgroup._root_and_cgroups

API = "/api/v1"
MODE = {m: i for i, m in enumerate(CPU_MODES)}
# A container's CPU time against its process's own over the same interval (as test_cgroup.py).
REL, ABS = 0.1, 0.03

# --- the split, on numbers ---------------------------------------------------------------------


def modes(**kw: float) -> list[float]:
    return [kw.get(m, 0.0) for m in CPU_MODES]


def add_up(shares: dict, rest: dict) -> dict[str, list[float]]:
    total = {cpu: list(v) for cpu, v in rest.items()}
    for per_cpu in shares.values():
        for cpu, v in per_cpu.items():
            total[cpu] = [a + b for a, b in zip(total[cpu], v, strict=True)]
    return total


def test_metric_has_container_and_runtime() -> None:
    usage = next(m for m in METRICS if m.name == "cpu.usage")
    assert [f.name for f in usage.fields] == ["hostname", "cpu", "mode", "container", "runtime"]
    assert all(f.kind == "discrete" for f in usage.fields)


def test_split_per_cpu_goes_to_modes_in_proportion() -> None:
    host = {"0": modes(user=0.6, nice=0.2, system=0.1, softirq=0.1, idle=0.0)}
    shares, rest = split_by_container(host, {"a": {"0": (0.4, 0.05)}}, {})
    a = shares["a"]["0"]
    assert a[MODE["user"]] == pytest.approx(0.3) and a[MODE["nice"]] == pytest.approx(0.1)
    assert a[MODE["system"]] == pytest.approx(0.025) and a[MODE["softirq"]] == pytest.approx(0.025)
    assert rest["0"] == pytest.approx(modes(user=0.3, nice=0.1, system=0.075, softirq=0.075))
    assert add_up(shares, rest)["0"] == pytest.approx(host["0"], abs=1e-12)


def test_split_caps_containers_at_the_cpus_time() -> None:
    # Files read a moment apart: the containers claim more than /proc/stat counted.
    host = {"0": modes(user=0.8, idle=0.2), "1": modes(user=0.5, system=0.5)}
    shares, rest = split_by_container(host, {"a": {"0": (0.6, 0.0)}, "b": {"0": (0.6, 0.1)}}, {})
    assert shares["a"]["0"][MODE["user"]] == pytest.approx(0.4)
    assert shares["b"]["0"][MODE["user"]] == pytest.approx(0.4)
    assert rest["0"] == pytest.approx(modes(idle=0.2))  # no user left, never negative
    assert all(v >= 0 for v in rest["0"])
    assert rest["1"] == host["1"]  # untouched
    for cpu, v in add_up(shares, rest).items():
        assert v == pytest.approx(host[cpu], abs=1e-12)


def test_split_spreads_containers_without_per_cpu_figures_over_what_is_left() -> None:
    host = {"0": modes(user=1.0), "1": modes(user=0.5, idle=0.5)}
    shares, rest = split_by_container(host, {"v1": {"0": (0.9, 0.0)}}, {"v2": (0.3, 0.0)})
    # 0.1 left on CPU 0 and 0.5 on CPU 1: v2 takes a sixth of its time on CPU 0.
    assert shares["v2"]["0"][MODE["user"]] == pytest.approx(0.05)
    assert shares["v2"]["1"][MODE["user"]] == pytest.approx(0.25)
    assert rest["0"][MODE["user"]] == pytest.approx(0.05)
    assert rest["1"] == pytest.approx(modes(user=0.25, idle=0.5))
    # more than is left: capped
    shares, rest = split_by_container(host, {"v1": {"0": (0.9, 0.0)}}, {"v2": (5.0, 1.0)})
    assert sum(v[MODE["user"]] for v in shares["v2"].values()) == pytest.approx(0.6)
    assert rest["0"][MODE["user"]] == pytest.approx(0) and rest["1"][MODE["user"]] == pytest.approx(0)


def test_split_with_idle_cpus_and_unknown_cpus() -> None:
    host = {"0": modes(idle=1.0)}
    shares, rest = split_by_container(host, {"a": {"0": (0.2, 0.1), "7": (0.5, 0.0)}}, {"b": (0.3, 0.3)})
    assert not any(v for per in shares.values() for row in per.values() for v in row)
    assert rest == host


def test_split_adds_up_exactly_whatever_the_figures() -> None:
    rnd = random.Random(6)
    for _ in range(300):
        cpus = [str(i) for i in range(rnd.randint(1, 4))]
        host = {c: [rnd.choice([0.0, rnd.random()]) for _ in CPU_MODES] for c in cpus}
        percpu = {f"p{i}": {c: (rnd.random() * rnd.choice([0, 0.5, 2]), rnd.random() * 0.3)
                            for c in rnd.sample(cpus, rnd.randint(1, len(cpus)))}
                  for i in range(rnd.randint(0, 5))}
        spread = {f"s{i}": (rnd.random() * 2, rnd.random()) for i in range(rnd.randint(0, 3))}
        shares, rest = split_by_container(host, percpu, spread)
        for cpu, v in add_up(shares, rest).items():
            assert v == pytest.approx(host[cpu], rel=1e-9, abs=1e-12)
        assert all(v >= 0 for per in [rest, *shares.values()] for row in per.values() for v in row)


def test_parse_usage_all() -> None:
    data = b"cpu user system\n0 32705507893 7414889968\n1 36860445658 7867014858\n"
    assert parse_usage_all(data) == {"0": (32705507893, 7414889968), "1": (36860445658, 7867014858)}
    assert parse_usage_all(b"cpu user system\n") == {}


@needs_root
def test_root_cpuacct_counts_the_same_ticks_as_proc_stat() -> None:
    """The premise of the split: a v1 cgroup's per-CPU user and system time is counted by the
    same scheduler ticks as /proc/stat (user + nice; system + irq + softirq)."""
    usage = parse_usage_all(Path(V1["cpuacct"].mount, "cpuacct.usage_all").read_bytes())
    stat = read_cpu_times()
    for cpu, (user, system) in usage.items():
        s = stat[cpu]
        assert user / 1e9 == pytest.approx((s.user + s.nice) / CLK, abs=0.1)
        assert system / 1e9 == pytest.approx((s.system + s.irq + s.softirq) / CLK, abs=0.1)


# --- real cgroups, through the host source -----------------------------------------------------


class Measured:
    """cpu.usage rows of one interval, /proc/stat read just before and after each collection,
    and the burner's own CPU seconds per second over the interval."""

    def __init__(self, src: HostSource, pid: int, seconds: float = 1.5) -> None:
        src.begin_tick(0.0)
        self.before0 = (clock(), read_cpu_times())
        src.collect("cpu.usage")  # the baseline of the rates
        self.after0 = (clock(), read_cpu_times())
        c0, t0 = proc_cpu(pid), time.monotonic()
        time.sleep(seconds)
        src.begin_tick(1.0)
        self.before1 = (clock(), read_cpu_times())
        self.rows = src.collect("cpu.usage").rows
        self.after1 = (clock(), read_cpu_times())
        # Divide by the time that really passed: on a loaded host a sleep overshoots.
        self.burner = (proc_cpu(pid) - c0) / (time.monotonic() - t0)

    def by_container(self) -> dict[str, float]:
        out: dict[str, float] = defaultdict(float)
        for _, _, container, _, v in self.rows:
            out[container] += v
        return out

    def total(self, container: str | None = None) -> dict[tuple[str, str], float]:
        out: dict[tuple[str, str], float] = defaultdict(float)
        for cpu, mode, c, _, v in self.rows:
            if container is None or c == container:
                out[(cpu, mode)] += v
        return out

    def assert_adds_up_to_proc_stat(self) -> None:
        """Every (cpu, mode) adds up, over containers and host, to what /proc/stat counted in
        the interval: between the counts of the reads just inside and just outside it."""
        total = self.total()
        shortest = self.before1[0] - self.after0[0]
        longest = self.after1[0] - self.before0[0]
        for cpu in self.before1[1]:
            inner = _seconds(self.before1[1][cpu], self.after0[1][cpu])
            outer = _seconds(self.after1[1][cpu], self.before0[1][cpu])
            for i, mode in enumerate(CPU_MODES):
                got = total[(cpu, mode)]
                assert max(0.0, inner[i]) / longest - 1e-9 <= got <= outer[i] / shortest + 1e-9, \
                    (cpu, mode, got, inner[i], outer[i])

    def assert_host_is_the_remainder(self) -> None:
        host = self.total("/")
        assert host and all(v >= 0 for v in host.values())
        for key, v in self.total().items():
            containers = v - host[key]
            assert containers >= -1e-9
            if key[1] in ("idle", "iowait", "steal"):  # never a container's
                assert containers == pytest.approx(0, abs=1e-9)


def _seconds(cur: tuple, old: tuple) -> list[float]:
    d = [a - b for a, b in zip(cur, old, strict=True)]
    d[0] -= d[8]  # guest time is inside user time
    d[1] -= d[9]
    return [v / CLK for v in d]


def assert_burner(m: Measured, name: str) -> None:
    mine = m.total(name)
    got = sum(mine.values())
    assert m.burner > 0.2
    assert got == pytest.approx(m.burner, rel=REL, abs=ABS)
    # A busy loop in Python runs in user mode (system holds the timer interrupts that hit it).
    user = sum(v for (_, mode), v in mine.items() if mode in ("user", "nice", "guest", "guest_nice"))
    assert user >= 0.8 * got
    assert {mode for _, mode in mine} <= {"user", "nice", "guest", "guest_nice", "system", "irq", "softirq"}


def split_source() -> HostSource:
    return HostSource(cpu_by_container=CgroupSource(rescan_every=0).cpu_by_container)


@needs_root
def test_v1_container_gets_its_cpu_time_and_the_host_the_rest(cgroups) -> None:
    cg, p = cgroups([V1["cpuacct"].mount, V1["cpu"].mount], BURN)
    time.sleep(0.3)
    m = Measured(split_source(), p.pid)
    assert_burner(m, cg.path)
    assert {r[3] for r in m.rows if r[2] == cg.path} == {"cgroup"}
    assert {r[3] for r in m.rows if r[2] == "/"} == {"host"}
    m.assert_host_is_the_remainder()
    m.assert_adds_up_to_proc_stat()
    # and over everything: the host's CPUs' time, about one CPU second per second each
    ncpus = len(m.before1[1])
    assert sum(m.total().values()) == pytest.approx(ncpus, abs=0.1 * ncpus)


@needs_root
def test_v2_container_gets_its_cpu_time(cgroups) -> None:
    cg, p = cgroups([V2.mount], BURN)
    time.sleep(0.3)
    m = Measured(split_source(), p.pid)
    assert_burner(m, cg.path)
    m.assert_host_is_the_remainder()
    m.assert_adds_up_to_proc_stat()


@pytest.fixture
def nested() -> Iterator[subprocess.Popen]:
    """A cgroup ``/N`` in the v1 cpuacct hierarchy and ``/N/inner`` in the v2 mount, one
    process in both: the same CPU time seen by two hierarchies."""
    name = f"fleetscope-test-{os.getpid()}-nested"
    v1, v2 = Path(V1["cpuacct"].mount, name), Path(V2.mount, name)
    v1.mkdir()
    v2.mkdir()
    inner = Cgroup([str(v2)], "inner")
    inner.dirs.append(v1)  # start() enters every dir: v1 /N and v2 /N/inner
    p = inner.start(BURN)
    yield p
    p.kill()
    p.wait()
    remove_dirs([v2 / "inner", v2, v1])


@needs_root
def test_cgroup_seen_by_both_hierarchies_counts_once(nested) -> None:
    name = f"/fleetscope-test-{os.getpid()}-nested"
    src = CgroupSource(rescan_every=0)
    time.sleep(0.3)
    m = Measured(HostSource(cpu_by_container=src.cpu_by_container), nested.pid)
    names = m.by_container()
    assert name + "/inner" not in names  # inside a v1 container: its time is already there
    assert_burner(m, name)
    m.assert_adds_up_to_proc_stat()
    # container.cpu, which lists both, is not changed by this
    src.begin_tick(2.0)
    src.collect("container.cpu")
    time.sleep(0.2)
    src.begin_tick(3.0)
    listed = {r[0] for r in src.collect("container.cpu").rows}
    assert {name, name + "/inner"} <= listed


@needs_root
def test_files_read_once_per_tick_and_idle_ones_not_parsed_again(cgroups) -> None:
    busy, _ = cgroups([V2.mount], BURN)
    idle, _ = cgroups([V1["cpuacct"].mount])
    src = CgroupSource(rescan_every=3600)
    host = HostSource(cpu_by_container=src.cpu_by_container)
    readings = []
    for t in range(3):
        src.begin_tick(float(t))
        host.begin_tick(float(t))
        src.collect("container.cpu")  # reads the v2 cpu.stat: cpu.usage reuses it
        shared = src.reads["shared"]
        host.collect("cpu.usage")
        assert src.reads["shared"] > shared
        readings.append(src.cpu_by_container(float(t)))  # asked again at the same tick:
        assert src.reads["cpu_modes"] == t + 1  # no new reading
        time.sleep(0.1)
    # An unchanged file gives the same reading (not parsed again; the host source skips it).
    assert readings[1][(1, idle.path)] is readings[2][(1, idle.path)]
    assert readings[1][(2, busy.path)] is not readings[2][(2, busy.path)]
    rows = host.collect("cpu.usage").rows
    assert busy.path in {r[2] for r in rows}
    assert idle.path not in {r[2] for r in rows}  # measured nothing: no row


# --- end to end: a real fleetscope serve ----------------------------------------------------------


def cpus_seconds() -> float:
    """The CPU seconds all the host's CPUs counted since boot in every mode (idle included;
    guest time is inside user time), from the first line of /proc/stat."""
    with open("/proc/stat") as f:
        fields = f.readline().split()
    return sum(map(int, fields[1:9])) / CLK  # user nice system idle iowait irq softirq steal


class Sampler(threading.Thread):
    """The burner's CPU seconds and the host CPUs' (:func:`cpus_seconds`), sampled every 50 ms
    against wall-clock time."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.samples: list[tuple[float, float, float]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.05):
            self.samples.append((time.time(), proc_cpu(self.pid), cpus_seconds()))

    def at(self, t: float, column: int = 1) -> float:
        """The burner's CPU seconds at ``t`` (``column`` 2: the host CPUs'), interpolated."""
        for s0, s1 in zip(self.samples, self.samples[1:], strict=False):
            (t0, c0), (t1, c1) = (s0[0], s0[column]), (s1[0], s1[column])
            if t0 <= t <= t1:
                return c0 + (c1 - c0) * (t - t0) / (t1 - t0)
        raise AssertionError(f"no sample around {t}")


def create(client: httpx.Client, decomposition: list[str]) -> int:
    body = {"module": "cpu", "stat": "usage", "decomposition": decomposition, "retention": 600}
    resp = client.post(f"{API}/instrumentations", json=body)
    assert resp.status_code == 201, resp.text
    return resp.json()["id"]


@needs_root
def test_serve_breaks_cpu_usage_down_by_container(cgroups, fresh_server: Server) -> None:
    cg, p = cgroups([V1["cpuacct"].mount, V1["cpu"].mount], BURN)
    sampler = Sampler(p.pid)
    sampler.start()
    n = 5
    with fresh_server.client() as client:
        by_container, total = create(client, ["container"]), create(client, [])
        by_mode = next(i["id"] for i in client.get(f"{API}/instrumentations").json()["instrumentations"]
                       if i["metric"] == "cpu.usage" and i["decomposition"] == ["mode"])

        def points(inst: int) -> dict[int, object]:
            got = client.get(f"{API}/instrumentations/{inst}/value", params={"ndatapoints": n + 3}).json()
            return {pt["start_time"]: pt["value"] for pt in got if pt["value"] is not None}

        def ready():
            a = points(by_container)
            # slots where the burner's cgroup was already known at both ends of the interval
            slots = sorted(s for s, v in a.items() if cg.path in v)
            return slots[-n:] if len(slots) > n else None

        slots = wait_for(ready, timeout=30)
        a, b, c = points(by_container), points(total), points(by_mode)
    # The last slot's tick was read at its end + 5 ms: let the sampler pass that moment too.
    wait_for(lambda: sampler.samples[-1][0] > slots[-1] + 1.005, timeout=5)
    sampler.stop.set()
    sampler.join()
    for s in slots:
        # the same numbers as before for those who do not break down by container
        assert sum(a[s].values()) == pytest.approx(b[s], rel=1e-9)
        assert sum(c[s].values()) == pytest.approx(b[s], rel=1e-9)
        assert a[s]["/"] >= 0
        assert set(a[s]) >= {cg.path, "/"}
    # The burner's own CPU time over the same slots (each tick measures [s, s + 1) read a few
    # ms after the second): the container's figures average to it.
    start, end = slots[0] + 0.005, slots[-1] + 1.005
    expected = (sampler.at(end) - sampler.at(start)) / (end - start)
    got = sum(a[s][cg.path] for s in slots) / len(slots)
    assert expected > 0.2
    assert got == pytest.approx(expected, rel=REL, abs=0.05)
    # The host's own row averages to the rest of the CPUs' time that /proc/stat counted over the
    # same slots (idle included): without the burner's own, nor any other container's (other
    # tests' cgroups, if some run at the same time).
    cpus = (sampler.at(end, 2) - sampler.at(start, 2)) / (end - start)
    assert cpus == pytest.approx(os.cpu_count(), rel=0.05)
    others = sum(v for s in slots for k, v in a[s].items() if k not in (cg.path, "/")) / len(slots)
    host = sum(a[s]["/"] for s in slots) / len(slots)
    assert host == pytest.approx(cpus - expected - others, abs=0.05)
