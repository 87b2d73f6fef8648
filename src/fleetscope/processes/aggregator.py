"""`fleetscope aggregator`: merge the agents' data for a share of the instrumentations.

Aggregators share the instrumentations by leases in the shared store
(:mod:`fleetscope.aggregator.shards`), write persisted history to it and publish
each final slot on the bus for the API servers. Each can start, stop and restart
on its own: on SIGTERM it finishes its slots, flushes and releases its leases.
"""

from __future__ import annotations

import asyncio
import logging

from fleetscope.aggregator.aggregator import Aggregator
from fleetscope.aggregator.shards import LeaseKeeper, default_name
from fleetscope.alerts.deliver import Notifier
from fleetscope.alerts.engine import AlertEngine
from fleetscope.bus.base import Bus
from fleetscope.processes.common import (
    FleetParts,
    alert_renderer,
    cancel,
    finish_slots,
    keep_history,
    open_fleet_parts,
    run_until_signalled,
    until_connected,
)
from fleetscope.processes.config import FleetConfig
from fleetscope.store.base import Store
from fleetscope.store.history import History, HistoryConfig

log = logging.getLogger(__name__)


async def run_aggregator(bus: Bus, store: Store, stop: asyncio.Event, name: str | None = None,
                         history_config: HistoryConfig | None = None, public_url: str = "") -> None:
    """Aggregate this process's share of the instrumentations until ``stop`` is set."""
    name = name or default_name()
    aggregator = Aggregator(bus, publish_finals=True, name=name)
    aggregator.own(set())  # nothing until the first lease round
    # Only the lease holder rolls up and compacts an instrumentation's history.
    history = History(store, (history_config or HistoryConfig())._replace(topk=aggregator.topk),
                      owns=lambda inst_id: aggregator.owned is None or inst_id in aggregator.owned)
    aggregator.listeners.append(history.record)  # persisted instrumentations only
    # Alerts are evaluated where their instrumentation's slots are final: by its lease holder.
    notifier = Notifier(public_url, render=alert_renderer(store, aggregator, history))
    leases = LeaseKeeper(store, aggregator, name)
    alerts = AlertEngine(store, notifier, owns=lambda inst_id: aggregator.owned is None
                         or inst_id in aggregator.owned, process=f"aggregator {leases.name}")
    aggregator.listeners.append(alerts.record)
    if not await until_connected(bus, stop):
        return
    await aggregator.start()
    loop = asyncio.get_running_loop()
    tasks = [loop.create_task(leases.run()), loop.create_task(keep_history(history))]
    await notifier.start()
    alerts.start()
    log.info("aggregator %s started", leases.name)
    await stop.wait()
    for task in tasks:
        await cancel(task)
    await alerts.stop()
    await notifier.stop()
    await aggregator.stop()
    # Finish the pending slots and write everything down, then let the others take over at once.
    finish_slots(aggregator)
    await asyncio.to_thread(history.flush)
    await asyncio.to_thread(leases.release)


def assemble(config: FleetConfig) -> FleetParts:
    """The bus and the shared store; InputError naming ``bus`` or ``store`` if either is refused."""
    return open_fleet_parts(config)


def run(parts: FleetParts, config: FleetConfig) -> None:
    """Aggregate until SIGTERM or SIGINT, then close the bus and the store."""

    async def main(stop: asyncio.Event) -> None:
        try:
            await run_aggregator(parts.bus, parts.store, stop, config.name, public_url=config.public_url)
        finally:
            await parts.bus.close()
            parts.store.close()

    run_until_signalled(main)
