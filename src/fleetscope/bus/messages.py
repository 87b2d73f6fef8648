"""What travels on the bus: subjects and message schemas (msgpack via msgspec).

Every message is decoded with :func:`decode`, which validates its shape and
size; a bad message raises :class:`fleetscope.model.errors.InputError` and the
receiver counts and drops it.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

from fleetscope.model.errors import InputError

PREFIX = "fleetscope"
DATA = f"{PREFIX}.data"  # DATA.<hostname>: one Batch per host per tick
CTL_ENABLE = f"{PREFIX}.ctl.enable"  # InstrumentationMsg: start or change (aggregators, API servers)
CTL_AGENT = f"{PREFIX}.ctl.agent"  # CTL_AGENT.<hostname>: InstrumentationMsg for the agents it may match
CTL_DISABLE = f"{PREFIX}.ctl.disable"  # DisableMsg
CTL_LIST = f"{PREFIX}.ctl.list"  # request: ListRequest -> InstrumentationList
AGENT_STATUS = f"{PREFIX}.agent.status"  # AgentStatus, on start and every few seconds
FINAL = f"{PREFIX}.final"  # FINAL.<id>: FinalPoint, each final or revised slot, for API servers
WINDOW = f"{PREFIX}.window"  # WINDOW.<id>: request -> FinalPoints, the owning aggregator's window

MAX_MESSAGE = 8 << 20


class Partial(msgspec.Struct, array_like=True):
    """One host's partial value of one instrumentation at one tick."""

    id: int
    value: Any  # fleetscope.model.values.encode() form
    warning: str | None = None


class Batch(msgspec.Struct):
    """Everything one host measured at one tick."""

    host: str
    time: int  # start of the one-second interval the values cover (epoch seconds)
    sent: float  # wall clock of the agent when sent
    partials: list[Partial]


class InstrumentationMsg(msgspec.Struct):
    instrumentation: dict  # Instrumentation.to_json()


class DisableMsg(msgspec.Struct):
    id: int


class ListRequest(msgspec.Struct):
    host: str | None = None  # the asking agent, or None for an aggregator
    labels: dict[str, str] = {}  # the asking agent's labels


class InstrumentationList(msgspec.Struct):
    instrumentations: list[dict]


class AgentStatus(msgspec.Struct):
    host: str
    version: str
    time: float
    metrics: list[dict] = []  # the metric catalogue (Metric.to_json()), sent on start
    running: list[int] = []
    warnings: dict[str, str] = {}  # instrumentation id (str) -> last warning
    labels: dict[str, str] = {}


class FinalPoint(msgspec.Struct, array_like=True):
    """One final (or revised) data point of an instrumentation's real-time window."""

    id: int
    start_time: int
    duration: int
    value: Any  # fleetscope.model.values.encode() form
    nsources: int
    expected: int
    revised: bool = False


class FinalPoints(msgspec.Struct):
    points: list[FinalPoint]


def agent_subject(hostname: str) -> str:
    """Where the control plane sends the instrumentations meant for ``hostname``."""
    return f"{CTL_AGENT}.{hostname}"


_encoder = msgspec.msgpack.Encoder()
_decoders: dict[type, msgspec.msgpack.Decoder] = {}

T = TypeVar("T")


def encode(msg: msgspec.Struct) -> bytes:
    return _encoder.encode(msg)


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
