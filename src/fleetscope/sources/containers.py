"""Container and virtual machine names from cgroup paths.

A pure module: :func:`resolve` maps a cgroup path (relative to its hierarchy's
root, as ``/proc/<pid>/cgroup`` shows it) to a :class:`Container`: its name,
the runtime that made it, and the Kubernetes pod or virtual machine it belongs
to where the path says so. The rules, in order (the first match wins; the
innermost matching path component decides):

============  =====================================================================  ==================
runtime       path shapes                                                            name
============  =====================================================================  ==================
containerd    ``/kubepods/<qos>/pod<uid>/<id>``,                                     id[:12], pod=uid
              ``.../kubepods-<qos>-pod<uid>.slice/cri-containerd-<id>.scope``,
              ``/<namespace>/<id>`` is not recognised (ambiguous), but
              ``/system.slice/nerdctl-<id>.scope`` is
cri-o         ``.../crio-<id>.scope``                                                id[:12], pod=uid
docker        ``/docker/<id>``, ``/system.slice/docker-<id>.scope``                  id[:12]
podman        ``.../libpod-<id>.scope``, ``/libpod_parent/libpod-<id>``              id[:12]
lxc           ``/lxc/<name>``, ``/lxc.payload.<name>``, ``/lxc.payload/<name>``      name
libvirt       ``/machine.slice/machine-qemu\\x2d<n>\\x2d<name>.scope``,              name, vm=name
              ``/machine/qemu-<n>-<name>.libvirt-qemu`` (without systemd),
              ``/machine/<name>.libvirt-qemu`` (before libvirt 6; also lxc, xen)
nspawn        ``/machine.slice/machine-<name>.scope``                                name
systemd       ``<name>.service``, ``<name>.scope``, ``<name>.slice``                 unit name
cgroup        anything else                                                          the path
============  =====================================================================  ==================

Kubernetes cgroups only hold ids (the pod's uid and the container id); names
need the runtime's API. Docker short ids are 12 characters, as ``docker ps``
shows them. ``vm`` is the libvirt domain name for a virtual machine's cgroup.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import NamedTuple

from fleetscope.model.hostmetrics import HOST_CONTAINER, HOST_RUNTIME

# Runtimes whose cgroup is a whole container: its sub-cgroups are not containers of their own.
CONTAINER_RUNTIMES = frozenset({"containerd", "cri-o", "docker", "podman", "lxc", "libvirt", "nspawn"})
SHORT_ID = 12


class Container(NamedTuple):
    """What a cgroup path says about the container it belongs to ("" where it says nothing).

    ``id`` is the runtime's full container id where the path holds one (the runtime's state is
    looked up by it: ``sources/runtimes/``); ``name`` is then its first 12 characters until the
    runtime's own name is known."""

    name: str
    runtime: str
    pod: str = ""
    vm: str = ""
    id: str = ""


# The host itself, as a container: what no container accounts for (``container.cpu``'s and
# ``cpu.usage``'s host row).
HOST = Container(HOST_CONTAINER, HOST_RUNTIME)
# The fields that name a container, on every metric that has them.

_HEX64 = r"([0-9a-f]{64})"
_POD = re.compile(r"(?:^|-)pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})"
                  r"(?:\.slice)?$")
# (regex on one path component, runtime); group 1 is the id or name.
_COMPONENT_RULES: tuple[tuple[re.Pattern, str], ...] = (
    (re.compile(r"cri-containerd-" + _HEX64 + r"\.scope"), "containerd"),
    (re.compile(r"nerdctl-" + _HEX64 + r"\.scope"), "containerd"),
    (re.compile(r"crio-" + _HEX64 + r"\.scope"), "cri-o"),
    (re.compile(r"docker-" + _HEX64 + r"\.scope"), "docker"),
    (re.compile(r"libpod-(?:conmon-)?" + _HEX64 + r"(?:\.scope)?"), "podman"),
    (re.compile(r"lxc\.payload\.(.+)"), "lxc"),
    (re.compile(r"lxc\.monitor\.(.+)"), "lxc"),
)
_MACHINE = re.compile(r"machine-(qemu|kvm|lxc|xen|libxl|vz|vmware|bhyve)\\x2d\d+\\x2d(.+)\.scope")
# libvirt without systemd: /machine/<driver>-<domain id>-<name>.libvirt-<driver> (the prefix
# since libvirt 6; the name alone before).
_MACHINE_OLD = re.compile(r"(?:(?:qemu|lxc|xen|libxl)-\d+-)?(.+)\.libvirt-(qemu|lxc|xen|libxl)")
_NSPAWN = re.compile(r"machine-(.+)\.scope")
_UNIT = re.compile(r".+\.(service|scope|slice)")


def _unescape(name: str) -> str:
    """Undo systemd's unit name escaping (``\\x2d`` for ``-`` and so on)."""
    return re.sub(r"\\x([0-9a-fA-F]{2})", lambda m: chr(int(m.group(1), 16)), name)


@lru_cache(maxsize=4096)
def resolve(path: str) -> Container:
    """The container that cgroup ``path`` (e.g. ``/system.slice/docker-<id>.scope``) belongs to."""
    parts = [p for p in path.split("/") if p]
    if not parts:
        return HOST
    pod = ""
    for p in parts:
        m = _POD.search(p)
        if m:
            pod = m.group(1).replace("_", "-")
    # Innermost first: a container's own cgroup may sit under slices and pods.
    for i in range(len(parts) - 1, -1, -1):
        p = parts[i]
        for rx, runtime in _COMPONENT_RULES:
            m = rx.fullmatch(p)
            if m:
                return _named(m.group(1), runtime, pod)
        parent = parts[i - 1] if i > 0 else ""
        if re.fullmatch(_HEX64, p):
            if pod:
                return _named(p, "containerd", pod)
            if parent == "docker":
                return _named(p, "docker", pod)
        if parent in ("lxc", "lxc.payload") and i == 1:
            return Container(p, "lxc")
        m = _MACHINE.fullmatch(p)
        if m:
            name = _unescape(m.group(2))
            return Container(name, "libvirt", vm=name)
        m = _MACHINE_OLD.fullmatch(p)
        if m and parent == "machine":
            return Container(m.group(1), "libvirt", vm=m.group(1))
    for p in reversed(parts):
        m = _NSPAWN.fullmatch(p)
        if m:
            return Container(_unescape(m.group(1)), "nspawn")
        if _UNIT.fullmatch(p):
            return Container(_unescape(p), "systemd")
    return Container("/" + "/".join(parts), "cgroup")


def _named(ident: str, runtime: str, pod: str) -> Container:
    if re.fullmatch(_HEX64, ident):
        return Container(ident[:SHORT_ID], runtime, pod, id=ident)
    return Container(ident, runtime, pod)


def is_container(c: Container) -> bool:
    """Whether ``c`` is a whole container or VM (its sub-cgroups belong to it)."""
    return c.runtime in CONTAINER_RUNTIMES


def process_cgroup(data: bytes) -> str:
    """The cgroup path that places a process, from the content of ``/proc/<pid>/cgroup``.

    The first of these that is not the root wins: the v1 ``cpuacct`` (or ``cpu``)
    hierarchy, the v2 hierarchy (``0::``), v1 ``memory``, v1 ``name=systemd``, any
    other line; "/" if every one is the root.
    """
    paths: dict[str, str] = {}
    for line in data.decode("utf-8", "replace").splitlines():
        _, sep, rest = line.partition(":")
        controllers, sep2, path = rest.partition(":")
        if not (sep and sep2):
            continue
        for c in controllers.split(",") if controllers else [""]:
            paths.setdefault(c, path)
    for key in ("cpuacct", "cpu", "", "memory", "name=systemd"):
        p = paths.get(key)
        if p and p != "/":
            return p
    for p in paths.values():
        if p and p != "/":
            return p
    return "/"
