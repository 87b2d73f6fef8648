"""Virtual machines without libvirt: a real QEMU process found by its command line and its
cgroup; the guest's view of its hypervisor (cpu.steal)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from fleetscope.sources.cgroup import CgroupSource
from fleetscope.sources.host import HostSource
from fleetscope.sources.proc import ProcSource, qemu_guest
from tests.test_cgroup import remove_dirs

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


def start_qemu(name_arg: str, cgroup_dirs: list[Path] = ()) -> subprocess.Popen:
    procs = [str(d / "cgroup.procs") for d in cgroup_dirs]

    def enter() -> None:
        for p in procs:
            with open(p, "w") as f:
                f.write(str(os.getpid()))

    # Boots nothing: no devices, no machine, stopped before the first instruction (-S).
    return subprocess.Popen(
        [QEMU, "-M", "none", "-nodefaults", "-display", "none", "-S", "-name", name_arg],
        preexec_fn=enter, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.fixture
def _qemu_and_root() -> None:
    # A missing prerequisite is a failure, not a skip: `make test` installs qemu and CI runs as root.
    if QEMU is None or os.geteuid() != 0:
        pytest.fail("needs qemu-system-x86_64 (make test installs it) and root", pytrace=False)


needs_qemu = pytest.mark.usefixtures("_qemu_and_root")


def wait_started(p: subprocess.Popen) -> None:
    for _ in range(100):
        if Path(f"/proc/{p.pid}/exe").exists() and "qemu" in os.readlink(f"/proc/{p.pid}/exe"):
            return
        time.sleep(0.05)
    raise AssertionError("qemu did not start")


@needs_qemu
def test_real_qemu_found_by_process_and_cgroup(machine_cgroup) -> None:
    qemu = start_qemu("guest=testvm,debug-threads=on", machine_cgroup)
    try:
        wait_started(qemu)
        time.sleep(0.2)
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
        rss = {r[4]: r[5] for r in mem}["rss"]
        assert rss > 1 << 20  # QEMU's own memory, charged to the machine's cgroup
        src.collect("container.cpu")
        time.sleep(0.3)
        src.begin_tick(1)
        cpu = [r for r in src.collect("container.cpu").rows if r[0] == "testvm"]
        assert len(cpu) == 1 and cpu[0][1:4] == ("libvirt", "", "testvm") and cpu[0][-1] >= 0
    finally:
        qemu.kill()
        qemu.wait()


@needs_qemu
def test_real_qemu_without_cgroup_found_by_command_line() -> None:
    qemu = start_qemu("plainvm")
    try:
        wait_started(qemu)
        time.sleep(0.2)
        proc = ProcSource()
        try:
            row = proc_rows(proc, qemu.pid)
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
    time.sleep(0.3)
    src.begin_tick(1)
    steal = dict((r[0], r[1]) for r in src.collect("cpu.steal").rows)
    usage = {r[0]: r[-1] for r in src.collect("cpu.usage").rows if r[1] == "steal"}
    assert steal.keys() == usage.keys() and steal
    for cpu, v in steal.items():
        assert v == pytest.approx(usage[cpu], abs=0.05)  # same file read, same interval
    assert src.reads["stat"] == 2  # one /proc/stat read per tick for both metrics
