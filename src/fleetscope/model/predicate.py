"""Predicates: filters over a metric's fields, as a JSON tree and as text.

CONTRACT (signatures are fixed, other modules rely on them):

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

Details of the text form:

- precedence ``not`` > ``and`` > ``or``; ``a and b or c`` is ``(a and b) or c``.
- ``()`` is the empty predicate (everything), so every JSON tree has a text form
  (``{"not": {}}`` is ``not ()``); an empty text is everything too.
- in a quoted string ``\\"``, ``\\\\``, ``\\n``, ``\\t`` and ``\\r`` are escapes; any other
  backslash is kept as it is, so regexes read naturally: ``"^web\\d+"``.
- a bare word is a run of characters other than white space and ``()[],"=!<>~``
  (``'&|{};`\\`` are refused with a hint). A bare word that is a plain number
  (``42``, ``-1.5``, ``1e3``) becomes a number; any other (``nginx``, ``10ms``,
  ``10.0.0.1``) stays a string for :func:`validate` to read against the field.
- ``~`` matches when the regex is found anywhere in the value (a search, not a full match).

Regular expressions are RE2's (https://github.com/google/re2/wiki/Syntax), through
google-re2: matching takes time linear in the value whatever the pattern, so no
predicate can make an agent backtrack. Python's ``re`` takes about 2^n steps for
``(a+)+$`` against n ``a`` and a ``!`` (0.3 s at n = 22, doubling with each ``a``);
RE2 answers 50,000 characters in about 0.1 ms. RE2 refuses what needs backtracking
(backreferences ``\\1``, lookaround ``(?=``, ``(?<!``) and spells Python's ``\\Z`` as
``\\z``; ``\\d``, ``\\w`` and ``\\s`` are ASCII only. Work is bounded where a caller
could grow it: :data:`MAX_PATTERN` characters per regex, :data:`MAX_REGEXES` regexes
and :data:`MAX_NODES` operators per predicate, :data:`REGEX_MAX_MEM` bytes of RE2
memory per regex.
"""

from __future__ import annotations

import json
import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import re2

from fleetscope.model.errors import InputError
from fleetscope.model.metrics import DISCRETE, Field, Metric
from fleetscope.model.types import parse_quantity

Predicate = dict  # the JSON form

# Deeper trees are refused: they are never written on purpose, and the limit keeps
# recursion (here, in json, in Python's compiler) far from the interpreter's.
MAX_DEPTH = 64
# What one predicate may ask of an agent per row: a tenant's scope AND-ed in still fits.
MAX_NODES = 256  # operators (comparisons, and, or, not)
MAX_REGEXES = 16  # ``re`` comparisons
MAX_PATTERN = 1024  # characters of one regex
# RE2's memory per regex, program and DFA cache (its default is 8 MiB): MAX_REGEXES of them
# stay within 16 MiB. Past it RE2 refuses the pattern ("pattern too large") rather than slow down.
REGEX_MAX_MEM = 1 << 20
# Distinct values whose match result a compiled regex remembers. A call through google-re2
# costs about 2 us (UTF-8 encoding and the binding), ten times Python's re on a short string;
# rows repeat their values from tick to tick (the same processes, the same tags), so nearly
# every call is one dict lookup. 4,096 command lines of 200 characters are under 1 MiB.
REGEX_MEMO = 4096

_SYMBOLS = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}
_ORDER = frozenset(("lt", "le", "gt", "ge"))
_OPERATORS = ("eq", "ne", "lt", "le", "gt", "ge", "in", "re", "and", "or", "not")
_COMPARE = {
    "eq": operator.eq, "ne": operator.ne,
    "lt": operator.lt, "le": operator.le, "gt": operator.gt, "ge": operator.ge,
}  # fmt: skip


# -- regular expressions ------------------------------------------------------------------


def _re2_options() -> re2.Options:
    options = re2.Options()
    options.max_mem = REGEX_MAX_MEM
    options.never_capture = True  # only whether it matches counts
    options.log_errors = False  # a refused pattern is the caller's error, not a log line
    return options


_RE2_OPTIONS = _re2_options()


def compile_regex(pattern: str) -> Callable[[str], bool]:
    """A function telling whether ``pattern`` (RE2 syntax) is found in a string, remembering
    the answers for up to :data:`REGEX_MEMO` distinct strings. ValueError with RE2's reason
    for a pattern it refuses or one longer than :data:`MAX_PATTERN`.

    >>> compile_regex("^ng")("nginx")
    True
    """
    if len(pattern) > MAX_PATTERN:
        raise ValueError(f"longer than {MAX_PATTERN} characters")
    try:
        search = re2.compile(pattern, _RE2_OPTIONS).search
    except re2.error as e:
        reason = e.args[0] if e.args else "refused"
        raise ValueError(reason.decode("utf-8", "replace") if isinstance(reason, bytes) else reason) from None
    except UnicodeEncodeError:
        raise ValueError("not valid Unicode (a lone surrogate)") from None
    memo: dict[str, bool] = {}

    def matches(text: str) -> bool:
        hit = memo.get(text)
        if hit is None:
            if len(memo) >= REGEX_MEMO:
                memo.clear()
            try:
                hit = search(text) is not None
            except UnicodeEncodeError:  # a lone surrogate (from JSON): match the rest of the text
                hit = search(text.encode("utf-8", "replace")) is not None
            memo[text] = hit
        return hit

    return matches


# -- text form: tokens --------------------------------------------------------

_KEYWORDS = frozenset(("and", "or", "not", "in"))
_WORD = re.compile(r"""[^\s()\[\],"=!<>~'&|{};`\\]+""")
_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"', re.S)
_ESCAPE = re.compile(r"\\(.)", re.S)
_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t", "r": "\r"}
_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
_FIELD_NAME = re.compile(r"[A-Za-z_][\w.]*")
_HINTS = {
    "'": "strings take double quotes",
    "&": "use 'and'",
    "|": "use 'or'",
    "=": "use '==' to compare",
    "!": "use '!=' to compare or 'not' to negate",
}


class _Token(NamedTuple):
    kind: str  # "op", "word", "string", "end", or the punctuation itself: ( ) [ ] ,
    text: str
    value: str
    col: int  # 1-based


def _syntax(where: str, col: int, message: str) -> InputError:
    return InputError(where, f"column {col}: {message}")


def _tokenize(text: str, where: str) -> list[_Token]:
    tokens = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
            continue
        col = i + 1
        if c in "()[],":
            tokens.append(_Token(c, c, c, col))
            i += 1
        elif text.startswith(("==", "!=", "<=", ">="), i):
            tokens.append(_Token("op", text[i : i + 2], text[i : i + 2], col))
            i += 2
        elif c in "<>~":
            tokens.append(_Token("op", c, c, col))
            i += 1
        elif c == '"':
            m = _STRING.match(text, i)
            if m is None:
                raise _syntax(where, col, "unterminated string")
            value = _ESCAPE.sub(lambda e: _ESCAPES.get(e[1], e[0]), m[1])
            tokens.append(_Token("string", m[0], value, col))
            i = m.end()
        elif m := _WORD.match(text, i):
            tokens.append(_Token("word", m[0], m[0], col))
            i = m.end()
        else:
            hint = _HINTS.get(c)
            raise _syntax(where, col, f"unexpected {c!r}" + (f"; {hint}" if hint else ""))
    tokens.append(_Token("end", "", "", n + 1))
    return tokens


# -- text form: recursive descent ------------------------------------------------


class _Parser:
    """expr := or; or := and ("or" and)*; and := not ("and" not)*; not := "not" not | primary;
    primary := "(" ")" | "(" or ")" | FIELD (OP value | "in" "[" values "]")."""

    def __init__(self, text: str, where: str) -> None:
        self.tokens = _tokenize(text, where)
        self.pos = 0
        self.depth = 0
        self.where = where

    def peek(self) -> _Token:
        return self.tokens[self.pos]

    def take(self) -> _Token:
        tok = self.tokens[self.pos]
        if tok.kind != "end":
            self.pos += 1
        return tok

    def is_keyword(self, word: str) -> bool:
        tok = self.tokens[self.pos]
        return tok.kind == "word" and tok.text == word

    def expected(self, what: str, tok: _Token | None = None) -> InputError:
        tok = tok or self.peek()
        if tok.kind == "end":
            found = "end of input"
        else:
            found = tok.text if len(tok.text) <= 40 else tok.text[:37] + "..."
            found = repr(found) if tok.kind != "string" else found
        return _syntax(self.where, tok.col, f"expected {what}, found {found}")

    def parse(self) -> Predicate:
        if self.peek().kind == "end":
            return {}
        node = self.or_expr()
        if self.peek().kind != "end":
            raise self.expected("'and', 'or' or the end")
        return node

    def or_expr(self) -> Predicate:
        parts = [self.and_expr()]
        while self.is_keyword("or"):
            self.take()
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else {"or": parts}

    def and_expr(self) -> Predicate:
        parts = [self.not_expr()]
        while self.is_keyword("and"):
            self.take()
            parts.append(self.not_expr())
        return parts[0] if len(parts) == 1 else {"and": parts}

    def nest(self, tok: _Token) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _syntax(self.where, tok.col, f"nested more than {MAX_DEPTH} levels deep")

    def not_expr(self) -> Predicate:
        if not self.is_keyword("not"):
            return self.primary()
        self.nest(self.take())
        node = {"not": self.not_expr()}
        self.depth -= 1
        return node

    def primary(self) -> Predicate:
        tok = self.peek()
        if tok.kind == "(":
            self.nest(self.take())
            if self.peek().kind == ")":
                node = {}
            else:
                node = self.or_expr()
                if self.peek().kind != ")":
                    raise self.expected("'and', 'or' or ')'")
            self.take()
            self.depth -= 1
            return node
        if tok.kind == "word" and tok.text not in _KEYWORDS and _FIELD_NAME.fullmatch(tok.text):
            self.take()
            return self.comparison(tok.text)
        raise self.expected("a field name, 'not' or '('")

    def comparison(self, name: str) -> Predicate:
        tok = self.take()
        if tok.kind == "op":
            op = "re" if tok.text == "~" else _OP_OF_SYMBOL[tok.text]
            return {op: [name, self.value()]}
        if tok.kind == "word" and tok.text == "in":
            bracket = self.take()
            if bracket.kind != "[":
                raise self.expected("'['", bracket)
            values = []
            if self.peek().kind == "]":
                self.take()
                return {"in": [name, values]}
            while True:
                values.append(self.value())
                sep = self.take()
                if sep.kind == "]":
                    return {"in": [name, values]}
                if sep.kind != ",":
                    raise self.expected("',' or ']'", sep)
        raise self.expected("an operator (==, !=, <, <=, >, >=, in, ~)", tok)

    def value(self) -> str | int | float:
        tok = self.take()
        if tok.kind == "string":
            return tok.value
        if tok.kind == "word" and tok.text not in _KEYWORDS:
            if not _NUMBER.fullmatch(tok.text):
                return tok.text
            if any(c in tok.text for c in ".eE"):
                return float(tok.text)
            try:
                return int(tok.text)
            except ValueError:  # more digits than int() accepts from text
                raise _syntax(self.where, tok.col, "number too long") from None
        raise self.expected("a value (a quoted string, a number or a word)", tok)


_OP_OF_SYMBOL = {symbol: op for op, symbol in _SYMBOLS.items()}


def _parse_text(text: str, where: str) -> Predicate:
    return _Parser(text, where).parse()


def parse_text(text: str) -> Predicate:
    """Parse the text form into the (unvalidated) JSON form; InputError(field="predicate") on a
    syntax error, with the position. Quantities with units stay strings such as ``"10ms"`` until
    validated."""
    return _parse_text(text, "predicate")


# -- text form: printing ---------------------------------------------------------------

_OR, _AND, _ATOM = 0, 1, 2  # binding strength of what _text returns


def _quote(s: str) -> str:
    s = s.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + s.replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r") + '"'


def _format_value(value: object) -> str:
    if isinstance(value, str):
        return _quote(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"no text form for the value {value!r}")
    return repr(value)  # repr is exact for floats and parses back as the same number


def _text(node: Predicate) -> tuple[str, int]:
    if not node:
        return "()", _ATOM
    ((op, arg),) = node.items()
    if op in ("and", "or"):
        if len(arg) == 1:  # validate() collapses these; print the operand alone
            return _text(arg[0])
        strength = _AND if op == "and" else _OR
        parts = []
        for child in arg:
            text, level = _text(child)
            # Same-kind children keep their parentheses so the tree parses back unchanged.
            parts.append(f"({text})" if level <= strength else text)
        return f" {op} ".join(parts), strength
    if op == "not":
        text, level = _text(arg)
        return (f"not ({text})" if level < _ATOM else f"not {text}"), _ATOM
    name, value = arg
    if op == "in":
        return f"{name} in [{', '.join(_format_value(v) for v in value)}]", _ATOM
    if op == "re":
        return f"{name} ~ {_format_value(value)}", _ATOM
    if op in _SYMBOLS:
        return f"{name} {_SYMBOLS[op]} {_format_value(value)}", _ATOM
    raise ValueError(f"unknown operator {op!r}")


def to_text(pred: Predicate) -> str:
    """The text form of a JSON predicate; ``parse_text(to_text(p))`` validates to the same tree."""
    if not pred:
        return ""
    return _text(pred)[0]


# -- validation ----------------------------------------------------------------------


def _show(value: object) -> str:
    """A short description of a bad value, in JSON words since most input is JSON."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _tidy(number: float) -> int | float:
    """Integral floats as int (``10ms`` in microseconds is 10000, not 10000.0)."""
    if isinstance(number, float) and number.is_integer() and abs(number) < 2**53:
        return int(number)
    return number


def _discrete(value: object) -> str:
    """The string a discrete field compares with: ``42`` and ``42.0`` are ``"42"``."""
    if isinstance(value, str):
        return value
    return repr(_tidy(value)) if isinstance(value, float) else str(value)


def _value(value: object, f: Field, op: str, where: str) -> str | int | float:
    """One comparison value, normalised for field ``f``."""
    numeric = f.kind != DISCRETE
    if not (isinstance(value, str) or _is_number(value)):
        wanted = "a number or a quantity such as '10ms'" if numeric else "a string or a number"
        raise InputError(where, f"field {f.name!r}: {op} needs {wanted}, got {_show(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise InputError(where, f"field {f.name!r}: {op} needs a finite number, got {value!r}")
    if not numeric:
        return _discrete(value)
    if isinstance(value, str):
        try:
            number = parse_quantity(value, f.type, where)
        except InputError as e:
            raise InputError(where, f"field {f.name!r}: {e.message}") from None
        if not math.isfinite(number):
            raise InputError(where, f"field {f.name!r}: {value!r} is not a finite number")
        return _tidy(number)
    return _tidy(value)


def _pair(op: str, arg: object, where: str) -> tuple[str, object]:
    what = {"in": "[field, [value, ...]]", "re": "[field, regex]"}.get(op, "[field, value]")
    if not isinstance(arg, list | tuple) or len(arg) != 2:
        raise InputError(where, f"{op} takes {what}, got {_show(arg)}")
    name, value = arg
    if not isinstance(name, str):
        raise InputError(where, f"{op} takes {what}; the field name must be a string, got {_show(name)}")
    return name, value


class _Size:
    """What a predicate being checked has used of :data:`MAX_NODES` and :data:`MAX_REGEXES`."""

    __slots__ = ("nodes", "regexes")

    def __init__(self) -> None:
        self.nodes = self.regexes = 0

    def count(self, op: str, where: str) -> None:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise InputError(where, f"more than {MAX_NODES} operators (comparisons, and, or, not); "
                             "use 'in [...]' for a list of values")
        if op == "re":
            self.regexes += 1
            if self.regexes > MAX_REGEXES:
                raise InputError(where, f"more than {MAX_REGEXES} regexes (~); combine them with '|'")


def _check(node: object, metric: Metric, where: str, depth: int, size: _Size) -> Predicate:
    if depth > MAX_DEPTH:
        raise InputError(where, f"predicate nested more than {MAX_DEPTH} levels deep")
    if not isinstance(node, dict):
        raise InputError(
            where, f'a predicate is an object such as {{"eq": [field, value]}}, got {_show(node)}'
        )
    if not node:
        return {}
    if len(node) != 1:
        keys = ", ".join(repr(k) for k in node)
        raise InputError(where, f"a predicate node has exactly one operator, got {keys}")
    ((op, arg),) = node.items()
    size.count(op, where)
    if op in ("and", "or"):
        if not isinstance(arg, list | tuple) or not arg:
            raise InputError(where, f"{op} takes a non-empty list of predicates, got {_show(arg)}")
        parts = [_check(p, metric, where, depth + 1, size) for p in arg]
        # One operand is that operand; the text form has no way to say it otherwise.
        return parts[0] if len(parts) == 1 else {op: parts}
    if op == "not":
        return {"not": _check(arg, metric, where, depth + 1, size)}
    if op not in _OPERATORS:
        raise InputError(where, f"unknown operator {_show(op)} (operators: {', '.join(_OPERATORS)})")
    name, value = _pair(op, arg, where)
    f = metric.field(name, where)
    if op in _ORDER and f.kind == DISCRETE:
        raise InputError(where, f"field {name!r} is discrete; {op} ({_SYMBOLS[op]}) needs a numeric field")
    if op == "in":
        if not isinstance(value, list | tuple):
            raise InputError(where, f"field {name!r}: in takes a list of values, got {_show(value)}")
        return {"in": [name, [_value(v, f, op, where) for v in value]]}
    if op == "re":
        if f.kind != DISCRETE:
            raise InputError(where, f"field {name!r} is numeric; re (~) needs a discrete field")
        if not isinstance(value, str):
            raise InputError(where, f"field {name!r}: re needs a regex string, got {_show(value)}")
        try:
            compile_regex(value)
        except ValueError as e:
            raise InputError(where, f"field {name!r}: bad regex {_show(value)} (RE2 syntax): {e}") from None
        return {"re": [name, value]}
    return {op: [name, _value(value, f, op, where)]}


def validate(pred: object, metric: Metric, field: str = "predicate") -> Predicate:
    """Check a JSON predicate against the metric and return it normalised: discrete values as str,
    numeric values as numbers in the field's unit (quantities such as ``"10ms"`` converted).
    InputError naming ``field`` (the request field) with a message naming the metric field, for:
    unknown operator, unknown field, order comparison on a discrete field, wrong value type,
    bad regex (RE2 syntax), wrong arity, more than :data:`MAX_NODES` operators or
    :data:`MAX_REGEXES` regexes."""
    return _check(pred, metric, field, 0, _Size())


def parse(pred: object, metric: Metric, field: str = "predicate") -> Predicate:
    """Accept either form (a str is the text form, a dict the JSON form; None/"" is ``{}``)
    and return the validated JSON form.

    A str that starts with ``{`` is read as JSON (the text form never does), which suits
    predicates passed as query parameters."""
    if pred is None:
        return {}
    if isinstance(pred, str):
        if pred.lstrip().startswith("{"):
            try:
                pred = json.loads(pred)
            except (ValueError, RecursionError) as e:
                raise InputError(field, f"not valid JSON: {e}") from None
        else:
            pred = _parse_text(pred, field)
    return validate(pred, metric, field)


def fields_of(pred: Predicate) -> set[str]:
    """The field names a predicate mentions."""
    names: set[str] = set()
    stack = [pred]
    while stack:
        node = stack.pop()
        if not node:
            continue
        ((op, arg),) = node.items()
        if op in ("and", "or"):
            stack.extend(arg)
        elif op == "not":
            stack.append(arg)
        else:
            names.add(arg[0])
    return names


# -- compilation ---------------------------------------------------------------------


class _Compiler:
    """Turns a validated predicate into the source of one Python expression over ``row``.

    Values never enter the source: each is bound to a generated name (``_k0``, ``_k1``...)
    in the namespace the expression is evaluated in, so no value can inject code. Parts
    that depend only on ``constants`` are evaluated here and come back as True/False."""

    def __init__(self, columns: Sequence[str], constants: Mapping[str, Any]) -> None:
        self.index = {name: i for i, name in enumerate(columns)}
        self.constants = constants
        self.namespace: dict[str, Any] = {"__builtins__": {}}

    def bind(self, value: object) -> str:
        name = f"_k{len(self.namespace) - 1}"
        self.namespace[name] = value
        return name

    def expr(self, node: Predicate) -> str | bool:
        if not node:
            return True
        ((op, arg),) = node.items()
        if op in ("and", "or"):
            return self.junction(op, arg)
        if op == "not":
            inner = self.expr(arg)
            return (not inner) if isinstance(inner, bool) else f"(not {inner})"
        name, value = arg
        if name in self.constants:
            return self.fold(op, value, self.constants[name])
        column = f"row[{self.index[name]}]"
        if op == "in":
            return f"({column} in {self.bind(frozenset(value))})"
        if op == "re":
            return f"{self.bind(compile_regex(value))}({column})"
        return f"({column} {_SYMBOLS[op]} {self.bind(value)})"

    def junction(self, op: str, operands: list) -> str | bool:
        # ``and``: a False operand decides, True operands drop out; ``or`` the other way round.
        decisive = op == "or"
        parts = []
        for child in operands:
            part = self.expr(child)
            if part is decisive:
                return decisive
            if not isinstance(part, bool):
                parts.append(part)
        if not parts:
            return not decisive
        return parts[0] if len(parts) == 1 else "(" + f" {op} ".join(parts) + ")"

    @staticmethod
    def fold(op: str, value: object, constant: object) -> bool:
        if op == "re" or isinstance(value, str):
            constant = _discrete(constant)  # rows carry str for discrete fields; so do constants
        if op == "in":
            if value and isinstance(value[0], str):
                constant = _discrete(constant)
            return constant in value
        if op == "re":
            return compile_regex(value)(constant)
        return bool(_COMPARE[op](constant, value))


def compile_predicate(
    pred: Predicate, columns: Sequence[str], constants: Mapping[str, Any] | None = None
) -> Callable[[tuple], bool] | bool:
    """Compile a validated predicate once into a function of a row tuple (``columns`` gives the
    position of each field). Fields in ``constants`` (e.g. ``hostname``) are folded at compile
    time; when the whole predicate folds, return ``True`` or ``False`` instead of a function.
    A field in neither ``columns`` nor ``constants`` raises KeyError."""
    compiler = _Compiler(columns, constants or {})
    # Check every field up front: whether a field is missing must not depend on folding.
    for name in fields_of(pred):
        if name not in compiler.constants and name not in compiler.index:
            raise KeyError(name)
    source = compiler.expr(pred)
    if isinstance(source, bool):
        return source
    # One generated lambda beats a tree of closures: 4.8 vs 2.8 M rows/s measured on a
    # 3-clause predicate; the call overhead per node is what a closure tree pays for.
    code = compile(f"lambda row: {source}", "<predicate>", "eval")
    return eval(code, compiler.namespace)


def may_match(pred: Predicate, constants: Mapping[str, Any]) -> bool:
    """Whether a validated predicate can hold on a host with these constant fields (its
    ``hostname`` and labels): False only when the constants alone make it false, e.g.
    ``hostname == "web1" and execname == "nginx"`` on host web2."""
    columns = sorted(fields_of(pred) - set(constants))
    return compile_predicate(pred, columns, constants) is not False
