"""`fleetscope inst create|list|show|update|delete` and `defaults`: the questions switched on."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from fleetscope.cli.client import DEFAULT_URL, Api
from fleetscope.cli.commands.common import AsJson, InstId, Url, print_json, reporting_errors, stdout_console
from fleetscope.cli.format import describe
from fleetscope.cli.views import instrumentation_table, instrumentations_table
from fleetscope.model.defaults import (
    GUESTS_DASHBOARD,
    default_specs,
    guests_panels,
    has_guests,
    same_question,
)
from fleetscope.model.errors import InputError
from fleetscope.model.types import parse_duration

Retention = Annotated[
    str | None,
    typer.Option(help="How long per-second data is kept in memory: 600, 10m, 1h.",
                 show_default=False),
]


IdleMax = Annotated[
    str | None,
    typer.Option("--idle-max", help="Expire after this long unused: 1h, 7d.",
                 show_default=False),
]


Persist = Annotated[
    bool | None,
    typer.Option("--persist/--no-persist", help="Keep history in the store.", show_default=False),
]


def split_metric(name: str) -> tuple[str, str]:
    """``"proc.cpu"`` -> ``("proc", "cpu")``; the module is what comes before the first dot."""
    module, dot, stat = name.partition(".")
    if not (module and dot and stat):
        raise InputError("metric", f"{name!r} is not module.stat, e.g. proc.cpu")
    return module, stat


def predicate_arg(text: str) -> str | dict:
    """The ``predicate`` to send for ``--where``: a JSON object as such, else the text form."""
    if text.lstrip().startswith("{"):
        try:
            obj = json.loads(text)
        except ValueError:
            return text  # not JSON after all: the server's text parser will say why
        if isinstance(obj, dict):
            return obj
    return text


def _settings(retention: str | None, idle_max: str | None, persist: bool | None) -> dict:
    """The retention/idle_max/persist members of a request body, durations in seconds."""
    body: dict[str, Any] = {}
    if retention is not None:
        body["retention"] = parse_duration(retention, "retention")
    if idle_max is not None:
        body["idle_max"] = parse_duration(idle_max, "idle_max")
    if persist is not None:
        body["persist"] = persist
    return body


def _report(inst: dict, as_json: bool, headline: str) -> None:
    """An instrumentation just created or changed: the server's JSON, or a headline and its table."""
    if as_json:
        print_json(inst)
        return
    console = stdout_console()
    console.print(headline)
    console.print(instrumentation_table(inst))


def inst_create(
    metric: Annotated[str, typer.Argument(help="module.stat, e.g. proc.cpu.", show_default=False)],
    by: Annotated[
        list[str] | None,
        typer.Option("--by", help="Field to break down by (repeat: one discrete, one numeric).",
                     show_default=False),
    ] = None,
    where: Annotated[
        str | None,
        typer.Option(help='Predicate, e.g. \'execname != "idle" and latency > 10ms\' or JSON.',
                     show_default=False),
    ] = None,
    granularity: Annotated[
        int | None, typer.Option(help="Seconds per data point (server default 1).",
                                 show_default=False)
    ] = None,
    retention: Retention = None,
    idle_max: IdleMax = None,
    persist: Persist = None,
    url: Url = DEFAULT_URL,
    as_json: AsJson = False,
) -> None:
    """Switch a question on: create an instrumentation and print its id."""
    with reporting_errors(url):
        module, stat = split_metric(metric)
        body: dict[str, Any] = {"module": module, "stat": stat, "decomposition": list(by or ())}
        if where is not None:
            body["predicate"] = predicate_arg(where)
        if granularity is not None:
            body["granularity"] = granularity
        body.update(_settings(retention, idle_max, persist))
        with Api.from_environment(url) as api:
            inst = api.create(body)
        _report(inst, as_json, f"created instrumentation {inst.get('id')}: {describe(inst)}")


def inst_list(url: Url = DEFAULT_URL, as_json: AsJson = False) -> None:
    """List the instrumentations."""
    with reporting_errors(url), Api.from_environment(url) as api:
        insts = api.instrumentations()
        if as_json:
            print_json({"instrumentations": insts})
        elif not insts:
            typer.echo("no instrumentations")
        else:
            stdout_console().print(instrumentations_table(insts))


def inst_show(inst_id: InstId, url: Url = DEFAULT_URL, as_json: AsJson = False) -> None:
    """Show one instrumentation."""
    with reporting_errors(url), Api.from_environment(url) as api:
        inst = api.instrumentation(inst_id)
        if as_json:
            print_json(inst)
        else:
            stdout_console().print(instrumentation_table(inst))


def inst_update(
    ctx: typer.Context,
    inst_id: InstId,
    retention: Retention = None,
    idle_max: IdleMax = None,
    persist: Persist = None,
    url: Url = DEFAULT_URL,
    as_json: AsJson = False,
) -> None:
    """Change the retention, idle expiry or persistence of an instrumentation."""
    if retention is None and idle_max is None and persist is None:
        ctx.fail("nothing to update: give --retention, --idle-max or --persist/--no-persist")
    with reporting_errors(url):
        body = _settings(retention, idle_max, persist)
        with Api.from_environment(url) as api:
            inst = api.update(inst_id, body)
        _report(inst, as_json, f"updated instrumentation {inst.get('id', inst_id)}")


def inst_delete(inst_id: InstId, url: Url = DEFAULT_URL) -> None:
    """Delete an instrumentation (its history too)."""
    with reporting_errors(url), Api.from_environment(url) as api:
        api.delete(inst_id)
        typer.echo(f"deleted instrumentation {inst_id}")


def defaults(url: Url = DEFAULT_URL, as_json: AsJson = False) -> None:
    """Create the default instrumentations that are missing (a new fleet starts with none),
    and the Guests dashboard once some host has containers or VMs.

    Only those whose metric some host reports (the container ones when a host has
    containers); one asking the same question (metric, predicate, decomposition) is kept.
    The Guests dashboard is made when there is no dashboard of that name, its panels
    reusing instrumentations that ask the same question. Running it again creates nothing
    (run it again once hosts have guests).
    """
    with reporting_errors(url), Api.from_environment(url) as api:
        known = {str(metric.get("name")) for metric in api.metrics()}
        existing = api.instrumentations()
        created, kept = [], []
        for spec in default_specs(known):
            same = next((inst for inst in existing if same_question(spec, inst)), None)
            if same is not None:
                kept.append(same)
            else:
                created.append(api.create(spec))
        dashboard = _guests_dashboard(api, known, [*existing, *created])
        if as_json:
            print_json({"created": created, "existing": kept, "dashboard": dashboard})
            return
        for inst in created:
            typer.echo(f"created instrumentation {inst.get('id')}: {describe(inst)}")
        for inst in kept:
            typer.echo(f"kept instrumentation {inst.get('id')}: {describe(inst)}")
        typer.echo(f"{len(created)} created, {len(kept)} already there")
        if dashboard is not None:
            typer.echo(f"created dashboard {dashboard.get('id')}: {GUESTS_DASHBOARD} "
                       f"({len(dashboard.get('panels', []))} panels)")


def _guests_dashboard(api: Api, known: set[str], existing: list[dict]) -> dict | None:
    """The Guests dashboard, made when a host reports containers or VMs and no dashboard has its
    name (as `serve` makes it by itself); None when nothing was made."""
    if not has_guests(known) or any(d.get("name") == GUESTS_DASHBOARD for d in api.dashboards()):
        return None
    panels = []
    for spec, options in guests_panels(known):
        inst = next((i for i in existing if same_question(spec, i) and i.get("tenant") is None),
                    None) or api.create(spec)
        panels.append({"instrumentation": inst["id"], "options": options})
    return api.create_dashboard({"name": GUESTS_DASHBOARD, "panels": panels})
