"""The StatsD line protocol, parsed: plain functions, no I/O.

One line is ``name:value[:value...]|type[|@rate][|#k:v,k2:v2][|c:...][|T...]``:

* types ``c`` (counter), ``g`` (gauge; a value with an explicit sign is a delta),
  ``ms`` (timer, milliseconds), ``h`` and ``d`` (histogram, distribution: plain
  numbers), ``s`` (set: the value is any string);
* ``@rate`` in ``(0, 1]``: the client sent one event in ``1/rate``;
* tags in the DogStatsD form ``|#k:v,k2`` or the Graphite form ``name;k=v;k2=v2``.

Names become metric stats: ``.``, ``-`` and other characters outside
``[A-Za-z0-9_]`` turn into ``_``; a name that does not fit in 64 characters is
refused. Tag keys are sanitised the same way, and ``hostname`` / ``value``
(fields every metric or every timer has) become ``tag_hostname`` / ``tag_value``.

:func:`parse_line` raises :class:`BadLine` with a short ``reason`` (the receiver
counts drops per reason); nothing else escapes it for any input.
"""

from __future__ import annotations

import math
import re
from typing import NamedTuple

COUNTER, GAUGE, TIMER, HISTOGRAM, DISTRIBUTION, SET = "c", "g", "ms", "h", "d", "s"
TYPES = frozenset((COUNTER, GAUGE, TIMER, HISTOGRAM, DISTRIBUTION, SET))
MAX_LINE = 4096
MAX_NAME = 64
MAX_TAG_VALUE = 200
MAX_TAGS = 32
RESERVED = frozenset(("hostname", "value"))

_BAD_CHARS = re.compile(r"[^A-Za-z0-9_]")


class BadLine(ValueError):
    """A line that is not StatsD; ``reason`` is one of: ``too_long``, ``syntax``,
    ``name``, ``type``, ``value``, ``rate``, ``tags``."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class Event(NamedTuple):
    """One parsed line. ``values`` are floats, except for a set (strings);
    ``delta`` is True for a signed gauge value (``+3``, ``-2``);
    ``tags`` is sorted ``(key, value)`` pairs, keys sanitised and unique."""

    name: str
    type: str
    values: tuple
    rate: float
    tags: tuple[tuple[str, str], ...]
    delta: bool = False


def sanitize(name: str) -> str:
    """``name`` as a field or stat name: characters outside ``[A-Za-z0-9_]`` become ``_``,
    and a leading digit gets a ``_`` in front."""
    out = _BAD_CHARS.sub("_", name)
    return "_" + out if out[:1].isdigit() else out


def _number(text: str) -> float:
    try:
        x = float(text)
    except ValueError:
        raise BadLine("value", f"{text[:40]!r} is not a number") from None
    if not math.isfinite(x):
        raise BadLine("value", "not finite")
    return x


def _tag(key: str, value: str, out: dict[str, str]) -> None:
    key = sanitize(key.strip())
    if key in RESERVED:
        key = "tag_" + key
    if not key or len(key) > MAX_NAME:
        raise BadLine("tags", "empty or too long tag key")
    if len(value) > MAX_TAG_VALUE:
        raise BadLine("tags", "tag value too long")
    out[key] = value


_IDENTS: dict[tuple[str, str], tuple[str, tuple]] = {}
_IDENTS_MAX = 10000


def _identity(name: str, tag_parts: list[str]) -> tuple[str, tuple[tuple[str, str], ...]]:
    """The sanitised name and sorted tags of a line's name and ``#`` sections."""
    tags: dict[str, str] = {}
    if ";" in name:  # Graphite form: name;k=v;k2=v2
        name, *pairs = name.split(";")
        for pair in pairs:
            key, eq, value = pair.partition("=")
            if not eq:
                raise BadLine("tags", f"{pair[:40]!r} is not k=v")
            _tag(key, value, tags)
    name = sanitize(name.strip())
    if not name or len(name) > MAX_NAME:
        raise BadLine("name", "empty" if not name else f"longer than {MAX_NAME} characters")
    for part in tag_parts:
        for item in part.split(","):
            if item:
                key, _, value = item.partition(":")
                _tag(key, value, tags)
    if len(tags) > MAX_TAGS:
        raise BadLine("tags", f"more than {MAX_TAGS} tags")
    return name, tuple(sorted(tags.items()))


def parse_line(line: str) -> Event:
    """The event on one StatsD line (without its newline); :class:`BadLine` if it is none."""
    if len(line) > MAX_LINE:
        raise BadLine("too_long", f"{len(line)} characters")
    head, bar, rest = line.partition("|")
    if not bar:
        raise BadLine("syntax", "no '|type'")
    name, colon, values_text = head.partition(":")
    if not colon or not values_text:
        raise BadLine("syntax", "no ':value'")
    parts = rest.split("|")
    kind = parts[0]
    if kind not in TYPES:
        raise BadLine("type", f"unknown type {kind[:10]!r}")
    rate = 1.0
    tag_parts = []
    for part in parts[1:]:
        if part.startswith("@"):
            try:
                rate = float(part[1:])
            except ValueError:
                raise BadLine("rate", f"{part[:20]!r}") from None
            if not 0.0 < rate <= 1.0:
                raise BadLine("rate", f"{part[:20]!r} is not in (0, 1]")
        elif part.startswith("#"):
            tag_parts.append(part[1:])
        elif part.startswith(("c:", "T", "e:")) or not part:
            continue  # DogStatsD container id, timestamp, external data: not used
        else:
            raise BadLine("syntax", f"unknown section {part[:20]!r}")
    # The same names and tags come again and again: remember what they became.
    ident = (name, ",".join(tag_parts))
    known = _IDENTS.get(ident)
    if known is None:
        known = _identity(name, tag_parts)
        if len(_IDENTS) >= _IDENTS_MAX:
            _IDENTS.clear()
        _IDENTS[ident] = known
    name, tags = known
    texts = values_text.split(":")
    delta = False
    if kind == SET:
        values: tuple = tuple(texts)
    else:
        values = tuple(_number(t) for t in texts)
        if kind == GAUGE:
            if len(values) != 1:
                raise BadLine("value", "a gauge takes one value")
            delta = texts[0][:1] in "+-"
        elif kind != COUNTER and any(v < 0 for v in values):
            raise BadLine("value", "a timer or histogram value must not be negative")
    return Event(name, kind, values, rate, tags, delta)


def parse_packet(data: bytes) -> tuple[list[Event], list[str]]:
    """The events of a datagram or stream chunk of newline-separated lines, and the
    drop reason of each bad line (empty lines are skipped, not bad)."""
    events: list[Event] = []
    bad: list[str] = []
    text = data.decode("utf-8", "replace")
    for line in text.split("\n"):
        line = line.rstrip("\r")
        if not line:
            continue
        try:
            events.append(parse_line(line))
        except BadLine as exc:
            bad.append(exc.reason)
    return events, bad
