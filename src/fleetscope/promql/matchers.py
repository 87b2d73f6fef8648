"""Label matchers and series selectors, as Prometheus has them.

Four operators: ``=``, ``!=``, ``=~``, ``!~``. A label a series lacks matches as the empty
string. Regular expressions are RE2 (no backtracking, so no pattern stalls a query) and
fully anchored, ``^(?:re)$``, as Prometheus anchors them; each pattern is compiled once.

    >>> m = parse_selector('up{job=~"api|web"}')
    >>> matches({"__name__": "up", "job": "web"}, m)
    True
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

import promql_parser
import re2

from fleetscope.model.errors import InputError

NAME = "__name__"
REGEX_CACHE = 1024  # distinct patterns kept compiled


class Matcher(NamedTuple):
    name: str
    op: str  # "=", "!=", "=~", "!~"
    value: str


_OPS = {"Equal": "=", "NotEqual": "!=", "Re": "=~", "NotRe": "!~"}


@functools.lru_cache(maxsize=REGEX_CACHE)
def compile_regex(pattern: str) -> re2._Regexp:
    """``pattern`` anchored at both ends, as Prometheus anchors it; raises ``re2.error``."""
    return re2.compile(f"^(?:{pattern})$")


def from_selector(expr: promql_parser.VectorSelector) -> list[Matcher]:
    """The matchers of a parsed selector, its metric name as ``__name__ = name``.

    Raises ValueError for what Prometheus 2.42 does not have (``or`` between matcher sets)
    or for a bad regular expression.
    """
    if expr.matchers.or_matchers:
        raise ValueError("'or' between label matchers is not supported by Prometheus 2.42 or fleetscope")
    matchers = [Matcher(m.name, _OPS[str(m.op).rsplit(".", 1)[-1]], m.value) for m in expr.matchers.matchers]
    if expr.name:
        matchers.append(Matcher(NAME, "=", expr.name))
    for m in matchers:
        if m.op in ("=~", "!~"):
            try:
                compile_regex(m.value)
            except re2.error as exc:
                raise ValueError(f"bad regular expression {m.value!r}: {exc}") from exc
    return matchers


def parse_selector(text: str, field: str = "match[]") -> list[Matcher]:
    """The matchers of one series selector (``name{label="v"}``); InputError naming ``field``."""
    try:
        expr = promql_parser.parse(text)
    except (ValueError, RuntimeError) as exc:
        raise InputError(field, f"{text!r} is not a series selector: {exc}") from exc
    if not isinstance(expr, promql_parser.VectorSelector):
        raise InputError(field, f"{text!r} is not a series selector")
    try:
        return from_selector(expr)
    except ValueError as exc:
        raise InputError(field, str(exc)) from exc


def matches_one(m: Matcher, value: str) -> bool:
    if m.op == "=":
        return value == m.value
    if m.op == "!=":
        return value != m.value
    found = compile_regex(m.value).match(value) is not None
    return found if m.op == "=~" else not found


def matches(labels: dict[str, str], matchers: Sequence[Matcher]) -> bool:
    """Whether a series with ``labels`` is selected (a missing label is the empty string)."""
    return all(matches_one(m, labels.get(m.name, "")) for m in matchers)
