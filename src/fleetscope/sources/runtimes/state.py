"""What a runtime's state says about one container, and a state file read again only when it
changed."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import NamedTuple


class Info(NamedTuple):
    """A container as its runtime names it ("" where the runtime says nothing)."""

    name: str = ""
    image: str = ""
    pod: str = ""  # the pod's name (Kubernetes or podman)
    namespace: str = ""  # Kubernetes namespace
    labels: Mapping[str, str] = {}


class StateError(Exception):
    """A runtime's state file that cannot be read or parsed: half written, unreadable, or of a
    format version this reader does not know. Its text names the file and the reason."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class StateFile:
    """One state file holding many containers, parsed by ``reader`` (path -> {id: Info}) and
    kept until its modification time or size changes.

    :meth:`lookup` reads the file again only for an id it does not hold, and only when the file
    changed since the last read: a host with many containers starting reads it once per change,
    not once per container. A missing file holds nothing (the runtime is not used here)."""

    def __init__(self, path: str, reader: Callable[[str], Mapping[str, Info]]) -> None:
        self.path = path
        self.reader = reader
        self.reads = 0
        self._stamp: tuple[int, int] | None = None
        self._known: Mapping[str, Info] = {}
        self.error: StateError | None = None  # the last read's failure, until a read succeeds

    def lookup(self, ident: str) -> Info | None:
        got = self._known.get(ident)
        if got is not None:
            return got
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._stamp, self._known, self.error = None, {}, None
            return None
        except OSError as exc:
            raise StateError(self.path, exc.strerror or str(exc)) from exc
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            # A file that failed is not read again until it changes (no parse per tick), and
            # keeps failing the same way until then.
            self._stamp = stamp
            self.reads += 1
            try:
                self._known, self.error = self.reader(self.path), None
            except StateError as exc:
                self.error = exc
            except OSError as exc:
                self.error = StateError(self.path, exc.strerror or str(exc))
        if self.error is not None:
            raise self.error
        return self._known.get(ident)
