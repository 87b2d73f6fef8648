"""`fleetscope serve`: every part in one process on one host.

A local agent, the memory bus, an aggregator, the store (SQLite in the data
directory unless a store URL says otherwise) with the history writer, the
control plane and the API with the dashboard, started and stopped together.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI

from fleetscope.agent.agent import Agent
from fleetscope.aggregator.aggregator import Aggregator
from fleetscope.alerts.deliver import Notifier
from fleetscope.alerts.engine import AlertEngine
from fleetscope.api.app import Services, create_app
from fleetscope.api.auth import LOGIN_LINK_SECONDS, AuthConfig, Authenticator
from fleetscope.api.cloudapi import transforms
from fleetscope.api.control import ControlPlane
from fleetscope.bus.memory import MemoryBus
from fleetscope.model.access import ADMIN
from fleetscope.processes.agent import ingest_sources
from fleetscope.processes.common import (
    alert_renderer,
    allowed_hosts,
    cancel,
    finish_slots,
    keep_history,
    serve_http,
)
from fleetscope.processes.config import ServeConfig
from fleetscope.sources.registry import local_sources
from fleetscope.sources.selfmetrics import MeasureRequests, SelfSource
from fleetscope.store.history import History, HistoryConfig
from fleetscope.store.open import open_store

log = logging.getLogger(__name__)

DB_NAME = "fleetscope.db"


def serve_app(config: ServeConfig) -> FastAPI:
    """The whole of fleetscope for one host, as an ASGI app whose lifespan runs the loop.

    The store (default: ``sqlite:///<data_dir>/fleetscope.db``) is opened at once, so a bad
    URL fails here with an InputError naming ``store``.
    """
    config.data_dir.mkdir(parents=True, exist_ok=True)
    store = open_store(config.store_url or f"sqlite:///{config.data_dir / DB_NAME}")
    bus = MemoryBus()
    own = SelfSource()  # fleetscope.api_requests and fleetscope.agent_tick
    sources = [*local_sources(config.container_labels), own, *ingest_sources(config.ingest)]
    # Collection runs in a worker thread so a slow /proc read never delays an API answer.
    agent = Agent(bus, sources, hostname=config.hostname, collect_in_thread=True,
                  budget=config.tick_budget)
    agent.on_tick = own.record_tick
    aggregator = Aggregator(bus)
    control = ControlPlane(store, bus, agent.catalog)
    history = History(store, (config.history or HistoryConfig())._replace(topk=aggregator.topk))
    aggregator.listeners.append(history.record)  # persisted instrumentations only
    notifier = Notifier(config.public_url or public_url(config.host, config.port),
                        render=alert_renderer(store, aggregator, history))
    alerts = AlertEngine(store, notifier)
    aggregator.listeners.append(alerts.record)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await control.start()
        await control.ensure_defaults()
        await aggregator.start()
        agent_task = asyncio.get_running_loop().create_task(agent.run())
        history_task = asyncio.get_running_loop().create_task(keep_history(history))
        await notifier.start()
        alerts.start()
        try:
            yield
        finally:
            await alerts.stop()
            await notifier.stop()
            agent.stop()
            with contextlib.suppress(asyncio.CancelledError):
                await agent_task
            agent.close()
            await aggregator.stop()
            await cancel(history_task)
            finish_slots(aggregator)
            try:
                await asyncio.to_thread(history.flush)
            except Exception:
                log.exception("could not flush the history on shutdown")
            await control.stop()
            await bus.close()
            store.close()

    auth = Authenticator(store, AuthConfig(enabled=config.auth, failures_allowed=config.auth_failures))
    app = create_app(Services(control, aggregator, history, auth), lifespan=lifespan,
                     allowed_hosts=allowed_hosts(config.host, config.allowed_hosts))
    app.add_middleware(MeasureRequests, source=own)
    app.state.cloudapi_transforms = transforms.from_settings(config.reverse_dns, config.geoip_db)
    app.state.agent = agent
    app.state.alerts = alerts
    return app


def login_link(app: FastAPI, config: ServeConfig) -> str | None:
    """A one-time address that logs the dashboard in as admin (as Jupyter's does), valid for
    a day; None when authentication is off."""
    auth: Authenticator = app.state.services.auth
    if not auth.config.enabled:
        return None
    secret, _ = auth.issue("serve login link", ADMIN, kind="login", expires_in=LOGIN_LINK_SECONDS)
    return f"{public_url(config.host, config.port)}/login?token={secret}"


def public_url(host: str, port: int) -> str:
    """The address a person on this host opens for a server bound to ``host``."""
    host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{port}"


def run(app: FastAPI, config: ServeConfig) -> None:
    """Serve the app of :func:`serve_app` until SIGTERM or SIGINT."""
    serve_http(app, config.host, config.port, config.log_level)
