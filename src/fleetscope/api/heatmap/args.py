"""Checks of the arguments of the heatmap functions: each names the argument at fault."""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable

from fleetscope.model.errors import InputError


def number(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(name, "must be a number")
    x = float(value)
    if not math.isfinite(x):
        raise InputError(name, "must be finite")
    return x


def integer(value: object, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InputError(name, "must be an integer")
    if not low <= value <= high:
        raise InputError(name, f"must be between {low} and {high}")
    return int(value)


def keys(value: object, name: str) -> list[str]:
    """A list of distinct keys, in order."""
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise InputError(name, "must be a list of keys")
    keys = list(value)
    if not all(isinstance(k, str) for k in keys):
        raise InputError(name, "keys must be strings")
    return list(dict.fromkeys(keys))
