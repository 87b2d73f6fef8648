"""CSV files of one event per row imported as counts and distributions: Apache Bench's ``ab -g``
TSV of a real run against a real local HTTP server (made in the test), and a JMeter ``.jtl``
CSV (tests/data/jmeter-shop.jtl: JMeter 5's default columns, samples written in the order they
ended, a transaction controller's rows, failures). The values the API answers are checked
against the files read here with the csv module: events per second by label, failures,
latency distributions (heatmaps by label, percentiles within a bucket of the file's own);
malformed files are refused with the line and the reason and leave nothing.
"""

from __future__ import annotations

import collections
import csv
import json
import math
import shutil
import statistics
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Server, free_port, wait_for
from tests.test_imports import API, Api, _cli

JTL = Path(__file__).parent / "data" / "jmeter-shop.jtl"
JMETER = {"time_column": "timeStamp",
          "events": {"metric": "jmeter.requests", "value_column": "elapsed",
                     "columns": {"label": "label", "code": "responseCode", "success": "success"}}}
BUCKET = 2 ** (1 / 8)  # the width of a histogram bucket (schema 3) as a ratio


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Api]]:
    server = Server(tmp_path_factory.mktemp("events"), free_port(), auth=True).start()
    yield server, Api(server, server.token("ev-op", "operator"))
    server.stop()


def _jtl_rows() -> list[dict]:
    with open(JTL, newline="") as f:
        return list(csv.DictReader(f))


def _steps(api: Api, inst: int, start: int, end: int, path: str = "value", **params) -> dict[int, dict]:
    r = api.c.get(f"{API}/instrumentations/{inst}/{path}", params={
        "start_time": start, "end_time": end, "duration": 1, **params})
    assert r.status_code == 200, r.text
    return {p["start_time"]: p for p in r.json()}


def test_jmeter_jtl_counts_failures_and_latency_by_label(srv) -> None:
    _, api = srv
    r = api.upload("csv", JTL, host="jmeter-rig", mapping=json.dumps(JMETER))
    assert r.status_code == 201, r.text
    imp = r.json()
    rows = _jtl_rows()
    second = [int(row["timeStamp"]) // 1000 for row in rows]
    assert imp["start_time"] == min(second) and imp["end_time"] == max(second) + 1
    assert imp["interval"] == 1 and imp["metrics"] == ["jmeter.requests"]
    defined = imp["defined"]["jmeter.requests"]
    assert defined["kind"] == "interval"
    assert [(f["name"], f["kind"]) for f in defined["fields"]] == [
        ("hostname", "discrete"), ("label", "discrete"), ("code", "discrete"), ("success", "discrete"),
        ("latency", "numeric")]
    span = (imp["start_time"], imp["end_time"])
    mine = {"eq": ["hostname", "jmeter-rig"]}
    # Events per second by label: exactly the rows of each second (the file is not in time order).
    by_label = api.instrument("jmeter.requests", ["label"], mine)
    want: dict[int, collections.Counter] = collections.defaultdict(collections.Counter)
    for row, s in zip(rows, second, strict=True):
        want[s][row["label"]] += 1
    got = _steps(api, by_label, *span)
    assert set(got) == set(range(*span))  # every second, none without a value
    for s in range(*span):
        assert got[s]["value"] == dict(want.get(s, {})), s
    # Failures: success == "false", by response code (JMeter's "Non HTTP response code: ..." too).
    failed = api.instrument("jmeter.requests", ["code"], {"and": [mine, {"eq": ["success", "false"]}]})
    codes = collections.Counter(row["responseCode"] for row in rows if row["success"] == "false")
    whole = api.values(failed, span[0], span[1], span[1] - span[0])
    assert whole[0]["value"] == dict(codes) and len(codes) >= 2
    # The latency distribution by label: a heatmap column holds each second's events of a label.
    dist = api.instrument("jmeter.requests", ["label", "latency"], mine)
    hm = api.c.get(f"{API}/instrumentations/{dist}/heatmap", params={
        "start_time": span[0], "end_time": span[1], "step": 1, "format": "json", "ymax": 100000,
        "nbuckets": 50, "selected": "Search,Home"})
    assert hm.status_code == 200, hm.text
    body = hm.json()
    assert body["times"] == list(range(*span)) and body["unit"]["base"] == "seconds"
    for label in ("Search", "Home"):
        counts = [sum(col) for col in body["keys"][label]]
        assert counts == pytest.approx([want.get(s, {}).get(label, 0) for s in range(*span)]), label
    # Percentiles of a label over the whole run: in the bucket of the file's own.
    search = api.instrument("jmeter.requests", ["latency"], {"and": [mine, {"eq": ["label", "Search"]}]})
    pct = api.c.get(f"{API}/instrumentations/{search}/percentiles", params={
        "start_time": span[0], "end_time": span[1], "duration": span[1] - span[0], "q": "0.5,0.95"}).json()
    elapsed = sorted(float(row["elapsed"]) for row in rows if row["label"] == "Search")
    for q in (0.5, 0.95):
        exact = elapsed[math.ceil(q * len(elapsed)) - 1]
        assert pct[0]["percentiles"][f"{q:g}"] == pytest.approx(exact, rel=BUCKET - 1), q
    avg = api.c.get(f"{API}/instrumentations/{search}/average", params={
        "start_time": span[0], "end_time": span[1], "duration": span[1] - span[0]}).json()
    assert avg[0]["average"] == pytest.approx(statistics.fmean(elapsed), rel=0.05)
    assert avg[0]["count"] == len(elapsed)
    # A predicate on the figure: the events slower than a second.
    slow = api.instrument("jmeter.requests", [], {"and": [mine, {"gt": ["latency", 1000]}]})
    total = api.values(slow, span[0], span[1], span[1] - span[0])[0]["value"]
    # Whole buckets: an event counts where its bucket lies, so compare outside the one holding 1000 ms.
    assert (sum(float(row["elapsed"]) > 1000 * BUCKET for row in rows) <= total
            <= sum(float(row["elapsed"]) > 1000 / BUCKET for row in rows))


@pytest.fixture(scope="module")
def ab_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``ab -g`` of 400 requests, 8 at a time, against Python's own HTTP server on loopback."""
    if shutil.which("ab") is None:
        pytest.fail("missing ab: `make test` installs apache2-utils (scripts/system-deps.sh)", pytrace=False)
    d = tmp_path_factory.mktemp("ab")
    (d / "www").mkdir()
    (d / "www" / "page.html").write_text("<p>hello</p>\n" * 200)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                               "--directory", str(d / "www")], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/page.html"

        def up() -> bool:
            try:
                return httpx.get(url, timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up)
        out = d / "ab.tsv"
        done = subprocess.run(["ab", "-q", "-n", "400", "-c", "8", "-g", str(out), url], capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    finally:
        server.terminate()
        server.wait(10)
    return out


def test_ab_gnuplot_output_of_a_real_run(srv, ab_log: Path) -> None:
    server, api = srv
    with open(ab_log, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert len(rows) == 400
    token = server.token("ev-cli", "operator")
    done = _cli(server, token, "import", "csv", str(ab_log), "--host", "ab-rig", "--events",
                "--time-column", "seconds", "--value-column", "ttime", "--metric", "ab.requests", "--json")
    assert done.returncode == 1 and "no column 'seconds'" in done.stderr, done.stderr  # a TSV read as CSV
    mapping = ab_log.with_suffix(".toml")
    mapping.write_text('delimiter = "\\t"\n[events]\nfields = { tool = "ab" }\n')
    done = _cli(server, token, "import", "csv", str(ab_log), "--host", "ab-rig", "--events",
                "--mapping", str(mapping), "--time-column", "seconds", "--value-column", "ttime",
                "--metric", "ab.requests", "--json")
    assert done.returncode == 0, done.stderr
    imp = json.loads(done.stdout)
    per_second = collections.Counter(int(row["seconds"]) for row in rows)
    assert (imp["start_time"], imp["end_time"]) == (min(per_second), max(per_second) + 1)
    span = (imp["start_time"], imp["end_time"])
    mine = {"and": [{"eq": ["hostname", "ab-rig"]}, {"eq": ["tool", "ab"]}]}
    count = api.instrument("ab.requests", [], mine)
    got = _steps(api, count, *span)
    assert {s: p["value"] for s, p in got.items()} == {s: per_second.get(s, 0) for s in range(*span)}
    dist = api.instrument("ab.requests", ["latency"], mine)
    whole = api.values(dist, span[0], span[1], span[1] - span[0])[0]["value"]
    ttime = [float(row["ttime"]) for row in rows]
    assert whole["count"] == 400 and whole["zero_count"] == sum(t == 0 for t in ttime)
    assert whole["sum"] == pytest.approx(sum(ttime), rel=0.05, abs=1.0)


def test_malformed_event_files_are_refused_with_line_and_reason(srv, tmp_path: Path) -> None:
    _, api = srv
    before = api.c.get(f"{API}/imports").json()["imports"]
    head = JTL.read_text().splitlines()[:4]
    good = "\n".join(head) + "\n"
    third = head[2].split(",")
    cases = {
        "word.jtl": good + ",".join([third[0], "fast", *third[2:]]) + "\n",
        "negative.jtl": good + ",".join([third[0], "-5", *third[2:]]) + "\n",
        "short.jtl": good + ",".join(third[:5]) + "\n",
        "when.jtl": good + ",".join(["noon", *third[1:]]) + "\n",
        "nolabel.jtl": good.replace(",label,", ",name,", 1),
        "quote.jtl": good + third[0] + ',5,"Home\n',
        "empty.jtl": head[0] + "\n",
    }
    reasons = {
        "word.jtl": "line 5: column 'elapsed': not a number: 'fast'",
        "negative.jtl": "line 5: column 'elapsed': must be a finite number >= 0",
        "short.jtl": "line 5: expected 17 columns as the header, found 5",
        "when.jtl": "line 5: column 'timeStamp': not a time: 'noon'",
        "nolabel.jtl": "line 1: no column 'label' (the column of field label)",
        "quote.jtl": "line 5: malformed CSV (unexpected end of data)",
        "empty.jtl": "no events: a header and no rows",
    }
    for name, text in cases.items():
        f = tmp_path / name
        f.write_text(text)
        r = api.upload("csv", f, host="bad", mapping=json.dumps(JMETER))
        message = r.json()["error"]["message"]
        assert r.status_code == 422 and f"{name}: {reasons[name]}" in message, (name, r.text)
    # Bounded: a label per row runs past the keys a chunk may have, refused where it does.
    many = tmp_path / "labels.jtl"
    many.write_text(head[0] + "\n" + "".join(",".join([third[0], "5", f"page {i}", *third[3:]]) + "\n"
                                             for i in range(4200)))
    r = api.upload("csv", many, host="bad", mapping=json.dumps(JMETER))
    assert r.status_code == 422 and "labels.jtl: line 4098: more than 4096 distinct keys" in r.text, r.text
    ok = tmp_path / "ok.jtl"
    ok.write_text(good)
    for events, why in (({"metric": "cpu.usage", "value_column": "elapsed"}, "is a metric of host logs"),
                        ({"metric": "jmeter.x"}, "value_column"),
                        ({"metric": "jmeter.x", "value_column": "elapsed", "columns": {"hostname": "label"}},
                         "hostname is the import's host"),
                        ({"metric": "jmeter.x", "value_column": "elapsed", "scale": 0}, "scale")):
        mapping = {"time_column": "timeStamp", "events": events}
        r = api.upload("csv", ok, host="bad", mapping=json.dumps(mapping))
        assert r.status_code == 422 and why in r.json()["error"]["message"], (events, r.text)
        assert r.json()["error"]["field"] == "mapping"
    # One metric, one meaning: the events metric of an earlier import keeps its field kinds.
    clash = {"time_column": "timeStamp", "metrics": [{"metric": "jmeter.requests", "field": "latency",
                                                      "columns": ["elapsed", "bytes"]}]}
    r = api.upload("csv", ok, host="bad", mapping=json.dumps(clash))
    assert r.status_code == 422 and "jmeter.requests was imported before" in r.text, r.text
    assert api.c.get(f"{API}/imports").json()["imports"] == before
