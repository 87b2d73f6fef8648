"""Predicates: filters over a metric's fields, as a JSON tree and as text.

CONTRACT (to be implemented; signatures are fixed, other modules rely on them):

JSON form (DESIGN.md): ``{"eq": [field, value]}``, ``ne``, ``lt``, ``le``, ``gt``,
``ge``, ``{"and": [p, ...]}``, ``{"or": [p, ...]}``, ``{"not": p}``,
``{"in": [field, [v1, v2]]}``, ``{"re": [field, "regex"]}``; ``{}`` is everything.

Text form: ``execname == "nginx" and latency > 10ms``; operators ``== != < <= > >=``,
``field in ["a", "b"]``, ``field ~ "regex"``, ``and``, ``or``, ``not``, parentheses;
strings in double quotes (backslash escapes) or bare words for discrete values;
numbers with units (``10ms``, ``4KiB``, ``50%``).

Rows given to compiled predicates are tuples: one value per column (discrete
values are ``str``, numeric values ``int``/``float`` in the field's unit), then
the measure last. Discrete comparisons are on strings (``pid == 42`` compares
with ``"42"``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from fleetscope.model.metrics import Metric

Predicate = dict  # the JSON form


def parse_text(text: str) -> Predicate:
    """Parse the text form into the (unvalidated) JSON form; InputError(field="predicate") on a syntax
    error, with the position. Quantities with units stay strings such as ``"10ms"`` until validated."""
    raise NotImplementedError


def to_text(pred: Predicate) -> str:
    """The text form of a JSON predicate; ``parse_text(to_text(p))`` validates to the same tree."""
    raise NotImplementedError


def validate(pred: object, metric: Metric, field: str = "predicate") -> Predicate:
    """Check a JSON predicate against the metric and return it normalised: discrete values as str,
    numeric values as numbers in the field's unit (quantities such as ``"10ms"`` converted).
    InputError naming ``field`` (the request field) with a message naming the metric field, for:
    unknown operator, unknown field, order comparison on a discrete field, wrong value type,
    bad regex, wrong arity."""
    raise NotImplementedError


def parse(pred: object, metric: Metric, field: str = "predicate") -> Predicate:
    """Accept either form (a str is the text form, a dict the JSON form; None/"" is ``{}``)
    and return the validated JSON form."""
    raise NotImplementedError


def fields_of(pred: Predicate) -> set[str]:
    """The field names a predicate mentions."""
    raise NotImplementedError


def compile_predicate(
    pred: Predicate, columns: Sequence[str], constants: Mapping[str, Any] | None = None
) -> Callable[[tuple], bool] | bool:
    """Compile a validated predicate once into a function of a row tuple (``columns`` gives the
    position of each field). Fields in ``constants`` (e.g. ``hostname``) are folded at compile
    time; when the whole predicate folds, return ``True`` or ``False`` instead of a function.
    A field in neither ``columns`` nor ``constants`` raises KeyError."""
    raise NotImplementedError
