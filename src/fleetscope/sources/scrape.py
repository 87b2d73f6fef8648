"""Prometheus scraping: read the Prometheus exposition of local exporters and
applications (``fleetscope agent --scrape URL[,interval]``) into the per-tick
accumulator StatsD and OTLP use.

The scraper asks for what Prometheus asks for when it wants native histograms:
the delimited protobuf exposition first, then OpenMetrics, then the text format
(:data:`fleetscope.formats.promproto.ACCEPT`); the answer's ``Content-Type``
picks the parser (protobuf when it says so, text otherwise). Both formats end in
the same conversion.

Each family becomes ``<prefix>.<family name>`` (prefix ``prom``), its labels
discrete fields (sanitised; ``hostname`` becomes ``tag_hostname``):

* counter (``x_total`` or ``x``: ``<prefix>.x`` either way): interval metric, the
  increase since the previous scrape, counted in
  the tick of the scrape (so totals over time are exact and, with an interval
  above one second, the per-second values come in steps); nothing on the first
  scrape of a series; a decrease is a reset (the new value is the increase);
* gauge and untyped: point metric, the last scraped value;
* summary ``x``: the point metric ``<prefix>.x`` with the discrete field
  ``quantile`` (``"0.5"``, ``"0.99"``...: the last scraped quantile values; NaN
  quantiles of an empty summary are skipped), and, as Prometheus stores them,
  ``<prefix>.x_sum`` and ``<prefix>.x_count`` as counters (rates);
* native histogram (protobuf exposition only): interval metric counting
  observations, with the numeric field ``value`` (seconds for a name ending
  ``_seconds``, bytes for ``_bytes``), kept exact: same schema, zero bucket and
  bucket indices (a schema finer than fleetscope's 3 is downscaled to 3, which
  only adds neighbouring buckets; negative buckets count in the zero bucket).
  A ``histogram`` is cumulative: the increase since the previous scrape is
  counted, bucket by bucket, at the coarser schema of the two scrapes (nothing
  on a first scrape; a decrease is a reset); a ``gaugehistogram`` (fleetscope's
  own ``/metrics``) is counted whole at each scrape;
* classic histogram (text, or protobuf without native buckets): the same metric;
  the increase of each bucket ``(lo, hi]`` since the previous scrape counts at
  ``hi`` (``+Inf`` at the last finite bound), so a value is reported within its
  source bucket: relative error under ``(hi - lo) / hi``; a classic gauge
  histogram counts whole at each scrape.
* ``*_created`` samples are skipped; what cannot be read is counted per reason
  in ``fleetscope.scrape_dropped`` (protocol ``http``): ``fetch`` (failed
  scrapes), ``syntax`` (unparsable text lines), ``truncated``, ``protobuf``, ``utf8``,
  ``too_large`` (undecodable protobuf), ``schema``, ``histogram`` (malformed
  native histograms), ``value``, ``tags``, ``name``, ``unsupported`` and the
  caps of :mod:`fleetscope.sources.statsd`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from typing import NamedTuple

from fleetscope.formats import promproto as proto
from fleetscope.model.errors import InputError
from fleetscope.model.metrics import Metric
from fleetscope.model.types import BYTES, NUMBER, SECONDS
from fleetscope.sources.otlp import OtlpConfig, OtlpSource
from fleetscope.sources.promtext import Family, Sample, parse
from fleetscope.sources.statsd_parse import MAX_NAME, MAX_TAG_VALUE, RESERVED, Event, sanitize

log = logging.getLogger(__name__)

ACCEPT = proto.ACCEPT
MAX_BODY = 64 << 20  # a scrape answer larger than this is refused (too_large)
_TYPES = {proto.COUNTER: "counter", proto.GAUGE: "gauge", proto.SUMMARY: "summary",
          proto.UNTYPED: "untyped", proto.HISTOGRAM: "histogram", proto.GAUGE_HISTOGRAM: "gaugehistogram"}


class Target(NamedTuple):
    url: str
    interval: float = 10.0


def parse_target(text: str) -> Target:
    """``URL[,interval]`` (interval in seconds, 1 to 3600, default 10); InputError naming
    ``scrape`` otherwise."""
    url, _, interval = text.partition(",")
    if not url.startswith(("http://", "https://")):
        raise InputError("scrape", f"{url!r} is not an http:// or https:// URL")
    try:
        seconds = float(interval.rstrip("s")) if interval else 10.0
    except ValueError:
        raise InputError("scrape", f"{interval!r} is not an interval in seconds") from None
    if not 1.0 <= seconds <= 3600.0:
        raise InputError("scrape", "the interval must be between 1 and 3600 seconds")
    return Target(url, seconds)


def label_tags(labels, skip: str = "") -> tuple | None:
    """Prometheus labels ``[(name, value)]`` as sorted StatsD-style tags (names sanitised,
    ``hostname``/``value`` prefixed ``tag_``); None if one is too long to be a field."""
    out = {}
    for k, v in labels:
        if k == skip:
            continue
        key = sanitize(k)
        if key in RESERVED:
            key = "tag_" + key
        if len(key) > MAX_NAME or len(v) > MAX_TAG_VALUE:
            return None
        out[key] = v
    return tuple(sorted(out.items()))


def unit_of(stat: str):
    """The unit a Prometheus name's suffix says: ``_seconds``, ``_bytes``; a number otherwise."""
    return SECONDS if stat.endswith("_seconds") else BYTES if stat.endswith("_bytes") else NUMBER


def _samples(fam, kind: str) -> list[Sample]:
    """The samples of a protobuf family as the text format writes them (native
    histograms left out: they are read whole)."""
    out = []
    name = fam.name
    for m in fam.metric:
        labels = tuple(sorted((lp.name, lp.value) for lp in m.label))
        if kind in ("counter", "gauge", "untyped"):
            out.append(Sample(name, labels, getattr(m, kind).value))
        elif kind == "summary":
            for q in m.summary.quantile:
                out.append(Sample(name, tuple(sorted((*labels, ("quantile", repr(q.quantile))))), q.value))
            out.append(Sample(name + "_sum", labels, m.summary.sample_sum))
            out.append(Sample(name + "_count", labels, float(m.summary.sample_count)))
        elif not proto.is_native(m.histogram):
            h = m.histogram
            total = h.sample_count_float or float(h.sample_count)
            bounds = [(b.upper_bound, b.cumulative_count_float or float(b.cumulative_count))
                      for b in h.bucket]
            if not any(math.isinf(b) and b > 0 for b, _ in bounds):
                bounds.append((math.inf, total))  # +Inf is optional in the protobuf exposition
            for bound, cum in bounds:
                le = "+Inf" if math.isinf(bound) and bound > 0 else repr(bound)
                out.append(Sample(name + "_bucket", tuple(sorted((*labels, ("le", le)))), cum))
    return out


class ScrapeSource(OtlpSource):
    """A source of the metrics local exporters expose for Prometheus."""

    name = "scrape"
    drop_stat = "scrape_dropped"
    received_stat = None  # scrapes are counted in .scrapes, samples are not

    def __init__(self, targets: list[Target], prefix: str = "prom", max_metrics: int = 1000,
                 max_keys: int = 1000) -> None:
        super().__init__(OtlpConfig(prefix=prefix, max_metrics=max_metrics, max_keys=max_keys))
        self.targets = list(targets)
        self._tasks: list[asyncio.Task] = []
        self.scrapes = 0

    def ingest_text(self, text: str, target: str = "") -> None:
        """Accumulate one scrape of ``target`` in a text format."""
        scrape = parse(text)
        with self._lock:
            for _ in range(scrape.bad):
                self._drop("http", "syntax")
            for family in scrape.families.values():
                self._family(family, target)
            self.scrapes += 1

    def ingest_protobuf(self, data: bytes, target: str = "") -> None:
        """Accumulate one scrape of ``target`` in the delimited protobuf exposition."""
        families, bad = proto.decode_delimited(data)
        with self._lock:
            for reason in bad:
                self._drop("http", reason)
            for fam in families:
                kind = _TYPES.get(fam.type)
                if kind is None:
                    self._drop("http", "unsupported")
                    continue
                if kind in ("histogram", "gaugehistogram"):
                    self._natives(fam, kind == "histogram", target)
                self._family(Family(fam.name, kind, _samples(fam, kind)), target)
            self.scrapes += 1

    def ingest_answer(self, body: bytes, content_type: str | None, target: str = "") -> None:
        """Accumulate one scrape answer, read as its ``Content-Type`` says."""
        if proto.is_protobuf(content_type):
            self.ingest_protobuf(body, target)
        else:
            self.ingest_text(body.decode("utf-8"), target)

    def _stat(self, name: str, kind: str) -> str | None:
        stat = sanitize(name)
        if kind == "counter" and stat.endswith("_total"):  # the same name in both formats
            stat = stat[:-len("_total")]
        if not stat or len(stat) > MAX_NAME:
            self._drop("http", "name")
            return None
        return stat

    def _family(self, fam: Family, target: str) -> None:
        if not fam.samples:
            return
        stat = self._stat(fam.name, fam.type)
        if stat is None:
            return
        if fam.type in ("counter", "gauge", "untyped", "unknown"):
            for s in fam.samples:
                if not s.name.endswith("_created"):
                    self._number(stat, "c" if fam.type == "counter" else "g", s, target)
        elif fam.type == "summary":
            self._summary(fam, stat, target)
        elif fam.type in ("histogram", "gaugehistogram"):
            self._classic(fam, stat, target, cumulative=fam.type == "histogram")
        else:
            self._drop("http", "unsupported")

    def _number(self, stat: str, kind: str, s: Sample, target: str, skip_nan: bool = False) -> None:
        """One counter ("c") or gauge ("g") sample."""
        if skip_nan and math.isnan(s.value):
            return
        tags = label_tags(s.labels)
        if tags is None or math.isnan(s.value) or math.isinf(s.value):
            self._drop("http", "value" if tags is not None else "tags")
            return
        if kind == "c":
            delta = self._counter((target, s.name, s.labels), s.value)
            if delta is None:
                self._register(stat, "c", tags)
                return
            reason = self._add(Event(stat, "c", (delta,), 1.0, tags))
        else:
            reason = self._add(Event(stat, "g", (s.value,), 1.0, tags))
        if reason:
            self._drop("http", reason)

    def _summary(self, fam: Family, stat: str, target: str) -> None:
        """Quantiles as a point metric with a ``quantile`` field; ``_sum`` and ``_count`` as
        counters of their own, as Prometheus stores them."""
        for s in fam.samples:
            if s.name == fam.name:
                self._number(stat, "g", s, target, skip_nan=True)
            elif s.name in (fam.name + "_sum", fam.name + "_count"):
                part = self._stat(s.name, "counter")
                if part is not None:
                    self._number(part, "c", s, target)

    def _natives(self, fam, cumulative: bool, target: str) -> None:
        """The native histograms of a protobuf family, merged whole."""
        stat = self._stat(fam.name, "histogram")
        if stat is None:
            return
        self._units.setdefault(stat, unit_of(stat))
        for m in fam.metric:
            if not proto.is_native(m.histogram):
                continue
            labels = tuple(sorted((lp.name, lp.value) for lp in m.label))
            tags = label_tags(labels)
            if tags is None:
                self._drop("http", "tags")
                continue
            try:
                current = proto.decode_native(m.histogram)
            except ValueError as exc:
                self._drop("http", str(exc))
                continue
            reason = self._histogram_point(stat, tags, current, (target, stat, labels, "native") if cumulative
                                           else None, first_whole=False)
            if reason:
                self._drop("http", reason)

    def _classic(self, fam: Family, stat: str, target: str, cumulative: bool) -> None:
        self._units.setdefault(stat, unit_of(stat))
        series: dict[tuple, list[tuple[float, float]]] = {}
        for s in fam.samples:
            if s.name == fam.name + "_bucket":
                le = dict(s.labels).get("le")
                try:
                    bound = float(le) if le is not None else math.nan
                except ValueError:
                    bound = math.nan
                if math.isnan(bound) or math.isnan(s.value):
                    self._drop("http", "value")
                    continue
                series.setdefault(tuple(kv for kv in s.labels if kv[0] != "le"), []).append((bound, s.value))
        for labels, buckets in series.items():
            tags = label_tags(labels)
            if tags is None:
                self._drop("http", "tags")
                continue
            current = _at_upper_bounds(buckets)
            if cumulative:
                key = (target, stat, labels)
                prev = self._previous.get(key)
                self._previous[key] = current
                if prev is None:
                    self._register(stat, "h", tags)
                    continue
                delta = {k: n - prev.get(k, 0.0) for k, n in current.items()}
                if min(delta.values(), default=0.0) < 0 or any(k not in current for k in prev):
                    delta = current  # a reset
                current = delta
            reason = self._weighted(stat, tags, current)
            if reason:
                self._drop("http", reason)

    def _counter(self, key: tuple, value: float) -> float | None:
        prev = self._previous.get(key)
        self._previous[key] = value
        if prev is None:
            return None
        return value - prev if value >= prev else value

    def _metric(self, stat: str, kind: str, keys) -> Metric:
        self._labels.setdefault(stat, stat)
        m = super()._metric(stat, kind, keys)
        return m._replace(label=m.label.replace("OpenTelemetry", "Prometheus", 1))

    # -- scraping ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Scrape every target at its interval, from now on."""
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._scrape_loop(t)) for t in self.targets]
        self._tasks.append(loop.create_task(self._forget_unread()))

    async def _scrape_loop(self, target: Target) -> None:
        import httpx

        async with httpx.AsyncClient(timeout=min(target.interval, 10.0),
                                     headers={"accept": ACCEPT}) as client:
            while True:
                try:
                    await self._scrape(client, target)
                except (httpx.HTTPError, UnicodeDecodeError, ValueError) as exc:
                    log.debug("scrape of %s failed: %s", target.url, exc)
                    with self._lock:
                        self._drop("http", "too_large" if str(exc) == "too_large" else "fetch")
                except Exception:  # a scrape never stops the loop (nor the agent)
                    log.exception("scrape of %s failed", target.url)
                    with self._lock:
                        self._drop("http", "fetch")
                await asyncio.sleep(target.interval)

    async def _scrape(self, client, target: Target) -> None:
        async with client.stream("GET", target.url) as resp:
            resp.raise_for_status()
            body = bytearray()
            async for chunk in resp.aiter_bytes():  # decompressed (gzip) as it comes
                body += chunk
                if len(body) > MAX_BODY:
                    raise ValueError("too_large")
            self.ingest_answer(bytes(body), resp.headers.get("content-type"), target.url)

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._tasks = []
        with contextlib.suppress(Exception):
            super().close()


def _at_upper_bounds(buckets: list[tuple[float, float]]) -> dict[float, float]:
    """Cumulative classic buckets ``[(le, count)]`` as ``{value: count}``, each bucket's
    count at its upper bound (``+Inf`` at the last finite bound)."""
    buckets.sort()
    finite = [b for b, _ in buckets if math.isfinite(b)]
    last = finite[-1] if finite else 0.0
    current: dict[float, float] = {}
    below = 0.0
    for bound, cum in buckets:
        at = max(bound if math.isfinite(bound) else last, 0.0)
        current[at] = current.get(at, 0.0) + max(cum - below, 0.0)
        below = max(below, cum)
    return current
