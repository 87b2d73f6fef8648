"""``fleetscope import FORMAT FILE...`` and ``fleetscope imports list|delete``: performance
logs (sysstat data files, ``vmstat -t``, ``iostat -t -x``, ``mpstat`` and ``sar`` output, CSV)
uploaded to the server as a host's history, with a progress bar while they go up.

A CSV's mapping (:mod:`fleetscope.perflogs.csvlog`) comes from ``--mapping FILE`` (TOML or
JSON) or from the flags ``--time-column``, ``--metric``, ``--field``, ``--column``,
``--kind``, ``--unit``, ``--scale`` (one metric); flags given with a file override its
time column and add their metric to the file's. With ``--events`` (one event per row:
JMeter's .jtl, ``ab -g``), ``--value-column``, ``--value-field`` and repeated ``--field
NAME[=COLUMN]`` describe the events instead."""

from __future__ import annotations

import io
import json
import os
import time
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
from rich.table import Table

from fleetscope.cli.client import DEFAULT_URL, Api, ApiError
from fleetscope.cli.commands.common import AsJson, Url, fail, print_json, reporting_errors, stdout_console

FORMATS = ("sysstat", "vmstat", "iostat", "mpstat", "sar-text", "csv")
DEFAULT_EVENTS_METRIC = "loadtest.requests"
FOLLOW_EVERY = 0.25  # seconds between two looks at an import being read


class _Counted(io.FileIO):
    """A file that advances a progress bar as it is read."""

    def __init__(self, path: Path, progress: Progress | None, task) -> None:
        super().__init__(path, "rb")
        self.progress, self.task = progress, task

    def read(self, size: int = -1) -> bytes:
        data = super().read(size)
        if self.progress is not None:
            self.progress.advance(self.task, len(data))
        return data


def _follow(api: Api, body: dict, show) -> dict:
    """The import once it is no longer loading (``show`` its progress meanwhile); the server's
    error, as an answer to the upload would have said it, if it failed."""
    while body.get("state") == "loading":
        show(body.get("progress") or {})
        time.sleep(FOLLOW_EVERY)
        body = api.get_import(body["id"])
    if body.get("state") == "failed":
        error = body.get("error") or {}
        raise ApiError(str(error.get("message", "the import failed")), error.get("field"),
                       status=error.get("status"), code=error.get("code"))
    show({**(body.get("progress") or {}), "read": body.get("progress", {}).get("bytes", 0)})
    return body


def _time(text: str | None) -> int | None:
    if text is None:
        return None
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        fail(f"--start: {text!r} is neither epoch seconds nor an ISO time (2024-03-04T14:00:00)")
    return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp())


def import_logs(
    fmt: Annotated[str, typer.Argument(metavar="FORMAT", help=f"One of {', '.join(FORMATS)}.")],
    files: Annotated[list[Path], typer.Argument(metavar="FILE...", exists=True, dir_okay=False,
                                                help="Log files of one host.")],
    host: Annotated[str | None, typer.Option(help="The host the logs are of (sysstat, iostat and "
                                             "mpstat name it themselves).")] = None,
    tz: Annotated[str | None, typer.Option(help="IANA zone of the logs' local times (default: the "
                                           "log's own, else UTC).")] = None,
    start: Annotated[str | None, typer.Option(help="Time of the first report, for logs without "
                                              "timestamps (epoch seconds or ISO).")] = None,
    interval: Annotated[str | None, typer.Option(help="Seconds between reports, for logs without "
                                                 "timestamps.")] = None,
    cpus: Annotated[int | None, typer.Option(help="CPUs of the host: vmstat gives shares of all "
                                             "of them (default 1).")] = None,
    mapping: Annotated[Path | None, typer.Option(help="csv: the mapping of columns to metrics, a TOML "
                                                 "or JSON file.", exists=True, dir_okay=False)] = None,
    time_column: Annotated[str | None, typer.Option(help="csv: the column holding the times.")] = None,
    time_format: Annotated[str | None, typer.Option(help="csv: strptime format of the times (default: "
                                                    "epoch seconds or ISO 8601).")] = None,
    metric: Annotated[str | None, typer.Option(help="csv: the metric (module.stat) the columns "
                                               "become.")] = None,
    field: Annotated[list[str] | None, typer.Option(help="csv: the field whose values are the columns' "
                                                    "names; with --events, a column whose values become "
                                                    "a field: NAME or NAME=COLUMN (repeat).")] = None,
    column: Annotated[list[str] | None, typer.Option(help="csv: a column the metric takes (repeat; "
                                                     "default: every other column).")] = None,
    kind: Annotated[str | None, typer.Option(help="csv: a new metric's kind: point (levels, default) "
                                             "or interval (rates per second).")] = None,
    unit: Annotated[str | None, typer.Option(help="csv: a new metric's unit: number, percent, bytes, "
                                             "seconds, ms, us, ns.")] = None,
    scale: Annotated[float | None, typer.Option(help="csv: multiply the figures by this.")] = None,
    events: Annotated[bool, typer.Option("--events", help="csv: one event per row (JMeter .jtl, ab -g): "
                                         "counted per --interval (default 1 s) by the --field values and "
                                         "the --value-column's distribution.")] = False,
    value_column: Annotated[str | None, typer.Option(help="csv --events: the column of each event's "
                                                     "figure (JMeter: elapsed; ab -g: ttime).")] = None,
    value_field: Annotated[str | None, typer.Option(help="csv --events: the figure's field name (default "
                                                    "latency; --unit its unit, default ms).")] = None,
    url: Url = DEFAULT_URL,
    as_json: AsJson = False,
) -> None:
    """Import performance logs of one host as its history (one import, all files or none)."""
    if fmt not in FORMATS:
        fail(f"FORMAT: must be one of {', '.join(FORMATS)}")
    flags = {"time_column": time_column, "time_format": time_format, "metric": metric, "field": field,
             "column": column, "kind": kind, "unit": unit, "scale": scale, "events": events or None,
             "value_column": value_column, "value_field": value_field}
    given = [f"--{k.replace('_', '-')}" for k, v in flags.items() if v is not None]
    if fmt != "csv" and (given or mapping):
        fail(f"{', '.join(given or ['--mapping'])}: only for csv")
    fields = {"format": fmt, "host": host, "tz": tz, "start": _time(start), "interval": interval,
              "cpus": cpus}
    if fmt == "csv" and events:
        fields["mapping"] = json.dumps(events_mapping(mapping, time_column, time_format, metric, field or [],
                                                      value_column, value_field, unit, scale, column, kind))
    elif fmt == "csv":
        if value_column or value_field:
            fail("--value-column, --value-field: only with --events")
        if field and len(field) > 1:
            fail("--field: one (the field the columns' names become); several only with --events")
        fields["mapping"] = json.dumps(csv_mapping(mapping, time_column, time_format, metric,
                                                   field[0] if field else None, column, kind, unit, scale))
    total = sum(os.path.getsize(f) for f in files)
    show = not as_json and stdout_console().is_terminal
    with reporting_errors(url), Api.from_environment(url) as api, Progress(
            TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
            disable=not show, transient=True) as progress:
        task = progress.add_task(f"uploading {len(files)} file(s)", total=total)
        opened = [_Counted(f, progress if show else None, task) for f in files]
        try:
            body = api.upload_import(fields, [(f.name, o) for f, o in zip(files, opened, strict=True)],
                                     respond_async=True)
        finally:
            for o in opened:
                o.close()
        reading = progress.add_task("reading", total=total)
        body = _follow(api, body, lambda p: progress.update(
            reading, total=p.get("bytes") or total, completed=p.get("read", 0),
            description=p.get("phase", "reading") if p.get("phase") in ("queued", "writing")
            else f"reading {p.get('file', '')}"))
    if as_json:
        print_json(body)
        return
    stdout_console().print(f"import {body['id']}: host {body['host']}, {body['samples']} samples "
                           f"every {body['interval']} s, {_when(body['start_time'])} to "
                           f"{_when(body['end_time'])} UTC, metrics {', '.join(body['metrics'])}")


def _read_mapping(path: Path) -> dict:
    """A --mapping file: JSON (``.json``) or TOML."""
    text = path.read_text()
    try:
        return json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        fail(f"--mapping: {path.name}: not {'JSON' if path.suffix == '.json' else 'TOML'} ({exc})")


def csv_mapping(path: Path | None, time_column: str | None, time_format: str | None, metric: str | None,
                field: str | None, columns: list[str] | None, kind: str | None, unit: str | None,
                scale: float | None) -> dict:
    """The mapping of a CSV import: the file's (TOML or JSON), with the flags' time column and
    metric added; the server checks it."""
    mapping = _read_mapping(path) if path is not None else {}
    if time_column is not None:
        mapping["time_column"] = time_column
    if time_format is not None:
        mapping["time_format"] = time_format
    if metric is not None:
        one = {"metric": metric, "field": field, "columns": columns, "kind": kind, "unit": unit,
               "scale": scale}
        mapping.setdefault("metrics", []).append({k: v for k, v in one.items() if v is not None})
    elif any(x is not None for x in (field, columns, kind, unit, scale)):
        fail("--field, --column, --kind, --unit, --scale describe a --metric: give it")
    if "time_column" not in mapping or not mapping.get("metrics"):
        fail("csv: give --time-column and --metric (or a --mapping file with time_column and metrics)")
    return mapping


def events_mapping(path: Path | None, time_column: str | None, time_format: str | None, metric: str | None,
                   fields: list[str], value_column: str | None, value_field: str | None, unit: str | None,
                   scale: float | None, columns: list[str] | None, kind: str | None) -> dict:
    """The mapping of a CSV of one event per row: the file's, with the flags' time column and
    events (``--field NAME`` takes column NAME, ``--field NAME=COLUMN`` renames it); the server
    checks it."""
    if columns or kind:
        fail("--column, --kind: not with --events (each row is one event: --value-column, --field)")
    mapping = _read_mapping(path) if path is not None else {}
    if time_column is not None:
        mapping["time_column"] = time_column
    if time_format is not None:
        mapping["time_format"] = time_format
    ev = mapping.get("events") if isinstance(mapping.get("events"), dict) else {}
    taken = dict(ev.get("columns", {}))
    for f in fields:
        name, _, col = f.partition("=")
        taken[name] = col or name
    one = {"metric": metric or ev.get("metric") or DEFAULT_EVENTS_METRIC, "value_column": value_column,
           "value_field": value_field, "unit": unit, "scale": scale, "columns": taken or None}
    mapping["events"] = {**ev, **{k: v for k, v in one.items() if v is not None}}
    mapping.pop("metrics", None)
    if "time_column" not in mapping or "value_column" not in mapping["events"]:
        fail("csv --events: give --time-column and --value-column (or a --mapping file with them)")
    return mapping


def _when(t: int | None) -> str:
    return "-" if t is None else datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S")


def imports_list(url: Url = DEFAULT_URL, as_json: AsJson = False) -> None:
    """Every import: host, range, samples, origin files."""
    with reporting_errors(url), Api.from_environment(url) as api:
        rows = api.imports()
    if as_json:
        print_json({"imports": rows})
        return
    table = Table("id", "host", "format", "from (UTC)", "to (UTC)", "every", "samples", "files", "state",
                  "answers", box=None)
    for r in rows:
        table.add_row(str(r["id"]), r["host"], r["format"], _when(r["start_time"]), _when(r["end_time"]),
                      f"{r.get('interval')} s" if r.get("interval") else "-", str(r.get("samples", "-")),
                      ", ".join(f["name"] for f in r.get("files", [])), r["state"], _answers(r))
    stdout_console().print(table)


def _answers(r: dict) -> str:
    """The instrumentations' answers over an import made so far, of those to make ("2/3": one is
    still being made, and reading it over a long range waits for it); "-" when none reads it."""
    answers = r.get("answers")
    if not answers:
        return "-"
    return f"{answers['ready']}/{answers['ready'] + answers['pending']}"


def imports_delete(
    import_id: Annotated[int, typer.Argument(metavar="ID", help="Import id.", show_default=False)],
    url: Url = DEFAULT_URL,
) -> None:
    """Delete an import and everything it wrote."""
    with reporting_errors(url), Api.from_environment(url) as api:
        api.delete_import(import_id)
    typer.echo(f"deleted import {import_id}")
