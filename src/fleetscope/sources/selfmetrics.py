"""fleetscope measuring itself, with the same machinery as any application.

* ``fleetscope.api_requests``: API requests per second, by ``route`` (the route
  template, e.g. ``/api/v1/instrumentations/{id}/value``; ``(unmatched)`` for a
  404 outside every route), ``method`` and ``status``, with the numeric field
  ``latency`` in milliseconds;
* ``fleetscope.agent_tick``: agent ticks per second, with the numeric field
  ``duration`` (milliseconds spent collecting and evaluating).

Observations are aggregated as they come (one ``{value: count}`` per key, as
StatsD timers are) and handed to the agent as weighted rows
(:attr:`~fleetscope.sources.base.Rows.weighted`), so a latency heatmap holds
every request exactly once. Recording is thread-safe.
"""

from __future__ import annotations

import threading
import time

from fleetscope.model.metrics import DISCRETE, INTERVAL, NUMERIC, Field, Metric, metric
from fleetscope.model.types import MILLISECONDS, NUMBER
from fleetscope.sources.base import Rows

API_REQUESTS = "fleetscope.api_requests"
AGENT_TICK = "fleetscope.agent_tick"
UNMATCHED = "(unmatched)"


class SelfSource:
    """A source of fleetscope's own request latencies and tick durations."""

    name = "self"

    def __init__(self, api: bool = True) -> None:
        self.api = api
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, str], dict[float, float]] = {}
        self._ticks: dict[float, float] = {}
        self._ready_requests: dict = {}
        self._ready_ticks: dict = {}
        self._last_tick = time.monotonic()

    def record_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one API request that took ``seconds``."""
        ms = round(seconds * 1000.0, 3)  # microsecond resolution: fewer distinct values
        with self._lock:
            acc = self._requests.get((route, method, str(status)))
            if acc is None:
                acc = self._requests[(route, method, str(status))] = {}
            acc[ms] = acc.get(ms, 0.0) + 1.0
            if time.monotonic() - self._last_tick > 3.0:  # nobody collects: stay bounded
                self._requests = {}

    def record_tick(self, seconds: float) -> None:
        """Count one agent tick that took ``seconds``."""
        ms = round(seconds * 1000.0, 3)
        with self._lock:
            self._ticks[ms] = self._ticks.get(ms, 0.0) + 1.0

    def metrics(self) -> list[Metric]:
        out = [metric("fleetscope", "agent_tick", "agent ticks", NUMBER, INTERVAL,
                      Field("duration", NUMERIC, "tick duration", MILLISECONDS))]
        if self.api:
            out.append(metric("fleetscope", "api_requests", "API requests", NUMBER, INTERVAL,
                              Field("route", DISCRETE, "route"), Field("method", DISCRETE, "method"),
                              Field("status", DISCRETE, "status code"),
                              Field("latency", NUMERIC, "latency", MILLISECONDS)))
        return out

    def begin_tick(self, now: float) -> None:
        with self._lock:
            self._ready_requests, self._requests = self._requests, {}
            self._ready_ticks, self._ticks = self._ticks, {}
            self._last_tick = time.monotonic()

    def collect(self, name: str) -> Rows:
        if name == AGENT_TICK:
            return Rows(("duration",), list(self._ready_ticks.items()), True)
        if name == API_REQUESTS and self.api:
            rows = [(*key, ms, n) for key, acc in self._ready_requests.items() for ms, n in acc.items()]
            return Rows(("route", "method", "status", "latency"), rows, True)
        raise OSError(f"no metric {name!r} here")

    def close(self) -> None:
        pass


class MeasureRequests:
    """ASGI middleware recording every HTTP request of ``app`` in ``source``, by route
    template (``app.add_middleware(MeasureRequests, source=...)``)."""

    def __init__(self, app, source: SelfSource) -> None:
        self.app = app
        self.source = source

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")  # its template without convertors: /x/{id}, not /x/{id:idseg}
            path = getattr(route, "path_format", None) or getattr(route, "path", None) or UNMATCHED
            self.source.record_request(path, scope.get("method", ""), status, time.perf_counter() - start)
