"""The aggregator process logic: receives batches, keeps one Window per instrumentation."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import statistics
import time
from collections import Counter, deque
from collections.abc import Callable

from fleetscope.aggregator.window import Window
from fleetscope.bus import messages as m
from fleetscope.bus.base import Bus, BusUnavailable, Msg
from fleetscope.model import values
from fleetscope.model.errors import InputError
from fleetscope.model.instrumentation import Instrumentation
from fleetscope.model.series import DataPoint

log = logging.getLogger(__name__)

DEFAULT_TOPK = 50
DEFAULT_GRACE = 1.5  # seconds after a slot's end before it is final without every source
CLOCK_READINGS = 12  # status messages (one every few seconds) in a host's clock estimate
CLOCK_WARN = 2.0  # seconds of offset that deserve a warning in the log

Listener = Callable[[Instrumentation, DataPoint], None]


class Aggregator:
    """Merges partials per instrumentation and slot; notifies listeners of final slots."""

    def __init__(self, bus: Bus, topk: int = DEFAULT_TOPK, grace: float = DEFAULT_GRACE) -> None:
        self.bus = bus
        self.topk = topk
        self.grace = grace
        self.windows: dict[int, Window] = {}
        self.listeners: list[Listener] = []
        self.dropped: Counter[str] = Counter()
        self._clock_readings: dict[str, deque[float]] = {}
        self._clock_warned: set[str] = set()
        self._task: asyncio.Task | None = None

    # -- instrumentations -------------------------------------------------------------------

    def enable(self, inst: Instrumentation) -> None:
        window = self.windows.get(inst.id)
        if window is None:
            self.windows[inst.id] = Window(inst, self.topk, self.grace, self._notify)
        else:
            window.inst = inst  # retention, idle_max or persist changed

    def disable(self, inst_id: int) -> None:
        self.windows.pop(inst_id, None)

    async def _on_enable(self, msg: Msg) -> None:
        try:
            self.enable(Instrumentation.from_json(m.decode(msg.data, m.InstrumentationMsg).instrumentation))
        except (InputError, KeyError, TypeError) as exc:
            self.dropped["bad_control"] += 1
            log.warning("dropped a bad enable message: %s", exc)

    async def _on_disable(self, msg: Msg) -> None:
        try:
            self.disable(m.decode(msg.data, m.DisableMsg).id)
        except InputError:
            self.dropped["bad_control"] += 1

    async def sync(self, timeout: float = 2.0) -> bool:
        try:
            data = await self.bus.request(m.CTL_LIST, m.encode(m.ListRequest()), timeout)
        except (TimeoutError, BusUnavailable):
            return False
        answer = m.decode(data, m.InstrumentationList)
        listing = [Instrumentation.from_json(o) for o in answer.instrumentations]
        for inst_id in set(self.windows) - {i.id for i in listing}:
            self.disable(inst_id)
        for inst in listing:
            self.enable(inst)
        return True

    # -- data -------------------------------------------------------------------------------

    async def _on_batch(self, msg: Msg) -> None:
        try:
            batch = m.decode(msg.data, m.Batch)
        except InputError:
            self.dropped["malformed_batch"] += 1
            return
        self.add_batch(batch, time.time())

    def add_batch(self, batch: m.Batch, now: float) -> None:
        tick = batch.time - self.clock_correction(batch.host)
        for partial in batch.partials:
            window = self.windows.get(partial.id)
            if window is None:
                self.dropped["unknown_instrumentation"] += 1
                continue
            try:
                value = values.decode(partial.value, window.inst.shape)
            except InputError:
                self.dropped["malformed_value"] += 1
                continue
            window.add(batch.host, tick, value, now)

    # -- clocks -----------------------------------------------------------------------------

    async def _on_status(self, msg: Msg) -> None:
        try:
            status = m.decode(msg.data, m.AgentStatus)
        except InputError:
            self.dropped["bad_status"] += 1
            return
        self.observe_clock(status.host, status.time, time.time())

    def observe_clock(self, host: str, agent_time: float, now: float) -> None:
        """Record one reading of ``host``'s clock (status messages are sent live, never buffered,
        so their age is the clock offset plus a transit time of milliseconds)."""
        readings = self._clock_readings.setdefault(host, deque(maxlen=CLOCK_READINGS))
        readings.append(agent_time - now)
        offset = self.clock_offset(host)
        if abs(offset) >= CLOCK_WARN and host not in self._clock_warned:
            self._clock_warned.add(host)
            log.warning("clock of %s is %+.1f s off: its ticks are moved by %+d s", host, offset,
                        -self.clock_correction(host))

    def clock_offset(self, host: str) -> float:
        """The median offset of ``host``'s clock from ours (positive: the agent is ahead)."""
        readings = self._clock_readings.get(host)
        return statistics.median(readings) if readings else 0.0

    def clock_correction(self, host: str) -> int:
        """Whole seconds to subtract from ``host``'s ticks so that each lands in the slot of our
        clock it overlaps most; no correction for offsets under half a second."""
        offset = self.clock_offset(host)
        return round(offset) if abs(offset) >= 0.5 else 0

    def _notify(self, inst: Instrumentation, point: DataPoint) -> None:
        for listener in self.listeners:
            try:
                listener(inst, point)
            except Exception:
                log.exception("listener failed")

    # -- queries ----------------------------------------------------------------------------

    def window(self, inst_id: int) -> Window | None:
        return self.windows.get(inst_id)

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        await self.bus.connect()
        await self.bus.subscribe(m.CTL_ENABLE, self._on_enable)
        await self.bus.subscribe(m.CTL_DISABLE, self._on_disable)
        await self.bus.subscribe(f"{m.DATA}.>", self._on_batch)
        await self.bus.subscribe(m.AGENT_STATUS, self._on_status)
        self._task = asyncio.get_running_loop().create_task(self._housekeeping())

    async def _housekeeping(self) -> None:
        while not await self.sync():
            log.info("aggregator waiting for the control plane")
            await asyncio.sleep(0.5)
        while True:
            await asyncio.sleep(0.2)
            now = time.time()
            for window in list(self.windows.values()):
                window.expire(now)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
