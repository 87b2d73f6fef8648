"""Compare runs (``GET /instrumentations/{id}/compare``, ``fleetscope compare``): two imports,
or an import and a live range, aligned to their starts. Expected figures are computed here
from what was imported (the CSV's own numbers, with :mod:`statistics`), from what mpstat
printed, and from ``/value`` over the live range; tenants and viewers as their scope says.
"""

from __future__ import annotations

import calendar
import json
import os
import statistics
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Server, free_port, wait_for

API = "/api/v1"
T_A = calendar.timegm((2024, 3, 4, 10, 0, 0))  # Monday 10:00
T_B = calendar.timegm((2024, 3, 5, 15, 30, 0))  # Tuesday 15:30
STEP = 10


def _stats(xs: list[float]) -> dict[str, float]:
    """Average and the linear-interpolation percentiles (numpy's default, by statistics)."""
    cuts = statistics.quantiles(xs, n=100, method="inclusive")
    return {"average": statistics.fmean(xs), "p50": cuts[49], "p90": cuts[89], "p99": cuts[98]}


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, dict[str, httpx.Client]]]:
    server = Server(tmp_path_factory.mktemp("compare"), free_port(), auth=True).start()
    admin = httpx.Client(base_url=server.url, timeout=30,
                         headers={"authorization": f"Bearer {server.token('cmp-admin', 'admin')}"})
    made = admin.post(f"{API}/tenants", json={"name": "acme", "scope": 'hostname == "acme-db"'})
    assert made.status_code == 201, made.text
    clients = {"admin": admin}
    for name, role, tenant in (("operator", "operator", None), ("viewer", "viewer", None),
                               ("acme", "operator", "acme")):
        clients[name] = httpx.Client(base_url=server.url, timeout=30, headers={
            "authorization": f"Bearer {server.token(f'cmp-{name}', role, tenant)}"})
    yield server, clients
    server.stop()


def _import_csv(c: httpx.Client, name: str, text: str, host: str, mapping: dict) -> dict:
    r = c.post(f"{API}/imports", data={"format": "csv", "host": host, "mapping": json.dumps(mapping)},
               files=[("file", (name, text.encode(), "text/csv"))])
    assert r.status_code == 201, r.text
    return r.json()


def _csv(t0: int, rows: list[tuple[float, float]]) -> str:
    return "time,login,search\n" + "".join(f"{t0 + i * STEP},{a},{b}\n" for i, (a, b) in enumerate(rows))


QPS = {"time_column": "time", "metrics": [{"metric": "app.qps", "field": "route", "kind": "interval"}]}
RUN_A = [(10, 1), (20, 2), (30, 3), (40, 4), (50, 5)]
RUN_B = [(12, 3), (18, 3), (33, 4), (60, 4)]  # one step shorter


def test_two_imports_aligned_with_the_difference_of_averages_and_percentiles(srv) -> None:
    server, c = srv
    a = _import_csv(c["operator"], "monday.csv", _csv(T_A, RUN_A), "web1", QPS)
    b = _import_csv(c["operator"], "tuesday.csv", _csv(T_B, RUN_B), "web1", QPS)
    inst = c["operator"].post(f"{API}/instrumentations", json={"metric": "app.qps",
                                                                "decomposition": ["route"]})
    assert inst.status_code == 201, inst.text
    iid = inst.json()["id"]
    r = c["viewer"].get(f"{API}/instrumentations/{iid}/compare",
                        params={"a_import": a["id"], "b_import": b["id"]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["step"] == STEP and body["per_second"] and body["offsets"] == [i * STEP for i in range(5)]
    assert body["runs"]["a"]["start_time"] == T_A and body["runs"]["b"]["start_time"] == T_B
    # Aligned to their starts: step i of each run is i x 10 s into it, rates per second.
    assert body["series"]["a"] == [{"login": x, "search": y} for x, y in RUN_A]
    assert body["series"]["b"] == [{"login": x, "search": y} for x, y in RUN_B] + [None]
    rows = {row["key"]: row for row in body["rows"]}
    assert list(rows) == ["login", "search"]  # the larger first
    for k, col in (("login", 0), ("search", 1)):
        want_a = _stats([float(r[col]) for r in RUN_A])
        want_b = _stats([float(r[col]) for r in RUN_B])
        for stat in want_a:
            assert rows[k]["a"][stat] == pytest.approx(want_a[stat])
            assert rows[k]["b"][stat] == pytest.approx(want_b[stat])
            assert rows[k]["difference"][stat] == pytest.approx(want_b[stat] - want_a[stat])
            assert rows[k]["change"][stat] == pytest.approx((want_b[stat] - want_a[stat]) / want_a[stat])
        assert (rows[k]["a"]["steps"], rows[k]["b"]["steps"]) == (5, 4)
        assert rows[k]["a"]["max"] == max(r[col] for r in RUN_A)
    # A coarser step: each step's rate is the mean rate of the rows it holds.
    wide = c["viewer"].get(f"{API}/instrumentations/{iid}/compare",
                           params={"a_import": a["id"], "b_import": b["id"], "step": 20}).json()
    assert wide["series"]["a"][0] == {"login": 15.0, "search": 1.5} and wide["offsets"] == [0, 20, 40]

    # The CLI: a table with the same figures, and the same JSON.
    token = server.token("cmp-cli", "viewer")
    exe = str(Path(os.environ.get("VIRTUAL_ENV", Path(__file__).parents[1] / ".venv")) / "bin" / "fleetscope")
    args = [exe, "--token", token, "compare", str(iid), f"import:{a['id']}", f"import:{b['id']}",
            "--url", server.url]
    done = subprocess.run(args, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "COLUMNS": "200"})
    assert done.returncode == 0, done.stderr
    login = [ln.split() for ln in done.stdout.splitlines() if ln.split()[:2] == ["login", "average"]]
    assert login == [["login", "average", "30", "30.75", "0.75", "+2.5", "%"]], done.stdout
    as_json = subprocess.run([*args, "--json"], capture_output=True, text=True, timeout=60)
    assert json.loads(as_json.stdout) == body


def test_an_import_against_a_live_range(srv) -> None:
    _, c = srv
    host = os.uname().nodename
    inst = c["operator"].post(f"{API}/instrumentations", json={"metric": "cpu.usage",
                                                                "decomposition": ["mode"]})
    assert inst.status_code == 201, inst.text
    iid = inst.json()["id"]
    t0 = int(time.time()) + 1

    def live() -> list[dict] | None:  # five final seconds of the live host from t0
        pts = c["viewer"].get(f"{API}/instrumentations/{iid}/value", params={
            "start_time": t0, "end_time": t0 + 5, "duration": 1}).json()
        return pts if isinstance(pts, list) and len(pts) == 5 and all(p["value"] for p in pts) else None

    points = wait_for(live, timeout=30)
    cpu = {"time_column": "time", "metrics": [{"metric": "cpu.usage", "field": "mode", "scale": 0.01}]}
    shares = "time,user,system\n" + "".join(f"{T_A + i},{20 + i},{5}\n" for i in range(6))
    imp = _import_csv(c["operator"], "cpu.csv", shares, "bench1", cpu)
    r = c["viewer"].get(f"{API}/instrumentations/{iid}/compare",
                        params={"a_import": imp["id"], "b_start": t0, "b_end": t0 + 5})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["step"] == 1 and body["runs"]["b"]["import"] is None
    rows = {row["key"]: row for row in body["rows"]}
    assert rows["user"]["a"]["average"] == pytest.approx(statistics.fmean(0.2 + i / 100 for i in range(6)))
    for mode in ("user", "system"):  # the live run as /value answers it (CPU seconds per second)
        want = _stats([p["value"].get(mode, 0.0) for p in points])
        assert rows[mode]["b"]["average"] == pytest.approx(want["average"])
        assert rows[mode]["b"]["p90"] == pytest.approx(want["p90"])
    assert body["series"]["b"] == [p["value"] for p in points] + [None]  # the import is a row longer
    assert host  # the live run is this host's own CPU


def test_distributions_compare_merged_histograms(srv, tmp_path) -> None:
    """cpu.utilization by utilization (a heatmap across CPUs) from two real mpstat runs."""
    _, c = srv
    env = {**os.environ, "LC_ALL": "C", "TZ": "UTC"}
    runs = [subprocess.run(["mpstat", "-P", "ALL", "1", "2"], capture_output=True, env=env, check=True).stdout
            for _ in range(2)]
    ids = []
    busy: list[list[float]] = []
    for n, out in enumerate(runs):
        r = c["operator"].post(f"{API}/imports", data={"format": "mpstat", "host": f"mp{n}"},
                               files=[("file", (f"mp{n}.txt", out, "text/plain"))])
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
        lines = [ln.split() for ln in out.decode().splitlines()]
        busy.append([100 - float(p[-1]) for p in lines if len(p) > 3 and p[0][:2].isdigit() and p[1] not in (
            "CPU", "all")])
    inst = c["operator"].post(f"{API}/instrumentations", json={"metric": "cpu.utilization",
                                                                "decomposition": ["utilization"]})
    iid = inst.json()["id"]
    body = c["viewer"].get(f"{API}/instrumentations/{iid}/compare",
                           params={"a_import": ids[0], "b_import": ids[1]}).json()
    assert body["shape"] == "histogram" and not body["per_second"]
    (row,) = body["rows"]
    for run, figures in (("a", busy[0]), ("b", busy[1])):
        assert row[run]["count"] == len(figures)  # one count per CPU per report
        # The buckets' estimate (schema 3: within 5 %) of what mpstat printed.
        assert row[run]["average"] == pytest.approx(statistics.fmean(figures), rel=0.05, abs=0.5)
    assert row["difference"]["average"] == pytest.approx(row["b"]["average"] - row["a"]["average"])


def test_who_may_compare_and_what_is_refused(srv) -> None:
    _, c = srv
    mine = _import_csv(c["acme"], "acme.csv", _csv(T_A, RUN_A[:3]), "acme-db", QPS)
    theirs = _import_csv(c["operator"], "ops.csv", _csv(T_B, RUN_B[:3]), "acme-db", QPS)
    acme_inst = c["acme"].post(f"{API}/instrumentations", json={"metric": "app.qps",
                                                                 "decomposition": ["route"]})
    assert acme_inst.status_code == 201, acme_inst.text
    aid = acme_inst.json()["id"]
    ok = c["acme"].get(f"{API}/instrumentations/{aid}/compare",
                       params={"a_import": mine["id"], "b_start": T_B, "b_end": T_B + 30})
    assert ok.status_code == 200, ok.text
    # An import the tenant cannot list is one that does not exist.
    hidden = c["acme"].get(f"{API}/instrumentations/{aid}/compare",
                           params={"a_import": mine["id"], "b_import": theirs["id"]})
    assert hidden.status_code == 404 and hidden.json()["error"]["field"] == "b_import"
    ops = c["operator"].post(f"{API}/instrumentations", json={"metric": "app.qps"}).json()["id"]
    assert c["acme"].get(f"{API}/instrumentations/{ops}/compare",
                         params={"a_import": mine["id"], "b_import": mine["id"]}).status_code == 404
    # A tenant's import is read by the tenant's instrumentations only, even for an operator.
    r = c["operator"].get(f"{API}/instrumentations/{ops}/compare",
                          params={"a_import": mine["id"], "b_import": theirs["id"]})
    assert r.status_code == 404 and r.json()["error"]["field"] == "a_import"
    for params, field in (({"a_import": theirs["id"]}, "b_start"),
                          ({"a_import": theirs["id"], "a_start": 1, "a_end": 2, "b_import": theirs["id"]},
                           "a_import"),
                          ({"a_start": 5, "a_end": 5, "b_import": theirs["id"]}, "a_end"),
                          ({"a_import": theirs["id"], "b_import": 999999}, "b_import"),
                          ({"a_import": theirs["id"], "b_start": 0, "b_end": 10**7, "step": 1}, "step")):
        r = c["operator"].get(f"{API}/instrumentations/{ops}/compare", params=params)
        assert r.status_code in (404, 422) and r.json()["error"]["field"] == field, (params, r.text)
    got = c["viewer"].get(f"{API}/instrumentations/{ops}/compare", params={
        "a_import": theirs["id"], "b_import": theirs["id"], "step": 1})
    assert got.status_code == 200 and got.json()["rows"][0]["difference"]["average"] == 0


def test_a_csv_metric_is_known_after_a_restart(fresh_server: Server) -> None:
    """A metric a CSV defined is kept with its import: a restarted server still offers it."""
    with fresh_server.client() as c:
        _import_csv(c, "run.csv", _csv(T_A, RUN_A), "web9", QPS)
    fresh_server.stop()
    fresh_server.start()
    with fresh_server.client() as c:
        metric = next(m for m in c.get(f"{API}/metrics").json()["metrics"] if m["name"] == "app.qps")
        assert metric["kind"] == "interval" and [f["name"] for f in metric["fields"]] == ["hostname", "route"]
        made = c.post(f"{API}/instrumentations", json={"metric": "app.qps", "decomposition": ["route"]})
        assert made.status_code == 201, made.text
        got = c.get(f"{API}/instrumentations/{made.json()['id']}/value",
                    params={"start_time": T_A, "end_time": T_A + 50, "duration": STEP}).json()
        assert [p["value"] for p in got] == [{"login": x * STEP, "search": y * STEP} for x, y in RUN_A]
