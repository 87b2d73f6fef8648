"""The Prometheus remote protocol (``prompb``): remote write 1.0 and remote read with
the samples response, one codec for the receiver (sources/remote_write.py), the
remote-read route of the API and the tests that play Prometheus' part.

The message types are built at import from a descriptor equivalent to Prometheus
2.42's ``prompb/types.proto`` and ``prompb/remote.proto`` (package ``prometheus``,
proto3, field numbers as there; enums are carried as ``int32``, which is the same
varint on the wire, with their values as constants below), so no generated code is
vendored. Left out: ``WriteRequestWithRefs`` (never sent by Prometheus) and the
streamed chunked read response (a server may answer the samples response to any
request that accepts it, and Prometheus' own client asks for nothing else).

Wire framing, both directions: the protobuf message, compressed with Snappy's
*block* format (not the framed one), ``Content-Type: application/x-protobuf``,
``Content-Encoding: snappy``. A compressed block starts with its decompressed
length (a varint), so the size cap is checked before anything is decompressed.

Native histograms share fleetscope's bucket layout (schema, zero bucket,
Prometheus indices): :func:`histogram_message` and :func:`decode_histogram` are
exact inverses, with the bucket encoding of :mod:`fleetscope.formats.promproto`.

Usage::

    body = encode_write_request([Series({"__name__": "up", "job": "node"}, [(1700000000000, 1.0)])])
    request = decode_write_request(body)  # request.timeseries[0].samples[0].value == 1.0
    queries = decode_read_request(read_body)  # [ReadQuery(start_ms, end_ms, matchers, ...)]
    answer = encode_read_response([[Series(labels, samples)] for q in queries])
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import NamedTuple

import cramjam
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError, Message

from fleetscope.formats.promproto import NativeFields, decode_native, encode_native
from fleetscope.model.histogram import Histogram

CONTENT_TYPE = "application/x-protobuf"
CONTENT_ENCODING = "snappy"
WRITE_VERSION_HEADER = "X-Prometheus-Remote-Write-Version"
WRITE_VERSION = "0.1.0"  # what Prometheus 2.x sends with remote write 1.0
READ_VERSION_HEADER = "X-Prometheus-Remote-Read-Version"
READ_VERSION = "0.1.0"
# A request or response decompressed to more than this is refused. Prometheus sends at
# most max_samples_per_send (2,000 by default) series per write request, a few hundred
# kB; its own remote-read client caps a decompressed response at 1 GiB, we answer less.
MAX_DECOMPRESSED = 32 << 20

# MetricMetadata.MetricType
UNKNOWN, COUNTER, GAUGE, HISTOGRAM, GAUGEHISTOGRAM, SUMMARY, INFO, STATESET = range(8)
# Histogram.ResetHint: YES/NO say whether a counter histogram was reset since the
# previous sample, GAUGE marks a gauge histogram (counts that go up and down).
RESET_UNKNOWN, RESET_YES, RESET_NO, RESET_GAUGE = range(4)
# ReadRequest.ResponseType
SAMPLES, STREAMED_XOR_CHUNKS = range(2)
# Chunk.Encoding (2.42)
CHUNK_UNKNOWN, CHUNK_XOR, CHUNK_HISTOGRAM = range(3)
# LabelMatcher.Type, in the order of its enum values: EQ, NEQ, RE, NRE.
MATCH_OPS = ("=", "!=", "=~", "!~")

_F = descriptor_pb2.FieldDescriptorProto
_D, _S, _I32, _I64 = _F.TYPE_DOUBLE, _F.TYPE_STRING, _F.TYPE_INT32, _F.TYPE_INT64
_MSG = _F.TYPE_MESSAGE
# message: [(field, number, type, message type, repeated, oneof)]
_FIELDS: dict[str, list[tuple]] = {
    # types.proto
    "Sample": [("value", 1, _D, None, False, None), ("timestamp", 2, _I64, None, False, None)],
    "Label": [("name", 1, _S, None, False, None), ("value", 2, _S, None, False, None)],
    "Labels": [("labels", 1, _MSG, "Label", True, None)],
    "Exemplar": [("labels", 1, _MSG, "Label", True, None), ("value", 2, _D, None, False, None),
                 ("timestamp", 3, _I64, None, False, None)],
    "BucketSpan": [("offset", 1, _F.TYPE_SINT32, None, False, None),
                   ("length", 2, _F.TYPE_UINT32, None, False, None)],
    "Histogram": [
        ("count_int", 1, _F.TYPE_UINT64, None, False, "count"),
        ("count_float", 2, _D, None, False, "count"),
        ("sum", 3, _D, None, False, None),
        ("schema", 4, _F.TYPE_SINT32, None, False, None),
        ("zero_threshold", 5, _D, None, False, None),
        ("zero_count_int", 6, _F.TYPE_UINT64, None, False, "zero_count"),
        ("zero_count_float", 7, _D, None, False, "zero_count"),
        ("negative_spans", 8, _MSG, "BucketSpan", True, None),
        ("negative_deltas", 9, _F.TYPE_SINT64, None, True, None),
        ("negative_counts", 10, _D, None, True, None),
        ("positive_spans", 11, _MSG, "BucketSpan", True, None),
        ("positive_deltas", 12, _F.TYPE_SINT64, None, True, None),
        ("positive_counts", 13, _D, None, True, None),
        ("reset_hint", 14, _I32, None, False, None),  # enum ResetHint
        ("timestamp", 15, _I64, None, False, None),
    ],
    "TimeSeries": [("labels", 1, _MSG, "Label", True, None), ("samples", 2, _MSG, "Sample", True, None),
                   ("exemplars", 3, _MSG, "Exemplar", True, None),
                   ("histograms", 4, _MSG, "Histogram", True, None)],
    "MetricMetadata": [("type", 1, _I32, None, False, None),  # enum MetricType
                       ("metric_family_name", 2, _S, None, False, None),
                       ("help", 4, _S, None, False, None), ("unit", 5, _S, None, False, None)],
    "LabelMatcher": [("type", 1, _I32, None, False, None),  # enum Type
                     ("name", 2, _S, None, False, None), ("value", 3, _S, None, False, None)],
    "ReadHints": [("step_ms", 1, _I64, None, False, None), ("func", 2, _S, None, False, None),
                  ("start_ms", 3, _I64, None, False, None), ("end_ms", 4, _I64, None, False, None),
                  ("grouping", 5, _S, None, True, None), ("by", 6, _F.TYPE_BOOL, None, False, None),
                  ("range_ms", 7, _I64, None, False, None)],
    "Chunk": [("min_time_ms", 1, _I64, None, False, None), ("max_time_ms", 2, _I64, None, False, None),
              ("type", 3, _I32, None, False, None),  # enum Encoding
              ("data", 4, _F.TYPE_BYTES, None, False, None)],
    "ChunkedSeries": [("labels", 1, _MSG, "Label", True, None), ("chunks", 2, _MSG, "Chunk", True, None)],
    # remote.proto (WriteRequest's field 2 is reserved)
    "WriteRequest": [("timeseries", 1, _MSG, "TimeSeries", True, None),
                     ("metadata", 3, _MSG, "MetricMetadata", True, None)],
    "Query": [("start_timestamp_ms", 1, _I64, None, False, None),
              ("end_timestamp_ms", 2, _I64, None, False, None),
              ("matchers", 3, _MSG, "LabelMatcher", True, None),
              ("hints", 4, _MSG, "ReadHints", False, None)],
    "ReadRequest": [("queries", 1, _MSG, "Query", True, None),
                    ("accepted_response_types", 2, _I32, None, True, None)],  # enum ResponseType
    "QueryResult": [("timeseries", 1, _MSG, "TimeSeries", True, None)],
    "ReadResponse": [("results", 1, _MSG, "QueryResult", True, None)],
    "ChunkedReadResponse": [("chunked_series", 1, _MSG, "ChunkedSeries", True, None),
                            ("query_index", 2, _I64, None, False, None)],
}


def _build() -> dict[str, type[Message]]:
    fd = descriptor_pb2.FileDescriptorProto(name="fleetscope_prompb.proto", package="prometheus",
                                            syntax="proto3")
    for name, fields in _FIELDS.items():
        msg = fd.message_type.add(name=name)
        oneofs: list[str] = []
        for fname, number, ftype, ref, repeated, oneof in fields:
            f = msg.field.add(name=fname, number=number, type=ftype,
                              label=_F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL)
            if ref:
                f.type_name = f".prometheus.{ref}"
            if oneof:
                if oneof not in oneofs:
                    oneofs.append(oneof)
                    msg.oneof_decl.add(name=oneof)
                f.oneof_index = oneofs.index(oneof)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fd)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"prometheus.{name}"))
            for name in _FIELDS}


M = _build()
# The names prompb gives a native histogram's fields (client_model has its own).
PROMPB = NativeFields("sum", "count_int", "count_float", "zero_count_int", "zero_count_float",
                      "positive_spans", "positive_deltas", "positive_counts",
                      "negative_spans", "negative_deltas", "negative_counts")


class RemoteError(ValueError):
    """A body that is not a valid remote-protocol message. ``reason`` is short, for
    drop counters: ``snappy``, ``too_large``, ``protobuf``, ``response_type``,
    ``matcher``; the message adds what was wrong."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class Series(NamedTuple):
    """One time series to encode: its labels (``__name__`` among them; written sorted
    by name, as Prometheus keeps them), float samples ``(timestamp_ms, value)`` and
    native histogram samples ``(timestamp_ms, Histogram)``, each in time order;
    ``reset_hint`` goes with every histogram of the series (``RESET_GAUGE`` for a
    gauge histogram)."""

    labels: Mapping[str, str] | Iterable[tuple[str, str]]
    samples: Iterable[tuple[int, float]] = ()
    histograms: Iterable[tuple[int, Histogram]] = ()
    reset_hint: int = RESET_UNKNOWN


class Metadata(NamedTuple):
    """One ``MetricMetadata`` entry of a write request (``type``: ``COUNTER``, ``GAUGE``...)."""

    family: str
    type: int
    help: str = ""
    unit: str = ""


class ReadQuery(NamedTuple):
    """One query of a remote-read request: the series matching every matcher
    (``(name, op, value)``, op one of ``=``, ``!=``, ``=~``, ``!~``; a regex is
    anchored at both ends, as everywhere in Prometheus) with samples in
    ``[start_ms, end_ms]``. The hints say what PromQL will do with them (0 / ``""``
    when absent): ``step_ms`` the query step, ``func`` the surrounding function or
    aggregation, ``range_ms`` a range selector's range."""

    start_ms: int
    end_ms: int
    matchers: tuple[tuple[str, str, str], ...]
    step_ms: int = 0
    func: str = ""
    range_ms: int = 0


# -- snappy -----------------------------------------------------------------------------------


def compress(data: bytes) -> bytes:
    """``data`` in Snappy's block format, as the remote protocol frames it."""
    return bytes(cramjam.snappy.compress_raw(data))


def decompress(body: bytes, limit: int = MAX_DECOMPRESSED) -> bytes:
    """A Snappy block's content; :class:`RemoteError` (``snappy``, ``too_large``) if
    ``body`` is no Snappy block or says it holds more than ``limit`` bytes (read
    from its length header: nothing is decompressed then)."""
    try:
        size = cramjam.snappy.decompress_raw_len(body)
    except Exception as exc:  # cramjam raises its own DecompressionError
        raise RemoteError("snappy", f"not a Snappy block ({exc})") from None
    if size > limit:
        raise RemoteError("too_large", f"decompresses to {size} bytes, more than {limit}")
    try:
        return bytes(cramjam.snappy.decompress_raw(body))
    except Exception as exc:
        raise RemoteError("snappy", f"not a Snappy block ({exc})") from None


def _parse(name: str, data: bytes) -> Message:
    msg = M[name]()
    try:
        msg.ParseFromString(data)
    except (DecodeError, RecursionError, ValueError, UnicodeDecodeError) as exc:
        raise RemoteError("protobuf", f"not a {name} ({exc})") from None
    return msg


# -- histograms -------------------------------------------------------------------------------


def histogram_message(h: Histogram, timestamp_ms: int, reset_hint: int = RESET_UNKNOWN,
                      out: Message | None = None) -> Message:
    """``h`` as a prompb ``Histogram`` sample at ``timestamp_ms`` (filling ``out`` when
    given): integer counts as deltas when they all are integers, float counts
    otherwise (a float histogram). No min or max: a native histogram has none."""
    if out is None:
        out = M["Histogram"]()
    encode_native(h, out, PROMPB)
    out.timestamp = int(timestamp_ms)
    out.reset_hint = reset_hint
    return out


def decode_histogram(h: Message) -> Histogram:
    """A prompb ``Histogram`` sample as a fleetscope histogram, exactly (a schema finer
    than 3 downscaled to 3, negative buckets in the zero bucket: see
    :func:`fleetscope.formats.promproto.native_histogram`); ValueError (``schema``,
    ``histogram``, ``value``) if it is no valid native histogram."""
    return decode_native(h, PROMPB)


def is_float_histogram(h: Message) -> bool:
    """Whether a prompb ``Histogram`` has float counts (a float histogram)."""
    return h.WhichOneof("count") == "count_float"


# -- series -----------------------------------------------------------------------------------


def labels(ts: Message) -> dict[str, str]:
    """A ``TimeSeries``' labels as a dict (the last one wins on a repeated name)."""
    return {lb.name: lb.value for lb in ts.labels}


def _fill(ts: Message, series: Series) -> None:
    pairs = series.labels.items() if isinstance(series.labels, Mapping) else series.labels
    for name, value in sorted(pairs):
        ts.labels.add(name=name, value=value)
    for t, v in series.samples:
        ts.samples.add(value=float(v), timestamp=int(t))
    for t, h in series.histograms:
        histogram_message(h, t, series.reset_hint, ts.histograms.add())


# -- remote write -----------------------------------------------------------------------------


def encode_write_request(series: Iterable[Series], metadata: Iterable[Metadata] = ()) -> bytes:
    """A snappy-compressed ``WriteRequest`` as Prometheus sends it: float samples,
    native histograms and metadata (the encoder tests and differential tests use)."""
    request = M["WriteRequest"]()
    for s in series:
        _fill(request.timeseries.add(), s)
    for m in metadata:
        request.metadata.add(type=m.type, metric_family_name=m.family, help=m.help, unit=m.unit)
    return compress(request.SerializeToString())


def decode_write_request(body: bytes, limit: int = MAX_DECOMPRESSED) -> Message:
    """The ``WriteRequest`` of a remote-write body (snappy, then protobuf);
    :class:`RemoteError` (``snappy``, ``too_large``, ``protobuf``) if it is none.
    Strings are checked as UTF-8 by the protobuf parser (proto3)."""
    return _parse("WriteRequest", decompress(body, limit))


# -- remote read ------------------------------------------------------------------------------


def encode_read_request(queries: Iterable[ReadQuery]) -> bytes:
    """A snappy-compressed ``ReadRequest`` asking for the samples response, as
    Prometheus' remote-read client sends it (for tests)."""
    request = M["ReadRequest"]()
    for q in queries:
        query = request.queries.add(start_timestamp_ms=q.start_ms, end_timestamp_ms=q.end_ms)
        for name, op, value in q.matchers:
            query.matchers.add(type=MATCH_OPS.index(op), name=name, value=value)
        if q.step_ms or q.func or q.range_ms:
            query.hints.step_ms, query.hints.func, query.hints.range_ms = q.step_ms, q.func, q.range_ms
            query.hints.start_ms, query.hints.end_ms = q.start_ms, q.end_ms
    request.accepted_response_types.append(SAMPLES)
    return compress(request.SerializeToString())


def decode_read_request(body: bytes, limit: int = MAX_DECOMPRESSED) -> list[ReadQuery]:
    """The queries of a remote-read body (snappy, then protobuf ``ReadRequest``);
    :class:`RemoteError` with the reason if it is none: ``snappy``, ``too_large``,
    ``protobuf``, ``response_type`` (the request accepts response types, none of
    them the samples response, the only one answered here), ``matcher`` (an
    unknown matcher type or an empty label name)."""
    request = _parse("ReadRequest", decompress(body, limit))
    accepted = list(request.accepted_response_types)
    if accepted and SAMPLES not in accepted:
        raise RemoteError("response_type", f"only the samples response (0) is answered, the request "
                                           f"accepts {accepted}")
    out = []
    for k, q in enumerate(request.queries):
        matchers = []
        for m in q.matchers:
            if not 0 <= m.type < len(MATCH_OPS):
                raise RemoteError("matcher", f"query {k}: unknown matcher type {m.type}")
            if not m.name:
                raise RemoteError("matcher", f"query {k}: a matcher without a label name")
            matchers.append((m.name, MATCH_OPS[m.type], m.value))
        hints = q.hints
        out.append(ReadQuery(q.start_timestamp_ms, q.end_timestamp_ms, tuple(matchers),
                             hints.step_ms, hints.func, hints.range_ms))
    return out


def encode_read_response(results: Iterable[Iterable[Series]]) -> bytes:
    """The snappy-compressed ``ReadResponse`` (samples response) with one result per
    query, in the order of the request's queries; send it with the headers of
    :data:`READ_RESPONSE_HEADERS`. Non-finite float values are sent as they are
    (Prometheus keeps NaN and the stale marker)."""
    response = M["ReadResponse"]()
    for series in results:
        result = response.results.add()
        for s in series:
            _fill(result.timeseries.add(), s)
    return compress(response.SerializeToString())


def decode_read_response(body: bytes, limit: int = MAX_DECOMPRESSED) -> list[list[Series]]:
    """A samples ``ReadResponse`` back as series (for tests): per query, each series'
    labels as a dict, its samples and its histograms decoded."""
    response = _parse("ReadResponse", decompress(body, limit))
    out = []
    for result in response.results:
        series = []
        for ts in result.timeseries:
            hints = {h.reset_hint for h in ts.histograms}
            series.append(Series(labels(ts), [(s.timestamp, s.value) for s in ts.samples],
                                 [(h.timestamp, decode_histogram(h)) for h in ts.histograms],
                                 hints.pop() if len(hints) == 1 else RESET_UNKNOWN))
        out.append(series)
    return out


READ_RESPONSE_HEADERS = {"Content-Type": CONTENT_TYPE, "Content-Encoding": CONTENT_ENCODING,
                         READ_VERSION_HEADER: READ_VERSION}
