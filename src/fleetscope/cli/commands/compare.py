"""``fleetscope compare INST A B``: one instrumentation over two runs (imports or time
ranges) aligned to their starts, as a table of averages and percentiles with their
difference (``GET /instrumentations/{id}/compare``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.table import Table

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
from fleetscope.cli.format import GAP, format_value, metric_name, numeric_field_type, unit_type
from fleetscope.model.types import Type

DISTRIBUTIONS = ("histogram", "discrete_histogram")
RUN_HELP = "import:ID (an import's own rows), or START..END (epoch seconds or ISO, UTC unless it says)."


def run_params(which: str, text: str) -> dict[str, int]:
    """The query parameters of run ``which`` (``a`` or ``b``) from ``import:ID`` or ``START..END``."""
    if text.startswith("import:"):
        number = text.removeprefix("import:")
        if not number.isdigit():
            fail(f"{which.upper()}: import:ID takes a number, not {number!r}")
        return {f"{which}_import": int(number)}
    start, sep, end = text.partition("..")
    if not sep:
        fail(f"{which.upper()}: {text!r} is neither import:ID nor START..END")
    return {f"{which}_start": _time(which, start), f"{which}_end": _time(which, end)}


def _time(which: str, text: str) -> int:
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        fail(f"{which.upper()}: {text!r} is neither epoch seconds nor an ISO time (2024-03-07T14:00)")
    return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp())


def _change(x: Any) -> str:
    return GAP if x is None else f"{x * 100:+.1f} %"


def compare_table(body: dict, unit: Type, keys: int) -> Table:
    """One row per key and statistic: a, b, b - a, change."""
    runs = body["runs"]
    per = " per second" if body.get("per_second") else ""
    title = (f"instrumentation {body['instrumentation']}: a = {runs['a']['label']}, "
             f"b = {runs['b']['label']}, steps of {body['step']} s{per}")
    table = Table("key", "", "a", "b", "b - a", "change", title=title, box=None)
    stats = ["average", *(f"p{q * 100:g}" for q in body["quantiles"])]
    for n, row in enumerate(body["rows"][:keys]):
        a, b = row["a"] or {}, row["b"] or {}
        for i, stat in enumerate(stats):
            table.add_row(row["key"] or "(value)" if i == 0 else "", stat, format_value(a.get(stat), unit),
                          format_value(b.get(stat), unit), format_value(row["difference"][stat], unit),
                          _change(row["change"][stat]), end_section=i == len(stats) - 1 and n < keys - 1)
    if len(body["rows"]) > keys:
        table.caption = f"{len(body['rows']) - keys} more keys (--keys, --json)"
    return table


def compare(
    inst_id: InstId,
    a: Annotated[str, typer.Argument(metavar="A", help=RUN_HELP, show_default=False)],
    b: Annotated[str, typer.Argument(metavar="B", help=RUN_HELP, show_default=False)],
    step: Annotated[int | None, typer.Option(min=1, help="Seconds per step (default: the coarser "
                                             "resolution of the runs).")] = None,
    keys: Annotated[int, typer.Option(min=1, help="Keys shown, the larger first.")] = 10,
    url: Url = DEFAULT_URL,
    as_json: AsJson = False,
) -> None:
    """Compare two runs of an instrumentation (imports or time ranges), aligned to their starts."""
    params: dict[str, Any] = {**run_params("a", a), **run_params("b", b)}
    if step is not None:
        params["step"] = step
    with reporting_errors(url), Api.from_environment(url) as api:
        body = api.compare(inst_id, **params)
        if as_json:
            print_json(body)
            return
        inst = api.instrumentation(inst_id)
        metrics = api.metrics()
        if inst.get("shape") in DISTRIBUTIONS:
            unit = numeric_field_type(metrics, inst)
        else:
            found = next((m for m in metrics if m.get("name") == metric_name(inst)), {})
            unit = unit_type(found.get("unit"))
    stdout_console().print(compare_table(body, unit, keys))
