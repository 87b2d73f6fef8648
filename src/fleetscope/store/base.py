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

    # Dashboards: JSON documents ``{name, panels, ...}`` validated by the API. The store adds
    # ``id`` (an integer), ``created`` and ``updated`` (epoch seconds) and returns the whole.

    def list_dashboards(self) -> list[dict]: ...

    def get_dashboard(self, dashboard_id: int) -> dict | None: ...

    def create_dashboard(self, doc: dict) -> dict: ...

    def update_dashboard(self, dashboard_id: int, doc: dict) -> dict | None: ...

    def delete_dashboard(self, dashboard_id: int) -> bool: ...

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
