"""Pick a bus transport from a URL: the one module of the bus that knows both implementations."""

from __future__ import annotations

from fleetscope.bus.base import Bus
from fleetscope.model.errors import InputError


def connect_bus(url: str, **options: str | None) -> Bus:
    """The transport for ``url``: ``memory://`` (in-process) or ``nats://host:port`` (``tls://``
    too); ``options`` are NATS credentials and TLS files (see :class:`fleetscope.bus.nats.NatsOptions`).
    InputError (field ``bus``) for any other URL."""
    if url.startswith("memory:"):
        from fleetscope.bus.memory import MemoryBus

        return MemoryBus()
    if url.startswith(("nats://", "tls://")):
        from fleetscope.bus.nats import NatsBus, NatsOptions

        return NatsBus(NatsOptions(url=url, **options))
    raise InputError("bus", f"unsupported bus URL {url!r} (use nats://host:4222)", 400)
