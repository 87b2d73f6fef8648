"""The agent loop: tick on wall-clock seconds, collect, evaluate, publish one batch.

Each tick at wall-clock second ``s`` measures the interval ``[s-1, s)`` and is
published as a :class:`~fleetscope.bus.messages.Batch` with ``time = s - 1``.
A source or instrumentation that fails becomes a warning on the instrumentation;
the agent never stops for it. Neither does one that is too costly: each has a CPU
budget per tick (:mod:`fleetscope.agent.budget`) and is paused on this host past
it, and a breakdown sends at most :data:`~fleetscope.model.values.AGENT_TOP_K`
keys (the rest folded into ``(other)`` with the total exact), each with a warning.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import socket
import time
from collections.abc import Callable, Sequence

import msgspec

from fleetscope import __version__
from fleetscope.agent.budget import DEFAULT_BUDGET, Budgets
from fleetscope.agent.evaluate import OverBudget, plan_for
from fleetscope.agent.outbox import DEFAULT_MAX_BYTES, DEFAULT_REPLAY_AFTER, Outbox
from fleetscope.bus import messages as m
from fleetscope.bus.base import Bus, BusUnavailable, MessageTooLarge, Msg
from fleetscope.model import predicate as predicates
from fleetscope.model import values
from fleetscope.model.errors import InputError
from fleetscope.model.instrumentation import Instrumentation
from fleetscope.model.metrics import Catalog, with_labels
from fleetscope.sources.base import Rows, Source

log = logging.getLogger(__name__)

STATUS_EVERY = 5.0  # seconds between status messages
# Ask for the whole list again now and then: heals any message missed in a race with the
# control plane learning of this host.
RESYNC_EVERY = 30.0
HOSTNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,252}")


class Agent:
    """Runs instrumentations over local sources and publishes their partial values."""

    def __init__(
        self,
        bus: Bus,
        sources: Sequence[Source],
        hostname: str | None = None,
        labels: dict[str, str] | None = None,
        collect_in_thread: bool = False,
        buffer_bytes: int = DEFAULT_MAX_BYTES,
        budget: float = DEFAULT_BUDGET,
    ) -> None:
        """``budget``: seconds of CPU each instrumentation may use per tick."""
        self.bus = bus
        self.sources = list(sources)
        self.hostname = hostname or socket.gethostname()
        if not HOSTNAME.fullmatch(self.hostname):
            raise InputError("hostname", f"{self.hostname!r} is not a host name "
                             "(letters, digits, '.', '-', '_')")
        self.labels = dict(labels or {})
        self.collect_in_thread = collect_in_thread
        # Dynamic sources (StatsD, cgroups, libvirt) bump a `generation` when their metrics change
        # (sources/base.py). Read before the metrics: a change in between is then seen at the
        # first tick, not lost.
        self._generations = {id(s): getattr(s, "generation", None) for s in self.sources}
        fields = {f.name for s in self.sources for mt in s.metrics() for f in mt.fields}
        for key in self.labels:
            if key in fields:
                raise InputError("label", f"{key!r} is already a field of a metric; choose another name")
        self.catalog = Catalog(with_labels(mt, self.labels) for s in self.sources for mt in s.metrics())
        self._source_of = {mt.name: s for s in self.sources for mt in s.metrics()}
        self.instrumentations: dict[int, Instrumentation] = {}
        self.warnings: dict[int, str] = {}
        self._oversized_ids: set[int] = set()  # instrumentations whose value was ever too large
        self._folded_ids: set[int] = set()  # instrumentations whose breakdown was ever folded
        self.budgets = Budgets(budget)
        self._plans: dict = {}
        self._constants = {"hostname": self.hostname, **self.labels}
        self._stopping = asyncio.Event()
        self.outbox = Outbox(buffer_bytes)
        self._bus_down = False
        self.ticks = 0
        self.on_tick: Callable[[float], None] | None = None  # told each tick's duration (seconds)

    # -- control ----------------------------------------------------------------------------

    def applies(self, inst: Instrumentation) -> bool:
        """Whether ``inst`` can match anything on this host (its metric exists here and its
        predicate does not fold to false given this host's name and labels)."""
        return inst.metric in self.catalog and predicates.may_match(inst.predicate, self._constants)

    def enable(self, inst: Instrumentation) -> None:
        if self.applies(inst):
            self.instrumentations[inst.id] = inst
        else:
            self.disable(inst.id)

    def disable(self, inst_id: int) -> None:
        self.instrumentations.pop(inst_id, None)
        self.warnings.pop(inst_id, None)
        self.budgets.forget(inst_id)
        self._plans = {k: v for k, v in self._plans.items() if k[0] != inst_id}

    async def _on_enable(self, msg: Msg) -> None:
        try:
            body = m.decode(msg.data, m.InstrumentationMsg)
            self.enable(Instrumentation.from_json(body.instrumentation))
        except (InputError, KeyError, TypeError) as exc:
            log.warning("dropped a bad enable message: %s", exc)

    async def _on_ack(self, msg: Msg) -> None:
        try:
            self.outbox.ack(m.decode(msg.data, m.Ack).batches)
        except InputError as exc:
            log.warning("dropped a bad acknowledgement: %s", exc)

    async def _on_disable(self, msg: Msg) -> None:
        try:
            self.disable(m.decode(msg.data, m.DisableMsg).id)
        except InputError as exc:
            log.warning("dropped a bad disable message: %s", exc)

    async def sync(self, timeout: float = 2.0) -> bool:
        """Ask the control plane for every instrumentation; True when it answered."""
        try:
            answers = await m.request_pages(self.bus, m.CTL_LIST, m.ListRequest(self.hostname, self.labels),
                                            m.InstrumentationList, "after", timeout)
        except (TimeoutError, InputError) as exc:
            if isinstance(exc, InputError):
                log.warning("dropped a bad instrumentation list: %s", exc)
            return False
        wanted = {}
        for obj in (o for a in answers for o in a.instrumentations):
            inst = Instrumentation.from_json(obj)
            if self.applies(inst):
                wanted[inst.id] = inst
        for inst_id in set(self.instrumentations) - set(wanted):
            self.disable(inst_id)
        for inst in wanted.values():
            self.enable(inst)
        return True

    # -- ticks ------------------------------------------------------------------------------

    def tick(self, now: float) -> m.Batch:
        """Collect and evaluate every enabled instrumentation at wall-clock ``now``; those paused
        for their cost send nothing until their back-off ends."""
        second = int(now)
        started = time.perf_counter()
        for source in self.sources:
            source.begin_tick(now)
        by_metric: dict[str, list[Instrumentation]] = {}
        for inst in list(self.instrumentations.values()):
            if not self.budgets.paused(inst.id, now):
                by_metric.setdefault(inst.metric, []).append(inst)
        partials = []
        for metric, insts in by_metric.items():
            read = time.thread_time()
            try:
                rows: Rows | Exception = self._source_of[metric].collect(metric)
            except Exception as exc:  # a failing source is a warning, never a crash
                rows = exc
            share = (time.thread_time() - read) / len(insts)  # each pays its part of the read
            for inst in insts:
                partial = self._evaluate(inst, rows, share, now)
                if partial is not None:
                    partials.append(partial)
        self.ticks += 1
        if self.on_tick is not None:
            self.on_tick(time.perf_counter() - started)
        return m.Batch(self.hostname, second - 1, time.time(), partials)

    def _evaluate(self, inst: Instrumentation, rows: Rows | Exception, share: float,
                  now: float) -> m.Partial | None:
        """One instrumentation's partial of this tick, or None when it went over its budget
        before it had a value. ``share``: the CPU seconds of its part of reading ``rows``."""
        if isinstance(rows, Exception):
            self._warn(inst.id, f"{inst.metric}: source failed: {rows}")
            return self._empty(inst)
        started = time.thread_time()
        try:
            plan = plan_for(inst, rows, self._constants, self._plans)
            value = plan.evaluate(rows.rows, rows.weighted, started + self.budgets.limit - share)
            value, note = self._bounded(inst, value)
            encoded = values.encode(value, inst.shape)
        except OverBudget:
            self._over_budget(inst, share + time.thread_time() - started, now, stopped=True)
            return None
        except Exception as exc:
            self._warn(inst.id, f"{inst.metric}: {type(exc).__name__}: {exc}")
            return self._empty(inst)
        cost = share + time.thread_time() - started
        if cost > self.budgets.limit:  # measured, so sent; paused from the next tick
            self._over_budget(inst, cost, now, stopped=False)
            return m.Partial(inst.id, encoded, self.warnings[inst.id])
        self.budgets.kept(inst.id)
        if rows.warning:  # the source skipped something: the value stands, with the reason
            note = rows.warning if note is None else f"{rows.warning}; {note}"
            self._warn(inst.id, note)
            return m.Partial(inst.id, encoded, note)
        if note is None:
            self.warnings.pop(inst.id, None)
            return m.Partial(inst.id, encoded)
        self._warn(inst.id, note, logged=inst.id in self._folded_ids)
        self._folded_ids.add(inst.id)
        return m.Partial(inst.id, encoded, note)

    def _bounded(self, inst: Instrumentation, value: values.Value) -> tuple[values.Value, str | None]:
        """``value`` with at most AGENT_TOP_K keys, and the warning when some were folded."""
        if inst.shape not in (values.DISCRETE, values.DISCRETE_HISTOGRAM) or len(value) <= values.AGENT_TOP_K:
            return value, None
        note = (f"broken down by {len(value)} values of {inst.discrete!r} in one tick: the top "
                f"{values.AGENT_TOP_K} sent, the rest folded into {values.OTHER!r} (totals exact)")
        return values.fold_top_k(value, values.AGENT_TOP_K, inst.shape), note

    def _over_budget(self, inst: Instrumentation, cost: float, now: float, stopped: bool) -> None:
        text = self.budgets.exceeded(inst.id, cost, now, stopped)
        log.warning("%s", text)  # once per pause; the text names the instrumentation
        self._warn(inst.id, text, logged=True)

    def _empty(self, inst: Instrumentation) -> m.Partial:
        """An empty value carrying the instrumentation's warning."""
        return m.Partial(inst.id, values.encode(values.empty(inst.shape), inst.shape), self.warnings[inst.id])

    def refresh_catalog(self) -> bool:
        """Add the metrics dynamic sources learnt since the last call (a StatsD name, the first
        container, a libvirt daemon started); True if any changed."""
        changed = False
        for source in self.sources:
            generation = getattr(source, "generation", None)
            if generation is None or generation == self._generations.get(id(source)):
                continue
            self._generations[id(source)] = generation
            for mt in source.metrics():
                self.catalog.add(with_labels(mt, self.labels))
                self._source_of[mt.name] = source
            changed = True
        return changed

    async def _publish_catalog(self) -> None:
        """Tell the control plane of new metrics, then ask again for the instrumentations
        (some may use a metric this host did not know before)."""
        await self.publish_status(with_metrics=True)
        if not self._bus_down:
            with contextlib.suppress(BusUnavailable):
                await self.sync()

    def _oversized(self, partial: m.Partial, size: int) -> m.Partial:
        """An empty value with a warning, in place of one too large for the bus."""
        inst = self.instrumentations.get(partial.id)
        # Logged once per instrumentation: the tick clears warnings of values it could evaluate.
        self._warn(partial.id, f"value of {size} bytes is over the bus's {self.bus.max_payload} byte "
                   "message limit: not sent (narrow the decomposition or raise max_payload in NATS)",
                   logged=partial.id in self._oversized_ids)
        self._oversized_ids.add(partial.id)
        value = values.encode(values.empty(inst.shape), inst.shape) if inst else None
        self.outbox.oversized += 1
        return m.Partial(partial.id, value, self.warnings[partial.id])

    def _warn(self, inst_id: int, text: str, logged: bool = False) -> None:
        if self.warnings.get(inst_id) != text and not logged:
            log.warning("instrumentation %s: %s", inst_id, text)
        self.warnings[inst_id] = text

    async def publish_status(self, with_metrics: bool = False) -> None:
        """Tell the control plane how this agent is; with its metric catalogue, in as many
        messages as the bus's size limit needs (the control plane adds each part)."""
        status = self.status()
        if with_metrics:
            metrics = [mt.to_json() for mt in self.catalog]
            limit = self.bus.max_payload - len(m.encode(status))
            while metrics:
                part, consumed = m.page(metrics, limit)
                await self._publish(m.status_subject(self.hostname),
                                    m.encode(msgspec.structs.replace(status, metrics=part)))
                metrics = metrics[consumed:]
        else:
            await self._publish(m.status_subject(self.hostname), m.encode(status))

    async def _publish(self, subject: str, data: bytes) -> None:
        with contextlib.suppress(BusUnavailable, MessageTooLarge):  # status is sent again soon
            await self.bus.publish(subject, data)

    def status(self) -> m.AgentStatus:
        return m.AgentStatus(
            host=self.hostname,
            version=__version__,
            time=time.time(),
            running=sorted(self.instrumentations),
            warnings={str(k): v for k, v in self.warnings.items()},
            labels=self.labels,
            buffer=self.outbox.stats(),
        )

    async def run(self) -> None:
        """Connect, learn the instrumentations, then tick once a second until :meth:`stop`."""
        for source in self.sources:
            start = getattr(source, "start", None)  # sources that listen (StatsD)
            if start is not None:
                try:
                    await start()
                except Exception as exc:  # a source that cannot listen never stops the agent
                    log.error("source %s could not start: %s", getattr(source, "name", source), exc)
        await self.bus.connect()
        await self.bus.subscribe(m.agent_subject(self.hostname), self._on_enable)
        await self.bus.subscribe(m.CTL_DISABLE, self._on_disable)
        await self.bus.subscribe(m.ack_subject(self.hostname), self._on_ack)
        while not await self.sync() and not self._stopping.is_set():
            log.info("waiting for the control plane")
            await asyncio.sleep(0.5)
        await self.publish_status(with_metrics=True)
        last_status = last_sync = time.monotonic()
        reported = set(self.instrumentations)
        while not self._stopping.is_set():
            now = time.time()
            # Tick just after each wall-clock second so every host measures the same slot.
            target = math.floor(now) + 1 + 0.005
            with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), target - now)
            if self._stopping.is_set():
                break
            if self.refresh_catalog():
                await self._publish_catalog()
            if self.instrumentations:
                if self.collect_in_thread:
                    batch = await asyncio.to_thread(self.tick, time.time())
                else:
                    batch = self.tick(time.time())
                for part, payload in enumerate(m.encode_batch(batch, self.bus.max_payload, self._oversized)):
                    self.outbox.put(m.data_subject(self.hostname), payload, batch.time, part)
            await self._send()
            # Now and then, and at once when what runs here changed (the hosts list shows it).
            if time.monotonic() - last_status >= STATUS_EVERY or reported != self.instrumentations.keys():
                await self.publish_status()
                last_status = time.monotonic()
                reported = set(self.instrumentations)
            if time.monotonic() - last_sync >= RESYNC_EVERY and not self._bus_down:
                await self.sync()
                last_sync = time.monotonic()

    def replay_after(self) -> float:
        """Seconds to wait for an acknowledgement before sending a batch again: an aggregator
        acknowledges once the longest slot the batch feeds is final."""
        return DEFAULT_REPLAY_AFTER + max((i.granularity for i in self.instrumentations.values()), default=1)

    async def _send(self) -> None:
        """Send what waits in the outbox (and again what no aggregator acknowledged in time);
        after an outage, learn what changed meanwhile."""
        now = time.time()
        self.outbox.replay_due(now)
        if not await self.outbox.flush(self.bus, now, self.replay_after()):
            if not self._bus_down:
                log.warning("bus unavailable: buffering batches (%d bytes max)", self.outbox.max_bytes)
                self.outbox.replay_due(now, everything=True)  # what was sent lately may be lost
            self._bus_down = True
            return
        if self._bus_down:
            self._bus_down = False
            log.info("bus back: %d batches sent, waiting for acknowledgement; %d acknowledged so far, "
                     "%d dropped", self.outbox.stats()["unacked"], self.outbox.acked, self.outbox.dropped)
            await self.sync()
            await self.publish_status(with_metrics=True)

    def stop(self) -> None:
        self._stopping.set()

    def close(self) -> None:
        """Release the sources' open files; call after :meth:`run` returned."""
        for source in self.sources:
            source.close()

