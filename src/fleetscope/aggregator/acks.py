"""Acknowledging agents' batch messages, once what they fed is final.

An agent keeps each batch message until an aggregator acknowledges it
(:class:`~fleetscope.bus.messages.Ack`) and sends it again when none does
(:mod:`fleetscope.agent.outbox`). A lone aggregator acknowledges a message when every slot it
feeds is past its deadline (so final: the housekeeping finalises before it acknowledges). A
partition holder acknowledges each message as soon as the owners have every slot it fed
(:mod:`fleetscope.aggregator.holder`).
"""

from __future__ import annotations

import heapq

from fleetscope.bus import messages as m
from fleetscope.model.instrumentation import Instrumentation


class BatchAcks:
    """The batch messages received and not yet acknowledged."""

    def __init__(self, grace: float) -> None:
        self.grace = grace
        self._waiting: list[tuple[float, int, str, int, int]] = []  # (due, tick, host, time, part)

    def received(self, batch: m.RawBatch, tick: int, known: dict[int, Instrumentation]) -> None:
        """``batch`` was merged (or refused for good) at ``tick`` on this aggregator's clock."""
        grains = {known[p.id].granularity for p in batch.partials if p.id in known} or {1}
        end = max(tick - tick % g + g for g in grains)  # of the last of its slots to end
        heapq.heappush(self._waiting, (end + self.grace, tick, batch.host, batch.time, batch.part))

    def due(self, now: float) -> dict[str, list[tuple[int, int]]]:
        """The acknowledgements to send now, by host: messages whose slots are past their
        deadline."""
        out: dict[str, list[tuple[int, int]]] = {}
        while self._waiting and self._waiting[0][0] <= now:
            _, _, host, t, part = heapq.heappop(self._waiting)
            out.setdefault(host, []).append((t, part))
        return out

    def __len__(self) -> int:
        return len(self._waiting)
