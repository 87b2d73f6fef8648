"""Docker's containers, from each container's ``config.v2.json`` on disk.

Docker keeps a container's configuration in
``<data-root>/containers/<id>/config.v2.json`` (``data-root`` of
``/etc/docker/daemon.json``, ``/var/lib/docker`` by default): ``Name`` (with a
leading ``/``), ``Config.Image`` (the image as the user named it) and
``Config.Labels``. Containers made for Kubernetes (dockershim, cri-dockerd)
carry their pod, namespace and container name as the labels
``io.kubernetes.pod.name``, ``io.kubernetes.pod.namespace`` and
``io.kubernetes.container.name``, which win. One small file per container, read
once when the container is first seen.
"""

from __future__ import annotations

import contextlib
import json
import os

from fleetscope.sources.procfs import read_file
from fleetscope.sources.runtimes.state import Info, StateError

DEFAULT_ROOT = "/var/lib/docker"
DAEMON_JSON = "/etc/docker/daemon.json"
K8S_POD = "io.kubernetes.pod.name"
K8S_NAMESPACE = "io.kubernetes.pod.namespace"
K8S_CONTAINER = "io.kubernetes.container.name"


def data_root(daemon_json: str = DAEMON_JSON) -> str:
    """Docker's data root, as its daemon configuration says (the default otherwise)."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        return str(json.loads(read_file(daemon_json)).get("data-root") or DEFAULT_ROOT)
    return DEFAULT_ROOT


def parse_config(path: str, data: bytes) -> Info:
    """The :class:`Info` of one ``config.v2.json``."""
    try:
        doc = json.loads(data)
        config = doc.get("Config") or {}
        labels = {str(k): str(v) for k, v in (config.get("Labels") or {}).items()}
        name = str(doc.get("Name") or "").lstrip("/")
        image = str(config.get("Image") or "")
    except (ValueError, TypeError, AttributeError) as exc:
        raise StateError(path, f"not a Docker container configuration ({exc})") from exc
    return Info(name=labels.get(K8S_CONTAINER) or name, image=image, pod=labels.get(K8S_POD, ""),
                namespace=labels.get(K8S_NAMESPACE, ""), labels=labels)


class DockerState:
    """Docker's containers on this host, by full id."""

    runtime = "docker"

    def __init__(self, root: str | None = None) -> None:
        self.root = data_root() if root is None else root

    def lookup(self, ident: str, pod_uid: str = "") -> Info | None:
        path = os.path.join(self.root, "containers", ident, "config.v2.json")
        try:
            data = read_file(path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateError(path, exc.strerror or str(exc)) from exc
        return parse_config(path, data)
