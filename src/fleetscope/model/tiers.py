"""History tiers: per second, per minute, per hour, each kept for its own retention.

The raw tier ("second") holds the instrumentation's slots as they were final
(its resolution is the granularity); "minute" and "hour" hold exact rollups
of the tier below. A tier is only kept when it is coarser than the
granularity (an instrumentation of 60 s slots has no minute tier of its own).
Retention is set globally (``fleetscope serve --history``) and per
instrumentation (``"history": {"minute": "90d"}``); a coarser tier always keeps
at least as long as a finer one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from itertools import pairwise
from typing import NamedTuple

from fleetscope.model.errors import InputError
from fleetscope.model.types import parse_duration

NAMES = ("second", "minute", "hour")
RESOLUTIONS = (1, 60, 3600)  # the raw tier's resolution is really the granularity
DEFAULT_RETENTION = {"second": 7 * 86400, "minute": 30 * 86400, "hour": 365 * 86400}
MAX_RETENTION = 10 * 366 * 86400
# Seconds of data in one finished chunk, per tier level (raw: times the granularity).
SPANS = (3600, 86400, 30 * 86400)
DAY = 86400
# Steps people read at a glance, and that divide a minute, an hour or a day (or are whole days):
# a step of 30 h would fold a daily cycle into a false 5-day wave.
TIDY_STEPS = (1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600, 900, 1200, 1800, 3600, 7200, 10800, 14400,
              21600, 43200, DAY)


def tidy_step(step: int, resolution: int) -> int:
    """The smallest tidy step (:data:`TIDY_STEPS`, then whole days) of at least ``step`` seconds
    that is a multiple of ``resolution``; else ``step`` rounded up to a multiple of it.

    >>> tidy_step(105120, 3600)  # a year in 300 points: two days, not 29.2 h
    172800
    >>> tidy_step(111, 60), tidy_step(25, 5), tidy_step(7, 7)
    (120, 30, 7)
    """
    for tidy in TIDY_STEPS:
        if tidy >= step and tidy % resolution == 0:
            return tidy
    if step > DAY and DAY % resolution == 0:
        return -(-step // DAY) * DAY
    return -(-step // resolution) * resolution


class Tier(NamedTuple):
    """One tier of one instrumentation."""

    level: int  # 0 raw, 1 minute, 2 hour: the key in the store
    name: str
    resolution: int  # seconds per point
    retention: int  # seconds kept
    span: int  # seconds per finished chunk


def parse_retention(value: object, field: str = "history") -> dict[str, int]:
    """``{"second": "7d", ...}`` or ``"second=7d,minute=30d"`` as ``{name: seconds}`` (only the
    tiers given; durations as :func:`parse_duration` reads them, or years: ``"1y"`` is 365
    days). InputError naming ``field.tier`` for an unknown tier or a bad duration."""
    if isinstance(value, str):
        items = {}
        for part in filter(None, (p.strip() for p in value.split(","))):
            name, sep, amount = part.partition("=")
            if not sep:
                raise InputError(field, f"{part!r} is not tier=duration (e.g. 'second=7d,minute=30d')")
            items[name.strip()] = amount.strip()
        value = items
    if not isinstance(value, Mapping):
        raise InputError(field, "must be an object {tier: duration} with tiers second, minute, hour")
    out = {}
    for name, amount in value.items():
        if name not in NAMES:
            raise InputError(f"{field}.{name}", f"unknown tier (tiers: {', '.join(NAMES)})")
        out[name] = parse_tier_retention(amount, f"{field}.{name}")
    return out


def parse_tier_retention(amount: object, field: str) -> int:
    """How long a tier keeps data, in seconds: a duration as :func:`parse_duration` reads it, or
    years (``"1y"`` is 365 days), 60 s to :data:`MAX_RETENTION`; InputError naming ``field``."""
    if isinstance(amount, bool) or not isinstance(amount, int | float | str):
        raise InputError(field, "must be a duration such as '7d'")
    years = re.fullmatch(r"\s*(\d+)\s*y\s*", amount) if isinstance(amount, str) else None
    seconds = int(years[1]) * 365 * 86400 if years else parse_duration(amount, field)
    if not 60 <= seconds <= MAX_RETENTION:
        raise InputError(field, f"must be between 60 s and {MAX_RETENTION // 86400} days")
    return seconds


def capped_retention(given: Mapping[str, int], longest: int, field: str = "history") -> dict[str, int]:
    """Every tier's retention for an instrumentation that may keep history at most ``longest``
    seconds (a tenant's quota): the tiers ``given`` if within it (InputError naming
    ``field.tier`` otherwise), the others at their default or ``longest``, whichever is shorter."""
    for name, seconds in given.items():
        if seconds > longest:
            raise InputError(f"{field}.{name}", f"at most {longest} s (the tenant's history quota)")
    return {name: given.get(name, min(DEFAULT_RETENTION[name], longest)) for name in NAMES}


def validate_retention(value: object, defaults: Mapping[str, int] = DEFAULT_RETENTION,
                       field: str = "history") -> dict[str, int]:
    """:func:`parse_retention`, and check that together with ``defaults`` for the tiers not
    given no coarser tier keeps less than a finer one. Returns only the tiers given."""
    given = parse_retention(value, field)
    merged = {**defaults, **given}
    for finer, coarser in pairwise(NAMES):
        if merged[coarser] < merged[finer]:
            blame = coarser if coarser in given else finer
            raise InputError(f"{field}.{blame}", f"the {coarser} tier must be kept at least as long as the "
                             f"{finer} tier ({merged[coarser]} s < {merged[finer]} s)")
    return given


def tiers_for(granularity: int, overrides: Mapping[str, int] | None = None,
              defaults: Mapping[str, int] = DEFAULT_RETENTION) -> tuple[Tier, ...]:
    """The tiers of an instrumentation, finest first, with their effective retention."""
    retention = {**defaults, **(overrides or {})}
    out: list[Tier] = []
    kept = 0
    for level, name in enumerate(NAMES):
        resolution = granularity if level == 0 else RESOLUTIONS[level]
        if level and resolution <= granularity:
            continue
        kept = max(kept, retention[name])  # a coarser tier keeps at least as long
        span = SPANS[level] * (granularity if level == 0 else 1)
        out.append(Tier(level, name, resolution, kept, span))
    return tuple(out)
