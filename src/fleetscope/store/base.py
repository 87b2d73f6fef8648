"""The store interface and how a store URL selects an implementation."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse

from fleetscope.model.errors import InputError
from fleetscope.model.instrumentation import Instrumentation


class Store(Protocol):
    """Definitions kept across restarts. Methods are synchronous and each call is atomic."""

    def create_instrumentation(self, spec: dict, created: float) -> Instrumentation: ...

    def get_instrumentation(self, inst_id: int) -> Instrumentation | None: ...

    def list_instrumentations(self) -> list[Instrumentation]: ...

    def update_instrumentation(self, inst: Instrumentation) -> None: ...

    def delete_instrumentation(self, inst_id: int) -> bool: ...

    def get_meta(self, key: str) -> str | None: ...

    def set_meta(self, key: str, value: str) -> None: ...

    def close(self) -> None: ...


def open_store(url: str) -> Store:
    """Open the store a URL names: ``sqlite:///path/to/file.db``."""
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        from fleetscope.store.sqlite import SQLiteStore

        path = parsed.path if not parsed.netloc else parsed.netloc + parsed.path
        if not path or path == "/":
            raise InputError("store", f"{url!r} names no file (use sqlite:///path/to/fleetscope.db)", 400)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return SQLiteStore(path)
    raise InputError("store", f"unsupported store URL {url!r} (use sqlite:///path)", 400)
