"""Acknowledging agents' batch messages, once what they fed is final and sent on.

An agent keeps each batch message until an aggregator acknowledges it
(:class:`~fleetscope.bus.messages.Ack`) and sends it again when none does
(:mod:`fleetscope.agent.outbox`). An aggregator acknowledges a message only when every slot it
feeds is past its deadline (so final: the housekeeping finalises before it acknowledges) and,
partitioned, when the owners have acknowledged this aggregator's partials of those seconds: a
batch acknowledged earlier would be lost with an aggregator that died holding it.
"""

from __future__ import annotations

import heapq
from collections import deque

from fleetscope.bus import messages as m
from fleetscope.model.instrumentation import Instrumentation

# Acknowledgements held back while an owner is away, at most: past it the oldest are
# forgotten (their agents send them again, and they are acknowledged then).
MAX_HELD = 200_000


class BatchAcks:
    """The batch messages received and not yet acknowledged."""

    def __init__(self, grace: float) -> None:
        self.grace = grace
        self._waiting: list[tuple[float, int, str, int, int]] = []  # (due, tick, host, time, part)
        self._ready: deque[tuple[int, str, int, int]] = deque()  # past due: (tick, host, time, part)

    def received(self, batch: m.RawBatch, tick: int, known: dict[int, Instrumentation]) -> None:
        """``batch`` was merged (or refused for good) at ``tick`` on this aggregator's clock."""
        grains = {known[p.id].granularity for p in batch.partials if p.id in known} or {1}
        end = max(tick - tick % g + g for g in grains)  # of the last of its slots to end
        heapq.heappush(self._waiting, (end + self.grace, tick, batch.host, batch.time, batch.part))

    def due(self, now: float, settled_before: int | None = None) -> dict[str, list[tuple[int, int]]]:
        """The acknowledgements to send now, by host: messages whose slots are past their deadline
        and, when ``settled_before`` is given, of ticks before it (later ones wait for the owners)."""
        while self._waiting and self._waiting[0][0] <= now:
            self._ready.append(heapq.heappop(self._waiting)[1:])
        while len(self._ready) > MAX_HELD:
            self._ready.popleft()
        out: dict[str, list[tuple[int, int]]] = {}
        while self._ready and (settled_before is None or self._ready[0][0] < settled_before):
            _, host, t, part = self._ready.popleft()
            out.setdefault(host, []).append((t, part))
        return out

    def __len__(self) -> int:
        return len(self._waiting) + len(self._ready)
