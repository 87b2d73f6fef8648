"""Container names from real-shaped cgroup paths of each runtime (sources/containers.py)."""

from __future__ import annotations

import pytest

from fleetscope.sources.containers import Container, is_container, process_cgroup, resolve

ID = "3f4e5d6c7b8a9f0e1d2c3b4a5f6e7d8c9b0a1f2e3d4c5b6a7f8e9d0c1b2a3f4e"
UID = "0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d"

CASES = [
    # Docker, cgroupfs driver and systemd driver
    (f"/docker/{ID}", Container(ID[:12], "docker")),
    (f"/system.slice/docker-{ID}.scope", Container(ID[:12], "docker")),
    (f"/docker/{ID}/init.scope", Container(ID[:12], "docker")),  # a sub-cgroup of the container
    # Podman, rootful, rootless and cgroupfs
    (f"/machine.slice/libpod-{ID}.scope", Container(ID[:12], "podman")),
    (f"/machine.slice/libpod-{ID}.scope/container", Container(ID[:12], "podman")),
    (f"/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope",
     Container(ID[:12], "podman")),
    (f"/libpod_parent/libpod-{ID}", Container(ID[:12], "podman")),
    # Kubernetes: containerd and CRI-O, cgroupfs and systemd drivers
    (f"/kubepods/burstable/pod{UID}/{ID}", Container(ID[:12], "containerd", UID)),
    (f"/kubepods/pod{UID}/{ID}", Container(ID[:12], "containerd", UID)),
    ("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod"
     f"{UID.replace('-', '_')}.slice/cri-containerd-{ID}.scope", Container(ID[:12], "containerd", UID)),
    (f"/kubepods.slice/kubepods-pod{UID.replace('-', '_')}.slice/crio-{ID}.scope",
     Container(ID[:12], "cri-o", UID)),
    (f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID.replace('-', '_')}"
     f".slice/docker-{ID}.scope", Container(ID[:12], "docker", UID)),
    (f"/system.slice/nerdctl-{ID}.scope", Container(ID[:12], "containerd")),
    # LXC and LXD
    ("/lxc/web01", Container("web01", "lxc")),
    ("/lxc/web01/ns/system.slice", Container("web01", "lxc")),
    ("/lxc.payload.web01", Container("web01", "lxc")),
    ("/lxc.payload.web01/system.slice/nginx.service", Container("web01", "lxc")),
    ("/lxc.monitor.web01", Container("web01", "lxc")),
    # libvirt machines (systemd escaping) and the old cgroupfs layout; nspawn
    (r"/machine.slice/machine-qemu\x2d1\x2dtestvm.scope", Container("testvm", "libvirt", vm="testvm")),
    (r"/machine.slice/machine-qemu\x2d12\x2dweb\x2dfront.scope/libvirt/vcpu0",
     Container("web-front", "libvirt", vm="web-front")),
    (r"/machine.slice/machine-lxc\x2d3\x2dbox.scope", Container("box", "libvirt", vm="box")),
    ("/machine/db1.libvirt-qemu", Container("db1", "libvirt", vm="db1")),
    ("/machine.slice/machine-debian.scope", Container("debian", "nspawn")),
    # systemd units and slices
    ("/system.slice/nginx.service", Container("nginx.service", "systemd")),
    ("/system.slice/system-getty.slice/getty@tty1.service", Container("getty@tty1.service", "systemd")),
    ("/user.slice/user-1000.slice/session-4.scope", Container("session-4.scope", "systemd")),
    ("/user.slice", Container("user.slice", "systemd")),
    (r"/system.slice/systemd-fsck@dev-disk-by\x2duuid-1.service",
     Container("systemd-fsck@dev-disk-by-uuid-1.service", "systemd")),
    # plain cgroups and the root
    ("/process_api/890892131f4b", Container("/process_api/890892131f4b", "cgroup")),
    ("/batch/job7/", Container("/batch/job7", "cgroup")),
    ("/", Container("/", "host")),
    ("", Container("/", "host")),
]


@pytest.mark.parametrize(("path", "expected"), CASES, ids=[c[0] or "empty" for c in CASES])
def test_resolve(path: str, expected: Container) -> None:
    got = resolve(path)
    # The full id, where the path holds one, is kept for the runtime's state (sources/runtimes/).
    assert got == expected._replace(id=ID if got.name == ID[:12] else "")


def test_whole_containers() -> None:
    assert is_container(resolve(f"/docker/{ID}"))
    assert is_container(resolve(r"/machine.slice/machine-qemu\x2d1\x2dvm.scope"))
    assert not is_container(resolve("/system.slice/nginx.service"))
    assert not is_container(resolve("/batch/job7"))


def test_process_cgroup_v1_hybrid() -> None:
    data = (b"12:pids:/docker/abc\n9:name=systemd:/system.slice/x.service\n4:memory:/m\n"
            b"2:cpu,cpuacct:/docker/abc\n0::/system.slice/x.service\n")
    assert process_cgroup(data) == "/docker/abc"


def test_process_cgroup_v2_and_root() -> None:
    assert process_cgroup(b"0::/system.slice/nginx.service\n") == "/system.slice/nginx.service"
    assert process_cgroup(b"1:cpu:/\n0::/\n") == "/"
    # the first non-root line when the preferred ones are at the root
    assert process_cgroup(b"4:memory:/process_api/x\n2:cpuacct:/\n0::/\n") == "/process_api/x"
