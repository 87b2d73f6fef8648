"""Batches on their way to the aggregators, until one says it has them.

A batch message is queued, sent, and then kept as *unacknowledged* until an aggregator
acknowledges it (:class:`~fleetscope.bus.messages.Ack`, once the slots it feeds are final and
sent on). Core NATS delivers at most once: a message published while no aggregator listened
(the bus just came back and the agent reconnected first, or the aggregator holding the host's
partition died and the next has not yet subscribed) is gone without an error. So a message
still unacknowledged ``replay_after`` seconds after it was sent is queued again, marked as a
replay, with the wait doubling each time; the aggregators merge each (host, tick) once, so one
that did arrive is not counted twice. When the bus is found down, every unacknowledged message
is queued again at once.

Everything waiting (queued and unacknowledged) is bounded by bytes: overflow drops the oldest
and counts it, and a message unacknowledged for :data:`GIVE_UP` seconds is dropped as no longer
useful (the aggregators keep slots for their retention, ten minutes by default).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import NamedTuple

from fleetscope.bus import messages as m
from fleetscope.bus.base import Bus, BusUnavailable, MessageTooLarge

DEFAULT_MAX_BYTES = 64 << 20  # ten minutes of batches is a few MB on a busy host
DEFAULT_REPLAY_AFTER = 5.0  # seconds: an acknowledgement comes within 2.5 s of an aggregator
GIVE_UP = 600.0  # seconds after which an unacknowledged message is dropped


class Message(NamedTuple):
    """One batch message: its subject and payload, the batch's tick and part, when it was first
    sent and how many times it was sent since."""

    subject: str
    payload: bytes
    tick: int
    part: int
    first_sent: float = 0.0
    sends: int = 0


class Outbox:
    """Queued and unacknowledged batch messages, bounded together by payload bytes."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._queue: deque[Message] = deque()
        # Sent, unacknowledged, oldest first: (tick, part) -> (message, when it is due again).
        self._unacked: OrderedDict[tuple[int, int], tuple[Message, float]] = OrderedDict()
        self.bytes = 0
        self.dropped = 0  # messages dropped on overflow or given up
        self.oversized = 0  # messages over the bus's size limit (it shrank since they were made)
        self.sent = 0  # publishes, replays included
        self.acked = 0  # messages an aggregator acknowledged
        self.replayed = 0  # messages sent again

    def __len__(self) -> int:
        return len(self._queue)

    def put(self, subject: str, payload: bytes, tick: int, part: int = 0) -> None:
        self._queue.append(Message(subject, payload, tick, part))
        self.bytes += len(payload)
        self._bound()

    def _bound(self) -> None:
        while self.bytes > self.max_bytes and self._unacked:
            message, _ = self._unacked.popitem(last=False)[1]
            self._drop(message)
        while self.bytes > self.max_bytes and len(self._queue) > 1:
            self._drop(self._queue.popleft())

    def _drop(self, message: Message) -> None:
        self.bytes -= len(message.payload)
        self.dropped += 1

    async def flush(self, bus: Bus, now: float, replay_after: float = DEFAULT_REPLAY_AFTER) -> bool:
        """Publish queued messages oldest first, each then waiting for its acknowledgement; False
        if the bus refused one (it stays queued)."""
        while self._queue:
            message = self._queue[0]
            try:
                await bus.publish(message.subject, message.payload)
            except BusUnavailable:
                return False
            except MessageTooLarge:
                self._queue.popleft()
                self.bytes -= len(message.payload)
                self.oversized += 1
                continue
            self._queue.popleft()
            sent = message._replace(first_sent=message.first_sent or now, sends=message.sends + 1)
            self._unacked[(message.tick, message.part)] = (sent, now + replay_after * 2 ** (sent.sends - 1))
            self.sent += 1
        return True

    def ack(self, batches: list[tuple[int, int]]) -> None:
        """An aggregator has these (tick, part) messages: forget them."""
        for key in batches:
            entry = self._unacked.pop(key, None)
            if entry is not None:
                self.bytes -= len(entry[0].payload)
                self.acked += 1
            else:  # acknowledged while queued again for a replay: drop the replay
                self._forget_queued(key)

    def _forget_queued(self, key: tuple[int, int]) -> None:
        for message in self._queue:
            if message.sends and (message.tick, message.part) == key:
                self._queue.remove(message)
                self.bytes -= len(message.payload)
                self.acked += 1
                return

    def replay_due(self, now: float, everything: bool = False) -> int:
        """Queue again, ahead of new batches, the unacknowledged messages due again by ``now``
        (all of them when ``everything``: the bus was found down); returns how many."""
        due = []
        for key, (message, when) in list(self._unacked.items()):
            if now - message.first_sent > GIVE_UP:
                del self._unacked[key]
                self._drop(message)
            elif everything or when <= now:
                del self._unacked[key]
                payload = message.payload if message.sends > 1 else m.as_replay(message.payload)
                self.bytes += len(payload) - len(message.payload)
                due.append(message._replace(payload=payload))
        self._queue.extendleft(reversed(due))
        self.replayed += len(due)
        return len(due)

    def stats(self) -> dict[str, int]:
        return {"queued": len(self._queue), "unacked": len(self._unacked), "bytes": self.bytes,
                "dropped": self.dropped, "oversized": self.oversized, "replayed": self.replayed}
