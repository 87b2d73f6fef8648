"""The Prometheus remote protocol codec (formats/promremote.py): the wire bytes checked
against prompb's field numbers written out by hand, Snappy against a block made by
hand, round trips of write requests, read requests and read responses with native
histograms kept exact, and bad bodies refused with their reasons."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetscope.formats import promremote as pr
from fleetscope.model.histogram import Histogram


def _hist(*xs: float, schema: int = 3, zero_threshold: float = 0.0) -> Histogram:
    h = Histogram(schema, zero_threshold)
    for x in xs:
        h.record(x)
    return h


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, wire: int, payload: bytes) -> bytes:
    tag = _varint(number << 3 | wire)
    return tag + (_varint(len(payload)) + payload if wire == 2 else payload)


def _zigzag(n: int) -> int:
    return (n << 1) ^ (n >> 63)


# -- the wire, from the .proto files ----------------------------------------------------------


def test_write_request_bytes_follow_prompb_field_numbers() -> None:
    """A WriteRequest built by hand from types.proto / remote.proto: TimeSeries = 1
    (labels = 1, samples = 2, histograms = 4), Sample {value = 1 double, timestamp = 2},
    Histogram {count_int = 1, sum = 3, schema = 4 sint32, zero_threshold = 5,
    zero_count_int = 6, positive_spans = 11, positive_deltas = 12 sint64 packed,
    timestamp = 15}, MetricMetadata = 3 {type = 1, metric_family_name = 2, help = 4}."""
    label = _field(1, 2, _field(1, 2, b"__name__") + _field(2, 2, b"rpc_seconds"))
    sample = _field(2, 2, _field(1, 1, struct.pack("<d", 2.5)) + _field(2, 0, _varint(1700000000123)))
    span = _field(11, 2, _field(1, 0, _varint(_zigzag(-3))) + _field(2, 0, _varint(2)))
    deltas = _field(12, 2, _varint(_zigzag(4)) + _varint(_zigzag(-1)))
    hist = _field(4, 2, _field(1, 0, _varint(8)) + _field(3, 1, struct.pack("<d", 1.75))
                  + _field(4, 0, _varint(_zigzag(-2))) + _field(5, 1, struct.pack("<d", 0.001))
                  + _field(6, 0, _varint(1)) + span + deltas + _field(15, 0, _varint(1700000000500)))
    meta = _field(3, 2, _field(1, 0, _varint(pr.HISTOGRAM)) + _field(2, 2, b"rpc_seconds")
                  + _field(4, 2, b"RPC latency."))
    body = pr.compress(_field(1, 2, label + sample + hist) + meta)

    request = pr.decode_write_request(body)
    ts = request.timeseries[0]
    assert pr.labels(ts) == {"__name__": "rpc_seconds"}
    assert [(s.timestamp, s.value) for s in ts.samples] == [(1700000000123, 2.5)]
    assert request.metadata[0].type == pr.HISTOGRAM
    meta = request.metadata[0]
    assert (meta.metric_family_name, meta.help) == ("rpc_seconds", "RPC latency.")
    h = ts.histograms[0]
    assert h.timestamp == 1700000000500
    got = pr.decode_histogram(h)
    # schema -2: indices -3 and -2 hold 4 and 3 (deltas 4, -1); one in the zero bucket.
    assert (got.schema, got.zero_threshold, got.zero_count, got.sum) == (-2, 0.001, 1.0, 1.75)
    assert got.buckets == {-3: 4.0, -2: 3.0} and got.count == 8.0

    # ... and our encoder writes those bytes back (fields in number order, as protobuf does).
    again = pr.M["WriteRequest"].FromString(pr.decompress(pr.encode_write_request(
        [pr.Series({"__name__": "rpc_seconds"}, [(1700000000123, 2.5)])])))
    assert again.timeseries[0].SerializeToString() == (label + sample)


def test_read_request_bytes_follow_prompb_field_numbers() -> None:
    """ReadRequest {queries = 1, accepted_response_types = 2}, Query {start = 1, end = 2,
    matchers = 3, hints = 4}, LabelMatcher {type = 1 (EQ, NEQ, RE, NRE), name = 2,
    value = 3}, ReadHints {step_ms = 1, func = 2, range_ms = 7}."""
    matchers = b"".join(_field(3, 2, _field(1, 0, _varint(t)) + _field(2, 2, n) + _field(3, 2, v))
                        for t, n, v in ((0, b"__name__", b"up"), (1, b"job", b"a"),
                                        (2, b"instance", b"h.*"), (3, b"env", b"dev|test")))
    hints = _field(4, 2, _field(1, 0, _varint(15000)) + _field(2, 2, b"rate") + _field(7, 0, _varint(300000)))
    query = _field(1, 2, _field(1, 0, _varint(1000)) + _field(2, 0, _varint(61000)) + matchers + hints)
    body = pr.compress(query + _field(2, 2, _varint(pr.SAMPLES)))
    assert pr.decode_read_request(body) == [pr.ReadQuery(
        1000, 61000, (("__name__", "=", "up"), ("job", "!=", "a"), ("instance", "=~", "h.*"),
                      ("env", "!~", "dev|test")), 15000, "rate", 300000)]


def test_snappy_is_the_block_format() -> None:
    # A block made by hand: the length varint, then one literal (tag (len - 1) << 2).
    assert pr.decompress(b"\x05\x10hello") == b"hello"
    assert pr.decompress(pr.compress(b"x" * 100000)) == b"x" * 100000


# -- round trips ------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(st.integers(-4, 8), st.lists(st.floats(0, 1e12), max_size=60), st.floats(0, 1e-3),
       st.booleans())
def test_histogram_round_trip_is_exact(schema: int, xs: list[float], zero_threshold: float,
                                       fractional: bool) -> None:
    h = _hist(*xs, schema=schema, zero_threshold=zero_threshold)
    h.sum = float(len(xs))  # the float sum of the values need not survive; a sum does
    if fractional:  # a float histogram (counts averaged over time)
        h = h.scale(0.25)
    body = pr.encode_write_request([pr.Series({"__name__": "x"}, histograms=[(7, h)])])
    msg = pr.decode_write_request(body).timeseries[0].histograms[0]
    assert pr.is_float_histogram(msg) == (fractional and not all(
        float(c).is_integer() for c in [h.count, h.zero_count, *h.buckets.values()]))
    back = pr.decode_histogram(msg)
    want = h.copy()
    if want.schema > 3:  # finer than fleetscope's schema: downscaled, exactly
        want.downscale(want.schema - 3)
    assert back == want
    assert back.count == h.count and msg.timestamp == 7


def test_write_request_round_trip() -> None:
    h = _hist(0.001, 0.002, 0.25, 3.0, 3.0)
    series = [
        pr.Series({"job": "node", "__name__": "up", "instance": "a:9100"}, [(1000, 1.0), (2000, 0.0)]),
        pr.Series([("__name__", "rpc_seconds"), ("job", "api")], histograms=[(1500, h)]),
        pr.Series({"__name__": "nan"}, [(1000, math.nan), (2000, math.inf)]),
    ]
    meta = [pr.Metadata("up", pr.GAUGE, "Up.", ""), pr.Metadata("rpc_seconds", pr.HISTOGRAM, "", "seconds")]
    request = pr.decode_write_request(pr.encode_write_request(series, meta))
    first, second, third = request.timeseries
    assert [lb.name for lb in first.labels] == ["__name__", "instance", "job"]  # sorted, as Prometheus
    assert pr.labels(first) == {"__name__": "up", "instance": "a:9100", "job": "node"}
    assert [(s.timestamp, s.value) for s in first.samples] == [(1000, 1.0), (2000, 0.0)]
    assert pr.decode_histogram(second.histograms[0]) == h
    assert math.isnan(third.samples[0].value) and third.samples[1].value == math.inf
    assert [(m.metric_family_name, m.type, m.help, m.unit) for m in request.metadata] == \
        [("up", pr.GAUGE, "Up.", ""), ("rpc_seconds", pr.HISTOGRAM, "", "seconds")]


def test_read_round_trip() -> None:
    q = pr.ReadQuery(1000, 5000, (("__name__", "=", "up"), ("job", "=~", "a|b")), 1000, "sum", 0)
    assert pr.decode_read_request(pr.encode_read_request([q, q._replace(step_ms=0, func="")])) == \
        [q, q._replace(step_ms=0, func="")]
    h = _hist(1.0, 2.0, 2.0)
    body = pr.encode_read_response([
        [pr.Series({"__name__": "up", "job": "a"}, [(1000, 1.0), (2000, 1.0)])],
        [],
        [pr.Series({"__name__": "lat"}, histograms=[(1000, h), (2000, h.scale(0.5))],
                   reset_hint=pr.RESET_GAUGE)],
    ])
    first, empty, third = pr.decode_read_response(body)
    assert first == [pr.Series({"__name__": "up", "job": "a"}, [(1000, 1.0), (2000, 1.0)], [],
                               pr.RESET_UNKNOWN)]
    assert empty == []
    assert third[0].histograms == [(1000, h), (2000, h.scale(0.5))]
    assert third[0].reset_hint == pr.RESET_GAUGE
    # The samples response as Prometheus' client reads it: ReadResponse.results = 1,
    # QueryResult.timeseries = 1.
    raw = pr.decompress(body)
    assert raw[:1] == b"\x0a"
    assert pr.M["ReadResponse"].FromString(raw).results[0].timeseries[0].labels[0].name == "__name__"
    assert pr.READ_RESPONSE_HEADERS["Content-Encoding"] == "snappy"
    assert pr.READ_RESPONSE_HEADERS["Content-Type"] == "application/x-protobuf"


def test_empty_read_request_has_no_queries() -> None:
    assert pr.decode_read_request(pr.compress(b"")) == []


# -- bad bodies -------------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "reason", "says"), [
    (b"", "snappy", "not a Snappy block"),
    (b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", "snappy", "not a Snappy block"),
    (b"\x10\x00hello", "snappy", "not a Snappy block"),  # says 16 bytes, holds a bad literal
    (pr.compress(b"\x0a\x05abc"), "protobuf", "not a WriteRequest"),  # a field cut short
    (pr.compress(b"\x0a\x06\x0a\x04\x0a\x02\xff\xfe"), "protobuf", "UTF-8"),  # a label name not UTF-8
    (pr.compress(b"\x0b"), "protobuf", "not a WriteRequest"),  # wire type 3 (a group start)
])
def test_bad_write_bodies_are_refused_with_reasons(body: bytes, reason: str, says: str) -> None:
    with pytest.raises(pr.RemoteError) as exc:
        pr.decode_write_request(body)
    assert exc.value.reason == reason
    assert says in str(exc.value)
    assert isinstance(exc.value, ValueError)


def test_too_large_is_refused_from_the_header_without_decompressing() -> None:
    # A header claiming 1 GiB in front of a few bytes: refused before any allocation.
    body = _varint(1 << 30) + b"\x00a"
    with pytest.raises(pr.RemoteError) as exc:
        pr.decode_write_request(body)
    assert exc.value.reason == "too_large" and str(1 << 30) in str(exc.value)
    real = pr.compress(b"\0" * (pr.MAX_DECOMPRESSED + 1))  # a real one, just past the cap
    with pytest.raises(pr.RemoteError, match="too_large"):
        pr.decode_write_request(real)
    assert pr.decode_write_request(pr.compress(b""), limit=0).timeseries == []
    with pytest.raises(pr.RemoteError, match="too_large"):
        pr.decode_write_request(pr.compress(b"\x0a\x00"), limit=1)


def test_bad_read_requests_are_refused_with_reasons() -> None:
    only_streamed = pr.compress(b"\x12\x01\x01")  # accepted_response_types = [STREAMED_XOR_CHUNKS]
    with pytest.raises(pr.RemoteError) as exc:
        pr.decode_read_request(only_streamed)
    assert exc.value.reason == "response_type" and "samples response" in str(exc.value)
    # Both accepted: the samples response will do.
    assert pr.decode_read_request(pr.compress(b"\x12\x02\x01\x00")) == []
    bad_type = pr.compress(_field(1, 2, _field(3, 2, _field(1, 0, _varint(7)) + _field(2, 2, b"a"))))
    with pytest.raises(pr.RemoteError, match="matcher: query 0: unknown matcher type 7"):
        pr.decode_read_request(bad_type)
    no_name = pr.compress(_field(1, 2, _field(3, 2, _field(3, 2, b"x"))))
    with pytest.raises(pr.RemoteError, match="without a label name"):
        pr.decode_read_request(no_name)
    with pytest.raises(pr.RemoteError, match="not a ReadRequest"):
        pr.decode_read_request(pr.compress(b"\x0a\x05ab"))


@pytest.mark.parametrize(("fields", "reason"), [
    ({"schema": 9}, "schema"),
    ({"schema": -53}, "schema"),  # custom buckets: not in 2.42's protocol, not a layout we keep
    ({"zero_threshold": -1.0}, "value"),
    ({"sum": math.inf}, "value"),
    ({"positive_deltas": [1]}, "histogram"),  # a count without a span
])
def test_bad_histograms_are_refused_with_reasons(fields: dict, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        pr.decode_histogram(pr.M["Histogram"](**fields))


def test_negative_buckets_count_in_the_zero_bucket() -> None:
    h = pr.M["Histogram"](schema=0, zero_count_float=0.5, sum=-3.0, count_float=3.5)
    h.negative_spans.add(offset=1, length=2)
    h.negative_counts.extend([1.0, 2.0])
    got = pr.decode_histogram(h)
    assert (got.zero_count, got.count, got.buckets) == (3.5, 3.5, {})
