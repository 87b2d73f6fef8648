"""The HTTP API application: :func:`create_app` over :class:`Services` (OpenAPI at /api/v1/openapi.json).

The routes live in :mod:`fleetscope.api.routes`, one module per resource; this
module only assembles them with the error handlers, the JSON-body middleware,
the live-stream hub and the dashboard's static files.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.middleware.trustedhost import TrustedHostMiddleware

from fleetscope import __version__
from fleetscope.api import auth, errors, imported, importing
from fleetscope.api.cloudapi.errors import CloudApiError
from fleetscope.api.cloudapi.errors import handler as cloudapi_errors
from fleetscope.api.importjobs import ImportJobs
from fleetscope.api.jsonbody import JsonBodies
from fleetscope.api.routes import ROUTERS
from fleetscope.api.routes.web import WEB_DIR
from fleetscope.api.services import Services
from fleetscope.api.stream import Hub

__all__ = ["Services", "create_app"]


def _with_imports(lifespan):
    """``lifespan`` (the process's: store, bus...) around the imports' own: stale loading imports
    failed at start, the imports' metrics watched, this process's import jobs stopped (their
    imports failed: nothing half kept) before the store closes."""

    @contextlib.asynccontextmanager
    async def run(app: FastAPI) -> AsyncIterator[None]:
        async with lifespan(app) if lifespan is not None else contextlib.nullcontext():
            jobs: ImportJobs = app.state.import_jobs
            await asyncio.to_thread(lambda: jobs.reap(jobs.store.list_imports()))
            imported.start_making(jobs.store)  # answers over imports a stopped process left unmade
            stop = asyncio.Event()
            watching = asyncio.get_running_loop().create_task(app.state.imported_metrics.watch(stop))
            try:
                yield
            finally:
                stop.set()
                await watching
                await asyncio.to_thread(jobs.stop)
                await asyncio.to_thread(imported.stop_making, jobs.store)

    return run


def create_app(svc: Services, lifespan=None, allowed_hosts: Sequence[str] | None = None) -> FastAPI:
    """The API application over ``svc``; ``lifespan`` starts and stops the services around it.

    ``allowed_hosts``: the only Host headers answered (the rest get 400), so that a web page
    cannot reach a loopback server through DNS rebinding; None answers any (tests only)."""
    app = FastAPI(
        title="fleetscope",
        version=__version__,
        openapi_url="/api/v1/openapi.json",
        docs_url=None,  # served from the package by routes/docs.py, not from a CDN
        redoc_url=None,
        lifespan=_with_imports(lifespan),
    )
    app.state.services = svc
    app.state.auth = svc.auth  # read by the role checks (api/auth.py)
    # Instrumentations can be made on what imports hold: their metrics, learnt as any API
    # process of the store imports or deletes.
    metrics = app.state.imported_metrics = importing.ImportedMetrics(svc.control.store, svc.control.catalog)
    metrics.sync()
    app.state.import_jobs = ImportJobs(svc.control.store, learnt=metrics.learnt)
    hub = Hub()  # the aggregator's final points, fanned out to the streams
    svc.aggregator.listeners.append(hub.publish)
    app.state.hub = hub
    errors.install(app)
    app.add_exception_handler(CloudApiError, cloudapi_errors)  # CloudAPI's routes answer in its shape
    app.add_middleware(JsonBodies, prefix="/api/")
    if allowed_hosts is not None:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))
    auth.document(app, ROUTERS)
    errors.document(ROUTERS)
    for router in ROUTERS:
        app.include_router(router)
    if (WEB_DIR / "index.html").exists():
        app.mount("/web", StaticFiles(directory=WEB_DIR), name="web")
    return app
