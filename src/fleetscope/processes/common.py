"""Wiring shared by the processes: history maintenance, waiting for the bus, signals, logging."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NamedTuple

from fleetscope.aggregator.aggregator import Aggregator
from fleetscope.api import queries
from fleetscope.api.alert_image import AFTER, BEFORE, alert_png
from fleetscope.bus.base import Bus
from fleetscope.bus.connect import connect_bus
from fleetscope.model.alerts import Notification
from fleetscope.processes.config import FleetConfig
from fleetscope.store.base import Store
from fleetscope.store.history import History
from fleetscope.store.open import open_store

log = logging.getLogger(__name__)


async def keep_history(history: History) -> None:
    """Flush the history head and compact, every ``flush_every`` seconds, off the event loop."""
    while True:
        await asyncio.sleep(history.config.flush_every)
        try:
            await asyncio.to_thread(history.maintain)
        except Exception:
            log.exception("history maintenance failed (retried in %ss)", history.config.flush_every)


async def until_connected(bus: Bus, stop: asyncio.Event) -> bool:
    """Wait for the bus (it may start after us); False if ``stop`` came first."""
    connecting = asyncio.ensure_future(bus.connect())
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({connecting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    for task in (connecting, stopping):
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    return connecting.done() and not connecting.cancelled() and connecting.exception() is None


async def cancel(task: asyncio.Task) -> None:
    """Cancel ``task`` and wait until it has ended."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def run_until_signalled(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run ``main(stop_event)`` on a new event loop; SIGTERM and SIGINT set the event."""

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    asyncio.run(runner())


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def finish_slots(aggregator: Aggregator) -> None:
    """Nothing more will arrive: make every pending slot final (before the last history flush)."""
    longest = max((inst.granularity for inst in aggregator.known.values()), default=1)
    aggregator.expire(time.time() + 2 * aggregator.grace + 1 + longest)


def serve_http(app: Any, host: str, port: int, log_level: str, tls_cert: str | None = None,
               tls_key: str | None = None) -> None:
    """Serve the ASGI ``app`` until SIGTERM or SIGINT (its lifespan starts and stops the rest),
    over HTTPS when given a certificate and key. No access log: the login link carries a token."""
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False, timeout_graceful_shutdown=5,
                ssl_certfile=tls_cert, ssl_keyfile=tls_key)


LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def allowed_hosts(host: str, extra: Sequence[str]) -> list[str]:
    """The Host headers a server bound to ``host`` answers: its loopback names, the address it
    listens on, and (listening on every address) this machine's names and addresses, plus
    ``extra`` (``--allowed-host``). Anything else is a name some other party chose: a DNS
    rebinding attack on a loopback server looks exactly like that."""
    names = [*LOOPBACK_NAMES, host, *extra]
    if host in ("0.0.0.0", "::", ""):
        import psutil

        names += [socket.gethostname(), socket.getfqdn()]
        names += [a.address.split("%")[0] for addrs in psutil.net_if_addrs().values() for a in addrs
                  if a.family in (socket.AF_INET, socket.AF_INET6)]
    return list(dict.fromkeys(n for n in names if n))


class FleetParts(NamedTuple):
    """What a fleet process (aggregator, API server) is given: the bus and the shared store."""

    bus: Bus
    store: Store


def open_fleet_parts(config: FleetConfig) -> FleetParts:
    """The bus (not connected yet) and the opened store; InputError naming ``bus`` or ``store``."""
    named = f"fleetscope {config.section}" + (f" {config.name}" if config.name else "")
    bus = connect_bus(config.bus_url, name=named, **config.nats)
    return FleetParts(bus, open_store(config.store_url))


def alert_renderer(store: Store, aggregator: Aggregator,
                   history: History | None) -> Callable[[Notification], Awaitable[bytes | None]]:
    """What draws an alert e-mail's picture in a process that aggregates the instrumentation:
    its real-time window and history around the change (read in the event loop, which owns
    the window), drawn in a thread."""

    async def render(n: Notification) -> bytes | None:
        rule = await asyncio.to_thread(store.get_alert_rule, n.rule_id)
        inst = aggregator.known.get(n.inst_id)
        if rule is None or inst is None:
            return None  # deleted meanwhile
        step = inst.granularity
        rng = queries.Range(int(n.at - BEFORE) // step * step, step, max(1, (BEFORE + AFTER) // step))
        points = queries.data_points(inst, aggregator.window(inst.id), rng, aggregator.topk, history)
        return await asyncio.to_thread(alert_png, rule, inst, points, n)

    return render
