"""``GET /metrics`` in the Prometheus protobuf exposition, for scrapers that ask for it:
distributions as native histograms, kept exact (same bucket layout: schema, zero
bucket, spans and deltas of Prometheus indices, which are fleetscope's indices).
The wire codec itself is :mod:`fleetscope.formats.promproto`, shared with the
scraper.

Numbers and breakdowns are ``GAUGE`` families, distributions ``GAUGE_HISTOGRAM``
families of native histograms: the distribution of one slot, not a running
total (the OpenMetrics text says ``gaugehistogram`` too), so a scraper takes each
scrape's histogram as it is instead of differencing it. Counts are sent as
integers when they all are, as float counts otherwise (``*_float`` fields,
``positive_count``).
"""

from __future__ import annotations

from collections.abc import Iterable

from fleetscope.api.exposition import OwnSample, Sample, escape, family_name, label_name
from fleetscope.formats.promproto import (
    CONTENT_TYPE,
    COUNTER,
    GAUGE,
    GAUGE_HISTOGRAM,
    M,
    encode_delimited,
    encode_native,
    wants_protobuf,
)
from fleetscope.model import values

__all__ = ["CONTENT_TYPE", "render", "wants_protobuf"]


def render(samples: Iterable[Sample], own: Iterable[OwnSample] = ()) -> bytes:
    """The delimited protobuf exposition of ``samples`` (families sorted by name), then of
    fleetscope's ``own`` figures."""
    families: dict[str, list[Sample]] = {}
    for s in samples:
        families.setdefault(family_name(s.inst), []).append(s)
    out = []
    for name in sorted(families):
        members = sorted(families[name], key=lambda s: s.inst.id)
        hist = members[0].inst.numeric is not None
        fam = M["MetricFamily"](name=name, type=GAUGE_HISTOGRAM if hist else GAUGE,
                                help=f"fleetscope {escape(members[0].inst.metric)}: current value")
        for s in members:
            label = label_name(s.inst)
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
                    encode_native(v, metric.histogram)
                else:
                    metric.gauge.value = float(v)
        out.append(fam)
    own_families: dict[str, list[OwnSample]] = {}
    for o in own:
        own_families.setdefault(o.family, []).append(o)
    for family in sorted(own_families):
        first = own_families[family][0]
        fam = M["MetricFamily"](name=f"{family}_total" if first.counter else family,
                                type=COUNTER if first.counter else GAUGE, help=first.help)
        for o in own_families[family]:
            metric = fam.metric.add()
            for k, v in o.labels:
                metric.label.add(name=k, value=v)
            if first.counter:
                metric.counter.value = o.value
            else:
                metric.gauge.value = o.value
        out.append(fam)
    return encode_delimited(out)
