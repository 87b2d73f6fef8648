"""Podman's containers and pods, from libpod's database on disk.

Podman keeps its state in ``<graphroot>/libpod/``: ``bolt_state.db`` (BoltDB,
podman 4 and earlier; read by ``boltdb.py``) or ``db.sql`` (SQLite, podman 4.8
and later's option, 5's default). Both hold each container's configuration as
JSON: ``name``, ``rootfsImageName`` (``RawImageName`` when made from an image
id), ``labels`` and ``pod`` (the pod's id, whose own configuration has its
``name``). The graph roots are those of podman's own configuration: the
``graphroot`` of ``$CONTAINERS_STORAGE_CONF`` or ``/etc/containers/storage.conf``
(``/var/lib/containers/storage`` by default), and of rootless users'
``~/.local/share/containers/storage``.

A database is read again only when its modification time or size changed and
a container it may hold is not known yet; a file that cannot be read or parsed
(half written, another format version) raises :class:`StateError`.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import sqlite3
import tomllib
from collections.abc import Iterable

from fleetscope.sources.runtimes.boltdb import BoltError, BoltFile, Bucket
from fleetscope.sources.runtimes.state import Info, StateError, StateFile

DEFAULT_GRAPHROOT = "/var/lib/containers/storage"
STORAGE_CONF = "/etc/containers/storage.conf"
ROOTLESS_GLOB = "/home/*/.local/share/containers/storage"
BOLT_DB = "libpod/bolt_state.db"
SQLITE_DB = "libpod/db.sql"
CTR_BUCKET, POD_BUCKET, CONFIG_KEY = b"ctr", b"pod", b"config"


def graph_roots(environ: dict[str, str] | None = None) -> list[str]:
    """Where podman keeps containers on this host: root's graph root (from podman's storage.conf)
    and rootless users' (those that exist)."""
    env = os.environ if environ is None else environ
    conf = env.get("CONTAINERS_STORAGE_CONF") or STORAGE_CONF
    root = DEFAULT_GRAPHROOT
    with contextlib.suppress(OSError, tomllib.TOMLDecodeError, AttributeError), open(conf, "rb") as f:
        root = tomllib.load(f).get("storage", {}).get("graphroot") or root
    return [root, *sorted(glob.glob(ROOTLESS_GLOB))]


def _info(config: dict, pods: dict[str, str]) -> Info:
    labels = config.get("labels") or {}
    return Info(
        name=str(config.get("name") or ""),
        image=str(config.get("rootfsImageName") or config.get("RawImageName") or ""),
        pod=pods.get(str(config.get("pod") or ""), ""),
        labels={str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {},
    )


def read_bolt(path: str) -> dict[str, Info]:
    """Every container of a ``bolt_state.db``, by full id."""
    try:
        db = BoltFile.open(path)
        pods = {}
        for pid, bucket in _buckets(db.root.bucket(POD_BUCKET)):
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                pods[pid] = str(json.loads(bucket.get(CONFIG_KEY)).get("name") or "")
        out = {}
        for cid, bucket in _buckets(db.root.bucket(CTR_BUCKET)):
            raw = bucket.get(CONFIG_KEY)
            if isinstance(raw, bytes):
                out[cid] = _info(json.loads(raw), pods)
        return out
    except (BoltError, ValueError, TypeError, AttributeError) as exc:
        raise StateError(path, str(exc)) from exc


def _buckets(parent: Bucket | None) -> Iterable[tuple[str, Bucket]]:
    if parent is None:
        return
    for key, value in parent.items():
        if isinstance(value, Bucket):
            yield key.decode("utf-8", "replace"), value


def read_sqlite(path: str) -> dict[str, Info]:
    """Every container of a ``db.sql`` (tables ContainerConfig and PodConfig), by full id."""
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=0.5)
        try:
            pods = {pid: name for pid, name in con.execute("SELECT ID, Name FROM PodConfig")}
            return {cid: _info(json.loads(cfg), pods)
                    for cid, cfg in con.execute("SELECT ID, JSON FROM ContainerConfig")}
        finally:
            con.close()
    except (sqlite3.Error, ValueError, TypeError, AttributeError) as exc:
        raise StateError(path, str(exc)) from exc


class PodmanState:
    """Podman's containers on this host, by full id (see the module's doc)."""

    runtime = "podman"

    def __init__(self, roots: list[str] | None = None) -> None:
        self.roots = graph_roots() if roots is None else roots
        self._files = [StateFile(os.path.join(r, name), reader) for r in self.roots
                       for name, reader in ((SQLITE_DB, read_sqlite), (BOLT_DB, read_bolt))]

    def lookup(self, ident: str, pod_uid: str = "") -> Info | None:
        """The container with full id ``ident``, or None. Raises StateError when a database
        that may hold it cannot be read (the others are still asked)."""
        error = None
        for f in self._files:
            try:
                got = f.lookup(ident)
            except StateError as exc:
                error = exc
                continue
            if got is not None:
                return got
        if error is not None:
            raise error
        return None
