"""Delivery of notifications to receivers: off the evaluation path, one worker per receiver.

The engine calls :meth:`Notifier.send` once per notification and receiver; it only appends to
that receiver's queue and returns (microseconds, never I/O). Each receiver has its own bounded
queue, worker task, HTTP client and (for e-mail) thread, so a receiver that is down or slow
holds up only itself: not the caller, not another receiver. When a queue is full the oldest
notification is dropped and counted (``dropped``): the newest state is the one that matters.

Usage::

    notifier = Notifier("https://fleetscope.example.com", render=draw_panel)
    await notifier.start()
    notifier.send(notification, receiver)   # returns at once
    notifier.stats()["oncall"]               # {"sent": 1, "failed_attempts": 0, ...}
    await notifier.stop(5.0)                 # delivers what it can within 5 s

**Retries.** A failed attempt is retried after ``backoff`` seconds, doubled after each failure
up to ``max_backoff`` (plus up to 10 % jitter, so that many notifiers do not retry in step). A
batch is given up (``given_up``) after ``attempts`` attempts, when its oldest notification would
be older than ``max_age`` seconds at the next attempt, or at once on an answer that a retry
cannot change: HTTP 4xx other than 408/425/429, SMTP 5xx (e.g. 535, bad credentials). With the
defaults a receiver gets 10 attempts over about 4 minutes.

**Batches.** Alertmanager and webhook receivers get up to :data:`MAX_BATCH` queued notifications
in one POST (Prometheus' notifier batches the same way); e-mail is one message per notification.

**Alertmanager validity.** Alertmanager resolves an alert by itself when its ``endsAt`` passes.
The engine re-sends each firing alert to Alertmanager every ``resend`` seconds (its reminders,
kept in the store so that a takeover goes on with them); the notifier sets a firing alert's
``endsAt`` to ``now + 4 x resend`` at each attempt (as Prometheus does with its resend delay).
So an alert stays active while it is re-sent, and if fleetscope dies Alertmanager resolves
it within ``4 x resend`` seconds rather than keeping it firing forever.

**Secrets.** A webhook's ``secret``, an SMTP ``password`` and a password in a URL never reach a
log line, an exception text or ``last_error``: errors are described from their type and the
peer's answer, and any secret that still appears is replaced by a mask. Credentials in a URL
(``https://user:pass@host``) are sent as HTTP basic auth and left out of the address that
httpx logs.

Counters per receiver (:meth:`Notifier.stats`, keyed by name, ``tenant/name`` for a tenant's):
``sent`` (notifications delivered), ``failed_attempts``, ``given_up`` (notifications),
``dropped`` (queue overflow), ``pending`` (queued or in flight), ``last_error`` and
``last_error_at``, ``last_success`` (epoch seconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
import re
import smtplib
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx

from fleetscope.alerts import alertmanager, email, webhook
from fleetscope.alerts.engine import RESEND  # the engine re-sends; the notifier dates endsAt by it
from fleetscope.model.alerts import (
    DEFAULT_TIMEOUT,
    MASK,
    RECEIVER_KINDS,
    SECRET_SETTINGS,
    Notification,
    Receiver,
)

log = logging.getLogger(__name__)

QUEUE_SIZE = 1000  # notifications waiting per receiver
MAX_BATCH = 64  # notifications in one POST to Alertmanager or a webhook (as Prometheus' notifier)
ATTEMPTS = 10
BACKOFF = 1.0  # seconds before the first retry; doubled after each failed attempt
MAX_BACKOFF = 60.0
MAX_AGE = 900.0  # seconds a notification may wait; older ones are given up
VALIDITY_RESENDS = 4  # a firing alert's endsAt is this many resend intervals ahead
JITTER = 0.1  # up to this fraction is added to each backoff
MAX_ERROR = 300  # characters of last_error
PEER_TEXT = 200  # characters of an error answer's body kept in last_error
RETRYABLE_HTTP = frozenset({408, 425, 429})  # 4xx answers that a later attempt may change

Render = Callable[[Notification], "bytes | Awaitable[bytes | None] | None"]


def receiver_key(receiver: Receiver) -> str:
    """The name a receiver's counters are kept under: its name, ``tenant/name`` for a tenant's."""
    return receiver.name if receiver.tenant is None else f"{receiver.tenant}/{receiver.name}"


class _Item:
    """One queued notification."""

    __slots__ = ("image", "notification", "queued", "rendered")

    def __init__(self, notification: Notification) -> None:
        self.notification = notification
        self.queued = time.monotonic()
        self.image: bytes | None = None  # drawn once, kept across retries
        self.rendered = False


@dataclass(eq=False)
class _Outbox:
    """A receiver's queue, worker and counters."""

    receiver: Receiver  # the latest definition seen by send()
    queue: deque = field(default_factory=deque)  # of _Item, oldest first
    inflight: list = field(default_factory=list)  # the batch being delivered
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task | None = None
    client: httpx.AsyncClient | None = None
    thread: ThreadPoolExecutor | None = None  # e-mail: the receiver's own thread
    sent: int = 0
    failed_attempts: int = 0
    given_up: int = 0
    dropped: int = 0
    last_error: str | None = None
    last_error_at: float | None = None
    last_success: float | None = None
    failing: bool = False  # the first failure of a streak is logged as a warning, the rest at debug

    @property
    def pending(self) -> int:
        return len(self.queue) + len(self.inflight)


class Notifier:
    """Sends notifications to receivers in the background; see the module docstring.

    ``base_url`` is fleetscope's public address (links in notifications are made absolute with
    it); ``render(notification)`` returns a PNG of the panel (or None) for e-mails, a plain
    function (run in the receiver's thread) or a coroutine function; ``resend`` is how often
    the caller re-sends firing alerts to Alertmanager (their ``endsAt`` is 4 times that ahead);
    ``tls`` checks the certificates of SMTP servers and HTTPS receivers (default: the system's
    trust store).
    """

    def __init__(self, base_url: str, render: Render | None = None, *, attempts: int = ATTEMPTS,
                 backoff: float = BACKOFF, max_backoff: float = MAX_BACKOFF, max_age: float = MAX_AGE,
                 queue_size: int = QUEUE_SIZE, resend: float = RESEND,
                 tls: ssl.SSLContext | None = None) -> None:
        if min(attempts, queue_size) < 1 or min(backoff, max_age, resend) <= 0 or max_backoff < backoff:
            raise ValueError("attempts and queue_size must be >= 1; backoff, max_age and resend > 0; "
                             "max_backoff >= backoff")
        self.base_url = base_url
        self.render = render
        self.attempts = attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_age = max_age
        self.queue_size = queue_size
        self.resend = resend
        self.tls = tls
        self._boxes: dict[str, _Outbox] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        self._deadline: float | None = None  # monotonic end of stop()'s drain
        self._halt = asyncio.Event()  # set by stop(): retries waiting in backoff look at the deadline

    # -- the caller's side --------------------------------------------------------------------

    def send(self, notification: Notification, receiver: Receiver) -> None:
        """Queue ``notification`` for ``receiver`` and return at once (from the event loop's
        thread or any other). When the receiver's queue is full its oldest entry is dropped."""
        if receiver.kind not in RECEIVER_KINDS:
            raise ValueError(f"receiver {receiver.name!r}: unknown kind {receiver.kind!r}")
        key = receiver_key(receiver)
        box = self._boxes.get(key)
        if box is None:
            box = self._boxes[key] = _Outbox(receiver)
            self._call(self._spawn, box)
        box.receiver = receiver
        self._enqueue(box, notification)

    def stats(self) -> dict[str, dict]:
        """Counters per receiver: ``{key: {"kind", "sent", "failed_attempts", "given_up",
        "dropped", "pending", "last_error", "last_error_at", "last_success"}}``."""
        return {key: {"kind": box.receiver.kind, "sent": box.sent, "failed_attempts": box.failed_attempts,
                      "given_up": box.given_up, "dropped": box.dropped, "pending": box.pending,
                      "last_error": box.last_error, "last_error_at": box.last_error_at,
                      "last_success": box.last_success}
                for key, box in list(self._boxes.items())}

    async def forget(self, receiver: Receiver | str) -> None:
        """Stop delivering to a receiver (deleted): its queue and counters are dropped."""
        box = self._boxes.pop(receiver if isinstance(receiver, str) else receiver_key(receiver), None)
        if box is not None:
            if box.task is not None:
                box.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await box.task
            await self._close(box)

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start a worker per known receiver (and for each new one as it appears)."""
        self._loop = asyncio.get_running_loop()
        self._stopping, self._deadline = False, None
        self._halt = asyncio.Event()
        for box in self._boxes.values():
            box.wake = asyncio.Event()  # bound to this loop
            self._spawn(box)

    async def stop(self, timeout: float = 5.0) -> None:
        """Deliver what can be delivered within ``timeout`` seconds, then stop every worker.
        What is left stays counted as ``pending`` (and is logged)."""
        self._stopping = True
        self._deadline = time.monotonic() + timeout
        self._halt.set()
        tasks = [box.task for box in self._boxes.values() if box.task is not None]
        for box in self._boxes.values():
            box.wake.set()
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=timeout)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        for box in self._boxes.values():
            box.task = None
            await self._close(box)
        left = {key: box.pending for key, box in self._boxes.items() if box.pending}
        if left:
            log.warning("stopped with undelivered notifications: %s", left)

    # -- workers ------------------------------------------------------------------------------

    def _call(self, fn: Callable[[_Outbox], None], box: _Outbox) -> None:
        """Run ``fn(box)`` on the event loop: now when called from it, soon from another thread;
        not at all before start() (start() spawns and wakes every worker)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            fn(box)
        else:
            loop.call_soon_threadsafe(fn, box)

    def _spawn(self, box: _Outbox) -> None:
        if self._loop is not None and not self._stopping and (box.task is None or box.task.done()):
            box.task = self._loop.create_task(self._work(box), name=f"alerts to {receiver_key(box.receiver)}")

    def _enqueue(self, box: _Outbox, notification: Notification) -> None:
        if len(box.queue) >= self.queue_size:
            box.queue.popleft()
            box.dropped += 1
            if box.dropped == 1 or box.dropped % self.queue_size == 0:
                log.warning("receiver %s: queue full (%d), dropped %d oldest notifications so far",
                            receiver_key(box.receiver), self.queue_size, box.dropped)
        box.queue.append(_Item(notification))
        self._call(_wake, box)

    async def _work(self, box: _Outbox) -> None:
        while True:
            if not box.queue:
                if self._stopping:
                    return
                box.wake.clear()
                if not box.queue:  # another thread may have queued between the test and clear()
                    await box.wake.wait()
                continue
            size = 1 if box.receiver.kind == "email" else MAX_BATCH
            box.inflight = [box.queue.popleft() for _ in range(min(size, len(box.queue)))]
            try:
                done = await self._deliver(box, box.inflight)
            except asyncio.CancelledError:  # stop() ran out of time: what was in flight is pending
                box.queue.extendleft(reversed(box.inflight))
                box.inflight = []
                raise
            if not done:  # stopping, and the next attempt would come after stop()'s deadline
                box.queue.extendleft(reversed(box.inflight))
                box.inflight = []
                return
            box.inflight = []

    async def _deliver(self, box: _Outbox, batch: list[_Item]) -> bool:
        """Attempt ``batch`` until it is sent or given up (True), or stop() has no time left for
        another attempt (False)."""
        attempt = 0
        while True:
            attempt += 1
            receiver = box.receiver
            key = receiver_key(receiver)
            try:
                await self._attempt(box, receiver, batch)
            except email.PartlyRefused as exc:  # delivered to some: not retried
                box.sent += len(batch)
                box.last_success = time.time()
                self._failed(box, receiver, exc, count=False)
                return True
            except Exception as exc:
                self._failed(box, receiver, exc)
                delay = self._delay(attempt)
                too_old = time.monotonic() + delay - batch[0].queued > self.max_age
                if _permanent(exc) or attempt >= self.attempts or too_old:
                    box.given_up += len(batch)
                    why = ("a retry would not change the answer" if _permanent(exc)
                           else f"{attempt} attempts" if attempt >= self.attempts
                           else f"older than {self.max_age:g} s")
                    log.warning("receiver %s: gave up %d notification(s) (%s): %s",
                                key, len(batch), why, box.last_error)
                    return True
                if not await self._pause(delay):
                    return False
            else:
                box.sent += len(batch)
                box.last_success = time.time()
                if box.failing:
                    log.info("receiver %s: delivering again", key)
                    box.failing = False
                return True

    async def _attempt(self, box: _Outbox, receiver: Receiver, batch: list[_Item]) -> None:
        settings = receiver.settings
        timeout = float(settings.get("timeout", DEFAULT_TIMEOUT))
        notes = [item.notification for item in batch]
        if receiver.kind == "email":
            item = batch[0]
            if not item.rendered:
                item.image = await self._render(box, item.notification)
                item.rendered = True
            msg = email.message(item.notification, settings, self.base_url, item.image)
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._thread(box), lambda: email.send(settings, msg, context=self.tls))
            return
        url, auth = _split_credentials(settings["url"])
        client = self._client(box)
        if receiver.kind == "alertmanager":
            sending = alertmanager.post(client, url, notes, self.base_url, now=time.time(),
                                        validity=VALIDITY_RESENDS * self.resend, timeout=timeout, auth=auth)
        else:
            sending = webhook.post(client, url, notes, receiver=receiver.name, secret=settings.get("secret"),
                                   base_url=self.base_url, now=time.time(), timeout=timeout, auth=auth)
        await asyncio.wait_for(sending, timeout)  # httpx's timeout is per phase; this bounds the whole

    def _failed(self, box: _Outbox, receiver: Receiver, exc: BaseException, count: bool = True) -> None:
        timeout = float(receiver.settings.get("timeout", DEFAULT_TIMEOUT))
        box.last_error = _redact(_describe(exc, timeout), receiver)
        box.last_error_at = time.time()
        if not count:
            log.warning("receiver %s: %s", receiver_key(receiver), box.last_error)
            return
        box.failed_attempts += 1
        if box.failing:
            log.debug("receiver %s: attempt failed: %s", receiver_key(receiver), box.last_error)
        else:
            box.failing = True
            log.warning("receiver %s: attempt failed, will retry: %s", receiver_key(receiver), box.last_error)

    async def _pause(self, delay: float) -> bool:
        """Wait ``delay`` seconds before a retry; False at once when stop() has begun and its
        deadline comes first (the batch stays pending)."""
        end = time.monotonic() + delay
        if self._deadline is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._halt.wait(), delay)
        if self._deadline is not None:  # stop() has begun
            if end > self._deadline:
                return False
            await asyncio.sleep(max(0.0, end - time.monotonic()))
        return True

    def _delay(self, attempt: int) -> float:
        return min(self.max_backoff, self.backoff * 2 ** (attempt - 1)) * (1 + JITTER * random.random())

    async def _render(self, box: _Outbox, n: Notification) -> bytes | None:
        if self.render is None:
            return None
        try:
            if inspect.iscoroutinefunction(self.render):
                return await self.render(n)
            return await asyncio.get_running_loop().run_in_executor(self._thread(box), self.render, n)
        except Exception:
            log.warning("receiver %s: could not draw the panel of alert %s; sending without it",
                        receiver_key(box.receiver), n.fingerprint, exc_info=True)
            return None

    def _client(self, box: _Outbox) -> httpx.AsyncClient:
        if box.client is None:
            box.client = httpx.AsyncClient(verify=self.tls or True, follow_redirects=False)
        return box.client

    def _thread(self, box: _Outbox) -> ThreadPoolExecutor:
        if box.thread is None:
            box.thread = ThreadPoolExecutor(1, thread_name_prefix="fleetscope-alerts-email")
        return box.thread

    async def _close(self, box: _Outbox) -> None:
        if box.client is not None:
            client, box.client = box.client, None
            await client.aclose()
        if box.thread is not None:
            thread, box.thread = box.thread, None
            thread.shutdown(wait=False)  # a send in progress ends at its socket timeout


def _wake(box: _Outbox) -> None:
    box.wake.set()


def _split_credentials(url: str) -> tuple[str, httpx.BasicAuth | None]:
    """``https://user:pass@host/x`` as ``("https://host/x", BasicAuth(user, pass))``, so the
    address that httpx logs carries no password."""
    parsed = httpx.URL(url)
    if not parsed.userinfo:
        return url, None
    return str(parsed.copy_with(username=None, password=None)), httpx.BasicAuth(parsed.username,
                                                                                  parsed.password)


def _permanent(exc: BaseException) -> bool:
    """Whether a retry cannot change the outcome of ``exc``."""
    if isinstance(exc, httpx.HTTPStatusError):
        code = exc.response.status_code
        return 400 <= code < 500 and code not in RETRYABLE_HTTP
    if isinstance(exc, smtplib.SMTPResponseException):
        return 500 <= exc.smtp_code < 600
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return all(500 <= code < 600 for code, _ in exc.recipients.values())
    return isinstance(exc, smtplib.SMTPNotSupportedError | KeyError)  # no STARTTLS/AUTH; a missing setting


def _describe(exc: BaseException, timeout: float) -> str:
    """``exc`` as one line for last_error: the kind of failure and the peer's answer."""
    if isinstance(exc, httpx.HTTPStatusError):
        r = exc.response
        answer = " ".join(r.text[:PEER_TEXT].split())
        return f"HTTP {r.status_code} {r.reason_phrase}" + (f": {answer}" if answer else "")
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return f"timed out after {timeout:g} s"
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect: {exc}"
    if isinstance(exc, smtplib.SMTPResponseException):
        answer = exc.smtp_error
        answer = answer.decode(errors="replace") if isinstance(answer, bytes) else str(answer)
        return f"SMTP {exc.smtp_code}: {' '.join(answer.split())}"
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        refused = ", ".join(f"{a} ({code})" for a, (code, _) in exc.recipients.items())
        return f"SMTP refused every recipient: {refused}"
    if isinstance(exc, KeyError):
        return f"setting missing: {exc}"
    return f"{type(exc).__name__}: {exc}"


_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")


def _redact(text: str, receiver: Receiver) -> str:
    """``text`` without the receiver's secrets (masked) and without credentials in URLs."""
    for name in SECRET_SETTINGS:
        secret = receiver.settings.get(name)
        if isinstance(secret, str) and secret:
            text = text.replace(secret, MASK)
    text = _USERINFO.sub(MASK + "@", text)
    return text if len(text) <= MAX_ERROR else text[: MAX_ERROR - 1] + "…"
