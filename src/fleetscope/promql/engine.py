"""The entry points: :func:`instant` and :func:`range_query`, and the walk of the syntax tree.

    >>> from fleetscope.promql.storage import MemoryStorage, Series
    >>> s = MemoryStorage([Series({"__name__": "up", "job": "a"}, np.array([0]), np.array([1.0]))])
    >>> instant('sum(up) * 2', s, 60_000).data
    {'resultType': 'vector', 'result': [{'metric': {}, 'value': [60.0, '2']}]}

Each node is evaluated once for all steps of the query (see ``values``): selectors read the
storage once per selector, functions and operators work on ``(series, steps)`` matrices. The
engine follows Prometheus 2.42's evaluator where it shows in the numbers: ``@`` and ``offset``
(an ``@`` makes a selector read the same time at every step), subqueries aligned to their
step, the metric name dropped or kept as there, the same errors.
"""

from __future__ import annotations

import numpy as np
import promql_parser

from fleetscope.promql import aggregations, binary, functions, result
from fleetscope.promql.context import Context
from fleetscope.promql.errors import BAD_DATA, Limits, PromQLError, unsupported
from fleetscope.promql.labels import NAME, Labels, without_name
from fleetscope.promql.result import Result
from fleetscope.promql.selectors import (
    at_ms,
    duration_ms,
    load_range,
    matchers_of,
    reference_times,
    vector_selector,
)
from fleetscope.promql.storage import Storage
from fleetscope.promql.values import Matrix, RawSeries, Scalar, String, Vector, check_unique

MAX_POINTS = 11_000  # points per series a range query may ask for (Prometheus' API limit)
SUBQUERY_STEP_MS = 60_000  # a subquery without a step uses the global evaluation interval (1m)

Value = Scalar | String | Vector | Matrix


def parse(text: str) -> promql_parser.Expr:
    """The syntax tree of ``text``; PromQLError ``bad_data`` when it is not PromQL."""
    try:
        return promql_parser.parse(text)
    except ValueError as exc:
        raise PromQLError(BAD_DATA, f"parse error: {exc}") from None
    except BaseException as exc:  # promql-parser panics (a BaseException) on some inputs
        if type(exc).__name__ != "PanicException":
            raise
        raise PromQLError(BAD_DATA, "parse error: the query could not be parsed") from None


DEFAULT_LIMITS = Limits()


def instant(text: str, storage: Storage, time_ms: int, limits: Limits = DEFAULT_LIMITS) -> Result:
    """The value of ``text`` at ``time_ms``, as ``/api/v1/query`` answers it."""
    node = parse(text)
    ctx = Context(storage, limits, time_ms, time_ms, 0)
    with np.errstate(all="ignore"):
        value = evaluate(node, ctx)
    if isinstance(value, Vector):
        return Result(result.vector_result(value, time_ms), [])
    if isinstance(value, Scalar):
        return Result(result.scalar_result(value, time_ms), [])
    if isinstance(value, String):
        return Result(result.string_result(value, time_ms), [])
    return Result(result.matrix_of_range(value), [])


def range_query(text: str, storage: Storage, start_ms: int, end_ms: int, step_ms: int,
                limits: Limits = DEFAULT_LIMITS) -> Result:
    """The value of ``text`` from ``start_ms`` to ``end_ms`` every ``step_ms``, as
    ``/api/v1/query_range`` answers it (a matrix, series sorted by labels)."""
    check_range(start_ms, end_ms, step_ms)
    node = parse(text)
    kind = _result_type(node)
    if kind not in ("vector", "scalar"):
        documented = "range vector" if kind == "matrix" else kind
        raise PromQLError(BAD_DATA, f'invalid expression type "{documented}" for range query, '
                                    "must be Scalar or instant Vector")
    ctx = Context(storage, limits, start_ms, end_ms, step_ms)
    with np.errstate(all="ignore"):
        value = evaluate(node, ctx)
    if isinstance(value, Scalar):
        value = Vector([()], value.values[None, :], np.ones((1, ctx.k), dtype=bool))
    return Result(result.matrix_of_vector(value, ctx.steps), [])


def check_range(start_ms: int, end_ms: int, step_ms: int) -> None:
    """PromQLError ``bad_data`` for a range Prometheus refuses, in its words."""
    if end_ms < start_ms:
        raise PromQLError(BAD_DATA, "end timestamp must not be before start time")
    if step_ms <= 0:
        raise PromQLError(BAD_DATA, "zero or negative query resolution step widths are not accepted. "
                                    "Try a positive integer")
    if (end_ms - start_ms) // step_ms > MAX_POINTS:
        raise PromQLError(BAD_DATA, "exceeded maximum resolution of 11,000 points per timeseries. "
                                    "Try decreasing the query resolution (?step=XX)")


def _result_type(node: promql_parser.Expr) -> str:
    while isinstance(node, promql_parser.ParenExpr):
        node = node.expr
    if isinstance(node, promql_parser.MatrixSelector | promql_parser.SubqueryExpr):
        return "matrix"
    if isinstance(node, promql_parser.StringLiteral):
        return "string"
    if isinstance(node, promql_parser.NumberLiteral):
        return "scalar"
    if isinstance(node, promql_parser.UnaryExpr):
        return _result_type(node.expr)
    if isinstance(node, promql_parser.BinaryExpr):
        sides = (_result_type(node.lhs), _result_type(node.rhs))
        return "scalar" if sides == ("scalar", "scalar") else "vector"
    if isinstance(node, promql_parser.Call):
        return str(node.func.return_type).rsplit(".", 1)[-1].lower()
    return "vector"


def evaluate(node: promql_parser.Expr, ctx: Context) -> Value:
    """The value of ``node`` at every step of ``ctx``. Each node takes the samples of its
    result from the budget and gives back its operands' (Prometheus' max-samples count)."""
    ctx.check()
    if isinstance(node, promql_parser.ParenExpr):
        return evaluate(node.expr, ctx)
    if isinstance(node, promql_parser.NumberLiteral):
        return Scalar(np.full(ctx.k, float(node.val)))
    if isinstance(node, promql_parser.StringLiteral):
        return String(node.val)
    if isinstance(node, promql_parser.VectorSelector):
        return vector_selector(ctx, node)
    if isinstance(node, promql_parser.MatrixSelector):
        selector = node.vector_selector
        return load_range(ctx, selector, duration_ms(node.range), reference_times(selector, ctx))
    if isinstance(node, promql_parser.SubqueryExpr):
        return _subquery(node, ctx)
    operands: list[Value] = []
    value = _compound(node, ctx, operands)
    for operand in operands:
        ctx.budget.release(operand.samples)
    ctx.budget.take(value.samples)
    return value


def _operand(node: promql_parser.Expr, ctx: Context, operands: list[Value]) -> Value:
    value = evaluate(node, ctx)
    operands.append(value)
    return value


def _compound(node: promql_parser.Expr, ctx: Context, operands: list[Value]) -> Value:
    if isinstance(node, promql_parser.UnaryExpr):
        return _negate(_operand(node.expr, ctx, operands))
    if isinstance(node, promql_parser.BinaryExpr):
        return _binary(node, ctx, operands)
    if isinstance(node, promql_parser.AggregateExpr):
        return _aggregate(node, ctx, operands)
    if isinstance(node, promql_parser.Call):
        return _call(node, ctx, operands)
    raise unsupported(f"the expression {node}")


def _negate(value: Value) -> Value:
    if isinstance(value, Scalar):
        return Scalar(-value.values)
    if value.hists is not None and value.histogram_mask().any():
        raise unsupported("unary minus on native histograms")
    out = Vector([without_name(ls) for ls in value.labels], -value.values, value.present)
    check_unique(out)
    return out


def _label_modifier(modifier) -> tuple[bool, list[str]]:
    """``(on, labels)`` of an ``on(...)``/``ignoring(...)`` (no modifier: ignoring nothing)."""
    if modifier is None or modifier.matching is None:
        return False, []
    return str(modifier.matching.type).endswith("Include"), list(modifier.matching.labels)


_CARDINALITY = {"OneToOne": "one-to-one", "ManyToOne": "many-to-one", "OneToMany": "one-to-many",
                "ManyToMany": "many-to-many"}


def _binary(node: promql_parser.BinaryExpr, ctx: Context, operands: list[Value]) -> Value:
    op = str(node.op)
    if op not in binary.ARITHMETIC and op not in binary.COMPARISON and op not in binary.SET:
        raise unsupported(f"the operator {op}")
    modifier = node.modifier
    if modifier is not None and modifier.fill_values is not None and (
            modifier.fill_values.lhs is not None or modifier.fill_values.rhs is not None):
        raise unsupported("fill() in binary operations")
    lhs, rhs = _operand(node.lhs, ctx, operands), _operand(node.rhs, ctx, operands)
    return_bool = bool(modifier is not None and modifier.return_bool)
    if isinstance(lhs, Scalar) and isinstance(rhs, Scalar):
        return binary.scalars(op, lhs, rhs)
    if isinstance(rhs, Scalar):
        return binary.vector_scalar(op, lhs, rhs, False, return_bool)
    if isinstance(lhs, Scalar):
        return binary.vector_scalar(op, rhs, lhs, True, return_bool)
    on, names = _label_modifier(modifier)
    card = "many-to-many" if op in binary.SET else "one-to-one"
    include: list[str] = []
    if modifier is not None:
        card = _CARDINALITY[str(modifier.card).rsplit(".", 1)[-1]]
        include = list(modifier.group_labels or [])
    return binary.vectors(op, lhs, rhs, binary.Matching(card, on, names, include), return_bool)


def _aggregate(node: promql_parser.AggregateExpr, ctx: Context, operands: list[Value]) -> Value:
    op = str(node.op)
    if op not in aggregations.SUPPORTED:
        raise unsupported(f"the aggregation {op}")
    param = None if node.param is None else _operand(node.param, ctx, operands)
    vector = _operand(node.expr, ctx, operands)
    modifier = node.modifier
    without = modifier is not None and str(modifier.type).endswith("Without")
    names = list(modifier.labels) if modifier is not None else []
    return aggregations.aggregate(op, vector, aggregations.Grouping(names, without), param, ctx)


def _unwrap(node: promql_parser.Expr) -> promql_parser.Expr:
    while isinstance(node, promql_parser.ParenExpr):
        node = node.expr
    return node


def _call(node: promql_parser.Call, ctx: Context, operands: list[Value]) -> Value:
    name = node.func.name
    if name not in functions.SUPPORTED:
        raise unsupported(f"the function {name}()")
    args = [_unwrap(a) for a in node.args]
    if name in functions.RANGE_ARGUMENT:
        return _range_call(name, args, ctx, operands)
    if name == "timestamp" and isinstance(args[0], promql_parser.VectorSelector):
        return functions.timestamp(_timestamp_selector(args[0], ctx, operands), ctx)
    values = [_operand(a, ctx, operands) for a in args]
    if name == "absent":
        return functions.absent(values[0], ctx, _absent_labels(args[0]))
    return functions.call(name, values, ctx)


def _timestamp_selector(node: promql_parser.VectorSelector, ctx: Context, operands: list[Value]) -> Vector:
    # Prometheus reads timestamp(x @ t) at t itself (its offset is set aside there).
    pinned = at_ms(node, ctx)
    refs = None if pinned is None else np.full(ctx.k, pinned, dtype=np.int64)
    vector = vector_selector(ctx, node, refs)
    operands.append(vector)
    return vector


def _range_call(name: str, args: list, ctx: Context, operands: list[Value]) -> Value:
    index = functions.RANGE_ARGUMENT[name]
    scalars = [_operand(a, ctx, operands) for i, a in enumerate(args) if i != index]
    arg = args[index]
    if isinstance(arg, promql_parser.MatrixSelector):
        selector = arg.vector_selector
        ends = read = reference_times(selector, ctx)
        if name == "predict_linear" and at_ms(selector, ctx) is not None:
            # Prometheus 2.42 turns @ into an offset from the query's start: it reads the samples
            # of the window at the @ time, but for this one function (not step-invariant) the
            # window then slides with the steps over what was read.
            ends = read + (ctx.steps - ctx.start_ms)
        matrix = load_range(ctx, selector, duration_ms(arg.range), ends, read)
    elif isinstance(arg, promql_parser.SubqueryExpr):
        matrix = _subquery(arg, ctx)
    else:
        raise unsupported(f"{name}() of {arg}")
    operands.append(matrix)
    if name == "absent_over_time":
        labels = _absent_labels(arg.vector_selector) if isinstance(arg, promql_parser.MatrixSelector) else ()
        return functions.absent_over_time(matrix, ctx, labels)
    return functions.over_range(name, matrix, ctx, scalars)


def _absent_labels(node: promql_parser.Expr) -> Labels:
    """The labels ``absent()`` answers with: those of the selector's equality matchers, but a
    label matched twice or otherwise (Prometheus' createLabelsForAbsentFunction)."""
    if not isinstance(node, promql_parser.VectorSelector):
        return ()
    found: dict[str, str] = {}
    dropped = set()
    for m in matchers_of(node):
        if m.name == NAME:
            continue
        if m.op == "=" and m.name not in found:
            found[m.name] = m.value
        else:
            dropped.add(m.name)
    return tuple(sorted((k, v) for k, v in found.items() if k not in dropped and v != ""))


def _go_div(a: int, b: int) -> int:
    # Go's integer division truncates toward zero.
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def _subquery(node: promql_parser.SubqueryExpr, ctx: Context) -> Matrix:
    """A subquery's inner expression evaluated at its own steps (multiples of its step), as a
    range vector whose windows end at each outer step's time (or the ``@`` time) less the offset."""
    range_ms = duration_ms(node.range)
    step = duration_ms(node.step) or SUBQUERY_STEP_MS
    ends = reference_times(node, ctx)
    first = int(ends.min()) - range_ms
    start = step * _go_div(first, step)
    if start < first:
        start += step
    inner = ctx.inner(start, int(ends.max()), step)
    value = evaluate(node.expr, inner)
    if isinstance(value, Scalar):
        value = Vector([()], value.values[None, :], np.ones((1, inner.k), dtype=bool))
    if not isinstance(value, Vector):
        raise unsupported(f"a subquery of {node.expr}")
    series = []
    for i, labels in enumerate(value.labels):
        at = value.present[i]
        if not at.any():
            continue
        if value.hists is not None and value.histogram_mask()[i].any():
            series.append(RawSeries(labels, inner.steps[at], None, list(value.hists[i, at])))
        else:
            series.append(RawSeries(labels, inner.steps[at], value.values[i, at]))
    return Matrix(series, range_ms, ends)
