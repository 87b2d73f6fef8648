"""``GET /metrics``: every instrumentation's current value for Prometheus to scrape.

The Prometheus text format, or OpenMetrics, or the protobuf exposition with
native histograms, as the scraper's ``Accept`` asks: see
:mod:`fleetscope.api.exposition` and :mod:`fleetscope.api.promproto`.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from fleetscope.api import exposition, promproto
from fleetscope.api.auth import Viewer
from fleetscope.api.services import Svc

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
def prometheus_metrics(request: Request, svc: Svc, caller: Viewer) -> Response:
    accept = request.headers.get("accept")
    samples = exposition.current_samples(svc.listed(caller), svc.aggregator.window)
    if promproto.wants_protobuf(accept):  # native histograms, exact
        return Response(promproto.render(samples), media_type=promproto.CONTENT_TYPE)
    om = exposition.wants_openmetrics(accept)
    media_type = exposition.OPENMETRICS if om else exposition.TEXT
    return Response(exposition.render(samples, om), media_type=media_type)
