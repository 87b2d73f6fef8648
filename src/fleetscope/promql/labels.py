"""Label sets as sorted tuples of ``(name, value)`` pairs: hashable (grouping and matching use
them as keys) and ordered as Prometheus orders series (``labels.Compare``). A label with an
empty value does not exist, as in Prometheus."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

Labels = tuple[tuple[str, str], ...]

NAME = "__name__"
BUCKET = "le"
EMPTY: Labels = ()

_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")  # model.LabelNameRE


def from_mapping(labels: Mapping[str, str]) -> Labels:
    return tuple(sorted((k, v) for k, v in labels.items() if v != ""))


def to_dict(ls: Labels) -> dict[str, str]:
    return dict(ls)


def get(ls: Labels, name: str) -> str:
    for k, v in ls:
        if k == name:
            return v
    return ""


def without_name(ls: Labels) -> Labels:
    return tuple(p for p in ls if p[0] != NAME)


def keep(ls: Labels, names: frozenset[str]) -> Labels:
    return tuple(p for p in ls if p[0] in names)


def drop(ls: Labels, names: frozenset[str]) -> Labels:
    return tuple(p for p in ls if p[0] not in names)


def with_label(ls: Labels, name: str, value: str) -> Labels:
    """``ls`` with ``name`` set to ``value`` (removed when ``value`` is empty)."""
    rest = [p for p in ls if p[0] != name]
    if value != "":
        rest.append((name, value))
        rest.sort()
    return tuple(rest)


def merged(ls: Labels, extra: Iterable[tuple[str, str]]) -> Labels:
    out = dict(ls)
    for k, v in extra:
        if v == "":
            out.pop(k, None)
        else:
            out[k] = v
    return tuple(sorted(out.items()))


def valid_name(name: str) -> bool:
    return _LABEL_NAME.match(name) is not None


def _go_quote(value: str) -> str:
    # strconv.Quote for the printable strings label values are.
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{escaped}"'


def text(ls: Labels) -> str:
    """Prometheus' ``Labels.String()``: ``{a="1", b="2"}``."""
    return "{" + ", ".join(f"{k}={_go_quote(v)}" for k, v in ls) + "}"
