"""`GET /metrics`: the exposition text, parsed back by prometheus_client, and a real
Prometheus scraping a real `fleetscope serve` and answering through its HTTP API."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families as parse_text

from fleetscope.api.exposition import Sample, render, wants_openmetrics
from fleetscope.model.histogram import Histogram, bucket_index, bucket_upper
from fleetscope.model.instrumentation import Instrumentation, validate_spec
from fleetscope.model.metrics import Catalog
from fleetscope.sources.statsd import StatsdSource
from tests.conftest import Server, free_port
from tests.test_api import API, default_id, wait_for


def _catalog() -> Catalog:
    src = StatsdSource()
    src.ingest(b"lat:1|ms|#route:/a\nhits:1|c|#route:/a\ntemp:1|g")
    return Catalog(src.metrics())


def _inst(inst_id: int, body: dict) -> Instrumentation:
    return Instrumentation(id=inst_id, created=0.0, **validate_spec(body, _catalog()))


def _hist(*xs: float) -> Histogram:
    h = Histogram()
    for x in xs:
        h.record(x)
    return h


def _samples() -> list[Sample]:
    return [
        Sample(_inst(1, {"module": "app", "stat": "hits"}), 12.5),
        Sample(_inst(2, {"module": "app", "stat": "hits", "decomposition": ["route"]}),
               {"/a": 3.0, 'we"ird\\\n': 4.0}),
        Sample(_inst(3, {"module": "app", "stat": "lat", "decomposition": ["value"]}),
               _hist(0, 1, 1, 10, 1000)),
        Sample(_inst(4, {"module": "app", "stat": "lat", "decomposition": ["route", "value"]}),
               {"/a": _hist(5), "/b": _hist(7, 7)}),
    ]


def test_text_format_parses_back_exactly() -> None:
    families = {f.name: f for f in parse_text(render(_samples()))}
    gauge = families["fleetscope_app_hits"]
    assert gauge.type == "gauge"
    got = {(s.labels["instrumentation"], s.labels.get("route")): s.value for s in gauge.samples}
    assert got == {("1", None): 12.5, ("2", "/a"): 3.0, ("2", 'we"ird\\\n'): 4.0}
    hist = families["fleetscope_app_lat_value"]
    assert hist.type == "histogram"
    one = {s.labels["le"]: s.value for s in hist.samples
           if s.name.endswith("_bucket") and s.labels["instrumentation"] == "3"}
    # Cumulative counts at the exact bucket bounds of the layout, the zero bucket first.
    assert one == {"0.0": 1.0, repr(bucket_upper(bucket_index(1, 3), 3)): 3.0,
                   repr(bucket_upper(bucket_index(10, 3), 3)): 4.0,
                   repr(bucket_upper(bucket_index(1000, 3), 3)): 5.0, "+Inf": 5.0}
    sums = {(s.name, s.labels["instrumentation"], s.labels.get("route")): s.value for s in hist.samples
            if not s.name.endswith("_bucket")}
    assert sums[("fleetscope_app_lat_value_sum", "3", None)] == 1012.0
    assert sums[("fleetscope_app_lat_value_count", "4", "/b")] == 2.0


def test_openmetrics_format_parses_back() -> None:
    assert wants_openmetrics("application/openmetrics-text;version=1.0.0,text/plain;q=0.5")
    assert not wants_openmetrics("text/plain") and not wants_openmetrics(None)
    text = render(_samples(), openmetrics=True)
    assert text.endswith("# EOF\n")
    families = {f.name: f for f in parse_om(text)}
    assert families["fleetscope_app_lat_value"].type == "gaugehistogram"
    gcount = [s.value for s in families["fleetscope_app_lat_value"].samples if s.name.endswith("_gcount")]
    assert sorted(gcount) == [1.0, 2.0, 5.0]


def test_protobuf_exposition_carries_exact_native_histograms() -> None:
    from fleetscope.api import promproto
    from fleetscope.formats import promproto as codec

    assert promproto.wants_protobuf(
        "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.8")
    assert codec.is_protobuf(promproto.CONTENT_TYPE) and not codec.is_protobuf("text/plain; version=0.0.4")
    decoded, bad = codec.decode_delimited(promproto.render(_samples()))
    assert bad == []
    families = {fam.name: fam for fam in decoded}
    assert families["fleetscope_app_hits"].type == codec.GAUGE
    assert [m.gauge.value for m in families["fleetscope_app_hits"].metric] == [12.5, 3.0, 4.0]
    lat = families["fleetscope_app_lat_value"]
    assert lat.type == codec.GAUGE_HISTOGRAM  # one slot's distribution, not a running total
    got = {tuple((lp.name, lp.value) for lp in m.label): codec.decode_native(m.histogram) for m in lat.metric}
    assert got[(("instrumentation", "3"),)] == _hist(0, 1, 1, 10, 1000)
    assert got[(("instrumentation", "4"), ("route", "/b"))] == _hist(7, 7)


def test_text_formats_print_no_float_noise() -> None:
    """Sums of decimals print as those decimals (15 significant digits), whole numbers without
    a fraction; bucket bounds stay exact (they are the layout's, not sums)."""
    noisy = _hist(0.1, 0.2, 0.3)  # sum 0.6000000000000001 in binary
    samples = [Sample(_inst(1, {"module": "app", "stat": "hits"}), 0.01 + 0.05),
               Sample(_inst(2, {"module": "app", "stat": "hits", "decomposition": ["route"]}),
                      {"/a": 0.1 + 0.2, "/b": 7.0}),
               Sample(_inst(3, {"module": "app", "stat": "lat", "decomposition": ["value"]}), noisy)]
    for om in (False, True):
        lines = render(samples, openmetrics=om).splitlines()
        assert 'fleetscope_app_hits{instrumentation="1"} 0.06' in lines
        assert 'fleetscope_app_hits{instrumentation="2",route="/a"} 0.3' in lines
        assert 'fleetscope_app_hits{instrumentation="2",route="/b"} 7' in lines
        g = "g" if om else ""
        assert f'fleetscope_app_lat_value_{g}sum{{instrumentation="3"}} 0.6' in lines
        assert f'fleetscope_app_lat_value_{g}count{{instrumentation="3"}} 3' in lines
        bounds = [line.split('le="')[1].split('"')[0] for line in lines if "_bucket" in line]
        assert bounds[:-1] == [repr(noisy.bucket_bounds(i)[1]) for i in sorted(noisy.buckets)]


def test_own_metrics_are_not_prefixed_twice(client: httpx.Client) -> None:
    from fleetscope.api.exposition import family_name

    own = _inst(9, {"module": "app", "stat": "lat", "decomposition": ["value"]})
    assert family_name(own) == "fleetscope_app_lat_value"
    requests = default_id(client, "fleetscope.api_requests", ["latency"])
    families = {}

    def exposed():
        families.update({f.name: f for f in parse_text(client.get("/metrics").text)})
        return "fleetscope_api_requests_latency" in families

    wait_for(exposed, timeout=15)
    ids = {s.labels["instrumentation"] for s in families["fleetscope_api_requests_latency"].samples}
    assert ids == {str(requests)}
    assert not [name for name in families if name.startswith("fleetscope_fleetscope_")]


def test_live_metrics_endpoint_parses(client: httpx.Client) -> None:
    wait_for(lambda: "fleetscope_cpu_usage" in client.get("/metrics").text, timeout=10)
    resp = client.get("/metrics")
    assert resp.headers["content-type"].startswith("text/plain; version=0.0.4")
    names = {f.name for f in parse_text(resp.text)}
    assert "fleetscope_cpu_usage" in names
    om = client.get("/metrics", headers={"accept": "application/openmetrics-text; version=1.0.0"})
    assert om.headers["content-type"].startswith("application/openmetrics-text")
    assert {f.name for f in parse_om(om.text)} >= {"fleetscope_cpu_usage"}


@pytest.fixture
def prometheus(tmp_path: Path):
    """Start a real Prometheus on a free port; yields a function that starts it for a target."""
    exe = shutil.which("prometheus")
    assert exe, "Debian's prometheus package is needed (scripts/system-deps.sh)"
    procs: list[subprocess.Popen] = []

    def start(target: str, native: bool = False) -> str:
        port = free_port()
        config = tmp_path / f"prometheus{len(procs)}.yml"
        config.write_text("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                          "scrape_configs:\n  - job_name: fleetscope\n"
                          f"    static_configs:\n      - targets: ['{target}']\n")
        log = open(tmp_path / f"prometheus{len(procs)}.log", "wb")  # noqa: SIM115 - kept open for the child
        procs.append(subprocess.Popen(
            [exe, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / f'tsdb{len(procs)}'}",
             f"--web.listen-address=127.0.0.1:{port}",
             *(["--enable-feature=native-histograms"] if native else [])],
            stdout=log, stderr=subprocess.STDOUT))
        url = f"http://127.0.0.1:{port}"

        def ready():
            try:
                return httpx.get(url + "/-/ready", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, timeout=20)
        return url

    yield start
    for p in procs:
        p.terminate()
        p.wait(10)


def hist_bounds(x: float) -> tuple[float, float]:
    """The bounds of the schema-3 bucket holding ``x``."""
    i = bucket_index(x, 3)
    return bucket_upper(i - 1, 3), bucket_upper(i, 3)


def _query(url: str, q: str) -> list[dict]:
    body = httpx.get(url + "/api/v1/query", params={"query": q}, timeout=5).json()
    assert body["status"] == "success", body
    return body["data"]["result"]


def test_real_prometheus_scrapes_fleetscope(tmp_path: Path, prometheus) -> None:
    statsd = free_port()
    srv = Server(tmp_path / "serve", free_port(), ["--statsd", f"127.0.0.1:{statsd}"])
    (tmp_path / "serve").mkdir()
    srv.start()
    stop = threading.Event()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    def feed() -> None:
        while not stop.is_set():
            # Both values in one datagram: they land in the same slot, so half of every
            # slot's count is at or below 10 ms.
            udp.sendto(b"lat:10|ms\nlat:100|ms\ntemp:42.5|g|#room:lab", ("127.0.0.1", statsd))
            time.sleep(0.05)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        with srv.client() as c:
            wait_for(lambda: {"app.lat", "app.temp"} <= {m["name"] for m in
                                                         c.get(f"{API}/metrics").json()["metrics"]})
            for body in ({"module": "app", "stat": "temp", "decomposition": ["room"]},
                         {"module": "app", "stat": "lat", "decomposition": ["value"]}):
                assert c.post(f"{API}/instrumentations", json=body).status_code == 201
        url = prometheus(f"127.0.0.1:{srv.port}")
        # A second Prometheus with native histograms scrapes the protobuf exposition.
        native = prometheus(f"127.0.0.1:{srv.port}", native=True)
        temp = wait_for(lambda: _query(url, "fleetscope_app_temp"), timeout=20)
        assert temp[0]["metric"]["room"] == "lab" and float(temp[0]["value"][1]) == 42.5
        le = repr(bucket_upper(bucket_index(10, 3), 3))
        ratio = wait_for(lambda: _query(
            url, f'fleetscope_app_lat_value_bucket{{le="{le}"}} / ignoring(le) '
                 'fleetscope_app_lat_value_bucket{le="+Inf"}'), timeout=20)
        assert float(ratio[0]["value"][1]) == 0.5
        # Prometheus asks for OpenMetrics first, so it gets a gauge histogram (_gcount, _gsum).
        mean = wait_for(lambda: _query(
            url, "fleetscope_app_lat_value_gsum / fleetscope_app_lat_value_gcount"))
        assert float(mean[0]["value"][1]) == 55.0
        up = _query(url, 'up{job="fleetscope"}')
        assert up[0]["value"][1] == "1"
        nmean = wait_for(lambda: _query(
            native, "histogram_sum(fleetscope_app_lat_value) / histogram_count(fleetscope_app_lat_value)"))
        assert float(nmean[0]["value"][1]) == 55.0
        # The first quartile is estimated inside the exact bucket that holds 10 ms (PromQL
        # interpolates within a native bucket).
        quartile = _query(native, "histogram_quantile(0.25, fleetscope_app_lat_value)")
        lo, hi = hist_bounds(10)
        assert lo < float(quartile[0]["value"][1]) <= hi
        ntemp = _query(native, "fleetscope_app_temp")
        assert float(ntemp[0]["value"][1]) == 42.5
    finally:
        stop.set()
        feeder.join()
        udp.close()
        srv.stop()


def test_grafana_heatmap_cells(client: httpx.Client) -> None:
    from tests.test_api import default_id

    heat = default_id(client, "proc.cpu", ["utilization"])
    wait_for(lambda: len([p for p in client.get(f"{API}/instrumentations/{heat}/value",
                                                params={"ndatapoints": 16}).json() if p["value"]]) == 16,
             timeout=30)
    # A settled range in the past, so both requests see the same final slots.
    params = {"start_time": int(time.time()) - 15, "duration": 5, "nbuckets": 20, "ymax": 100}
    hm = client.get(f"{API}/instrumentations/{heat}/heatmap", params=params).json()
    cells = client.get(f"{API}/instrumentations/{heat}/heatmap",
                       params={**params, "format": "grafana"}).json()
    assert cells and set(cells[0]) == {"xMin", "yMin", "yMax", "count"}
    want = [{"xMin": t * 1000, "yMin": 5.0 * j, "yMax": 5.0 * (j + 1), "count": c}
            for t, col in zip(hm["times"], hm["counts"], strict=True) for j, c in enumerate(col) if c > 0]
    assert len(cells) == len(want)
    for got, exp in zip(cells, want, strict=True):
        assert got == pytest.approx(exp, rel=1e-5, abs=1e-6)  # the JSON matrix keeps 6 digits
