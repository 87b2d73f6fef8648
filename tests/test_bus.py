"""The memory bus: NATS subject semantics, queue groups, request/reply, ordering."""

from __future__ import annotations

import asyncio

import pytest

from fleetscope.bus import messages as m
from fleetscope.bus.base import Msg, subject_matches
from fleetscope.bus.memory import MemoryBus
from fleetscope.model.errors import InputError


@pytest.mark.parametrize(
    ("pattern", "subject", "expected"),
    [
        ("a.b", "a.b", True),
        ("a.*", "a.b", True),
        ("a.*", "a.b.c", False),
        ("a.>", "a.b.c", True),
        ("a.>", "a", False),
        ("*.b", "a.b", True),
        ("a.b", "a.c", False),
        ("a.b.c", "a.b", False),
    ],
)
def test_subject_matching(pattern: str, subject: str, expected: bool) -> None:
    assert subject_matches(pattern, subject) is expected


def test_publish_reaches_every_plain_subscriber_in_order() -> None:
    async def scenario() -> tuple[list[bytes], list[bytes]]:
        bus = MemoryBus()
        got_a: list[bytes] = []
        got_b: list[bytes] = []

        async def on_a(msg: Msg) -> None:
            got_a.append(msg.data)

        async def on_b(msg: Msg) -> None:
            got_b.append(msg.data)

        await bus.subscribe("data.>", on_a)
        await bus.subscribe("data.host1", on_b)
        for i in range(50):
            await bus.publish("data.host1", str(i).encode())
        await bus.publish("data.host2", b"x")
        await asyncio.sleep(0.05)
        await bus.close()
        return got_a, got_b

    got_a, got_b = asyncio.run(scenario())
    assert got_a == [str(i).encode() for i in range(50)] + [b"x"]
    assert got_b == [str(i).encode() for i in range(50)]


def test_queue_group_delivers_each_message_once() -> None:
    async def scenario() -> list[list[bytes]]:
        bus = MemoryBus()
        members: list[list[bytes]] = [[], [], []]
        for box in members:
            async def handler(msg: Msg, box: list[bytes] = box) -> None:
                box.append(msg.data)

            await bus.subscribe("work", handler, queue="workers")
        for i in range(30):
            await bus.publish("work", str(i).encode())
        await asyncio.sleep(0.05)
        return members

    members = asyncio.run(scenario())
    delivered = sorted(int(x) for box in members for x in box)
    assert delivered == list(range(30))
    assert all(box for box in members), "round robin spreads the work"


def test_request_reply_and_timeout() -> None:
    async def scenario() -> tuple[bytes, bool]:
        bus = MemoryBus()

        async def echo(msg: Msg) -> None:
            assert msg.reply
            await bus.publish(msg.reply, msg.data.upper())

        await bus.subscribe("echo", echo)
        answer = await bus.request("echo", b"hello", timeout=1)
        try:
            await bus.request("nobody", b"x", timeout=0.1)
            timed_out = False
        except TimeoutError:
            timed_out = True
        return answer, timed_out

    answer, timed_out = asyncio.run(scenario())
    assert answer == b"HELLO"
    assert timed_out


def test_a_failing_handler_does_not_stop_delivery() -> None:
    async def scenario() -> list[bytes]:
        bus = MemoryBus()
        got: list[bytes] = []

        async def flaky(msg: Msg) -> None:
            if msg.data == b"bad":
                raise RuntimeError("boom")
            got.append(msg.data)

        await bus.subscribe("s", flaky)
        for data in (b"1", b"bad", b"2"):
            await bus.publish("s", data)
        await asyncio.sleep(0.05)
        return got

    assert asyncio.run(scenario()) == [b"1", b"2"]


def test_messages_round_trip_and_reject_garbage() -> None:
    batch = m.Batch("web1", 1700000000, 1700000001.5, [m.Partial(3, {"user": 0.5}), m.Partial(4, 1.0, "w")])
    assert m.decode(m.encode(batch), m.Batch) == batch
    with pytest.raises(InputError) as err:
        m.decode(b"\x93garbage", m.Batch)
    assert err.value.field == "message"
    with pytest.raises(InputError):
        m.decode(m.encode(m.DisableMsg(1)), m.Batch)
    with pytest.raises(InputError) as err:
        m.decode(b"\x00" * (m.MAX_MESSAGE + 1), m.Batch)
    assert "limit" in err.value.message
