"""Prometheus remote write in: a remote-write 1.0 receiver (``POST /api/v1/write``, a
Snappy-compressed protobuf ``WriteRequest``) feeding the per-tick accumulator of
StatsD and OTLP, so a Prometheus server or agent can push what it scrapes.

Each series becomes a row of ``<prefix>.<name>`` (prefix ``prom`` by default; the
metric name sanitised as OTLP does: ``:`` and anything else outside
``[A-Za-z0-9_]`` become ``_``), its other labels discrete fields (``job``,
``instance``, ...; ``hostname`` and ``value`` become ``tag_hostname`` and
``tag_value``), with the caps of :mod:`fleetscope.sources.statsd` (names, fields
per name, values per field).

Remote write 1.0 does not say whether a float series is a counter or a gauge:
Prometheus sends the type apart, in metadata-only requests (``metadata_config``,
once a minute by default, the first a minute after it starts). The receiver keeps
the types it is told, by family name, and applies them to the series of that
family. Until a family's metadata has come (a minute after either side starts)
Prometheus' naming conventions stand in for it: a name ending ``_total`` is a
counter, a series ``x_bucket`` with an ``le`` label makes ``x`` a histogram and
a series ``x`` with a ``quantile`` label makes ``x`` a summary. Metadata wins
over the names. So:

* a ``counter`` (``x`` or ``x_total``) and the ``_bucket``, ``_sum`` and ``_count``
  series of a ``histogram`` or ``summary`` family: interval metric, the increase
  per second. The increase is computed per series from successive samples (a
  decrease is a reset: the new value is the increase) and counted in the tick it
  arrives in, so totals over time are exact and, with a scrape interval above one
  second, the per-second values come in steps; a series' first sample only makes
  it known (its increase is not);
* everything else (gauges, untyped series, a summary's quantiles, and series
  whose type neither metadata nor name tells): point metric, the last value
  (kept from tick to tick until the next sample or the series' stale marker).
  When metadata comes and changes the kind of a known metric (a counter not
  named ``_total``), the metric changes kind (the catalogue's generation moves
  on); instrumentations made before keep the kind they were made with.

Classic histograms are kept as the plain series Prometheus stores: ``x_bucket``
with an ``le`` field, ``x_sum``, ``x_count``. Native histograms become an
interval metric counting observations per second, with the numeric field
``value`` (seconds for a name ending ``_seconds``, bytes for ``_bytes``), exact
(same schema, zero bucket and indices; finer schemas downscaled to 3); the path
OTLP's exponential histograms take (:meth:`OtlpSource._histogram_point`): the
increase since the series' previous sample, bucket by bucket, nothing on its
first sample; a gauge histogram (reset hint ``GAUGE``, or a ``gaugehistogram``
family) counts whole at each sample.

Samples carry their own timestamps, the accumulator is per tick: a request's
samples of a series are taken in time order, samples not newer than the
series' latest are dropped (``out_of_order``: a retried batch already
received), and a tick shows the latest value of a gauge series (a counter's
increase up to its latest sample), in the tick the request arrived in, whatever
the samples' timestamps.

HTTP as Prometheus expects it: 204 when the request was read (samples refused
by the caps or as malformed are counted, not answered: the rest is kept); 400
for a body that is not a Snappy-compressed ``WriteRequest`` (Prometheus does
not retry a 4xx), 413 for one too large, 415 for another content type or
encoding; 5xx only for trouble a retry may cure. What is refused is counted per
reason in ``fleetscope.remote_write_dropped`` (``snappy``, ``protobuf``,
``too_large``, ``content_type``, ``content_encoding``, ``name``, ``tags``,
``value``, ``out_of_order``, ``schema``, ``histogram`` and the caps'), samples
accepted in ``fleetscope.remote_write_received``. A bad body keeps nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import struct
from typing import NamedTuple

from fleetscope.formats import promremote as pr
from fleetscope.model.metrics import Metric
from fleetscope.promql.storage import STALE_NAN_BITS
from fleetscope.sources.otlp import Decoded, OtlpConfig, OtlpSource
from fleetscope.sources.scrape import label_tags, unit_of
from fleetscope.sources.statsd_parse import COUNTER, GAUGE, MAX_NAME, Event, sanitize

log = logging.getLogger(__name__)

PATH = "/api/v1/write"
MAX_BODY = 8 << 20  # compressed; Prometheus' batches are a few hundred kB
_SUFFIXES = {"_total": (pr.COUNTER,), "_bucket": (pr.HISTOGRAM, pr.SUMMARY),
             "_sum": (pr.HISTOGRAM, pr.SUMMARY), "_count": (pr.HISTOGRAM, pr.SUMMARY)}


class RemoteWriteConfig(NamedTuple):
    """Where to listen, how much to accept, and the SHA-256 (hex) of the bearer token a
    writer must send (None: none asked, allowed on loopback only; see processes/config.py)."""

    host: str = "127.0.0.1"
    port: int = 9201
    prefix: str = "prom"
    max_metrics: int = 1000
    max_fields: int = 24
    max_keys: int = 1000
    token_sha256: str | None = None


def authorized(config: RemoteWriteConfig, header: str | None) -> bool:
    """Whether an ``Authorization`` header carries the token ``config`` asks for (compared as
    hashes in constant time; the token itself is never kept)."""
    if config.token_sha256 is None:
        return True
    scheme, _, token = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return False
    return hmac.compare_digest(hashlib.sha256(token.strip().encode()).hexdigest(), config.token_sha256)


def is_stale(x: float) -> bool:
    """Whether ``x`` is Prometheus' stale marker (a series ended)."""
    return math.isnan(x) and struct.unpack("<Q", struct.pack("<d", x))[0] == STALE_NAN_BITS


class RemoteWriteSource(OtlpSource):
    """A source of the series Prometheus servers and agents push over remote write."""

    name = "remote_write"
    drop_stat = "remote_write_dropped"
    received_stat = "remote_write_received"
    received_label = "Prometheus remote-write samples accepted"

    def __init__(self, config: RemoteWriteConfig | None = None) -> None:
        self.remote = config or RemoteWriteConfig()
        c = self.remote
        super().__init__(OtlpConfig(c.host, c.port, c.prefix, c.max_metrics, c.max_fields, c.max_keys))
        self._types: dict[str, int] = {}  # sanitised family name -> MetricMetadata type
        self._inferred: dict[str, int] = {}  # the same, from the names (HISTOGRAM, SUMMARY)
        self._help: dict[str, str] = {}  # the same -> its help text
        self._last: dict[tuple, int] = {}  # series -> the timestamp (ms) of its latest sample taken

    # -- decoding ---------------------------------------------------------------------------

    def ingest_write(self, body: bytes, content_type: str = pr.CONTENT_TYPE,
                     content_encoding: str = pr.CONTENT_ENCODING) -> Decoded:
        """Decode and accumulate one remote-write request; :class:`promremote.RemoteError`
        (a ValueError with a ``reason``) if it is none, nothing kept then."""
        try:
            if content_type.split(";")[0].strip().lower() != pr.CONTENT_TYPE:
                raise pr.RemoteError("content_type", f"{content_type!r} is not {pr.CONTENT_TYPE}")
            if content_encoding.strip().lower() != pr.CONTENT_ENCODING:
                raise pr.RemoteError("content_encoding", f"{content_encoding!r} is not snappy")
            request = pr.decode_write_request(body)
        except pr.RemoteError as exc:
            with self._lock:
                self._drop("http", exc.reason)
            raise
        series = [([(lb.name, lb.value) for lb in ts.labels], ts) for ts in request.timeseries]
        with self._lock:
            self._learn(request.metadata, series)
            got = self._tally(reason for labels, ts in series for reason in self._series(labels, ts))
        self.received += got.accepted
        return got

    def _learn(self, metadata, series: list) -> None:
        """Keep the families' types and help from ``metadata``, and the types the names of
        ``series`` tell; a known metric whose kind they change is made again with its new
        kind (its values so far forgotten)."""
        changed: set[str] = set()
        for md in metadata:
            family = sanitize(md.metric_family_name)
            if self._types.get(family) != md.type or (md.help and self._help.get(family) != md.help):
                self._types[family] = md.type
                if md.help:
                    self._help[family] = md.help[:200]
                changed.add(family)
        for labels, _ in series:
            name = le = quantile = None
            for k, v in labels:
                if k == "__name__":
                    name = v
                elif k == "le":
                    le = True
                elif k == "quantile":
                    quantile = True
            if name is None or not (le or quantile):
                continue
            if le and name.endswith("_bucket"):
                family, kind = sanitize(name[:-len("_bucket")]), pr.HISTOGRAM
            elif quantile:
                family, kind = sanitize(name), pr.SUMMARY
            else:
                continue
            if self._inferred.get(family) != kind:
                self._inferred[family] = kind
                changed.add(family)
        for family in changed:
            for stat in (family, *(family + suffix for suffix in _SUFFIXES)):
                meta = self._meta.get(stat)
                if meta is None or meta.type not in (COUNTER, GAUGE):
                    continue
                kind = self._kind(stat)
                if kind != meta.type:
                    meta.type = kind
                    self._gauges.pop(stat, None)
                    self._acc.pop(stat, None)
                meta.metric = self._metric(stat, kind, meta.keys)
                self.generation += 1

    def _family(self, family: str) -> int | None:
        """A family's type: as metadata said, else as the names tell, else None."""
        t = self._types.get(family)
        return self._inferred.get(family) if t is None else t

    def _kind(self, stat: str) -> str:
        """``c`` (counter: rates) or ``g`` (gauge: levels) for a float series' stat."""
        own = self._family(stat)
        if own == pr.COUNTER:
            return COUNTER
        for suffix, families in _SUFFIXES.items():
            if stat.endswith(suffix) and self._family(stat[:-len(suffix)]) in families:
                return COUNTER
        return COUNTER if own is None and stat.endswith("_total") else GAUGE

    def _series(self, labels: list[tuple[str, str]], ts):
        """Accumulate one ``TimeSeries`` (``labels``: its labels); yields None or a drop reason
        per sample."""
        name = next((v for k, v in labels if k == "__name__"), "")
        n = len(ts.samples) + len(ts.histograms)
        stat = sanitize(name)
        if not stat or len(stat) > MAX_NAME:
            yield from ["name"] * n
            return
        tags = label_tags(labels, skip="__name__")
        if tags is None:
            yield from ["tags"] * n
            return
        if len(ts.samples):
            yield from self._floats(stat, tags, ts.samples)
        if len(ts.histograms):
            yield from self._histograms(stat, tags, ts.histograms)

    def _fresh(self, key: tuple, samples, timestamp) -> tuple[list, int]:
        """The samples newer than the series' latest, in time order, and how many were not."""
        last = self._last.get(key)
        ordered = sorted(samples, key=timestamp)
        fresh = ordered if last is None else [s for s in ordered if timestamp(s) > last]
        return fresh, len(ordered) - len(fresh)

    def _floats(self, stat: str, tags: tuple, samples):
        """One series' float samples. Its state (latest timestamp, last value) is kept only
        once the caps let it in, so refused series cost no memory."""
        key = (stat, tags)
        fresh, old = self._fresh(key, samples, lambda s: s.timestamp)
        yield from ["out_of_order"] * old
        if not fresh:
            return
        kind = self._kind(stat)
        previous = self._previous.get(key)
        increase = 0.0
        latest: float | None = None
        verdicts: list[str | None] = []
        for s in fresh:
            x = s.value
            if is_stale(x):  # the series ended: no level any more, and its next value starts anew
                previous = latest = None
                verdicts.append(None)
            elif not math.isfinite(x):
                verdicts.append("value")
            else:
                if previous is not None:
                    increase += x - previous if x >= previous else x  # a decrease is a reset
                previous = latest = x
                verdicts.append(None)
        if kind == COUNTER:
            reason = self._add(Event(stat, COUNTER, (increase,), 1.0, tags))
        elif latest is not None:
            reason = self._add(Event(stat, GAUGE, (latest,), 1.0, tags))
        else:  # ended, or only values that are no number: no level to show, nothing kept
            self._gauges.get(stat, {}).pop(tags, None)
            self._previous.pop(key, None)
            self._last.pop(key, None)
            yield from verdicts
            return
        if reason:
            yield from [reason] * len(fresh)
            return
        self._last[key] = fresh[-1].timestamp
        if previous is None:
            self._previous.pop(key, None)
        else:
            self._previous[key] = previous
        yield from verdicts

    def _histograms(self, stat: str, tags: tuple, histograms):
        """One series' native histogram samples (state kept only once the caps let it in)."""
        self._units.setdefault(stat, unit_of(stat))
        key = (stat, tags, "native")
        fresh, old = self._fresh(key, histograms, lambda h: h.timestamp)
        yield from ["out_of_order"] * old
        if not fresh:
            return
        reason = self._add(Event(stat, "h", (), 1.0, tags))  # the caps, before any state is kept
        if reason:
            yield from [reason] * len(fresh)
            return
        self._last[key] = fresh[-1].timestamp
        gauge = self._types.get(stat) == pr.GAUGEHISTOGRAM
        for msg in fresh:
            try:
                h = pr.decode_histogram(msg)
            except ValueError as exc:
                yield str(exc)
                continue
            whole = gauge or msg.reset_hint == pr.RESET_GAUGE
            yield self._histogram_point(stat, tags, h, None if whole else key, first_whole=False)

    def _metric(self, stat: str, kind: str, keys) -> Metric:
        self._labels[stat] = self._help.get(stat, stat)
        m = super()._metric(stat, kind, keys)
        return m._replace(label=m.label.replace("OpenTelemetry", "Prometheus", 1))

    # -- listening --------------------------------------------------------------------------

    async def start(self) -> None:
        """Serve ``POST /api/v1/write`` on ``host:port`` from a thread of its own (port 0: any
        free one, see :attr:`addresses`); returns once it listens."""
        await self._listen(receiver_app(self), "remote-write receiver")


def receiver_app(source: RemoteWriteSource):
    """The ASGI app of the receiver: ``POST /api/v1/write`` into ``source``."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse, Response
    from starlette.routing import Route

    def refused(reason: str, status: int) -> Response:
        return PlainTextResponse(f"{reason}\n", status_code=status)

    async def write(request: Request) -> Response:
        if not authorized(source.remote, request.headers.get("authorization")):
            with source._lock:
                source._drop("http", "unauthorized")
            return refused("unauthorized: send the receiver's token as Authorization: Bearer", 401)
        size = int(request.headers.get("content-length") or 0)
        if size > MAX_BODY:
            with source._lock:
                source._drop("http", "too_large")
            return refused(f"too_large: the body has {size} bytes, more than {MAX_BODY}", 413)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY:
                with source._lock:
                    source._drop("http", "too_large")
                return refused(f"too_large: the body has more than {MAX_BODY} bytes", 413)
        try:
            source.ingest_write(bytes(body), request.headers.get("content-type", ""),
                                request.headers.get("content-encoding", ""))
        except pr.RemoteError as exc:
            status = {"too_large": 413, "content_type": 415, "content_encoding": 415}.get(exc.reason, 400)
            return refused(str(exc), status)
        except Exception:  # a bug, not the body: 500, which Prometheus retries
            log.exception("remote write failed")
            return refused("internal error", 500)
        return Response(status_code=204)

    return Starlette(routes=[Route(PATH, write, methods=["POST"])])
