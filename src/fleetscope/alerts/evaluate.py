"""The state machine of one rule's alerts, one final slot at a time (no I/O).

Each key of a rule is in one of three states: nothing (the condition does not hold),
*pending* (it holds, since ``since``, not yet for the rule's ``for``) or *firing*. A firing
alert resolves once it has been clear of the condition (with the rule's hysteresis threshold)
for ``clear_for``; in between, neither firing nor clear, it stays firing. Times are slot
times: a slot ``[t, t + g)`` that holds counts until ``t + g``, so ``for: 0`` fires on the
first slot that holds and ``for: 60`` on the 60th second slot in a row.
"""

from __future__ import annotations

from typing import NamedTuple

from fleetscope.model.alerts import FIRING, RESOLVED, AlertState, Rule

PENDING = "pending"


class Change(NamedTuple):
    """A state change worth telling the receivers of: an alert that fired or resolved."""

    status: str  # FIRING or RESOLVED
    state: AlertState  # as it was when it changed (for RESOLVED: its last firing state)
    at: float  # slot time of the change
    value: float | None


class Step(NamedTuple):
    """What one evaluation did: the alerts now pending or firing that changed (to save), those
    that ended (to delete) and the changes to tell."""

    saved: list[AlertState]
    ended: list[str]  # keys
    changes: list[Change]


def step(rule: Rule, alerts: dict[str, AlertState], observed: dict[str, float], start: float,
         end: float) -> Step:
    """Advance ``rule``'s ``alerts`` (by key; updated in place) over one slot ``[start, end)`` in
    which ``observed`` holds what its condition compares, by key (a key without data absent)."""
    saved: list[AlertState] = []
    ended: list[str] = []
    changes: list[Change] = []
    cond = rule.condition
    if not rule.active(start):
        observed = {}  # outside its window a rule sees nothing hold, and what fires resolves
    for key, number in observed.items():
        if not cond.holds(number):
            continue
        alert = alerts.get(key)
        if alert is None:
            alert = AlertState(rule.id, key, PENDING, start, number)
        elif alert.state == FIRING:
            if alert.clear_since is not None:
                alert = alert._replace(clear_since=None, value=number)
                saved.append(alert)
            else:
                alert = alert._replace(value=number)
            alerts[key] = alert
            continue
        else:
            alert = alert._replace(value=number)
        if end - alert.since >= rule.for_:
            alert = alert._replace(state=FIRING, since=end, active_since=alert.since, last_sent=0.0)
            changes.append(Change(FIRING, alert, end, number))
        alerts[key] = alert
        saved.append(alert)
    for key, alert in list(alerts.items()):
        number = observed.get(key)
        if number is not None and cond.holds(number):
            continue
        if alert.state == PENDING:
            del alerts[key]
            ended.append(key)
        elif cond.cleared(number, rule.clear_threshold):
            clear_since = alert.clear_since if alert.clear_since is not None else start
            if end - clear_since >= rule.clear_for:
                del alerts[key]
                ended.append(key)
                changes.append(Change(RESOLVED, alert._replace(value=number), end, number))
            elif alert.clear_since is None:
                alerts[key] = alert._replace(clear_since=clear_since, value=number)
                saved.append(alerts[key])
        elif alert.clear_since is not None:  # back in the hysteresis band: not clear any more
            alerts[key] = alert._replace(clear_since=None, value=number)
            saved.append(alerts[key])
    return Step(saved, ended, changes)
