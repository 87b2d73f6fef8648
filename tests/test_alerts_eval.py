"""Alert rules evaluated over recorded value series: `for`, hysteresis and `clear_for`, active
windows, every key of a breakdown, percentiles, no data, missing sources, revisions, and a
takeover by another engine on the same store (a real SQLite store; receivers are the test's)."""

from __future__ import annotations

import asyncio
import calendar
from pathlib import Path

import pytest

from fleetscope.alerts.engine import RESEND, AlertEngine
from fleetscope.model import values
from fleetscope.model.alerts import FIRING, RESOLVED, Notification, Receiver, parse_receiver, parse_rule
from fleetscope.model.errors import InputError
from fleetscope.model.histogram import Histogram
from fleetscope.model.instrumentation import Instrumentation
from fleetscope.model.series import DataPoint
from fleetscope.model.types import MILLISECONDS
from fleetscope.store.open import open_store

T0 = calendar.timegm((2026, 12, 7, 12, 0, 0))  # a Monday, noon UTC

SCALAR = Instrumentation(1, "cpu", "load", {}, (), 1, 600, 0, False, 0.0, kind="point",
                         unit={"base": "number", "power": 0})
BY_NAME = Instrumentation(2, "proc", "cpu", {}, ("execname",), 1, 600, 0, False, 0.0,
                          shape=values.DISCRETE, discrete="execname", unit={"base": "seconds", "power": 0})
LATENCY = Instrumentation(3, "app", "latency", {}, ("latency",), 1, 600, 0, False, 0.0,
                          shape=values.HISTOGRAM, numeric="latency", unit={"base": "number", "power": 0})


class Inbox:
    """A receiver's view: every notification the engine handed over, in order."""

    def __init__(self) -> None:
        self.got: list[tuple[Notification, str]] = []

    def send(self, notification: Notification, receiver: Receiver) -> None:
        self.got.append((notification, receiver.name))

    def stats(self) -> dict[str, dict]:
        names = {name for _, name in self.got}
        return {name: {"sent": sum(1 for _, n in self.got if n == name)} for name in names}

    def statuses(self, receiver: str = "hook") -> list[tuple[str, str]]:
        return [(n.status, n.key) for n, name in self.got if name == receiver and not n.repeat]


class Clock:
    def __init__(self) -> None:
        self.now = float(T0)

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path: Path):
    s = open_store(f"sqlite:///{tmp_path / 'alerts.db'}")
    for inst in (SCALAR, BY_NAME, LATENCY):
        s.create_instrumentation({k: v for k, v in inst.to_json().items()
                                  if k not in ("id", "created", "metric", "predicate_text")}, 0.0)
    s.put_alert_receiver(parse_receiver({"name": "hook", "kind": "webhook",
                                         "settings": {"url": "http://127.0.0.1:9/"}}, None), create=True)
    s.put_alert_receiver(parse_receiver({"name": "am", "kind": "alertmanager",
                                         "settings": {"url": "http://127.0.0.1:9"}}, None), create=True)
    yield s
    s.close()


def rule(store, inst: Instrumentation, body: dict, unit=None):
    made = parse_rule({"receivers": ["hook"], **body}, inst, unit, created=T0 - 3600)
    return store.create_alert_rule(made)


def engine(store) -> tuple[AlertEngine, Inbox, Clock]:
    inbox, clock = Inbox(), Clock()
    return AlertEngine(store, inbox, clock=clock), inbox, clock


def feed(eng: AlertEngine, clock: Clock, inst: Instrumentation, series: list, start: int = T0,
         nsources: int = 1, expected: int = 1) -> None:
    """One final slot per value, each evaluated in its own round as the aggregator would."""

    async def run() -> None:
        await eng.round()  # loads rules and states
        for i, value in enumerate(series):
            clock.now = start + i + 1.5  # the slot is final a little after its end
            eng.record(inst, DataPoint(start + i, 1, value, nsources if value is not None else 0, expected))
            await eng.round()

    asyncio.run(run())


def test_for_fires_only_after_the_condition_held_that_long(store) -> None:
    r = rule(store, SCALAR, {"when": "value > 2", "for": "3s"})
    eng, inbox, clock = engine(store)
    feed(eng, clock, SCALAR, [3.0, 3.0, 1.0, 3.0, 3.0])
    assert inbox.statuses() == [], "never 3 s in a row"
    feed(eng, clock, SCALAR, [3.0], start=T0 + 5)
    assert inbox.statuses() == [(FIRING, "")]
    fired = inbox.got[0][0]
    assert fired.starts_at == T0 + 6 and fired.value == 3.0 and fired.labels["alertname"] == f"rule-{r.id}"
    assert [s.state for s in store.alert_states(r.id)] == ["firing"]


def test_hysteresis_and_clear_for_keep_a_flapping_value_quiet(store) -> None:
    rule(store, SCALAR, {"when": "value > 0.9", "clear": 0.8, "clear_for": "2s"})
    eng, inbox, clock = engine(store)
    # Fires at 0.95; 0.85 and 0.91 are inside the band; 0.79 once is not long enough; twice is.
    feed(eng, clock, SCALAR, [0.95, 0.85, 0.91, 0.85, 0.79, 0.85, 0.79, 0.5, 0.95])
    assert inbox.statuses() == [(FIRING, ""), (RESOLVED, ""), (FIRING, "")]
    resolved = next(n for n, _ in inbox.got if n.status == RESOLVED)
    assert resolved.ends_at == T0 + 8 and resolved.value == 0.5
    # Without hysteresis the same series would have resolved and fired again on every crossing.
    events = store.alert_events(0)
    assert [e["status"] for e in reversed(events)] == [FIRING, RESOLVED, FIRING]


def test_each_key_fires_one_alert_per_key_with_the_key(store) -> None:
    rule(store, BY_NAME, {"when": "each key > 0.5", "summary": "{key} uses {value} CPU"})
    eng, inbox, clock = engine(store)
    feed(eng, clock, BY_NAME, [{"java": 0.9, "sh": 0.1, values.OTHER: 5.0},
                               {"java": 0.9, "sh": 0.7},
                               {"java": 0.2, "sh": 0.7}])
    assert inbox.statuses() == [(FIRING, "java"), (FIRING, "sh"), (RESOLVED, "java")]
    java = inbox.got[0][0]
    assert java.labels["key"] == "java" and java.summary == "java uses 0.9 CPU"
    assert {s.key for s in store.alert_states()} == {"sh"}, "(other) is not a key of its own"


def test_a_percentile_rule_reads_the_distribution(store) -> None:
    rule(store, LATENCY, {"when": "p99 > 200ms"}, unit=MILLISECONDS)
    eng, inbox, clock = engine(store)
    fast, slow = Histogram(), Histogram()
    for i in range(1000):
        fast.record(10 + i % 50)  # 10-59 ms
        slow.record(10 + i % 50 if i % 10 else 400)  # 10 % at 400 ms: p99 is 400
    feed(eng, clock, LATENCY, [fast, fast, slow])
    assert inbox.statuses() == [(FIRING, "")]
    assert inbox.got[0][0].value == pytest.approx(400, rel=0.1)


def test_an_active_window_keeps_a_rule_quiet_outside_it(store) -> None:
    # T0 is 13:00 in Berlin (UTC+1 in December); the window is 13:01 to 14:00 on Mondays there.
    rule(store, SCALAR, {"when": "value > 1", "window": {"days": ["mon"], "start": "13:01", "end": "14:00",
                                                          "tz": "Europe/Berlin"}})
    eng, inbox, clock = engine(store)
    feed(eng, clock, SCALAR, [5.0] * 3)  # 13:00:00-13:00:03 in Berlin: before the window
    assert inbox.statuses() == []
    feed(eng, clock, SCALAR, [5.0] * 2, start=T0 + 60)  # 13:01 in Berlin
    assert inbox.statuses() == [(FIRING, "")]
    feed(eng, clock, SCALAR, [5.0], start=T0 + 3600)  # 14:00: past it, what fires resolves
    assert inbox.statuses() == [(FIRING, ""), (RESOLVED, "")]


def test_no_data_fires_on_the_clock_and_resolves_when_data_returns(store) -> None:
    rule(store, SCALAR, {"when": "no data for 5s"})
    eng, inbox, clock = engine(store)
    feed(eng, clock, SCALAR, [1.0, 1.0, None, None, None])
    assert inbox.statuses() == [], "3 s of gaps"

    async def quiet(seconds: int) -> None:
        for _ in range(seconds):
            clock.now += 1
            await eng.round()

    asyncio.run(quiet(3))
    assert inbox.statuses() == [(FIRING, "")]
    feed(eng, clock, SCALAR, [1.0], start=int(clock.now))
    assert inbox.statuses() == [(FIRING, ""), (RESOLVED, "")]


def test_fewer_sources_than_expected(store) -> None:
    rule(store, SCALAR, {"when": "sources < expected", "for": "2s"})
    eng, inbox, clock = engine(store)
    feed(eng, clock, SCALAR, [1.0, 1.0], nsources=3, expected=3)
    feed(eng, clock, SCALAR, [1.0, 1.0], start=T0 + 2, nsources=2, expected=3)
    assert inbox.statuses() == [(FIRING, "")] and inbox.got[0][0].value == 1.0  # one source missing
    feed(eng, clock, SCALAR, [1.0], start=T0 + 4, nsources=3, expected=3)
    assert inbox.statuses()[-1] == (RESOLVED, "")


def test_revisions_and_repeated_slots_are_not_evaluated(store) -> None:
    rule(store, SCALAR, {"when": "value > 1"})
    eng, inbox, _ = engine(store)

    async def run() -> None:
        await eng.round()
        eng.record(SCALAR, DataPoint(T0, 1, 0.5, 1, 1))
        eng.record(SCALAR, DataPoint(T0, 1, 9.0, 1, 1, revised=True))  # late data: never fires
        eng.record(SCALAR, DataPoint(T0, 1, 9.0, 1, 1))  # the same slot again
        await eng.round()

    asyncio.run(run())
    assert inbox.statuses() == []


def test_a_takeover_goes_on_from_the_saved_state(store) -> None:
    rule(store, SCALAR, {"when": "value > 1", "clear_for": "2s"})
    first, inbox1, clock1 = engine(store)
    feed(first, clock1, SCALAR, [5.0, 5.0, 0.5])  # fired; clear for 1 s of 2
    assert inbox1.statuses() == [(FIRING, "")]
    second, inbox2, clock2 = engine(store)  # the first died; this one takes the instrumentation over
    feed(second, clock2, SCALAR, [5.0, 0.5, 0.5], start=T0 + 3)
    assert inbox2.statuses() == [(RESOLVED, "")], "not fired twice, and resolved when clear"


def test_alertmanager_hears_of_a_firing_alert_until_it_resolves(store) -> None:
    rule(store, SCALAR, {"when": "value > 1", "receivers": ["hook", "am"]})
    eng, inbox, clock = engine(store)
    feed(eng, clock, SCALAR, [5.0])

    async def later(seconds: float) -> None:
        clock.now += seconds
        await eng.round()

    asyncio.run(later(RESEND + 1))
    reminders = [(n.status, name) for n, name in inbox.got if n.repeat]
    assert reminders == [(FIRING, "am")], "reminders go to Alertmanager only (the rule has no repeat)"


@pytest.mark.parametrize(("body", "field"), [
    ({"when": "p99 > 1"}, "when"),  # no distribution
    ({"when": "value > 1", "clear": 2}, "clear"),
    ({"when": "value > 1", "for": "soon"}, "for"),
    ({"when": "value > 1", "window": {"days": []}}, "window.days"),
    ({"when": "value > 1", "window": {"tz": "Atlantis/Capital"}}, "window.tz"),
    ({"when": "value > 1", "window": {"start": "09:00", "end": "09:00"}}, "window.end"),
    ({"when": "value > 1", "summary": "{password}"}, "summary"),
    ({"when": "value > 1", "severity": "urgent"}, "severity"),
    ({"when": "value > 1", "repeat": "10s"}, "repeat"),
    ({"when": "each key > 1"}, "when"),  # no breakdown
])
def test_bad_rules_name_the_field(body: dict, field: str) -> None:
    with pytest.raises(InputError) as e:
        parse_rule(body, SCALAR, None)
    assert e.value.field == field


def test_a_slot_without_data_neither_holds_nor_clears(store) -> None:
    rule(store, SCALAR, {"when": "value > 1"})
    eng, inbox, clock = engine(store)
    feed(eng, clock, SCALAR, [5.0, None, None, 5.0, None, 0.5])  # an outage is not a recovery
    assert inbox.statuses() == [(FIRING, ""), (RESOLVED, "")]
    assert next(n for n, _ in inbox.got if n.status == RESOLVED).at == T0 + 6
