"""What travels on the bus: subjects and message schemas (msgpack via msgspec).

Every message is decoded with :func:`decode`, which validates its shape and
size; a bad message raises :class:`fleetscope.model.errors.InputError` and the
receiver counts and drops it.
"""

from __future__ import annotations

import hashlib
import logging
import zlib
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import msgspec

from fleetscope.bus.base import MAX_MESSAGE, Bus
from fleetscope.model.errors import InputError

log = logging.getLogger(__name__)

PREFIX = "fleetscope"
DATA = f"{PREFIX}.data"  # DATA.<partition>.<hostname>: one Batch per host per tick
# Hosts are spread over this many partitions by a stable hash of their name (the same in every
# process of every version: changing it re-homes every host). An aggregator can then receive
# only the partitions it holds (fleetscope.data.<p>.>) instead of every host's batches.
PARTITIONS = 64
CTL_ENABLE = f"{PREFIX}.ctl.enable"  # InstrumentationMsg: start or change (aggregators, API servers)
CTL_AGENT = f"{PREFIX}.ctl.agent"  # CTL_AGENT.<hostname>: InstrumentationMsg for the agents it may match
CTL_DISABLE = f"{PREFIX}.ctl.disable"  # DisableMsg
CTL_LIST = f"{PREFIX}.ctl.list"  # request: ListRequest -> InstrumentationList
AGENT_STATUS = f"{PREFIX}.agent.status"  # AGENT_STATUS.<hostname>: AgentStatus, every few seconds
FINAL = f"{PREFIX}.final"  # FINAL.<id>: FinalPoint, each final or revised slot, for API servers
WINDOW = f"{PREFIX}.window"  # WINDOW.<id>: request -> FinalPoints, the owning aggregator's window
# PARTIAL.<id>: SlotPartial, a partition holder's merge of one slot of its hosts, for the owner
PARTIAL = f"{PREFIX}.partial"
# PARTIAL_ACK.<token>: PartialAck from an owner to the holder whose token (holder_token) it is
PARTIAL_ACK = f"{PREFIX}.partack"


class Partial(msgspec.Struct, array_like=True):
    """One host's partial value of one instrumentation at one tick."""

    id: int
    value: Any  # fleetscope.model.values.encode() form
    warning: str | None = None


class Batch(msgspec.Struct):
    """Everything one host measured at one tick (in several messages, ``part`` 0, 1, …, when it is
    over the bus's size limit)."""

    host: str
    time: int  # start of the one-second interval the values cover (epoch seconds)
    sent: float  # wall clock of the agent when sent
    partials: list[Partial]
    part: int = 0
    replay: bool = False  # sent again: no aggregator acknowledged it in time (see Ack)


class RawPartial(msgspec.Struct, array_like=True):
    """A :class:`Partial` as an aggregator decodes it: the value left encoded until asked for
    (each aggregator merges only its share of the instrumentations)."""

    id: int
    value: msgspec.Raw
    warning: str | None = None


class RawBatch(msgspec.Struct):
    """A :class:`Batch` with :class:`RawPartial` values (the same message on the bus)."""

    host: str
    time: int
    sent: float
    partials: list[RawPartial]
    part: int = 0
    replay: bool = False


class Ack(msgspec.Struct, array_like=True):
    """An aggregator's word to one agent that it merged these of its batch messages for good
    (their slots are final and sent on): the agent forgets them. A message never acknowledged
    is sent again (``replay``) until one is; the aggregators merge each (host, tick) once."""

    batches: list[tuple[int, int]]  # (time, part)


class InstrumentationMsg(msgspec.Struct):
    instrumentation: dict  # Instrumentation.to_json()


class DisableMsg(msgspec.Struct):
    id: int


class ListRequest(msgspec.Struct):
    host: str | None = None  # the asking agent, or None for an aggregator
    labels: dict[str, str] = {}  # the asking agent's labels
    after: int = 0  # the answer starts after this instrumentation id (answers are paged)


class InstrumentationList(msgspec.Struct):
    instrumentations: list[dict]  # ordered by id
    next: int | None = None  # more to come: ask again with ``after=next``


class AgentStatus(msgspec.Struct):
    host: str
    version: str
    time: float
    metrics: list[dict] = []  # the metric catalogue (Metric.to_json()), sent on start
    running: list[int] = []
    warnings: dict[str, str] = {}  # instrumentation id (str) -> last warning
    labels: dict[str, str] = {}
    # The agent's outbox: batches and bytes waiting, batches dropped on overflow, messages
    # dropped as over the bus's size limit.
    buffer: dict[str, int] = {}


class FinalPoint(msgspec.Struct, array_like=True):
    """One final (or revised) data point of an instrumentation's real-time window."""

    id: int
    start_time: int
    duration: int
    value: Any  # fleetscope.model.values.encode() form
    nsources: int
    expected: int
    revised: bool = False


class FinalSeen(msgspec.Struct, array_like=True):
    """The head of a :class:`FinalPoint` (its other fields are not decoded): which slot of which
    instrumentation its owner made final, as the other aggregators note it."""

    id: int
    start_time: int


class SlotPartial(msgspec.Struct, array_like=True):
    """One slot of one instrumentation as a partition's holder merged it from the partition's
    hosts. What comes for the slot later (late data, replays) is another partial with another
    ``seq``, which the owner adds; a partial sent again keeps its ``seq`` and is added once."""

    id: int
    source: str  # the aggregator (partition holder) that merged it: acknowledged to it
    start_time: int
    value: msgspec.Raw  # fleetscope.model.values.encode() form, decoded by the owner only
    nsources: int
    expected: int
    partition: int
    seq: int  # unique among the source's partials
    # The agents' batches merged in it, (host, time, part): an owner adds a batch once, even when
    # a holder died before acknowledging it and its agents sent it again to the next holder.
    batches: list[tuple[str, int, int]] = []


class PartialAck(msgspec.Struct, array_like=True):
    """An owner's word to a holder that these partials are in final slots: the holder stops
    sending them again, and may acknowledge its agents' batches of those seconds."""

    slots: list[tuple[int, int, int, int]]  # (instrumentation id, partition, start time, seq)


class WindowRequest(msgspec.Struct):
    since: int = 0  # the answer starts at this start time (answers are paged)


class FinalPoints(msgspec.Struct):
    points: list[FinalPoint]  # ordered by start time
    next: int | None = None  # more to come: ask again with ``since=next``


def agent_subject(hostname: str) -> str:
    """Where the control plane sends the instrumentations meant for ``hostname``."""
    return f"{CTL_AGENT}.{hostname}"


def ack_subject(hostname: str) -> str:
    """Where aggregators acknowledge ``hostname``'s batches: below its agent's inbox, which only
    that agent may hear."""
    return f"{agent_inbox(hostname)}.ack"


def holder_token(name: str) -> str:
    """One subject token for an aggregator's name (which may hold any character)."""
    return hashlib.sha256(name.encode()).hexdigest()[:20]


def partition_of(hostname: str) -> int:
    """The partition of ``hostname``: CRC-32 of its name modulo :data:`PARTITIONS` (stable, unlike
    Python's ``hash``)."""
    return zlib.crc32(hostname.encode()) % PARTITIONS


def data_subject(hostname: str) -> str:
    """Where ``hostname``'s agent publishes its batches: ``fleetscope.data.<partition>.<host>``."""
    return f"{DATA}.{partition_of(hostname)}.{hostname}"


def partition_subject(partition: int) -> str:
    """Every batch of one partition's hosts."""
    return f"{DATA}.{partition}.>"


def status_subject(hostname: str) -> str:
    """Where ``hostname``'s agent publishes its status (one subject per host, so that bus
    permissions can let an agent speak only for itself)."""
    return f"{AGENT_STATUS}.{hostname}"


def agent_inbox(hostname: str) -> str:
    """The inbox prefix of ``hostname``'s agent: replies to its requests come below it. One
    subject token (a digest), so that no host name can be a prefix of another's inbox."""
    return f"_INBOX.fs{hashlib.sha256(hostname.encode()).hexdigest()[:20]}"


_encoder = msgspec.msgpack.Encoder()
_decoders: dict[type, msgspec.msgpack.Decoder] = {}

T = TypeVar("T")


def encode(msg: msgspec.Struct) -> bytes:
    return _encoder.encode(msg)


def encode_batch(batch: Batch, limit: int,
                 oversized: Callable[[Partial, int], Partial]) -> list[bytes]:
    """``batch`` as messages of at most ``limit`` bytes, split between partials (the aggregator
    merges a host's tick instrumentation by instrumentation, so the parts add up to the whole).
    A partial too large to travel even alone is replaced by ``oversized(partial, its size)``."""
    data = encode(batch)
    if len(data) <= limit:
        return [data]
    head = len(encode(Batch(batch.host, batch.time, batch.sent, [], part=1 << 30, replay=True)))
    # 5 bytes: the largest msgpack array header of the partials list.
    room = limit - head - 5
    parts: list[list[Partial]] = [[]]
    used = 0
    for partial in batch.partials:
        size = len(encode(partial))
        if size > room:
            partial = oversized(partial, size)
            size = len(encode(partial))
        if used + size > room and parts[-1]:
            parts.append([])
            used = 0
        parts[-1].append(partial)
        used += size
    return [encode(Batch(batch.host, batch.time, batch.sent, part, n)) for n, part in enumerate(parts)]


def as_replay(data: bytes) -> bytes:
    """An encoded batch message marked as sent again."""
    return encode(msgspec.structs.replace(decode(data, RawBatch), replay=True))


# Room for a paged answer's own framing, below the bus's message size limit.
PAGE_OVERHEAD = 256


def page(items: Sequence[Any], limit: int) -> tuple[list[Any], int]:
    """The first of ``items`` that fit encoded in a message of ``limit`` bytes, and how many of
    ``items`` that page consumed: an item too large for any message is skipped (consumed, not
    sent), so that paging always moves on."""
    room, used, out = limit - PAGE_OVERHEAD, 0, []
    for n, item in enumerate(items):
        size = len(_encoder.encode(item))
        if size > room:
            if out:
                return out, n
            log.warning("a %d byte answer item is over the bus's %d byte limit: skipped", size, limit)
            return out, n + 1
        if used + size > room:
            return out, n
        out.append(item)
        used += size
    return out, len(items)


async def request_pages(bus: Bus, subject: str, ask: msgspec.Struct, kind: type[T], cursor: str,
                        timeout: float = 2.0) -> list[T]:
    """Every page of a paged answer: ask again with ``cursor`` set to each answer's ``next``.
    TimeoutError when a page does not come, InputError when one is malformed or does not move on."""
    answers = []
    while True:
        answer = decode(await bus.request(subject, encode(ask), timeout), kind)
        answers.append(answer)
        if answer.next is None:
            return answers
        if answer.next <= getattr(ask, cursor):
            raise InputError("next", f"a paged answer on {subject} does not move on", 400)
        ask = msgspec.structs.replace(ask, **{cursor: answer.next})


def decode(data: bytes, kind: type[T]) -> T:
    """Decode and validate a message of type ``kind``; InputError when malformed or too large."""
    if len(data) > MAX_MESSAGE:
        raise InputError("message", f"{len(data)} bytes is over the {MAX_MESSAGE} byte limit", 400)
    dec = _decoders.get(kind)
    if dec is None:
        dec = _decoders[kind] = msgspec.msgpack.Decoder(kind)
    try:
        return dec.decode(data)
    except msgspec.DecodeError as exc:  # covers ValidationError
        raise InputError("message", f"malformed {kind.__name__}: {exc}", 400) from exc
