"""The cgroup source against real cgroups: made here (as root) in the v1 hierarchies and in
the v2 mount, with real CPU and memory load moved into them."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import pytest

from fleetscope.sources.cgroup import METRICS, CgroupSource, Hierarchy, find_hierarchies
from fleetscope.sources.cgroup.v1 import parse_blkio
from fleetscope.sources.cgroup.v2 import parse_io_stat, parse_pressure
from fleetscope.sources.procfs import read_devices
from tests.conftest import wait_for

ROOT = Path("/sys/fs/cgroup")
HIER = find_hierarchies()
V1 = {c: h for h in HIER if h.version == 1 for c in h.controllers}
V2 = next((h for h in HIER if h.version == 2), None)
CLK = os.sysconf("SC_CLK_TCK")

BURN = "import os\nwhile True: pass\n"
# Allocate and touch 128 MiB, then wait.
ALLOC = ("import sys, time\nb = bytearray(b'x') * (128 << 20)\n"
         "sys.stdout.write('ok\\n')\nsys.stdout.flush()\ntime.sleep(600)\n")


class Cgroup:
    """A cgroup made for a test in some hierarchies, removed at the end."""

    def __init__(self, mounts: list[str], name: str) -> None:
        self.dirs = [Path(m) / name for m in mounts]
        self.path = "/" + name
        for d in self.dirs:
            d.mkdir()

    def write(self, file: str, value: str) -> None:
        for d in self.dirs:
            if (d / file).exists():
                (d / file).write_text(value)

    def start(self, code: str, **kw) -> subprocess.Popen:
        procs = [str(d / "cgroup.procs") for d in self.dirs]

        def enter() -> None:  # in the child, before exec: so all its usage is charged here
            for p in procs:
                with open(p, "w") as f:
                    f.write(str(os.getpid()))

        return subprocess.Popen([sys.executable, "-c", code], preexec_fn=enter, **kw)

    def remove(self) -> None:
        remove_dirs(self.dirs)


def remove_dirs(dirs: list[Path]) -> None:
    """Remove cgroup directories, waiting a little for each (a killed process leaves its cgroup
    a moment after it is reaped)."""
    for d in dirs:
        for _ in range(50):
            try:
                d.rmdir()
                break
            except OSError:
                time.sleep(0.05)


@pytest.fixture
def cgroups():
    made: list[Cgroup] = []
    procs: list[subprocess.Popen] = []

    def make(mounts: list[str], code: str | None = None, setup: dict | None = None, **kw):
        cg = Cgroup(mounts, f"fleetscope-test-{os.getpid()}-{len(made)}")
        made.append(cg)
        for k, v in (setup or {}).items():
            cg.write(k, v)
        p = cg.start(code, **kw) if code else None
        if p:
            procs.append(p)
        return cg, p

    yield make
    for p in procs:
        p.kill()
        p.wait()
    for cg in made:
        cg.remove()


def proc_cpu(pid: int) -> float:
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / CLK


def rows_of(src: CgroupSource, metric: str, path_or_name: str) -> list[tuple]:
    rows = src.collect(metric)
    i = rows.columns.index("container")
    return [r for r in rows.rows if r[i] == path_or_name]


def busy_seconds() -> float:
    """The CPU seconds all the host's CPUs spent busy since boot, from the first line of
    /proc/stat: user, nice, system, irq and softirq (guest time is inside user)."""
    with open("/proc/stat") as f:
        fields = f.readline().split()
    user, nice, system, _idle, _iowait, irq, softirq = map(int, fields[1:8])
    return (user + nice + system + irq + softirq) / CLK


class Reading(NamedTuple):
    """The clock, /proc/stat's busy time and the burner's own CPU time, read at one moment."""

    t: float
    busy: float
    burner: float


class TwoTicks:
    """Two readings of ``metrics`` from ``src`` (the first is the baseline of the rates), with
    the host's busy time (/proc/stat) and the burner's own CPU time (/proc/PID/stat) read just
    before and just after each; between them, a wait until the burner has had ``cpu`` CPU
    seconds and at least ``seconds`` passed (past a normal tick, so rates are per second; long
    enough for figures counted in clock ticks). On a loaded host that takes longer: every figure
    is divided by the time that really passed."""

    def __init__(self, src: CgroupSource, metrics: list[str], pid: int, cpu: float = 0.3,
                 seconds: float = 1.5) -> None:
        self.pid = pid
        src.begin_tick(0)
        self.first = self._around(lambda: [src.collect(m) for m in metrics])
        t0, c0 = self.first[1].t, self.first[1].burner
        wait_for(lambda: proc_cpu(pid) - c0 >= cpu and time.monotonic() - t0 >= seconds, timeout=60)
        src.begin_tick(1)
        self.rows: dict[str, list[tuple]] = {}
        self.second = self._around(lambda: self.rows.update({m: src.collect(m).rows for m in metrics}))
        self.elapsed = self._mid("t")
        # the burner's CPU seconds per second: what the load really got
        self.burner = self._mid("burner") / self.elapsed
        # the host's busy CPU seconds per second, all CPUs together
        self.busy = self._mid("busy") / self.elapsed
        # how far a figure read inside the brackets may be from one read at their middles
        widths = sum(r[1].t - r[0].t for r in (self.first, self.second))
        self.slack = (2 / CLK * os.cpu_count() + widths * os.cpu_count()) / self.elapsed

    def _around(self, read: Callable[[], object]) -> tuple[Reading, Reading]:
        before = Reading(time.monotonic(), busy_seconds(), proc_cpu(self.pid))
        read()
        return before, Reading(time.monotonic(), busy_seconds(), proc_cpu(self.pid))

    def _mid(self, field: str) -> float:
        def mid(pair: tuple[Reading, Reading]) -> float:
            return (getattr(pair[0], field) + getattr(pair[1], field)) / 2

        return mid(self.second) - mid(self.first)


def started(pid: int) -> None:
    """Wait until the burner ``pid`` is past the interpreter's start-up and in its loop (it has
    used more CPU time than starting Python takes)."""
    wait_for(lambda: proc_cpu(pid) >= 0.05, timeout=30)


@pytest.fixture
def _root_and_cgroups() -> None:
    # A missing prerequisite is a failure, not a skip: CI runs as root on hosts with both hierarchies.
    if os.geteuid() != 0 or "cpuacct" not in V1 or V2 is None:
        pytest.fail("needs root, the v1 cpuacct hierarchy and a v2 mount", pytrace=False)


needs_root = pytest.mark.usefixtures("_root_and_cgroups")


@needs_root
def test_hierarchies_found() -> None:
    assert {"cpu", "cpuacct", "memory", "pids", "blkio"} <= set(V1)
    assert V2 is not None and V2.mount == "/sys/fs/cgroup/unified"
    names = {m.name for m in CgroupSource().metrics()}
    assert {"container.cpu", "container.memory", "container.pressure", "container.pids"} <= names


@needs_root
def test_v1_cpu_matches_load(cgroups) -> None:
    cg, p = cgroups([V1["cpuacct"].mount, V1["cpu"].mount], BURN)
    src = CgroupSource(rescan_every=0)
    started(p.pid)
    m = TwoTicks(src, ["container.cpu"], p.pid)
    rows = m.rows["container.cpu"]
    mine = [r for r in rows if r[0] == cg.path]
    assert len(mine) == 1
    _, runtime, pod, vm, image, namespace, util, rate = mine[0]
    assert (runtime, pod, vm, image, namespace) == ("cgroup", "", "", "", "")
    # The burner's own CPU time over the same interval (what the load really got on a busy host).
    expected = m.burner
    assert expected > 0.2
    assert rate == pytest.approx(expected, rel=0.1, abs=0.03)
    assert util == pytest.approx(100 * rate)
    # The host row: the rest of the CPU time /proc/stat counted on the host's CPUs over the same
    # interval, once the burner's own is taken out, and that of any other container of the
    # cpuacct hierarchy (other tests' cgroups, if some run at the same time).
    host = [r for r in rows if r[1] == "host"]
    assert len(host) == 1 and host[0][-1] >= 0
    assert host[0][-2] == pytest.approx(100 * host[0][-1])
    others = {tuple(c)[:4] for path, c in src.containers(V1["cpuacct"]).items() if path != cg.path}
    other = sum(r[-1] for r in rows if tuple(r[:4]) in others)
    assert host[0][-1] == pytest.approx(m.busy - expected - other, abs=0.05 + m.slack)


@needs_root
def test_v1_throttled_and_quota(cgroups) -> None:
    setup = {"cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": "20000"}  # 20 % of a CPU
    cg, p = cgroups([V1["cpuacct"].mount, V1["cpu"].mount], BURN, setup)
    src = CgroupSource(rescan_every=0)
    started(p.pid)
    # until the burner has had 0.3 s of CPU time: 1.5 s at its quota, longer on a busy host
    m = TwoTicks(src, ["container.cpu", "container.throttled"], p.pid, cpu=0.3)
    cpu = next(r for r in m.rows["container.cpu"] if r[0] == cg.path)[-1]
    throttled = next(r for r in m.rows["container.throttled"] if r[0] == cg.path)[-1]
    # What the burner really got, by its own count: the quota at most (its figures are counted
    # in clock ticks: 10 ms in some 1.5 s), and the cgroup's figure is that.
    assert 0.1 < m.burner <= 0.2 + 0.03
    assert cpu == pytest.approx(m.burner, rel=0.1, abs=0.03)
    # Throttled time per second: the task wanted the CPU for most of the other 80 ms of each
    # period; it was throttled at most while it did not run (it never sleeps).
    assert 0.3 < throttled <= 1 - m.burner + 0.05


@needs_root
def test_v1_memory_limit_pids(cgroups) -> None:
    cg, p = cgroups([V1["memory"].mount, V1["pids"].mount], ALLOC,
                    {"memory.limit_in_bytes": str(512 << 20)}, stdout=subprocess.PIPE)
    assert p.stdout.readline() == b"ok\n"
    src = CgroupSource(rescan_every=0)
    src.begin_tick(0)
    mem = {r[6]: r[7] for r in rows_of(src, "container.memory", cg.path)}
    assert mem["rss"] == pytest.approx(128 << 20, abs=24 << 20)  # the buffer plus the interpreter
    assert 0 <= mem["cache"] < 64 << 20
    assert rows_of(src, "container.memory_limit", cg.path)[0][-1] == 512 << 20
    assert rows_of(src, "container.pids", cg.path)[0][-1] == 1
    # an unlimited cgroup has no limit row
    other, _ = cgroups([V1["memory"].mount])
    src.begin_tick(1)
    assert rows_of(src, "container.memory_limit", other.path) == []


@needs_root
def test_v2_cpu_and_pressure(cgroups) -> None:
    cg, p = cgroups([V2.mount], BURN)
    src = CgroupSource(rescan_every=0)
    started(p.pid)
    m = TwoTicks(src, ["container.cpu"], p.pid)
    mine = [r for r in m.rows["container.cpu"] if r[0] == cg.path]
    assert len(mine) == 1
    assert m.burner > 0.2
    assert mine[0][-1] == pytest.approx(m.burner, rel=0.1, abs=0.03)
    pressure = {(r[6], r[7]): r[8] for r in rows_of(src, "container.pressure", cg.path)}
    assert {("cpu", "some"), ("memory", "some"), ("memory", "full"), ("io", "some")} <= set(pressure)
    assert all(0 <= v <= 100 for v in pressure.values())


@needs_root
def test_removed_cgroup_disappears(cgroups) -> None:
    cg, _ = cgroups([V1["cpuacct"].mount])
    src = CgroupSource(rescan_every=3600)
    src.begin_tick(0)
    src.collect("container.cpu")
    time.sleep(0.1)
    src.begin_tick(1)
    assert len(rows_of(src, "container.cpu", cg.path)) == 1
    cg.remove()
    src.begin_tick(2)
    assert rows_of(src, "container.cpu", cg.path) == []  # dropped at the failed read, no error
    assert src.reads["walk"] >= 1


def test_nothing_mounted() -> None:
    src = CgroupSource(hierarchies=[])
    assert src.metrics() == []


def test_v2_memory_io_from_real_shaped_files(tmp_path: Path) -> None:
    """cgroup v2 memory, io and pids need controllers that are bound to v1 on this host: the
    parsing is checked on files shaped like a v2 host's."""
    d = tmp_path / "system.slice" / "docker-{}.scope".format("ab" * 32)
    d.mkdir(parents=True)
    (tmp_path / "cpu.stat").write_text("usage_usec 5000\nuser_usec 1\nsystem_usec 1\n")
    (d / "cpu.stat").write_text("usage_usec 1000\nuser_usec 1\nsystem_usec 1\nnr_periods 0\n"
                                "nr_throttled 0\nthrottled_usec 0\n")
    (d / "memory.stat").write_text("anon 1048576\nfile 2097152\nkernel 100\n")
    (d / "memory.swap.current").write_text("4096\n")
    (d / "memory.max").write_text("max\n")
    (d / "pids.current").write_text("3\n")
    (d / "io.stat").write_text("8:0 rbytes=1000 wbytes=2000 rios=1 wios=2 dbytes=0 dios=0\n")
    h = Hierarchy(str(tmp_path), 2, frozenset({"cpu", "memory", "io", "pids"}))
    src = CgroupSource(hierarchies=[h], rescan_every=0)
    src.begin_tick(0)
    mem = {r[6]: r[7] for r in src.collect("container.memory").rows}
    assert mem == {"rss": 1 << 20, "cache": 2 << 20, "swap": 4096}
    assert src.collect("container.memory").rows[0][:4] == ("abababababab", "docker", "", "")
    assert src.collect("container.memory_limit").rows == []
    assert src.collect("container.pids").rows[0][-1] == 3
    src.collect("container.io")
    src.collect("container.io_ops")
    src.collect("container.cpu")
    (d / "io.stat").write_text("8:0 rbytes=5000 wbytes=2000 rios=3 wios=2 dbytes=0 dios=0\n")
    (d / "cpu.stat").write_text("usage_usec 2000\nthrottled_usec 0\n")
    time.sleep(0.2)
    src.begin_tick(1)
    disk = read_devices().get("8:0", "8:0")  # named as this host's /proc/diskstats names 8:0
    io = {(r[6], r[7]): r[8] for r in src.collect("container.io").rows}
    assert io[(disk, "read")] > 0 and io[(disk, "write")] == 0
    ops = {(r[6], r[7]): r[8] for r in src.collect("container.io_ops").rows}
    assert ops == {(disk, "read"): pytest.approx(2 / 0.2, rel=0.5), (disk, "write"): 0}
    cpu = src.collect("container.cpu").rows
    assert [r[:4] for r in cpu if r[1] == "docker"] == [("abababababab", "docker", "", "")]
    assert cpu[0][-1] == pytest.approx(1e-3 / 0.2, rel=0.5)  # 1 ms of CPU in about 0.2 s
    assert cpu[1][:2] == ("/", "host") and cpu[1][-1] == 0  # the root counted nothing more


def test_parsers() -> None:
    assert parse_blkio(b"8:0 Read 4096\n8:0 Write 0\n8:0 Sync 4096\nTotal 4096\n") == {
        ("8:0", "read"): 4096, ("8:0", "write"): 0}
    assert parse_io_stat(b"259:0 rbytes=10 wbytes=20 rios=1 wios=2\n", "rios", "wios") == {
        ("259:0", "read"): 1, ("259:0", "write"): 2}
    assert parse_pressure(b"some avg10=1.50 avg60=0.00 avg300=0.00 total=1\n"
                          b"full avg10=0.25 avg60=0.00 avg300=0.00 total=1\n") == {"some": 1.5, "full": 0.25}
    assert {m.name for m in METRICS} >= {"container.cpu", "container.io", "container.pids"}


def test_default_container_panels_only_with_containers(tmp_path: Path) -> None:
    """`fleetscope serve`'s defaults gain CPU and memory by container when the host has containers."""
    import asyncio

    from fleetscope.api.control import ControlPlane
    from fleetscope.bus.memory import MemoryBus
    from fleetscope.sources.host import HostSource
    from fleetscope.sources.registry import catalog
    from fleetscope.store.open import open_store

    empty = tmp_path / "cgroupfs"
    (empty / "cpuacct").mkdir(parents=True)  # a hierarchy without any cgroup below its root
    bare = CgroupSource(hierarchies=[Hierarchy(str(empty / "cpuacct"), 1, frozenset({"cpuacct"}))])
    assert bare.metrics() == []

    async def defaults(sources, name: str) -> set:
        store = open_store(f"sqlite:///{tmp_path / name}")
        control = ControlPlane(store, MemoryBus(), catalog(sources))
        made = await control.ensure_defaults()
        return {(i.metric, tuple(i.decomposition)) for i in made}

    with_containers = asyncio.run(defaults([HostSource(), CgroupSource()], "a.db"))
    assert {("container.cpu", ("container",)), ("container.memory", ("container",))} <= with_containers
    without = asyncio.run(defaults([HostSource(), bare], "b.db"))
    assert not any(m.startswith("container.") for m, _ in without)
    assert ("cpu.usage", ("mode",)) in without


@needs_root
def test_an_agent_on_a_bare_host_offers_container_metrics_from_the_first_cgroup() -> None:
    """The agent's catalogue follows the host: no container.* while no cgroup is below the root
    (a real empty cgroup stands for the hierarchy's root), then from the first tick after one
    is made; an instrumentation over them, refused before, runs then."""
    from fleetscope.agent.agent import Agent
    from fleetscope.bus.memory import MemoryBus
    from fleetscope.model.instrumentation import Instrumentation

    root = Cgroup([V1["pids"].mount], f"fleetscope-bare-{os.getpid()}")
    job, worker = None, None
    try:
        src = CgroupSource(hierarchies=[Hierarchy(str(root.dirs[0]), 1, frozenset({"pids"}))])
        agent = Agent(MemoryBus(), [src], hostname="h1")
        assert src.metrics() == [] and src.generation == 0 and "container.pids" not in agent.catalog
        inst = Instrumentation.from_json({"id": 1, "module": "container", "stat": "pids",
                                          "decomposition": ["container"], "created": 0, "predicate": {},
                                          "granularity": 1, "retention": 600, "idle_max": 0,
                                          "persist": False, "kind": "point", "shape": "discrete",
                                          "discrete": "container"})
        agent.enable(inst)
        assert agent.instrumentations == {} and not agent.refresh_catalog()
        job = Cgroup([str(root.dirs[0])], "job")  # the first cgroup, with a process in it
        worker = job.start("import time\ntime.sleep(60)\n")
        assert agent.refresh_catalog() and src.generation == 1
        assert "container.pids" in agent.catalog and not agent.refresh_catalog()  # once
        agent.enable(inst)
        [partial] = agent.tick(1000.0).partials
        assert partial.value == {"/job": 1}
    finally:
        if worker is not None:
            worker.kill()
            worker.wait()
        if job is not None:
            job.remove()
        root.remove()


@needs_root
def test_new_cgroup_seen_at_the_next_tick_without_a_full_rescan(cgroups) -> None:
    src = CgroupSource()  # default rescan period: a new cgroup is found by the link-count check
    src.begin_tick(0)
    src.collect("container.pids")
    walks = src.reads["walk"]
    src.begin_tick(1)
    src.collect("container.pids")
    assert src.reads["walk"] == walks  # nothing changed: no walk
    cg, _ = cgroups([V1["pids"].mount], "import time\ntime.sleep(60)\n")
    src.begin_tick(2)
    assert rows_of(src, "container.pids", cg.path)[0][-1] == 1
    assert src.reads["walk"] == walks + 1


@needs_root
def test_v1_memory_stat_reread_only_when_usage_moves(cgroups) -> None:
    grow = ("import sys, time\nb = []\nfor line in sys.stdin:\n    b.append(bytearray(b'x') * (32 << 20))\n"
            "    sys.stdout.write('ok\\n')\n    sys.stdout.flush()\n")
    cg, p = cgroups([V1["memory"].mount], grow, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    src = CgroupSource()

    def tick() -> dict:
        src.begin_tick(0)
        return {r[6]: r[7] for r in rows_of(src, "container.memory", cg.path)}

    def more() -> None:
        p.stdin.write(b"more\n")
        p.stdin.flush()
        assert p.stdout.readline() == b"ok\n"

    more()  # started up and idle
    d = V1["memory"].mount + cg.path

    def read_at() -> int:  # the tick at which this cgroup's memory.stat was last read
        return src._memory_memo[d][1]

    first = tick()
    t = read_at()
    assert tick() == first  # usage did not move: the split is reused, memory.stat not read
    assert read_at() == t
    more()
    grown = tick()
    assert read_at() == t + 2
    assert grown["rss"] - first["rss"] == pytest.approx(32 << 20, abs=4 << 20)
