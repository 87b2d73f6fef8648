"""Numbers, units, durations and times for people: pure functions of the API's JSON."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

from fleetscope.model.types import Type, format_quantity

GAP = "-"  # no value: drawn as a gap, as the dashboard does, never as 0


def unit_type(unit: Any) -> Type:
    """A :class:`Type` from the API's ``{"base", "power", "name"}`` (number when absent)."""
    if isinstance(unit, Mapping):
        return Type(str(unit.get("base", "number")), int(unit.get("power") or 0))
    return Type()


def format_value(value: Any, unit: Type) -> str:
    """A number for people, in ``unit``; :data:`GAP` when there is none (null, NaN)."""
    if not finite(value):
        return GAP
    if value == 0:
        return "0"  # not "0 ns" or "0 B": zero needs no unit
    return format_quantity(value, unit)


def format_duration(seconds: float | None) -> str:
    """``600`` -> ``10m``, ``5400`` -> ``1h30m``, ``0`` -> ``0s`` (inverse of parse_duration)."""
    if seconds is None:
        return "-"
    rest = int(seconds)
    if rest != seconds or rest < 0:
        return f"{seconds:g}s"
    if rest == 0:
        return "0s"
    parts = []
    for suffix, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        n, rest = divmod(rest, size)
        if n:
            parts.append(f"{n}{suffix}")
    return "".join(parts)


def format_idle_max(seconds: float | None) -> str:
    """An idle_max for people: 0 means the instrumentation never expires."""
    return "never" if seconds == 0 else format_duration(seconds)


def format_time(t: float | None, granularity: int = 1) -> str:
    """Local wall-clock time of epoch seconds ``t``, with the date once slots are hours long."""
    if not isinstance(t, int | float):
        return "-" if t is None else str(t)
    pattern = "%Y-%m-%d %H:%M" if granularity >= 3600 else "%H:%M:%S"
    return time.strftime(pattern, time.localtime(t))


def format_timestamp(t: Any, pattern: str = "%Y-%m-%d %H:%M:%S") -> str:
    if isinstance(t, int | float) and not isinstance(t, bool):
        return time.strftime(pattern, time.localtime(t))
    return "-" if t is None else str(t)


def format_bytes(n: Any) -> str:
    if not isinstance(n, int | float):
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def yes_no(v: Any) -> str:
    return "-" if v is None else ("yes" if v else "no")


def metric_name(inst: Mapping[str, Any]) -> str:
    """The ``module.stat`` of an instrumentation (``metric`` may be a name or a metric object)."""
    metric = inst.get("metric")
    if isinstance(metric, str):
        return metric
    if isinstance(metric, Mapping) and metric.get("name"):
        return str(metric["name"])
    return f"{inst.get('module')}.{inst.get('stat')}"


def describe(inst: Mapping[str, Any]) -> str:
    """One line for people: ``proc.cpu by execname where execname != "idle"``."""
    text = metric_name(inst)
    if inst.get("decomposition"):
        text += " by " + ", ".join(map(str, inst["decomposition"]))
    if inst.get("predicate_text"):
        text += f" where {inst['predicate_text']}"
    return text


def numeric_field_type(metrics: Sequence[Mapping[str, Any]], inst: Mapping[str, Any]) -> Type:
    """The unit of the numeric field an instrumentation is decomposed by (number if unknown)."""
    name = metric_name(inst)
    decomposition = set(inst.get("decomposition") or ())
    for metric in metrics:
        if metric.get("name") != name:
            continue
        for field in metric.get("fields") or ():
            if field.get("name") in decomposition and field.get("kind") == "numeric":
                return unit_type(field.get("type"))
    return Type()


def quantile_label(q: float) -> str:
    """``0.5`` -> ``p50``, ``0.999`` -> ``p99.9``."""
    return f"p{q * 100:g}"


def format_sources(point: Mapping[str, Any]) -> str:
    """``nsources/expected`` of a point, e.g. ``3/3``."""
    n, expected = point.get("nsources"), point.get("expected")
    if n is None:
        return "-"
    return f"{n}/{expected}" if expected is not None else str(n)


def finite(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
