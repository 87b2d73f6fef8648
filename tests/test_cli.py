"""The client commands of the `fleetscope` CLI (fleetscope.cli).

Two groups:
- pure helpers (sparkline, heatmap shading, value tables, durations, error mapping) and the
  argument checks made before any request: these need no server;
- every command run for real (typer's CliRunner on ``fleetscope.cli.main.app``, and the installed
  ``fleetscope`` executable for Ctrl-C) against a real ``fleetscope serve`` (the ``server``
  fixture of conftest.py).
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner, Result

from fleetscope.cli import client, commands, views
from fleetscope.cli import format as fmt
from fleetscope.cli.commands import instrumentations as inst_commands
from fleetscope.cli.commands import values as value_commands
from fleetscope.model.errors import InputError
from fleetscope.model.types import MILLISECONDS, NUMBER, SECONDS, parse_duration

from .conftest import VENV_BIN, Server, free_port, wait_for

# Wide enough that rich never shortens a cell the tests look for.
ENV = {"COLUMNS": "200", "FLEETSCOPE_URL": None}

Run = Callable[..., Result]


def invoke(app: typer.Typer, *args: str, env: dict | None = None) -> Result:
    # catch_exceptions=False: a bug in the CLI fails the test with its traceback rather than
    # hiding in result.exception.
    return CliRunner().invoke(app, list(args), env={**ENV, **(env or {})}, catch_exceptions=False)


def assert_error(result: Result, pattern: str) -> None:
    """Exit 1, one ``error: ...`` line on stderr matching ``pattern``, no traceback."""
    assert result.exit_code == 1, (result.exit_code, result.output)
    assert re.search(pattern, result.stderr), result.stderr
    assert result.stderr.startswith("error: "), result.stderr
    assert "Traceback" not in result.output


# =========================================================================== pure helpers


class TestSparkline:
    def test_rises_from_lowest_to_highest_tick(self) -> None:
        assert views.sparkline([0, 1, 2, 3, 4, 5, 6, 7]) == "▁▂▃▄▅▆▇█"

    def test_drawn_from_zero_by_default(self) -> None:
        # 10 and 11 are close to each other but far from zero: both near the top.
        assert views.sparkline([10, 11]) == "▇█"

    def test_explicit_range(self) -> None:
        assert views.sparkline([10, 11], lo=10, hi=11) == "▁█"
        assert views.sparkline([5, 50], lo=0, hi=10) == "▅█"  # clamped to the top

    def test_missing_values_are_blank(self) -> None:
        assert views.sparkline([None, 1.0, math.nan, 2.0]) == " ▅ █"
        assert views.sparkline([None, None]) == "  "
        assert views.sparkline([]) == ""

    def test_flat_line(self) -> None:
        assert views.sparkline([0, 0, 0]) == "▁▁▁"
        assert views.sparkline([3, 3]) == "██"

    def test_negative_values_lower_the_floor(self) -> None:
        assert views.sparkline([-1, 0, 1]) == "▁▅█"


class TestBar:
    def test_full_and_partial_cells(self) -> None:
        assert views.bar(10, 10, 4) == "████"
        assert views.bar(5, 10, 4) == "██"
        assert views.bar(1, 8, 1) == "▏"
        assert views.bar(9, 16, 2) == "█▏"

    def test_nothing_to_draw(self) -> None:
        assert views.bar(0, 10, 4) == ""
        assert views.bar(3, 0, 4) == ""
        assert views.bar(math.nan, 1, 4) == ""


class TestShadeLevels:
    def test_empty_cells_are_blank(self) -> None:
        assert views.shade_levels([[0, 0], [0, 0]]) == [[0, 0], [0, 0]]
        assert views.shade_levels([]) == []

    def test_levels_by_rank_not_by_size(self) -> None:
        # Four distinct counts get the four shades, however skewed their sizes.
        assert views.shade_levels([[1, 2], [0, 1000], [1_000_000, 0]]) == [[1, 2], [0, 3], [4, 0]]

    def test_equal_counts_share_a_level(self) -> None:
        assert views.shade_levels([[5, 5], [5, 0]]) == [[4, 4], [4, 0]]
        # Ranked among distinct counts: many small cells do not push the small count up.
        assert views.shade_levels([[1, 1, 1, 1, 9]]) == [[2, 2, 2, 2, 4]]

    def test_fractional_counts(self) -> None:
        # Heatmap rows spread bucket counts over rows: fractions are still non-empty cells.
        assert views.shade_levels([[0.25, 0.0], [0.5, 1.5]]) == [[2, 0], [3, 4]]

    def test_monotone_in_count(self) -> None:
        counts = [[float(c)] for c in (3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5)]
        levels = [row[0] for row in views.shade_levels(counts)]
        pairs = sorted(zip((c[0] for c in counts), levels, strict=True))
        assert [lvl for _, lvl in pairs] == sorted(lvl for _, lvl in pairs)
        assert set(levels) <= {1, 2, 3, 4} and max(levels) == 4


class TestHeatmapLines:
    HEATMAP = {
        "ymin": 0,
        "ymax": 30,
        "nbuckets": 3,
        "times": [1000, 1001, 1002, 1003],
        # counts[time column][row], row 0 the lowest bucket
        "counts": [[4, 0, 0], [0, 2, 0], [0, 0, 1], [0, 0, 0]],
        "keys": {},
        "present": [],
        "max": 4,
    }

    def test_rows_top_down_and_shaded_by_rank(self) -> None:
        lines = views.heatmap_lines(self.HEATMAP, NUMBER, label_every=1)
        assert len(lines) == 3 + 2  # rows, axis, times
        top, middle, bottom = (line.split("┤")[1] for line in lines[:3])
        assert top == "  ▒ "  # count 1: lowest of 3 distinct counts, ceil(4 * 1/3) = 2
        assert middle == " ▓  "  # count 2: ceil(4 * 2/3) = 3
        assert bottom == "█   "  # count 4: the largest
        assert lines[0].startswith("30┤") and lines[2].startswith("10┤")
        assert lines[3] == " 0└────"

    def test_labels_every_nth_row_with_units(self) -> None:
        heatmap = {**self.HEATMAP, "ymax": 60, "nbuckets": 6,
                   "counts": [[1, 0, 0, 0, 0, 0]] * 4}
        lines = views.heatmap_lines(heatmap, MILLISECONDS, label_every=3)
        labelled = [line.split("┤")[0].strip() for line in lines[:6] if "┤" in line]
        assert labelled == ["60 ms", "30 ms"]
        assert all("│" in line for line in lines[:6] if "┤" not in line)
        assert lines[6].lstrip().startswith("0└")
        assert time.strftime("%H:%M:%S", time.localtime(1000)) in lines[7]

    def test_empty_heatmap(self) -> None:
        heatmap = {"ymin": 0, "ymax": 0, "nbuckets": 2, "times": [], "counts": []}
        assert views.heatmap_lines(heatmap) == ["0┤", " │", "0└"]


def _hist(count: float, total: float) -> dict:
    return {"schema": 3, "zero_threshold": 0, "zero_count": 0, "count": count, "sum": total,
            "buckets": {"8": count}}


def _inst(shape: str, unit: dict | None = None, granularity: int = 1) -> dict:
    return {"id": 7, "module": "app", "stat": "http_requests", "metric": "app.http_requests",
            "shape": shape, "granularity": granularity,
            "unit": unit or {"base": "number", "power": 0, "name": "number"}}


def _hm(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t))


class TestValueTable:
    def test_scalar(self) -> None:
        points = [
            {"start_time": 1000, "duration": 1, "value": 1.5, "nsources": 2, "expected": 2},
            {"start_time": 1001, "duration": 1, "value": None, "nsources": 0, "expected": 2},
        ]
        seconds = {"base": "seconds", "power": 0, "name": "s"}
        headers, rows = views.value_table(_inst("scalar", seconds), points)
        assert headers == ["time", "value", "sources"]
        assert rows == [[_hm(1000), "1.5 s", "2/2"], [_hm(1001), "-", "0/2"]]

    def test_breakdown_top_keys_as_columns_and_the_rest(self) -> None:
        points = [
            {"start_time": 1000, "value": {"a": 1, "b": 10, "c": 3}, "nsources": 1, "expected": 1},
            {"start_time": 1001, "value": {"a": 9, "d": 4}, "nsources": 1, "expected": 1},
        ]
        headers, rows = views.value_table(_inst("discrete"), points, top=2)
        # by total over the window: b 10, a 10 (ties by name), d 4, c 3
        assert headers == ["time", "a", "b", "(rest)", "sources"]
        assert rows == [[_hm(1000), "1", "10", "3", "1/1"], [_hm(1001), "9", "0", "4", "1/1"]]

    def test_breakdown_without_rest_column_when_all_keys_fit(self) -> None:
        points = [{"start_time": 1000, "value": {"x": 2.5}, "nsources": 1}]
        headers, rows = views.value_table(_inst("discrete"), points)
        assert headers == ["time", "x", "sources"]
        assert rows == [[_hm(1000), "2.5", "1"]]

    def test_histogram_with_percentiles_joined_by_time(self) -> None:
        points = [
            {"start_time": 1000, "value": _hist(4, 40.0), "nsources": 1, "expected": 1},
            {"start_time": 1001, "value": _hist(0, 0.0), "nsources": 1, "expected": 1},
        ]
        percentiles = [
            {"start_time": 1000, "duration": 1,
             "percentiles": {"0.5": 8.0, "0.9": 12.0, "0.99": 15.5}},
            {"start_time": 1001, "duration": 1,
             "percentiles": {"0.5": None, "0.9": None, "0.99": None}},
        ]
        headers, rows = views.value_table(
            _inst("histogram"), points, percentiles, field_unit=MILLISECONDS
        )
        assert headers == ["time", "count", "average", "p50", "p90", "p99", "sources"]
        assert rows[0] == [_hm(1000), "4", "10 ms", "8 ms", "12 ms", "15.5 ms", "1/1"]
        assert rows[1] == [_hm(1001), "0", "-", "-", "-", "-", "1/1"]

    def test_breakdown_of_histograms_summarised_over_keys(self) -> None:
        points = [{"start_time": 1000, "nsources": 3, "expected": 4,
                   "value": {"GET /": _hist(3, 3.0), "POST /": _hist(1, 0.0)}}]
        headers, rows = views.value_table(_inst("discrete_histogram"), points, field_unit=SECONDS)
        assert headers[:3] == ["time", "count", "average"]
        assert rows[0][1:3] == ["4", "750 ms"]
        assert rows[0][3:6] == ["-", "-", "-"]  # no percentiles answer given
        assert rows[0][-1] == "3/4"

    @pytest.mark.parametrize("shape", ["scalar", "discrete", "histogram", "discrete_histogram"])
    def test_a_second_without_data_is_a_gap_not_zero(self, shape: str) -> None:
        # The API answers a slot nobody reported for with value null and sources 0/N; the
        # dashboard draws a gap, and so must the table: no "0" in any value column.
        real = {"scalar": 0, "discrete": {"a": 0, "b": 2}, "histogram": _hist(0, 0.0),
                "discrete_histogram": {"a": _hist(0, 0.0)}}[shape]
        points = [{"start_time": 1000, "duration": 1, "value": None, "nsources": 0, "expected": 1},
                  {"start_time": 1001, "duration": 1, "value": real, "nsources": 1, "expected": 1}]
        headers, rows = views.value_table(_inst(shape), points)
        gap, data = rows
        assert gap[0] == _hm(1000) and gap[-1] == "0/1"
        assert gap[1:-1] == ["-"] * (len(headers) - 2), (headers, gap)
        # A value that really is zero still prints 0 (and a key at 0 beside one at 2).
        expected = {"scalar": ["0"], "discrete": ["2", "0"], "histogram": ["0", "-", "-", "-", "-"],
                    "discrete_histogram": ["0", "-", "-", "-", "-"]}[shape]
        assert data[1:-1] == expected, (headers, data)

    def test_hour_slots_show_the_date(self) -> None:
        points = [{"start_time": 7200, "value": 1, "nsources": 1, "expected": 1}]
        _, rows = views.value_table(_inst("scalar", granularity=3600), points)
        assert rows[0][0] == time.strftime("%Y-%m-%d %H:%M", time.localtime(7200))


class TestSmallHelpers:
    @pytest.mark.parametrize(
        ("seconds", "text"),
        [(0, "0s"), (59, "59s"), (60, "1m"), (600, "10m"), (5400, "1h30m"), (86400, "1d"),
         (90061, "1d1h1m1s"), (None, "-")],
    )
    def test_format_duration(self, seconds: int | None, text: str) -> None:
        assert fmt.format_duration(seconds) == text

    @given(st.integers(min_value=0, max_value=10**9))
    def test_format_duration_parses_back(self, seconds: int) -> None:
        assert parse_duration(fmt.format_duration(seconds)) == seconds

    def test_since_window(self) -> None:
        assert value_commands.since_window(60, 1, 1000.7) == (940, 60)
        assert value_commands.since_window(60, 10, 1005) == (940, 6)  # slots start on multiples of 10
        assert value_commands.since_window(5, 10, 1005) == (990, 1)  # at least one point

    def test_split_metric(self) -> None:
        assert inst_commands.split_metric("proc.cpu") == ("proc", "cpu")
        assert inst_commands.split_metric("app.http.requests") == ("app", "http.requests")
        for bad in ("proc", "proc.", ".cpu", ""):
            with pytest.raises(InputError) as info:
                inst_commands.split_metric(bad)
            assert info.value.field == "metric"

    def test_predicate_arg(self) -> None:
        assert inst_commands.predicate_arg('execname == "x"') == 'execname == "x"'
        assert inst_commands.predicate_arg('{"eq": ["execname", "x"]}') == {"eq": ["execname", "x"]}
        assert inst_commands.predicate_arg("{not json") == "{not json"

    def test_format_value(self) -> None:
        assert fmt.format_value(12345.6, NUMBER) == "12,346"
        assert fmt.format_value(3, NUMBER) == "3"
        assert fmt.format_value(0.25, NUMBER) == "0.25"
        assert fmt.format_value(0, MILLISECONDS) == "0"
        assert fmt.format_value(1500, MILLISECONDS) == "1.5 s"
        assert fmt.format_value(None, NUMBER) == "-"
        assert fmt.format_value(math.inf, NUMBER) == "-"

    def test_describe(self) -> None:
        inst = {"metric": "proc.cpu", "decomposition": ["execname"],
                "predicate_text": 'execname != "idle"'}
        assert fmt.describe(inst) == 'proc.cpu by execname where execname != "idle"'
        assert fmt.describe({"module": "cpu", "stat": "usage", "decomposition": []}) == "cpu.usage"

    def test_numeric_field_type(self) -> None:
        metrics = [{"name": "app.http_requests", "fields": [
            {"name": "hostname", "kind": "discrete", "type": {"base": "number"}},
            {"name": "latency", "kind": "numeric", "type": {"base": "seconds", "power": -3}},
        ]}]
        inst = {"metric": "app.http_requests", "decomposition": ["hostname", "latency"]}
        assert fmt.numeric_field_type(metrics, inst) == MILLISECONDS
        assert fmt.numeric_field_type([], inst) == NUMBER


class TestApiErrors:
    def _response(self, status: int, body: Any = None, text: str | None = None) -> httpx.Response:
        if text is not None:
            return httpx.Response(status, text=text)
        return httpx.Response(status, json=body)

    def test_error_body(self) -> None:
        err = client.error_from_response(self._response(
            422, {"error": {"code": "invalid", "message": "bad thing", "field": "predicate"}}
        ))
        assert str(err) == "predicate: bad thing"
        assert (err.status, err.code, err.field) == (422, "invalid", "predicate")

    def test_error_without_field(self) -> None:
        err = client.error_from_response(self._response(
            409, {"error": {"code": "conflict", "message": "busy", "field": None}}
        ))
        assert str(err) == "busy"

    def test_anything_else_is_one_line_with_the_status(self) -> None:
        err = client.error_from_response(self._response(502, text="<html>\n<b>Bad</b>\n</html>"))
        assert str(err) == "the server answered 502 Bad Gateway: <html> <b>Bad</b> </html>"
        assert str(client.error_from_response(self._response(500, {"detail": "x"}))).startswith(
            "the server answered 500"
        )

    def test_bearer_token_from_the_argument_or_the_environment(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        seen: list[str | None] = []

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(request.headers.get("authorization"))
            return httpx.Response(200, json={"metrics": []})

        mock = httpx.MockTransport(handler)
        monkeypatch.delenv("FLEETSCOPE_TOKEN", raising=False)
        for api in (client.Api("http://x", transport=mock),
                    client.Api.from_environment("http://x", transport=mock),
                    client.Api("http://x", token="s3cret", transport=mock)):
            with api:
                assert api.metrics() == []
        monkeypatch.setenv("FLEETSCOPE_TOKEN", "from-env")
        with client.Api.from_environment("http://x", transport=mock) as api:
            api.metrics()
        assert seen == [None, None, "Bearer s3cret", "Bearer from-env"]

    def test_client_leaves_out_absent_parameters_and_maps_errors(self) -> None:
        seen: list[httpx.Request] = []

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            if request.method == "DELETE":
                return httpx.Response(204)
            if request.url.path.endswith("/404/value"):
                return httpx.Response(404, json={"error": {
                    "code": "not_found", "message": "no instrumentation 404", "field": "id"}})
            return httpx.Response(200, json=[{"start_time": 1, "value": 2}])

        with client.Api("http://fleet.example:7070/", transport=httpx.MockTransport(handler)) as api:
            assert api.values(3, start_time=100, duration=None, ndatapoints=5) == [
                {"start_time": 1, "value": 2}]
            assert api.delete(3) is None
            with pytest.raises(client.ApiError) as info:
                api.values(404)
        assert str(seen[0].url) == (
            "http://fleet.example:7070/api/v1/instrumentations/3/value?start_time=100&ndatapoints=5"
        )
        assert str(info.value) == "id: no instrumentation 404"


# =========================================================================== CLI, no server


@pytest.fixture(scope="module")
def local_app() -> typer.Typer:
    """The client commands on an app of their own: runs before (and apart from) fleetscope.cli.main."""
    app = typer.Typer()

    @app.command()
    def serve() -> None:  # a second command, as in fleetscope.cli.main, so that names are needed
        """(stand-in)"""

    commands.register(app)
    return app


@pytest.fixture(scope="module")
def nowhere() -> str:
    """A URL nothing listens on."""
    return f"http://127.0.0.1:{free_port()}"


class TestWithoutServer:
    @pytest.mark.parametrize(
        "args",
        [["metrics"], ["inst", "list"], ["inst", "show", "1"], ["inst", "delete", "1"],
         ["inst", "create", "proc.cpu"], ["value", "1"], ["watch", "1", "--count", "1"]],
    )
    def test_connection_refused_names_the_url(
        self, local_app: typer.Typer, nowhere: str, args: list[str]
    ) -> None:
        result = invoke(local_app, *args, "--url", nowhere)
        assert_error(result, re.escape(f"cannot connect to {nowhere}") + r".*fleetscope serve")

    def test_url_from_the_environment(self, local_app: typer.Typer, nowhere: str) -> None:
        result = invoke(local_app, "inst", "list", env={"FLEETSCOPE_URL": nowhere})
        assert_error(result, re.escape(nowhere))

    def test_bad_url(self, local_app: typer.Typer) -> None:
        assert_error(invoke(local_app, "metrics", "--url", "localhost"), r"^error: url: ")

    # Arguments are checked before anything is sent: these fail the same with no server.
    @pytest.mark.parametrize(
        ("args", "pattern"),
        [
            (["inst", "create", "proc.cpu", "--retention", "10x"], r"^error: retention: '10x'"),
            (["inst", "create", "proc.cpu", "--idle-max", "soon"], r"^error: idle_max: 'soon'"),
            (["inst", "create", "proccpu"], r"^error: metric: 'proccpu' is not module\.stat"),
            (["inst", "update", "1", "--retention", "-5m"], r"^error: retention: "),
            (["value", "1", "--since", "a minute"], r"^error: since: 'a minute'"),
            (["value", "1", "--since", "0"], r"^error: since: must be a positive duration"),
        ],
    )
    def test_bad_arguments(
        self, local_app: typer.Typer, nowhere: str, args: list[str], pattern: str
    ) -> None:
        assert_error(invoke(local_app, *args, "--url", nowhere), pattern)

    @pytest.mark.parametrize(
        "args",
        [["inst", "update", "1"], ["inst", "show", "one"], ["watch", "1", "--count", "0"],
         ["inst", "create"], ["nosuchcommand"]],
    )
    def test_usage_errors_exit_2(self, local_app: typer.Typer, nowhere: str, args: list[str]) -> None:
        result = invoke(local_app, *args, "--url", nowhere)
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output

    def test_help_lists_the_commands(self, local_app: typer.Typer) -> None:
        result = invoke(local_app, "--help")
        assert result.exit_code == 0
        for name in ("metrics", "inst", "value", "watch", "serve"):
            assert name in result.output
        result = invoke(local_app, "inst", "--help")
        for name in ("create", "list", "show", "update", "delete"):
            assert name in result.output


# =========================================================================== CLI, real server


@pytest.fixture(scope="module")
def cli() -> typer.Typer:
    from fleetscope.cli.main import app

    return app


@pytest.fixture
def run(cli: typer.Typer, server: Server) -> Run:
    """Run ``fleetscope ARGS --url <server>``."""

    def run(*args: str) -> Result:
        return invoke(cli, *args, "--url", server.url)

    return run


def ok(result: Result) -> Result:
    assert result.exit_code == 0, (result.exit_code, result.output)
    return result


def ok_json(result: Result) -> Any:
    return json.loads(ok(result).stdout)


@pytest.fixture
def create(run: Run) -> Iterator[Callable[..., dict]]:
    """``create(*args)``: ``fleetscope inst create ARGS --json``; deleted after the test."""
    made: list[int] = []

    def create(*args: str) -> dict:
        inst = ok_json(run("inst", "create", *args, "--json"))
        made.append(inst["id"])
        return inst

    yield create
    for inst_id in made:
        run("inst", "delete", str(inst_id))  # may be gone already


@pytest.fixture(scope="module")
def catalogue(cli: typer.Typer, server: Server) -> list[dict]:
    return ok_json(invoke(cli, "metrics", "--json", "--url", server.url))["metrics"]


@pytest.fixture(scope="module")
def numeric(catalogue: list[dict]) -> tuple[str, str]:
    """``(metric, numeric field)`` of the first metric with a numeric field."""
    for metric in catalogue:
        for field in metric["fields"]:
            if field["kind"] == "numeric":
                return metric["name"], field["name"]
    pytest.fail("no metric with a numeric field in the catalogue")


def wait_for_data(run: Run, inst_id: int, timeout: float = 15.0) -> list[dict]:
    """The last 5 s of values once a point has a source (the agent reports every second)."""
    deadline = time.monotonic() + timeout
    while True:
        points = ok_json(run("value", str(inst_id), "--since", "5s", "--json"))
        if any(p.get("nsources") for p in points) or time.monotonic() > deadline:
            return points
        time.sleep(0.5)


class TestMetrics:
    def test_table(self, run: Run, catalogue: list[dict]) -> None:
        out = ok(run("metrics")).stdout
        for metric in catalogue:
            assert metric["name"] in out
            assert metric["label"] in out
        assert "proc.cpu" in out and "execname" in out and "hostname" in out
        assert "discrete fields" in out and "numeric fields" in out

    def test_json(self, catalogue: list[dict]) -> None:
        names = {m["name"] for m in catalogue}
        assert "proc.cpu" in names
        for metric in catalogue:
            assert {"module", "stat", "name", "label", "unit", "kind", "fields"} <= set(metric)


class TestLifecycle:
    """create -> list -> show -> update -> value -> watch -> delete, each through the CLI."""

    def test_create_prints_the_id_and_the_instrumentation(self, run: Run) -> None:
        result = ok(run(
            "inst", "create", "proc.cpu", "--by", "execname",
            "--where", 'execname != "idle" and hostname != "nosuchhost"',
            "--granularity", "1", "--retention", "10m", "--idle-max", "2h", "--no-persist",
        ))
        match = re.match(r"created instrumentation (\d+): proc\.cpu by execname where ", result.stdout)
        assert match, result.stdout
        inst_id = match.group(1)
        for text in ("retention", "10m", "idle_max", "2h", "persist", "discrete"):
            assert text in result.stdout
        inst = ok_json(run("inst", "show", inst_id, "--json"))
        assert inst["retention"] == 600 and inst["idle_max"] == 7200 and inst["persist"] is False
        assert inst["decomposition"] == ["execname"] and inst["shape"] == "discrete"
        assert inst["predicate"] != {}  # the --where text was sent and parsed
        ok(run("inst", "delete", inst_id))

    def test_create_json(self, create: Callable[..., dict]) -> None:
        inst = create("proc.cpu", "--retention", "90", "--persist")
        assert inst["module"] == "proc" and inst["stat"] == "cpu"
        assert inst["retention"] == 90 and inst["persist"] is True
        assert inst["shape"] == "scalar" and inst["granularity"] == 1

    def test_create_with_json_predicate(self, create: Callable[..., dict]) -> None:
        inst = create("proc.cpu", "--where", '{"ne": ["execname", "idle"]}')
        assert inst["predicate"] == {"ne": ["execname", "idle"]}

    def test_list(self, run: Run, create: Callable[..., dict]) -> None:
        a = create("proc.cpu", "--by", "execname")
        b = create("proc.cpu", "--where", 'execname == "nosuchprocess"')
        listed = ok_json(run("inst", "list", "--json"))["instrumentations"]
        assert {a["id"], b["id"]} <= {i["id"] for i in listed}
        out = ok(run("inst", "list")).stdout
        for inst in (a, b):
            assert re.search(rf"│\s+{inst['id']} │ proc\.cpu", out), out
        assert "nosuchprocess" in out

    def test_show(self, run: Run, create: Callable[..., dict]) -> None:
        inst = create("proc.cpu", "--by", "execname", "--granularity", "5")
        shown = ok_json(run("inst", "show", str(inst["id"]), "--json"))
        for key in ("id", "module", "stat", "decomposition", "granularity", "retention",
                    "idle_max", "persist", "created", "shape", "predicate"):
            assert shown[key] == inst[key], key
        out = ok(run("inst", "show", str(inst["id"]))).stdout
        assert re.search(r"id\s+" + str(inst["id"]), out)
        assert re.search(r"granularity\s+5s", out)
        assert re.search(r"decomposition\s+execname", out)

    def test_update(self, run: Run, create: Callable[..., dict]) -> None:
        inst_id = str(create("proc.cpu", "--retention", "10m")["id"])
        out = ok(run("inst", "update", inst_id, "--retention", "20m", "--persist")).stdout
        assert f"updated instrumentation {inst_id}" in out and "20m" in out
        inst = ok_json(run("inst", "show", inst_id, "--json"))
        assert inst["retention"] == 1200 and inst["persist"] is True
        updated = ok_json(run("inst", "update", inst_id, "--idle-max", "1d", "--no-persist",
                              "--json"))
        assert updated["idle_max"] == 86400 and updated["persist"] is False
        assert updated["retention"] == 1200  # untouched

    def test_delete(self, run: Run, create: Callable[..., dict]) -> None:
        inst_id = str(create("proc.cpu")["id"])
        assert ok(run("inst", "delete", inst_id)).stdout.strip() == (
            f"deleted instrumentation {inst_id}"
        )
        assert_error(run("inst", "show", inst_id), inst_id)
        listed = ok_json(run("inst", "list", "--json"))["instrumentations"]
        assert int(inst_id) not in {i["id"] for i in listed}


class TestValue:
    def test_scalar(self, run: Run, create: Callable[..., dict]) -> None:
        inst_id = str(create("proc.cpu")["id"])
        points = wait_for_data(run, int(inst_id))
        assert len(points) == 5
        assert all({"start_time", "duration", "value", "nsources", "expected"} <= set(p)
                   for p in points)
        times = [p["start_time"] for p in points]
        assert times == sorted(times) and times[-1] - times[0] == 4
        assert any(p["nsources"] >= 1 and isinstance(p["value"], int | float) for p in points)
        out = ok(run("value", inst_id, "--since", "5s")).stdout
        assert f"instrumentation {inst_id}: proc.cpu" in out
        assert "time" in out and "value" in out and "sources" in out
        rows = [line for line in out.splitlines() if re.match(r"│ \d\d:\d\d:\d\d ", line)]
        assert len(rows) == 5
        assert any(re.search(r" 1/1 │$", row) for row in rows), out

    def test_since_sets_the_number_of_points(self, run: Run, create: Callable[..., dict]) -> None:
        inst_id = str(create("proc.cpu", "--granularity", "5")["id"])
        points = ok_json(run("value", inst_id, "--since", "1m", "--json"))
        assert len(points) == 12
        assert all(p["start_time"] % 5 == 0 for p in points)

    def test_breakdown(self, run: Run, create: Callable[..., dict]) -> None:
        inst_id = create("proc.cpu", "--by", "execname")["id"]
        points = wait_for_data(run, inst_id)
        # Slots before the instrumentation existed have no sources and no value.
        assert all(isinstance(p["value"], dict) for p in points if p["nsources"])
        keys = {k for p in points if p["nsources"] for k in p["value"]}
        assert keys, points
        out = ok(run("value", str(inst_id), "--since", "5s")).stdout
        header = next(line for line in out.splitlines() if line.startswith("┃ time"))
        assert "sources" in header
        assert any(key in header for key in keys), (keys, header)

    def test_histogram(
        self, run: Run, create: Callable[..., dict], numeric: tuple[str, str]
    ) -> None:
        metric, field = numeric
        inst_id = create(metric, "--by", field)["id"]
        points = wait_for_data(run, inst_id)
        assert any(p["nsources"] for p in points)
        for p in points:
            if p["nsources"]:
                assert {"schema", "count", "sum", "buckets"} <= set(p["value"])
        out = ok(run("value", str(inst_id), "--since", "5s")).stdout
        for column in ("count", "average", "p50", "p90", "p99", "sources"):
            assert column in out

    def test_breakdown_of_histograms(
        self, run: Run, create: Callable[..., dict], numeric: tuple[str, str]
    ) -> None:
        metric, field = numeric
        inst = create(metric, "--by", "hostname", "--by", field)
        assert inst["shape"] == "discrete_histogram"
        out = ok(run("value", str(inst["id"]), "--since", "3s")).stdout
        for column in ("count", "average", "p50", "p99"):
            assert column in out


class TestWatch:
    def test_scalar(self, run: Run, create: Callable[..., dict]) -> None:
        inst_id = create("proc.cpu")["id"]
        wait_for_data(run, inst_id)
        started = time.monotonic()
        out = ok(run("watch", str(inst_id), "--count", "2")).stdout
        assert time.monotonic() - started >= 0.9  # one interval between the two refreshes
        assert out.count(f"instrumentation {inst_id}: proc.cpu") == 2
        assert re.search("[▁▂▃▄▅▆▇█]", out)
        assert "sources" in out

    def test_breakdown(self, run: Run, create: Callable[..., dict]) -> None:
        inst_id = create("proc.cpu", "--by", "execname")["id"]
        wait_for_data(run, inst_id)
        out = ok(run("watch", str(inst_id), "--count", "2", "--interval", "0.5")).stdout
        assert out.count(f"instrumentation {inst_id}: proc.cpu by execname") == 2
        assert "█" in out  # the bar of the largest key is full

    def test_distribution(
        self, run: Run, create: Callable[..., dict], numeric: tuple[str, str]
    ) -> None:
        metric, field = numeric
        inst_id = create(metric, "--by", field)["id"]
        wait_for_data(run, inst_id)
        out = ok(run("watch", str(inst_id), "--count", "2", "--interval", "0.5")).stdout
        assert out.count("└─") == 2  # the heatmap's axis, once per refresh
        assert out.count("p50 ") == 2 and "p99 " in out

    def test_ctrl_c_exits_cleanly(self, server: Server, create: Callable[..., dict]) -> None:
        inst_id = create("proc.cpu")["id"]
        proc = subprocess.Popen(
            [str(VENV_BIN / "fleetscope"), "watch", str(inst_id), "--url", server.url],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "COLUMNS": "120"},
            # A process started in the background may inherit SIGINT ignored; undo that so
            # that the signal arrives as a terminal's Ctrl-C would.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        try:
            assert proc.stdout is not None
            first = proc.stdout.readline()  # the first refresh has started printing
            assert f"instrumentation {inst_id}" in first
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 0, err
        assert "Traceback" not in err and "Aborted" not in err


class TestErrorsFromServer:
    def test_unknown_metric(self, run: Run) -> None:
        result = run("inst", "create", "nosuch.metric")
        assert_error(result, r"^error: (module|stat|metric): .*nosuch")

    @pytest.mark.parametrize(
        ("where", "names"),
        [('execname == "unterminated', None), ("execname ==", None), ("and and", None),
         ('nosuchfield == "x"', "nosuchfield"), ("execname > 10ms", "execname")],
    )
    def test_bad_where(self, run: Run, where: str, names: str | None) -> None:
        result = run("inst", "create", "proc.cpu", "--where", where)
        assert_error(result, r"^error: predicate: ")
        if names:
            assert names in result.stderr

    @pytest.mark.parametrize(
        "by", [["nosuchfield"], ["hostname", "execname"]],
    )
    def test_bad_decomposition(self, run: Run, by: list[str]) -> None:
        args = [a for field in by for a in ("--by", field)]
        assert_error(run("inst", "create", "proc.cpu", *args), r"^error: decomposition: ")

    def test_bad_granularity(self, run: Run) -> None:
        assert_error(run("inst", "create", "proc.cpu", "--granularity", "0"),
                     r"^error: granularity: ")

    def test_bad_duration(self, run: Run, create: Callable[..., dict]) -> None:
        assert_error(run("inst", "create", "proc.cpu", "--retention", "ten minutes"),
                     r"^error: retention: ")
        inst_id = str(create("proc.cpu")["id"])
        assert_error(run("inst", "update", inst_id, "--idle-max", "1x"), r"^error: idle_max: ")
        assert_error(run("value", inst_id, "--since", "-1m"), r"^error: since: ")

    @pytest.mark.parametrize(
        ("before", "after"),
        [(["inst", "show"], []), (["inst", "delete"], []), (["inst", "update"], ["--persist"]),
         (["value"], []), (["watch"], ["--count", "1"])],
    )
    def test_unknown_id(self, run: Run, before: list[str], after: list[str]) -> None:
        assert_error(run(*before, "987654", *after), r"^error: id: .*987654")



def test_hosts_command_lists_this_machine(server: Server) -> None:
    exe = str(VENV_BIN / "fleetscope")
    deadline = time.monotonic() + 15
    while True:
        out = subprocess.run([exe, "hosts", "--url", server.url, "--json"], capture_output=True,
                             text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        hosts = json.loads(out.stdout)["hosts"]
        if any(h["hostname"] == socket.gethostname() and h["instrumentations"] for h in hosts):
            break
        assert time.monotonic() < deadline, hosts
        time.sleep(0.5)
    table = subprocess.run([exe, "hosts", "--url", server.url], capture_output=True, text=True,
                           timeout=30, env={**os.environ, "COLUMNS": "200"})
    assert table.returncode == 0
    assert socket.gethostname() in table.stdout and "online" in table.stdout and "buffered" in table.stdout


def test_value_over_a_long_look_back_is_rolled_up(server: Server) -> None:
    """`--since 7d` would be 604,800 one-second points: the server rolls them up to at most 500."""
    exe = str(VENV_BIN / "fleetscope")
    listing = subprocess.run([exe, "inst", "list", "--url", server.url, "--json"], capture_output=True,
                             text=True, timeout=30)
    first = json.loads(listing.stdout)["instrumentations"][0]["id"]
    out = subprocess.run([exe, "value", str(first), "--since", "7d", "--json", "--url", server.url],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    points = json.loads(out.stdout)
    assert 1 <= len(points) <= 500
    assert points[0]["duration"] >= 7 * 86400 // 500


# =========================================================================== papercuts


def test_value_shows_seconds_before_the_instrumentation_as_gaps(
    run: Run, create: Callable[..., dict]
) -> None:
    """The seconds of `value --since` before an instrumentation existed have no data: the API says
    null (sources 0/N), and the table shows "-" there, never a 0 that looks like a measurement."""
    inst = create("proc.cpu", "--by", "execname")
    wait_for_data(run, inst["id"])
    points = ok_json(run("value", str(inst["id"]), "--since", "30s", "--json"))
    before = {_hm(p["start_time"]) for p in points if p["start_time"] + 1 < inst["created"]}
    assert before and all(p["value"] is None for p in points if _hm(p["start_time"]) in before), points
    out = ok(run("value", str(inst["id"]), "--since", "30s")).stdout
    rows = {cells[0]: cells[1:] for line in out.splitlines() if re.match(r"│ \d\d:\d\d:\d\d ", line)
            for cells in [[c.strip() for c in line.strip("│").split("│")]]}
    gaps = [rows[t] for t in sorted(before) if t in rows]
    assert gaps, (before, out)
    for cells in gaps:
        assert cells[-1].startswith("0/") and set(cells[:-1]) == {"-"}, (cells, out)


def test_tables_are_not_cut_when_piped(server: Server) -> None:
    """With stdout a pipe and no COLUMNS, nothing is shortened to 80 columns (`hostna…`)."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "FLEETSCOPE_URL")}
    exe = str(VENV_BIN / "fleetscope")
    listing = subprocess.run([exe, "metrics", "--json", "--url", server.url], capture_output=True, text=True,
                             timeout=30, env=env, check=True)
    catalogue = json.loads(listing.stdout)["metrics"]
    out = subprocess.run([exe, "metrics", "--url", server.url], capture_output=True, text=True, timeout=30,
                         env=env)
    assert out.returncode == 0, out.stderr
    assert "…" not in out.stdout
    lines = out.stdout.splitlines()
    for metric in catalogue:  # each metric on one line, its label and its fields whole
        line = next((x for x in lines if f" {metric['name']} " in x), None)
        assert line is not None, (metric["name"], out.stdout)
        assert metric["label"] in line, (metric["label"], line)
        for field in metric["fields"]:
            assert field["name"] in line, (field["name"], line)
    assert max(len(x) for x in lines) > 80  # the table was laid out wider than a terminal
    # COLUMNS still says how wide the table may be.
    narrow = subprocess.run([exe, "metrics", "--url", server.url], capture_output=True, text=True, timeout=30,
                            env={**env, "COLUMNS": "100"})
    assert max(len(x) for x in narrow.stdout.splitlines()) <= 100


def test_store_stats_of_a_missing_store_is_an_error_and_creates_nothing(
    cli: typer.Typer, tmp_path: Path
) -> None:
    typo = tmp_path / "typo" / "x.db"
    result = invoke(cli, "store", "stats", "--store", f"sqlite:///{typo}")
    assert_error(result, r"^error: store: .*" + re.escape(str(typo)))
    assert not typo.exists() and not typo.parent.exists()
    # The same path once a store is there: read, 0 samples.
    from fleetscope.store.open import open_store

    open_store(f"sqlite:///{typo}").close()
    body = ok_json(invoke(cli, "store", "stats", "--store", f"sqlite:///{typo}", "--json"))
    assert body["samples"] == 0 and body["tiers"] == []


def _commands(group: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every command and subcommand of a click group (Typer's own click: duck-typed)."""
    for name, command in group.commands.items():
        yield (*path, name), command
        if hasattr(command, "commands"):
            yield from _commands(command, (*path, name))


def test_help_shows_every_bracket(cli: typer.Typer) -> None:
    """Typer reads help as rich markup, which takes "[agent]" for a style and drops it
    ("TOML file ( table)"); every bracketed text of every help must show."""
    root = typer.main.get_command(cli)
    checked = 0
    for path, command in _commands(root):
        out = invoke(cli, *path, "--help", env={"COLUMNS": "400"})
        assert out.exit_code == 0, (path, out.output)
        texts = [command.help or ""] + [getattr(p, "help", None) or "" for p in command.params]
        for text in texts:
            for inner in re.findall(r"\[([^\[\]]*)\]", text.replace("\\[", "[")):
                assert f"[{inner}]" in out.stdout, (path, inner, out.stdout)
                checked += 1
    assert checked >= 9  # [HOST:]PORT and URL[,interval] of serve and agent; [agent], [aggregator], [api]


def test_defaults_makes_the_guests_dashboard_where_it_is_missing(tmp_path: Path) -> None:
    """A fleet's `fleetscope defaults` makes the Guests dashboard (its API servers do not make it by
    themselves): here against a serve on a host with a container (a cgroup of the test's own)
    whose Guests dashboard was deleted. Its panels reuse the instrumentations that ask the same
    questions; run again, it makes nothing."""
    from fleetscope.model.defaults import guests_panels
    from tests.test_cgroup import V1, Cgroup

    if os.geteuid() != 0 or "pids" not in V1:
        pytest.fail("needs root and the v1 pids hierarchy to make a cgroup", pytrace=False)
    cgroup = Cgroup([V1["pids"].mount], f"fleetscope-guest-{os.getpid()}")
    server = Server(tmp_path, free_port()).start()
    try:
        exe = str(VENV_BIN / "fleetscope")

        def fleetscope(*args: str) -> subprocess.CompletedProcess:
            done = subprocess.run([exe, *args, "--url", server.url], capture_output=True, text=True,
                                  timeout=60)
            assert done.returncode == 0, done.stderr
            return done

        with server.client() as api:
            def guests() -> list[dict]:
                listed = api.get("/api/v1/dashboards").json()["dashboards"]
                return [d for d in listed if d["name"] == "Guests"]

            [made] = wait_for(guests)  # serve made it at first start
            assert api.delete(f"/api/v1/dashboards/{made['id']}").status_code == 204
            before = {i["id"] for i in api.get("/api/v1/instrumentations").json()["instrumentations"]}
            first = fleetscope("defaults")
            [again] = guests()
            assert re.search(rf"created dashboard {again['id']}: Guests \(\d+ panels\)", first.stdout)
            assert "0 created" in first.stdout
            known = {m["name"] for m in api.get("/api/v1/metrics").json()["metrics"]}
            assert len(again["panels"]) == len(guests_panels(known))
            assert {p["instrumentation"] for p in again["panels"]} <= before  # reused, none made
            assert {i["id"] for i in api.get("/api/v1/instrumentations").json()["instrumentations"]} == before
            second = json.loads(fleetscope("defaults", "--json").stdout)
            assert second["dashboard"] is None and second["created"] == [] and len(guests()) == 1
    finally:
        server.stop()
        cgroup.remove()


def test_defaults_creates_the_missing_default_instrumentations_once(fresh_server: Server) -> None:
    """`fleetscope defaults` against a real serve: a deleted default comes back, the others are kept,
    and a second run changes nothing."""
    from fleetscope.model.defaults import DEFAULT_INSTRUMENTATIONS, guests_panels, has_guests

    exe = str(VENV_BIN / "fleetscope")

    def fleetscope(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([exe, *args, "--url", fresh_server.url], capture_output=True, text=True,
                              timeout=60)

    def questions() -> dict[tuple, int]:
        listed = json.loads(fleetscope("inst", "list", "--json").stdout)["instrumentations"]
        return {(i["module"], i["stat"], json.dumps(i["predicate"]), tuple(i["decomposition"])): i["id"]
                for i in listed}

    known = {m["name"] for m in json.loads(fleetscope("metrics", "--json").stdout)["metrics"]}
    wanted = {(d["module"], d["stat"], "{}", tuple(d["decomposition"])) for d in DEFAULT_INSTRUMENTATIONS
              if f"{d['module']}.{d['stat']}" in known}
    assert ("proc", "cpu", "{}", ("execname",)) in wanted
    # Container defaults only when this host reports containers, as serve decides.
    assert any(q[0] == "container" for q in wanted) == ("container.cpu" in known)
    # and the Guests dashboard's panels where the host has containers or VMs
    guests = {(s["module"], s["stat"], json.dumps(s.get("predicate", {})), tuple(s["decomposition"]))
              for s, _ in guests_panels(known)} if has_guests(known) else set()
    before = questions()
    assert set(before) == wanted | guests  # serve created exactly these on first start
    gone = before[("proc", "cpu", "{}", ("execname",))]
    assert fleetscope("inst", "delete", str(gone)).returncode == 0

    first = fleetscope("defaults")
    assert first.returncode == 0, first.stderr
    assert re.search(r"created instrumentation \d+: proc\.cpu by execname", first.stdout), first.stdout
    assert f"1 created, {len(wanted) - 1} already there" in first.stdout
    after = questions()
    assert set(after) == wanted | guests and after[("proc", "cpu", "{}", ("execname",))] != gone
    assert {q: i for q, i in after.items() if i != after[("proc", "cpu", "{}", ("execname",))]} == {
        q: i for q, i in before.items() if i != gone}  # the others kept, not created again

    second = fleetscope("defaults", "--json")
    assert second.returncode == 0, second.stderr
    body = json.loads(second.stdout)
    assert body["created"] == [] and len(body["existing"]) == len(wanted)
    assert questions() == after
