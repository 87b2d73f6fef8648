"""Export formats (CSV, JSON Lines, OpenMetrics) and heatmap range validation, without a server."""

from __future__ import annotations

import csv
import io
import json
import math
import re

import pytest

from fleetscope.api import export, queries
from fleetscope.model import values
from fleetscope.model.errors import InputError
from fleetscope.model.histogram import Histogram
from fleetscope.model.instrumentation import Instrumentation
from fleetscope.model.series import DataPoint

T0 = 1_700_000_000


def inst(shape: str, discrete: str | None = None, numeric: str | None = None) -> Instrumentation:
    return Instrumentation(id=7, module="app", stat="http_requests", predicate={},
                           decomposition=tuple(x for x in (discrete, numeric) if x), granularity=1,
                           retention=600, idle_max=0, persist=True, created=0.0, shape=shape,
                           discrete=discrete, numeric=numeric)


def hist(*xs: float) -> Histogram:
    h = Histogram()
    for x in xs:
        h.record(x)
    return h


def text(i: Instrumentation, points: list[DataPoint], fmt: str) -> str:
    return "".join(export.export_lines(i, points, fmt))


def test_csv_and_json_of_breakdowns() -> None:
    i = inst(values.DISCRETE, "route")
    points = [DataPoint(T0, 1, {"/a": 1.5, 'we"ird,key': 2.0}, 3, 4), DataPoint(T0 + 1, 1, None, 0, 4),
              DataPoint(T0 + 2, 1, {"/a": 0.1 + 0.2}, 3, 3)]
    rows = list(csv.DictReader(io.StringIO(text(i, points, "csv"))))
    # 0.1 + 0.2 is printed as the decimal it sums (see test_exports_print_no_float_noise).
    assert [(r["start_time"], r["key"], r["value"]) for r in rows] == [
        (str(T0), "/a", "1.5"), (str(T0), 'we"ird,key', "2"), (str(T0 + 2), "/a", "0.3")]
    assert rows[0]["nsources"] == "3" and rows[0]["expected"] == "4"
    lines = [json.loads(x) for x in text(i, points, "json").splitlines()]
    assert [p["value"] for p in lines] == [{"/a": 1.5, 'we"ird,key': 2.0}, {"/a": 0.3}], "gaps left out"


def test_csv_of_histograms_has_one_row_per_bucket() -> None:
    i = inst(values.HISTOGRAM, numeric="latency")
    h = hist(0.0, 1.0, 1.0, 3.5)
    rows = list(csv.DictReader(io.StringIO(text(i, [DataPoint(T0, 1, h, 1, 1)], "csv"))))
    assert [float(r["bucket_count"]) for r in rows] == [1.0, 2.0, 1.0]
    assert rows[0]["lower"] == "-Inf" and float(rows[0]["upper"]) == 0.0
    assert {float(r["count"]) for r in rows} == {4.0} and {float(r["sum"]) for r in rows} == {5.5}
    assert float(rows[1]["upper"]) == 1.0 and float(rows[2]["lower"]) < 3.5 <= float(rows[2]["upper"])


def test_openmetrics_gauges_and_gauge_histograms() -> None:
    i = inst(values.DISCRETE_HISTOGRAM, "route", "latency")
    points = [DataPoint(T0, 1, {"/a": hist(1.0, 2.0), 'q"\\x': hist(5.0)}, 1, 1)]
    om = text(i, points, "openmetrics")
    lines = om.splitlines()
    assert lines[0] == "# TYPE fleetscope_app_http_requests gaugehistogram"
    assert lines[-1] == "# EOF"
    buckets = [line for line in lines if '_bucket{instrumentation="7",route="/a"' in line]
    cum = [float(line.split()[-2]) for line in buckets]
    assert cum == sorted(cum) and cum[-1] == 2.0 and buckets[-1].count('le="+Inf"') == 1
    assert f'fleetscope_app_http_requests_gsum{{instrumentation="7",route="/a"}} 3 {T0}' in lines
    assert 'route="q\\"\\\\x"' in om, "label values are escaped"
    sample = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*\{[^}]*\} -?[0-9.e+Inf-]+ \d+$')
    assert all(sample.match(line) for line in lines if not line.startswith("#"))
    scalar = text(inst(values.SCALAR), [DataPoint(T0, 1, 2.5, 1, 1)], "openmetrics")
    assert scalar.splitlines()[2] == f'fleetscope_app_http_requests{{instrumentation="7"}} 2.5 {T0}'
    assert not math.isnan(float(scalar.splitlines()[2].split()[1]))


# Sums of decimals as a server makes them (0.01 + 0.05 is 0.060000000000000005 in binary), the
# decimals a reader expects, and the decimal strings themselves: derived from the decimals, not
# from fleetscope's output.
NOISY = [(0.01 + 0.05, "0.06"), (0.1 + 0.2, "0.3"), (0.7 + 0.1 + 0.1, "0.9"), (1.1 * 3, "3.3"),
         (3.0, "3"), (1e21 + 1e5, "1e+21"), (-(0.1 + 0.7), "-0.8"), (123456.789 + 0.001, "123456.79")]


def test_exports_print_no_float_noise() -> None:
    """CSV, JSON Lines and OpenMetrics print the shortest decimal that round-trips at 15
    significant digits: a value that is a sum of decimals prints as that decimal; whole
    numbers print without a fraction; bucket bounds stay exact."""
    for value, decimal in NOISY:
        assert repr(value) != decimal or value == int(value), "the sum really is noisy in binary"
        i = inst(values.SCALAR)
        pts = [DataPoint(T0, 1, value, 1, 1)]
        (row,) = csv.DictReader(io.StringIO(text(i, pts, "csv")))
        assert row["value"] == decimal
        assert f'"value":{json.dumps(float(decimal))},' in text(i, pts, "json")  # 3.0 stays a float
        om = text(i, pts, "openmetrics").splitlines()
        assert om[2] == f'fleetscope_app_http_requests{{instrumentation="7"}} {decimal} {T0}'
    h = Histogram()
    for x in (0.1, 0.2, 0.3):  # sum 0.6000000000000001 in binary
        h.record(x)
    rows = list(csv.DictReader(io.StringIO(text(inst(values.HISTOGRAM, numeric="latency"),
                                                [DataPoint(T0, 1, h, 1, 1)], "csv"))))
    assert {r["sum"] for r in rows} == {"0.6"} and {r["count"] for r in rows} == {"3"}
    for r in rows:  # bounds exact: each upper bound is the bucket's own bound, bit for bit
        if r["lower"] != "-Inf":
            index = next(k for k in h.buckets if h.bucket_bounds(k)[1] == float(r["upper"]))
            assert float(r["lower"]) == h.bucket_bounds(index)[0]


def test_unknown_format_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        export.export_lines(inst(values.SCALAR), [], "xml")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"span": 0}, "duration"),
        ({"span": 60, "ncolumns": 0}, "ndatapoints"),
        ({"span": 60, "step": 0}, "step"),
        ({"span": 10**6, "step": 1}, "step"),
        ({"start_time": 100, "end_time": 50}, "end_time"),
    ],
)
def test_heatmap_ranges_reject_bad_input(kwargs: dict, field: str) -> None:
    i = inst(values.HISTOGRAM, numeric="latency")
    args = {"start_time": None, "end_time": None, "span": None, "step": None, "ncolumns": None, **kwargs}
    with pytest.raises(InputError) as err:
        queries.heatmap_range(i, T0, **args, now=T0)
    assert err.value.field == field


def test_heatmap_ranges_end_with_whole_columns() -> None:
    i = inst(values.HISTOGRAM, numeric="latency")
    r = queries.heatmap_range(i, T0 + 36, None, None, 7200, None, 60, now=T0 + 40)
    assert (r.duration, r.n, r.end) == (120, 60, T0 + 37)
    r = queries.heatmap_range(i, None, T0, None, 600, 10, None, now=T0 + 40)
    assert (r.start, r.duration, r.n) == (T0, 10, 60)


def test_export_plans_reach_no_further_back_than_1970() -> None:
    """A `since` past the epoch is refused (it once started an export of 2^63 seconds)."""
    i = inst(values.SCALAR)
    tiers = queries.window_tiers(i)
    assert queries.export_plan(i, tiers, None, None, str(T0), None, T0)[:2] == (0, T0), "back to 0 is fine"
    for since in (str(T0 + 1), str(2**63)):
        with pytest.raises(InputError) as err:
            queries.export_plan(i, tiers, None, None, since, None, T0)
        assert err.value.field == "since"
