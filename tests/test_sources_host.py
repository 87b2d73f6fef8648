"""HostSource against this machine's real /proc."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections import defaultdict

import psutil
import pytest

from fleetscope.model.errors import NotFound
from fleetscope.model.metrics import INTERVAL
from fleetscope.sources import host
from fleetscope.sources.container_cpu import CPU_MODES
from fleetscope.sources.host import METRICS, HostSource

MiB = 1 << 20
LOOPBACK_BYTES = 10 * MiB
INTERVAL_METRICS = [m.name for m in METRICS if m.kind == INTERVAL]


def send_over_loopback(nbytes: int) -> None:
    """Send ``nbytes`` from one local TCP socket to another and wait until all arrived."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        received = 0

        def sink() -> None:
            nonlocal received
            conn, _ = server.accept()
            with conn:
                while chunk := conn.recv(1 << 16):
                    received += len(chunk)

        t = threading.Thread(target=sink)
        t.start()
        with socket.create_connection(server.getsockname()) as client:
            client.sendall(b"x" * nbytes)
        t.join(10)
    assert received == nbytes


def collect_all(src: HostSource) -> dict:
    src.begin_tick(time.time())
    return {m.name: src.collect(m.name) for m in METRICS}


@pytest.fixture(scope="module")
def ticks():
    """Two ticks about 1 s apart, with 10 MiB sent over loopback in between."""
    src = HostSource()
    first = collect_all(src)
    reads_first = dict(src.reads)
    t0 = time.monotonic()
    send_over_loopback(LOOPBACK_BYTES)
    time.sleep(max(0.0, 1.0 - (time.monotonic() - t0)))
    second = collect_all(src)
    between = time.monotonic() - t0
    return src, first, reads_first, second, between


def test_metrics_and_fields():
    fields = {m.name: (m.unit.name, m.kind, tuple(f.name for f in m.fields)) for m in METRICS}
    assert fields == {
        "cpu.usage": ("s", "interval", ("hostname", "cpu", "mode", "container", "runtime")),
        "cpu.steal": ("s", "interval", ("hostname", "cpu")),
        "cpu.load": ("number", "point", ("hostname", "period")),
        "memory.used": ("bytes", "point", ("hostname", "type")),
        "disk.ops": ("number", "interval", ("hostname", "disk", "direction")),
        "disk.bytes": ("bytes", "interval", ("hostname", "disk", "direction")),
        "disk.busy": ("percent", "point", ("hostname", "disk")),
        "net.bytes": ("bytes", "interval", ("hostname", "nic", "direction")),
        "net.packets": ("number", "interval", ("hostname", "nic", "direction")),
        "net.errors": ("number", "interval", ("hostname", "nic", "direction", "type")),
    }
    assert all(f.kind == "discrete" for m in METRICS for f in m.fields)


def test_first_tick_gives_no_rates(ticks):
    _, first, _, _, _ = ticks
    for name in [*INTERVAL_METRICS, "disk.busy"]:  # disk.busy is a rate of busy time
        assert first[name].rows == [], name
    assert len(first["cpu.load"].rows) == 3
    assert len(first["memory.used"].rows) == 5


def test_columns_match_fields(ticks):
    _, _, _, second, _ = ticks
    for m in METRICS:
        rows = second[m.name]
        assert rows.columns == tuple(f.name for f in m.fields[1:])
        for row in rows.rows:
            assert len(row) == len(rows.columns) + 1
            assert all(isinstance(v, str) for v in row[:-1])
            assert isinstance(row[-1], int | float) and row[-1] >= 0


def test_each_file_read_once_per_tick(ticks):
    src, _, reads_first, _, _ = ticks
    files = {"stat", "loadavg", "meminfo", "diskstats", "net/dev"}
    assert reads_first == dict.fromkeys(files, 1)
    assert dict(src.reads) == dict.fromkeys(files, 2)


def test_cpu_usage_modes_add_up_to_one_cpu_second_per_second(ticks):
    _, _, _, second, _ = ticks
    per_cpu = defaultdict(dict)
    for cpu, mode, container, runtime, value in second["cpu.usage"].rows:
        assert (container, runtime) == ("/", "host")  # no container reader: all is the host's
        per_cpu[cpu][mode] = value
    assert sorted(per_cpu, key=int) == [str(i) for i in range(psutil.cpu_count())]
    for cpu, modes in per_cpu.items():
        assert tuple(modes) == CPU_MODES
        assert sum(modes.values()) == pytest.approx(1.0, abs=0.1), (cpu, modes)


def test_cpu_load(ticks):
    _, _, _, second, _ = ticks
    load = dict(second["cpu.load"].rows)
    assert list(load) == ["1m", "5m", "15m"]
    for got, want in zip(load.values(), os.getloadavg(), strict=True):
        assert got == pytest.approx(want, abs=0.5)


def test_memory_types_match_psutil(ticks):
    _, _, _, second, _ = ticks
    mem = dict(second["memory.used"].rows)
    assert list(mem) == ["used", "cached", "buffers", "free", "swap"]
    vm, sw = psutil.virtual_memory(), psutil.swap_memory()
    # The four RAM types partition the total.
    assert mem["used"] + mem["cached"] + mem["buffers"] + mem["free"] == vm.total
    slack = 64 * MiB  # the two reads are a moment apart
    assert mem["cached"] == pytest.approx(vm.cached, abs=slack)
    assert mem["buffers"] == pytest.approx(vm.buffers, abs=slack)
    assert mem["free"] == pytest.approx(vm.free, abs=slack)
    assert mem["swap"] == pytest.approx(sw.used, abs=slack)


def test_disk_metrics(ticks):
    _, _, _, second, _ = ticks
    disks = set(host.read_diskstats())
    assert not any(d.startswith(("loop", "ram", "zram")) and not any(c)
                   for d, c in host.read_diskstats().items())
    for name in ("disk.ops", "disk.bytes"):
        rows = second[name].rows
        assert {r[0] for r in rows} <= disks
        assert {r[1] for r in rows} <= {"read", "write"}
        assert len(rows) == 2 * len({r[0] for r in rows})
    for disk, busy in second["disk.busy"].rows:
        assert disk in disks
        assert 0 <= busy <= 100


def test_net_bytes_show_loopback_traffic(ticks):
    _, _, _, second, between = ticks
    nics = set(psutil.net_io_counters(pernic=True))
    lo = {}
    for nic, direction, value in second["net.bytes"].rows:
        assert nic in nics
        if nic == "lo":
            lo[direction] = value
    assert set(lo) == {"in", "out"}
    # Bytes per second times the seconds between the reads: at least what was sent
    # (plus TCP/IP headers), and not absurdly more.
    for direction in ("in", "out"):
        assert LOOPBACK_BYTES <= lo[direction] * between < 3 * LOOPBACK_BYTES
    packets = {(r[0], r[1]): r[2] for r in second["net.packets"].rows}
    assert packets[("lo", "in")] * between >= LOOPBACK_BYTES / 65536
    errors = second["net.errors"].rows
    assert {(r[1], r[2]) for r in errors if r[0] == "lo"} == {
        ("in", "error"), ("out", "error"), ("in", "drop"), ("out", "drop"),
    }


def test_nothing_read_for_metrics_not_collected():
    src = HostSource()
    src.begin_tick(time.time())
    rows = src.collect("memory.used")
    assert src.collect("memory.used") is rows  # asked twice in a tick: one answer
    assert dict(src.reads) == {"meminfo": 1}
    src.begin_tick(time.time())
    src.collect("cpu.load")
    assert dict(src.reads) == {"meminfo": 1, "loadavg": 1}


def test_interval_rows_from_second_collection_of_that_metric():
    src = HostSource()
    src.begin_tick(time.time())
    src.collect("disk.ops")
    src.begin_tick(time.time())
    assert src.collect("disk.ops").rows or not host.read_diskstats()
    assert src.collect("disk.bytes").rows == []  # first time disk.bytes is collected
    assert src.reads["diskstats"] == 2


def test_stale_previous_reading_is_not_used(monkeypatch):
    src = HostSource()
    src.begin_tick(time.time())
    src.collect("cpu.usage")
    monkeypatch.setattr(host, "MAX_GAP", 0.0)
    src.begin_tick(time.time())
    assert src.collect("cpu.usage").rows == []


def test_unknown_metric():
    src = HostSource()
    src.begin_tick(time.time())
    with pytest.raises(NotFound):
        src.collect("cpu.nope")
