"""Batches waiting for the bus.

While the bus is away the agent keeps collecting; its batches wait here, in
memory bounded by bytes. Overflow drops the oldest batch and counts it. On
reconnect the batches go out oldest first, and the aggregator merges them as
late data.

A connection can die before the client notices, and what was written to it
meanwhile is lost (core NATS delivers at most once). So the outbox also keeps
the last few batches it sent, and when the bus turns out to be down it queues
them again: the aggregator merges each (host, tick) once, so a batch that did
arrive is not counted twice.
"""

from __future__ import annotations

from collections import deque

from fleetscope.bus.base import Bus, BusUnavailable, MessageTooLarge

DEFAULT_MAX_BYTES = 64 << 20  # ten minutes of batches is a few MB on a busy host
DEFAULT_RESEND = 10  # batches sent before an outage was noticed that are sent again


class Outbox:
    """A FIFO of ``(subject, payload)`` bounded by total payload bytes."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES, resend: int = DEFAULT_RESEND) -> None:
        self.max_bytes = max_bytes
        self._queue: deque[tuple[str, bytes]] = deque()
        self._recent: deque[tuple[str, bytes]] = deque(maxlen=resend)
        self.bytes = 0
        self.dropped = 0  # batches dropped on overflow
        self.oversized = 0  # messages over the bus's size limit (it shrank since they were made)
        self.sent = 0

    def __len__(self) -> int:
        return len(self._queue)

    def put(self, subject: str, payload: bytes) -> None:
        self._queue.append((subject, payload))
        self.bytes += len(payload)
        while self.bytes > self.max_bytes and len(self._queue) > 1:
            _, old = self._queue.popleft()
            self.bytes -= len(old)
            self.dropped += 1

    async def flush(self, bus: Bus) -> bool:
        """Publish queued messages oldest first; False if the bus refused one (it stays queued)."""
        while self._queue:
            subject, payload = self._queue[0]
            try:
                await bus.publish(subject, payload)
            except BusUnavailable:
                return False
            except MessageTooLarge:
                self._queue.popleft()
                self.bytes -= len(payload)
                self.oversized += 1
                continue
            self._recent.append(self._queue.popleft())
            self.bytes -= len(payload)
            self.sent += 1
        return True

    def stats(self) -> dict[str, int]:
        return {"queued": len(self._queue), "bytes": self.bytes, "dropped": self.dropped,
                "oversized": self.oversized}

    def requeue_recent(self) -> None:
        """Queue the last sent batches again, ahead of the rest (the bus was found down)."""
        recent = list(self._recent)
        self._recent.clear()
        self._queue.extendleft(reversed(recent))
        self.bytes += sum(len(p) for _, p in recent)
