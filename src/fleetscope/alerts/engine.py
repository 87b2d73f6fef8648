"""The alert engine: rules evaluated on the final slots of the instrumentations this process
aggregates, state kept in the store, notifications handed to the notifier.

:meth:`AlertEngine.record` is an aggregator listener: it only queues the slot (it runs inside
the aggregator's finalisation, which must stay quick). :meth:`AlertEngine.run` wakes every
``TICK`` seconds and, off the event loop where it touches the store:

1. reloads rules and receivers when their version in the store changed (and every
   ``RELOAD`` seconds regardless);
2. loads the saved state of the rules of instrumentations this process has just come to own
   (another aggregator's, until it died or gave them up) and forgets those it gave up;
3. evaluates the queued slots (first finals only: a revision never fires nor clears), the
   ``no data for`` rules against the clock, and the reminders of firing alerts;
4. saves what changed, then tells the receivers: a takeover after the save goes on from the
   saved state, so an alert is not sent twice nor forgotten.

Alertmanager receivers are told again every ``RESEND`` seconds while an alert fires (it
would resolve an alert it stops hearing of); every receiver is told again after the rule's
``repeat``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import NamedTuple, Protocol

from fleetscope.alerts.evaluate import PENDING, Change, step
from fleetscope.model.alerts import (
    FIRING,
    NO_DATA,
    RESOLVED,
    SOURCES,
    AlertState,
    Notification,
    Receiver,
    Rule,
    observe_point,
)
from fleetscope.model.instrumentation import Instrumentation
from fleetscope.model.series import DataPoint
from fleetscope.store.base import Store

log = logging.getLogger(__name__)

TICK = 0.5  # seconds between evaluation rounds
RELOAD = 60.0  # seconds between reloads of rules and receivers when their version did not change
RESEND = 60.0  # seconds between reminders to Alertmanager while firing
COUNTERS_EVERY = 10.0  # seconds between saves of the delivery counters (for the API and /metrics)
LINK_BEFORE, LINK_AFTER = 600, 300  # seconds around a change that its dashboard link shows
MAX_QUEUED = 100_000  # final slots waiting for a round; older ones are dropped (and counted)


class Sender(Protocol):
    """What the engine hands notifications to (:class:`fleetscope.alerts.deliver.Notifier`)."""

    def send(self, notification: Notification, receiver: Receiver) -> None: ...

    def stats(self) -> dict[str, dict]: ...


class EngineStats(NamedTuple):
    rules: int
    pending: int
    firing: int
    evaluations: int  # rule evaluations over final slots and the clock, since start
    notifications: int  # handed to receivers, since start
    unknown_receivers: int  # notifications for a receiver name that does not exist
    dropped_slots: int  # final slots dropped because rounds fell behind
    last_round_seconds: float


class AlertEngine:
    """Evaluates the alert rules of the instrumentations ``owns`` says are this process's."""

    def __init__(self, store: Store, sender: Sender, owns: Callable[[int], bool] = lambda _id: True,
                 clock: Callable[[], float] = time.time, process: str = "serve") -> None:
        """``process`` names this process's delivery counters in the store."""
        self.store = store
        self.process = process
        self.sender = sender
        self.owns = owns
        self.clock = clock
        self.rules: dict[int, Rule] = {}
        self.by_inst: dict[int, list[Rule]] = {}
        self.receivers: dict[tuple[str, str], Receiver] = {}
        self.alerts: dict[int, dict[str, AlertState]] = {}  # rule id -> key -> state, for owned rules
        self.insts: dict[int, Instrumentation] = {}
        self._queue: list[tuple[Instrumentation, DataPoint]] = []
        self._last_start: dict[int, int] = {}  # inst id -> start of the last slot evaluated
        self._last_data: dict[int, float] = {}  # inst id -> end of the last slot with data
        self._owned_since: dict[int, float] = {}  # inst id -> when this process came to own it
        self._loaded = 0.0
        self._version: str | None = None
        self._counted = 0.0
        self._task: asyncio.Task | None = None
        self.evaluations = self.notifications = self.unknown_receivers = self.dropped_slots = 0
        self.last_round_seconds = 0.0

    # -- the aggregator's side ----------------------------------------------------------------------

    def record(self, inst: Instrumentation, point: DataPoint) -> None:
        """Queue a final slot (an aggregator listener; returns at once)."""
        if point.revised or inst.id not in self.by_inst:
            return
        if len(self._queue) >= MAX_QUEUED:
            self.dropped_slots += 1
            return
        self._queue.append((inst, point))

    # -- rounds ------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Evaluate every ``TICK`` seconds until cancelled."""
        while True:
            started = time.perf_counter()
            try:
                await self.round()
            except Exception:
                log.exception("alert evaluation round failed")
            self.last_round_seconds = time.perf_counter() - started
            await asyncio.sleep(TICK)

    async def round(self) -> None:
        """One evaluation round (see the module docstring)."""
        now = self.clock()
        version = await asyncio.to_thread(self.store.alerts_version)
        if version != self._version or now - self._loaded >= RELOAD:
            await asyncio.to_thread(self.reload)
            self._loaded, self._version = now, version
        await asyncio.to_thread(self._follow_ownership, now)
        saved, ended, changes = self.evaluate(now)
        saved += self._mark_sent(changes, now)
        reminders, moved = self._reminders(now)
        saved += moved
        if saved or ended or changes:
            events = [self._event(c) for c in changes]
            await asyncio.to_thread(self.store.save_alert_changes, saved, ended, events)
        for change in changes:
            self._tell(change, repeat=False, everyone=True)
        for change, everyone in reminders:
            self._tell(change, repeat=True, everyone=everyone)
        if now - self._counted >= COUNTERS_EVERY:
            self._counted = now
            await asyncio.to_thread(self.store.save_alert_deliveries, self.process, self.delivery_counters())

    def delivery_counters(self) -> dict[tuple[str, str], dict]:
        """The sender's counters by (owner, receiver name), for the receivers that exist."""
        stats = self.sender.stats()
        out = {}
        for owner, name in self.receivers:
            counters = stats.get(f"{owner}/{name}" if owner else name)
            if counters is not None:
                out[(owner, name)] = counters
        return out

    def reload(self) -> None:
        """Read the rules and receivers again (they change through the API, in any process)."""
        rules = {r.id: r for r in self.store.list_alert_rules()}
        for rule_id, rule in rules.items():
            old = self.rules.get(rule_id)
            if old is not None and old != rule:
                self.alerts.pop(rule_id, None)  # replaced: its alerts start over (the store dropped them)
        for rule_id in set(self.alerts) - set(rules):
            del self.alerts[rule_id]
        self.rules = rules
        by_inst: dict[int, list[Rule]] = {}
        for rule in rules.values():
            by_inst.setdefault(rule.inst_id, []).append(rule)
        self.by_inst = by_inst
        self.receivers = {(r.tenant or "", r.name): r for r in self.store.list_alert_receivers()}

    def _follow_ownership(self, now: float) -> None:
        """Load the saved alerts of rules on newly owned instrumentations; forget given-up ones."""
        for inst_id, rules in self.by_inst.items():
            if not self.owns(inst_id):
                self._owned_since.pop(inst_id, None)
                for rule in rules:
                    self.alerts.pop(rule.id, None)
                continue
            self._owned_since.setdefault(inst_id, now)
            for rule in rules:
                if rule.id not in self.alerts:
                    self.alerts[rule.id] = {a.key: a for a in self.store.alert_states(rule.id)}

    def evaluate(self, now: float) -> tuple[list[AlertState], list[tuple[int, str]], list[Change]]:
        """Evaluate the queued final slots and the clock-driven rules."""
        queue, self._queue = self._queue, []
        saved: list[AlertState] = []
        ended: list[tuple[int, str]] = []
        changes: list[Change] = []

        def apply(rule: Rule, observed: dict[str, float], start: float, end: float) -> None:
            alerts = self.alerts.get(rule.id)
            if alerts is None:
                return  # not (yet) owned here
            self.evaluations += 1
            done = step(rule, alerts, observed, start, end)
            saved.extend(done.saved)
            ended.extend((rule.id, key) for key in done.ended)
            changes.extend(done.changes)

        for inst, point in sorted(queue, key=lambda item: item[1].start_time):
            if point.start_time <= self._last_start.get(inst.id, -1):
                continue
            self._last_start[inst.id] = point.start_time
            self.insts[inst.id] = inst
            end = point.start_time + point.duration
            if point.value is not None:
                self._last_data[inst.id] = end
            for rule in self.by_inst.get(inst.id, ()):
                what = rule.condition.what
                # A slot without any data says nothing about a value (an outage, a takeover):
                # it neither holds nor clears; "no data for" rules are about such slots.
                if what == NO_DATA or (point.value is None and what != SOURCES):
                    continue
                apply(rule, observe_point(rule.condition, point, inst.shape), point.start_time, end)
        for inst_id, rules in self.by_inst.items():
            for rule in rules:
                if rule.condition.what == NO_DATA and inst_id in self._owned_since:
                    quiet_since = max(self._last_data.get(inst_id, 0.0), self._owned_since[inst_id],
                                      rule.created)
                    apply(rule, {"": now - quiet_since}, now, now)
        return saved, ended, changes

    def _mark_sent(self, changes: list[Change], now: float) -> list[AlertState]:
        """Alerts that fired in this round, as told now."""
        saved = []
        for change in changes:
            if change.status == FIRING:
                alerts = self.alerts.get(change.state.rule_id, {})
                current = alerts.get(change.state.key)
                if current is not None:
                    alerts[current.key] = current._replace(last_sent=now)
                    saved.append(alerts[current.key])
        return saved

    def _reminders(self, now: float) -> tuple[list[tuple[Change, bool]], list[AlertState]]:
        """Firing alerts to tell again: ``(change, every receiver)`` after the rule's ``repeat``,
        or to Alertmanager alone every ``RESEND``; and the alerts whose ``last_sent`` moved."""
        reminders: list[tuple[Change, bool]] = []
        moved = []
        for rule_id, alerts in self.alerts.items():
            rule = self.rules.get(rule_id)
            if rule is None:
                continue
            for key, alert in list(alerts.items()):
                if alert.state != FIRING or alert.last_sent == now:
                    continue
                quiet = now - alert.last_sent
                everyone = bool(rule.repeat) and quiet >= rule.repeat
                if everyone or quiet >= RESEND:
                    alert = alerts[key] = alert._replace(last_sent=now)
                    moved.append(alert)
                    reminders.append((Change(FIRING, alert, now, alert.value), everyone))
        return reminders, moved

    # -- telling -----------------------------------------------------------------------------------

    def _tell(self, change: Change, repeat: bool, everyone: bool) -> None:
        """Hand ``change`` to the rule's receivers (only its Alertmanagers unless ``everyone``)."""
        rule = self.rules.get(change.state.rule_id)
        if rule is None:
            return
        notification = self.notification(rule, self.insts.get(rule.inst_id), change, repeat)
        for name in rule.receivers:
            receiver = self.receivers.get((rule.tenant or "", name))
            if receiver is None:
                self.unknown_receivers += 1
                continue
            if everyone or receiver.kind == "alertmanager":
                self.notifications += 1
                self.sender.send(notification, receiver)

    def notification(self, rule: Rule, inst: Instrumentation | None, change: Change,
                     repeat: bool = False) -> Notification:
        state = change.state
        metric = inst.metric if inst else ""
        labels = {**rule.labels, "alertname": rule.name or f"rule-{rule.id}",
                  "instrumentation": str(rule.inst_id), "metric": metric, "severity": rule.severity}
        if state.key:
            labels["key"] = state.key
        if rule.tenant:
            labels["tenant"] = rule.tenant
        text = {"value": change.value, "key": state.key, "metric": metric}
        return Notification(
            rule.id, rule.inst_id, rule.tenant, state.key, change.status, rule.severity, labels,
            rule.text(rule.summary, **text) if rule.summary else f"{metric} {rule.when}",
            rule.text(rule.description, **text), change.value, rule.condition.threshold, state.since,
            change.at if change.status == RESOLVED else None, change.at,
            f"/?from={int(change.at) - LINK_BEFORE}&to={int(change.at) + LINK_AFTER}&inst={rule.inst_id}",
            repeat)

    def _event(self, change: Change) -> dict:
        rule = self.rules.get(change.state.rule_id)
        return {"at": change.at, "rule_id": change.state.rule_id, "inst_id": rule.inst_id if rule else None,
                "tenant": rule.tenant if rule else None, "key": change.state.key, "status": change.status,
                "value": change.value, "threshold": rule.condition.threshold if rule else None,
                "severity": rule.severity if rule else None, "since": change.state.since}

    # -- reading -----------------------------------------------------------------------------------

    def stats(self) -> EngineStats:
        states = [a for alerts in self.alerts.values() for a in alerts.values()]
        return EngineStats(len(self.rules), sum(a.state == PENDING for a in states),
                           sum(a.state == FIRING for a in states), self.evaluations, self.notifications,
                           self.unknown_receivers, self.dropped_slots, self.last_round_seconds)

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.run())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
