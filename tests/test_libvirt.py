"""The libvirt source against libvirt's built-in test driver (test:///default)."""

from __future__ import annotations

import time

import pytest

from fleetscope.sources import virt
from fleetscope.sources.virt import METRICS, LibvirtSource, devices

if not virt.available():  # a failure, not a skip: `make test` installs libvirt-python
    pytest.fail("libvirt-python is not installed (make test installs it)", pytrace=False)

GUEST = """<domain type='test'>
  <name>guest2</name>
  <memory unit='KiB'>1048576</memory>
  <currentMemory unit='KiB'>524288</currentMemory>
  <vcpu>3</vcpu>
  <os><type arch='x86_64'>hvm</type></os>
  <devices>
    <disk type='file' device='disk'><source file='/guest/g2'/><target dev='vdb' bus='virtio'/></disk>
    <interface type='network'><source network='default'/><target dev='g2net'/></interface>
  </devices>
</domain>"""


@pytest.fixture
def src():
    s = LibvirtSource("test:///default")
    yield s
    s.close()


def two_ticks(s: LibvirtSource, gap: float = 0.3) -> dict:
    s.begin_tick(0)
    for m in s.metrics():
        s.collect(m.name)
    time.sleep(gap)
    s.begin_tick(1)
    return {m.name: s.collect(m.name) for m in s.metrics()}


def test_metrics_and_columns(src) -> None:
    assert src.hypervisor == "test"
    assert [m.name for m in src.metrics()] == [m.name for m in METRICS]
    got = two_ticks(src)
    for m in src.metrics():
        rows = got[m.name]
        assert rows.columns == tuple(f.name for f in m.fields[1:])
        assert rows.rows, m.name
        for r in rows.rows:
            assert len(r) == len(rows.columns) + 1
            assert r[0] == "test" and r[1] == "test"
            assert r[-1] >= 0


def test_values_match_libvirt(src) -> None:
    got = two_ticks(src)
    dom = src.connection.lookupByName("test")
    ncpu = len(dom.vcpus()[0])
    assert sorted(r[2] for r in got["vm.cpu"].rows) == [str(i) for i in range(ncpu)]
    for r in got["vm.cpu"].rows:
        assert r[3] == pytest.approx(100 * r[4])
    info = dom.info()
    mem = {r[2]: r[3] for r in got["vm.memory"].rows}
    assert mem["balloon_maximum"] == info[1] * 1024
    assert mem["balloon_current"] == info[2] * 1024
    assert mem["rss"] == dom.memoryStats()["rss"] * 1024
    assert {(r[2], r[3]) for r in got["vm.disk"].rows} == {("vda", "read"), ("vda", "write")}
    assert {(r[2], r[3]) for r in got["vm.net"].rows} == {("testnet0", "in"), ("testnet0", "out")}
    assert got["vm.state"].rows == [("test", "test", "running", 1)]


def test_new_paused_and_shut_off_domains(src) -> None:
    import libvirt

    conn = libvirt.open("test:///default")  # read-write; test:///default is shared in a process
    dom = conn.defineXML(GUEST)
    try:
        src.begin_tick(0)
        states = {r[0]: r[2] for r in src.collect("vm.state").rows}
        assert states == {"test": "running", "guest2": "shut off"}
        assert all(r[0] != "guest2" for r in src.collect("vm.memory").rows)  # inactive: no stats
        dom.create()
        dom.suspend()
        got = two_ticks(src)
        assert ("guest2", "test", "paused", 1) in got["vm.state"].rows
        assert sorted(r[2] for r in got["vm.cpu"].rows if r[0] == "guest2") == ["0", "1", "2"]
        assert {r[2] for r in got["vm.disk_ops"].rows if r[0] == "guest2"} == {"vdb"}
        assert {r[2] for r in got["vm.net_packets"].rows if r[0] == "guest2"} == {"g2net"}
        mem = {r[2]: r[3] for r in got["vm.memory"].rows if r[0] == "guest2"}
        assert mem["balloon_maximum"] == 1 << 30 and mem["balloon_current"] == 512 << 20
        dom.destroy()
    finally:
        dom.undefine()
        conn.close()
    src.begin_tick(2)
    assert [r[0] for r in src.collect("vm.state").rows] == ["test"]


def test_first_tick_gives_no_rates(src) -> None:
    src.begin_tick(0)
    for name in ("vm.cpu", "vm.disk", "vm.disk_ops", "vm.net", "vm.net_packets"):
        assert src.collect(name).rows == []
    assert src.reads["list"] == 1  # one listing per tick for every metric


def test_degrades_without_a_connection_or_the_module(monkeypatch) -> None:
    s = LibvirtSource("bogus+nothing:///nowhere")
    assert s.metrics() == []
    monkeypatch.setattr(virt, "_module", lambda: None)
    s = LibvirtSource("test:///default")
    assert s.metrics() == [] and s.connection is None


def test_no_daemon_no_connection(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("FLEETSCOPE_LIBVIRT_URI", raising=False)
    monkeypatch.setattr(virt, "SOCKET_DIR", str(tmp_path))
    assert not virt.daemon_running(str(tmp_path))
    assert LibvirtSource().metrics() == []
    monkeypatch.setenv("FLEETSCOPE_LIBVIRT_URI", "test:///default")
    assert LibvirtSource().hypervisor == "test"


def test_devices_from_xml() -> None:
    assert devices(GUEST) == (["vdb"], ["g2net"])
