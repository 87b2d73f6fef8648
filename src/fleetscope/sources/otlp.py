"""OpenTelemetry metrics in: an OTLP/HTTP receiver (``POST /v1/metrics``, protobuf or
JSON, optionally gzip) feeding the same per-tick accumulator as StatsD.

Each OTel metric becomes ``<prefix>.<name>`` (prefix ``otel`` by default; ``.`` and
other characters outside ``[A-Za-z0-9_]`` become ``_``). Its discrete fields are
the resource attributes (except the SDK's own ``telemetry.*``; ``service.name``
becomes ``service``) and the data point attributes, sanitised the same way,
values as text.

* monotonic sum: interval metric, the increase per second (cumulative points are
  turned into deltas per series; the first point of a series counts whole, as
  the increase since its start time);
* gauge, non-monotonic sum: point metric, the last value;
* histogram and exponential histogram: interval metric counting observations per
  second, with the numeric field ``value`` in the metric's unit (``s``, ``ms``,
  ``us``, ``ns``, ``By``; anything else is a plain number).

Exponential histograms keep their bucket layout: an OTel bucket ``k`` at scale
``s`` is Prometheus/fleetscope index ``k + 1`` at schema ``s``. Each data point
becomes one ready histogram, merged whole by the agent (see
:attr:`~fleetscope.sources.base.Rows.weighted`): scales above fleetscope's
schema 3 are downscaled to 3 (neighbouring buckets added: exact), lower scales
are kept as they are, the zero threshold is OTel's, and ``sum`` is OTel's
``sum``. Cumulative points are turned into deltas bucket by bucket at the
coarser scale of two successive points. Negative buckets go to the zero bucket
(fleetscope histograms hold values >= 0).
Explicit-bucket histograms are converted: a bucket ``(lo, hi]`` counts at ``hi``
(the overflow bucket at the last bound), so a value is reported within its
source bucket, relative error under ``(hi - lo) / hi``; their ``sum`` is the sum
of those representative values, not OTel's.

Bad payloads (not protobuf / JSON of an ``ExportMetricsServiceRequest``, too
large, bad gzip) are answered 400/413/415 and counted per reason in
``fleetscope.otlp_dropped``, as are data points beyond the caps (see
:mod:`fleetscope.sources.statsd`); accepted points are counted in
``fleetscope.otlp_received``.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import math
import threading
import zlib
from typing import NamedTuple

from fleetscope.formats.promproto import INDEX_RANGE
from fleetscope.model.histogram import DEFAULT_SCHEMA, MAX_BUCKETS, MIN_SCHEMA, Histogram, bucket_upper
from fleetscope.model.metrics import DISCRETE, INTERVAL, NUMERIC, POINT, Field, Metric, metric
from fleetscope.model.types import BYTES, NUMBER, Type
from fleetscope.sources.statsd import StatsdConfig, StatsdSource
from fleetscope.sources.statsd_parse import MAX_NAME, MAX_TAG_VALUE, RESERVED, Event, sanitize

log = logging.getLogger(__name__)

MAX_BODY = 8 << 20
_UNITS = {"s": Type("seconds", 0), "ms": Type("seconds", -3), "us": Type("seconds", -6),
          "ns": Type("seconds", -9), "By": BYTES}
_CUMULATIVE = 2  # AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE


class OtlpConfig(NamedTuple):
    """Where to listen and how much to accept."""

    host: str = "127.0.0.1"
    port: int = 4318
    prefix: str = "otel"
    max_metrics: int = 1000
    max_fields: int = 24
    max_keys: int = 1000


class Decoded(NamedTuple):
    """What one request brought: accepted and rejected data points, the reasons of the latter."""

    accepted: int
    rejected: int
    reasons: list[str]


def decode_request(body: bytes, content_type: str, content_encoding: str = ""):
    """The ``ExportMetricsServiceRequest`` in ``body``; ValueError with a reason
    (``gzip``, ``too_large``, ``protobuf``, ``json``, ``content_type``) if it is none."""
    from google.protobuf import json_format
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

    if content_encoding.strip().lower() == "gzip":
        try:
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            body = d.decompress(body, MAX_BODY + 1)
        except (zlib.error, gzip.BadGzipFile, EOFError):
            raise ValueError("gzip") from None
        if len(body) > MAX_BODY:
            raise ValueError("too_large")
    elif content_encoding.strip().lower() not in ("", "identity"):
        raise ValueError("content_encoding")
    request = ExportMetricsServiceRequest()
    kind = content_type.split(";")[0].strip().lower()
    if kind == "application/x-protobuf":
        try:
            request.ParseFromString(body)
        except (DecodeError, RecursionError, ValueError):
            raise ValueError("protobuf") from None
    elif kind == "application/json":
        try:
            json_format.Parse(body.decode("utf-8"), request, ignore_unknown_fields=True)
        except (json_format.ParseError, UnicodeDecodeError, RecursionError, ValueError, TypeError):
            raise ValueError("json") from None
    else:
        raise ValueError("content_type")
    return request


def _text(value) -> str:
    """An OTel AnyValue as text."""
    which = value.WhichOneof("value")
    if which == "string_value":
        return value.string_value
    if which == "bool_value":
        return "true" if value.bool_value else "false"
    if which == "int_value":
        return str(value.int_value)
    if which == "double_value":
        return repr(value.double_value)
    if which == "array_value":
        return "[" + ",".join(_text(v) for v in value.array_value.values) + "]"
    return ""


def _tags(attributes, out: dict[str, str]) -> str | None:
    """Add ``attributes`` to ``out`` as fields; the drop reason if one cannot be a field."""
    for kv in attributes:
        if kv.key.startswith("telemetry."):
            continue
        key = "service" if kv.key == "service.name" else sanitize(kv.key)
        if key in RESERVED:
            key = "tag_" + key
        text = _text(kv.value)
        if not key or len(key) > MAX_NAME or len(text) > MAX_TAG_VALUE:
            return "attribute"
        out[key] = text
    return None


def exponential_histogram(dp) -> Histogram:
    """An OTel ``ExponentialHistogramDataPoint`` as a fleetscope histogram, exactly: OTel
    bucket ``k`` at scale ``s`` is index ``k + 1`` at schema ``s``; scales above
    fleetscope's schema (3) are downscaled to it (``k >> d``: neighbours added), lower
    ones kept. Negative buckets count in the zero bucket. ``sum`` is OTel's when the
    point has one, else each count at its bucket's upper bound. ``min`` and ``max`` are
    OTel's when the point has them (not known otherwise, or when they are not finite
    or contradict each other). ValueError (``value``) for a bucket outside the float
    range or a bad zero threshold or sum."""
    scale = dp.scale
    schema = min(scale, DEFAULT_SCHEMA)
    shift = scale - schema
    lo, hi = INDEX_RANGE[schema]
    threshold = dp.zero_threshold
    if not 0.0 <= threshold < math.inf:
        raise ValueError("value")
    h = Histogram(schema, threshold)
    buckets = h.buckets
    first = dp.positive.offset
    if shift == 0:
        base = first + 1
        for j, n in enumerate(dp.positive.bucket_counts):
            if n:
                buckets[base + j] = float(n)
    else:
        for j, n in enumerate(dp.positive.bucket_counts):
            if n:
                i = ((first + j) >> shift) + 1
                buckets[i] = buckets.get(i, 0.0) + n
    if buckets and not (lo <= min(buckets) and max(buckets) <= hi):
        raise ValueError("value")
    h.zero_count = float(dp.zero_count) + float(sum(dp.negative.bucket_counts))
    h.count = math.fsum([h.zero_count, *buckets.values()])
    if dp.HasField("sum"):
        h.sum = dp.sum
        if not math.isfinite(h.sum):
            raise ValueError("value")
    else:
        h.sum = math.fsum(n * bucket_upper(i, schema) for i, n in buckets.items())
    if h.count > 0.0:  # an empty one keeps its empty range
        h.min = dp.min if dp.HasField("min") and math.isfinite(dp.min) else math.nan
        h.max = dp.max if dp.HasField("max") and math.isfinite(dp.max) else math.nan
        if h.min > h.max:
            h.min = h.max = math.nan
    while len(h.buckets) > MAX_BUCKETS and h.schema > MIN_SCHEMA:  # as a histogram does itself
        h.downscale(1)
    return h


def histogram_delta(current: Histogram, previous: Histogram) -> Histogram | None:
    """``current - previous`` of a cumulative histogram series, exactly: at the coarser
    schema of the two (bucket bounds nest, so downscaling only adds neighbours) and the
    wider zero bucket. None when ``current`` does not continue ``previous`` (a reset:
    some count went down), the caller then counting ``current`` whole.

    The min and max of a cumulative series cover all of it, so the delta's are known
    only where they moved: a new maximum happened since ``previous`` and is the
    delta's maximum (a new minimum likewise); an unchanged one may or may not lie in
    the delta, which then does not know it (NaN)."""
    if current.count < previous.count:
        return None
    cur, prev = current.copy(), previous.copy()
    common = min((h.schema for h in (cur, prev) if h.buckets), default=cur.schema)
    for h in (cur, prev):
        if h.schema > common:
            h.downscale(h.schema - common)
        elif not h.buckets:
            h.schema = common  # nothing to rescale
    for _ in range(4):  # widening can grow a threshold past the other's bucket bounds
        if cur.zero_threshold == prev.zero_threshold:
            break
        wider = max(cur.zero_threshold, prev.zero_threshold)
        for h in (cur, prev):
            h.merge(Histogram(common, wider))
    else:
        return None
    zero = cur.zero_count - prev.zero_count
    if zero < 0 or any(cur.buckets.get(i, 0.0) < n for i, n in prev.buckets.items()):
        return None
    out = Histogram(common, cur.zero_threshold)
    out.buckets = {i: n - prev.buckets.get(i, 0.0) for i, n in cur.buckets.items()
                   if n > prev.buckets.get(i, 0.0)}
    out.zero_count = zero
    out.count = math.fsum([zero, *out.buckets.values()])
    out.sum = cur.sum - prev.sum
    if out.count > 0.0:  # NaN on either side compares false: not known
        out.min = cur.min if cur.min < prev.min else math.nan
        out.max = cur.max if cur.max > prev.max else math.nan
    return out


class OtlpSource(StatsdSource):
    """A source of the metrics applications export over OTLP/HTTP."""

    name = "otlp"
    drop_stat = "otlp_dropped"
    received_stat = "otlp_received"
    received_label = "OTLP data points accepted"

    def __init__(self, config: OtlpConfig | None = None) -> None:
        self.otlp = config or OtlpConfig()
        c = self.otlp
        super().__init__(StatsdConfig(c.host, c.port, c.prefix, c.max_metrics, c.max_fields, c.max_keys))
        self._units: dict[str, Type] = {}
        self._labels: dict[str, str] = {}
        self._previous: dict[tuple, object] = {}  # cumulative series: last point
        self._thread: threading.Thread | None = None
        self._http = None

    # -- decoding ---------------------------------------------------------------------------

    def ingest_request(self, body: bytes, content_type: str, content_encoding: str = "") -> Decoded:
        """Decode and accumulate one export request; ValueError (a reason) if undecodable."""
        try:
            request = decode_request(body, content_type, content_encoding)
        except ValueError as exc:
            with self._lock:
                self._drop("http", str(exc))
            raise
        with self._lock:
            got = self._tally(self._request_points(request))
        self.received += got.accepted
        return got

    def _tally(self, verdicts) -> Decoded:
        """Count a request's verdicts, one per point (None: accepted, else the reason it was
        dropped), as they are made (the lock held)."""
        accepted = rejected = 0
        reasons: list[str] = []
        for reason in verdicts:
            if reason:
                rejected += 1
                reasons.append(reason)
                self._drop("http", reason)
            else:
                accepted += 1
        self._accepted["http"] += accepted
        return Decoded(accepted, rejected, reasons)

    def _request_points(self, request):
        """Accumulate the points of an export request; yields None or a drop reason per point."""
        for rm in request.resource_metrics:
            base: dict[str, str] = {}
            bad_resource = _tags(rm.resource.attributes, base)
            for sm in rm.scope_metrics:
                for mt in sm.metrics:
                    yield from self._metric_points(mt, base, bad_resource)

    def _metric_points(self, mt, base: dict[str, str], bad_resource: str | None):
        """Accumulate the points of one OTel metric; yields None or a drop reason per point."""
        which = mt.WhichOneof("data")
        points = getattr(mt, which).data_points if which else ()
        if not which or which == "summary":
            for _ in points or (None,):
                yield "unsupported"
            return
        stat = sanitize(mt.name.strip()) if mt.name.strip() else ""
        if not stat or len(stat) > MAX_NAME:
            for _ in points or (None,):
                yield "name"
            return
        if which == "sum" and mt.sum.is_monotonic:
            kind = "c"
        elif which in ("sum", "gauge"):
            kind = "g"
        else:
            kind = "h"
            self._units.setdefault(stat, _UNITS.get(mt.unit, NUMBER))
        self._labels.setdefault(stat, (mt.description or mt.name)[:200])
        cumulative = which != "gauge" and getattr(mt, which).aggregation_temporality == _CUMULATIVE
        for dp in points:
            tags = dict(base)
            reason = bad_resource or _tags(dp.attributes, tags)
            if reason:
                yield reason
                continue
            tagtuple = tuple(sorted(tags.items()))
            try:
                if which in ("sum", "gauge"):
                    yield self._number(stat, kind, tagtuple, dp, cumulative)
                elif which == "histogram":
                    yield self._explicit(stat, tagtuple, dp, cumulative)
                else:
                    yield self._exponential(stat, tagtuple, dp, cumulative)
            except (ValueError, OverflowError):
                yield "value"

    def _delta(self, key: tuple, start: int, current: dict, cumulative: bool) -> dict:
        """The increase of ``current`` ({bucket: count} or {None: value}) since the previous
        point of a cumulative series (everything on a first point or a reset)."""
        if not cumulative:
            return current
        prev = self._previous.get(key)
        self._previous[key] = (start, current)
        if prev is None or prev[0] != start:
            return current
        before = prev[1]
        delta = {k: v - before.get(k, 0.0) for k, v in current.items()}
        if any(v < 0 for v in delta.values()):  # a reset that kept its start time
            return current
        return delta

    def _number(self, stat: str, kind: str, tags: tuple, dp, cumulative: bool) -> str | None:
        x = float(dp.as_double if dp.WhichOneof("value") == "as_double" else dp.as_int)
        if not math.isfinite(x):
            return "value"
        if kind == "c":
            x = self._delta((stat, tags), dp.start_time_unix_nano, {None: x}, cumulative)[None]
        return self._add(Event(stat, kind, (x,), 1.0, tags))

    def _weighted(self, stat: str, tags: tuple, counts: dict[float, float]) -> str | None:
        reason = self._add(Event(stat, "h", (), 1.0, tags))  # registers the name and tags
        if reason:
            return reason
        for value, n in counts.items():
            if n > 0:
                self._add(Event(stat, "h", (value,), 1.0, tags), weight=n)
        return None

    def _explicit(self, stat: str, tags: tuple, dp, cumulative: bool) -> str | None:
        bounds = list(dp.explicit_bounds)
        if len(dp.bucket_counts) not in (0, len(bounds) + 1):
            return "value"
        current: dict = {}
        for i, n in enumerate(dp.bucket_counts):
            if n:
                at = bounds[i] if i < len(bounds) else (bounds[-1] if bounds else 0.0)
                if not math.isfinite(at):
                    return "value"
                at = max(at, 0.0)
                current[at] = current.get(at, 0.0) + float(n)
        return self._weighted(stat, tags, self._delta((stat, tags), dp.start_time_unix_nano,
                                                       current, cumulative))

    def _exponential(self, stat: str, tags: tuple, dp, cumulative: bool) -> str | None:
        """One exponential histogram point, merged as one ready histogram (exact)."""
        if not -4 <= dp.scale <= 20:
            return "scale"
        key = (stat, tags) if cumulative else None
        return self._histogram_point(stat, tags, exponential_histogram(dp), key, dp.start_time_unix_nano)

    def _histogram_point(self, stat: str, tags: tuple, h: Histogram, key: tuple | None = None,
                         start: object = None, first_whole: bool = True) -> str | None:
        """Accumulate one histogram point (the lock held) as one ready histogram; the drop
        reason if it is refused. A point of a cumulative series (``key`` names the series)
        counts as its increase since the series' previous point, in bucket space at the
        coarser schema of the two (:func:`histogram_delta`: exact, as indices downscale by
        a shift; the SDKs and Prometheus lower the schema as the range grows). It counts
        whole after a reset or when its ``start`` differs from the previous point's (a new
        series), and so does a series' first point when ``first_whole`` (OTLP: it tells
        its start); otherwise a first point only makes the series known (its increase is
        not: scrape, remote write). Shared by OTLP's exponential histograms and the
        native histograms of scrape and remote write. ``h`` is kept: the caller must not
        change it afterwards."""
        if key is not None:
            prev = self._previous.get(key)
            self._previous[key] = (start, h)
            if prev is None and not first_whole:
                return self._add(Event(stat, "h", (), 1.0, tags))  # registers the name and tags
            delta = histogram_delta(h, prev[1]) if prev is not None and prev[0] == start else None
            h = delta if delta is not None else h.copy()  # the kept one must stay as it is
        return self._add(Event(stat, "h", (), 1.0, tags), hist=h)  # registers the name and tags too

    def _register(self, stat: str, kind: str, tags: tuple) -> None:
        """Make a series known (discovery) without a value (the lock held): a cumulative
        series' first point, whose increase is not known yet."""
        if kind == "h":
            reason = self._add(Event(stat, "h", (), 1.0, tags))
        else:
            reason = self._add(Event(stat, kind, (0.0,), 1.0, tags))
        if reason:
            self._drop("http", reason)

    def _metric(self, stat: str, kind: str, keys) -> Metric:
        prefix = self.config.prefix
        label = f"OpenTelemetry {self._labels.get(stat, stat)}"
        fields = [Field(k, DISCRETE, f"attribute {k}") for k in keys]
        if kind == "c":
            return metric(prefix, stat, label, NUMBER, INTERVAL, *fields)
        if kind == "g":
            return metric(prefix, stat, label, NUMBER, POINT, *fields)
        unit = self._units.get(stat, NUMBER)
        return metric(prefix, stat, f"{label}: observations", NUMBER, INTERVAL, *fields,
                      Field("value", NUMERIC, "value", unit))

    # -- listening --------------------------------------------------------------------------

    async def start(self) -> None:
        """Serve ``POST /v1/metrics`` on ``host:port`` from a thread of its own (port 0: any
        free one, see :attr:`addresses`); returns once it listens."""
        await self._listen(receiver_app(self), "OTLP receiver")

    async def _listen(self, app, what: str) -> None:
        """Serve the ASGI ``app`` on ``host:port`` of the config from a uvicorn thread of its
        own, so that decoding never holds up the agent's loop (``what`` names it in the
        thread and errors); returns once it listens."""
        import socket

        import uvicorn

        sock = socket.socket(socket.AF_INET6 if ":" in self.otlp.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.otlp.host, self.otlp.port))
        self.addresses = [sock.getsockname()[:2]]
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        self._http = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._http.run, kwargs={"sockets": [sock]},
                                        name=what.lower().replace(" ", "-"), daemon=True)
        self._thread.start()
        while not self._http.started and self._thread.is_alive():
            await asyncio.sleep(0.02)
        if not self._http.started:
            raise OSError(f"{what} could not start on {self.otlp.host}:{self.otlp.port}")
        self._janitor = asyncio.get_running_loop().create_task(self._forget_unread())

    def close(self) -> None:
        if self._janitor is not None:
            self._janitor.cancel()
            self._janitor = None
        if self._http is not None:
            self._http.should_exit = True
            if self._thread is not None:
                self._thread.join(5)
            self._http = None


def receiver_app(source: OtlpSource):
    """The ASGI app of the receiver: ``POST /v1/metrics`` into ``source``."""
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    async def export(request: Request) -> Response:
        size = int(request.headers.get("content-length") or 0)
        if size > MAX_BODY:
            with source._lock:
                source._drop("http", "too_large")
            return JSONResponse({"code": 3, "message": "body too large"}, status_code=413)
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY:
                with source._lock:
                    source._drop("http", "too_large")
                return JSONResponse({"code": 3, "message": "body too large"}, status_code=413)
        ctype = request.headers.get("content-type", "")
        try:
            got = source.ingest_request(body, ctype, request.headers.get("content-encoding", ""))
        except ValueError as exc:
            status = 415 if str(exc) in ("content_type", "content_encoding") else 400
            return JSONResponse({"code": 3, "message": f"bad request: {exc}"}, status_code=status)
        answer = ExportMetricsServiceResponse()
        if got.rejected:
            answer.partial_success.rejected_data_points = got.rejected
            answer.partial_success.error_message = "dropped: " + ", ".join(sorted(set(got.reasons)))
        if ctype.startswith("application/json"):
            from google.protobuf import json_format

            return Response(json_format.MessageToJson(answer), media_type="application/json")
        return Response(answer.SerializeToString(), media_type="application/x-protobuf")

    return Starlette(routes=[Route("/v1/metrics", export, methods=["POST"])])
