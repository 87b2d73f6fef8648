"""`fleetscope serve`: every part in one process on one host.

A local agent, the memory bus, an aggregator, the store (SQLite in the data
directory unless a store URL says otherwise) with the history writer, the
control plane and the API with the dashboard, started and stopped together.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI

from fleetscope.agent.agent import Agent
from fleetscope.agent.budget import DEFAULT_BUDGET
from fleetscope.aggregator.aggregator import Aggregator
from fleetscope.api.app import Services, create_app
from fleetscope.api.control import ControlPlane
from fleetscope.api.fleet import keep_history
from fleetscope.bus.memory import MemoryBus
from fleetscope.sources.otlp import OtlpConfig, OtlpSource
from fleetscope.sources.registry import local_sources
from fleetscope.sources.scrape import ScrapeSource, Target
from fleetscope.sources.selfmetrics import MeasureRequests, SelfSource
from fleetscope.sources.statsd import StatsdConfig, StatsdSource
from fleetscope.store.base import open_store
from fleetscope.store.history import History, HistoryConfig

log = logging.getLogger(__name__)

DB_NAME = "fleetscope.db"


def embedded_app(data_dir: Path, hostname: str | None = None, store_url: str | None = None,
                 history_config: HistoryConfig | None = None,
                 statsd: StatsdConfig | None = None, otlp: OtlpConfig | None = None,
                 scrape: list[Target] | None = None,
                 scrape_limits: tuple[int, int] = (1000, 1000),
                 tick_budget: float = DEFAULT_BUDGET) -> FastAPI:
    """The whole of fleetscope for one host, as an ASGI app whose lifespan runs the loop.

    ``statsd``: listen for StatsD there; ``otlp``: receive OTLP/HTTP there (off when None);
    ``scrape``: Prometheus targets to scrape, with ``scrape_limits`` (names, keys per field);
    ``tick_budget``: CPU seconds each instrumentation may use per tick on the agent.
    ``store_url`` (default: ``sqlite:///<data_dir>/fleetscope.db``) is opened at once, so a
    bad one fails here with an InputError naming ``store``.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    store = open_store(store_url or f"sqlite:///{data_dir / DB_NAME}")
    bus = MemoryBus()
    sources = local_sources()
    own = SelfSource()  # fleetscope.api_requests and fleetscope.agent_tick
    sources.append(own)
    if statsd is not None:  # a StatsD listener, started with the agent
        sources.append(StatsdSource(statsd))
    if otlp is not None:  # an OTLP/HTTP receiver, started with the agent
        sources.append(OtlpSource(otlp))
    if scrape:  # Prometheus targets, scraped from the agent's loop
        sources.append(ScrapeSource(scrape, max_metrics=scrape_limits[0], max_keys=scrape_limits[1]))
    # Collection runs in a worker thread so a slow /proc read never delays an API answer.
    agent = Agent(bus, sources, hostname=hostname, collect_in_thread=True, budget=tick_budget)
    agent.on_tick = own.record_tick
    aggregator = Aggregator(bus)
    control = ControlPlane(store, bus, agent.catalog)
    history = History(store, (history_config or HistoryConfig())._replace(topk=aggregator.topk))
    aggregator.listeners.append(history.record)  # persisted instrumentations only

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await control.start()
        await control.ensure_defaults()
        await aggregator.start()
        agent_task = asyncio.get_running_loop().create_task(agent.run())
        history_task = asyncio.get_running_loop().create_task(keep_history(history))
        try:
            yield
        finally:
            agent.stop()
            with contextlib.suppress(asyncio.CancelledError):
                await agent_task
            agent.close()
            await aggregator.stop()
            history_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await history_task
            # Nothing more will arrive: finish the pending slots and write everything down.
            for window in list(aggregator.windows.values()):
                window.expire(time.time() + aggregator.grace + window.inst.granularity)
            try:
                await asyncio.to_thread(history.flush)
            except Exception:
                log.exception("could not flush the history on shutdown")
            await control.stop()
            await bus.close()
            store.close()

    app = create_app(Services(control, aggregator, history), lifespan=lifespan)
    app.add_middleware(MeasureRequests, source=own)
    app.state.agent = agent
    return app
