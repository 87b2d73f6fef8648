"""``GET /metrics``: every instrumentation's current value for Prometheus to scrape.

The Prometheus text format, or OpenMetrics, or the protobuf exposition with
native histograms, as the scraper's ``Accept`` asks: see
:mod:`fleetscope.api.exposition` and :mod:`fleetscope.api.promproto`.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from fleetscope.api import exposition, promproto, scope
from fleetscope.api.auth import Viewer
from fleetscope.api.services import Svc
from fleetscope.model.access import Caller

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
def prometheus_metrics(request: Request, svc: Svc, caller: Viewer) -> Response:
    accept = request.headers.get("accept")
    samples = exposition.current_samples(svc.listed(caller), svc.aggregator.window)
    own = delivery_samples(svc, caller)
    if promproto.wants_protobuf(accept):  # native histograms, exact
        return Response(promproto.render(samples, own), media_type=promproto.CONTENT_TYPE)
    om = exposition.wants_openmetrics(accept)
    media_type = exposition.OPENMETRICS if om else exposition.TEXT
    return Response(exposition.render(samples, om, own), media_type=media_type)


_OUTCOMES = ("sent", "failed_attempts", "given_up", "dropped")


def delivery_samples(svc: Svc, caller: Caller) -> list[exposition.OwnSample]:
    """Alert deliveries per receiver the caller may see: notifications by outcome (counters
    since each process started, summed over the processes that deliver) and those pending."""
    out = []
    for (owner, name), c in scope.deliveries_for(caller, svc.control.store.alert_deliveries()).items():
        labels = (("receiver", name), *((("tenant", owner),) if owner else ()))
        out.extend(exposition.OwnSample("fleetscope_alert_notifications", "alert notifications by outcome",
                                        True, (*labels, ("outcome", k)), c[k]) for k in _OUTCOMES)
        out.append(exposition.OwnSample("fleetscope_alert_notifications_pending",
                                        "alert notifications waiting to be delivered", False, labels,
                                        c["pending"]))
    return out
