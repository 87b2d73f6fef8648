"""API-server replicas of the aggregators' windows: broadcast finals, backfill, bad messages."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from fleetscope.aggregator.aggregator import Aggregator
from fleetscope.aggregator.replica import Replica
from fleetscope.bus import messages as m
from fleetscope.bus.base import Msg
from fleetscope.bus.memory import MemoryBus
from fleetscope.model import values
from fleetscope.model.instrumentation import Instrumentation
from tests.test_window import received


def inst(inst_id: int = 1) -> Instrumentation:
    return Instrumentation(id=inst_id, module="cpu", stat="usage", predicate={}, decomposition=("mode",),
                           granularity=1, retention=600, idle_max=0, persist=False, created=0.0,
                           kind="interval", shape=values.DISCRETE, discrete="mode")


async def control_plane(bus: MemoryBus, insts: list[Instrumentation]) -> None:
    """Answers list requests, as the API's control plane does."""

    async def answer(msg: Msg) -> None:
        await bus.publish(msg.reply, m.encode(m.InstrumentationList([i.to_json() for i in insts])))

    await bus.subscribe(m.CTL_LIST, answer)


async def until(condition: Callable[[], object], timeout: float = 10.0) -> None:
    """Poll ``condition`` until it is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"condition not met within {timeout} s"
        await asyncio.sleep(0.01)


def test_replica_follows_finals_and_backfills() -> None:
    async def scenario():
        bus = MemoryBus()
        await control_plane(bus, [inst()])
        aggregator = Aggregator(bus, publish_finals=True)
        await aggregator.start()
        await until(lambda: aggregator.window(1))  # it learnt the instrumentation
        now = int(time.time())
        # Data the aggregator finalised before any API server was there.
        for k in range(3):
            batch = m.Batch("h1", now - 10 + k, now, [m.Partial(1, {"user": float(k)})])
            aggregator.add_batch(received(batch), now=now)
        replica = Replica(bus)
        seen = []
        replica.listeners.append(lambda i, p: seen.append(p.start_time))
        await replica.start()
        await until(lambda: replica.window(1) and len(replica.window(1).points(0, 2**40)) == 3)  # backfilled
        aggregator.add_batch(received(m.Batch("h1", now - 5, now, [m.Partial(1, {"user": 7.0})])), now=now)
        await until(lambda: len(replica.window(1).points(0, 2**40)) == 4)  # the broadcast final
        await bus.publish(f"{m.FINAL}.1", b"junk")
        await bus.publish(f"{m.FINAL}.1", m.encode(m.FinalPoint(1, now, 1, "not a breakdown", 1, 1)))
        await until(lambda: replica.dropped["malformed_final"] >= 2)
        got = [(p.start_time, p.value) for p in replica.window(1).points(0, 2**40)]
        await replica.stop()
        await aggregator.stop()
        return now, got, seen, replica.dropped

    now, got, seen, dropped = asyncio.run(scenario())
    assert got == [(now - 10, {"user": 0.0}), (now - 9, {"user": 1.0}), (now - 8, {"user": 2.0}),
                   (now - 5, {"user": 7.0})]
    assert seen == [now - 5], "listeners (the live stream) hear new finals, not the backfill"
    assert dropped["malformed_final"] == 2
