"""The processes of a fleet: `fleetscope aggregator` and `fleetscope api`.

Agents publish to NATS; aggregators share the instrumentations by leases in the
shared store (:mod:`fleetscope.aggregator.shards`), write persisted history to
it and publish each final slot on the bus; API servers answer from a replica of
the aggregators' windows (:mod:`fleetscope.aggregator.replica`) and from the
store's history. Each can start, stop and restart on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

from fastapi import FastAPI

from fleetscope.aggregator.aggregator import Aggregator
from fleetscope.aggregator.replica import Replica
from fleetscope.aggregator.shards import LeaseKeeper
from fleetscope.api.app import Services, create_app
from fleetscope.api.control import ControlPlane
from fleetscope.bus.base import Bus
from fleetscope.model.metrics import Catalog
from fleetscope.store.base import Store
from fleetscope.store.history import History, HistoryConfig

log = logging.getLogger(__name__)


async def keep_history(history: History) -> None:
    """Flush the history head and compact, every ``flush_every`` seconds, off the event loop."""
    while True:
        await asyncio.sleep(history.config.flush_every)
        try:
            await asyncio.to_thread(history.maintain)
        except Exception:
            log.exception("history maintenance failed (retried in %ss)", history.config.flush_every)


async def run_aggregator(bus: Bus, store: Store, stop: asyncio.Event, name: str | None = None,
                         history_config: HistoryConfig | None = None) -> None:
    """Aggregate this process's share of the instrumentations until ``stop`` is set."""
    aggregator = Aggregator(bus, publish_finals=True)
    aggregator.own(set())  # nothing until the first lease round
    # Only the lease holder rolls up and compacts an instrumentation's history.
    history = History(store, (history_config or HistoryConfig())._replace(topk=aggregator.topk),
                      owns=lambda inst_id: aggregator.owned is None or inst_id in aggregator.owned)
    aggregator.listeners.append(history.record)  # persisted instrumentations only
    leases = LeaseKeeper(store, aggregator, name)
    if not await until_connected(bus, stop):
        return
    await aggregator.start()
    loop = asyncio.get_running_loop()
    tasks = [loop.create_task(leases.run()), loop.create_task(keep_history(history))]
    log.info("aggregator %s started", leases.name)
    await stop.wait()
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await aggregator.stop()
    # Finish the pending slots and write everything down, then let the others take over at once.
    for window in list(aggregator.windows.values()):
        window.expire(time.time() + aggregator.grace + window.inst.granularity)
    await asyncio.to_thread(history.flush)
    await asyncio.to_thread(leases.release)


async def until_connected(bus: Bus, stop: asyncio.Event) -> bool:
    """Wait for the bus (it may start after us); False if ``stop`` came first."""
    connecting = asyncio.ensure_future(bus.connect())
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({connecting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    for task in (connecting, stopping):
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    return connecting.done() and not connecting.cancelled() and connecting.exception() is None


def api_app(bus: Bus, store: Store, history_config: HistoryConfig | None = None) -> FastAPI:
    """An API server of a fleet: definitions and history from the shared store, live values
    from the replica; the metric catalogue is learnt from the agents."""
    control = ControlPlane(store, bus, Catalog())
    replica = Replica(bus)
    history = History(store, (history_config or HistoryConfig())._replace(topk=replica.topk))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Serve definitions and history from the store at once; live parts once the bus is there.
        control.load_catalog()
        stop = asyncio.Event()

        async def connect_then_start() -> None:
            if await until_connected(bus, stop):
                await control.start()
                await replica.start()

        starting = asyncio.get_running_loop().create_task(connect_then_start())
        try:
            yield
        finally:
            stop.set()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
            await replica.stop()
            await control.stop()
            await bus.close()
            store.close()

    return create_app(Services(control, replica, history), lifespan=lifespan)
