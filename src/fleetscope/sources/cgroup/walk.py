"""Which cgroups of a hierarchy are containers: walking the tree, and noticing when to walk again.

Walking down a hierarchy, a cgroup that
:func:`~fleetscope.sources.containers.resolve` recognises as a whole container
(Docker, Podman, containerd, CRI-O, LXC, a libvirt machine, an nspawn machine)
is one, and its sub-cgroups belong to it; otherwise a cgroup without
sub-cgroups (a systemd service or scope, a plain leaf cgroup) is one. So
containers do not overlap.

The walk is redone at a tick where the link count of a directory it listed
changed (a cgroup made or removed below it; a few stats per tick), and every
``rescan_every`` seconds in any case; a container whose files are gone is
dropped (:meth:`Walker.forget`) and the hierarchy walked again next time.
"""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from collections.abc import Callable, Iterable

from fleetscope.sources.cgroup.hierarchy import Hierarchy
from fleetscope.sources.containers import Container, is_container, resolve
from fleetscope.sources.procfs import clock

# A directory's link count is 2 plus its number of sub-directories (kernfs keeps it so).
LEAF_NLINK = 2


class Walker:
    """The containers of each hierarchy, walked again when needed.

    ``reads`` counts walks (``walk``) and change checks (``check``); ``on_walk(mount,
    containers)`` is called after each walk (to let go of what belonged to cgroups gone)."""

    def __init__(self, rescan_every: float, reads: Counter[str],
                 on_walk: Callable[[str, dict[str, Container]], None]) -> None:
        self.rescan_every = rescan_every
        self.reads = reads
        self.on_walk = on_walk
        self._walked: dict[str, float] = {}  # mount -> clock() of its last walk
        self._containers: dict[str, dict[str, Container]] = {}  # mount -> {path: container}
        self._listed: dict[str, dict[str, int]] = {}  # mount -> {dir walked: its link count}
        self._checked: set[str] = set()  # mounts checked for changes at this tick

    def begin_tick(self) -> None:
        self._checked.clear()

    def containers(self, h: Hierarchy) -> dict[str, Container]:
        """The containers of hierarchy ``h`` by cgroup path.

        Walked again every ``rescan_every`` seconds, and at a tick where the link count of a
        directory the last walk listed changed (a cgroup was made or removed below it): a few
        stats per tick instead of a walk."""
        now = clock()
        mount = h.mount
        last = self._walked.get(mount)
        stale = last is None or now - last >= self.rescan_every
        if not stale and mount not in self._checked:
            self._checked.add(mount)
            stale = self._changed(mount)
        if stale:
            self.reads["walk"] += 1
            found: dict[str, Container] = {}
            listed: dict[str, int] = {}
            with contextlib.suppress(OSError):  # an unmounted hierarchy has no containers
                self._walk(mount, "", os.stat(mount).st_nlink, found, listed)
            self._containers[mount] = found
            self._listed[mount] = listed
            self._walked[mount] = now
            self._checked.add(mount)
            self.on_walk(mount, found)
        return self._containers[mount]

    def known(self, mount: str) -> dict[str, Container]:
        """The containers of the last walk of ``mount`` (none if it was never walked)."""
        return self._containers.get(mount, {})

    def forget(self, mount: str, path: str) -> None:
        """Drop container ``path`` (its files are gone) and walk ``mount`` again next time."""
        self._walked.pop(mount, None)
        self._containers.get(mount, {}).pop(path, None)

    def _changed(self, mount: str) -> bool:
        self.reads["check"] += 1
        for rel, nlink in self._listed.get(mount, {}).items():
            try:
                if os.stat(mount + rel).st_nlink != nlink:
                    return True
            except OSError:
                return True
        return False

    def _walk(self, top: str, rel: str, nlink: int, found: dict[str, Container],
              listed: dict[str, int]) -> None:
        """Add the containers under ``top + rel`` to ``found``, and the directories listed with
        their link count to ``listed``.

        A leaf cgroup is recognised by one stat of its link count (LEAF_NLINK) instead of
        listing its ~30 files."""
        try:
            subs = [e for e in os.scandir(top + rel) if e.is_dir(follow_symlinks=False)]
        except OSError:
            return
        listed[rel] = nlink
        for e in subs:
            path = f"{rel}/{e.name}"
            c = resolve(path)
            if is_container(c):
                found[path] = c
                continue
            try:
                n = e.stat(follow_symlinks=False).st_nlink
            except OSError:
                continue
            if n == LEAF_NLINK or (n < LEAF_NLINK and not _has_subdirs(top + path)):
                found[path] = c  # a leaf
            else:
                self._walk(top, path, n, found, listed)


def _has_subdirs(d: str) -> bool:
    """Whether directory ``d`` has sub-directories (where link counts do not tell)."""
    try:
        return any(e.is_dir(follow_symlinks=False) for e in os.scandir(d))
    except OSError:
        return False


def covered(path: str, taken: dict[str, Container], holders: set[str]) -> bool:
    """Whether cgroup ``path`` of one hierarchy is, sits inside, or holds (``holders``: the
    ancestors of ``taken``'s paths) one of the containers ``taken`` from another."""
    if path in taken or path in holders:
        return True
    i = path.rfind("/")
    while i > 0:
        if path[:i] in taken:
            return True
        i = path.rfind("/", 0, i)
    return False


def ancestors(paths: Iterable[str]) -> set[str]:
    """Every proper ancestor (below the root) of each of ``paths``."""
    out = set()
    for p in paths:
        i = p.rfind("/")
        while i > 0:
            out.add(p[:i])
            i = p.rfind("/", 0, i)
    return out
