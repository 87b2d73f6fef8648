"""The HTTP API application: :func:`create_app` over :class:`Services` (OpenAPI at /api/v1/openapi.json).

The routes live in :mod:`fleetscope.api.routes`, one module per resource; this
module only assembles them with the error handlers, the JSON-body middleware,
the live-stream hub and the dashboard's static files.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from fleetscope import __version__
from fleetscope.api import errors
from fleetscope.api.jsonbody import JsonBodies
from fleetscope.api.routes import ROUTERS
from fleetscope.api.routes.web import WEB_DIR
from fleetscope.api.services import Services
from fleetscope.api.stream import Hub

__all__ = ["Services", "create_app"]


def create_app(svc: Services, lifespan=None) -> FastAPI:
    """The API application over ``svc``; ``lifespan`` starts and stops the services around it."""
    app = FastAPI(
        title="fleetscope",
        version=__version__,
        openapi_url="/api/v1/openapi.json",
        docs_url=None,  # served from the package by routes/docs.py, not from a CDN
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.services = svc
    hub = Hub()  # the aggregator's final points, fanned out to the streams
    svc.aggregator.listeners.append(hub.publish)
    app.state.hub = hub
    errors.install(app)
    app.add_middleware(JsonBodies, prefix="/api/")
    for router in ROUTERS:
        app.include_router(router)
    if (WEB_DIR / "index.html").exists():
        app.mount("/web", StaticFiles(directory=WEB_DIR), name="web")
    return app
