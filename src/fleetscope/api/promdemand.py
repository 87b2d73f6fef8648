"""On demand: the instrumentation a PromQL query needs, when none answers it yet.

A selector whose metric name no instrumentation the caller sees answers, but that names a
metric of the catalogue (``fleetscope_<module>_<stat>``, or a distribution's
``fleetscope_<module>_<stat>_<numeric field>`` and its ``_bucket``, ``_sum``, ``_count``),
proposes the instrumentation that would answer it:

- its metric, with the numeric field for a distribution's name;
- a predicate of the selector's label matchers on the metric's discrete fields, AND-ed
  (``=`` is ``==``, ``!=`` is ``!=``, ``=~`` and ``!~`` are anchored regular expressions);
  the mapping (:func:`fleetscope.api.promseries.selects`) then selects the new
  instrumentation with that very selector;
- a breakdown by the label the nearest enclosing aggregation groups ``by``, when it is one
  of the metric's discrete fields (a fleetscope breakdown has one discrete field).

A proposal that cannot be made says why (a matcher or grouping on something that is no
field of the metric, more than one grouping field); nothing is created for it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import NamedTuple

import promql_parser

from fleetscope.api.exposition import metric_base
from fleetscope.api.promseries import INSTRUMENTATION, matcher_term
from fleetscope.model import predicate as predicates
from fleetscope.model.metrics import DISCRETE, NUMERIC, Metric
from fleetscope.promql.matchers import NAME, Matcher, from_selector

SUFFIXES = ("", "_bucket", "_sum", "_count")  # of a distribution's family name


class Proposal(NamedTuple):
    """The instrumentation one selector needs: ``spec`` (a create body) or why it cannot be."""

    selector: str
    spec: dict | None
    problem: str | None


def catalogue_names(catalog: Sequence[Metric]) -> dict[str, tuple[Metric, str | None]]:
    """Each name a metric of ``catalog`` would be queried by: metric and numeric field."""
    out: dict[str, tuple[Metric, str | None]] = {}
    for mt in catalog:
        out[metric_base(mt.module, mt.stat)] = (mt, None)
        for f in mt.fields:
            if f.kind == NUMERIC:
                family = metric_base(mt.module, mt.stat, f.name)
                out.update({family + suffix: (mt, f.name) for suffix in SUFFIXES})
    return out


def selectors(node: object, grouping: list[str] | None = None
              ) -> Iterator[tuple[promql_parser.VectorSelector, list[str] | None]]:
    """Every vector selector of an expression, with the ``by`` labels of the nearest
    aggregation around it (None when there is none, or it groups ``without``)."""
    if isinstance(node, promql_parser.VectorSelector):
        yield node, grouping
    elif isinstance(node, promql_parser.MatrixSelector):
        yield node.vector_selector, grouping
    elif isinstance(node, promql_parser.AggregateExpr):
        mod = node.modifier
        by = list(mod.labels) if mod is not None and mod.type == promql_parser.AggModifierType.By else None
        yield from selectors(node.expr, by)
        if node.param is not None:
            yield from selectors(node.param, grouping)
    elif isinstance(node, promql_parser.BinaryExpr):
        yield from selectors(node.lhs, grouping)
        yield from selectors(node.rhs, grouping)
    elif isinstance(node, promql_parser.Call):
        for arg in node.args:
            yield from selectors(arg, grouping)
    elif isinstance(node, promql_parser.ParenExpr | promql_parser.UnaryExpr | promql_parser.SubqueryExpr):
        yield from selectors(node.expr, grouping)


def _discrete(mt: Metric) -> set[str]:
    return {f.name for f in mt.fields if f.kind == DISCRETE}


def propose(mt: Metric, numeric: str | None, matchers: Sequence[Matcher], grouping: list[str] | None,
            selector: str) -> Proposal:
    """The instrumentation of ``mt`` that answers ``selector`` (see the module docstring)."""
    fields = _discrete(mt)
    terms = []
    for m in matchers:
        if m.name in (NAME, INSTRUMENTATION):
            continue
        if m.name not in fields:
            return Proposal(selector, None, f"{m.name!r} is not a field of {mt.name} (its fields: "
                            f"{', '.join(sorted(fields))})")
        terms.append(matcher_term(m))
    by = [label for label in grouping or [] if label in fields]
    if len(by) > 1:
        return Proposal(selector, None, f"a breakdown has one discrete field; the query groups by "
                        f"{', '.join(by)}")
    spec: dict = {"module": mt.module, "stat": mt.stat, "decomposition": by + ([numeric] if numeric else [])}
    if terms:
        spec["predicate"] = terms[0] if len(terms) == 1 else {"and": terms}
    return Proposal(selector, spec, None)


def proposals(expr: object, answered: set[str], catalog: Sequence[Metric]) -> list[Proposal]:
    """The instrumentations ``expr`` needs: one per selector of a catalogue name in no
    instrumentation's ``answered`` names (the first proposal of each name and labels)."""
    known = catalogue_names(catalog)
    out: dict[str, Proposal] = {}
    for vs, grouping in selectors(expr):
        matchers = from_selector(vs)
        name = next((m.value for m in matchers if m.name == NAME and m.op == "="), None)
        if name is None or name in answered or name not in known:
            continue
        mt, numeric = known[name]
        text = str(vs)
        out.setdefault(text, propose(mt, numeric, matchers, grouping, text))
    return list(out.values())


def describe(spec: dict) -> str:
    """A proposal as a person reads it: ``proc.cpu where hostname == "web1" by execname``."""
    text = f"{spec['module']}.{spec['stat']}"
    if spec.get("predicate"):
        text += f" where {predicates.to_text(spec['predicate'])}"
    if spec.get("decomposition"):
        text += f" by {', '.join(spec['decomposition'])}"
    return text
