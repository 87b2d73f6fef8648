"""Keeping a process's instrumentations in step with the control plane.

Aggregators and API-server replicas both hold one window per instrumentation:
they learn of creates, changes and deletes from the bus, and ask for the whole
list when they start (and whenever they want to be sure).
"""

from __future__ import annotations

import asyncio
from collections import Counter

from fleetscope.bus import messages as m
from fleetscope.bus.base import Bus, BusUnavailable, Msg
from fleetscope.model.errors import InputError
from fleetscope.model.instrumentation import Instrumentation


class Follower:
    """Calls :meth:`enable` and :meth:`disable` as the control plane says; subclasses implement them."""

    bus: Bus
    dropped: Counter[str]

    def enable(self, inst: Instrumentation) -> None:
        raise NotImplementedError

    def disable(self, inst_id: int) -> None:
        raise NotImplementedError

    def following(self) -> set[int]:
        """The ids currently enabled here."""
        raise NotImplementedError

    async def follow(self) -> None:
        """Subscribe to the control messages."""
        await self.bus.subscribe(m.CTL_ENABLE, self._on_enable)
        await self.bus.subscribe(m.CTL_DISABLE, self._on_disable)

    async def _on_enable(self, msg: Msg) -> None:
        try:
            self.enable(Instrumentation.from_json(m.decode(msg.data, m.InstrumentationMsg).instrumentation))
        except (InputError, KeyError, TypeError):
            self.dropped["bad_control"] += 1

    async def _on_disable(self, msg: Msg) -> None:
        try:
            self.disable(m.decode(msg.data, m.DisableMsg).id)
        except InputError:
            self.dropped["bad_control"] += 1

    async def sync(self, timeout: float = 2.0) -> bool:
        """Ask for every instrumentation; True when the control plane answered."""
        try:
            data = await self.bus.request(m.CTL_LIST, m.encode(m.ListRequest()), timeout)
            answer = m.decode(data, m.InstrumentationList)
        except (TimeoutError, BusUnavailable, InputError):
            return False
        listing = [Instrumentation.from_json(o) for o in answer.instrumentations]
        for inst_id in self.following() - {i.id for i in listing}:
            self.disable(inst_id)
        for inst in listing:
            self.enable(inst)
        return True

    async def sync_until_answered(self) -> None:
        while not await self.sync():
            await asyncio.sleep(0.5)
