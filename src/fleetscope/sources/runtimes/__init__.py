"""Containers' names, images, pods, namespaces and labels, from their runtimes' own state.

A cgroup path names a container only by its runtime's id (``sources/containers.py``);
:class:`Names` turns that into what an operator types, once per new container,
from the state each runtime keeps on disk (no daemon round trip):

==========================  ===================================================  ==========================
runtime (from the cgroup)   state read                                           gives
==========================  ===================================================  ==========================
podman                      libpod's database (``podman.py``: BoltDB or SQLite)  name, image, pod, labels
docker                      ``containers/<id>/config.v2.json`` (``docker.py``)   name, image, labels (and
                                                                                 Kubernetes names, if any)
any, in a Kubernetes pod    the kubelet's log layout (``kubernetes.py``)         container name, pod,
                                                                                 namespace
==========================  ===================================================  ==========================

Other runtimes are named by their cgroup path already (LXC, libvirt, nspawn,
systemd units). A container whose runtime does not know it (yet) keeps its
short id and is asked again every :data:`RETRY_AFTER` seconds; a state file
that cannot be read or parsed (half written, unreadable, another format
version) is skipped and reported by :meth:`Names.warning`, which the sources
attach to their rows as a warning on the instrumentations; nothing fails.

Labels: the operator picks the label keys to make fields of
(``--container-label app``); a key becomes a field named like it, every
character but letters, digits and ``_`` turned into ``_``
(``app.kubernetes.io/name`` is ``app_kubernetes_io_name``); "" where a
container has no such label. Labels come from Docker's and podman's configuration
only. A Kubernetes container run by containerd or CRI-O gets its container, pod and
namespace names and no labels: the kubelet's pod directories hold none, and the pod's
labels are in the runtime (the CRI socket's answers, containerd's metadata database,
CRI-O's container config), none of which is read here; one run by Docker
(dockershim) carries them in its ``config.v2.json`` and gets them.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Sequence
from typing import Protocol

from fleetscope.sources.containers import Container
from fleetscope.sources.runtimes.docker import DockerState
from fleetscope.sources.runtimes.kubernetes import KubeletLogs
from fleetscope.sources.runtimes.podman import PodmanState
from fleetscope.sources.runtimes.state import Info, StateError

__all__ = ["Info", "Names", "StateError", "label_field"]

RETRY_AFTER = 5.0  # seconds before asking the runtimes again about a container they did not know
MAX_CACHED = 16384  # containers remembered (past that, all are forgotten and looked up again)
MAX_LABELS = 16
# Fields that container metrics have already: a label may not take their names.
RESERVED = frozenset({"hostname", "container", "runtime", "pod", "namespace", "image", "vm", "cpu",
                      "mode", "utilization", "type", "disk", "direction", "resource", "nic",
                      "pid", "execname", "user", "cmd", "rss"})
_NOT_NAME = re.compile(r"[^A-Za-z0-9_]")


def label_field(key: str) -> str:
    """The field name of container label ``key``; raises ValueError for one that cannot be."""
    name = _NOT_NAME.sub("_", key.strip())
    if not name or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", name):
        raise ValueError(f"{key!r} cannot be a field name (1 to 64 letters, digits, '_', '.', '-' or "
                         "'/', not starting with a digit)")
    if name in RESERVED:
        raise ValueError(f"{key!r} would be the field {name!r}, which container metrics have already")
    return name


class Runtime(Protocol):
    runtime: str

    def lookup(self, ident: str, pod_uid: str = "") -> Info | None: ...


class Names:
    """Runtime names of containers, looked up once per container and kept.

    ``labels``: the label keys to make fields of. ``podman``, ``docker`` and ``kubernetes``
    default to the state of this host's runtimes. :attr:`fields` names what :meth:`describe`
    gives besides the container: image, namespace, then one field per label."""

    def __init__(self, labels: Sequence[str] = (), podman: Runtime | None = None,
                 docker: Runtime | None = None, kubernetes: Runtime | None = None,
                 retry_after: float = RETRY_AFTER) -> None:
        if len(labels) > MAX_LABELS:
            raise ValueError(f"at most {MAX_LABELS} container labels")
        fields = [label_field(k) for k in labels]
        if len(set(fields)) != len(fields):
            raise ValueError("two container labels would make the same field")
        self.labels = tuple(labels)
        self.fields = ("image", "namespace", *fields)
        self.retry_after = retry_after
        self._podman = PodmanState() if podman is None else podman
        self._docker = DockerState() if docker is None else docker
        self._kubernetes = KubeletLogs() if kubernetes is None else kubernetes
        # container -> (named, values of fields, the row's naming fields: see row())
        self._cache: dict[Container, tuple[Container, tuple[str, ...], tuple[str, ...]]] = {}
        self._retry: dict[Container, float] = {}  # container not named yet -> when to ask again
        self._problems: dict[str, tuple[str, str]] = {}  # state file -> (runtime, why it was skipped)
        self._nothing = ("",) * len(self.fields)
        self.lookups: Counter[str] = Counter()  # runtime -> state lookups made

    def _entry(self, c: Container) -> tuple[Container, tuple[str, ...], tuple[str, ...]]:
        """One dict look-up for a container seen before; its runtime's state is read only for a
        new container, or one not named yet every ``retry_after`` seconds."""
        got = self._cache.get(c)
        if got is not None:
            retry = self._retry.get(c)
            if retry is None or time.monotonic() < retry:
                return got
        if len(self._cache) >= MAX_CACHED:
            self._cache.clear()
            self._retry.clear()
        (named, extra), known = self._lookup(c)
        got = self._cache[c] = (named, extra, (named.name, named.runtime, named.pod, named.vm, *extra))
        if known:
            self._retry.pop(c, None)
        else:
            self._retry[c] = time.monotonic() + self.retry_after
        return got

    def describe(self, c: Container) -> tuple[Container, tuple[str, ...]]:
        """``c`` with its runtime's name (and pod name), and the values of :attr:`fields`."""
        got = self._entry(c)
        return got[0], got[1]

    def named(self, c: Container) -> Container:
        """``c`` with its runtime's name: :meth:`describe` without the other fields."""
        return self._entry(c)[0]

    def row(self, c: Container) -> tuple[str, ...]:
        """The naming fields of a ``container.*`` row: container, runtime, pod, vm, then
        :attr:`fields`."""
        return self._entry(c)[2]

    def warning(self) -> str:
        """Why state files were skipped ("" when none was): for the rows of each tick."""
        if not self._problems:
            return ""
        return "container names: skipped " + "; ".join(
            f"{path} ({reason})" for path, (_, reason) in sorted(self._problems.items()))

    def _lookup(self, c: Container) -> tuple[tuple[Container, tuple[str, ...]], bool]:
        """(described, whether a runtime knew it); containers named by their path need nothing."""
        asked: list[Runtime] = []
        if c.id and c.runtime == "podman":
            asked.append(self._podman)
        elif c.id and c.runtime == "docker":
            asked.append(self._docker)
        if c.pod:
            asked.append(self._kubernetes)
        if not asked:
            return (c, self._nothing), True
        info = Info()
        for rt in asked:
            self.lookups[rt.runtime] += 1
            try:
                got = rt.lookup(c.id, c.pod)
            except StateError as exc:
                self._problems[exc.path] = (rt.runtime, exc.reason)
                continue
            self._forget_problems(rt)
            if got is not None:
                info = _merge(info, got)
        if not (info.name or info.pod):
            return (c, self._nothing), False
        named = c._replace(name=info.name or c.name, pod=info.pod or c.pod)
        extra = (info.image, info.namespace, *(info.labels.get(k, "") for k in self.labels))
        # Named, but not yet by its own name (a pod known before its container): ask again.
        return (named, extra), bool(info.name)

    def _forget_problems(self, rt: Runtime) -> None:
        """A runtime answered without error: its files' earlier problems are over."""
        for path in [p for p, (runtime, _) in self._problems.items() if runtime == rt.runtime]:
            del self._problems[path]


def _merge(a: Info, b: Info) -> Info:
    """``a`` with what ``b`` adds (``a`` wins where both say something)."""
    return Info(name=a.name or b.name, image=a.image or b.image, pod=a.pod or b.pod,
                namespace=a.namespace or b.namespace, labels={**b.labels, **a.labels})
