"""`fleetscope api`: an API server of a fleet (any number of these, behind a balancer).

Definitions and history come from the shared store, live values from a replica of
the aggregators' windows (:mod:`fleetscope.aggregator.replica`), the metric
catalogue from the agents. It serves the store at once and the live parts once
the bus is there.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from fleetscope.aggregator.replica import Replica
from fleetscope.api.app import Services, create_app
from fleetscope.api.auth import AuthConfig, Authenticator
from fleetscope.api.cloudapi import transforms
from fleetscope.api.control import ControlPlane
from fleetscope.bus.base import Bus
from fleetscope.model.metrics import Catalog
from fleetscope.processes.common import (
    FleetParts,
    allowed_hosts,
    open_fleet_parts,
    serve_http,
    until_connected,
)
from fleetscope.processes.config import FleetConfig
from fleetscope.store.base import Store
from fleetscope.store.history import History, HistoryConfig


def api_app(bus: Bus, store: Store, history_config: HistoryConfig | None = None,
            hosts: list[str] | None = None, auth: AuthConfig | None = None) -> FastAPI:
    """An API server of a fleet: definitions and history from the shared store, live values
    from the replica; the metric catalogue is learnt from the agents. Tokens are always
    required (they are in the shared store); ``hosts``: the Host headers it answers."""
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

    authenticator = Authenticator(store, auth or AuthConfig())
    return create_app(Services(control, replica, history, authenticator), lifespan=lifespan,
                      allowed_hosts=hosts)


def assemble(config: FleetConfig) -> FleetParts:
    """The bus and the shared store; InputError naming ``bus`` or ``store`` if either is refused."""
    return open_fleet_parts(config)


def run(parts: FleetParts, config: FleetConfig) -> None:
    """Serve until SIGTERM or SIGINT (the app's lifespan connects and closes the bus and store)."""
    app = api_app(parts.bus, parts.store, hosts=allowed_hosts(config.host, config.allowed_hosts),
                  auth=AuthConfig(enabled=True, failures_allowed=config.auth_failures))
    app.state.cloudapi_transforms = transforms.from_settings(config.reverse_dns, config.geoip_db)
    serve_http(app, config.host, config.port, config.log_level, config.tls_cert, config.tls_key)
