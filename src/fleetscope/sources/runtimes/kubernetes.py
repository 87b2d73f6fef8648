"""Kubernetes pod, namespace and container names, from the kubelet's log directories.

A container's cgroup holds only its pod's uid and its own id (see
``sources/containers.py``); the names are in the layout the kubelet gives the
logs of every container it runs, whatever the runtime (containerd, CRI-O,
cri-dockerd):

* ``/var/log/pods/<namespace>_<pod>_<pod uid>/<container>/<restarts>.log``:
  the pod's namespace and name by its uid;
* ``/var/log/containers/<pod>_<namespace>_<container>-<container id>.log``
  (a link to the file above): the container's name by its id.

Pod names and namespaces are DNS names, which have no ``_``; container names
are DNS labels, which have no ``_`` either; the id is the 64 hex digits after
the last ``-``. So each entry splits one way only. A container whose entry is
missing (the kubelet writes it as the container starts; pause containers have
none) still gets its pod's name and namespace from the pod directory. Each
directory is listed again only when its modification time changed and an id
or uid is not known yet.
"""

from __future__ import annotations

import os
import re

from fleetscope.sources.runtimes.state import Info, StateError

LOG_ROOT = "/var/log"
_CONTAINER_LOG = re.compile(r"([^_]+)_([^_]+)_([^_]+)-([0-9a-f]{64})\.log")
_POD_DIR = re.compile(r"([^_]+)_([^_]+)_([0-9a-f-]{36})")


class _Listing:
    """One directory's entries parsed by ``parse`` (name -> (key, value) or None), listed again
    when its modification time changed."""

    def __init__(self, path: str, rx: re.Pattern) -> None:
        self.path = path
        self.rx = rx
        self.lists = 0
        self._mtime: int | None = None
        self._known: dict[str, tuple[str, ...]] = {}

    def get(self, key: str) -> tuple[str, ...] | None:
        got = self._known.get(key)
        if got is not None:
            return got
        try:
            mtime = os.stat(self.path).st_mtime_ns
            if mtime != self._mtime:
                self.lists += 1
                names = os.listdir(self.path)
                self._mtime = mtime
                known = {}
                for n in names:
                    m = self.rx.fullmatch(n)
                    if m:
                        *fields, ident = m.groups()
                        known[ident] = tuple(fields)
                self._known = known
        except FileNotFoundError:
            return None  # no kubelet on this host
        except OSError as exc:
            raise StateError(self.path, exc.strerror or str(exc)) from exc
        return self._known.get(key)


class KubeletLogs:
    """Kubernetes names by container id and pod uid, from the kubelet's log layout under
    ``root`` (``/var/log``)."""

    runtime = "kubernetes"

    def __init__(self, root: str = LOG_ROOT) -> None:
        self.containers = _Listing(os.path.join(root, "containers"), _CONTAINER_LOG)
        self.pods = _Listing(os.path.join(root, "pods"), _POD_DIR)

    def lookup(self, ident: str, pod_uid: str = "") -> Info | None:
        got = self.containers.get(ident) if ident else None
        if got is not None:
            pod, namespace, container = got
            return Info(name=container, pod=pod, namespace=namespace)
        got = self.pods.get(pod_uid) if pod_uid else None
        if got is not None:
            namespace, pod = got
            return Info(pod=pod, namespace=namespace)
        return None
