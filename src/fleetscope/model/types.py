"""Units of fields and values, and parsing of quantities and durations.

A :class:`Type` is a base unit (``number``, ``percent``, ``bytes``, ``seconds``)
and, for seconds, a power of ten (``-9`` is nanoseconds). Quantities in the
predicate text form carry units (``10ms``, ``4KiB``, ``50%``) and are converted
into the unit of the field they are compared with.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from fleetscope.model.errors import InputError

BASES = ("number", "percent", "bytes", "seconds")

_SECOND_SUFFIXES = {"ns": -9, "us": -6, "µs": -6, "ms": -3, "s": 0}
_SECOND_NAMES = {v: k for k, v in _SECOND_SUFFIXES.items() if k != "µs"}
# Bytes are base 2 throughout (DESIGN.md); "K" and "KiB" mean the same.
_BYTE_SUFFIXES = {
    "b": 1, "": 1,
    "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10,
    "m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20,
    "g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30,
    "t": 1 << 40, "tb": 1 << 40, "tib": 1 << 40,
}
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_QUANTITY = re.compile(r"^\s*([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\s*([A-Za-zµ%]*)\s*$")


class Type(NamedTuple):
    """The unit of a field or a value."""

    base: str = "number"
    power: int = 0  # seconds only: 10**power seconds per unit

    @property
    def name(self) -> str:
        """Short name: ``number``, ``percent``, ``bytes``, ``s``, ``ms``, ``us``, ``ns``."""
        if self.base == "seconds":
            return _SECOND_NAMES.get(self.power, f"1e{self.power}s")
        return self.base

    def to_json(self) -> dict:
        return {"base": self.base, "power": self.power, "name": self.name}

    @classmethod
    def from_json(cls, obj: object, field: str = "type") -> Type:
        valid = isinstance(obj, dict) and obj.get("base") in BASES and isinstance(obj.get("power", 0), int)
        if not valid:
            raise InputError(field, f"must be a unit {{'base': one of {BASES}, 'power': int}}")
        return cls(obj["base"], obj.get("power", 0))


NUMBER = Type("number")
PERCENT = Type("percent")
BYTES = Type("bytes")
SECONDS = Type("seconds", 0)
MILLISECONDS = Type("seconds", -3)
MICROSECONDS = Type("seconds", -6)
NANOSECONDS = Type("seconds", -9)


def parse_quantity(text: str, unit: Type, field: str = "value") -> float:
    """Parse ``text`` such as ``10ms``, ``4KiB``, ``50%`` or ``12.5`` into a number in ``unit``.

    A bare number is taken to be in ``unit`` already. A suffix that does not fit
    the unit (``10ms`` for a bytes field) raises :class:`InputError` naming ``field``.
    """
    m = _QUANTITY.match(text)
    if not m:
        raise InputError(field, f"{text!r} is not a number")
    number, suffix = float(m.group(1)), m.group(2)
    if not suffix:
        return number
    if unit.base == "seconds" and suffix in _SECOND_SUFFIXES:
        return number * 10.0 ** (_SECOND_SUFFIXES[suffix] - unit.power)
    if unit.base == "bytes" and suffix.lower() in _BYTE_SUFFIXES:
        return number * _BYTE_SUFFIXES[suffix.lower()]
    if unit.base == "percent" and suffix == "%":
        return number
    raise InputError(field, f"unit {suffix!r} does not apply to a value in {unit.name}")


def parse_duration(value: str | int | float, field: str = "duration") -> int:
    """Parse a duration (``90``, ``"90"``, ``"10m"``, ``"1h30m"``, ``"7d"``) into whole seconds."""
    if isinstance(value, bool):
        raise InputError(field, "must be a duration such as 60, '10m' or '1h'")
    if isinstance(value, int | float):
        if value < 0 or value != int(value):
            raise InputError(field, "must be a whole, non-negative number of seconds")
        return int(value)
    text = str(value).strip().lower()
    if re.fullmatch(r"\d+", text):
        return int(text)
    parts = re.findall(r"(\d+)([smhdw])", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise InputError(field, f"{value!r} is not a duration such as 60, '10m', '1h' or '7d'")
    return sum(int(n) * _DURATION_UNITS[u] for n, u in parts)


def format_quantity(value: float, unit: Type) -> str:
    """A short human form of ``value`` in ``unit``: ``1.5 GiB``, ``12 ms``, ``3.2 %``, ``12,346``."""
    if unit.base == "bytes":
        for suffix, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
            if abs(value) >= size:
                return f"{value / size:.3g} {suffix}"
        return f"{value:.3g} B"
    if unit.base == "seconds":
        seconds = value * 10.0**unit.power
        for suffix, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
            if abs(seconds) >= scale:
                return f"{seconds / scale:.3g} {suffix}"
        return f"{seconds / 1e-9:.3g} ns"
    if unit.base == "percent":
        return f"{value:.3g} %"
    # Counts stay whole (12,346): 4 significant digits would write 1.235e+04.
    if abs(value) >= 1e4 or value == int(value):
        return f"{value:,.0f}"
    return f"{value:.4g}"
