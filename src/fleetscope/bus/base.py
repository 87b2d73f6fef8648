"""The bus interface: publish, subscribe (optionally in a queue group), request/reply.

Subjects follow NATS conventions (dot-separated tokens; ``*`` matches one token,
``>`` the rest) so that the NATS transport is a thin adapter. This module imports
no transport: :func:`fleetscope.bus.connect.connect_bus` picks one from a URL.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import NamedTuple, Protocol

# The largest message any transport carries (a NATS server may allow less: Bus.max_payload).
MAX_MESSAGE = 8 << 20


class BusUnavailable(ConnectionError):
    """The bus cannot take a message now (disconnected); the caller keeps it and retries."""


class MessageTooLarge(ValueError):
    """The message is over the bus's size limit; sending it again will not help."""


class Msg(NamedTuple):
    subject: str
    data: bytes
    reply: str | None = None


Handler = Callable[[Msg], Awaitable[None]]


class Subscription(Protocol):
    async def unsubscribe(self) -> None: ...


class Bus(Protocol):
    """What agents, aggregators and API servers need of a transport."""

    # Called after the connection came back: messages published meanwhile were missed.
    on_reconnect: list[Callable[[], Awaitable[None]]]

    async def connect(self) -> None:
        """Connect (idempotent)."""
        ...

    @property
    def max_payload(self) -> int:
        """The largest message the bus takes, in bytes (NATS: the server's ``max_payload``)."""
        ...

    async def publish(self, subject: str, data: bytes) -> None:
        """Send ``data`` to every subscriber of ``subject`` (one per queue group);
        :class:`BusUnavailable` when disconnected, :class:`MessageTooLarge` over :attr:`max_payload`."""
        ...

    async def subscribe(self, subject: str, handler: Handler, queue: str | None = None) -> Subscription:
        """Call ``handler`` for each message on ``subject``; with ``queue``, each message goes to one
        member of the group. Messages of one subscription are handled in order."""
        ...

    async def request(self, subject: str, data: bytes, timeout: float = 2.0) -> bytes:
        """Publish with a reply subject and wait for the first answer; TimeoutError if none comes."""
        ...

    async def close(self) -> None:
        """Flush and disconnect."""
        ...


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` is one token, a final ``>`` is one or more tokens."""
    p, s = pattern.split("."), subject.split(".")
    for i, token in enumerate(p):
        if token == ">":
            return len(s) > i
        if i >= len(s) or (token != "*" and token != s[i]):
            return False
    return len(p) == len(s)

