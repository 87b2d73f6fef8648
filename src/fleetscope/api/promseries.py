"""fleetscope's instrumentations as Prometheus series: the mapping of the ``/prometheus`` API.

Each instrumentation is a metric of the name ``/metrics`` exports it under
(:func:`fleetscope.api.exposition.metric_name`): ``fleetscope_<module>_<stat>``, a per-second
rate for interval metrics and a level for point metrics. Its labels are
``instrumentation`` (its id) and, for a breakdown, its discrete field (one series per key,
``(other)`` included). A distribution is the native histogram
``fleetscope_<module>_<stat>_<numeric field>`` with its classic ``_sum`` and ``_count``.

Series are found from the keys an instrumentation had over a range (real-time window and
history, at most :data:`KEY_POINTS` points read per instrumentation); label matchers are
Prometheus' four (``=``, ``!=``, ``=~``, ``!~``; regular expressions are RE2, anchored, as
Prometheus has them).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

import promql_parser
import re2

from fleetscope.api.exposition import family_name, label_name, metric_name
from fleetscope.model import values
from fleetscope.model.errors import InputError
from fleetscope.model.instrumentation import Instrumentation
from fleetscope.model.metrics import INTERVAL

NAME = "__name__"
INSTRUMENTATION = "instrumentation"
KEY_POINTS = 120  # points read per instrumentation to learn its keys over a range
MAX_SERIES = 10_000  # series one answer lists, at most


class Matcher(NamedTuple):
    name: str
    op: str  # "=", "!=", "=~", "!~"
    value: str


_OPS = {"Equal": "=", "NotEqual": "!=", "Re": "=~", "NotRe": "!~"}


def parse_selector(text: str, field: str = "match[]") -> list[Matcher]:
    """The matchers of one series selector (``name{label="v"}``); InputError naming ``field``."""
    try:
        expr = promql_parser.parse(text)
    except (ValueError, RuntimeError) as exc:
        raise InputError(field, f"{text!r} is not a series selector: {exc}") from exc
    if not isinstance(expr, promql_parser.VectorSelector):
        raise InputError(field, f"{text!r} is not a series selector")
    matchers = [Matcher(m.name, _OPS[str(m.op).rsplit(".", 1)[-1]], m.value) for m in expr.matchers.matchers]
    if expr.name:
        matchers.append(Matcher(NAME, "=", expr.name))
    for m in matchers:
        if m.op in ("=~", "!~"):
            _regex(m.value, field)
    return matchers


def _regex(pattern: str, field: str):
    try:
        return re2.compile(f"^(?:{pattern})$")
    except re2.error as exc:
        raise InputError(field, f"bad regular expression {pattern!r}: {exc}") from exc


def _matches(m: Matcher, value: str) -> bool:
    if m.op == "=":
        return value == m.value
    if m.op == "!=":
        return value != m.value
    found = _regex(m.value, "match[]").match(value) is not None
    return found if m.op == "=~" else not found


def matches(labels: dict[str, str], matchers: Sequence[Matcher]) -> bool:
    """Whether a series with ``labels`` is selected (a missing label is the empty string)."""
    return all(_matches(m, labels.get(m.name, "")) for m in matchers)


def is_distribution(inst: Instrumentation) -> bool:
    return inst.shape in (values.HISTOGRAM, values.DISCRETE_HISTOGRAM)


def names(inst: Instrumentation) -> list[str]:
    """The metric names ``inst`` answers to."""
    if is_distribution(inst):
        family = family_name(inst)
        return [family, f"{family}_sum", f"{family}_count"]
    return [metric_name(inst)]


def metadata(inst: Instrumentation, help_text: str) -> dict[str, list[dict]]:
    """``/metadata`` entries of ``inst``'s metric names."""
    unit = "per second" if inst.kind == INTERVAL else ""
    if is_distribution(inst):
        family = family_name(inst)
        return {family: [{"type": "histogram", "help": help_text, "unit": unit}]}
    return {metric_name(inst): [{"type": "gauge", "help": help_text, "unit": unit}]}


def series(inst: Instrumentation, keys: Iterable[str]) -> list[dict[str, str]]:
    """Every series of ``inst``, given the keys of its breakdown (ignored without one)."""
    label = label_name(inst)
    base = {INSTRUMENTATION: str(inst.id)}
    sets = [{**base, label: key} for key in sorted(keys)] if label else [base]
    return [{NAME: name, **labels} for name in names(inst) for labels in sets]


def label_names(inst: Instrumentation) -> list[str]:
    label = label_name(inst)
    return [NAME, INSTRUMENTATION, *([label] if label else [])]
