"""The control plane: instrumentation definitions in the store, announced on the bus.

It answers agents' and aggregators' list requests, broadcasts creates, changes
and deletes, creates the default instrumentations on first start, and deletes
instrumentations nobody has read for ``idle_max`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time

from fleetscope.api import imported, scope
from fleetscope.api.dashboards import validate_dashboard
from fleetscope.bus import messages as m
from fleetscope.bus.base import Bus, BusUnavailable, Msg
from fleetscope.model import predicate as predicates
from fleetscope.model.access import Caller
from fleetscope.model.defaults import (
    GUESTS_DASHBOARD,
    default_specs,
    guests_panels,
    has_guests,
    same_question,
)
from fleetscope.model.errors import InputError, NotFound
from fleetscope.model.instrumentation import (
    DEFAULT_RETENTION,
    Instrumentation,
    validate_spec,
    validate_update,
)
from fleetscope.model.metrics import Catalog, Metric
from fleetscope.store.base import Store

log = logging.getLogger(__name__)

DEFAULTS_KEY = "defaults_created"
GUESTS_KEY = "guests_dashboard_created"
IDLE_CHECK_EVERY = 5.0
CATALOG_KEY = "catalog"  # meta key: the metrics learnt from agents, as JSON
ACCESS_KEY = "last_access:"  # meta key prefix: when an instrumentation was last read
# Agents report their status every few seconds (agent.STATUS_EVERY = 5 s).
ONLINE_WITHIN = 15.0
GONE_AFTER = 60.0


class ControlPlane:
    """Owns the instrumentation definitions of one store and keeps the bus told."""

    def __init__(self, store: Store, bus: Bus, catalog: Catalog) -> None:
        self.store = store
        self.bus = bus
        self.catalog = catalog
        self.hosts: dict[str, tuple[m.AgentStatus, float]] = {}  # host -> (last status, received at)
        self.known_hosts: dict[str, dict[str, str]] = {}  # agents to send instrumentations to
        self.bad_messages = 0
        self._last_access: dict[int, float] = {}
        self._saved_catalog: str | None = None  # the catalogue as last saved in the store (JSON)
        self._task: asyncio.Task | None = None

    # -- definitions ------------------------------------------------------------------------

    def list(self) -> list[Instrumentation]:
        return self.store.list_instrumentations()

    def get(self, inst_id: int) -> Instrumentation:
        inst = self.store.get_instrumentation(inst_id)
        if inst is None:
            raise NotFound("id", f"no instrumentation {inst_id}")
        return inst

    def spec_for(self, body: object, caller: Caller | None = None) -> dict:
        """A create body validated, with ``caller``'s tenant scope and quotas applied (none for
        the operators and the control plane itself)."""
        if caller is None or caller.tenant is None:
            return validate_spec(body, self.catalog)
        longest = caller.tenant.quotas.retention
        if longest is not None and isinstance(body, dict) and "retention" not in body:
            body = {**body, "retention": min(DEFAULT_RETENTION, longest)}  # the default, within quota
        spec = validate_spec(body, self.catalog)
        owned = sum(1 for i in self.list() if i.tenant == caller.tenant.name)
        return scope.scoped_spec(caller, spec, self.catalog.get(spec["module"], spec["stat"]), owned)

    async def create(self, body: object, caller: Caller | None = None) -> Instrumentation:
        spec = self.spec_for(body, caller)
        inst = self.store.create_instrumentation(spec, time.time())
        self._last_access[inst.id] = time.time()
        imported.queue_instrumentation(self.store, inst)  # its answers over imports, made in the background
        await self._announce(inst)
        return inst

    async def update(self, inst_id: int, body: object, caller: Caller | None = None) -> Instrumentation:
        current = self.get(inst_id)
        changes = validate_update(body, current)
        if caller is not None:
            changes = scope.scoped_update(caller, changes)
        inst = current.updated(changes)
        self.store.update_instrumentation(inst)
        await self._announce(inst)
        return inst

    async def delete(self, inst_id: int) -> None:
        if not self.store.delete_instrumentation(inst_id):
            raise NotFound("id", f"no instrumentation {inst_id}")
        self._last_access.pop(inst_id, None)
        await self._tell(m.CTL_DISABLE, m.encode(m.DisableMsg(inst_id)))

    def touch(self, inst_id: int) -> None:
        """Record a read of ``inst_id``: it is in use and must not expire."""
        self._last_access[inst_id] = time.time()

    async def _announce(self, inst: Instrumentation) -> None:
        """Tell the aggregators and API servers, and each known agent that may match it."""
        data = m.encode(m.InstrumentationMsg(inst.to_json()))
        await self._tell(m.CTL_ENABLE, data)
        for host, labels in list(self.known_hosts.items()):
            if self._may_run(inst, host, labels):
                await self._tell(m.agent_subject(host), data)

    async def _tell(self, subject: str, data: bytes) -> None:
        """Publish a change; with the bus away the change is still stored, and agents and
        aggregators learn it when they next ask for the whole list (on reconnect, and every 30 s)."""
        try:
            await self.bus.publish(subject, data)
        except BusUnavailable:
            log.warning("bus unavailable: %s will be learnt at the next resync", subject)

    @staticmethod
    def _may_run(inst: Instrumentation, host: str, labels: dict[str, str]) -> bool:
        return predicates.may_match(inst.predicate, {**labels, "hostname": host})

    async def ensure_defaults(self) -> list[Instrumentation]:
        """Create the default instrumentations once per store (not again if a user deleted them)."""
        if self.store.get_meta(DEFAULTS_KEY):
            return []
        created = [await self.create(spec) for spec in default_specs(self.catalog)]
        self.store.set_meta(DEFAULTS_KEY, str(time.time()))
        await self.ensure_guests()
        return created

    async def ensure_guests(self) -> dict | None:
        """Make the "Guests" dashboard once per store, where the defaults are made here and the
        catalogue says some host has containers or VMs (at first start, or when such a host's
        agent reports later); not again if a user deleted it. Its panels reuse instrumentations
        that ask the same question. Returns the dashboard made, or None."""
        if not self.store.get_meta(DEFAULTS_KEY) or self.store.get_meta(GUESTS_KEY):
            return None
        names = [mt.name for mt in self.catalog]
        if not has_guests(names):
            return None
        existing = self.list()
        panels = []
        for spec, options in guests_panels(set(names)):
            inst = next((i for i in existing if same_question(spec, i.to_json()) and i.tenant is None),
                        None) or await self.create(spec)
            panels.append({"instrumentation": inst.id, "options": options})
        self.store.set_meta(GUESTS_KEY, str(time.time()))
        if any(d["name"] == GUESTS_DASHBOARD for d in self.store.list_dashboards()):
            return None  # a user's own dashboard of that name stays as it is
        doc = validate_dashboard({"name": GUESTS_DASHBOARD, "panels": panels}, lambda _: True)
        return self.store.create_dashboard({**doc, "tenant": None})

    # -- bus --------------------------------------------------------------------------------

    async def _on_list(self, msg: Msg) -> None:
        if not msg.reply:
            return
        try:
            ask = m.decode(msg.data, m.ListRequest)
        except InputError:
            self.bad_messages += 1
            return
        insts = sorted((i for i in self.list() if i.id > ask.after), key=lambda i: i.id)
        if ask.host is not None:  # an agent: only what it may match, and remember it
            self.known_hosts[ask.host] = ask.labels
            insts = [i for i in insts if self._may_run(i, ask.host, ask.labels)]
        sent, consumed = m.page([i.to_json() for i in insts], self.bus.max_payload)
        more = insts[consumed - 1].id if consumed < len(insts) else None
        with contextlib.suppress(BusUnavailable):
            await self.bus.publish(msg.reply, m.encode(m.InstrumentationList(sent, more)))

    async def _on_status(self, msg: Msg) -> None:
        try:
            status = m.decode(msg.data, m.AgentStatus)
        except InputError:
            self.bad_messages += 1
            return
        if msg.subject != m.status_subject(status.host):
            self.bad_messages += 1  # a status for another host: forged, or a misconfigured agent
            return
        self.hosts[status.host] = (status, time.time())
        self.known_hosts[status.host] = status.labels
        if not status.metrics:
            return
        for obj in status.metrics:  # an agent's catalogue: when it starts, and when it grows
            try:
                self.catalog.add(Metric.from_json(obj))
            except InputError:
                self.bad_messages += 1
        # Compared with what was saved, not with the catalogue before: in `serve` the agent
        # shares this catalogue and has added its new metrics to it already.
        saved = json.dumps([mt.to_json() for mt in self.catalog])
        if saved != self._saved_catalog:
            # Shared with API servers that start later, which have no agent of their own.
            self.store.set_meta(CATALOG_KEY, saved)
            self._saved_catalog = saved
            await self.ensure_guests()

    def warnings_of(self, inst_id: int, now: float | None = None) -> dict[str, str]:
        """The warnings the agents that are not gone report for ``inst_id``, by host."""
        now = time.time() if now is None else now
        key = str(inst_id)
        return {host: status.warnings[key] for host, (status, received) in sorted(self.hosts.items())
                if key in status.warnings and now - received < GONE_AFTER}

    def host_list(self, now: float | None = None) -> list[dict]:
        """Every agent heard from: status (online, stale, gone), last report, version, clock offset
        (the agent's clock minus ours, in seconds), its instrumentations and their warnings."""
        now = time.time() if now is None else now
        out = []
        for name, (status, received) in sorted(self.hosts.items()):
            age = now - received
            state = "online" if age < ONLINE_WITHIN else "stale" if age < GONE_AFTER else "gone"
            out.append({
                "hostname": name,
                "status": state,
                "last_report": received,
                "version": status.version,
                "clock_offset": round(status.time - received, 3),
                "labels": status.labels,
                "instrumentations": status.running,
                "warnings": status.warnings,
                "buffer": status.buffer,
            })
        return out

    def load_catalog(self) -> None:
        """Learn the metrics the agents reported to any API server of this store."""
        saved = self.store.get_meta(CATALOG_KEY)
        for obj in json.loads(saved) if saved else []:
            with contextlib.suppress(InputError):
                self.catalog.add(Metric.from_json(obj))

    async def start(self) -> None:
        self.load_catalog()
        await self.bus.connect()
        await self.bus.subscribe(m.CTL_LIST, self._on_list, queue="control")
        await self.bus.subscribe(f"{m.AGENT_STATUS}.>", self._on_status)
        now = time.time()
        for inst in self.list():
            self._last_access.setdefault(inst.id, now)
        self._task = asyncio.get_running_loop().create_task(self._expire_idle())

    async def _expire_idle(self) -> None:
        while True:
            await asyncio.sleep(IDLE_CHECK_EVERY)
            try:
                await self.expire_idle(time.time())
            except Exception:  # the store is away: try again at the next check
                log.exception("idle check failed")

    async def expire_idle(self, now: float) -> list[int]:
        """Delete the instrumentations nobody read for ``idle_max`` seconds; their ids.

        Several API servers may serve one store: each records in the store when it
        last saw an instrumentation read, and the latest read of any of them counts.
        """
        expired = []
        for inst in self.list():
            if not inst.idle_max:
                continue  # never expires: no read times to share
            key = f"{ACCESS_KEY}{inst.id}"
            mine = self._last_access.setdefault(inst.id, now)
            stored = self.store.get_meta(key)
            last = max(mine, float(stored) if stored else 0.0)
            if stored is None or mine > float(stored):
                self.store.set_meta(key, repr(mine))
            if now - last > inst.idle_max:
                log.info("instrumentation %s unused for %ss: deleted", inst.id, inst.idle_max)
                with contextlib.suppress(NotFound):
                    await self.delete(inst.id)
                    expired.append(inst.id)
        return expired

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
