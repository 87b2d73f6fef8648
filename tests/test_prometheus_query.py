"""PromQL through fleetscope's /prometheus API, checked against a real Prometheus 2.42 (#16).

One hour of synthetic history (15 s slots: a breakdown, a gauge breakdown, a counter with a
reset, a distribution) is written to a store before `fleetscope serve` starts on it. A real
Prometheus reads the same history through fleetscope's remote-read endpoint; every expression
of EXPRESSIONS is asked of both (instant at two times, and over a range at two steps, which
read different history tiers) and the answers must agree within float rounding.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fleetscope.formats import promremote
from fleetscope.model import values
from fleetscope.model.histogram import Histogram
from fleetscope.model.metrics import INTERVAL, POINT
from fleetscope.model.series import DataPoint
from fleetscope.store.history import History
from fleetscope.store.open import open_store
from tests.conftest import Server, free_port, stop_process, wait_for

PROM = "/prometheus/api/v1"
G = 15  # seconds per slot of the synthetic history
T0 = (int(time.time()) - 3 * 3600) // 3600 * 3600  # an hour of data, starting 2-3 hours ago
N = 3600 // G
CU = "fleetscope_cpu_usage"  # by mode: per-second CPU time (interval)
LD = "fleetscope_cpu_load"  # a counter-like level with one reset (point)
MU = "fleetscope_memory_used"  # by type: a gauge breakdown (point)
LAT = "fleetscope_disk_latency_latency"  # a distribution (interval)
AT = T0 + 2400

# Every function and operator the issue names, over every shape of series.
EXPRESSIONS = [
    CU, f'{CU}{{mode="user"}}', f'{CU}{{mode!="user"}}', f'{CU}{{mode=~"us.*|sys.*"}}',
    f'{CU}{{mode!~"idle"}}', f"{CU} offset 5m", f"{CU} @ {AT}", f"{MU} offset 2m @ {AT}",
    f"sum({CU})", f"sum by (mode) ({CU})", f"sum without (mode) ({CU})", f"avg({CU})", f"min({CU})",
    f"max by (instrumentation) ({CU})", f"count({CU})", f"topk(2, {CU})", f"bottomk(1, {MU})",
    f"quantile(0.9, {CU})", f'count_values("kb", round({MU} / 1000))', f"stddev({MU})", f"stdvar({CU})",
    f"group by (mode) ({CU})",
    f"avg_over_time({CU}[5m])", f"min_over_time({CU}[5m])", f"max_over_time({MU}[10m])",
    f"sum_over_time({CU}[2m])", f"count_over_time({CU}[5m])", f"last_over_time({MU}[5m])",
    f"quantile_over_time(0.5, {CU}[10m])", f"stddev_over_time({MU}[10m])",
    f"stdvar_over_time({CU}[10m])", f"present_over_time({CU}[1m])",
    f"rate({LD}[5m])", f"irate({LD}[5m])", f"increase({LD}[10m])", f"delta({MU}[5m])",
    f"deriv({MU}[10m])", f"resets({LD}[30m])", f"changes({MU}[10m])", f"idelta({LD}[2m])",
    f"predict_linear({MU}[10m], 600)",
    f"histogram_quantile(0.9, {LAT}_bucket)", f"histogram_quantile(0.5, sum by (le) ({LAT}_bucket))",
    f"histogram_quantile(0.99, rate({LAT}_bucket[5m]))", f"{LAT}_sum / {LAT}_count",
    f"{CU} * 2", f"2 - {CU}", f"-{CU}", f"{CU} ^ 2", f"{CU} % 0.1", f"{CU} > 0.2", f"{CU} > bool 0.2",
    f"{CU} == bool {CU}", f'{CU} and {CU}{{mode="user"}}', f"{CU} or {MU}",
    f'{CU} unless {CU}{{mode="idle"}}',
    f"{CU} / ignoring(mode) group_left sum without (mode) ({CU})",
    f"sum without (mode) ({CU}) / on(instrumentation) group_right {CU}",
    f'{CU} + on(mode) label_replace({MU}, "mode", "$1", "type", "(.*)")',
    f"abs(-{CU})", f"ceil({CU} * 10)", f"floor({CU} * 10)", f"round({CU}, 0.1)", f"clamp({CU}, 0.1, 0.3)",
    f"clamp_min({CU}, 0.2)", f"clamp_max({CU}, 0.2)", f"sqrt({CU})",
    f'label_replace({CU}, "m2", "$1", "mode", "(.*)s.*")',
    f'label_join({CU}, "j", "-", "mode", "instrumentation")',
    "time()", "vector(1)", f"scalar(sum({CU}))", f"sum({CU}) / scalar(count({CU}))",
    "absent(fleetscope_nothing)", f'absent({CU}{{mode="nope"}})', f"timestamp({MU})",
    f"sort({CU})", f"sort_desc({CU})",
]
ORDERED = ("sort(", "sort_desc(")  # whose order Prometheus defines (instant queries)


def history_points() -> dict[str, list[DataPoint]]:
    """The synthetic slots of each instrumentation, deterministic, with gaps."""
    out: dict[str, list[DataPoint]] = {"cu": [], "ld": [], "mu": [], "lat": []}
    for i in range(N):
        t = T0 + i * G
        cu = {"user": G * (0.2 + 0.125 * math.sin(i / 7)), "system": G * (0.05 + (i % 9) / 64),
              "idle": G * (0.6 - (i % 5) / 32)}
        if 100 <= i < 112:
            del cu["system"]  # a gap of three minutes in one key
        if i % 17 == 3:
            del cu["idle"]
        out["cu"].append(DataPoint(t, G, cu, 1, 1))
        out["ld"].append(DataPoint(t, G, float(5 * i if i < 150 else 5 * (i - 150) + 2), 1, 1))
        if i % 23 != 11:
            out["mu"].append(DataPoint(t, G, {"user": 1e6 + 1000 * ((i * 37) % 11),
                                              "system": 2e6 - 500 * (i % 13)}, 1, 1))
        h = Histogram()
        for k in range(1 + i % 6):
            h.record((1 + (i * 7 + k * 13) % 40) / 16)
        out["lat"].append(DataPoint(t, G, h, 1, 1))
    return out


def make_history(data_dir: Path) -> None:
    """The four instrumentations and their hour of history, in the store `serve` will open."""
    store = open_store(f"sqlite:///{data_dir / 'fleetscope.db'}")
    history = History(store)
    specs = {
        "cu": ("cpu", "usage", values.DISCRETE, INTERVAL, "mode", None),
        "ld": ("cpu", "load", values.SCALAR, POINT, None, None),
        "mu": ("memory", "used", values.DISCRETE, POINT, "type", None),
        "lat": ("disk", "latency", values.HISTOGRAM, INTERVAL, None, "latency"),
    }
    points = history_points()
    for name, (module, stat, shape, kind, discrete, numeric) in specs.items():
        inst = store.create_instrumentation({
            "module": module, "stat": stat, "predicate": {}, "granularity": G, "retention": 600,
            "decomposition": tuple(f for f in (discrete, numeric) if f), "idle_max": 0, "persist": True,
            "kind": kind, "shape": shape, "discrete": discrete, "numeric": numeric, "history": {}}, 0.0)
        history.write(inst, points[name])
    history.compact(now=time.time())
    store.close()


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, dict[str, str], str]]:
    """fleetscope serving the synthetic history, and a Prometheus reading it remotely; tokens of
    a viewer, an operator and tenant blue's operator (its scope: the server's own process)."""
    data = tmp_path_factory.mktemp("promql")
    make_history(data)
    srv = Server(data, free_port(), auth=True).start()
    prometheus = None
    try:
        admin = srv.token("promql-admin")
        made = httpx.post(srv.url + "/api/v1/tenants", headers={"authorization": f"Bearer {admin}"},
                          json={"name": "blue", "scope": 'execname == "fleetscope"'}, timeout=10)
        assert made.status_code == 201, made.text
        tokens = {"viewer": srv.token("promql-reader", "viewer"),
                  "operator": srv.token("promql-op", "operator"),
                  "blue": srv.token("promql-blue", "operator", "blue")}
        token = tokens["viewer"]
        config = data / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1m\n"
            f"remote_read:\n  - url: {srv.url}{PROM}/read\n    read_recent: true\n"
            f"    authorization:\n      credentials: {token}\n")
        port = free_port()
        binary = shutil.which("prometheus")
        assert binary, "Debian's prometheus is installed by make test"
        with open(data / "prometheus.log", "wb") as log:
            prometheus = subprocess.Popen(
                [binary, f"--config.file={config}", f"--storage.tsdb.path={data / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
        reference = f"http://127.0.0.1:{port}"
        wait_for(lambda: ready(reference + "/-/ready"), timeout=30)
        yield srv, tokens, reference
    finally:
        stop_process(prometheus)
        srv.stop()


def ready(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def ask(url: str, path: str, token: str | None, **params) -> dict:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    r = httpx.get(url + path, params=params, headers=headers, timeout=30)
    body = r.json()
    assert r.status_code == 200 and body["status"] == "success", (params, r.status_code, body)
    return body["data"]


def same_number(a: str, b: str) -> bool:
    x, y = float(a), float(b)
    return (math.isnan(x) and math.isnan(y)) or x == y or math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12)


def keyed(result: list[dict]) -> dict[tuple, dict]:
    return {tuple(sorted(s["metric"].items())): s for s in result}


def assert_same(ours: dict, theirs: dict, what: str) -> None:
    assert ours["resultType"] == theirs["resultType"], what
    if ours["resultType"] in ("scalar", "string"):
        (t, v), (t_ref, v_ref) = ours["result"], theirs["result"]
        assert t == t_ref and same_number(v, v_ref), (what, ours, theirs)
        return
    mine, ref = keyed(ours["result"]), keyed(theirs["result"])
    assert mine.keys() == ref.keys(), (what, sorted(mine), sorted(ref))
    if what.split("@")[0].startswith(ORDERED):
        assert [s["metric"] for s in ours["result"]] == [s["metric"] for s in theirs["result"]], what
    for labels, s in ref.items():
        points = s.get("values") or [s["value"]]
        got = mine[labels].get("values") or [mine[labels]["value"]]
        assert [p[0] for p in got] == [p[0] for p in points], (what, labels)
        bad = [(p, q) for p, q in zip(got, points, strict=True) if not same_number(p[1], q[1])]
        assert not bad, (what, labels, bad[:3])


def test_answers_agree_with_prometheus(both) -> None:
    srv, tokens, reference = both
    token = tokens["viewer"]
    assert len(EXPRESSIONS) >= 50
    instant_times = (T0 + 1800, T0 + 3590)
    nonempty = 0
    for expr in EXPRESSIONS:
        for t in instant_times:
            theirs = ask(reference, "/api/v1/query", None, query=expr, time=t)
            ours = ask(srv.url, PROM + "/query", token, query=expr, time=t)
            assert_same(ours, theirs, f"{expr} @ instant {t}")
            nonempty += bool(theirs["result"])
        if expr.startswith(ORDERED):
            continue  # a range query does not keep an order
        for step in (15, 60):  # the raw tier, and the minute tier's rollups
            theirs = ask(reference, "/api/v1/query_range", None, query=expr, start=T0 + 900,
                         end=T0 + 3300, step=step)
            ours = ask(srv.url, PROM + "/query_range", token, query=expr, start=T0 + 900, end=T0 + 3300,
                       step=step)
            assert_same(ours, theirs, f"{expr} @ range step {step}")
    assert nonempty > len(EXPRESSIONS), "most answers hold data: the comparison compared something"
    big = httpx.get(srv.url + PROM + "/query_range", timeout=30, headers={
        "authorization": f"Bearer {token}", "accept-encoding": "gzip"},
        params={"query": CU, "start": T0, "end": T0 + 3600, "step": 15})
    assert big.headers["content-encoding"] == "gzip" and len(big.json()["data"]["result"]) == 3, \
        "a large answer is compressed for a client that takes gzip, as Prometheus does"


def test_promtool_queries_instant_and_range(both) -> None:
    srv, tokens, _ = both
    token = tokens["viewer"]
    url = srv.url.replace("http://", f"http://grafana:{token}@") + "/prometheus"
    instant = subprocess.run(["promtool", "query", "instant", f"--time={T0 + 1800}", url,
                              f"sum by (mode) ({CU})"], capture_output=True, text=True, timeout=30)
    assert instant.returncode == 0, instant.stderr
    assert 'mode="user"' in instant.stdout and "=>" in instant.stdout, instant.stdout
    ranged = subprocess.run(["promtool", "query", "range", f"--start={T0 + 900}", f"--end={T0 + 1200}",
                             "--step=60s", url, f'{CU}{{mode="idle"}}'], capture_output=True, text=True,
                            timeout=30)
    assert ranged.returncode == 0, ranged.stderr
    assert ranged.stdout.count("@[") == 6, ranged.stdout  # 900, 960, …, 1200


def test_bad_queries_get_prometheus_errors(both) -> None:
    srv, tokens, _ = both
    token = tokens["viewer"]
    cases = (({"query": "sum(", "time": T0}, 400, "bad_data", "parse error"),
             ({"query": f"nosuchfunction({CU})", "time": T0}, 400, "bad_data", "nosuchfunction"),
             ({"query": CU, "time": "yesterday"}, 400, "bad_data", "timestamp"),
             ({"query": ""}, 400, "bad_data", "query"),
             ({"query": f"{CU} @ -100", "time": T0}, 400, "bad_data", "before 1970"))
    for params, status, kind, words in cases:
        r = httpx.get(srv.url + PROM + "/query", params=params, timeout=10,
                      headers={"authorization": f"Bearer {token}"})
        body = r.json()
        assert r.status_code == status and body["errorType"] == kind and words in body["error"], r.text
    too_many = httpx.get(srv.url + PROM + "/query_range", timeout=10,
                         headers={"authorization": f"Bearer {token}"},
                         params={"query": CU, "start": T0, "end": T0 + 86400, "step": 1})
    assert too_many.status_code == 400 and "11,000 points" in too_many.json()["error"], too_many.text
    too_long = httpx.get(srv.url + PROM + "/query", timeout=10, headers={"authorization": f"Bearer {token}"},
                         params={"query": f"count_over_time({CU}[20y])", "time": T0})
    assert too_long.status_code == 400 and "shorten the range" in too_long.json()["error"], too_long.text
    slow = httpx.get(srv.url + PROM + "/query_range", timeout=10,
                     headers={"authorization": f"Bearer {token}"},
                     params={"query": f"quantile_over_time(0.5, {CU}[30m])", "start": T0, "end": T0 + 3600,
                             "step": 15, "timeout": "1ms"})
    assert slow.status_code == 503 and slow.json()["errorType"] == "timeout", slow.text
    assert httpx.get(srv.url + PROM + "/query", params={"query": "1"}, timeout=10).status_code == 401


def test_on_demand_instrumentation(both) -> None:
    """A query on a catalogue metric no instrumentation answers: a warning that says how; with
    instrument=true a viewer is refused, an operator gets the instrumentation, which answers."""
    srv, tokens, _ = both
    viewer, operator = tokens["viewer"], tokens["operator"]
    query = 'sum by (direction) (fleetscope_net_packets{nic!="nosuch"})'
    first = httpx.get(srv.url + PROM + "/query", params={"query": query}, timeout=10,
                      headers={"authorization": f"Bearer {viewer}"}).json()
    assert first["status"] == "success" and first["data"]["result"] == []
    assert any("instrument=true" in w and 'net.packets where nic != "nosuch" by direction' in w
               for w in first["warnings"]), first
    refused = httpx.get(srv.url + PROM + "/query", params={"query": query, "instrument": "true"}, timeout=10,
                        headers={"authorization": f"Bearer {viewer}"})
    assert refused.status_code == 403 and "operator" in refused.json()["error"], refused.text
    made = httpx.post(srv.url + PROM + "/query", data={"query": query, "instrument": "true"}, timeout=10,
                      headers={"authorization": f"Bearer {operator}"}).json()
    assert made["status"] == "success" and any("created instrumentation" in w for w in made["warnings"]), made
    insts = httpx.get(srv.url + "/api/v1/instrumentations", timeout=10,
                      headers={"authorization": f"Bearer {operator}"}).json()["instrumentations"]
    net = [i for i in insts if i["metric"] == "net.packets"]
    assert len(net) == 1 and net[0]["decomposition"] == ["direction"], net

    def answered() -> list:
        body = httpx.get(srv.url + PROM + "/query", params={"query": query}, timeout=10,
                         headers={"authorization": f"Bearer {viewer}"}).json()
        assert not body.get("warnings"), body  # answered by the instrumentation made, not proposed again
        return body["data"]["result"]

    result = wait_for(answered, timeout=30)
    assert {s["metric"].get("direction") for s in result} <= {"in", "out"} and result, result


def test_a_tenants_promql_sees_only_its_series(both) -> None:
    srv, tokens, _ = both
    viewer, blue = tokens["viewer"], tokens["blue"]
    everything = {"query": 'count by (__name__) ({__name__=~"fleetscope_(cpu|memory)_.+"})',
                  "time": T0 + 1800}
    theirs = ask(srv.url, PROM + "/query", blue, **everything)["result"]
    assert theirs == [], "the operators' history is not the tenant's"
    ours = ask(srv.url, PROM + "/query", viewer, **everything)["result"]
    assert {s["metric"]["__name__"] for s in ours} >= {CU, MU, LD}, ours
    cpu_asked = {"query": f"sum({CU})", "instrument": "true"}
    assert ask(srv.url, PROM + "/query", blue, **cpu_asked)["result"] == [], "cpu.usage is outside its scope"
    mine = {"query": "sum by (execname) (fleetscope_proc_cpu)", "instrument": "true"}
    made = httpx.post(srv.url + PROM + "/query", data=mine, timeout=10,
                      headers={"authorization": f"Bearer {blue}"}).json()
    assert any("created instrumentation" in w for w in made["warnings"]), made
    insts = httpx.get(srv.url + "/api/v1/instrumentations", timeout=10,
                      headers={"authorization": f"Bearer {blue}"}).json()["instrumentations"]
    assert [i["metric"] for i in insts] == ["proc.cpu"] and "fleetscope" in str(insts[0]["predicate"]), insts
    del mine["instrument"]
    found = wait_for(lambda: ask(srv.url, PROM + "/query", blue, **mine)["result"], timeout=30)
    assert {s["metric"]["execname"] for s in found} == {"fleetscope"}, "only what the tenant's scope admits"


def test_remote_read_answers_within_the_callers_scope(both) -> None:
    srv, tokens, _ = both
    viewer = tokens["viewer"]
    asked = promremote.encode_read_request([promremote.ReadQuery(
        (T0 + 600) * 1000, (T0 + 900) * 1000,
        (("__name__", "=~", "fleetscope_cpu_.*"), ("mode", "!=", "idle")))])

    def read(token: str) -> list:
        r = httpx.post(srv.url + PROM + "/read", content=asked, timeout=10, headers={
            "authorization": f"Bearer {token}", "content-type": "application/x-protobuf",
            "content-encoding": "snappy"})
        assert r.status_code == 200 and r.headers["content-type"] == "application/x-protobuf", r.text
        return promremote.decode_read_response(r.content)[0]

    series = read(viewer)
    names = {(dict(s.labels)["__name__"], dict(s.labels).get("mode")) for s in series}
    assert names == {(CU, "user"), (CU, "system"), (LD, None)}, names
    user = next(s for s in series if dict(s.labels).get("mode") == "user")
    want = [(p.start_time * 1000, p.value["user"] / G) for p in history_points()["cu"]
            if T0 + 600 <= p.start_time <= T0 + 900]
    assert list(user.samples) == want, "every raw sample of the range, per second"
    assert read(tokens["blue"]) == [], "a tenant reads only its own series"
    bad = httpx.post(srv.url + PROM + "/read", content=b"not snappy", timeout=10,
                     headers={"authorization": f"Bearer {viewer}"})
    assert bad.status_code == 400 and "snappy" in bad.text, bad.text
