"""fleetscope's PromQL engine against Prometheus 2.42's, number by number, on the same samples.

The samples are synthetic and deterministic: counters with resets and a gap longer than the
lookback, gauges (one with a NaN, one that stops, one constant), an info metric to join on,
a classic histogram (one glitch where a bucket goes down) and native histograms. The float
samples are written as OpenMetrics and backfilled into a TSDB with ``promtool tsdb
create-blocks-from openmetrics``; the native histograms (which promtool 2.42 cannot backfill)
reach Prometheus through its remote-write receiver, two hours after the floats so that the
head accepts them. fleetscope's engine reads the same samples from a ``MemoryStorage``.

Each expression runs as an instant query at a few fixed times and as range queries through
``/api/v1/query`` and ``/api/v1/query_range`` of a real ``prometheus``; the answers must
have the same series (by labels) and the same values within 1e-9 (relative), and the same
order where Prometheus defines one (``sort``, ``sort_desc``, ``topk``, ``bottomk``).
"""

from __future__ import annotations

import math
import random
import shutil
import subprocess
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from fleetscope.formats import promremote
from fleetscope.model.histogram import Histogram
from fleetscope.promql import engine
from fleetscope.promql.errors import PromQLError
from fleetscope.promql.storage import MemoryStorage, Series
from tests.conftest import free_port, stop_process, wait_for

T0 = 1_672_531_200_000  # 2023-01-01T00:00:00Z, the first float sample (a 2 h block boundary)
SPACING = 15_000
END = T0 + 3_600_000  # one hour of float samples
T1 = T0 + 7_200_000  # the native histograms: after the backfilled block, where the head accepts them
END1 = T1 + 3_600_000
BOUNDS = ["0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf"]


# -- the samples ------------------------------------------------------------------------------


def _times(start: int = T0, end: int = END, gaps: tuple[tuple[int, int], ...] = ()) -> np.ndarray:
    t = np.arange(start, end + 1, SPACING, dtype=np.int64)
    for lo, hi in gaps:
        t = t[(t < lo) | (t > hi)]
    return t


def _counter(rng: random.Random, times: np.ndarray, start: float, resets: tuple[int, ...] = ()) -> np.ndarray:
    values, v = [], start
    for t in times:
        v = rng.randint(0, 3) if t in resets else v + rng.choice((0, 1, 2, 3, 5, 0.5))
        values.append(float(v))
    return np.array(values)


def float_series() -> list[Series]:
    rng = random.Random(16)
    out = []

    def add(labels: dict, times: np.ndarray, values: np.ndarray) -> None:
        out.append(Series(labels, times, values))

    t = _times(gaps=((T0 + 2_000_000, T0 + 2_450_000),))
    add({"__name__": "http_requests_total", "job": "api", "instance": "a", "code": "200"}, t,
        _counter(rng, t, 100, resets=(T0 + 1_200_000,)))
    t = _times()
    add({"__name__": "http_requests_total", "job": "api", "instance": "b", "code": "200"}, t,
        _counter(rng, t, 1000))
    add({"__name__": "http_requests_total", "job": "api", "instance": "a", "code": "500"}, t,
        _counter(rng, t, 3, resets=(T0 + 3_000_000,)))
    t = _times(start=T0 + 600_000)
    add({"__name__": "http_requests_total", "job": "web", "instance": "c", "code": "200"}, t,
        _counter(rng, t, 0, resets=(T0 + 1_500_000, T0 + 2_850_000)))
    t = _times()
    phase = (t - T0) / 600_000
    add({"__name__": "cpu_temp", "host": "h1", "zone": "eu"}, t,
        np.round(50 + 10 * np.sin(phase) + np.array([rng.random() for _ in t]), 3))
    temp2 = np.round(45 + 5 * np.cos(phase) + np.array([rng.random() for _ in t]), 3)
    temp2[100] = math.nan
    add({"__name__": "cpu_temp", "host": "h2", "zone": "eu"}, t, temp2)
    t3 = _times(end=T0 + 2_700_000)
    add({"__name__": "cpu_temp", "host": "h3", "zone": "us"}, t3, np.round(60 + np.arange(len(t3)) * 0.05, 3))
    add({"__name__": "cpu_temp", "host": "h4", "zone": "us"}, t, np.round(-5 + 3 * np.sin(phase * 2), 3))
    add({"__name__": "queue_len", "host": "h1"}, t, np.full(len(t), 7.0))
    add({"__name__": "queue_len", "host": "h2"}, t, np.floor((t - T0) / 420_000) % 4)
    for host, version in (("h1", "1.0"), ("h2", "1.1"), ("h3", "2.0"), ("h4", "2.0")):
        add({"__name__": "host_info", "host": host, "version": version}, t, np.ones(len(t)))
    for instance, scale in (("a", 1.0), ("b", 3.0)):
        counts = np.zeros((len(BOUNDS), len(t)))
        total = np.zeros(len(t))
        running, running_sum = np.zeros(len(BOUNDS)), 0.0
        for j in range(len(t)):
            for _ in range(rng.randint(0, 6)):
                x = rng.expovariate(4.0) * scale
                running_sum += x
                running += [x <= float(b) for b in BOUNDS]
            counts[:, j] = running
            total[j] = running_sum
        if instance == "b":
            counts[3, 120] = counts[2, 120] - 1  # a bucket below its predecessor: the monotonicity fix
        base = {"job": "api", "instance": instance}
        for b, row in zip(BOUNDS, counts, strict=True):
            add({"__name__": "req_duration_seconds_bucket", **base, "le": b}, t, row.copy())
        add({"__name__": "req_duration_seconds_sum", **base}, t, np.round(total, 6))
        add({"__name__": "req_duration_seconds_count", **base}, t, counts[-1].copy())
    return out


def native_series() -> list[Series]:
    rng = random.Random(42)
    out = []
    for instance, reset_at in (("a", T1 + 1_800_000), ("b", None)):
        t = _times(T1, END1)
        h = Histogram(schema=3, zero_threshold=0.001)
        samples = []
        for ts in t:
            if ts == reset_at:
                h = Histogram(schema=3, zero_threshold=0.001)
            for _ in range(rng.randint(1, 8)):
                h.record(rng.choice((0.0, 0.0005)) if rng.random() < 0.1 else rng.lognormvariate(-2, 1))
            samples.append(h.copy().forget_range())
        labels = {"__name__": "rpc_latency_seconds", "job": "api", "instance": instance}
        out.append(Series(labels, t, None, samples))
    return out


def _openmetrics(series: list[Series]) -> str:
    families: dict[str, list[Series]] = {}
    for s in series:
        name = s.labels["__name__"]
        family = name.removesuffix("_total")
        for suffix in ("_bucket", "_sum", "_count"):
            if name.startswith("req_duration_seconds") and name.endswith(suffix):
                family = name.removesuffix(suffix)
        families.setdefault(family, []).append(s)
    lines = []
    for family, members in families.items():
        kind = "counter" if family == "http_requests" else "histogram" if family == "req_duration_seconds" \
            else "gauge"
        lines.append(f"# TYPE {family} {kind}")
        for s in members:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()) if k != "__name__")
            for t, v in zip(s.times, s.values, strict=True):
                value = "NaN" if math.isnan(v) else repr(float(v))
                lines.append(f"{s.labels['__name__']}{{{labels}}} {value} {t // 1000}")
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


# -- Prometheus -------------------------------------------------------------------------------


class Reference:
    """A real Prometheus 2.42 holding the samples, and fleetscope's storage holding the same."""

    def __init__(self, url: str, storage: MemoryStorage) -> None:
        self.url = url
        self.storage = storage
        self.client = httpx.Client(base_url=url, timeout=30)

    def ask(self, path: str, **params) -> dict:
        body = self.client.get(path, params=params).json()
        assert body["status"] == "success", body
        return body["data"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Reference]:
    prometheus, promtool = shutil.which("prometheus"), shutil.which("promtool")
    assert prometheus and promtool, "Debian's prometheus package is needed (scripts/system-deps.sh)"
    tmp = tmp_path_factory.mktemp("promql-reference")
    floats, natives = float_series(), native_series()
    (tmp / "data.om").write_text(_openmetrics(floats))
    subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", str(tmp / "data.om"),
                    str(tmp / "tsdb")], check=True, capture_output=True, timeout=60)
    (tmp / "prometheus.yml").write_text("global:\n  scrape_interval: 1m\n")
    port = free_port()
    with open(tmp / "prometheus.log", "wb") as log:
        proc = subprocess.Popen(
            [prometheus, f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}", "--web.enable-remote-write-receiver",
             "--enable-feature=native-histograms"],
            stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _ready(url, proc), timeout=30)
        body = promremote.encode_write_request(
            promremote.Series(s.labels, (), list(zip(s.times.tolist(), s.histograms, strict=True)))
            for s in natives)
        answer = httpx.post(f"{url}/api/v1/write", content=body, headers={
            "Content-Type": promremote.CONTENT_TYPE, "Content-Encoding": promremote.CONTENT_ENCODING,
            promremote.WRITE_VERSION_HEADER: promremote.WRITE_VERSION})
        assert answer.status_code == 204, answer.text
        yield Reference(url, MemoryStorage(floats + natives))
    finally:
        stop_process(proc)


def _ready(url: str, proc: subprocess.Popen) -> bool:
    assert proc.poll() is None, "prometheus exited"
    try:
        return httpx.get(f"{url}/-/ready", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


# -- comparing --------------------------------------------------------------------------------


def _number(text: str) -> float:
    return float(text.replace("Inf", "inf"))


def _close(a: str, b: str) -> bool:
    x, y = _number(a), _number(b)
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)
    return math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12)


def _same_histogram(a: dict, b: dict) -> bool:
    if not (_close(a["count"], b["count"]) and _close(a["sum"], b["sum"])):
        return False
    ba, bb = a.get("buckets", []), b.get("buckets", [])
    return len(ba) == len(bb) and all(
        x[0] == y[0] and all(_close(p, q) for p, q in zip(x[1:], y[1:], strict=True))
        for x, y in zip(ba, bb, strict=True))


def _same_point(a: list, b: list) -> bool:
    if a[0] != b[0]:
        return False
    if isinstance(a[1], dict) or isinstance(b[1], dict):
        return isinstance(a[1], dict) and isinstance(b[1], dict) and _same_histogram(a[1], b[1])
    return _close(a[1], b[1])


def _key(item: dict) -> tuple:
    return tuple(sorted(item["metric"].items()))


def assert_same(theirs: dict, ours: dict, ordered: bool = False) -> None:
    assert theirs["resultType"] == ours["resultType"], (theirs, ours)
    kind = theirs["resultType"]
    if kind in ("scalar", "string"):
        assert _same_point(theirs["result"], ours["result"]), (theirs, ours)
        return
    a, b = theirs["result"], ours["result"]
    assert sorted(map(_key, a)) == sorted(map(_key, b)), f"series differ:\nprometheus {a}\nfleetscope {b}"
    if ordered:  # the same values in the same order (series tied on a value may come either way)
        assert all(_same_point(x.get("value") or x["histogram"], y.get("value") or y["histogram"])
                   for x, y in zip(a, b, strict=True)), f"order differs:\nprometheus {a}\nfleetscope {b}"
    mine = {_key(item): item for item in b}
    for item in a:
        other = mine[_key(item)]
        for field in ("value", "histogram"):
            assert (field in item) == (field in other), (item, other)
            if field in item:
                assert _same_point(item[field], other[field]), f"{item}\n{other}"
        for field in ("values", "histograms"):
            assert len(item.get(field, [])) == len(other.get(field, [])), f"{field}:\n{item}\n{other}"
            for x, y in zip(item.get(field, []), other.get(field, []), strict=True):
                assert _same_point(x, y), f"{field} at {x[0]}: prometheus {x[1]}, fleetscope {y[1]}\n{other}"


# -- the expressions --------------------------------------------------------------------------

FLOAT_TIMES = [T0 + 1_800_000, T0 + 2_300_000, T0 + 3_000_000, T0 + 3_700_000]
NATIVE_TIMES = [T1 + 1_200_000, T1 + 1_830_000, T1 + 3_300_000]
FLOAT_RANGES = [(T0 + 300_000, END + 400_000, 60_000), (T0 + 1_000_000, T0 + 3_000_000, 37_000)]
NATIVE_RANGES = [(T1 + 300_000, END1, 60_000)]
S1800 = (T0 + 1_800_000) // 1000

FLOAT_EXPRESSIONS = [
    # selectors, matchers, offset, @
    "http_requests_total",
    'http_requests_total{job="api", code!="500"}',
    'http_requests_total{instance=~"a|c"}',
    'cpu_temp{zone!~"e.*"}',
    '{__name__=~"cpu_temp|queue_len", host="h1"}',
    "cpu_temp offset 10m",
    f"cpu_temp @ {S1800}",
    f"cpu_temp @ {S1800} offset 5m",
    "cpu_temp @ start()",
    "cpu_temp @ end()",
    "cpu_temp offset -5m",
    # functions over ranges
    "rate(http_requests_total[5m])",
    "rate(http_requests_total[1m])",
    "increase(http_requests_total[10m])",
    "delta(cpu_temp[5m])",
    "irate(http_requests_total[5m])",
    "idelta(cpu_temp[2m])",
    "deriv(cpu_temp[10m])",
    "deriv(queue_len[5m])",
    "predict_linear(cpu_temp[10m], 600)",
    f"rate(http_requests_total[5m] @ {S1800})",
    "rate(http_requests_total[5m] offset 15m)",
    "resets(http_requests_total[30m])",
    "changes(queue_len[30m])",
    "changes(cpu_temp[10m])",
    "avg_over_time(cpu_temp[10m])",
    "min_over_time(cpu_temp[10m])",
    "max_over_time(cpu_temp[10m])",
    "sum_over_time(cpu_temp[10m])",
    "count_over_time(http_requests_total[10m])",
    "last_over_time(cpu_temp[10m])",
    "quantile_over_time(0.9, cpu_temp[15m])",
    "stddev_over_time(cpu_temp[10m])",
    "stdvar_over_time(cpu_temp[10m])",
    "present_over_time(cpu_temp[3m])",
    'absent_over_time(cpu_temp{host="h3"}[5m])',
    'absent_over_time(nonexistent{job="x"}[5m])',
    "max_over_time(rate(http_requests_total[2m])[10m:1m])",
    "avg_over_time(cpu_temp[10m:])",
    f"max_over_time(rate(http_requests_total[2m])[10m:1m] @ {S1800})",
    "min_over_time(cpu_temp[7m:2m] offset 3m)",
    f"predict_linear(cpu_temp[10m] @ {S1800}, 60)",
    f"timestamp(cpu_temp @ {S1800})",
    # aggregations
    "sum(rate(http_requests_total[5m]))",
    "sum by (job) (rate(http_requests_total[5m]))",
    "sum without (instance) (rate(http_requests_total[5m]))",
    "avg by (zone) (cpu_temp)",
    "min by (zone) (cpu_temp)",
    "max without (host) (cpu_temp)",
    "count by (code) (http_requests_total)",
    "group by (job) (http_requests_total)",
    "stddev(cpu_temp)",
    "stdvar by (zone) (cpu_temp)",
    "topk(2, cpu_temp)",
    'topk(scalar(queue_len{host="h2"}), cpu_temp)',
    "bottomk(2, cpu_temp)",
    "topk by (zone) (1, cpu_temp)",
    "quantile(0.3, cpu_temp)",
    "quantile by (zone) (0.75, cpu_temp)",
    'count_values("value", queue_len)',
    'count_values by (host) ("v", queue_len)',
    "sum by (__name__) ({__name__=~\"cpu_temp|queue_len\"})",
    # binary operators
    "cpu_temp * 2 + 1",
    "2 ^ queue_len",
    "cpu_temp % 7",
    "-cpu_temp",
    "cpu_temp > 50",
    "cpu_temp > bool 50",
    "50 < cpu_temp",
    "cpu_temp == bool on() group_left() scalar(max(cpu_temp))",
    "cpu_temp != 45",
    "queue_len >= 2",
    "queue_len <= bool 1",
    "cpu_temp - on(host) queue_len",
    "cpu_temp / ignoring(zone) queue_len",
    "cpu_temp * on(host) group_left(version) host_info",
    "host_info * on(host) group_right(version) cpu_temp",
    "cpu_temp and on(host) queue_len",
    "cpu_temp or on(host) queue_len",
    "cpu_temp unless on(host) queue_len",
    'rate(http_requests_total{code="500"}[5m]) / ignoring(code) rate(http_requests_total{code="200"}[5m])',
    "sum by (job) (rate(http_requests_total[5m])) > bool 0.5",
    "1 + 2 * 3",
    "(1 > bool 2) + time()",
    # classic histograms
    "histogram_quantile(0.9, rate(req_duration_seconds_bucket[5m]))",
    "histogram_quantile(0.5, sum by (le) (rate(req_duration_seconds_bucket[5m])))",
    "histogram_quantile(0.99, req_duration_seconds_bucket)",
    "histogram_quantile(0, req_duration_seconds_bucket)",
    "histogram_quantile(1.5, req_duration_seconds_bucket)",
    "histogram_quantile(NaN, req_duration_seconds_bucket)",
    "rate(req_duration_seconds_sum[5m]) / rate(req_duration_seconds_count[5m])",
    # instant functions
    "abs(cpu_temp)", "ceil(cpu_temp)", "floor(cpu_temp)", "round(cpu_temp)", "round(cpu_temp, 0.25)",
    "exp(queue_len)", "ln(cpu_temp)", "log2(cpu_temp)", "log10(cpu_temp)", "sqrt(cpu_temp)", "sgn(cpu_temp)",
    "clamp(cpu_temp, 45, 55)", "clamp_min(cpu_temp, 50)", "clamp_max(cpu_temp, 50)", "clamp(cpu_temp, 5, 1)",
    'label_replace(cpu_temp, "where", "$1-x", "zone", "(e|u)(.*)")',
    'label_replace(cpu_temp, "zone", "", "zone", ".*")',
    'label_replace(cpu_temp, "z", "${1}_$2$$", "host", "h(\\\\d)(.*)")',
    'label_join(cpu_temp, "hz", "/", "host", "zone")',
    "sort(cpu_temp)", "sort_desc(cpu_temp)",
    "time()", "vector(3)", "scalar(queue_len)", 'scalar(queue_len{host="h1"})',
    "timestamp(cpu_temp)", "timestamp(sum(cpu_temp))",
    'absent(nonexistent{job="x", code=~"5.."})', "absent(cpu_temp)", "absent(nonexistent)",
    'absent(nonexistent{job="x", job="y", a="b"})',
    "minute()", "hour()", "day_of_week()", "day_of_month()", "days_in_month()", "month()", "year()",
    "day_of_year()", "hour(timestamp(cpu_temp))",
    "sin(cpu_temp)", "deg(cpu_temp)", "pi()",
]

NATIVE_EXPRESSIONS = [
    "rpc_latency_seconds",
    "histogram_count(rpc_latency_seconds)",
    "histogram_sum(rpc_latency_seconds)",
    "rate(rpc_latency_seconds[5m])",
    "increase(rpc_latency_seconds[10m])",
    "sum(rate(rpc_latency_seconds[5m]))",
    "histogram_quantile(0.9, rate(rpc_latency_seconds[5m]))",
    "histogram_quantile(0.5, sum by (job) (rate(rpc_latency_seconds[5m])))",
    "histogram_quantile(0.99, rpc_latency_seconds)",
    "histogram_fraction(0, 0.1, rate(rpc_latency_seconds[5m]))",
    "histogram_fraction(-1, 0.0001, rpc_latency_seconds)",
    "histogram_count(rate(rpc_latency_seconds[5m])) / histogram_count(rpc_latency_seconds)",
]

ORDERED = ("sort(", "sort_desc(", "topk(", "bottomk(")


def _ours(reference: Reference, expression: str, **when) -> dict:
    if "time" in when:
        return engine.instant(expression, reference.storage, when["time"]).data
    return engine.range_query(expression, reference.storage, when["start"], when["end"], when["step"]).data


def _cases(expressions: list[str], times: list[int], ranges: list[tuple]) -> list:
    cases = []
    for e in expressions:
        cases += [pytest.param(e, {"time": t}, id=f"{e}@{(t - T0) // 1000}") for t in times]
        if not e.startswith(("time()", "1 + 2", "pi()")):
            cases += [pytest.param(e, {"start": a, "end": b, "step": s},
                                   id=f"{e}[{(a - T0) // 1000}:{s // 1000}]") for a, b, s in ranges]
    return cases


def _compare(reference: Reference, expression: str, when: dict) -> None:
    if "time" in when:
        body = reference.client.get("/api/v1/query",
                                    params={"query": expression, "time": when["time"] / 1000})
    else:
        body = reference.client.get("/api/v1/query_range", params={
            "query": expression, "start": when["start"] / 1000, "end": when["end"] / 1000,
            "step": when["step"] / 1000})
    answer = body.json()
    if answer["status"] == "error":  # then the same error here
        with pytest.raises(PromQLError) as caught:
            _ours(reference, expression, **when)
        assert (caught.value.error_type, caught.value.message) == (answer["errorType"], answer["error"])
        return
    theirs = answer["data"]
    ours = _ours(reference, expression, **when)
    assert_same(theirs, ours, ordered="time" in when and expression.startswith(ORDERED))


@pytest.mark.parametrize(("expression", "when"), _cases(FLOAT_EXPRESSIONS, FLOAT_TIMES, FLOAT_RANGES))
def test_float_samples(reference: Reference, expression: str, when: dict) -> None:
    _compare(reference, expression, when)


@pytest.mark.parametrize(("expression", "when"), _cases(NATIVE_EXPRESSIONS, NATIVE_TIMES, NATIVE_RANGES))
def test_native_histograms(reference: Reference, expression: str, when: dict) -> None:
    _compare(reference, expression, when)


def test_the_samples_arrived(reference: Reference) -> None:
    """Both paths hold what the comparisons assume (a test that could pass on empty answers
    would prove nothing)."""
    for expression, t in (("count(http_requests_total)", T0 + 1_800_000), ("count(cpu_temp)", T0 + 1_800_000),
                          ("count(rpc_latency_seconds)", T1 + 1_800_000)):
        theirs = reference.ask("/api/v1/query", query=expression, time=t / 1000)["result"]
        assert theirs and float(theirs[0]["value"][1]) >= 2, (expression, theirs)


@pytest.mark.parametrize("expression", [
    "cpu_temp + on(zone) cpu_temp",  # many-to-many on the right
    "host_info * on(host) group_right cpu_temp + on(zone) group_left cpu_temp",  # and on the left
    "cpu_temp + on(zone) max by (zone) (cpu_temp)",  # one to one with two on the left
    '{__name__=~"req_duration_seconds_(sum|count)"} * on(instance) group_left() '
    "max by (instance) (req_duration_seconds_count)",  # many to one, results not told apart
    'label_replace(cpu_temp, "host", "x", "host", ".*")',  # same labelset
    'rate({__name__=~"req_duration_seconds_(sum|count)"}[5m])',
    '-{__name__=~"req_duration_seconds_(sum|count)"}',
    'label_replace(cpu_temp, "1x", "x", "host", ".*")',
    'count_values("a-b", cpu_temp)',
])
def test_same_errors(reference: Reference, expression: str) -> None:
    """Expressions Prometheus refuses at execution are refused here, with its error type and words."""
    params = {"query": expression, "time": T0 / 1000 + 1800}
    body = reference.client.get("/api/v1/query", params=params).json()
    assert body["status"] == "error", body
    with pytest.raises(PromQLError) as caught:
        engine.instant(expression, reference.storage, T0 + 1_800_000)
    assert (caught.value.error_type, caught.value.message) == (body["errorType"], body["error"])
