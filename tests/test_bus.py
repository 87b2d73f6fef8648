"""The memory bus: NATS subject semantics, queue groups, request/reply, ordering."""

from __future__ import annotations

import asyncio

import pytest

from fleetscope.bus import messages as m
from fleetscope.bus.base import MessageTooLarge, Msg, subject_matches
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


def test_paged_answers_fit_the_bus_limit_and_skip_only_what_never_fits() -> None:
    """An instrumentation list larger than the bus's limit comes in pages; an item larger than any
    message is skipped, and paging goes on past it."""
    items = [{"id": i, "text": "x" * (5000 if i == 7 else 40 * i)} for i in range(1, 31)]

    async def scenario() -> tuple[list[int], int, int]:
        bus = MemoryBus(max_message=1500)
        asked = 0

        async def answer(msg: Msg) -> None:
            nonlocal asked
            asked += 1
            ask = m.decode(msg.data, m.ListRequest)
            rest = [i for i in items if i["id"] > ask.after]
            sent, consumed = m.page(rest, bus.max_payload)
            nxt = rest[consumed - 1]["id"] if consumed < len(rest) else None
            await bus.publish(msg.reply, m.encode(m.InstrumentationList(sent, nxt)))

        await bus.subscribe(m.CTL_LIST, answer)
        pages = await m.request_pages(bus, m.CTL_LIST, m.ListRequest(), m.InstrumentationList, "after", 1)
        with pytest.raises(MessageTooLarge):
            await bus.publish("x", b"0" * 1501)
        return [o["id"] for p in pages for o in p.instrumentations], asked, len(pages)

    ids, asked, npages = asyncio.run(scenario())
    assert ids == [i for i in range(1, 31) if i != 7]
    assert npages == asked > 5


def test_a_batch_over_the_limit_splits_into_messages_that_add_up() -> None:
    partials = [m.Partial(i, {"k" * 10: float(i)} if i != 3 else {"k" * 3000: 1.0}) for i in range(20)]
    batch = m.Batch("h1", 100, 100.5, partials)
    replaced = []

    def oversized(p: m.Partial, size: int) -> m.Partial:
        replaced.append((p.id, size))
        return m.Partial(p.id, {}, "too large")

    messages = m.encode_batch(batch, 300, oversized)
    parts = [m.decode(d, m.Batch) for d in messages]
    assert all(len(d) <= 300 for d in messages) and len(messages) > 1
    assert [p.id for b in parts for p in b.partials] == list(range(20))
    assert [r[0] for r in replaced] == [3] and replaced[0][1] > 3000
    assert {(b.host, b.time) for b in parts} == {("h1", 100)}
    assert m.encode_batch(m.Batch("h1", 1, 1.0, partials[:2]), 300, oversized) == [
        m.encode(m.Batch("h1", 1, 1.0, partials[:2]))], "a small batch is one message, unchanged"


def test_hosts_spread_over_partitions_stably() -> None:
    """The partition of a host is the same in every process (CRC-32, not Python's salted hash),
    and a thousand hosts land in every partition, none with more than three times its share."""
    import zlib

    from fleetscope.bus import messages as m

    assert m.partition_of("web-1") == zlib.crc32(b"web-1") % m.PARTITIONS
    host = "web-1.example.com"
    assert m.data_subject(host) == f"fleetscope.data.{m.partition_of(host)}.{host}"
    counts = [0] * m.PARTITIONS
    for i in range(1000):
        counts[m.partition_of(f"host-{i}.dc1.example.com")] += 1
    assert min(counts) > 0 and max(counts) < 3 * 1000 / m.PARTITIONS
