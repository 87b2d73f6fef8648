"""The API's routes, one module per resource, each a module-level ``router``.

:data:`ROUTERS` is what :func:`fleetscope.api.app.create_app` includes, in
order. A route reads its services through ``svc: Svc``
(:mod:`fleetscope.api.services`), takes shared parameters from
:mod:`fleetscope.api.params`, and declares the errors it answers with
:func:`fleetscope.api.errors.responses`.
"""

from fleetscope.api.routes import (
    access,
    alerts,
    annotations,
    cloudapi,
    compare,
    dashboards,
    discovery,
    docs,
    export,
    exposition,
    heatmaps,
    hosts,
    imports,
    instrumentations,
    prometheus,
    store,
    stream,
    values,
    web,
)

ROUTERS = [
    discovery.router,
    hosts.router,
    instrumentations.router,
    values.router,
    compare.router,
    heatmaps.router,
    stream.router,
    export.router,
    store.router,
    imports.router,
    dashboards.router,
    alerts.router,
    annotations.router,
    exposition.router,
    access.router,
    prometheus.router,
    docs.router,
    web.router,
    cloudapi.router,  # last: /{login}/analytics must not shadow fleetscope's own paths
]
