"""StatsD in: a UDP and TCP listener feeding a per-tick accumulator, as a source.

Each StatsD name becomes a metric ``<prefix>.<name>`` (prefix ``app`` by default)
whose discrete fields are its tag keys (in order of first appearance; a row
without a tag has ``""`` for it):

* counter (``c``): interval metric, the sum of the values (each divided by its
  sample rate) per second;
* gauge (``g``): point metric, the last value (signed values add to it), kept
  from tick to tick as StatsD does;
* timer, histogram, distribution (``ms``, ``h``, ``d``): interval metric
  counting events per second, with the numeric field ``value`` (milliseconds for
  timers, plain numbers otherwise) so it decomposes into a heatmap;
* set (``s``): point metric, the number of distinct values seen in the tick.

Events are aggregated as they arrive, never stored one by one: a counter is one
float per tag set, a timer one ``{value: weight}`` dict per tag set. Timer rows
are *weighted* (:attr:`Rows.weighted`): one row per distinct value, its measure
the number of events (divided by the sample rate) with that value, which the
agent records into the histogram as that many observations. The sources built on
this accumulator (OTLP, scraping) add ready histograms too: they are merged into
one histogram per tag set and reach the agent as one weighted row holding it.

Cardinality is bounded: at most ``max_metrics`` names, ``max_fields`` tag keys
per name and ``max_keys`` distinct values per tag key. Events beyond a cap, of a
name already used with another type, and bad lines are dropped and counted per
reason in ``fleetscope.statsd_dropped`` (and :attr:`StatsdSource.dropped`); what is
accepted is counted in ``fleetscope.statsd_received`` (lines per second, by
protocol), so a load test can read what the agent absorbed through its own API.

A tick normally spans one second; when the agent ticked late (more than 1.5 s
since the previous tick) rates are divided by the real elapsed time. When no
tick comes for 3 s (no instrumentation uses StatsD) the accumulator is emptied
so memory stays bounded; new names still reach the catalogue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections import Counter
from typing import NamedTuple

from fleetscope.model.errors import InputError
from fleetscope.model.histogram import Histogram
from fleetscope.model.metrics import DISCRETE, INTERVAL, NUMERIC, POINT, Field, Metric, metric
from fleetscope.model.types import MILLISECONDS, NUMBER
from fleetscope.sources.base import Rows
from fleetscope.sources.statsd_parse import COUNTER, GAUGE, SET, TIMER, Event, parse_packet, sanitize

log = logging.getLogger(__name__)

DROPPED = "fleetscope.statsd_dropped"
_STALE = 3.0  # seconds without a tick after which the accumulator is emptied


class StatsdConfig(NamedTuple):
    """Where to listen and how much to accept."""

    host: str = "127.0.0.1"
    port: int = 8125
    prefix: str = "app"
    max_metrics: int = 1000
    max_fields: int = 16
    max_keys: int = 1000


def parse_address(text: str, field: str = "statsd", default_host: str = "127.0.0.1") -> tuple[str, int]:
    """``[HOST:]PORT`` as ``(host, port)``; :class:`InputError` naming ``field`` if it is not."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host = default_host
    host = host.strip("[]") or default_host
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise InputError(field, f"{text!r} is not [HOST:]PORT with a port in 1-65535")
    return host, int(port)


class _Meta:
    """What the source knows of one StatsD name."""

    __slots__ = ("accepted", "keys", "metric", "seen", "type")

    def __init__(self, type_: str, metric_: Metric) -> None:
        self.type = type_
        self.metric = metric_
        self.keys: list[str] = []  # tag keys, in order of first appearance
        self.seen: dict[str, set[str]] = {}  # distinct values per tag key
        self.accepted: set[tuple] = set()  # tag sets already checked against the caps


def _family(kind: str) -> str:
    return TIMER if kind in ("ms", "h", "d") else kind


class StatsdSource:
    """A source of the metrics applications send over StatsD."""

    name = "statsd"
    drop_stat = "statsd_dropped"  # fleetscope.<drop_stat>: drops by protocol and reason
    received_stat: str | None = "statsd_received"  # fleetscope.<received_stat>: accepted, by protocol
    received_label = "StatsD lines accepted"

    def __init__(self, config: StatsdConfig | None = None) -> None:
        self.config = config or StatsdConfig()
        if sanitize(self.config.prefix) != self.config.prefix or not self.config.prefix:
            raise InputError("statsd-prefix", f"{self.config.prefix!r} is not a plain name")
        self._lock = threading.Lock()
        self._meta: dict[str, _Meta] = {}
        self._acc: dict[str, dict] = {}  # stat -> {tags: accumulator} since the last tick
        self._ready: dict[str, dict] = {}  # the same, for the current tick
        self._gauges: dict[str, dict] = {}  # stat -> {tags: value}, kept across ticks
        self._drops: Counter[tuple[str, str]] = Counter()
        self._ready_drops: Counter[tuple[str, str]] = Counter()
        self._accepted: Counter[str] = Counter()  # per protocol, since the last tick
        self._ready_accepted: Counter[str] = Counter()
        self._factor = 1.0
        self._last_tick: float | None = None
        self._last_tick_mono = time.monotonic()
        self.dropped: Counter[str] = Counter()  # total drops per reason since start
        self.received = 0  # events accepted since start
        self.generation = 0  # bumped whenever metrics() changes
        self._transports: list = []
        self._server: asyncio.base_events.Server | None = None
        self._janitor: asyncio.Task | None = None
        self.addresses: list[tuple[str, int]] = []

    # -- the Source protocol ---------------------------------------------------------------

    def metrics(self) -> list[Metric]:
        dropped = metric("fleetscope", self.drop_stat, f"{self.name} events and lines dropped",
                         NUMBER, INTERVAL, Field("protocol", DISCRETE, "protocol"),
                         Field("reason", DISCRETE, "reason"))
        own = [dropped]
        if self.received_stat:
            own.append(metric("fleetscope", self.received_stat, self.received_label, NUMBER, INTERVAL,
                              Field("protocol", DISCRETE, "protocol")))
        with self._lock:
            return [*own, *(m.metric for m in self._meta.values())]

    def begin_tick(self, now: float) -> None:
        with self._lock:
            self._ready, self._acc = self._acc, {}
            self._ready_drops, self._drops = self._drops, Counter()
            self._ready_accepted, self._accepted = self._accepted, Counter()
            elapsed = now - self._last_tick if self._last_tick is not None else 1.0
            self._factor = 1.0 if elapsed <= 1.5 else 1.0 / elapsed
            self._last_tick = now
            self._last_tick_mono = time.monotonic()

    def collect(self, name: str) -> Rows:
        if name == f"fleetscope.{self.drop_stat}":
            f = self._factor
            return Rows(("protocol", "reason"), [(p, r, n * f) for (p, r), n in self._ready_drops.items()])
        if self.received_stat and name == f"fleetscope.{self.received_stat}":
            return Rows(("protocol",), [(p, n * self._factor) for p, n in self._ready_accepted.items()])
        stat = name[len(self.config.prefix) + 1:]
        with self._lock:
            meta = self._meta.get(stat)
            if meta is None:
                raise OSError(f"no StatsD metric {name!r}")
            keys = tuple(meta.keys)
            data = self._gauges.get(stat, {}) if meta.type == GAUGE else self._ready.get(stat, {})
            data = dict(data)
        f = self._factor
        rows: list[tuple] = []
        for tags, acc in data.items():
            d = dict(tags)
            head = tuple(d.get(k, "") for k in keys)
            if meta.type == COUNTER:
                rows.append((*head, acc * f))
            elif meta.type == GAUGE:
                rows.append((*head, acc))
            elif meta.type == SET:
                rows.append((*head, float(len(acc))))
            else:
                for value, weight in acc.items():
                    if value is None:  # a ready histogram (OTLP, scraped native histograms)
                        rows.append((*head, weight if f == 1.0 else weight.scale(f), weight.count * f))
                    else:
                        rows.append((*head, value, weight * f))
        if meta.type == TIMER:
            return Rows((*keys, "value"), rows, True)
        return Rows(keys, rows)

    def close(self) -> None:
        for transport in self._transports:
            transport.close()
        self._transports.clear()
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._janitor is not None:
            self._janitor.cancel()
            self._janitor = None

    # -- ingestion --------------------------------------------------------------------------

    def ingest(self, data: bytes, protocol: str = "udp") -> None:
        """Parse and accumulate one datagram or a chunk of complete lines."""
        events, bad = parse_packet(data)
        with self._lock:
            for reason in bad:
                self._drop(protocol, reason)
            accepted = 0
            for event in events:
                reason = self._add(event)
                if reason:
                    self._drop(protocol, reason)
                else:
                    accepted += 1
            self.received += accepted
            self._accepted[protocol] += accepted

    def _drop(self, protocol: str, reason: str) -> None:
        self._drops[(protocol, reason)] += 1
        self.dropped[reason] += 1

    def _add(self, ev: Event, weight: float | None = None, hist: Histogram | None = None) -> str | None:
        """Accumulate ``ev`` (the lock held); the drop reason if it is refused. ``weight``
        (timers only) overrides ``1 / ev.rate`` as the number of events per value; ``hist``
        (timers only) is a ready histogram of observations, merged whole (and taken over:
        the caller must not change it afterwards)."""
        family = _family(ev.type)
        meta = self._meta.get(ev.name)
        if meta is None:
            if len(self._meta) >= self.config.max_metrics:
                return "too_many_metrics"
            meta = self._meta[ev.name] = _Meta(family, self._metric(ev.name, ev.type, ()))
            self.generation += 1
        elif meta.type != family:
            return "type_conflict"
        if ev.tags and ev.tags not in meta.accepted:
            new = [k for k, _ in ev.tags if k not in meta.seen]
            if new and len(meta.keys) + len(new) > self.config.max_fields:
                return "too_many_tags"
            for k, v in ev.tags:
                seen = meta.seen.get(k)
                if seen is not None and v not in seen and len(seen) >= self.config.max_keys:
                    return "too_many_keys"
            if new:
                for k in new:
                    meta.keys.append(k)
                    meta.seen[k] = set()
                meta.metric = self._metric(ev.name, ev.type, meta.keys)
                self.generation += 1
            for k, v in ev.tags:
                meta.seen[k].add(v)
            if len(meta.accepted) >= 10000:
                meta.accepted.clear()
            meta.accepted.add(ev.tags)
        if family == GAUGE:
            gauges = self._gauges.setdefault(ev.name, {})
            x = ev.values[0]
            gauges[ev.tags] = gauges.get(ev.tags, 0.0) + x if ev.delta else x
            return None
        slot = self._acc.setdefault(ev.name, {})
        if family == COUNTER:
            slot[ev.tags] = slot.get(ev.tags, 0.0) + sum(ev.values) / ev.rate
        elif family == SET:
            slot.setdefault(ev.tags, set()).update(ev.values)
        else:
            acc = slot.get(ev.tags)
            if acc is None:
                acc = slot[ev.tags] = {}
            w = 1.0 / ev.rate if weight is None else weight
            for x in ev.values:
                acc[x] = acc.get(x, 0.0) + w
            if hist is not None and hist.count > 0:
                # Kept under the key None, beside the {value: weight} of single values.
                ready = acc.get(None)
                acc[None] = hist if ready is None else ready.merge(hist)
        return None

    def _metric(self, stat: str, kind: str, keys) -> Metric:
        prefix = self.config.prefix
        fields = [Field(k, DISCRETE, f"tag {k}") for k in keys]
        family = _family(kind)
        if family == COUNTER:
            return metric(prefix, stat, f"StatsD counter {stat}", NUMBER, INTERVAL, *fields)
        if family == GAUGE:
            return metric(prefix, stat, f"StatsD gauge {stat}", NUMBER, POINT, *fields)
        if family == SET:
            return metric(prefix, stat, f"StatsD set {stat}: distinct values", NUMBER, POINT, *fields)
        unit = MILLISECONDS if kind == "ms" else NUMBER
        return metric(prefix, stat, f"StatsD {'timer' if kind == 'ms' else 'histogram'} {stat}: events",
                      NUMBER, INTERVAL, *fields, Field("value", NUMERIC, "value", unit))

    # -- listening --------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen on UDP and TCP ``host:port`` (port 0: any free one, see :attr:`addresses`)."""
        loop = asyncio.get_running_loop()
        host, port = self.config.host, self.config.port
        server = await asyncio.start_server(self._serve_tcp, host, port, limit=1 << 20)
        self._server = server
        bound = server.sockets[0].getsockname()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Datagrams(self), local_addr=(host, bound[1]))
        self._transports.append(transport)
        sock = transport.get_extra_info("socket")
        with contextlib.suppress(OSError):  # bursts: a larger buffer (the kernel caps it at rmem_max)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.addresses = [bound[:2]]
        self._janitor = loop.create_task(self._forget_unread())

    async def _forget_unread(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            if time.monotonic() - self._last_tick_mono > _STALE:
                with self._lock:
                    self._acc = {}
                    self._drops = Counter()
                    self._accepted = Counter()

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        pending = b""
        try:
            while chunk := await reader.read(65536):
                pending += chunk
                cut = pending.rfind(b"\n")
                if cut >= 0:
                    self.ingest(pending[:cut], "tcp")
                    pending = pending[cut + 1:]
                if len(pending) > 8192:  # a line far past MAX_LINE: drop it whole
                    with self._lock:
                        self._drop("tcp", "too_long")
                    pending = b""
                    while (chunk := await reader.read(65536)) and b"\n" not in chunk:
                        pass
                    pending = chunk.partition(b"\n")[2]
            if pending:
                self.ingest(pending, "tcp")
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, source: StatsdSource) -> None:
        self.source = source

    def datagram_received(self, data: bytes, addr) -> None:
        try:
            self.source.ingest(data, "udp")
        except Exception:  # never let one datagram stop the receiver
            log.exception("StatsD datagram failed")
