"""The NATS transport: the bus of a fleet.

A thin adapter from :class:`fleetscope.bus.base.Bus` to nats-py. It keeps
reconnecting forever (also when the server is not there at start), and
:meth:`NatsBus.publish` raises :class:`~fleetscope.bus.base.BusUnavailable`
while disconnected, so that callers keep their own bounded buffers rather
than the client's hidden one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from nats.aio.client import Client
from nats.aio.msg import Msg as NatsMsg
from nats.errors import Error as NatsError
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from fleetscope.bus.base import BusUnavailable, Handler, MessageTooLarge, Msg

log = logging.getLogger(__name__)

RECONNECT_WAIT = 1.0  # seconds between attempts
# Notice a dead connection within seconds (the default is minutes): what is
# published meanwhile is lost, and the agent sends only its last batches again.
PING_INTERVAL = 2
MAX_OUTSTANDING_PINGS = 2
PERMISSIONS_VIOLATION = "permissions violation"  # how nats-server words a refused subject
PERMISSION_ERRORS_LOGGED = 10  # then only counted: a misconfigured agent would flood the log


@dataclass(frozen=True)
class NatsOptions:
    """How to reach and authenticate to NATS (all optional but the URL)."""

    url: str = "nats://127.0.0.1:4222"
    user: str | None = None
    password: str | None = None
    token: str | None = None
    creds: str | None = None  # a .creds file (JWT + nkey seed)
    nkey: str | None = None  # a file holding an NKey seed (`fleetscope nats-config` writes them)
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    name: str = "fleetscope"
    # Replies to this connection's requests come below this subject (an agent's is its own, so
    # that bus permissions can keep other hosts' replies from it: messages.agent_inbox).
    inbox_prefix: str = "_INBOX"

    def tls_context(self) -> ssl.SSLContext | None:
        if not (self.tls_ca or self.tls_cert):
            return None
        ctx = ssl.create_default_context(cafile=self.tls_ca)
        if self.tls_cert:
            ctx.load_cert_chain(self.tls_cert, self.tls_key)
        return ctx


class _Sub:
    def __init__(self, sub) -> None:
        self._sub = sub

    async def unsubscribe(self) -> None:
        with contextlib.suppress(NatsError):
            await self._sub.unsubscribe()


class NatsBus:
    """A :class:`fleetscope.bus.base.Bus` over a NATS server or cluster."""

    def __init__(self, options: NatsOptions) -> None:
        self.options = options
        self.nc = Client()
        self._connecting: asyncio.Task | None = None
        self.on_reconnect: list[Callable[[], Awaitable[None]]] = []
        self.permission_errors = 0  # publishes and subscriptions the server refused

    @property
    def connected(self) -> bool:
        return self.nc.is_connected

    async def connect(self) -> None:
        """Connect, retrying until the server answers; later losses are reconnected by nats-py."""
        if self.nc.is_connected:
            return
        o = self.options
        while True:
            try:
                await self.nc.connect(
                    servers=[o.url], name=o.name, user=o.user, password=o.password, token=o.token,
                    user_credentials=o.creds, nkeys_seed=o.nkey, inbox_prefix=o.inbox_prefix,
                    tls=o.tls_context(), allow_reconnect=True,
                    max_reconnect_attempts=-1, reconnect_time_wait=RECONNECT_WAIT, connect_timeout=2,
                    ping_interval=PING_INTERVAL, max_outstanding_pings=MAX_OUTSTANDING_PINGS,
                    reconnected_cb=self._reconnected, disconnected_cb=self._disconnected,
                    error_cb=self._error,
                )
                return
            except (TimeoutError, NatsError, OSError) as exc:
                log.warning("cannot reach NATS at %s (%s); retrying", o.url, exc or type(exc).__name__)
                self.nc = Client()
                await asyncio.sleep(RECONNECT_WAIT)

    async def _reconnected(self) -> None:
        log.info("reconnected to NATS")
        for callback in self.on_reconnect:
            try:
                await callback()
            except Exception:
                log.exception("reconnect callback failed")

    async def _disconnected(self) -> None:
        log.warning("disconnected from NATS")

    async def _error(self, exc: Exception) -> None:
        if PERMISSIONS_VIOLATION in str(exc).lower():
            # The server refused a subject this process's credentials do not allow: a setup
            # mistake (or a process speaking for another host) that an operator must see.
            self.permission_errors += 1
            if self.permission_errors <= PERMISSION_ERRORS_LOGGED:
                log.warning("NATS refused: %s", exc)
            return
        log.debug("NATS: %s", exc)

    @property
    def max_payload(self) -> int:
        # The server says its limit on connect (1 MB unless configured); the client keeps the last.
        return self.nc.max_payload

    async def publish(self, subject: str, data: bytes) -> None:
        if not self.nc.is_connected:
            raise BusUnavailable("not connected to NATS")
        if len(data) > self.nc.max_payload:
            raise MessageTooLarge(f"{len(data)} bytes is over the server's {self.nc.max_payload} byte limit")
        try:
            await self.nc.publish(subject, data)
        except NatsError as exc:
            raise BusUnavailable(str(exc)) from exc

    async def subscribe(self, subject: str, handler: Handler, queue: str | None = None) -> _Sub:
        async def deliver(msg: NatsMsg) -> None:
            try:
                await handler(Msg(msg.subject, msg.data, msg.reply or None))
            except Exception:  # a bad handler must not stop delivery to it
                log.exception("handler for %s failed", subject)

        return _Sub(await self.nc.subscribe(subject, queue=queue or "", cb=deliver))

    async def request(self, subject: str, data: bytes, timeout: float = 2.0) -> bytes:
        if not self.nc.is_connected:
            raise BusUnavailable("not connected to NATS")
        try:
            return (await self.nc.request(subject, data, timeout=timeout)).data
        except (NatsTimeout, NoRespondersError) as exc:
            raise TimeoutError(f"no answer on {subject}") from exc

    async def close(self) -> None:
        if self.nc.is_connected:
            try:
                await self.nc.drain()
            except NatsError:
                await self.nc.close()
        elif not self.nc.is_closed:
            await self.nc.close()
