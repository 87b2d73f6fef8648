"""Virtual machines without libvirt: a real QEMU process found by its command line and its
cgroup; the guest's view of its hypervisor (cpu.steal)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from fleetscope.sources.base import NORMAL_TICK, tick_length
from fleetscope.sources.cgroup import CgroupSource
from fleetscope.sources.host import HostSource, read_cpu_times
from fleetscope.sources.proc import ProcSource, qemu_guest
from fleetscope.sources.procfs import clock
from tests.conftest import wait_for
from tests.test_cgroup import CLK, proc_cpu, remove_dirs

QEMU = shutil.which("qemu-system-x86_64")
CG = Path("/sys/fs/cgroup")
SCOPE = r"machine-qemu\x2d7\x2dtestvm.scope"  # as systemd-machined names libvirt's domain 7


def test_qemu_guest_names() -> None:
    assert qemu_guest(["/usr/bin/qemu-system-x86_64", "-name", "guest=web1,debug-threads=on"]) == "web1"
    assert qemu_guest(["qemu-system-x86_64", "-S", "-name", "db"]) == "db"
    assert qemu_guest(["qemu-kvm", "-name", "a,,b,process=x"]) == "a,b"
    assert qemu_guest(["qemu-system-aarch64", "-name", "process=x,guest=arm"]) == "arm"
    assert qemu_guest(["qemu-system-x86_64", "-m", "512"]) == ""
    assert qemu_guest(["python3", "-name", "notavm"]) == ""
    assert qemu_guest([]) == ""


def proc_rows(src: ProcSource, pid: int) -> dict:
    src.begin_tick(time.time())
    rows = src.collect("proc.rss")
    return dict(zip(rows.columns, next(r for r in rows.rows if r[0] == str(pid)), strict=False))


@pytest.fixture
def machine_cgroup():
    """A libvirt-shaped cgroup (machine.slice/machine-qemu...scope) in the v1 cpuacct and
    memory hierarchies; removed afterwards with what was made for it."""
    made = []
    dirs = []
    for h in ("cpuacct", "memory"):
        slice_ = CG / h / "machine.slice"
        if not slice_.exists():
            slice_.mkdir()
            made.append(slice_)
        d = slice_ / SCOPE
        d.mkdir()
        made.append(d)
        dirs.append(d)
    yield dirs
    remove_dirs(list(reversed(made)))


def spin_bios(d: Path) -> Path:
    """A 64 KiB firmware image whose reset vector (its last 16 bytes, at 0xFFFFFFF0) is
    ``jmp $``: the guest's one CPU spins from its first instruction, with nothing to boot."""
    image = bytearray(b"\xf4" * 0x10000)  # hlt everywhere else
    image[0xFFF0:0xFFF2] = b"\xeb\xfe"  # jmp $
    path = d / "spin.bin"
    path.write_bytes(bytes(image))
    return path


def start_qemu(name_arg: str, cgroup_dirs: list[Path] = (), bios: Path | None = None) -> subprocess.Popen:
    procs = [str(d / "cgroup.procs") for d in cgroup_dirs]

    def enter() -> None:
        for p in procs:
            with open(p, "w") as f:
                f.write(str(os.getpid()))

    if bios is None:
        # Boots nothing: no devices, no machine, stopped before the first instruction (-S).
        machine = ["-M", "none", "-S"]
    else:
        # A PC (emulated by TCG: no /dev/kvm needed) whose firmware is a busy loop: the guest
        # keeps one host CPU busy, so its CPU time is something to measure.
        machine = ["-M", "pc", "-accel", "tcg", "-m", "16", "-bios", str(bios)]
    return subprocess.Popen(
        [QEMU, *machine, "-nodefaults", "-display", "none", "-name", name_arg],
        preexec_fn=enter, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.fixture
def _qemu_and_root() -> None:
    # A missing prerequisite is a failure, not a skip: `make test` installs qemu and CI runs as root.
    if QEMU is None or os.geteuid() != 0:
        pytest.fail("needs qemu-system-x86_64 (make test installs it) and root", pytrace=False)


needs_qemu = pytest.mark.usefixtures("_qemu_and_root")


def wait_started(p: subprocess.Popen) -> None:
    def started() -> bool:
        assert p.poll() is None, f"qemu exited with {p.returncode}"
        try:
            return "qemu" in os.readlink(f"/proc/{p.pid}/exe")
        except FileNotFoundError:
            return False

    wait_for(started, timeout=5, interval=0.05)


def cpu_reading(src: CgroupSource, pid: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """Collect ``container.cpu`` from ``src``, with QEMU's own CPU seconds (/proc/PID/stat) and
    the clock read just before and just after: ((clock, cpu) before, (clock, cpu) after)."""
    before = (clock(), proc_cpu(pid))
    src.collect("container.cpu")
    return before, (clock(), proc_cpu(pid))


def outside_normal_tick(t: float, margin: float = 0.05) -> bool:
    """Whether an interval of ``t`` seconds is far enough from the bounds of a normal tick that
    the source (which reads its own clock a moment apart from ours) scales it as we do."""
    return all(abs(t - bound) > margin for bound in NORMAL_TICK)


@needs_qemu
def test_real_qemu_found_by_process_and_cgroup(machine_cgroup, tmp_path) -> None:
    qemu = start_qemu("guest=testvm,debug-threads=on", machine_cgroup, spin_bios(tmp_path))
    try:
        wait_started(qemu)
        wait_for(lambda: proc_cpu(qemu.pid) >= 0.1)  # set up, and the guest running
        assert qemu.poll() is None
        proc = ProcSource()
        try:
            row = proc_rows(proc, qemu.pid)
        finally:
            proc.close()
        assert row["execname"] == "qemu-system-x86_64"
        assert row["vm"] == "testvm"
        assert row["container"] == "testvm"  # the container.* name of its cgroup
        src = CgroupSource(rescan_every=0)
        src.begin_tick(0)
        mem = [r for r in src.collect("container.memory").rows if r[0] == "testvm"]
        assert {r[:4] for r in mem} == {("testvm", "libvirt", "", "testvm")}
        rss = {r[6]: r[7] for r in mem}["rss"]
        assert rss > 1 << 20  # QEMU's own memory, charged to the machine's cgroup
        (t0, c0), (t0b, c0b) = cpu_reading(src, qemu.pid)
        # Until the guest has used CPU time enough to compare (on a busy host it takes longer).
        wait_for(lambda: proc_cpu(qemu.pid) - c0b >= 0.3 and outside_normal_tick(clock() - t0))
        src.begin_tick(1)
        (t1, c1), (t1b, c1b) = cpu_reading(src, qemu.pid)
        cpu = [r for r in src.collect("container.cpu").rows if r[0] == "testvm"]
        assert len(cpu) == 1 and cpu[0][1:4] == ("libvirt", "", "testvm")
        # The VM's figure is QEMU's own CPU time over the same interval (its process is all the
        # machine's cgroup holds), scaled as the source scales a tick's activity.
        elapsed = (t1 + t1b) / 2 - (t0 + t0b) / 2
        used = (c1 + c1b) / 2 - (c0 + c0b) / 2
        assert used >= 0.3
        # /proc/PID/stat counts in clock ticks, and the readings bracket the source's: allow
        # both, and 5 % for scheduling on a busy host.
        slack = 2 / CLK + (c1b - c1) + (c0b - c0)
        expected = used / tick_length(elapsed)
        assert cpu[0][-1] == pytest.approx(expected, rel=0.05, abs=slack / tick_length(elapsed))
        assert cpu[0][-2] == pytest.approx(100 * cpu[0][-1])
    finally:
        qemu.kill()
        qemu.wait()


@needs_qemu
def test_real_qemu_without_cgroup_found_by_command_line() -> None:
    qemu = start_qemu("plainvm")
    try:
        wait_started(qemu)
        proc = ProcSource()

        def qemu_row() -> dict | None:
            with contextlib.suppress(StopIteration):  # not listed yet
                row = proc_rows(proc, qemu.pid)
                return row if row["execname"] == "qemu-system-x86_64" else None
            return None

        try:
            row = wait_for(qemu_row, timeout=5)
        finally:
            proc.close()
        assert row["vm"] == "plainvm"
        assert row["container"] == proc_rows(ProcSource(), os.getpid())["container"]  # the test's own
    finally:
        qemu.kill()
        qemu.wait()


def test_cpu_steal_is_the_steal_mode_of_cpu_usage() -> None:
    src = HostSource()
    src.begin_tick(0)
    assert src.collect("cpu.steal").rows == []
    src.collect("cpu.usage")
    before = read_cpu_times()
    # until every CPU has counted some time since (the interval is not empty)
    wait_for(lambda: all(t != before[cpu] for cpu, t in read_cpu_times().items()), timeout=5)
    src.begin_tick(1)
    steal = dict((r[0], r[1]) for r in src.collect("cpu.steal").rows)
    usage = {r[0]: r[-1] for r in src.collect("cpu.usage").rows if r[1] == "steal"}
    assert steal.keys() == usage.keys() and steal
    for cpu, v in steal.items():
        assert v == pytest.approx(usage[cpu], abs=0.05)  # same file read, same interval
    assert src.reads["stat"] == 2  # one /proc/stat read per tick for both metrics
