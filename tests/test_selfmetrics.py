"""fleetscope measuring itself: API request latencies and agent tick durations, through a
real `fleetscope serve` and its default latency heatmap."""

from __future__ import annotations

import asyncio

import httpx
from fastapi import FastAPI

from fleetscope.model.histogram import Histogram
from fleetscope.sources.selfmetrics import UNMATCHED, MeasureRequests, SelfSource
from tests.test_api import API, default_id, wait_for


def test_middleware_records_route_templates_and_statuses() -> None:
    src = SelfSource()
    app = FastAPI()

    @app.get("/items/{item}")
    def item(item: int) -> dict:
        return {"item": item}

    app.add_middleware(MeasureRequests, source=src)

    async def main() -> None:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            for path in ("/items/1", "/items/2", "/items/x", "/nowhere"):
                await c.get(path)

    asyncio.run(main())
    src.record_tick(0.0125)
    src.begin_tick(0.0)
    rows = src.collect("fleetscope.api_requests")
    assert rows.weighted and rows.columns == ("route", "method", "status", "latency")
    counts: dict[tuple, float] = {}
    for route, method, status, latency, n in rows.rows:
        assert method == "GET" and latency >= 0
        counts[(route, status)] = counts.get((route, status), 0) + n
    assert counts == {("/items/{item}", "200"): 2, ("/items/{item}", "422"): 1, (UNMATCHED, "404"): 1}
    assert src.collect("fleetscope.agent_tick").rows == [(12.5, 1.0)]


def test_api_requests_and_agent_ticks_end_to_end(client: httpx.Client) -> None:
    heat = default_id(client, "fleetscope.api_requests", ["latency"])
    hosts = client.post(f"{API}/instrumentations", json={
        "module": "fleetscope", "stat": "api_requests", "decomposition": ["status", "latency"],
        "predicate": {"and": [{"eq": ["route", "/api/v1/hosts"]}, {"eq": ["method", "GET"]}]}}).json()
    ticks = client.post(f"{API}/instrumentations", json={
        "module": "fleetscope", "stat": "agent_tick", "decomposition": ["duration"]}).json()
    for inst in (hosts, ticks):
        wait_for(lambda i=inst: [p for p in client.get(f"{API}/instrumentations/{i['id']}/value",
                                                       params={"ndatapoints": 3}).json() if p["nsources"]])
    for _ in range(7):
        assert client.get(f"{API}/hosts").status_code == 200

    def seven():
        total = Histogram()
        for p in client.get(f"{API}/instrumentations/{hosts['id']}/value", params={"ndatapoints": 15}).json():
            for status, h in (p["value"] or {}).items():
                assert status == "200"
                total.merge(Histogram.from_json(h))
        return total if total.count >= 7 else None

    total = wait_for(seven)
    assert total.count == 7 and 0 < total.quantile(0.5) < 1000, "milliseconds, and fast"
    # One tick per second: every full slot holds exactly one tick duration.
    pts = client.get(f"{API}/instrumentations/{ticks['id']}/value", params={"ndatapoints": 3}).json()
    assert [p["value"]["count"] for p in pts if p["value"] and p["value"]["count"]][-1] == 1
    # The default latency heatmap has data and draws.
    hm = client.get(f"{API}/instrumentations/{heat}/heatmap", params={"duration": 10}).json()
    assert sum(map(sum, hm["counts"])) > 0 and hm["unit"]["name"] == "ms"
