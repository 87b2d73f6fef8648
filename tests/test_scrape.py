"""Prometheus scraping: the exposition parser (and a fuzz), counters to rates, classic
histograms to the exponential layout, and a real prometheus_client HTTP server scraped by
a real `fleetscope serve --scrape`."""

from __future__ import annotations

import math

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, start_http_server

from fleetscope.agent.evaluate import Plan
from fleetscope.model import histogram as hist
from fleetscope.model.errors import InputError
from fleetscope.model.instrumentation import Instrumentation, validate_spec
from fleetscope.model.metrics import Catalog
from fleetscope.sources.promtext import Sample, parse, parse_sample
from fleetscope.sources.scrape import ScrapeSource, Target, parse_target
from tests.conftest import Server, free_port
from tests.test_api import API, wait_for
from tests.test_otlp import collect_well_formed


def test_parse_samples_and_families() -> None:
    assert parse_sample('a_b{x="1",y="q\\"u\\\\o\\nte"} 2.5 1700000000') == Sample(
        "a_b", (("x", "1"), ("y", 'q"u\\o\nte')), 2.5)
    assert parse_sample("up 1").value == 1.0
    assert parse_sample('h_bucket{le="+Inf",} 3 # {trace_id="x"} 1').value == 3.0
    assert math.isinf(parse_sample("x +Inf").value)
    for bad in ("", "{}", "a{x=1} 2", "a{x=\"1\" 2", "a", "a 1 2 3", "a x", "a{x=\"1\"}"):
        with pytest.raises(ValueError):
            parse_sample(bad)
    text = "# TYPE req histogram\nreq_bucket{le=\"1\"} 1\nreq_bucket{le=\"+Inf\"} 2\nreq_sum 3\n" \
           "req_count 2\n# TYPE n counter\nn_total 4\nfree 1\ngarbage line here\n"
    scrape = parse(text)
    assert scrape.bad == 1
    assert {f.name: (f.type, len(f.samples)) for f in scrape.families.values()} == {
        "req": ("histogram", 4), "n": ("counter", 1), "free": ("untyped", 1)}


_PIECES = [*'ab_{}="\\,# \n\t1.e+-', "le", "# TYPE a ", "histogram", "counter", "_bucket", "_total",
           "+Inf", "NaN",
           # whole lines, so that many texts hold samples beside their junk
           "\na 1\n", '\na_bucket{le="1"} 2\n', '\na_bucket{le="+Inf"} 3\n', "\na_count 3\n",
           '\nb_total{x="y"} 4\n', "\n# TYPE a histogram\n", "\n# TYPE b counter\n"]


def _survivor(jobs: float) -> str:
    """A known-good scrape, fed after the fuzzed ones: no name in it can be made of _PIECES."""
    return (f'# TYPE zq_survivor_jobs counter\nzq_survivor_jobs_total{{queue="mail"}} {jobs!r}\n'
            "# TYPE zq_survivor_temp gauge\nzq_survivor_temp 21.5\n")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=40).map("".join))
def test_fuzz_parser_never_raises(text: str) -> None:
    scrape = parse(text)
    # Every line that is neither blank nor a comment is a sample or counted bad.
    content = [line for line in text.split("\n") if line.strip() and not line.strip().startswith("#")]
    samples = sum(len(f.samples) for f in scrape.families.values())
    assert scrape.bad + samples == len(content)
    event(f"{'some' if samples else 'no'} samples, {'some' if scrape.bad else 'no'} bad lines")
    src = ScrapeSource([])
    src.ingest_text(text)
    src.ingest_text(text)
    assert src.dropped["syntax"] == 2 * scrape.bad, "each bad line counted, each time"
    src.ingest_text(_survivor(5), "survivor")  # a baseline...
    src.ingest_text(_survivor(8), "survivor")  # ...and an increase of 3
    rows = collect_well_formed(src, 1.0)
    dropped = sum(n for _, _, n in rows["fleetscope.scrape_dropped"].rows)
    assert dropped == sum(src.dropped.values())
    assert _evaluate(src, {"module": "prom", "stat": "zq_survivor_jobs", "decomposition": ["queue"]}) == {
        "mail": 3.0}
    assert _evaluate(src, {"module": "prom", "stat": "zq_survivor_temp"}) == 21.5


def test_parse_target() -> None:
    assert parse_target("http://h:9100/metrics") == Target("http://h:9100/metrics", 10.0)
    assert parse_target("http://h/m,2.5") == Target("http://h/m", 2.5)
    for bad in ("h:9100", "http://h,0", "http://h,x"):
        with pytest.raises(InputError) as err:
            parse_target(bad)
        assert err.value.field == "scrape"


def _evaluate(src: ScrapeSource, body: dict):
    inst = Instrumentation(id=1, created=0.0, **validate_spec(body, Catalog(src.metrics())))
    rows = src.collect(inst.metric)
    return Plan(inst, rows.columns, {"hostname": "h"}).evaluate(rows.rows, rows.weighted)


def test_counters_histograms_and_gauges_from_a_registry() -> None:
    reg = CollectorRegistry()
    jobs = Counter("jobs", "jobs done", ["queue"], registry=reg)
    temp = Gauge("temp_celsius", "temperature", registry=reg)
    lat = Histogram("job_seconds", "job time", buckets=[0.01, 0.1, 1, 10], registry=reg)
    src = ScrapeSource([])
    jobs.labels("mail").inc(5)
    lat.observe(0.5)
    src.ingest_text(generate_latest(reg).decode())  # first scrape: nothing counted, names known
    src.begin_tick(1.0)
    names = {m.name: m for m in src.metrics()}
    assert {"prom.jobs", "prom.temp_celsius", "prom.job_seconds"} <= names.keys()
    assert names["prom.job_seconds"].field("value").type.name == "s"
    assert _evaluate(src, {"module": "prom", "stat": "jobs", "decomposition": ["queue"]}) == {}
    jobs.labels("mail").inc(3)
    jobs.labels("sms").inc(2)
    temp.set(21.5)
    for x in (0.005, 0.05, 0.05, 2, 50):
        lat.observe(x)
    src.ingest_text(generate_latest(reg).decode())
    src.begin_tick(2.0)
    # sms is new in this scrape: its first value is only a baseline.
    assert _evaluate(src, {"module": "prom", "stat": "jobs", "decomposition": ["queue"]}) == {"mail": 3.0}
    assert _evaluate(src, {"module": "prom", "stat": "temp_celsius"}) == 21.5
    want = hist.Histogram()
    for at in (0.01, 0.1, 0.1, 10, 10):  # upper bounds; +Inf at the last finite bound
        want.record(at)
    assert _evaluate(src, {"module": "prom", "stat": "job_seconds", "decomposition": ["value"]}) == want


def test_real_prometheus_client_server_end_to_end(tmp_path) -> None:
    reg = CollectorRegistry()
    requests = Counter("http_requests", "requests", ["method", "code"], registry=reg)
    latency = Histogram("http_latency_seconds", "latency", ["route"],
                        buckets=[0.005, 0.01, 0.05, 0.1, 0.5, 1], registry=reg)
    queue = Gauge("queue_length", "queue", registry=reg)
    requests.labels("GET", "200").inc(0)
    latency.labels("/a").observe(0.001)
    queue.set(3)
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=reg)
    srv = Server(tmp_path, free_port(), ["--scrape", f"http://127.0.0.1:{port}/metrics,1"]).start()
    try:
        with srv.client() as c:
            wanted = {"prom.http_requests", "prom.http_latency_seconds", "prom.queue_length"}
            wait_for(lambda: wanted <= {m["name"] for m in c.get(f"{API}/metrics").json()["metrics"]})
            specs = {"req": {"module": "prom", "stat": "http_requests", "decomposition": ["code"]},
                     "lat": {"module": "prom", "stat": "http_latency_seconds",
                             "decomposition": ["route", "value"]},
                     "queue": {"module": "prom", "stat": "queue_length"}}
            ids = {k: c.post(f"{API}/instrumentations", json=v).json()["id"] for k, v in specs.items()}
            for i in ids.values():
                wait_for(lambda i=i: [p for p in c.get(f"{API}/instrumentations/{i}/value",
                                                       params={"ndatapoints": 3}).json() if p["nsources"]])
            requests.labels("GET", "200").inc(7)
            requests.labels("GET", "500").inc(0)
            for x in (0.002, 0.02, 0.02, 0.3, 4):
                latency.labels("/a").observe(x)

            def values(key: str) -> list:
                return [p["value"] for p in c.get(f"{API}/instrumentations/{ids[key]}/value",
                                                  params={"ndatapoints": 30}).json() if p["value"]]

            def requests_counted():
                total: dict[str, float] = {}
                for v in values("req"):
                    for k, x in v.items():
                        total[k] = total.get(k, 0.0) + x
                return total if total.get("200") == 7 else None

            wait_for(requests_counted, timeout=10)

            def latencies():
                got = hist.Histogram()
                for v in values("lat"):
                    for h in v.values():
                        got.merge(hist.Histogram.from_json(h))
                return got if got.count >= 5 else None

            got = wait_for(latencies, timeout=10)
            want = hist.Histogram()
            for at in (0.005, 0.05, 0.05, 0.5, 1):
                want.record(at)
            assert got == want, "each value counted at its source bucket's upper bound"
            assert values("queue")[-1] == 3.0
    finally:
        srv.stop()
        server.shutdown()
        thread.join(5)
