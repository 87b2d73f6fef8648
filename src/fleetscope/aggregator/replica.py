"""A copy of the aggregators' real-time windows, for API servers in a fleet.

Aggregators publish every final or revised slot on ``fleetscope.final.<id>``;
each API server keeps the last ``retention`` seconds of them per
instrumentation, so value queries and live streams are answered locally. An
instrumentation first asked about is backfilled from the aggregator that owns
it (request ``fleetscope.window.<id>``). It offers what the API uses of an
:class:`~fleetscope.aggregator.aggregator.Aggregator`: ``window(id)``,
``topk`` and ``listeners``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable

from fleetscope.aggregator.aggregator import DEFAULT_TOPK
from fleetscope.aggregator.follow import Follower
from fleetscope.aggregator.window import from_message
from fleetscope.bus import messages as m
from fleetscope.bus.base import Bus, BusUnavailable, Msg
from fleetscope.model.errors import InputError
from fleetscope.model.instrumentation import Instrumentation
from fleetscope.model.series import DataPoint

log = logging.getLogger(__name__)

Listener = Callable[[Instrumentation, DataPoint], None]


class FinalWindow:
    """The final data points of one instrumentation over its retention."""

    def __init__(self, inst: Instrumentation) -> None:
        self.inst = inst
        self.slots: dict[int, DataPoint] = {}

    def put(self, point: DataPoint) -> None:
        self.slots[point.start_time] = point

    def trim(self, now: float) -> None:
        oldest = now - self.inst.retention - self.inst.granularity
        for start in [s for s in self.slots if s < oldest]:
            del self.slots[start]

    def latest(self) -> int | None:
        return max(self.slots) if self.slots else None

    def points(self, start: int, end: int) -> list[DataPoint]:
        return [p for s, p in sorted(self.slots.items()) if start <= s < end]


class Replica(Follower):
    """The real-time windows of every instrumentation, replicated from the bus."""

    def __init__(self, bus: Bus, topk: int = DEFAULT_TOPK) -> None:
        self.bus = bus
        self.topk = topk
        self.windows: dict[int, FinalWindow] = {}
        self.listeners: list[Listener] = []
        self.dropped: Counter[str] = Counter()
        self._backfilled: set[int] = set()
        self._task: asyncio.Task | None = None

    def enable(self, inst: Instrumentation) -> None:
        window = self.windows.get(inst.id)
        if window is None:
            self.windows[inst.id] = FinalWindow(inst)
        else:
            window.inst = inst

    def disable(self, inst_id: int) -> None:
        self.windows.pop(inst_id, None)
        self._backfilled.discard(inst_id)

    def window(self, inst_id: int) -> FinalWindow | None:
        return self.windows.get(inst_id)

    def following(self) -> set[int]:
        return set(self.windows)

    async def _on_final(self, msg: Msg) -> None:
        try:
            final = m.decode(msg.data, m.FinalPoint)
            window = self.windows.get(final.id)
            if window is None:
                self.drop("unknown_instrumentation")
                return
            point = from_message(final, window.inst.shape)
        except InputError:
            self.drop("malformed_final")
            return
        window.put(point)
        for listener in self.listeners:
            try:
                listener(window.inst, point)
            except Exception:
                log.exception("listener failed")

    async def backfill(self, inst_id: int, timeout: float = 1.0) -> bool:
        """Fill ``inst_id``'s window from its aggregator once; True if it answered."""
        window = self.windows.get(inst_id)
        if window is None or inst_id in self._backfilled:
            return False
        try:
            answers = await m.request_pages(self.bus, f"{m.WINDOW}.{inst_id}", m.WindowRequest(),
                                            m.FinalPoints, "since", timeout)
        except (TimeoutError, BusUnavailable, InputError):
            return False
        self._backfilled.add(inst_id)
        for final in (p for answer in answers for p in answer.points):
            with contextlib.suppress(InputError):
                point = from_message(final, window.inst.shape)
                # The aggregator's window is the authority: its answer is at least as new as any
                # broadcast this replica received before asking (one publisher, in order).
                window.put(point)
        return True

    async def _after_reconnect(self) -> None:
        """Finals published while this API server was cut off were missed: ask again."""
        self._backfilled.clear()
        await self.sync()

    async def start(self) -> None:
        self.bus.on_reconnect.append(self._after_reconnect)
        await self.bus.connect()
        await self.follow()
        await self.bus.subscribe(f"{m.FINAL}.>", self._on_final)
        self._task = asyncio.get_running_loop().create_task(self._housekeeping())

    async def _housekeeping(self) -> None:
        await self.sync_until_answered()
        for inst_id in list(self.windows):
            await self.backfill(inst_id)
        while True:
            await asyncio.sleep(1.0)
            now = time.time()
            for window in list(self.windows.values()):
                window.trim(now)
                if window.inst.id not in self._backfilled:
                    await self.backfill(window.inst.id)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
