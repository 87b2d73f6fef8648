"""A real virtual machine: libvirtd (Debian's, started here without its default network) runs a
QEMU guest under software emulation (TCG: no /dev/kvm needed), a Debian kernel booting a busybox
initramfs made here whose init keeps its one vCPU busy. The host's view of it: ``vm.*`` from
libvirt, its QEMU process (``proc.*`` with ``vm``) and its cgroup (``container.*`` with ``vm``),
and its state changing when it stops."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from fleetscope.sources import virt
from fleetscope.sources.cgroup import CgroupSource
from fleetscope.sources.proc import ProcSource
from fleetscope.sources.virt import LibvirtSource
from tests.conftest import wait_for
from tests.guests import GUEST_READY, busybox_static, guest_kernel, initramfs
from tests.test_cgroup import CLK, proc_cpu

LIBVIRTD = shutil.which("libvirtd") or "/usr/sbin/libvirtd"
VIRTLOGD = shutil.which("virtlogd") or "/usr/sbin/virtlogd"
QEMU = shutil.which("qemu-system-x86_64")
URI = "qemu:///system"
RUN = Path("/run/libvirt")
NAME = "fleetscope-guest"
MEMORY_MIB = 128
VCPU_THREAD = "CPU 0/TCG"  # QEMU's name for the vCPU thread (libvirt sets debug-threads=on)

DOMAIN = """<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>{memory}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{kernel}</kernel>
    <initrd>{initrd}</initrd>
    <cmdline>console=ttyS0 quiet panic=-1</cmdline>
  </os>
  <on_reboot>destroy</on_reboot>
  <devices>
    <serial type='file'><source path='{console}'/></serial>
  </devices>
  <seclabel type='static' model='dac' relabel='no'><label>+0:+0</label></seclabel>
</domain>"""


def _daemon(cmd: list[str], socket: Path, log: Path) -> subprocess.Popen | None:
    """Start ``cmd`` unless its socket is already there (a daemon of the host); None then."""
    if socket.exists():
        return None
    with open(log, "ab") as out:
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)

    def up() -> bool:
        assert p.poll() is None, f"{cmd[0]} exited: {log.read_text()[-2000:]}"
        return socket.exists()

    wait_for(up, timeout=30)
    return p


@pytest.fixture(scope="module")
def libvirtd(tmp_path_factory: pytest.TempPathFactory):
    """libvirtd and virtlogd, started here unless already running, stopped after."""
    if os.geteuid() != 0:
        pytest.fail("libvirtd runs QEMU guests with cgroups only as root", pytrace=False)
    if not os.path.exists(LIBVIRTD) or QEMU is None:
        pytest.fail("needs libvirtd and qemu-system-x86_64 (make test installs them)", pytrace=False)
    if not virt.available():
        pytest.fail("libvirt-python is not installed (make test installs it)", pytrace=False)
    logs = tmp_path_factory.mktemp("libvirtd")
    # Autostart done, as libvirtd records it once per boot: the default network (bridge, dnsmasq,
    # firewall rules on the host) and autostarted domains are not started.
    for driver in ("network", "qemu"):
        (RUN / driver).mkdir(parents=True, exist_ok=True)
        (RUN / driver / "autostarted").touch()
    started = [_daemon([VIRTLOGD], RUN / "virtlogd-sock", logs / "virtlogd.log"),
               _daemon([LIBVIRTD], RUN / "libvirt-sock", logs / "libvirtd.log")]
    yield logs
    for p in reversed(started):
        if p is not None:
            p.terminate()
            p.wait(30)


@pytest.fixture(scope="module")
def guest(libvirtd: Path):
    """A running guest whose init has printed GUEST_READY; its libvirt domain."""
    import libvirt

    kernel = guest_kernel()
    if kernel is None:
        pytest.fail("no guest kernel in /var/cache/fleetscope-test/kernel (make test unpacks Debian's)",
                    pytrace=False)
    if (why := busybox_static()) is not None:
        pytest.fail(why, pytrace=False)
    console = libvirtd / "console.log"
    xml = DOMAIN.format(name=NAME, memory=MEMORY_MIB, kernel=kernel, initrd=initramfs(libvirtd / "initrd"),
                        console=console)
    conn = libvirt.open(URI)
    with contextlib.suppress(libvirt.libvirtError):  # left over from an interrupted run
        old = conn.lookupByName(NAME)
        with contextlib.suppress(libvirt.libvirtError):
            old.destroy()
        old.undefine()
    dom = conn.defineXML(xml)
    try:
        dom.create()
        wait_for(lambda: console.exists() and GUEST_READY in console.read_text(errors="replace"),
                 timeout=120, interval=0.2)
        yield dom
    finally:
        with contextlib.suppress(libvirt.libvirtError):
            dom.destroy()
        dom.undefine()
        conn.close()


def qemu_pid(name: str) -> int:
    return int(Path(f"/run/libvirt/qemu/{name}.pid").read_text())


def thread_cpu(pid: int, comm: str) -> float:
    """CPU seconds of the thread of ``pid`` named ``comm`` (/proc/PID/task/TID/stat)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        if (task / "comm").read_text().strip() == comm:
            f = (task / "stat").read_text().rsplit(")", 1)[1].split()
            return (int(f[11]) + int(f[12])) / CLK
    raise AssertionError(f"no thread {comm!r} in {pid}")


def test_a_daemon_started_after_the_source_is_found(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """An agent started before libvirtd offers vm.* once the daemon is up (no restart): first
    (before the module's libvirtd fixture starts it) the source has no connection and no metrics,
    and does not try to connect while no socket is there."""
    if virt.daemon_running():
        pytest.fail("a libvirt daemon of the host is already running: stop it (the test starts its own)",
                    pytrace=False)
    src = LibvirtSource()
    assert src.metrics() == [] and src.generation == 0
    assert src.reads["connect"] == 0  # no socket, no attempt
    request.getfixturevalue("libvirtd")
    assert wait_for(lambda: src.generation, timeout=10) == 1  # within RETRY_EVERY of the socket
    assert {m.name for m in src.metrics()} >= {"vm.cpu", "vm.memory", "vm.state"}
    src.begin_tick(0)
    assert src.collect("vm.state").columns == ("vm", "hypervisor", "state")
    assert src.hypervisor == "qemu"
    src.close()
    # An empty socket directory: nothing tried, however often it is asked.
    none = LibvirtSource(socket_dir=str(tmp_path))
    assert [none.generation for _ in range(3)] == [0, 0, 0] and none.reads["connect"] == 0


def test_vm_metrics_from_libvirt_match_the_vcpu_thread(guest) -> None:
    src = LibvirtSource(URI)
    try:
        assert src.hypervisor == "qemu"
        pid = qemu_pid(NAME)
        src.begin_tick(0)
        t0 = time.monotonic()
        c0 = thread_cpu(pid, VCPU_THREAD)
        src.collect("vm.cpu")
        c0b = thread_cpu(pid, VCPU_THREAD)
        t0b = time.monotonic()
        wait_for(lambda: time.monotonic() - t0 > 1.5 and thread_cpu(pid, VCPU_THREAD) - c0 > 0.3, timeout=30)
        src.begin_tick(1)
        t1 = time.monotonic()
        c1 = thread_cpu(pid, VCPU_THREAD)
        rows = src.collect("vm.cpu").rows
        c1b = thread_cpu(pid, VCPU_THREAD)
        t1b = time.monotonic()
        [row] = [r for r in rows if r[0] == NAME]
        assert row[:3] == (NAME, "qemu", "0")
        # libvirt's vCPU time is the vCPU thread's own: per second over the same interval
        low = (c1 - c0b - 2 / CLK) / (t1b - t0)
        high = (c1b - c0 + 2 / CLK) / (t1 - t0b)
        assert low * 0.95 <= row[-1] <= high * 1.05
        assert row[-2] == pytest.approx(100 * row[-1])
        memory = {r[2]: r[3] for r in src.collect("vm.memory").rows if r[0] == NAME}
        assert memory["balloon_maximum"] == MEMORY_MIB << 20
        assert ("fleetscope-guest", "qemu", "running", 1) in src.collect("vm.state").rows
    finally:
        src.close()


def test_the_guest_process_and_cgroup_carry_its_name(guest) -> None:
    pid = qemu_pid(NAME)
    procs = ProcSource()
    try:
        procs.begin_tick(0)
        rows = procs.collect("proc.rss")
        [row] = [dict(zip(rows.columns, r, strict=False)) for r in rows.rows if r[0] == str(pid)]
    finally:
        procs.close()
    assert (row["execname"], row["vm"], row["container"]) == ("qemu-system-x86_64", NAME, NAME)
    src = CgroupSource(rescan_every=0)
    src.begin_tick(0)
    memory = {r[6]: r[7] for r in src.collect("container.memory").rows if r[0] == NAME}
    assert memory["rss"] >= 16 << 20  # QEMU and the guest's RAM it touched, charged to its cgroup
    # Its CPU time is its QEMU process's (all its cgroup holds) over the same interval.
    t0, c0 = time.monotonic(), proc_cpu(pid)
    src.collect("container.cpu")
    t0b, c0b = time.monotonic(), proc_cpu(pid)
    wait_for(lambda: time.monotonic() - t0 > 1.5 and proc_cpu(pid) - c0 > 0.3, timeout=30)
    src.begin_tick(1)
    t1, c1 = time.monotonic(), proc_cpu(pid)
    [cpu] = [r for r in src.collect("container.cpu").rows if r[0] == NAME]
    t1b, c1b = time.monotonic(), proc_cpu(pid)
    assert cpu[1:4] == ("libvirt", "", NAME)
    low = (c1 - c0b - 2 / CLK) / (t1b - t0)
    high = (c1b - c0 + 2 / CLK) / (t1 - t0b)
    assert low * 0.95 <= cpu[-1] <= high * 1.05


def test_stopping_the_guest_changes_its_state(guest) -> None:
    src = LibvirtSource(URI)
    try:
        src.begin_tick(0)
        assert (NAME, "qemu", "running", 1) in src.collect("vm.state").rows
        guest.destroy()
        src.begin_tick(1)
        assert (NAME, "qemu", "shut off", 1) in src.collect("vm.state").rows
        src.begin_tick(2)
        assert [r for r in src.collect("vm.cpu").rows if r[0] == NAME] == []  # no error either
    finally:
        src.close()
