"""`fleetscope alert create|list|delete|history`, `alert receiver ...` and `fleetscope alerts`.

Rules watch an instrumentation (``--when 'p99 > 200ms' --for 1m``); receivers are where
notifications go (Alertmanager, a webhook, e-mail); ``alerts`` shows what fires now.
"""

from __future__ import annotations

import json
import time
from typing import Annotated

import typer

from fleetscope.cli.client import DEFAULT_URL, Api
from fleetscope.cli.commands.common import (
    AsJson,
    InstId,
    Url,
    fail,
    print_json,
    reporting_errors,
    stdout_console,
)
from fleetscope.cli.format import format_timestamp as timestamp
from fleetscope.cli.views import rows_table

When = Annotated[str, typer.Option(
    help="The condition: 'value > 0.9', 'each key > 100', 'key \"nginx\" > 1', 'p99 > 200ms', "
         "'avg > 10ms', 'no data for 30s', 'sources < expected'.")]
Receivers = Annotated[list[str] | None, typer.Option("--receiver", help="Tell this receiver (repeatable).")]
Labels = Annotated[list[str] | None, typer.Option("--label",
                                                  help="NAME=VALUE added to the alert (repeatable).")]


def _labels(pairs: list[str] | None) -> dict[str, str]:
    out = {}
    for pair in pairs or ():
        name, sep, value = pair.partition("=")
        if not sep:
            fail(f"label: {pair!r} is not NAME=VALUE")
        out[name.strip()] = value.strip()
    return out


def alert_create(
    inst_id: InstId, when: When, for_: Annotated[str | None, typer.Option("--for", help="Hold this long "
                                                                        "before firing, e.g. 1m.")] = None,
    clear: Annotated[str | None, typer.Option(help="Clear only past this (hysteresis), e.g. 150ms.")] = None,
    clear_for: Annotated[str | None, typer.Option(help="Stay clear this long before resolving.")] = None,
    days: Annotated[str | None, typer.Option(help="Active on these days, e.g. mon,tue,wed,thu,fri.")] = None,
    hours: Annotated[str | None, typer.Option(help="Active these hours, e.g. 08:00-18:00.")] = None,
    tz: Annotated[str | None, typer.Option(help="Time zone of --days and --hours (default UTC).")] = None,
    severity: Annotated[str | None, typer.Option(help="info, warning (default) or critical.")] = None,
    summary: Annotated[str | None, typer.Option(
        help="Text with {value}, {key}, {threshold}, {metric}.")] = None,
    description: Annotated[str | None, typer.Option(help="Longer text, same fields.")] = None,
    repeat: Annotated[str | None, typer.Option(help="Tell again this often while firing, e.g. 4h.")] = None,
    name: Annotated[str | None, typer.Option(help="The alert's name (default rule-ID).")] = None,
    receiver: Receivers = None, label: Labels = None, url: Url = DEFAULT_URL, as_json: AsJson = False,
) -> None:
    """Alert when an instrumentation's value meets a condition."""
    window: dict = {}
    if days:
        window["days"] = days
    if hours:
        start, sep, end = hours.partition("-")
        if not sep:
            fail(f"hours: {hours!r} is not START-END, e.g. 08:00-18:00")
        window.update(start=start.strip(), end=end.strip())
    if tz:
        window["tz"] = tz
    body = {"instrumentation": inst_id, "when": when, "for": for_, "clear": clear, "clear_for": clear_for,
            "window": window or None, "severity": severity, "summary": summary, "description": description,
            "repeat": repeat, "name": name, "receivers": receiver, "labels": _labels(label) or None}
    with reporting_errors(url), Api.from_environment(url) as api:
        made = api.create_alert_rule({k: v for k, v in body.items() if v is not None})
    if as_json:
        print_json(made)
        return
    typer.echo(f"alert rule {made['id']}: instrumentation {made['instrumentation']} when {made['when']}")


def alert_list(inst: Annotated[int | None, typer.Option(help="Only this instrumentation's rules.")] = None,
               url: Url = DEFAULT_URL, as_json: AsJson = False) -> None:
    """Every alert rule."""
    with reporting_errors(url), Api.from_environment(url) as api:
        rules = api.alert_rules(inst)
    if as_json:
        print_json(rules)
        return
    rows = [[str(r["id"]), str(r["instrumentation"]), r["when"], f"{r['for']} s", r["severity"],
             ", ".join(r["receivers"]) or "-", r["name"] or "-"] for r in rules]
    stdout_console().print(rows_table(["id", "inst", "when", "for", "severity", "receivers", "name"], rows,
                                      "alert rules"))


def alert_delete(rule_id: Annotated[int, typer.Argument(metavar="ID")], url: Url = DEFAULT_URL) -> None:
    """Delete an alert rule (what it fired is kept in the history)."""
    with reporting_errors(url), Api.from_environment(url) as api:
        api.delete_alert_rule(rule_id)
    typer.echo(f"alert rule {rule_id} deleted")


def alert_history(since: Annotated[str, typer.Option(help="How far back, e.g. 12h.")] = "24h",
                  url: Url = DEFAULT_URL, as_json: AsJson = False) -> None:
    """What fired and resolved, newest first ("what fired last night")."""
    from fleetscope.model.types import parse_duration

    with reporting_errors(url), Api.from_environment(url) as api:
        events = api.alert_history(time.time() - parse_duration(since, "since"))
    if as_json:
        print_json(events)
        return
    rows = [[timestamp(e["at"]), e["status"], str(e["rule_id"]), str(e["inst_id"]), e["key"] or "-",
             _number(e["value"])] for e in events]
    headers = ["time", "status", "rule", "inst", "key", "value"]
    stdout_console().print(rows_table(headers, rows, "alert history"))


def alerts(url: Url = DEFAULT_URL, as_json: AsJson = False) -> None:
    """What fires now, what is pending, and what resolved in the last hours."""
    with reporting_errors(url), Api.from_environment(url) as api:
        now = api.alerts()
    if as_json:
        print_json(now)
        return
    rows = [[a["state"], a["severity"], str(a["rule_id"]), str(a["instrumentation"]), a["key"] or "-",
             a["when"], _number(a["value"]), timestamp(a["since"])]
            for a in [*now["firing"], *now["pending"]]]
    rows += [["resolved", e["severity"] or "-", str(e["rule_id"]), str(e["inst_id"]), e["key"] or "-", "",
              _number(e["value"]), timestamp(e["at"])] for e in now["resolved"]]
    stdout_console().print(rows_table(["state", "severity", "rule", "inst", "key", "when", "value", "since"],
                                      rows, "alerts"))


def _number(value: float | None) -> str:
    return "no data" if value is None else f"{value:.6g}"


def receiver_create(
    name: Annotated[str, typer.Argument()],
    kind: Annotated[str, typer.Option(help="alertmanager, webhook or email.")],
    setting: Annotated[list[str] | None, typer.Option("--set", help="KEY=VALUE of the kind's settings "
                       "(url, secret; host, port, starttls, username, password, sender, to); a JSON "
                       "value is taken as such (--set 'to=[\"ops@example.com\"]').")] = None,
    url: Url = DEFAULT_URL,
) -> None:
    """Make a receiver: where rules' notifications go."""
    settings: dict = {}
    for pair in setting or ():
        key, sep, value = pair.partition("=")
        if not sep:
            fail(f"set: {pair!r} is not KEY=VALUE")
        try:
            settings[key.strip()] = json.loads(value)
        except ValueError:
            settings[key.strip()] = value
    if kind == "email" and isinstance(settings.get("to"), str):
        settings["to"] = [a.strip() for a in settings["to"].split(",")]
    with reporting_errors(url), Api.from_environment(url) as api:
        made = api.create_receiver({"name": name, "kind": kind, "settings": settings})
    typer.echo(f"receiver {made['name']} ({made['kind']})")


def receiver_list(url: Url = DEFAULT_URL, as_json: AsJson = False) -> None:
    """Every receiver (secrets masked)."""
    with reporting_errors(url), Api.from_environment(url) as api:
        found = api.receivers()
    if as_json:
        print_json(found)
        return
    rows = [[r["name"], r["kind"], ", ".join(f"{k}={v}" for k, v in r["settings"].items())] for r in found]
    stdout_console().print(rows_table(["name", "kind", "settings"], rows, "receivers"))


def receiver_delete(name: Annotated[str, typer.Argument()], url: Url = DEFAULT_URL) -> None:
    """Delete a receiver no rule sends to."""
    with reporting_errors(url), Api.from_environment(url) as api:
        api.delete_receiver(name)
    typer.echo(f"receiver {name} deleted")
