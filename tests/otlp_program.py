"""A real program instrumented with the OpenTelemetry SDK, exporting over OTLP/HTTP.

``python otlp_program.py ENDPOINT`` records a fixed set of observations (those of
:data:`LATENCIES`, :data:`SIZES` and :data:`ORDERS`), exports every 200 ms while it
works, and flushes on shutdown. tests/test_otlp.py runs it and checks what arrives.
"""

from __future__ import annotations

import sys
import time

LATENCIES = {"/pay": [0.5, 1, 2, 2, 3, 8, 13, 21, 34, 55, 89, 144, 987], "/cart": [1.5, 7, 7, 7, 420, 2500]}
SIZES = [0, 3, 17, 200, 4096, 70000, 1 << 20]
ORDERS = {"/pay": 5, "/cart": 12}


def main(endpoint: str) -> None:
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
    from opentelemetry.sdk.resources import Resource

    reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=endpoint), export_interval_millis=200)
    provider = MeterProvider(
        resource=Resource.create({"service.name": "shop", "deployment.environment": "test"}),
        metric_readers=[reader],
        views=[View(instrument_name="checkout.latency", aggregation=ExponentialBucketHistogramAggregation())],
    )
    meter = provider.get_meter("shop")
    latency = meter.create_histogram("checkout.latency", unit="ms", description="checkout latency")
    size = meter.create_histogram("response.size", unit="By")
    orders = meter.create_counter("orders")
    queue = meter.create_up_down_counter("queue.depth")
    for route, xs in LATENCIES.items():
        for i, x in enumerate(xs):
            latency.record(x, {"http.route": route})
            if i % 4 == 0:
                time.sleep(0.1)  # spread over several exports: cumulative points become deltas
    for x in SIZES:
        size.record(x)
    for route, n in ORDERS.items():
        for _ in range(n):
            orders.add(1, {"http.route": route})
    queue.add(7)
    queue.add(-2)
    provider.shutdown()  # flushes


if __name__ == "__main__":
    main(sys.argv[1])
