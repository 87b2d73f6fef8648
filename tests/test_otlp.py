"""OTLP/HTTP in: decoding (protobuf and JSON), cumulative to delta, exponential histograms
kept exact, bad payloads counted, a fuzz, and a real program instrumented with the
OpenTelemetry SDK exporting to a real `fleetscope serve --otlp`."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections import Counter
from pathlib import Path

import httpx
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2 as pb
from opentelemetry.sdk.metrics._internal.exponential_histogram.mapping.logarithm_mapping import (
    LogarithmMapping,
)

from fleetscope.agent.evaluate import Plan
from fleetscope.model.histogram import Histogram, bucket_index
from fleetscope.model.instrumentation import Instrumentation, validate_spec
from fleetscope.model.metrics import Catalog
from fleetscope.sources.base import Rows
from fleetscope.sources.otlp import Decoded, OtlpSource
from fleetscope.sources.statsd_parse import MAX_NAME, MAX_TAG_VALUE
from tests import otlp_program
from tests.conftest import Server, free_port
from tests.test_api import API, wait_for

PROTO = "application/x-protobuf"


def _request(*metrics: pb.Metric, service: str = "svc") -> bytes:
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    rm.resource.attributes.append(KeyValue(key="service.name", value=AnyValue(string_value=service)))
    rm.resource.attributes.append(KeyValue(key="telemetry.sdk.name", value=AnyValue(string_value="x")))
    rm.scope_metrics.add().metrics.extend(metrics)
    return req.SerializeToString()


def _attrs(**kv) -> list[KeyValue]:
    return [KeyValue(key=k.replace("_", "."), value=AnyValue(string_value=v)) for k, v in kv.items()]


def _exp_point(xs: list[float], scale: int, start: int = 1) -> pb.ExponentialHistogramDataPoint:
    counts: dict[int, int] = {}
    zero = 0
    for x in xs:
        if x == 0:
            zero += 1
        else:
            # The SDK's own mapping for scales above ours, ours (index - 1) otherwise.
            k = LogarithmMapping(scale).map_to_index(x) if scale > 8 else bucket_index(x, scale) - 1
            counts[k] = counts.get(k, 0) + 1
    dp = pb.ExponentialHistogramDataPoint(scale=scale, zero_count=zero, count=len(xs), sum=sum(xs),
                                          start_time_unix_nano=start)
    if counts:
        lo, hi = min(counts), max(counts)
        dp.positive.offset = lo
        dp.positive.bucket_counts.extend(counts.get(k, 0) for k in range(lo, hi + 1))
    return dp


def _evaluate(src: OtlpSource, body: dict):
    src.begin_tick(1000.0)
    inst = Instrumentation(id=1, created=0.0, **validate_spec(body, Catalog(src.metrics())))
    rows = src.collect(inst.metric)
    return Plan(inst, rows.columns, {"hostname": "h"}).evaluate(rows.rows, rows.weighted)


WIDE = [0, 0.001, 0.75, 1, 1, 1.09, 2, 3.3, 10, 10, 99.5, 1000, 123456.0]
NARROW = [1, 1.0000001, 1.0001, 1.0001, 1.01, 1.09, 1.5, 1.9999]  # a fine scale holds few doublings


@pytest.mark.parametrize(("scale", "xs"), [(3, WIDE), (6, WIDE), (12, NARROW), (20, NARROW)])
def test_exponential_histograms_are_exact(scale: int, xs: list[float]) -> None:
    src = OtlpSource()
    metric = pb.Metric(name="db.query.duration", unit="s", exponential_histogram=pb.ExponentialHistogram(
        aggregation_temporality=pb.AGGREGATION_TEMPORALITY_DELTA, data_points=[_exp_point(xs, scale)]))
    assert src.ingest_request(_request(metric), PROTO).accepted == 1
    got = _evaluate(src, {"module": "otel", "stat": "db_query_duration", "decomposition": ["value"]})
    want = Histogram()
    for x in xs:
        want.record(x)
    assert got.count == want.count and got.zero_count == want.zero_count and got.buckets == want.buckets
    unit = {m.name: m for m in src.metrics()}["otel.db_query_duration"].field("value").type
    assert unit.name == "s"


def test_cumulative_sums_become_deltas_and_attributes_fields() -> None:
    src = OtlpSource()

    def counter(value: float, start: int) -> bytes:
        dp = pb.NumberDataPoint(as_int=int(value), start_time_unix_nano=start,
                                attributes=_attrs(http_route="/a"))
        return _request(pb.Metric(name="orders", sum=pb.Sum(
            is_monotonic=True, aggregation_temporality=pb.AGGREGATION_TEMPORALITY_CUMULATIVE,
            data_points=[dp])))

    for value, start in ((5, 1), (8, 1), (8, 1), (3, 2)):  # +5, +3, +0, then a restart: +3
        src.ingest_request(counter(value, start), PROTO)
    metric = {m.name: m for m in src.metrics()}["otel.orders"]
    assert [f.name for f in metric.fields] == ["hostname", "http_route", "service"]
    assert metric.kind == "interval"
    assert _evaluate(src, {"module": "otel", "stat": "orders", "decomposition": ["service"]}) == {"svc": 11.0}
    gauge = pb.Metric(name="temp", gauge=pb.Gauge(data_points=[pb.NumberDataPoint(as_double=21.5)]))
    src.ingest_request(_request(gauge), PROTO)
    assert _evaluate(src, {"module": "otel", "stat": "temp"}) == 21.5


def test_json_payload_and_explicit_buckets() -> None:
    src = OtlpSource()
    body = {"resourceMetrics": [{"resource": {"attributes": [
        {"key": "service.name", "value": {"stringValue": "api"}}]},
        "scopeMetrics": [{"metrics": [{"name": "http.server.duration", "unit": "ms", "histogram": {
            "aggregationTemporality": 1, "dataPoints": [{
                "startTimeUnixNano": "1", "timeUnixNano": "2", "count": "6", "sum": 1234.5,
                "explicitBounds": [5, 10, 100], "bucketCounts": ["1", "2", "0", "3"],
                "attributes": [{"key": "http.method", "value": {"stringValue": "GET"}}]}]}}]}]}]}
    got = src.ingest_request(json.dumps(body).encode(), "application/json")
    assert got == (1, 0, [])
    h = _evaluate(src, {"module": "otel", "stat": "http_server_duration", "decomposition": ["value"]})
    want = Histogram()
    want.record(5, 1)
    want.record(10, 2)
    want.record(100, 3)  # the overflow bucket counts at the last bound
    assert h == want


@pytest.mark.parametrize(("body", "ctype", "reason"), [
    (b"\x0a\xff\xff", PROTO, "protobuf"),
    (b"{not json", "application/json", "json"),
    (b'{"resourceMetrics": 3}', "application/json", "json"),
    (b"", "text/plain", "content_type"),
])
def test_bad_payloads_are_refused_and_counted(body: bytes, ctype: str, reason: str) -> None:
    src = OtlpSource()
    with pytest.raises(ValueError, match=reason):
        src.ingest_request(body, ctype)
    assert src.dropped == {reason: 1}


def test_bad_points_are_dropped_alone() -> None:
    src = OtlpSource()
    long_name = pb.Metric(name="x" * 100, gauge=pb.Gauge(data_points=[pb.NumberDataPoint(as_int=1)]))
    summary = pb.Metric(name="s", summary=pb.Summary(data_points=[pb.SummaryDataPoint()]))
    bad_scale = pb.Metric(name="e", exponential_histogram=pb.ExponentialHistogram(
        data_points=[pb.ExponentialHistogramDataPoint(scale=-9)]))
    good = pb.Metric(name="ok", gauge=pb.Gauge(data_points=[pb.NumberDataPoint(as_int=1)]))
    got = src.ingest_request(_request(long_name, summary, bad_scale, good), PROTO)
    assert got.accepted == 1 and sorted(got.reasons) == ["name", "scale", "unsupported"]
    own = ["fleetscope.otlp_dropped", "fleetscope.otlp_received"]
    assert [m.name for m in src.metrics()] == [*own, "otel.ok"]
    src.begin_tick(1.0)
    assert src.collect("fleetscope.otlp_received").rows == [("http", 1.0)]


_VALID = _request(
    pb.Metric(name="a", sum=pb.Sum(is_monotonic=True, aggregation_temporality=2,
                                   data_points=[pb.NumberDataPoint(as_double=3, attributes=_attrs(k="v"))])),
    pb.Metric(name="b", exponential_histogram=pb.ExponentialHistogram(
        data_points=[_exp_point([1, 2, 3], 5)])),
    pb.Metric(name="c", histogram=pb.Histogram(data_points=[pb.HistogramDataPoint(
        explicit_bounds=[1, 2], bucket_counts=[1, 0, 4])])))


def collect_well_formed(src, now: float) -> dict[str, Rows]:
    """Begin a tick of ``src`` and collect every metric it knows, checking that each row is
    well formed: one text per discrete field, a finite number >= 0 or a consistent histogram
    per numeric field, then a finite measure (a weighted row's: its positive weight, a ready
    histogram's its count); and that the agent evaluates the rows. The rows by metric."""
    src.begin_tick(now)
    out: dict[str, Rows] = {}
    for m in src.metrics():
        rows = src.collect(m.name)
        kinds = {f.name: f.kind for f in m.fields}
        assert rows.columns == tuple(f.name for f in m.fields if f.name != "hostname"), m.name
        for row in rows.rows:
            assert len(row) == len(rows.columns) + 1, (m.name, row)
            *head, measure = row
            assert isinstance(measure, float) and math.isfinite(measure), (m.name, row)
            for name, v in zip(rows.columns, head, strict=True):
                if kinds[name] == "discrete":
                    assert isinstance(v, str), (m.name, row)
                elif isinstance(v, Histogram):
                    assert rows.weighted and measure == v.count, (m.name, row)
                    assert all(math.isfinite(n) and n > 0 for n in v.buckets.values()), (m.name, v)
                    assert math.isfinite(v.zero_count) and v.zero_count >= 0, (m.name, v)
                    assert math.isclose(v.count, math.fsum([v.zero_count, *v.buckets.values()])), v
                else:
                    assert isinstance(v, int | float) and math.isfinite(v) and v >= 0, (m.name, row)
            if rows.weighted:
                assert measure > 0, (m.name, row)
        numeric = [f.name for f in m.fields if f.kind == "numeric"]
        inst = Instrumentation(id=1, created=0.0, **validate_spec(
            {"module": m.module, "stat": m.stat, "decomposition": numeric}, Catalog([m])))
        Plan(inst, rows.columns, {"hostname": "h"}).evaluate(rows.rows, rows.weighted)
        out[m.name] = rows
    return out


def _value_now(src: OtlpSource, body: dict):
    """The value of an instrumentation over the rows of the tick ``src`` is in (no new tick)."""
    inst = Instrumentation(id=1, created=0.0, **validate_spec(body, Catalog(src.metrics())))
    rows = src.collect(inst.metric)
    return Plan(inst, rows.columns, {"hostname": "h"}).evaluate(rows.rows, rows.weighted)


# A known-good request fed after each fuzzed one: its names are too long for a few mutated
# bytes of _VALID to make, so what it must give is known whatever the fuzz did before it.
SURVIVOR_LATENCIES = [0, 1, 2, 3, 300]
SURVIVOR = _request(
    pb.Metric(name="survivor_temperature", gauge=pb.Gauge(data_points=[pb.NumberDataPoint(as_double=21.5)])),
    pb.Metric(name="survivor_orders", sum=pb.Sum(
        is_monotonic=True, aggregation_temporality=pb.AGGREGATION_TEMPORALITY_DELTA,
        data_points=[pb.NumberDataPoint(as_int=7, attributes=_attrs(http_route="/a"))])),
    pb.Metric(name="survivor_latency", exponential_histogram=pb.ExponentialHistogram(
        aggregation_temporality=pb.AGGREGATION_TEMPORALITY_DELTA,
        data_points=[_exp_point(SURVIVOR_LATENCIES, 3)])))
SURVIVOR_POINTS = 3


def _check_survivor(src: OtlpSource) -> None:
    """The survivor's values in the current tick, exactly."""
    assert _value_now(src, {"module": "otel", "stat": "survivor_temperature"}) == 21.5
    assert _value_now(src, {"module": "otel", "stat": "survivor_orders",
                            "decomposition": ["http_route"]}) == {"/a": 7.0}
    got = _value_now(src, {"module": "otel", "stat": "survivor_latency", "decomposition": ["value"]})
    want = Histogram()
    for x in SURVIVOR_LATENCIES:
        want.record(x)
    assert (got.count, got.zero_count, got.buckets) == (want.count, want.zero_count, want.buckets)


def _fuzz_round(src: OtlpSource, body: bytes, ctype: str, reference_parse) -> Decoded:
    """Feed a fuzzed ``body`` and then the survivor to ``src``: a body the reference parser
    refuses is refused and counted once under ``reason``; an accepted one has each of its data
    points counted as accepted or dropped; its rows are well formed; the survivor's values and
    counts come out exactly. What ``body`` brought."""
    reason = {PROTO: "protobuf", "application/json": "json"}[ctype]
    try:
        reference = reference_parse(body)
    except Exception:
        reference = None
    try:
        got = src.ingest_request(body, ctype)
    except ValueError as exc:
        assert reference is None, f"refused what the reference parser reads: {exc}"
        assert str(exc) == reason and src.dropped == {reason: 1} and src.received == 0
        got = Decoded(0, 0, [])
        verdict = "refused whole"
    else:
        assert reference is not None, "accepted what the reference parser refuses"
        metrics = [mt for rm in reference.resource_metrics for sm in rm.scope_metrics for mt in sm.metrics]
        points = sum(len(getattr(mt, mt.WhichOneof("data")).data_points) for mt in metrics
                     if mt.WhichOneof("data"))
        # One verdict per data point; a metric refused whole without points counts once.
        assert points <= got.accepted + got.rejected <= points + len(metrics)
        assert got.rejected == len(got.reasons)
        assert src.received == got.accepted and src.dropped == Counter(got.reasons)
        verdict = (f"accepted: {'some' if got.accepted else 'no'} points in, "
                   f"{'some' if got.rejected else 'none'} dropped")
    if currently_in_test_context():
        event(verdict)  # --hypothesis-show-statistics: how much of the fuzz reaches the points
    assert src.ingest_request(SURVIVOR, PROTO) == (SURVIVOR_POINTS, 0, [])
    rows = collect_well_formed(src, 1.0)
    dropped: Counter[str] = Counter()
    for protocol, why, n in rows["fleetscope.otlp_dropped"].rows:
        assert protocol == "http"
        dropped[why] += n
    assert dropped == src.dropped
    assert rows["fleetscope.otlp_received"].rows == [("http", float(got.accepted + SURVIVOR_POINTS))]
    _check_survivor(src)
    return got


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_fuzz_mutated_protobuf_never_escapes(data) -> None:
    body = bytearray(_VALID)
    for _ in range(data.draw(st.integers(0, 6))):
        i = data.draw(st.integers(0, len(body) - 1))
        if data.draw(st.booleans()):
            body[i] = data.draw(st.integers(0, 255))
        else:  # one bit: often still a message, with a changed value, length or kind
            body[i] ^= 1 << data.draw(st.integers(0, 7))
    cut = data.draw(st.just(len(body)) | st.integers(0, len(body)))  # cut short, or whole
    body = bytes(body[:cut])
    _fuzz_round(OtlpSource(), body, PROTO, ExportMetricsServiceRequest.FromString)


_FINITE = st.floats(-1e6, 1e6)
_NUMBERS = _FINITE | _FINITE | _FINITE | st.sampled_from([math.nan, math.inf, -math.inf])
# Mostly good, sometimes too long (for a field name, for a field value).
_KEYS = st.sampled_from(["route", "k", "region", "y" * (MAX_NAME + 1)])
_VALUES = st.sampled_from(["", "a", "/x", "é", "v" * (MAX_TAG_VALUE + 1)])


@st.composite
def _structured_metric(draw, i: int) -> tuple[pb.Metric, list[str | None], float]:
    """A metric of a drawn kind, name and points; the verdict the receiver must give each
    point (None: accepted; else the drop reason), by the rules its docstring states (a metric
    refused whole counts once even without points); and the
    sum of the accepted points of a monotonic sum."""
    kind = draw(st.sampled_from(["gauge", "sum", "exponential"] * 2 + ["summary", "none"]))
    name = draw(st.sampled_from([f"m{i}"] * 4 + ["", "  ", "n" * (MAX_NAME + 1)]))
    mt = pb.Metric(name=name)
    verdicts: list[str | None] = []
    total = 0.0
    for _ in range(draw(st.integers(0, 3)) if kind != "none" else 0):
        attrs = draw(st.dictionaries(_KEYS, _VALUES, max_size=2))
        kv = [KeyValue(key=k, value=AnyValue(string_value=v)) for k, v in attrs.items()]
        bad_attr = any(len(k) > MAX_NAME or len(v) > MAX_TAG_VALUE for k, v in attrs.items())
        if kind == "summary":
            mt.summary.data_points.add().attributes.extend(kv)
            verdicts.append("unsupported")
            continue
        if kind == "exponential":
            scale = draw(st.integers(-6, 22))
            dp = mt.exponential_histogram.data_points.add(scale=scale, zero_count=draw(st.integers(0, 3)))
            dp.positive.offset = draw(st.integers(-20, 20))
            dp.positive.bucket_counts.extend(draw(st.lists(st.integers(0, 5), max_size=4)))
            mt.exponential_histogram.aggregation_temporality = pb.AGGREGATION_TEMPORALITY_DELTA
            reason = "scale" if not -4 <= scale <= 20 else None
        else:
            x = draw(_NUMBERS)
            dp = getattr(mt, kind).data_points.add(as_double=x)
            if kind == "sum":
                mt.sum.is_monotonic = True
                mt.sum.aggregation_temporality = pb.AGGREGATION_TEMPORALITY_DELTA
            reason = "value" if not math.isfinite(x) else None
        dp.attributes.extend(kv)
        reason = "attribute" if bad_attr else reason
        verdicts.append(reason)
        if kind == "sum" and reason is None:
            total += x
    if kind != "none":
        getattr(mt, {"exponential": "exponential_histogram"}.get(kind, kind)).SetInParent()  # no points
    if kind in ("summary", "none"):
        verdicts = ["unsupported"] * max(len(verdicts), 1)
    elif not name.strip() or len(name) > MAX_NAME:
        verdicts = ["name"] * max(len(verdicts), 1)
    return mt, verdicts, total


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_fuzz_structured_requests_give_each_point_its_verdict(data) -> None:
    """Requests of every kind of metric, good and bad: each data point is accepted or dropped
    for the reason the rules give, counted so, and the accepted sums add up exactly."""
    drawn = [data.draw(_structured_metric(i)) for i in range(data.draw(st.integers(1, 4)))]
    src = OtlpSource()
    body = _request(*(mt for mt, _, _ in drawn))
    got = _fuzz_round(src, body, PROTO, ExportMetricsServiceRequest.FromString)
    verdicts = [v for _, vs, _ in drawn for v in vs]
    assert Counter(got.reasons) == Counter(v for v in verdicts if v)
    assert got.accepted == verdicts.count(None)
    for i, (mt, vs, total) in enumerate(drawn):
        if mt.WhichOneof("data") == "sum" and None in vs:
            assert math.isclose(_value_now(src, {"module": "otel", "stat": f"m{i}"}), total, abs_tol=1e-6)


def _reference_json(body: bytes):
    from google.protobuf import json_format

    return json_format.Parse(body.decode("utf-8"), ExportMetricsServiceRequest(), ignore_unknown_fields=True)


@settings(max_examples=150, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(
                        st.sampled_from(["resourceMetrics", "scopeMetrics", "metrics", "name", "gauge",
                                         "dataPoints", "asInt", "asDouble", "sum", "histogram"]),
                        kids, max_size=3), max_leaves=20))
def test_fuzz_json_never_escapes(doc) -> None:
    _fuzz_round(OtlpSource(), json.dumps(doc).encode(), "application/json", _reference_json)


def test_fuzz_round_sees_real_data_points() -> None:
    """The fuzz's checks on a body known to hold points of each kind (not only refusals)."""
    src = OtlpSource()
    _fuzz_round(src, _VALID, PROTO, ExportMetricsServiceRequest.FromString)
    assert src.received == 3 + SURVIVOR_POINTS and not src.dropped


@pytest.fixture
def otlp_server(tmp_path: Path):
    port = free_port()
    srv = Server(tmp_path, free_port(), ["--otlp", f"127.0.0.1:{port}"]).start()
    srv.otlp_url = f"http://127.0.0.1:{port}/v1/metrics"
    yield srv
    srv.stop()


def _run_program(url: str) -> None:
    subprocess.run([sys.executable, otlp_program.__file__, url], check=True, timeout=60)


def test_real_sdk_exporter_end_to_end(otlp_server: Server) -> None:
    url = otlp_server.otlp_url
    _run_program(url)  # a first run: the metrics are discovered
    with otlp_server.client() as c:
        wanted = {"otel.checkout_latency", "otel.response_size", "otel.orders", "otel.queue_depth"}

        def discovered():
            ms = {m["name"]: m for m in c.get(f"{API}/metrics").json()["metrics"]}
            return ms if wanted <= ms.keys() else None

        names = wait_for(discovered, timeout=5)
        fields = {f["name"]: f for f in names["otel.checkout_latency"]["fields"]}
        assert {"service", "deployment_environment", "http_route", "value"} <= fields.keys()
        assert fields["value"]["type"]["name"] == "ms"
        specs = {
            "lat": {"module": "otel", "stat": "checkout_latency", "decomposition": ["http_route", "value"]},
            "size": {"module": "otel", "stat": "response_size", "decomposition": ["value"]},
            "orders": {"module": "otel", "stat": "orders", "decomposition": ["http_route"],
                       "predicate": {"eq": ["service", "shop"]}},
        }
        ids = {k: c.post(f"{API}/instrumentations", json=v).json()["id"] for k, v in specs.items()}
        for i in ids.values():
            wait_for(lambda i=i: [p for p in c.get(f"{API}/instrumentations/{i}/value",
                                                   params={"ndatapoints": 3}).json() if p["nsources"]])
        _run_program(url)  # a second process: a new cumulative series, counted from zero

        def points(key: str) -> list:
            return [p["value"] for p in c.get(f"{API}/instrumentations/{ids[key]}/value",
                                              params={"ndatapoints": 60}).json() if p["value"]]

        def orders():
            total: dict[str, float] = {}
            for v in points("orders"):
                for k, x in v.items():
                    total[k] = total.get(k, 0) + x
            return total if total == otlp_program.ORDERS else None

        wait_for(orders, timeout=10)
        got: dict[str, Histogram] = {}
        for v in points("lat"):
            for route, h in v.items():
                got.setdefault(route, Histogram()).merge(Histogram.from_json(h))
        for route, xs in otlp_program.LATENCIES.items():
            want = Histogram()
            for x in xs:
                want.record(x)
            assert got[route].count == want.count and got[route].buckets == want.buckets, route
        sizes = Histogram()
        for v in points("size"):
            sizes.merge(Histogram.from_json(v))
        assert sizes.count == len(otlp_program.SIZES)
        # Explicit buckets (the SDK's default bounds 0, 5, 10, 25, ... 10000): every value counts at
        # its bucket's upper bound, the overflow bucket at the last bound.
        want = Histogram()
        for at in (0, 5, 25, 250, 5000, 10000, 10000):
            want.record(at)
        assert sizes == want
        # Bad payloads are answered 4xx and do not disturb anything.
        assert httpx.post(url, content=b"\x0a\xff", headers={"content-type": PROTO}).status_code == 400
        assert httpx.post(url, content=b"x", headers={"content-type": "text/csv"}).status_code == 415


def test_exponential_points_merge_whole_at_low_scales_and_across_scale_changes() -> None:
    """A point is one ready histogram: below schema 3 its layout is kept (no rounding to
    upper bounds), OTel's sum is kept, and cumulative points subtract bucket by bucket at
    the coarser scale when the SDK lowers its scale."""
    src = OtlpSource()
    xs = [0.5, 3, 3, 40, 1000]

    def metric(points: list[float], scale: int) -> pb.Metric:
        return pb.Metric(name="lat", unit="ms", exponential_histogram=pb.ExponentialHistogram(
            aggregation_temporality=pb.AGGREGATION_TEMPORALITY_CUMULATIVE,
            data_points=[_exp_point(points, scale, start=7)]))

    src.ingest_request(_request(metric(xs, 1)), PROTO)
    body = {"module": "otel", "stat": "lat", "decomposition": ["value"]}
    want = Histogram(1)
    for x in xs:
        want.record(x)
    assert _evaluate(src, body) == want  # schema 1 kept; the sum is OTel's (exact here)
    more = [*xs, 3, 5000]
    src.ingest_request(_request(metric(more, 0)), PROTO)  # the SDK rescaled to 0
    want = Histogram(0)
    for x in (3, 5000):
        want.record(x)
    assert _evaluate(src, body) == want
    rows = src.collect("otel.lat")
    assert len(rows.rows) == 1 and isinstance(rows.rows[0][-2], Histogram)  # one row, one histogram
    # A predicate on the value sees the buckets (here: the one holding 5000).
    spec = {**body, "decomposition": [], "predicate": {"gt": ["value", 100]}}
    inst = Instrumentation(id=2, created=0.0, **validate_spec(spec, Catalog(src.metrics())))
    assert Plan(inst, rows.columns, {"hostname": "h"}).evaluate(rows.rows, rows.weighted) == 1.0
