"""ProcSource against this machine's real processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil
import pytest

from fleetscope.model.errors import NotFound
from fleetscope.sources import proc
from fleetscope.sources.proc import CMD_MAX, ProcSource, command, execname, parse_stat
from fleetscope.sources.registry import catalog, local_sources

MiB = 1 << 20
BUSY = "while True: pass"
# Touch every page (b"x" * n, not bytearray(n), whose zero pages stay unmapped).
BIG = "import sys, time; b = b'x' * (200 << 20); print('ready', flush=True); time.sleep(60)"
# Busy for 0.3 s, then idle: started between two ticks, all its CPU time is new.
BURST = "import time\nt = time.time()\nwhile time.time() - t < 0.3: pass\ntime.sleep(60)"


def spawn(code: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code], **kw)


def tick(src: ProcSource) -> tuple[dict, dict]:
    """proc.cpu and proc.rss rows of one tick, keyed by pid."""
    src.begin_tick(time.time())
    cpu = src.collect("proc.cpu")
    rss = src.collect("proc.rss")
    assert cpu.columns == ("pid", "execname", "user", "cmd", "container", "vm", "utilization")
    assert rss.columns == ("pid", "execname", "user", "cmd", "container", "vm", "rss")
    return {r[0]: r for r in cpu.rows}, {r[0]: r for r in rss.rows}


def stop(*children: subprocess.Popen) -> None:
    for c in children:
        c.kill()
    for c in children:
        c.wait()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def cpu_seconds(child: subprocess.Popen) -> float:
    """The child's CPU time as psutil reads it: the reference for our rates (on a loaded
    machine a busy loop does not get a whole CPU, so 100 % is not a given)."""
    t = psutil.Process(child.pid).cpu_times()
    return t.user + t.system


@pytest.fixture(scope="module")
def ticks():
    """Two ticks 1 s apart: a CPU burner and a 200 MiB process throughout, a process
    that exits and one that starts in between."""
    busy = spawn(BUSY)
    big = spawn(BIG, stdout=subprocess.PIPE, text=True)
    doomed = subprocess.Popen(["sleep", "60"])
    born = None
    try:
        assert big.stdout.readline() == "ready\n"
        fds = open_fds()
        src = ProcSource()
        first = tick(src)
        t1, busy1 = time.monotonic(), cpu_seconds(busy)
        scans = src.reads["scan"]
        stop(doomed)
        born = spawn(BURST)
        time.sleep(1.0)
        second = tick(src)
        t2, busy2, born2 = time.monotonic(), cpu_seconds(busy), cpu_seconds(born)
        fds_held = open_fds() - fds
        src.close()
        yield {
            "first": first, "second": second, "busy": busy, "big": big, "doomed": doomed,
            "born": born, "between": t2 - t1, "busy_rate": (busy2 - busy1) / (t2 - t1),
            "born_cpu": born2, "scans": (scans, src.reads["scan"]), "fds": (fds_held, open_fds() - fds),
        }
    finally:
        stop(busy, big, doomed, *([born] if born else []))


def test_first_tick_gives_no_cpu_rows(ticks):
    cpu, rss = ticks["first"]
    assert cpu == {}
    assert str(ticks["busy"].pid) in rss


def test_busy_process_uses_one_cpu(ticks):
    busy = ticks["busy"]
    cpu, _ = ticks["second"]
    pid, name, user, cmd, _, _, utilization, seconds = cpu[str(busy.pid)]
    assert pid == str(busy.pid)
    ps = psutil.Process(busy.pid)
    assert name == ps.name()
    assert user == ps.username()
    assert cmd == " ".join(ps.cmdline()) == f"{sys.executable} -c {BUSY}"
    # About 100 % on an idle machine; what it really got (as psutil saw it) on a busy one.
    assert utilization == pytest.approx(100 * ticks["busy_rate"], abs=10)
    assert utilization == pytest.approx(100 * seconds)


def test_rss_of_a_200_mib_process(ticks):
    big = ticks["big"]
    _, rss = ticks["second"]
    row = rss[str(big.pid)]
    assert row[-2] == row[-1]
    assert row[-1] == pytest.approx(psutil.Process(big.pid).memory_info().rss, rel=0.1)
    assert row[-1] >= 200 * MiB


def test_process_exited_between_ticks_is_gone(ticks):
    pid = str(ticks["doomed"].pid)
    assert pid in ticks["first"][1]
    cpu, rss = ticks["second"]
    assert pid not in cpu
    assert pid not in rss


def test_process_started_between_ticks_counts_all_its_cpu(ticks):
    cpu, _ = ticks["second"]
    row = cpu[str(ticks["born"].pid)]
    assert row[1] == psutil.Process(ticks["born"].pid).name()
    # Busy for 0.3 s of wall time after start-up: all its CPU time falls in this tick.
    assert row[-1] * ticks["between"] == pytest.approx(ticks["born_cpu"], abs=0.05)
    assert row[-1] > 0


def test_idle_and_kernel_processes_have_rows(ticks):
    cpu, rss = ticks["second"]
    assert set(cpu) <= set(rss)
    assert any(r[-1] == 0.0 for r in cpu.values())
    for pid, row in rss.items():
        assert row[0] == pid
        assert all(isinstance(v, str) for v in row[:4])
        assert len(row[3]) <= CMD_MAX
        if row[3].startswith("["):  # kernel thread or zombie: ps shows [comm]
            assert row[3] == f"[{row[1]}]"


def test_one_scan_per_tick_and_files_released(ticks):
    assert ticks["scans"] == (1, 2)
    held, after_close = ticks["fds"]
    assert held > 0
    assert after_close == 0


def test_nothing_read_until_collected():
    src = ProcSource()
    src.begin_tick(time.time())
    assert src.reads["scan"] == 0
    rows = src.collect("proc.rss")
    assert src.collect("proc.rss") is rows
    src.collect("proc.cpu")
    assert src.reads["scan"] == 1
    src.close()


def test_without_kept_files():
    # No file kept open, and a budget of 5 kept files (the rest read by path each tick).
    busy = spawn(BUSY)
    try:
        fds = open_fds()
        sources = [ProcSource(max_open_files=0), ProcSource(max_open_files=5)]
        for src in sources:
            tick(src)
        t1, busy1 = time.monotonic(), cpu_seconds(busy)
        time.sleep(0.5)
        rows = [tick(src)[0] for src in sources]
        rate = (cpu_seconds(busy) - busy1) / (time.monotonic() - t1)
        assert open_fds() - fds == 5
        for cpu in rows:
            assert cpu[str(busy.pid)][-2] == pytest.approx(100 * rate, abs=10)
        for src in sources:
            src.close()
        assert open_fds() == fds
    finally:
        stop(busy)


def test_processes_coming_and_going_during_scans():
    # A shell spawning short-lived processes without pause: some vanish between the
    # listing of /proc and the read of their stat file.
    churn = subprocess.Popen(["sh", "-c", "while :; do /bin/true; done"])
    try:
        src = ProcSource(max_open_files=20)
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            tick(src)
        src.close()
    finally:
        stop(churn)


def test_stale_previous_reading_is_not_used(monkeypatch):
    src = ProcSource()
    tick(src)
    monkeypatch.setattr(proc, "MAX_GAP", 0.0)
    cpu, rss = tick(src)
    assert cpu == {}
    assert rss
    src.close()


def test_unknown_metric():
    src = ProcSource()
    src.begin_tick(time.time())
    with pytest.raises(NotFound):
        src.collect("proc.nope")


def test_parse_stat_and_names():
    with open(f"/proc/{os.getpid()}/stat", "rb") as f:
        st = parse_stat(f.read())
    me = psutil.Process()
    assert st.comm == me.name()[:15]
    assert st.rss > 0
    # comm with spaces and parentheses
    st = parse_stat(b"42 (a) b (c)) S 1 1 1 0 -1 0 0 0 0 0 7 5 0 0 20 0 1 0 99 0 3 0")
    assert (st.comm, st.ticks, st.starttime, st.rss) == ("a) b (c)", 12, 99, 3)
    assert execname("gnome-keyring-d", ["/usr/bin/gnome-keyring-daemon"]) == (
        "gnome-keyring-daemon"
    )
    assert execname("python3", ["/usr/bin/python3.11"]) == "python3"
    assert command("kthreadd", []) == "[kthreadd]"
    assert command("x", ["a" * 300]) == "a" * CMD_MAX


def test_registry():
    sources = local_sources()
    try:
        assert [s.name for s in sources] == ["host", "proc", "cgroup", "libvirt"]
        names = {m.name for m in catalog(sources)}
        assert {"cpu.usage", "memory.used", "net.bytes", "proc.cpu", "proc.rss"} <= names
        # container.* on hosts with containers (tests/test_cgroup.py), vm.* with libvirt
        assert len({n for n in names if not n.startswith(("container.", "vm."))}) == 12
    finally:
        for s in sources:
            s.close()
