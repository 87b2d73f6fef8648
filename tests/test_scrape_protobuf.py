"""Scraping the Prometheus protobuf exposition: the codec (one encoder and decoder for
/metrics and the scraper), native histograms kept exact, summaries, cumulative and
gauge histograms, a fuzz of the decoder, a real `fleetscope serve` scraping another
one's native histograms, and summaries from a real prometheus_client server."""

from __future__ import annotations

import math
import threading
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Summary, start_http_server
from prometheus_client.core import Metric

from fleetscope.agent.evaluate import Plan
from fleetscope.formats import promproto as proto
from fleetscope.model.histogram import Histogram
from fleetscope.model.instrumentation import Instrumentation, validate_spec
from fleetscope.model.metrics import Catalog
from fleetscope.sources.scrape import ScrapeSource
from fleetscope.sources.statsd_parse import MAX_NAME
from tests.conftest import Server, free_port
from tests.test_api import API, default_id, wait_for
from tests.test_otlp import collect_well_formed


def _hist(*xs: float, schema: int = 3, zero_threshold: float = 0.0) -> Histogram:
    h = Histogram(schema, zero_threshold)
    for x in xs:
        h.record(x)
    return h


def _family(name: str, kind: int, *metrics) -> object:
    fam = proto.M["MetricFamily"](name=name, type=kind)
    fam.metric.extend(metrics)
    return fam


def _metric(labels: dict[str, str] | None = None, **kw) -> object:
    m = proto.M["Metric"](**kw)
    for k, v in (labels or {}).items():
        m.label.add(name=k, value=v)
    return m


def _native(h: Histogram) -> object:
    m = proto.M["Metric"]()
    proto.encode_native(h, m.histogram)
    return m


def _evaluate(src: ScrapeSource, body: dict):
    inst = Instrumentation(id=1, created=0.0, **validate_spec(body, Catalog(src.metrics())))
    rows = src.collect(inst.metric)
    return Plan(inst, rows.columns, {"hostname": "h"}).evaluate(rows.rows, rows.weighted)


# -- the codec --------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.integers(-4, 8), st.lists(st.floats(0, 1e12), max_size=60), st.floats(0, 1e-3))
def test_native_round_trip_is_exact(schema: int, xs: list[float], zero_threshold: float) -> None:
    h = _hist(*xs, schema=schema, zero_threshold=zero_threshold)
    h.sum = float(len(xs))  # the float sum of the values need not survive; a sum does
    m = proto.M["Metric"]()
    proto.encode_native(h, m.histogram)
    back = proto.decode_native(proto.M["Metric"].FromString(m.SerializeToString()).histogram)
    want = h.copy()
    if want.schema > 3:  # finer than fleetscope's schema: downscaled, exactly
        want.downscale(want.schema - 3)
    assert back == want


def test_decode_native_spans_negative_buckets_and_float_counts() -> None:
    h = proto.M["Histogram"](schema=0, zero_threshold=0.001, zero_count=2, sample_sum=9.5, sample_count=9)
    h.positive_span.add(offset=-1, length=2)  # indices -1, 0
    h.positive_span.add(offset=3, length=1)  # index 4 (a gap of 3)
    h.positive_delta.extend([1, 2, -2])  # counts 1, 3, 1
    h.negative_span.add(offset=0, length=1)
    h.negative_delta.append(2)
    got = proto.decode_native(h)
    assert (got.schema, got.zero_threshold, got.buckets) == (0, 0.001, {-1: 1.0, 0: 3.0, 4: 1.0})
    assert got.zero_count == 4.0 and got.count == 9.0 and got.sum == 9.5  # negatives in the zero bucket
    f = proto.M["Histogram"](schema=5, sample_sum=1.0)
    f.positive_span.add(offset=9, length=2)
    f.positive_count.extend([0.5, 1.25])
    got = proto.decode_native(f)
    assert got.schema == 3 and got.buckets == {3: 1.75}  # 9 and 10 at schema 5 are 3 at schema 3
    for bad, reason in [(dict(schema=-53), "schema"), (dict(schema=9), "schema"),
                        (dict(zero_threshold=math.nan), "value")]:
        try:
            proto.decode_native(proto.M["Histogram"](**bad))
        except ValueError as exc:
            assert str(exc) == reason
        else:
            raise AssertionError(bad)
    spans = proto.M["Histogram"](schema=1)
    spans.positive_span.add(offset=0, length=3)
    spans.positive_delta.extend([1, 1])  # spans cover three buckets, two counts given
    negative = proto.M["Histogram"](schema=1)
    negative.positive_span.add(offset=0, length=2)
    negative.positive_delta.extend([1, -2])  # a count of -1
    for msg, reason in ((spans, "histogram"), (negative, "value")):
        try:
            proto.decode_native(msg)
        except ValueError as exc:
            assert str(exc) == reason
        else:
            raise AssertionError(reason)


def test_decode_delimited_counts_what_it_cannot_frame() -> None:
    good = proto.encode_delimited([_family("up", proto.GAUGE, _metric(gauge=proto.M["Gauge"](value=1)))])
    fams, bad = proto.decode_delimited(good + good[:-2])
    assert [f.name for f in fams] == ["up"] and bad == ["truncated"]
    fams, bad = proto.decode_delimited(b"\x03\xff\xff\xff" + good)
    assert [f.name for f in fams] == ["up"] and bad == ["protobuf"]
    assert proto.decode_delimited(b"\xff\xff\xff\xff\xff\xff\x7f") == ([], ["too_large"])
    assert proto.decode_delimited(b"\xff") == ([], ["truncated"])
    assert proto.decode_delimited(b"\x03\x0a\x01\xff") == ([], ["utf8"])  # a name that is not UTF-8
    assert proto.is_protobuf(proto.CONTENT_TYPE)
    assert not proto.is_protobuf("application/openmetrics-text; version=1.0.0")
    assert not proto.is_protobuf(None)


# -- the scraper over protobuf ----------------------------------------------------------------


def test_counters_gauges_summaries_and_classic_histograms_from_protobuf() -> None:
    def scrape(jobs: float, temp: float, count: int, total: float, buckets: list[int]) -> bytes:
        classic = proto.M["Histogram"](sample_count=buckets[-1], sample_sum=total)
        for le, n in zip((0.1, 1.0), buckets[:-1], strict=True):
            classic.bucket.add(upper_bound=le, cumulative_count=n)  # +Inf left out, as allowed
        summary = proto.M["Summary"](sample_count=count, sample_sum=total)
        summary.quantile.add(quantile=0.5, value=0.2)
        summary.quantile.add(quantile=0.99, value=math.nan)  # an empty window: skipped
        return proto.encode_delimited([
            _family("jobs_total", proto.COUNTER,
                    _metric({"queue": "mail"}, counter=proto.M["Counter"](value=jobs))),
            _family("temp", proto.GAUGE, _metric(gauge=proto.M["Gauge"](value=temp))),
            _family("raw", proto.UNTYPED, _metric(untyped=proto.M["Untyped"](value=7))),
            _family("rpc_seconds", proto.SUMMARY, _metric({"svc": "a"}, summary=summary)),
            _family("size_bytes", proto.HISTOGRAM, _metric(histogram=classic)),
        ])

    src = ScrapeSource([])
    src.ingest_answer(scrape(5, 20, 10, 3.0, [1, 2, 3]), proto.CONTENT_TYPE, "t")
    src.begin_tick(1.0)
    names = {m.name: m for m in src.metrics()}
    assert {"prom.jobs", "prom.temp", "prom.raw", "prom.rpc_seconds", "prom.rpc_seconds_sum",
            "prom.rpc_seconds_count", "prom.size_bytes"} <= names.keys()
    assert names["prom.rpc_seconds"].kind == "point" and names["prom.rpc_seconds"].field("quantile")
    assert names["prom.size_bytes"].field("value").type.name == "bytes"
    by_quantile = {"module": "prom", "stat": "rpc_seconds", "decomposition": ["quantile"]}
    assert _evaluate(src, by_quantile) == {"0.5": 0.2}
    src.ingest_answer(scrape(8, 21.5, 14, 4.5, [2, 4, 6]), proto.CONTENT_TYPE, "t")
    src.begin_tick(2.0)
    assert _evaluate(src, {"module": "prom", "stat": "jobs", "decomposition": ["queue"]}) == {"mail": 3.0}
    assert _evaluate(src, {"module": "prom", "stat": "temp"}) == 21.5
    assert _evaluate(src, {"module": "prom", "stat": "raw"}) == 7.0
    assert _evaluate(src, {"module": "prom", "stat": "rpc_seconds_count"}) == 4.0
    assert _evaluate(src, {"module": "prom", "stat": "rpc_seconds_sum"}) == 1.5
    got = _evaluate(src, {"module": "prom", "stat": "size_bytes", "decomposition": ["value"]})
    assert got == _hist(0.1, 1.0, 1.0)  # each increase at its bucket's upper bound (+Inf at 1)
    assert sum(src.dropped.values()) == 0


def test_native_histograms_cumulative_and_gauge() -> None:
    first = _hist(0, 1, 3, 3, 100)
    later = first.copy()
    for x in (3, 7, 7, 0.125):  # dyadic: the float sums are exact
        later.record(x)
    coarser = later.copy()
    coarser.downscale(2)  # the client lowered its resolution as the range grew
    coarser.record(5000)

    def scrape(cum: Histogram, gauge: Histogram) -> bytes:
        lat, slot = _native(cum), _native(gauge)
        lat.label.add(name="route", value="/a")
        return proto.encode_delimited([_family("lat_seconds", proto.HISTOGRAM, lat),
                                       _family("slot", proto.GAUGE_HISTOGRAM, slot)])

    src = ScrapeSource([])
    lat = {"module": "prom", "stat": "lat_seconds", "decomposition": ["route", "value"]}
    slot = {"module": "prom", "stat": "slot", "decomposition": ["value"]}
    src.ingest_protobuf(scrape(first, _hist(2, 2)), "t")
    src.begin_tick(1.0)
    assert _evaluate(src, lat) == {}  # a first scrape of a cumulative series: a baseline
    assert _evaluate(src, slot) == _hist(2, 2)  # a gauge histogram counts whole
    assert src.metrics()[-1].field("value").type.name in ("s", "number")
    src.ingest_protobuf(scrape(later, _hist(9)), "t")
    src.begin_tick(2.0)
    assert _evaluate(src, lat) == {"/a": _hist(3, 7, 7, 0.125)}
    assert _evaluate(src, slot) == _hist(9)
    src.ingest_protobuf(scrape(coarser, _hist(9)), "t")
    src.begin_tick(3.0)
    assert _evaluate(src, lat) == {"/a": _hist(5000, schema=1)}  # the delta at the coarser schema
    src.ingest_protobuf(scrape(_hist(1), _hist()), "t")  # a restart of the client: a reset
    src.begin_tick(4.0)
    assert _evaluate(src, lat) == {"/a": _hist(1)}
    # A predicate on the value splits a ready histogram into its buckets.
    src.ingest_protobuf(scrape(_hist(1, 1, 50), _hist(0.5, 30, 40)), "t")
    src.begin_tick(5.0)
    body = {"module": "prom", "stat": "slot", "decomposition": [], "predicate": {"gt": ["value", 10]}}
    assert _evaluate(src, body) == 2.0
    assert sum(src.dropped.values()) == 0


_LABELS = st.dictionaries(st.sampled_from(["a", "le", "hostname", "x" * 300]), st.text(max_size=5),
                          max_size=2)
_ZEROS = st.sampled_from([0.0, 1e-9, -1.0, math.inf, math.nan])
_OFFSETS = st.integers(-2**31, 2**31 - 1)
_SAMPLE_VALUES = st.floats() | st.sampled_from([math.nan, math.inf, -math.inf])  # often not finite


@st.composite
def _families(draw) -> list:
    out = []
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.integers(-1, 6))
        metrics = []
        for _ in range(draw(st.integers(0, 3))):
            h = proto.M["Histogram"](schema=draw(st.integers(-60, 12)),
                                     zero_threshold=draw(_ZEROS),
                                     zero_count=draw(st.integers(0, 5)), sample_sum=draw(st.floats()))
            for _ in range(draw(st.integers(0, 3))):
                h.positive_span.add(offset=draw(_OFFSETS), length=draw(st.integers(0, 4)))
            h.positive_delta.extend(draw(st.lists(st.integers(-5, 5), max_size=6)))
            if draw(st.booleans()):
                h.negative_count.extend(draw(st.lists(st.floats(), max_size=3)))
                h.negative_span.add(offset=0, length=len(h.negative_count))
            h.bucket.add(upper_bound=draw(st.floats()), cumulative_count=draw(st.integers(0, 9)))
            summary = proto.M["Summary"](sample_count=draw(st.integers(0, 9)), sample_sum=draw(st.floats()))
            summary.quantile.add(quantile=draw(st.floats()), value=draw(st.floats()))
            metrics.append(_metric(draw(_LABELS), histogram=h, summary=summary,
                                   counter=proto.M["Counter"](value=draw(_SAMPLE_VALUES)),
                                   gauge=proto.M["Gauge"](value=draw(_SAMPLE_VALUES))))
        name = draw(st.sampled_from(["a", "b_total", "c_seconds", "n" * 300, ""]))
        out.append(_family(name, kind, *metrics))
    return out


_KNOWN_KINDS = {proto.COUNTER, proto.GAUGE, proto.SUMMARY, proto.UNTYPED, proto.HISTOGRAM,
                proto.GAUGE_HISTOGRAM}


_PLAIN = {proto.COUNTER: "counter", proto.GAUGE: "gauge", proto.UNTYPED: "untyped"}


def _bad_name(name: str) -> bool:
    return not name or len(name) > MAX_NAME


def _survivor(i: int) -> bytes:
    """The ``i``-th scrape of a known-good target, fed after each fuzzed one: a counter going
    up by 10 a scrape, a gauge, a gauge histogram (its names are none the fuzz draws)."""
    return proto.encode_delimited([
        _family("zq_survivor_jobs_total", proto.COUNTER,
                _metric({"queue": "mail"}, counter=proto.M["Counter"](value=10.0 * (i + 1)))),
        _family("zq_survivor_temp", proto.GAUGE, _metric(gauge=proto.M["Gauge"](value=21.5 + i))),
        _family("zq_survivor_slot", proto.GAUGE_HISTOGRAM, _native(_hist(0, 1, 2, 300))),
    ])


def _check_survivor(src: ScrapeSource, i: int) -> None:
    """The survivor's values in the tick after its ``i``-th scrape, exactly."""
    jobs = {"module": "prom", "stat": "zq_survivor_jobs", "decomposition": ["queue"]}
    assert _evaluate(src, jobs) == ({} if i == 0 else {"mail": 10.0})  # the first scrape: a baseline
    assert _evaluate(src, {"module": "prom", "stat": "zq_survivor_temp"}) == 21.5 + i
    slot = {"module": "prom", "stat": "zq_survivor_slot", "decomposition": ["value"]}
    assert _evaluate(src, slot) == _hist(0, 1, 2, 300)


def _counted_drops(rows: dict) -> Counter[str]:
    out: Counter[str] = Counter()
    for protocol, reason, n in rows["fleetscope.scrape_dropped"].rows:
        assert protocol == "http"
        out[reason] += n
    return out


@settings(max_examples=200, deadline=None)
@given(st.lists(_families(), min_size=1, max_size=3))
def test_fuzz_structured_payloads_never_escape(scrapes: list) -> None:
    """Each scrape counts the drops its families must cause (by rules stated independently of
    the code), its rows are well formed, and a good target scraped beside it comes out exactly."""
    src = ScrapeSource([])
    for i, fams in enumerate(scrapes):
        before = Counter(src.dropped)
        src.ingest_protobuf(proto.encode_delimited(fams), "t")
        src.ingest_protobuf(_survivor(i), "survivor")
        new = src.dropped - before
        # One "unsupported" per family of an unknown type, nothing else gives it.
        assert new["unsupported"] == sum(f.type not in _KNOWN_KINDS for f in fams)
        # A family with an unusable name that has something to say drops at least once as "name".
        named = [f for f in fams if f.type in _KNOWN_KINDS and _bad_name(f.name)
                 and (f.metric or f.type in (proto.HISTOGRAM, proto.GAUGE_HISTOGRAM))]
        assert new["name"] >= len(named)
        # A counter, gauge or untyped sample: one "tags" drop if a label cannot be a field name,
        # else one "value" drop if its value is not finite.
        plain = [(m, getattr(m, _PLAIN[f.type]).value) for f in fams
                 if f.type in _PLAIN and not _bad_name(f.name) for m in f.metric]
        bad_label = [any(len(lp.name) > MAX_NAME for lp in m.label) for m, _ in plain]
        assert new["tags"] >= sum(bad_label)
        assert new["value"] >= sum(not bad and not math.isfinite(x)
                                   for bad, (_, x) in zip(bad_label, plain, strict=True))
        rows = collect_well_formed(src, float(i))
        assert _counted_drops(rows) == new
        _check_survivor(src, i)


_VALID = proto.encode_delimited([
    _family("lat", proto.HISTOGRAM, _native(_hist(0, 1, 2, 300))),
    _family("q", proto.SUMMARY, _metric(summary=proto.M["Summary"](sample_count=1, sample_sum=2))),
])
_FIRST_FRAME = len(proto.encode_delimited([_family("lat", proto.HISTOGRAM, _native(_hist(0, 1, 2, 300)))]))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | st.builds(
    lambda cut, flips: bytes(b ^ flips.get(i, 0) for i, b in enumerate(_VALID))[:cut],
    st.integers(0, len(_VALID)), st.dictionaries(st.integers(0, len(_VALID) - 1), st.integers(1, 255))))
def test_fuzz_bytes_never_escape_and_are_counted(data: bytes) -> None:
    src = ScrapeSource([])
    _, bad = proto.decode_delimited(data)
    src.ingest_protobuf(data, "t")
    src.ingest_protobuf(data, "t")
    for reason, n in Counter(bad).items():  # framing reasons: nothing but framing gives them
        assert src.dropped[reason] == 2 * n, reason
    if _VALID.startswith(data):  # cut short, unchanged: the frames before the cut are read, whole
        frames = [0, _FIRST_FRAME, len(_VALID)]
        assert src.dropped == ({} if len(data) in frames else {"truncated": 2})
        names = {m.name for m in src.metrics()}
        assert ("prom.lat" in names, "prom.q_count" in names) == (len(data) >= _FIRST_FRAME,
                                                                   len(data) == len(_VALID))
    src.ingest_protobuf(_survivor(0), "survivor")
    rows = collect_well_formed(src, 1.0)
    assert _counted_drops(rows) == src.dropped
    _check_survivor(src, 0)


# -- end to end -------------------------------------------------------------------------------


def test_fleetscope_scrapes_fleetscope_native_histograms_exactly(tmp_path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = Server(tmp_path / "a", free_port()).start()
    second = None
    stop = threading.Event()

    def traffic() -> None:  # API requests on the first: its default latency heatmap fills
        with first.client() as c:
            while not stop.is_set():
                c.get("/healthz")
                c.get(f"{API}/metrics")
                stop.wait(0.02)

    feeder = threading.Thread(target=traffic, daemon=True)
    try:
        feeder.start()
        second = Server(tmp_path / "b", free_port(), ["--scrape", f"{first.url}/metrics,1"]).start()
        with first.client() as a, second.client() as b:
            source_id = default_id(a, "fleetscope.api_requests", ["latency"])
            name = "prom.fleetscope_api_requests_latency"
            wait_for(lambda: name in {m["name"] for m in b.get(f"{API}/metrics").json()["metrics"]})
            inst = b.post(f"{API}/instrumentations", json={
                "module": "prom", "stat": name.split(".", 1)[1], "decomposition": ["value"],
                "predicate": {"eq": ["instrumentation", str(source_id)]}}).json()

            def compare():
                ours = [Histogram.from_json(p["value"]) for p in b.get(
                    f"{API}/instrumentations/{inst['id']}/value", params={"ndatapoints": 60}).json()
                    if p["value"] and p["value"]["count"]]
                theirs = [Histogram.from_json(p["value"]) for p in a.get(
                    f"{API}/instrumentations/{source_id}/value", params={"ndatapoints": 120}).json()
                    if p["value"]]
                matched = [h for h in ours if h in theirs]
                return (ours, matched) if len(matched) >= 4 else None

            ours, matched = wait_for(compare, timeout=30, interval=0.5)
            # Each scrape takes the first's latest slot whole (a gauge histogram): the same
            # schema, zero bucket and bucket counts. (A tick of the second that happened to
            # hold two scrapes would hold the merge of two slots.)
            assert len(matched) >= 0.75 * len(ours), (len(matched), len(ours))
            assert all(h.count >= 1 and h.schema == 3 for h in matched)
            assert second.proc is not None and second.proc.poll() is None
    finally:
        stop.set()
        feeder.join(5)
        if second is not None:
            second.stop()
        first.stop()


class _Quantiles:
    """A collector exposing a summary with quantiles (prometheus_client's own Summary has none)."""

    def __init__(self) -> None:
        self.p50 = 0.012

    def collect(self):
        m = Metric("rpc_latency_seconds", "rpc latency", "summary")
        m.add_sample("rpc_latency_seconds", {"service": "a", "quantile": "0.5"}, self.p50)
        m.add_sample("rpc_latency_seconds", {"service": "a", "quantile": "0.99"}, 0.25)
        m.add_sample("rpc_latency_seconds_count", {"service": "a"}, 10.0)
        m.add_sample("rpc_latency_seconds_sum", {"service": "a"}, 0.5)
        yield m


def test_summaries_from_a_real_prometheus_client_server(tmp_path) -> None:
    reg = CollectorRegistry()
    jobs = Summary("job_seconds", "job time", ["queue"], registry=reg)
    quantiles = _Quantiles()
    reg.register(quantiles)
    jobs.labels("mail").observe(1.0)
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=reg)
    srv = Server(tmp_path, free_port(), ["--scrape", f"http://127.0.0.1:{port}/metrics,1"]).start()
    try:
        with srv.client() as c:
            wanted = {"prom.job_seconds_count", "prom.job_seconds_sum", "prom.rpc_latency_seconds"}

            def discovered():
                ms = {m["name"]: m for m in c.get(f"{API}/metrics").json()["metrics"]}
                return ms if wanted <= ms.keys() else None

            fields = {f["name"] for f in wait_for(discovered)["prom.rpc_latency_seconds"]["fields"]}
            assert fields >= {"quantile", "service"}
            specs = {"count": {"module": "prom", "stat": "job_seconds_count", "decomposition": ["queue"]},
                     "sum": {"module": "prom", "stat": "job_seconds_sum"},
                     "q": {"module": "prom", "stat": "rpc_latency_seconds", "decomposition": ["quantile"]}}
            ids = {k: c.post(f"{API}/instrumentations", json=v).json()["id"] for k, v in specs.items()}
            for i in ids.values():
                wait_for(lambda i=i: [p for p in c.get(f"{API}/instrumentations/{i}/value",
                                                       params={"ndatapoints": 3}).json() if p["nsources"]])
            for x in (0.25, 0.5, 2.0):
                jobs.labels("mail").observe(x)
            quantiles.p50 = 0.02

            def values(key: str) -> list:
                return [p["value"] for p in c.get(f"{API}/instrumentations/{ids[key]}/value",
                                                  params={"ndatapoints": 30}).json() if p["value"]]

            def counted():
                total = sum(v.get("mail", 0.0) for v in values("count"))
                return total == 3.0 and sum(values("sum")) == 2.75

            wait_for(counted, timeout=10)
            wait_for(lambda: values("q") and values("q")[-1] == {"0.5": 0.02, "0.99": 0.25}, timeout=10)
    finally:
        srv.stop()
        server.shutdown()
        thread.join(5)
