"""Prometheus scraping: read OpenMetrics/Prometheus text from local exporters and
applications (``fleetscope agent --scrape URL[,interval]``) into the per-tick
accumulator StatsD and OTLP use.

Each family becomes ``<prefix>.<family name>`` (prefix ``prom``), its labels
discrete fields (sanitised; ``hostname`` becomes ``tag_hostname``):

* counter (``x_total`` or ``x``: ``<prefix>.x`` either way): interval metric, the
  increase since the previous scrape, counted in
  the tick of the scrape (so totals over time are exact and, with an interval
  above one second, the per-second values come in steps); nothing on the first
  scrape of a series; a decrease is a reset (the new value is the increase);
* gauge and untyped: point metric, the last scraped value;
* classic histogram: interval metric counting observations, with the numeric
  field ``value`` (seconds for a name ending ``_seconds``, bytes for
  ``_bytes``): the increase of each bucket ``(lo, hi]`` since the previous
  scrape counts at ``hi`` (``+Inf`` at the last finite bound), so a value is
  reported within its source bucket: relative error under ``(hi - lo) / hi``.
  Native histograms need the protobuf exposition, which is not read here.
* summaries, gauge histograms and ``*_created`` samples are skipped (counted as
  ``unsupported`` in ``fleetscope.scrape_dropped``, with failed scrapes as
  ``fetch`` and unparsable lines as ``syntax``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from typing import NamedTuple

from fleetscope.model.errors import InputError
from fleetscope.model.metrics import Metric
from fleetscope.model.types import BYTES, NUMBER, SECONDS
from fleetscope.sources.otlp import OtlpConfig, OtlpSource
from fleetscope.sources.promtext import Family, parse
from fleetscope.sources.statsd_parse import MAX_NAME, MAX_TAG_VALUE, RESERVED, Event, sanitize

log = logging.getLogger(__name__)

ACCEPT = "application/openmetrics-text;version=1.0.0;q=0.9,text/plain;version=0.0.4;q=0.5"


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


def _tags(labels, skip: str = "") -> tuple | None:
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


class ScrapeSource(OtlpSource):
    """A source of the metrics local exporters expose for Prometheus."""

    name = "scrape"
    drop_stat = "scrape_dropped"

    def __init__(self, targets: list[Target], prefix: str = "prom", max_metrics: int = 1000,
                 max_keys: int = 1000) -> None:
        super().__init__(OtlpConfig(prefix=prefix, max_metrics=max_metrics, max_keys=max_keys))
        self.targets = list(targets)
        self._tasks: list[asyncio.Task] = []
        self.scrapes = 0

    def ingest_text(self, text: str, target: str = "") -> None:
        """Accumulate one scrape of ``target``."""
        scrape = parse(text)
        with self._lock:
            for _ in range(scrape.bad):
                self._drop("http", "syntax")
            for family in scrape.families.values():
                self._family(family, target)
            self.scrapes += 1

    def _family(self, fam: Family, target: str) -> None:
        stat = sanitize(fam.name)
        if fam.type == "counter" and stat.endswith("_total"):  # the same name in both formats
            stat = stat[:-len("_total")]
        if len(stat) > MAX_NAME:
            self._drop("http", "name")
            return
        if fam.type in ("counter", "gauge", "untyped", "unknown"):
            for s in fam.samples:
                if s.name.endswith("_created"):
                    continue
                tags = _tags(s.labels)
                if tags is None or math.isnan(s.value) or math.isinf(s.value):
                    self._drop("http", "value" if tags is not None else "tags")
                    continue
                if fam.type == "counter":
                    delta = self._counter((target, s.name, s.labels), s.value)
                    if delta is None:
                        self._register(stat, "c", tags)
                        continue
                    reason = self._add(Event(stat, "c", (delta,), 1.0, tags))
                else:
                    reason = self._add(Event(stat, "g", (s.value,), 1.0, tags))
                if reason:
                    self._drop("http", reason)
            return
        if fam.type != "histogram":
            self._drop("http", "unsupported")
            return
        self._units.setdefault(stat, SECONDS if stat.endswith("_seconds")
                               else BYTES if stat.endswith("_bytes") else NUMBER)
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
            tags = _tags(labels)
            if tags is None:
                self._drop("http", "tags")
                continue
            buckets.sort()
            finite = [b for b, _ in buckets if math.isfinite(b)]
            last = finite[-1] if finite else 0.0
            current: dict[float, float] = {}
            below = 0.0
            for bound, cum in buckets:
                at = max(bound if math.isfinite(bound) else last, 0.0)
                current[at] = current.get(at, 0.0) + max(cum - below, 0.0)
                below = max(below, cum)
            key = (target, stat, labels)
            prev = self._previous.get(key)
            self._previous[key] = current
            if prev is None:
                self._register(stat, "h", tags)
                continue
            delta = {k: n - prev.get(k, 0.0) for k, n in current.items()}
            if min(delta.values(), default=0.0) < 0 or any(k not in current for k in prev):
                delta = current  # a reset
            reason = self._weighted(stat, tags, delta)
            if reason:
                self._drop("http", reason)

    def _counter(self, key: tuple, value: float) -> float | None:
        prev = self._previous.get(key)
        self._previous[key] = value
        if prev is None:
            return None
        return value - prev if value >= prev else value

    def _register(self, stat: str, kind: str, tags: tuple) -> None:
        """Make a series known (discovery) on its first scrape, without a value."""
        if kind == "h":
            reason = self._add(Event(stat, "h", (), 1.0, tags))
        else:
            reason = self._add(Event(stat, kind, (0.0,), 1.0, tags))
        if reason:
            self._drop("http", reason)

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
                    resp = await client.get(target.url)
                    resp.raise_for_status()
                    self.ingest_text(resp.text, target.url)
                except (httpx.HTTPError, UnicodeDecodeError) as exc:
                    log.debug("scrape of %s failed: %s", target.url, exc)
                    with self._lock:
                        self._drop("http", "fetch")
                await asyncio.sleep(target.interval)

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._tasks = []
        with contextlib.suppress(Exception):
            super().close()
