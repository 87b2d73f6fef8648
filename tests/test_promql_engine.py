"""fleetscope's PromQL engine on an in-memory storage: each feature on values worked out by
hand, each error type, the limits, and the native histogram functions (their numbers are
also checked against Prometheus 2.42 in test_promql_reference.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fleetscope.model.errors import InputError
from fleetscope.model.histogram import Histogram
from fleetscope.promql import engine
from fleetscope.promql.errors import Limits, PromQLError
from fleetscope.promql.matchers import Matcher, matches, parse_selector
from fleetscope.promql.result import format_f, format_value
from fleetscope.promql.storage import STALE_NAN_BITS, MemoryStorage, Series

M = 60_000  # one minute in ms


def _series(labels: dict, points: list[tuple[int, float]]) -> Series:
    times = np.array([t for t, _ in points], dtype=np.int64)
    return Series(labels, times, np.array([v for _, v in points], dtype=np.float64))


@pytest.fixture
def storage() -> MemoryStorage:
    minutes = range(0, 11)
    return MemoryStorage([
        # a counter +6 a minute, reset to 0 at minute 6
        _series({"__name__": "req_total", "job": "a"}, [(m * M, 6.0 * (m % 6)) for m in minutes]),
        _series({"__name__": "req_total", "job": "b"}, [(m * M, 100.0 + m) for m in minutes]),
        _series({"__name__": "temp", "host": "x", "zone": "eu"}, [(m * M, float(m % 4)) for m in minutes]),
        _series({"__name__": "temp", "host": "y", "zone": "eu"}, [(m * M, 10.0) for m in minutes]),
        _series({"__name__": "temp", "host": "z", "zone": "us"}, [(0, 5.0), (M, 7.0)]),  # stops at 1 min
        _series({"__name__": "info", "host": "x", "version": "1"}, [(m * M, 1.0) for m in minutes]),
        _series({"__name__": "info", "host": "y", "version": "2"}, [(m * M, 1.0) for m in minutes]),
        _series({"__name__": "lat_bucket", "le": "1"}, [(m * M, 10.0 * m) for m in minutes]),
        _series({"__name__": "lat_bucket", "le": "2"}, [(m * M, 30.0 * m) for m in minutes]),
        _series({"__name__": "lat_bucket", "le": "+Inf"}, [(m * M, 40.0 * m) for m in minutes]),
    ])


def vector(storage, text: str, t: int = 10 * M) -> dict[tuple, float]:
    data = engine.instant(text, storage, t).data
    assert data["resultType"] == "vector", data
    return {tuple(sorted(r["metric"].items())): float(r["value"][1]) for r in data["result"]}


def one(storage, text: str, t: int = 10 * M) -> float:
    values = vector(storage, text, t)
    assert len(values) == 1, values
    return next(iter(values.values()))


def error(storage, text: str, t: int = 10 * M, **limits) -> PromQLError:
    with pytest.raises(PromQLError) as caught:
        engine.instant(text, storage, t, Limits(**limits))
    return caught.value


# -- matchers ---------------------------------------------------------------------------------


def test_matchers_are_anchored_re2_and_missing_labels_are_empty() -> None:
    m = parse_selector('up{job=~"api|web", env!~"prod.*", zone=""}')
    assert Matcher("__name__", "=", "up") in m
    assert matches({"__name__": "up", "job": "web"}, m)
    assert not matches({"__name__": "up", "job": "webx"}, m)  # anchored at both ends
    assert not matches({"__name__": "up", "job": "api", "env": "production"}, m)
    assert not matches({"__name__": "up", "job": "api", "zone": "eu"}, m)  # zone="" wants no zone


def test_parse_selector_names_the_field() -> None:
    with pytest.raises(InputError) as caught:
        parse_selector("sum(up)", "match[]")
    assert caught.value.field == "match[]"
    with pytest.raises(InputError):
        parse_selector('up{a=~"("}')


# -- selectors --------------------------------------------------------------------------------


def test_instant_selector_takes_the_latest_sample_within_the_lookback(storage) -> None:
    assert vector(storage, 'temp{host="z"}', 1 * M + 30_000) == {
        (("__name__", "temp"), ("host", "z"), ("zone", "us")): 7.0}
    assert vector(storage, 'temp{host="z"}', 6 * M) == {
        (("__name__", "temp"), ("host", "z"), ("zone", "us")): 7.0}
    assert vector(storage, 'temp{host="z"}', 6 * M + 1) == {}  # 5 min lookback, both ends inclusive


def test_offset_and_at(storage) -> None:
    assert one(storage, 'req_total{job="b"} offset 3m') == 107.0
    assert one(storage, 'req_total{job="b"} @ 120') == 102.0
    assert one(storage, 'req_total{job="b"} @ 240 offset 1m') == 103.0
    data = engine.range_query('req_total{job="b"} @ start()', storage, 2 * M, 4 * M, M).data
    assert [v for _, v in data["result"][0]["values"]] == ["102", "102", "102"]
    data = engine.range_query('req_total{job="b"} @ end()', storage, 2 * M, 4 * M, M).data
    assert [v for _, v in data["result"][0]["values"]] == ["104", "104", "104"]


def test_stale_marker_ends_a_series() -> None:
    stale = np.array([STALE_NAN_BITS], dtype=np.uint64).view(np.float64)[0]
    s = MemoryStorage([_series({"__name__": "up"}, [(0, 1.0), (M, stale)])])
    assert vector(s, "up", 30_000) == {(("__name__", "up"),): 1.0}
    assert vector(s, "up", 2 * M) == {}  # not the sample before the marker
    assert one(s, "count_over_time(up[5m])", 2 * M) == 1.0


def test_range_selector_instant_query_returns_the_raw_samples(storage) -> None:
    data = engine.instant('req_total{job="b"}[2m]', storage, 10 * M).data
    assert data["resultType"] == "matrix"
    assert data["result"][0]["values"] == [[480.0, "108"], [540.0, "109"], [600.0, "110"]]  # both ends in


# -- functions over ranges --------------------------------------------------------------------


def test_rate_increase_delta_extrapolate_as_prometheus(storage) -> None:
    # job b: +1 a minute, samples exactly at both ends of [5m]: no extrapolation needed.
    assert one(storage, 'increase(req_total{job="b"}[5m])') == pytest.approx(5.0)
    assert one(storage, 'rate(req_total{job="b"}[5m])') == pytest.approx(5.0 / 300)
    # job a over [4m] at 9.5 min: samples at 6..9 min, 0,6,12,18 (reset to 0 at 6 min). Sampled 3 min,
    # 30 s to the start (< 1.1 * 60 s: extrapolate to it; the zero point is 0 s away, so 0 s),
    # 30 s to the end: 18 * (3 + 0 + 0.5) / 3 = 21.
    assert one(storage, 'increase(req_total{job="a"}[4m])', 9 * M + 30_000) == pytest.approx(21.0)
    # The reset: from 24 (4 min) to 6 (7 min) is 30 + 6 - 24 = 12 more than the difference.
    assert one(storage, 'increase(req_total{job="a"}[3m])', 7 * M) == pytest.approx(-18 + 30)
    assert one(storage, 'delta(temp{host="x"}[3m])', 7 * M) == pytest.approx(3.0 - 0.0)
    # Samples 2 min from both ends of [5m], more than 1.1 average intervals (60 s): half an
    # interval is added at each end, not the 2 min: 2 * (60 + 30 + 30) / 60.
    assert one(storage, 'delta(temp{host="z"}[5m])', 3 * M) == pytest.approx(4.0)
    assert one(storage, 'irate(req_total{job="a"}[3m])', 6 * M) == 0.0  # after a reset: last / dt
    assert one(storage, 'irate(req_total{job="a"}[3m])', 5 * M) == pytest.approx(6.0 / 60)
    assert one(storage, 'idelta(temp{host="x"}[3m])', 4 * M) == -3.0


def test_over_time_functions(storage) -> None:
    x = [float(m % 4) for m in range(6, 11)]  # temp{host="x"} in [6m, 10m]
    assert one(storage, 'sum_over_time(temp{host="x"}[4m])') == sum(x)
    assert one(storage, 'avg_over_time(temp{host="x"}[4m])') == pytest.approx(sum(x) / 5)
    assert one(storage, 'min_over_time(temp{host="x"}[4m])') == min(x)
    assert one(storage, 'max_over_time(temp{host="x"}[4m])') == max(x)
    assert one(storage, 'count_over_time(temp{host="x"}[4m])') == 5
    assert one(storage, 'last_over_time(temp{host="x"}[4m])') == x[-1]
    assert one(storage, 'stdvar_over_time(temp{host="x"}[4m])') == pytest.approx(np.var(x))
    assert one(storage, 'stddev_over_time(temp{host="x"}[4m])') == pytest.approx(np.std(x))
    assert one(storage, 'quantile_over_time(0.5, temp{host="x"}[4m])') == np.quantile(x, 0.5)
    assert one(storage, 'changes(temp{host="x"}[4m])') == 4
    assert one(storage, 'resets(temp{host="x"}[4m])') == 1
    assert one(storage, 'present_over_time(temp{host="x"}[4m])') == 1
    assert one(storage, 'deriv(req_total{job="b"}[5m])') == pytest.approx(1 / 60)
    assert one(storage, 'deriv(temp{host="y"}[5m])') == 0.0  # constant: exactly 0
    assert one(storage, 'predict_linear(req_total{job="b"}[5m], 60)') == pytest.approx(111.0)
    assert vector(storage, 'last_over_time(temp{host="y"}[1m])') == {
        (("__name__", "temp"), ("host", "y"), ("zone", "eu")): 10.0}  # keeps the name
    assert vector(storage, 'max_over_time(temp{host="y"}[1m])') == {(("host", "y"), ("zone", "eu")): 10.0}


def test_absent_and_absent_over_time(storage) -> None:
    assert vector(storage, 'absent(nope{job="x", a=~"b"})') == {(("job", "x"),): 1.0}
    assert vector(storage, "absent(temp)") == {}
    assert vector(storage, 'absent_over_time(temp{host="z"}[1m])') == {(("host", "z"),): 1.0}
    assert vector(storage, 'absent_over_time(temp{host="z"}[10m])') == {}


def test_subquery(storage) -> None:
    # rate at 6..10 min every minute, max of them: the reset makes 0 at 6 min.
    assert one(storage, 'max_over_time(irate(req_total{job="a"}[2m])[4m:1m])') == pytest.approx(0.1)
    assert one(storage, 'min_over_time(irate(req_total{job="a"}[2m])[4m:1m])') == 0.0


# -- aggregations -----------------------------------------------------------------------------


def test_aggregations(storage) -> None:
    t = 10 * M  # temp: x=2, y=10 (z is gone)
    assert one(storage, "sum(temp)", t) == 12
    assert vector(storage, "sum by (zone) (temp)", t) == {(("zone", "eu"),): 12.0}
    assert vector(storage, "avg without (host) (temp)", t) == {(("zone", "eu"),): 6.0}
    assert one(storage, "min(temp)", t) == 2 and one(storage, "max(temp)", t) == 10
    assert one(storage, "count(temp)", t) == 2 and one(storage, "group(temp)", t) == 1
    assert one(storage, "stddev(temp)", t) == 4 and one(storage, "stdvar(temp)", t) == 16
    assert one(storage, "quantile(0.25, temp)", t) == 4
    assert vector(storage, "topk(1, temp)", t) == {
        (("__name__", "temp"), ("host", "y"), ("zone", "eu")): 10.0}
    assert vector(storage, "bottomk(1, temp)", t) == {
        (("__name__", "temp"), ("host", "x"), ("zone", "eu")): 2.0}
    assert vector(storage, 'count_values("v", temp)', t) == {(("v", "2"),): 1.0, (("v", "10"),): 1.0}
    assert vector(storage, "sum by (__name__) (temp)", t) == {(("__name__", "temp"),): 12.0}


def test_topk_order_and_sort(storage) -> None:
    data = engine.instant("topk(3, temp)", storage, 1 * M).data["result"]
    assert [r["value"][1] for r in data] == ["10", "7", "1"]
    data = engine.instant("sort(temp)", storage, 1 * M).data["result"]
    assert [r["value"][1] for r in data] == ["1", "7", "10"]
    data = engine.instant("sort_desc(temp)", storage, 1 * M).data["result"]
    assert [r["value"][1] for r in data] == ["10", "7", "1"]


# -- binary operators -------------------------------------------------------------------------


def test_arithmetic_and_comparisons(storage) -> None:
    t = 10 * M
    assert vector(storage, 'temp{host="x"} * 2 + 1', t) == {(("host", "x"), ("zone", "eu")): 5.0}
    assert vector(storage, "temp > 5", t) == {(("__name__", "temp"), ("host", "y"), ("zone", "eu")): 10.0}
    assert vector(storage, "5 < temp", t) == {(("__name__", "temp"), ("host", "y"), ("zone", "eu")): 10.0}
    assert vector(storage, "temp > bool 5", t) == {(("host", "x"), ("zone", "eu")): 0.0,
                                                   (("host", "y"), ("zone", "eu")): 1.0}
    assert one(storage, 'temp{host="x"} % 3 ^ 2', t) == 2.0 % 9
    assert one(storage, '-temp{host="x"}', t) == -2.0
    assert engine.instant("1 + 2 * 3", storage, t).data == {"resultType": "scalar", "result": [600.0, "7"]}


def test_vector_matching(storage) -> None:
    t = 10 * M
    assert vector(storage, "temp * on(host) group_left(version) info", t) == {
        (("host", "x"), ("version", "1"), ("zone", "eu")): 2.0,
        (("host", "y"), ("version", "2"), ("zone", "eu")): 10.0}
    assert vector(storage, "info * on(host) group_right(version) temp", t) == {
        (("host", "x"), ("version", "1"), ("zone", "eu")): 2.0,
        (("host", "y"), ("version", "2"), ("zone", "eu")): 10.0}
    assert vector(storage, "temp - ignoring(zone, version) info", t) == {
        (("host", "x"),): 1.0, (("host", "y"),): 9.0}
    assert vector(storage, "temp - ignoring(zone) info", t) == {}  # version is still there to match on
    assert vector(storage, "temp - on(host) info", t) == {(("host", "x"),): 1.0, (("host", "y"),): 9.0}
    assert set(vector(storage, 'temp and on(host) info{version="1"}', t)) == {
        (("__name__", "temp"), ("host", "x"), ("zone", "eu"))}
    assert set(vector(storage, 'temp unless on(host) info{version="1"}', t)) == {
        (("__name__", "temp"), ("host", "y"), ("zone", "eu"))}
    assert len(vector(storage, 'temp or on(host) info{version="9"}', 1 * M)) == 3


def test_matching_errors(storage) -> None:
    e = error(storage, "temp + on(zone) temp")
    assert e.error_type == "execution" and e.message.startswith("found duplicate series for the match group")
    e = error(storage, "temp + on(zone) max by (zone) (temp)")
    assert e.message == ("multiple matches for labels: many-to-one matching must be explicit "
                         "(group_left/group_right)")
    e = error(storage, 'label_replace(temp, "host", "h", "host", ".*")')
    assert (e.error_type, e.message) == ("execution", "vector cannot contain metrics with the same labelset")


# -- histograms -------------------------------------------------------------------------------


def test_histogram_quantile_on_classic_buckets(storage) -> None:
    # At 10 min: le=1: 100, le=2: 300, +Inf: 400. Median rank 200: in (1, 2], 100 of 200 in: 1.5.
    assert one(storage, "histogram_quantile(0.5, lat_bucket)") == 1.5
    assert one(storage, "histogram_quantile(0.1, lat_bucket)") == 0.4  # from 0 in the first bucket
    assert one(storage, "histogram_quantile(0.9, lat_bucket)") == 2.0  # the +Inf bucket: the bound below it
    assert math.isinf(one(storage, "histogram_quantile(2, lat_bucket)"))


def _native(counts: dict[int, float], zero: float = 0.0, total: float = 0.0) -> Histogram:
    h = Histogram(schema=0, zero_threshold=0.5)
    h.buckets = dict(counts)
    h.zero_count = zero
    h.count = zero + sum(counts.values())
    h.sum = total
    return h


def test_native_histogram_functions() -> None:
    # Schema 0: bucket i is (2**(i-1), 2**i]. 2 in the zero bucket [-0.5, 0.5], 4 in (0.5, 1], 4 in (1, 2].
    h = _native({0: 4.0, 1: 4.0}, zero=2.0, total=12.5)
    s = MemoryStorage([Series({"__name__": "lat", "job": "a"}, np.array([0]), None, [h])])
    assert one(s, "histogram_count(lat)", 0) == 10
    assert one(s, "histogram_sum(lat)", 0) == 12.5
    assert one(s, "histogram_quantile(0.5, lat)", 0) == pytest.approx(0.5 + 0.5 * (3 / 4))
    assert one(s, "histogram_quantile(0.1, lat)", 0) == pytest.approx(0.25)  # zero bucket taken from 0 up
    assert one(s, "histogram_fraction(0, 1, lat)", 0) == pytest.approx(0.6)
    assert one(s, "histogram_fraction(1, 1.5, lat)", 0) == pytest.approx(0.2)
    data = engine.instant("lat", s, 0).data["result"][0]
    assert data["histogram"] == [0.0, {"count": "10", "sum": "12.5", "buckets": [
        [3, "-0.5", "0.5", "2"], [0, "0.5", "1", "4"], [0, "1", "2", "4"]]}]


def test_native_histogram_rate_and_sum() -> None:
    first, second = _native({1: 2.0}, total=3.0), _native({1: 5.0, 2: 1.0}, total=10.0)
    reset = _native({1: 1.0}, total=1.0)
    s = MemoryStorage([
        Series({"__name__": "lat", "job": "a"}, np.array([0, M]), None, [first, second]),
        Series({"__name__": "lat", "job": "b"}, np.array([0, M, 2 * M]), None, [first, second, reset]),
    ])
    # job a over [1m] at 1 min: samples at both ends, no extrapolation: (second - first) / 60.
    rate = engine.instant('rate(lat{job="a"}[1m])', s, M).data["result"][0]["histogram"][1]
    assert float(rate["count"]) == pytest.approx(4 / 60) and float(rate["sum"]) == pytest.approx(7 / 60)
    # job b over [2m] at 2 min: the reset adds what the counter had before it.
    increase = engine.instant('increase(lat{job="b"}[2m])', s, 2 * M).data["result"][0]["histogram"][1]
    assert float(increase["count"]) == pytest.approx(1 - 2 + 6)
    total = engine.instant("sum(lat)", s, M).data["result"][0]["histogram"][1]
    assert total["count"] == "12" and total["sum"] == "20"


def test_native_histograms_refused_where_2_42_has_no_number() -> None:
    s = MemoryStorage([Series({"__name__": "lat"}, np.array([0]), None, [_native({0: 1.0})])])
    for text in ("lat * 2", "-lat", "abs(lat)", "avg(lat)", "max_over_time(lat[1m])"):
        e = error(s, text, 0)
        assert e.error_type == "bad_data" and "native histogram" in e.message and "fleetscope" in e.message


# -- other functions --------------------------------------------------------------------------


def test_instant_functions(storage) -> None:
    t = 10 * M
    assert one(storage, 'abs(-temp{host="x"})', t) == 2
    assert one(storage, 'sqrt(temp{host="x"} * 8)', t) == 4
    assert one(storage, 'ln(exp(temp{host="x"}))', t) == pytest.approx(2)
    assert one(storage, 'log2(temp{host="x"} * 4)', t) == 3 and one(storage, 'log10(temp{host="y"})', t) == 1
    assert one(storage, 'ceil(temp{host="x"} / 3)', t) == 1
    assert one(storage, 'floor(temp{host="x"} / 3)', t) == 0
    assert one(storage, 'round(temp{host="x"} / 4)', t) == 1  # 0.5 rounds up
    assert one(storage, 'round(temp{host="x"} / 3, 0.25)', t) == 0.75
    assert one(storage, 'sgn(-temp{host="x"})', t) == -1
    assert one(storage, 'clamp(temp{host="y"}, 0, 4)', t) == 4
    assert one(storage, 'clamp_min(temp{host="x"}, 5)', t) == 5
    assert one(storage, 'clamp_max(temp{host="y"}, 5)', t) == 5
    assert vector(storage, "clamp(temp, 5, 1)", t) == {}
    assert vector(storage, 'label_replace(temp{host="x"}, "dc", "dc-$1", "zone", "(.*)")', t) == {
        (("__name__", "temp"), ("dc", "dc-eu"), ("host", "x"), ("zone", "eu")): 2.0}
    assert vector(storage, 'label_join(temp{host="x"}, "hz", "/", "host", "zone")', t) == {
        (("__name__", "temp"), ("host", "x"), ("hz", "x/eu"), ("zone", "eu")): 2.0}
    assert engine.instant("time()", storage, t).data["result"] == [600.0, "600"]
    assert one(storage, "vector(4)", t) == 4
    assert engine.instant('scalar(temp{host="x"})', storage, t).data["result"][1] == "2"
    assert engine.instant("scalar(temp)", storage, t).data["result"][1] == "NaN"
    assert one(storage, 'timestamp(temp{host="z"})', 3 * M) == 60.0  # the sample's time, not the query's
    when = 1_704_164_645_000  # 2024-01-02T03:04:05Z, a Tuesday
    s = MemoryStorage([])
    for fn, expected in (("minute", 4), ("hour", 3), ("day_of_week", 2), ("day_of_month", 2), ("month", 1),
                         ("year", 2024), ("days_in_month", 31), ("day_of_year", 2)):
        assert one(s, f"{fn}()", when) == expected, fn


# -- errors and limits ------------------------------------------------------------------------


def test_parse_errors_and_refusals_are_bad_data(storage) -> None:
    assert error(storage, "sum(").error_type == "bad_data"
    assert error(storage, "nosuch(temp)").error_type == "bad_data"
    e = error(storage, "mad_over_time(temp[5m])")  # a function of Prometheus 3
    assert e.error_type == "bad_data"
    assert e.message == "the function mad_over_time() is not supported by fleetscope"
    e = error(storage, "limitk(1, temp)")
    assert e.error_type == "bad_data" and "not supported by fleetscope" in e.message
    assert "not supported" in error(storage, 'temp{host="x" or host="y"}').message
    assert "not supported" in error(storage, "temp + fill(0) info").message
    with pytest.raises(PromQLError) as caught:
        engine.range_query("temp[5m]", storage, 0, M, M)
    assert caught.value.message == ('invalid expression type "range vector" for range query, '
                                    "must be Scalar or instant Vector")
    with pytest.raises(PromQLError) as caught:
        engine.range_query("temp", storage, 0, 20_000 * M, M)
    assert caught.value.error_type == "bad_data" and "11,000 points" in caught.value.message
    e = error(storage, 'label_replace(temp, "a", "b", "host", "(")')
    assert (e.error_type, e.message) == ("execution", "invalid regular expression in label_replace(): (")


def test_too_many_samples(storage) -> None:
    assert one(storage, "sum(temp)", 10 * M) == 12  # fine with the default
    e = error(storage, "sum(rate(req_total[10m]))", max_samples=10)
    assert e.error_type == "execution"
    assert e.message == "query processing would load too many samples into memory in query execution"
    with pytest.raises(PromQLError) as caught:
        engine.range_query("temp", storage, 0, 10 * M, 1000, Limits(max_samples=100))
    assert caught.value.error_type == "execution"


def test_timeout(storage) -> None:
    e = error(storage, "sum(temp)", timeout_s=-1.0)  # spent before it starts
    assert (e.error_type, e.message) == ("timeout", "query timed out in expression evaluation")


def test_range_query_matrix(storage) -> None:
    data = engine.range_query('sum by (job) (req_total{job="b"}) * 2', storage, 0, 2 * M, M).data
    assert data == {"resultType": "matrix", "result": [
        {"metric": {"job": "b"}, "values": [[0.0, "200"], [60.0, "202"], [120.0, "204"]]}]}
    data = engine.range_query("time()", storage, 0, M, M).data
    assert data["result"] == [{"metric": {}, "values": [[0.0, "0"], [60.0, "60"]]}]


def test_float_formatting_as_go() -> None:
    cases = {1.0: "1", 0.1: "0.1", 1e21: "1e+21", 1e20: "100000000000000000000", 1e-7: "1e-07",
             1e-6: "0.000001", -0.0: "-0", math.nan: "NaN", math.inf: "+Inf", -math.inf: "-Inf",
             123456.789: "123456.789", 2.5e-10: "2.5e-10"}
    for value, text in cases.items():
        assert format_value(value) == text, value
    assert format_f(1e21) == "1000000000000000000000" and format_f(1e-7) == "0.0000001"
