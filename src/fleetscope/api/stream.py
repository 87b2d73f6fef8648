"""Live values as server-sent events.

``GET /api/v1/stream?ids=1,2,3`` (one stream for a whole dashboard) and
``GET /api/v1/instrumentations/{id}/stream`` push every data point as soon as
the aggregator finalises it::

    retry: 1000

    event: value
    id: 1767225600
    data: {"instrumentation": 3, "start_time": 1767225600, "duration": 1, "value": ...,
           "nsources": 1, "expected": 1, "revised": false}

A revised slot (late data) is sent again with ``"revised": true``; clients
replace the point they have. The event ``id`` is the slot's start time: a
client that reconnects with ``Last-Event-ID`` first gets the final points with
``start_time >=`` that id still in the real-time window (so some may come
twice: replace by start time). Comments (``: keepalive``) keep proxies and
clients from timing out; each one also marks the streamed instrumentations as
in use (so ``idle_max`` does not expire what a dashboard shows) and reports any
that were deleted with ``event: gone``. If a client reads too slowly its
bounded queue overflows: the oldest points are dropped and an
``event: overflow`` tells it to reload the range.

Streams end when the client disconnects and when the server shuts down (under
uvicorn, whose graceful shutdown would otherwise wait for them).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import signal
from collections.abc import AsyncIterator, Iterable

import anyio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from fleetscope.aggregator.aggregator import Aggregator
from fleetscope.api.control import ControlPlane
from fleetscope.api.params import MAX_ID
from fleetscope.api.services import Services
from fleetscope.model.access import Caller
from fleetscope.model.errors import InputError, NotFound
from fleetscope.model.instrumentation import Instrumentation
from fleetscope.model.series import DataPoint

MAX_IDS = 100
QUEUE_SIZE = 1024  # points per client before the oldest are dropped
KEEPALIVE = 15.0  # seconds between comments
POLL = 0.5  # seconds between checks for server shutdown
RETRY_MS = 1000  # how soon browsers reconnect


class Subscription:
    """One client's bounded queue of encoded events for a set of instrumentations."""

    def __init__(self, ids: Iterable[int], maxsize: int = QUEUE_SIZE) -> None:
        self.ids = frozenset(ids)
        self.events: collections.deque[str] = collections.deque(maxlen=maxsize)
        self.overflowed = False
        self.ready = asyncio.Event()

    def put(self, event: str) -> None:
        if len(self.events) == self.events.maxlen:
            self.overflowed = True
        self.events.append(event)
        self.ready.set()

    async def get(self, timeout: float) -> list[str]:
        """Every queued event, waiting up to ``timeout`` seconds for the first one."""
        if not self.events:
            self.ready.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.ready.wait(), timeout)
        out = list(self.events)
        self.events.clear()
        return out


class Hub:
    """Fans the aggregator's final points out to subscriptions.

    :meth:`publish` is an aggregator listener, called on the event loop; a
    point is encoded once, however many clients want it.
    """

    def __init__(self) -> None:
        self.subscriptions: set[Subscription] = set()
        self.closed = asyncio.Event()

    def publish(self, inst: Instrumentation, point: DataPoint) -> None:
        wanted = [s for s in self.subscriptions if inst.id in s.ids]
        if wanted:
            event = encode_point(inst, point)
            for sub in wanted:
                sub.put(event)

    def subscribe(self, ids: Iterable[int]) -> Subscription:
        sub = Subscription(ids)
        self.subscriptions.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self.subscriptions.discard(sub)

    def close(self) -> None:
        """End every stream (the server is going away)."""
        self.closed.set()


def encode_point(inst: Instrumentation, point: DataPoint) -> str:
    data = {"instrumentation": inst.id, **point.to_json(inst.shape)}
    return f"event: value\nid: {point.start_time}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def _server_exiting() -> bool:
    """True once uvicorn has been told to exit.

    uvicorn installs a bound method of its ``Server`` as the SIGTERM handler
    and sets ``should_exit`` on it; reading it is the only way an app can tell
    that a graceful shutdown waits for its open streams.
    """
    handler = signal.getsignal(signal.SIGTERM)
    server = getattr(handler, "__self__", None)
    return bool(getattr(server, "should_exit", False))


class EventStream(Response):
    """A ``text/event-stream`` response that stops when the client goes away.

    The body is sent by one task while another waits for ``http.disconnect``;
    whichever finishes first cancels the other, so a vanished client is
    noticed at once, not at the next write.
    """

    media_type = "text/event-stream"

    def __init__(self, body: AsyncIterator[str]) -> None:
        # Like StreamingResponse: no body attribute, so no content-length header.
        self.status_code = 200
        self.background = None
        self.body_iterator = body
        self.init_headers({"cache-control": "no-cache", "x-accel-buffering": "no"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with anyio.create_task_group() as tg:

            async def stream() -> None:
                await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
                try:
                    async for chunk in self.body_iterator:
                        await send({"type": "http.response.body", "body": chunk.encode(), "more_body": True})
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                except OSError:
                    pass  # the client went away mid-write
                tg.cancel_scope.cancel()

            async def disconnected() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                tg.cancel_scope.cancel()

            tg.start_soon(stream)
            tg.start_soon(disconnected)


def parse_ids(text: str) -> list[int]:
    """``"1,2,3"`` -> ``[1, 2, 3]``; InputError naming ``ids`` unless 1..MAX_IDS positive integers."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise InputError("ids", "is required: instrumentation ids separated by commas, e.g. 1,2,3")
    ids = []
    for p in parts:
        if not p.isdigit() or int(p) <= 0:
            raise InputError("ids", f"{p!r} is not an instrumentation id (a positive integer)")
        ids.append(int(p))
    ids = list(dict.fromkeys(ids))
    if len(ids) > MAX_IDS:
        raise InputError("ids", f"at most {MAX_IDS} instrumentations per stream")
    return ids


def parse_last_event_id(value: str | None) -> int | None:
    """The slot time a reconnecting client saw last; None if absent or not ours."""
    if value is None or not value.strip().isdigit():
        return None
    return int(value.strip())


def replay(aggregator: Aggregator, ids: list[int], since: int) -> list[str]:
    """The final points with ``start_time >= since`` still in the windows of ``ids``, in time order."""
    events = []
    for inst_id in ids:
        window = aggregator.window(inst_id)
        if window is not None:
            events += [(p.start_time, encode_point(window.inst, p)) for p in window.points(since, 2**62)]
    return [e for _, e in sorted(events, key=lambda te: te[0])]


async def events(control: ControlPlane, aggregator: Aggregator, hub: Hub, ids: list[int],
                 since: int | None, keepalive: float = KEEPALIVE) -> AsyncIterator[str]:
    """The event stream of ``ids``: the replay after ``since``, then live points and keepalives."""
    sub = hub.subscribe(ids)
    try:
        yield f"retry: {RETRY_MS}\n: fleetscope stream of {','.join(map(str, ids))}\n\n"
        if since is not None:
            for event in replay(aggregator, ids, since):
                yield event
        live = set(ids)
        loop = asyncio.get_running_loop()
        next_keepalive = loop.time() + keepalive
        while not hub.closed.is_set() and not _server_exiting():
            batch = await sub.get(min(POLL, keepalive))
            if sub.overflowed:
                sub.overflowed = False
                yield "event: overflow\ndata: {}\n\n"
            for event in batch:
                yield event
            if loop.time() >= next_keepalive:
                next_keepalive = loop.time() + keepalive
                for inst_id in sorted(live):
                    if control.store.get_instrumentation(inst_id) is None:
                        live.discard(inst_id)
                        yield f"event: gone\ndata: {json.dumps({'instrumentation': inst_id})}\n\n"
                    else:
                        control.touch(inst_id)
                yield ": keepalive\n\n"
    finally:
        hub.unsubscribe(sub)


def open_stream(svc: Services, caller: Caller, hub: Hub, ids: list[int],
                last_event_id: str | None, keepalive: float = KEEPALIVE) -> EventStream:
    """The response streaming ``ids``; NotFound naming ``ids`` for one that does not exist or
    that ``caller`` may not see (the same answer)."""
    for inst_id in ids:
        try:
            if inst_id > MAX_ID:
                raise NotFound("id", "")
            svc.used(caller, inst_id)
        except NotFound:
            raise NotFound("ids", f"no instrumentation {inst_id}") from None
    return EventStream(events(svc.control, svc.aggregator, hub, ids, parse_last_event_id(last_event_id),
                              keepalive))
