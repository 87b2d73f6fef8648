"""Keeping a process's instrumentations in step with the control plane.

Aggregators and API-server replicas both hold one window per instrumentation:
they learn of creates, changes and deletes from the bus, and ask for the whole
list when they start (and whenever they want to be sure).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import TypeVar

from fleetscope.bus import messages as m
from fleetscope.bus.base import Bus, BusUnavailable, Msg
from fleetscope.model.errors import InputError
from fleetscope.model.instrumentation import Instrumentation

T = TypeVar("T")

log = logging.getLogger(__name__)


class Follower:
    """Calls :meth:`enable` and :meth:`disable` as the control plane says; subclasses implement them."""

    bus: Bus
    dropped: Counter[str]

    def drop(self, reason: str) -> None:
        """Count a message dropped for ``reason``; the first of each reason is logged."""
        if not self.dropped[reason]:
            log.warning("dropped a message from the bus (%s); later ones are only counted", reason)
        self.dropped[reason] += 1

    def decoded(self, data: bytes, kind: type[T], reason: str) -> T | None:
        """``data`` decoded as ``kind``, or None (counted as dropped for ``reason``)."""
        try:
            return m.decode(data, kind)
        except InputError:
            self.drop(reason)
            return None

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
            self.drop("bad_control")

    async def _on_disable(self, msg: Msg) -> None:
        try:
            self.disable(m.decode(msg.data, m.DisableMsg).id)
        except InputError:
            self.drop("bad_control")

    async def sync(self, timeout: float = 2.0) -> bool:
        """Ask for every instrumentation; True when the control plane answered."""
        try:
            answers = await m.request_pages(self.bus, m.CTL_LIST, m.ListRequest(), m.InstrumentationList,
                                            "after", timeout)
        except (TimeoutError, BusUnavailable, InputError):
            return False
        listing = [Instrumentation.from_json(o) for a in answers for o in a.instrumentations]
        for inst_id in self.following() - {i.id for i in listing}:
            self.disable(inst_id)
        for inst in listing:
            self.enable(inst)
        return True

    async def sync_until_answered(self) -> None:
        while not await self.sync():
            await asyncio.sleep(0.5)
