"""``GET /metrics``: the current value of every instrumentation, for Prometheus to scrape.

Each instrumentation contributes the value of its latest final slot (nothing
while it has none):

* a number or a breakdown: a sample of the ``gauge`` family
  ``fleetscope_<module>_<stat>`` (per second for interval metrics, a level for
  point metrics);
* a distribution: the family ``fleetscope_<module>_<stat>_<numeric field>``,
  cumulative ``le`` buckets at the exponential bucket bounds (so nothing is
  lost: every bound is a bucket bound of the layout; the zero bucket is
  ``le="<zero threshold>"``), then ``+Inf``, sum and count. In the Prometheus
  text format (0.0.4, the default) its type is ``histogram``; in OpenMetrics
  (when the scraper's ``Accept`` asks for ``application/openmetrics-text``) it
  is a ``gaugehistogram`` (``_gsum``, ``_gcount``), which is what it is: the
  distribution of one slot, not a running total. Use ``histogram_quantile``
  on the series itself, not on its ``rate()``. Neither format has a place for
  a histogram's min and max (nor have native histograms): they are left out;
  the API's values and the JSON and CSV exports carry them.

A scraper that asks for the protobuf exposition (Prometheus with native
histograms enabled) gets distributions as exact native histograms instead: see
:mod:`fleetscope.api.promproto`.

Every sample has the label ``instrumentation`` (the id); a breakdown adds its
discrete field as a label (``le`` and ``instrumentation`` become ``le_`` and
``instrumentation_``). Names are sanitised to ``[a-zA-Z0-9_:]``. Samples carry
no timestamp: Prometheus stamps them with the scrape time.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator
from typing import NamedTuple

from fleetscope.model import values
from fleetscope.model.histogram import Histogram
from fleetscope.model.instrumentation import Instrumentation

TEXT = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
_NAME_BAD = re.compile(r"[^a-zA-Z0-9_:]")


class Sample(NamedTuple):
    """One instrumentation's current value: ``value`` of shape ``inst.shape``."""

    inst: Instrumentation
    value: values.Value


class OwnSample(NamedTuple):
    """One of fleetscope's own figures that is not an instrumentation (alert deliveries):
    ``family`` without ``_total``; ``counter`` families get ``_total`` on their samples."""

    family: str
    help: str
    counter: bool
    labels: tuple[tuple[str, str], ...]
    value: float


def _own_lines(own: Iterable[OwnSample], openmetrics: bool) -> Iterator[str]:
    families: dict[str, list[OwnSample]] = {}
    for s in own:
        families.setdefault(s.family, []).append(s)
    for family in sorted(families):
        first = families[family][0]
        sample = f"{family}_total" if first.counter else family
        named = family if openmetrics or not first.counter else sample
        yield f"# HELP {named} {escape(first.help)}\n"
        yield f"# TYPE {named} {'counter' if first.counter else 'gauge'}\n"
        for s in families[family]:
            labels = ",".join(f'{k}="{escape(v)}"' for k, v in s.labels)
            yield f"{sample}{{{labels}}} {number_text(s.value)}\n"


def wants_openmetrics(accept: str | None) -> bool:
    """Whether an ``Accept`` header asks for OpenMetrics text."""
    return bool(accept) and "application/openmetrics-text" in accept


def number_text(x: float) -> str:
    """``x`` as the text formats print it: the shortest decimal that gives ``x`` back at 15
    significant digits, so sums of decimals print as the decimals they are (``0.06``, not
    ``0.060000000000000005``) and whole numbers without a fraction (``3``);
    ``NaN``, ``+Inf``, ``-Inf`` as Prometheus spells them.

    >>> number_text(0.01 + 0.05), number_text(3.0), number_text(float("inf"))
    ('0.06', '3', '+Inf')
    """
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    return format(float(x), ".15g")


def bound_text(x: float) -> str:
    """A bucket bound (``le``, ``lower``, ``upper``) exactly: ``repr``, so a reader maps it back to
    the very bucket of the layout (a bound rounded to 15 digits may fall into the next one)."""
    return repr(float(x)) if math.isfinite(x) else number_text(x)


def escape(text: str) -> str:
    """A label value or help text escaped for the text formats."""
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def metric_name(inst: Instrumentation, numeric: bool = False) -> str:
    """``fleetscope_<module>_<stat>`` (and ``_<numeric field>`` with ``numeric``), anything but
    ``[a-zA-Z0-9_:]`` made ``_``; fleetscope's own metrics are not prefixed twice
    (``fleetscope_api_requests``)."""
    return metric_base(inst.module, inst.stat, inst.numeric if numeric else None)


def metric_base(module: str, stat: str, numeric: str | None = None) -> str:
    """The name of metric ``module.stat`` (by ``numeric``, a distribution's family), as
    :func:`metric_name` gives it."""
    base = stat if module == "fleetscope" else f"{module}_{stat}"
    if numeric:
        base += f"_{numeric}"
    return _NAME_BAD.sub("_", f"fleetscope_{base}")


def family_name(inst: Instrumentation) -> str:
    """The name of the ``/metrics`` family ``inst`` belongs to."""
    return metric_name(inst, numeric=True)


def field_label(field: str) -> str:
    """The label a field is exported under (``le`` and ``instrumentation`` get a ``_``)."""
    label = _NAME_BAD.sub("_", field)
    return f"{label}_" if label in ("le", "instrumentation") else label


def label_name(inst: Instrumentation) -> str | None:
    """The label of ``inst``'s discrete field, if any (see :func:`field_label`)."""
    return None if inst.discrete is None else field_label(inst.discrete)


def _histogram_lines(name: str, labels: str, h: Histogram, om: bool) -> Iterator[str]:
    sep = "," if labels else ""
    cum = 0.0
    if h.zero_count:
        cum += h.zero_count
        yield f'{name}_bucket{{{labels}{sep}le="{bound_text(h.zero_threshold)}"}} {number_text(cum)}\n'
    for i in sorted(h.buckets):
        cum += h.buckets[i]
        upper = h.bucket_bounds(i)[1]
        if math.isinf(upper):
            continue  # counted in +Inf
        yield f'{name}_bucket{{{labels}{sep}le="{bound_text(upper)}"}} {number_text(cum)}\n'
    yield f'{name}_bucket{{{labels}{sep}le="+Inf"}} {number_text(h.count)}\n'
    g = "g" if om else ""
    yield f"{name}_{g}sum{{{labels}}} {number_text(h.sum)}\n"
    yield f"{name}_{g}count{{{labels}}} {number_text(h.count)}\n"


def render(samples: Iterable[Sample], openmetrics: bool = False, own: Iterable[OwnSample] = ()) -> str:
    """The exposition of ``samples`` (one family per name, families sorted by name), then of
    fleetscope's ``own`` figures."""
    families: dict[str, list[Sample]] = {}
    for s in samples:
        families.setdefault(family_name(s.inst), []).append(s)
    out: list[str] = []
    for name in sorted(families):
        members = families[name]
        hist = members[0].inst.numeric is not None
        kind = ("gaugehistogram" if openmetrics else "histogram") if hist else "gauge"
        what = members[0].inst.metric + (f" by {members[0].inst.numeric}" if hist else "")
        out.append(f"# HELP {name} fleetscope {escape(what)}: current value of each instrumentation\n")
        out.append(f"# TYPE {name} {kind}\n")
        for s in sorted(members, key=lambda s: s.inst.id):
            inst = s.inst
            base = f'instrumentation="{inst.id}"'
            label = label_name(inst)
            if inst.shape in (values.SCALAR, values.HISTOGRAM):
                items = [("", s.value)]
            else:
                items = sorted(s.value.items())  # type: ignore[union-attr]
            for key, v in items:
                labels = base + (f',{label}="{escape(key)}"' if label else "")
                if hist:
                    out.extend(_histogram_lines(name, labels, v, openmetrics))
                else:
                    out.append(f"{name}{{{labels}}} {number_text(v)}\n")
    out.extend(_own_lines(own, openmetrics))
    if openmetrics:
        out.append("# EOF\n")
    return "".join(out)


def current_samples(instrumentations: Iterable[Instrumentation], window_of) -> list[Sample]:
    """The latest final value of each instrumentation that has one; ``window_of(id)`` gives
    its real-time window (or None)."""
    out = []
    for inst in instrumentations:
        window = window_of(inst.id)
        latest = window.latest() if window is not None else None
        if latest is None:
            continue
        for point in window.points(latest, latest + 1):
            if point.value is not None:
                out.append(Sample(inst, point.value))
    return out


def grafana_cells(edges, times, counts_layers) -> list[dict]:
    """A heatmap as Grafana's "heatmap cells" frame, one object per non-empty cell:
    ``{"xMin": column start in epoch milliseconds, "yMin", "yMax": the row's value range,
    "count"}``, columns in time order, rows upwards. ``counts_layers`` are arrays of shape
    ``(len(times), len(edges) - 1)`` (the rest and each drawn key), added up."""
    out = []
    total = None
    for layer in counts_layers:
        total = layer if total is None else total + layer
    if total is None:
        return out
    lows = [float(x) for x in edges[:-1]]
    highs = [float(x) for x in edges[1:]]
    for col, t in enumerate(times):
        row_counts = total[col]
        x = int(t * 1000)
        for j, c in enumerate(row_counts.tolist()):
            if c > 0:
                out.append({"xMin": x, "yMin": lows[j], "yMax": highs[j], "count": round(c, 6)})
    return out
