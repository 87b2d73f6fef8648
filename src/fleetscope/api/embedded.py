"""`fleetscope serve`: every part in one process on one host.

A local agent, the memory bus, an aggregator, the SQLite store, the control
plane and the API with the dashboard, started and stopped together.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI

from fleetscope.agent.agent import Agent
from fleetscope.aggregator.aggregator import Aggregator
from fleetscope.api.app import Services, create_app
from fleetscope.api.control import ControlPlane
from fleetscope.bus.memory import MemoryBus
from fleetscope.sources.registry import local_sources
from fleetscope.store.base import open_store

log = logging.getLogger(__name__)

DB_NAME = "fleetscope.db"


def embedded_app(data_dir: Path, hostname: str | None = None) -> FastAPI:
    """The whole of fleetscope for one host, as an ASGI app whose lifespan runs the loop."""
    data_dir.mkdir(parents=True, exist_ok=True)
    store = open_store(f"sqlite:///{data_dir / DB_NAME}")
    bus = MemoryBus()
    # Collection runs in a worker thread so a slow /proc read never delays an API answer.
    agent = Agent(bus, local_sources(), hostname=hostname, collect_in_thread=True)
    aggregator = Aggregator(bus)
    control = ControlPlane(store, bus, agent.catalog)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await control.start()
        await control.ensure_defaults()
        await aggregator.start()
        agent_task = asyncio.get_running_loop().create_task(agent.run())
        try:
            yield
        finally:
            agent.stop()
            with contextlib.suppress(asyncio.CancelledError):
                await agent_task
            agent.close()
            await aggregator.stop()
            await control.stop()
            await bus.close()
            store.close()

    app = create_app(Services(control, aggregator), lifespan=lifespan)
    app.state.agent = agent
    return app
