"""The Prometheus text exposition format (0.0.4) and OpenMetrics text, parsed: plain
functions, no I/O.

:func:`parse` returns the families of a scrape: their type (from ``# TYPE``;
``untyped``/``unknown`` when absent) and samples ``(name, labels, value)``.
Timestamps, exemplars and ``# HELP``/``# UNIT`` lines are read past. A line that
is not a sample is counted in :attr:`Scrape.bad`, never raised; nothing else
escapes :func:`parse` for any input.
"""

from __future__ import annotations

import math
import re
from typing import NamedTuple

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(,)?')
_SUFFIXES = ("_bucket", "_count", "_sum", "_total", "_created", "_gcount", "_gsum", "_info")
_ESCAPES = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}
_ESCAPED = re.compile(r'\\[\\"n]')
MAX_LINE = 65536


class Sample(NamedTuple):
    name: str
    labels: tuple[tuple[str, str], ...]  # sorted
    value: float


class Family(NamedTuple):
    name: str
    type: str  # counter, gauge, histogram, summary, gaugehistogram, untyped...
    samples: list[Sample]


class Scrape(NamedTuple):
    families: dict[str, Family]
    bad: int  # lines that were not samples, comments or blank


def _value(text: str) -> float:
    if text in ("+Inf", "Inf", "inf", "+inf"):
        return math.inf
    if text in ("-Inf", "-inf"):
        return -math.inf
    return float(text)  # "NaN" too; ValueError otherwise


def parse_sample(line: str) -> Sample:
    """One sample line; ValueError if it is not one."""
    m = _NAME.match(line)
    if not m:
        raise ValueError("no metric name")
    name = m.group(0)
    pos = m.end()
    labels: dict[str, str] = {}
    if pos < len(line) and line[pos] == "{":
        pos += 1
        while True:
            if line.startswith("}", pos):
                pos += 1
                break
            lm = _LABEL.match(line, pos)
            if not lm:
                raise ValueError("bad label")
            labels[lm.group(1)] = _ESCAPED.sub(lambda e: _ESCAPES[e.group(0)], lm.group(2))
            pos = lm.end()
            if not lm.group(3):
                if not line.startswith("}", pos):
                    raise ValueError("unclosed labels")
                pos += 1
                break
    rest = line[pos:].split("#", 1)[0].split()  # exemplars after " # "
    if not 1 <= len(rest) <= 2:
        raise ValueError("no value")
    return Sample(name, tuple(sorted(labels.items())), _value(rest[0]))


def _family_of(name: str, types: dict[str, str]) -> str:
    if name in types:
        return name
    for suffix in _SUFFIXES:
        if name.endswith(suffix) and name[: -len(suffix)] in types:
            return name[: -len(suffix)]
    return name


def parse(text: str) -> Scrape:
    """The families in an exposition."""
    types: dict[str, str] = {}
    families: dict[str, Family] = {}
    bad = 0
    for raw in text.split("\n"):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 4 and parts[1] == "TYPE" and _NAME.fullmatch(parts[2]):
                types[parts[2]] = parts[3].strip()
            continue
        if len(line) > MAX_LINE:
            bad += 1
            continue
        try:
            sample = parse_sample(line)
        except ValueError:
            bad += 1
            continue
        fam = _family_of(sample.name, types)
        family = families.get(fam)
        if family is None:
            family = families[fam] = Family(fam, types.get(fam, "untyped"), [])
        family.samples.append(sample)
    return Scrape(families, bad)
