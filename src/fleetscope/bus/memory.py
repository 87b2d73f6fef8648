"""The in-process bus of `fleetscope serve`: asyncio queues, NATS subject semantics."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from fleetscope.bus.base import MAX_MESSAGE, Handler, MessageTooLarge, Msg, subject_matches

log = logging.getLogger(__name__)

# Bounded so that a stalled subscriber cannot grow memory without limit; the
# overflow is counted and dropped, as a NATS slow consumer would be.
QUEUE_SIZE = 10_000


@dataclass(eq=False)
class _Sub:
    bus: MemoryBus
    subject: str
    handler: Handler
    queue_group: str | None
    queue: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))
    task: asyncio.Task | None = None

    async def _run(self) -> None:
        while True:
            msg = await self.queue.get()
            try:
                await self.handler(msg)
            except Exception:  # a bad handler must not stop delivery to it
                log.exception("handler for %s failed", self.subject)

    async def unsubscribe(self) -> None:
        with contextlib.suppress(ValueError):
            self.bus._subs.remove(self)
        if self.task:
            self.task.cancel()


class MemoryBus:
    """A :class:`fleetscope.bus.base.Bus` inside one process."""

    def __init__(self, max_message: int = MAX_MESSAGE) -> None:
        self.max_message = max_message
        self._subs: list[_Sub] = []
        self._inbox = itertools.count()
        self._rr = itertools.count()
        self.dropped = 0
        self.on_reconnect: list[Callable[[], Awaitable[None]]] = []  # never called: never disconnected

    async def connect(self) -> None:
        return None

    @property
    def max_payload(self) -> int:
        return self.max_message

    async def publish(self, subject: str, data: bytes) -> None:
        if len(data) > self.max_message:
            raise MessageTooLarge(f"{len(data)} bytes is over the {self.max_message} byte limit")
        self._deliver(Msg(subject, data))

    def _deliver(self, msg: Msg) -> None:
        groups: dict[str, list[_Sub]] = {}
        for sub in list(self._subs):
            if not subject_matches(sub.subject, msg.subject):
                continue
            if sub.queue_group is None:
                self._put(sub, msg)
            else:
                groups.setdefault(sub.queue_group, []).append(sub)
        for members in groups.values():
            self._put(members[next(self._rr) % len(members)], msg)

    def _put(self, sub: _Sub, msg: Msg) -> None:
        try:
            sub.queue.put_nowait(msg)
        except asyncio.QueueFull:
            self.dropped += 1

    async def subscribe(self, subject: str, handler: Handler, queue: str | None = None) -> _Sub:
        sub = _Sub(self, subject, handler, queue)
        sub.task = asyncio.get_running_loop().create_task(sub._run())
        self._subs.append(sub)
        return sub

    async def request(self, subject: str, data: bytes, timeout: float = 2.0) -> bytes:
        inbox = f"_INBOX.{next(self._inbox)}"
        answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

        async def on_reply(msg: Msg) -> None:
            if not answer.done():
                answer.set_result(msg.data)

        sub = await self.subscribe(inbox, on_reply)
        try:
            self._deliver(Msg(subject, data, inbox))
            return await asyncio.wait_for(answer, timeout)
        finally:
            await sub.unsubscribe()

    async def close(self) -> None:
        for sub in list(self._subs):
            await sub.unsubscribe()
