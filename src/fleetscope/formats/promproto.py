"""The Prometheus protobuf exposition (``io.prometheus.client.MetricFamily``, length-
delimited): one codec, the encoder ``GET /metrics`` uses (api/promproto.py) and the
decoder the scraper uses (sources/scrape.py), side by side.

The message types are built at import from a descriptor equivalent to the
messages of Prometheus's ``metrics.proto`` (client_model; field numbers as
there, exemplars and created timestamps left out: a parser skips them as unknown
fields), so no generated code is vendored.

Native histograms share fleetscope's bucket layout (schema, zero bucket,
Prometheus indices), so :func:`encode_native` and :func:`decode_native` are exact
inverses (see :mod:`fleetscope.model.histogram`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import NamedTuple

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.internal.decoder import _DecodeVarint
from google.protobuf.internal.encoder import _VarintBytes
from google.protobuf.message import DecodeError, Message

from fleetscope.model.histogram import (
    DEFAULT_SCHEMA,
    MAX_BUCKETS,
    MAX_SCHEMA,
    MIN_SCHEMA,
    Histogram,
    bucket_index,
)

CONTENT_TYPE = "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
# What Prometheus sends when it prefers the protobuf exposition (its
# DefaultProtoFirstScrapeProtocols, weighted as its acceptHeader() does); the answer's
# Content-Type then decides the parser, text being the fallback.
ACCEPT = ("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.5,"
          "application/openmetrics-text;version=1.0.0;q=0.4,application/openmetrics-text;version=0.0.1;q=0.3,"
          "text/plain;version=0.0.4;q=0.2,*/*;q=0.1")
COUNTER, GAUGE, SUMMARY, UNTYPED, HISTOGRAM, GAUGE_HISTOGRAM = range(6)
MAX_MESSAGE = 16 << 20  # one family; Prometheus's own scrape body limit is configurable, ours fixed

_F = descriptor_pb2.FieldDescriptorProto
_D, _S, _U64, _I64 = _F.TYPE_DOUBLE, _F.TYPE_STRING, _F.TYPE_UINT64, _F.TYPE_INT64
_FIELDS = {
    "LabelPair": [("name", 1, _S, None, False), ("value", 2, _S, None, False)],
    "Gauge": [("value", 1, _D, None, False)],
    "Counter": [("value", 1, _D, None, False)],
    "Untyped": [("value", 1, _D, None, False)],
    "Quantile": [("quantile", 1, _D, None, False), ("value", 2, _D, None, False)],
    "Summary": [("sample_count", 1, _U64, None, False), ("sample_sum", 2, _D, None, False),
                ("quantile", 3, _F.TYPE_MESSAGE, "Quantile", True)],
    "Bucket": [("cumulative_count", 1, _U64, None, False), ("cumulative_count_float", 4, _D, None, False),
               ("upper_bound", 2, _D, None, False)],
    "BucketSpan": [("offset", 1, _F.TYPE_SINT32, None, False), ("length", 2, _F.TYPE_UINT32, None, False)],
    "Histogram": [
        ("sample_count", 1, _U64, None, False),
        ("sample_count_float", 4, _D, None, False),
        ("sample_sum", 2, _D, None, False),
        ("bucket", 3, _F.TYPE_MESSAGE, "Bucket", True),
        ("schema", 5, _F.TYPE_SINT32, None, False),
        ("zero_threshold", 6, _D, None, False),
        ("zero_count", 7, _U64, None, False),
        ("zero_count_float", 8, _D, None, False),
        ("negative_span", 9, _F.TYPE_MESSAGE, "BucketSpan", True),
        ("negative_delta", 10, _F.TYPE_SINT64, None, True),
        ("negative_count", 11, _D, None, True),
        ("positive_span", 12, _F.TYPE_MESSAGE, "BucketSpan", True),
        ("positive_delta", 13, _F.TYPE_SINT64, None, True),
        ("positive_count", 14, _D, None, True),
    ],
    "Metric": [("label", 1, _F.TYPE_MESSAGE, "LabelPair", True),
               ("gauge", 2, _F.TYPE_MESSAGE, "Gauge", False),
               ("counter", 3, _F.TYPE_MESSAGE, "Counter", False),
               ("summary", 4, _F.TYPE_MESSAGE, "Summary", False),
               ("untyped", 5, _F.TYPE_MESSAGE, "Untyped", False),
               ("timestamp_ms", 6, _I64, None, False),
               ("histogram", 7, _F.TYPE_MESSAGE, "Histogram", False)],
    "MetricFamily": [("name", 1, _S, None, False), ("help", 2, _S, None, False),
                     ("type", 3, _F.TYPE_INT32, None, False), ("metric", 4, _F.TYPE_MESSAGE, "Metric", True),
                     ("unit", 5, _S, None, False)],
}


def _build() -> dict[str, type[Message]]:
    fd = descriptor_pb2.FileDescriptorProto(name="fleetscope_prom_metrics.proto",
                                            package="io.prometheus.client", syntax="proto2")
    for name, fields in _FIELDS.items():
        msg = fd.message_type.add(name=name)
        for fname, number, ftype, ref, repeated in fields:
            f = msg.field.add(name=fname, number=number, type=ftype,
                              label=_F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL)
            if ref:
                f.type_name = f".io.prometheus.client.{ref}"
            if repeated and ftype not in (_F.TYPE_MESSAGE, _F.TYPE_STRING):
                f.options.packed = True  # parsers accept packed and unpacked alike
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fd)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"io.prometheus.client.{name}"))
            for name in _FIELDS}


M = _build()
# The indices a finite positive value can have, per schema.
INDEX_RANGE = {s: (bucket_index(5e-324, s), bucket_index(1.7976931348623157e308, s))
                for s in range(MIN_SCHEMA, MAX_SCHEMA + 1)}


def wants_protobuf(accept: str | None) -> bool:
    """Whether an ``Accept`` header asks for the delimited protobuf exposition."""
    return bool(accept) and "application/vnd.google.protobuf" in accept \
        and "io.prometheus.client.MetricFamily" in accept


def is_protobuf(content_type: str | None) -> bool:
    """Whether a scrape answer's ``Content-Type`` is the delimited protobuf exposition
    (anything else is read as text, as Prometheus does)."""
    media, _, params = (content_type or "").partition(";")
    return media.strip().lower() == "application/vnd.google.protobuf" \
        and "io.prometheus.client.MetricFamily" in params and "encoding=delimited" in params


# -- encoding ---------------------------------------------------------------------------------


class NativeBuckets(NamedTuple):
    """The buckets of a fleetscope histogram as a native histogram carries them, in
    Prometheus' two protobuf messages alike (client_model's exposition, prompb's remote
    protocol): ``spans`` of consecutive indices as ``(offset, length)`` (the first offset
    from 0, later ones from the end of the previous span), then either ``deltas`` (each
    count minus the previous one, when every count is an integer) or ``counts``."""

    integral: bool  # every count (total, zero bucket, buckets) is an integer
    spans: list[tuple[int, int]]
    deltas: list[int]
    counts: list[float]


def native_buckets(h: Histogram) -> NativeBuckets:
    """``h``'s positive buckets in the native encoding (see :class:`NativeBuckets`)."""
    order = sorted(h.buckets)
    counts = [h.buckets[i] for i in order]
    integral = all(float(c).is_integer() for c in [h.count, h.zero_count, *counts])
    spans: list[list[int]] = []
    previous_end = None
    for i in order:
        if previous_end is not None and i == previous_end:
            spans[-1][1] += 1
        else:
            spans.append([i if previous_end is None else i - previous_end, 1])
        previous_end = i + 1
    deltas: list[int] = []
    if integral:
        last = 0
        for c in counts:
            deltas.append(int(c) - last)
            last = int(c)
    return NativeBuckets(integral, [(o, n) for o, n in spans], deltas, [] if integral else counts)


class NativeFields(NamedTuple):
    """The names a protobuf dialect gives the fields of a native histogram (``schema`` and
    ``zero_threshold`` are the same in both): client_model's (:data:`CLIENT_MODEL`) and
    prompb's (:data:`fleetscope.formats.promremote.PROMPB`)."""

    sum: str
    count: str
    count_float: str
    zero_count: str
    zero_count_float: str
    positive_spans: str
    positive_deltas: str
    positive_counts: str
    negative_spans: str
    negative_deltas: str
    negative_counts: str


CLIENT_MODEL = NativeFields("sample_sum", "sample_count", "sample_count_float",
                            "zero_count", "zero_count_float",
                            "positive_span", "positive_delta", "positive_count",
                            "negative_span", "negative_delta", "negative_count")


def encode_native(h: Histogram, out: Message, fields: NativeFields = CLIENT_MODEL) -> None:
    """Fill the ``Histogram`` message ``out`` (its field names: ``fields``) with ``h`` as a
    native histogram: integer counts as deltas when they all are integers, float counts
    otherwise. A native histogram has no place for ``min`` and ``max``: they are left out."""
    out.schema = h.schema
    out.zero_threshold = h.zero_threshold
    setattr(out, fields.sum, h.sum)
    nb = native_buckets(h)
    if nb.integral:
        setattr(out, fields.count, int(h.count))
        setattr(out, fields.zero_count, int(h.zero_count))
    else:
        setattr(out, fields.count_float, h.count)
        setattr(out, fields.zero_count_float, h.zero_count)
    spans = getattr(out, fields.positive_spans)
    for offset, length in nb.spans:
        spans.add(offset=offset, length=length)
    getattr(out, fields.positive_deltas).extend(nb.deltas)
    getattr(out, fields.positive_counts).extend(nb.counts)


def encode_delimited(families: Iterable[Message]) -> bytes:
    """``MetricFamily`` messages, each preceded by its length (varint)."""
    out = bytearray()
    for fam in families:
        data = fam.SerializeToString()
        out += _VarintBytes(len(data)) + data
    return bytes(out)


# -- decoding ---------------------------------------------------------------------------------


def decode_delimited(data: bytes) -> tuple[list[Message], list[str]]:
    """The ``MetricFamily`` messages of a delimited exposition, and a drop reason per
    message that could not be read: ``truncated`` (a length or message cut short, which
    ends the reading: nothing after it can be framed), ``too_large``, ``protobuf``,
    ``utf8`` (a name or label that is not UTF-8).
    Nothing is raised for any input."""
    families: list[Message] = []
    bad: list[str] = []
    pos, end = 0, len(data)
    while pos < end:
        try:
            size, pos = _DecodeVarint(data, pos)
        except (DecodeError, IndexError):
            bad.append("truncated")
            break
        if size > MAX_MESSAGE:
            bad.append("too_large")
            break
        if pos + size > end:
            bad.append("truncated")
            break
        fam = M["MetricFamily"]()
        try:
            fam.ParseFromString(data[pos:pos + size])
        except (DecodeError, RecursionError, ValueError, UnicodeDecodeError):
            bad.append("protobuf")
        else:
            if _text_ok(fam):
                families.append(fam)
            else:
                bad.append("utf8")
        pos += size
    return families, bad


def _text_ok(fam: Message) -> bool:
    # proto2 does not enforce UTF-8: Python's protobuf hands invalid strings over as bytes.
    return isinstance(fam.name, str) and all(
        isinstance(lp.name, str) and isinstance(lp.value, str) for m in fam.metric for lp in m.label)


def is_native(h: Message) -> bool:
    """Whether a ``Histogram`` message holds a native histogram (Prometheus's test: an
    empty native histogram still has a span, or a zero threshold or zero count)."""
    return bool(h.schema or h.zero_threshold or h.zero_count or h.zero_count_float
                or len(h.positive_span) or len(h.negative_span))


def _counts(spans, deltas, floats, schema: int) -> dict[int, float]:
    """``{index: count}`` of one side of a native histogram; ValueError if malformed."""
    lengths = [s.length for s in spans]
    n = len(floats) if len(floats) else len(deltas)
    if len(floats) and len(deltas):
        raise ValueError("histogram")  # both integer and float counts
    if sum(lengths) != n:
        raise ValueError("histogram")  # spans do not cover the counts
    if n and not spans:
        raise ValueError("histogram")
    values: list[float] = []
    if len(floats):
        values = [float(c) for c in floats]
    else:
        last = 0
        for d in deltas:
            last += d
            values.append(float(last))
    lo, hi = INDEX_RANGE[schema]
    out: dict[int, float] = {}
    it = iter(values)
    index = 0
    for k, span in enumerate(spans):
        if k and span.offset < 0:
            raise ValueError("histogram")  # spans overlap
        index = span.offset if k == 0 else index + span.offset
        for _ in range(span.length):
            c = next(it)
            if not 0.0 <= c < math.inf:
                raise ValueError("value")
            if c:
                if not lo <= index <= hi:
                    raise ValueError("histogram")
                out[index] = c
            index += 1
    return out


def decode_native(h: Message, fields: NativeFields = CLIENT_MODEL) -> Histogram:
    """A native ``Histogram`` message (its field names: ``fields``) as a fleetscope
    histogram, exactly (see :func:`native_histogram`); ValueError (a drop reason:
    ``schema``, ``histogram``, ``value``) if the message is not a valid native histogram."""
    f = fields
    zero_float = getattr(h, f.zero_count_float)
    zero = float(zero_float) if zero_float else float(getattr(h, f.zero_count))
    positive = (getattr(h, f.positive_spans), getattr(h, f.positive_deltas), getattr(h, f.positive_counts))
    negative = (getattr(h, f.negative_spans), getattr(h, f.negative_deltas), getattr(h, f.negative_counts))
    return native_histogram(h.schema, h.zero_threshold, zero, getattr(h, f.sum), positive, negative)


def native_histogram(schema: int, zero_threshold: float, zero_count: float, sample_sum: float,
                     positive: tuple, negative: tuple) -> Histogram:
    """A native histogram's parts as a fleetscope histogram, exactly: same schema,
    zero bucket and indices. ``positive`` and ``negative`` are ``(spans, deltas,
    counts)`` as the message holds them (spans with ``.offset`` and ``.length``). A
    schema finer than fleetscope's (3) is downscaled to 3, which only adds
    neighbouring buckets; a coarser one is kept. Negative buckets are counted in the
    zero bucket (fleetscope histograms hold values >= 0). ``count`` is what the
    buckets hold. Native histograms carry no min or max: the result does not know
    them (NaN, see :meth:`Histogram.forget_range`), so its estimates are not clamped.
    ValueError (a drop reason: ``schema``, ``histogram``, ``value``) if the parts are
    not a valid native histogram."""
    if not MIN_SCHEMA <= schema <= MAX_SCHEMA:
        raise ValueError("schema")  # custom-bucket (-53) and out-of-range schemas
    zero_threshold = float(zero_threshold)
    zero = float(zero_count)
    if not (0.0 <= zero_threshold < math.inf and 0.0 <= zero < math.inf and math.isfinite(sample_sum)):
        raise ValueError("value")
    pos = _counts(*positive, schema)
    neg = _counts(*negative, schema)
    out = Histogram(schema, zero_threshold)
    out.buckets = pos
    out.zero_count = math.fsum([zero, *neg.values()])
    out.count = math.fsum([out.zero_count, *pos.values()])
    out.sum = float(sample_sum)
    if schema > DEFAULT_SCHEMA:
        out.downscale(schema - DEFAULT_SCHEMA)
    while len(out.buckets) > MAX_BUCKETS and out.schema > MIN_SCHEMA:
        out.downscale(1)  # as a histogram does itself when it grows past MAX_BUCKETS
    return out.forget_range()
