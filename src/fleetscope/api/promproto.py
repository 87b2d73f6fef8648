"""The Prometheus protobuf exposition (``io.prometheus.client.MetricFamily``, length-
delimited), for scrapers that ask for it: distributions as native histograms, kept
exact (same bucket layout: schema, zero bucket, spans and deltas of Prometheus
indices, which are fleetscope's indices).

The message types are built at import from a descriptor equivalent to the
fields of Prometheus's ``metrics.proto`` this module uses (field numbers as
there), so no generated code is vendored.

Numbers and breakdowns are ``GAUGE`` families, distributions ``HISTOGRAM``
families of native histograms (one slot's distribution, as in the text
formats). Counts are sent as integers when they all are, as float counts
otherwise (``*_float`` fields, ``positive_count``).
"""

from __future__ import annotations

from collections.abc import Iterable

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.internal.encoder import _VarintBytes

from fleetscope.api.exposition import Sample, _escape, _label, family_name
from fleetscope.model import values
from fleetscope.model.histogram import Histogram

CONTENT_TYPE = "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
_GAUGE, _HISTOGRAM = 1, 4

_F = descriptor_pb2.FieldDescriptorProto
_FIELDS = {
    "LabelPair": [("name", 1, _F.TYPE_STRING, None, False), ("value", 2, _F.TYPE_STRING, None, False)],
    "Gauge": [("value", 1, _F.TYPE_DOUBLE, None, False)],
    "BucketSpan": [("offset", 1, _F.TYPE_SINT32, None, False), ("length", 2, _F.TYPE_UINT32, None, False)],
    "Histogram": [
        ("sample_count", 1, _F.TYPE_UINT64, None, False),
        ("sample_count_float", 4, _F.TYPE_DOUBLE, None, False),
        ("sample_sum", 2, _F.TYPE_DOUBLE, None, False),
        ("schema", 5, _F.TYPE_SINT32, None, False),
        ("zero_threshold", 6, _F.TYPE_DOUBLE, None, False),
        ("zero_count", 7, _F.TYPE_UINT64, None, False),
        ("zero_count_float", 8, _F.TYPE_DOUBLE, None, False),
        ("positive_span", 12, _F.TYPE_MESSAGE, "BucketSpan", True),
        ("positive_delta", 13, _F.TYPE_SINT64, None, True),
        ("positive_count", 14, _F.TYPE_DOUBLE, None, True),
    ],
    "Metric": [("label", 1, _F.TYPE_MESSAGE, "LabelPair", True),
               ("gauge", 2, _F.TYPE_MESSAGE, "Gauge", False),
               ("histogram", 7, _F.TYPE_MESSAGE, "Histogram", False)],
    "MetricFamily": [("name", 1, _F.TYPE_STRING, None, False), ("help", 2, _F.TYPE_STRING, None, False),
                     ("type", 3, _F.TYPE_INT32, None, False), ("metric", 4, _F.TYPE_MESSAGE, "Metric", True)],
}


def _build():
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
                f.options.packed = True
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fd)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"io.prometheus.client.{name}"))
            for name in _FIELDS}


_M = _build()


def wants_protobuf(accept: str | None) -> bool:
    """Whether an ``Accept`` header asks for the delimited protobuf exposition."""
    return bool(accept) and "application/vnd.google.protobuf" in accept \
        and "io.prometheus.client.MetricFamily" in accept


def _native(h: Histogram, out) -> None:
    """Fill the ``Histogram`` message ``out`` with ``h``'s native histogram."""
    out.schema = h.schema
    out.zero_threshold = h.zero_threshold
    out.sample_sum = h.sum
    counts = [h.buckets[i] for i in sorted(h.buckets)]
    integral = all(float(c).is_integer() for c in [h.count, h.zero_count, *counts])
    if integral:
        out.sample_count = int(h.count)
        out.zero_count = int(h.zero_count)
    else:
        out.sample_count_float = h.count
        out.zero_count_float = h.zero_count
    previous_end = None
    for i in sorted(h.buckets):
        if previous_end is not None and i == previous_end:
            out.positive_span[-1].length += 1
        else:
            gap = i if previous_end is None else i - previous_end
            out.positive_span.add(offset=gap, length=1)
        previous_end = i + 1
    if integral:
        last = 0
        for c in counts:
            out.positive_delta.append(int(c) - last)
            last = int(c)
    else:
        out.positive_count.extend(counts)


def render(samples: Iterable[Sample]) -> bytes:
    """The delimited protobuf exposition of ``samples`` (families sorted by name)."""
    families: dict[str, list[Sample]] = {}
    for s in samples:
        families.setdefault(family_name(s.inst), []).append(s)
    out = bytearray()
    for name in sorted(families):
        members = sorted(families[name], key=lambda s: s.inst.id)
        hist = members[0].inst.numeric is not None
        fam = _M["MetricFamily"](name=name, type=_HISTOGRAM if hist else _GAUGE,
                                 help=f"fleetscope {_escape(members[0].inst.metric)}: current value")
        for s in members:
            label = _label(s.inst)
            if s.inst.shape in (values.SCALAR, values.HISTOGRAM):
                items = [("", s.value)]
            else:
                items = sorted(s.value.items())  # type: ignore[union-attr]
            for key, v in items:
                metric = fam.metric.add()
                metric.label.add(name="instrumentation", value=str(s.inst.id))
                if label:
                    metric.label.add(name=label, value=key)
                if hist:
                    _native(v, metric.histogram)
                else:
                    metric.gauge.value = float(v)
        data = fam.SerializeToString()
        out += _VarintBytes(len(data)) + data
    return bytes(out)
