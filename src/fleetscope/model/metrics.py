"""Metrics and their fields.

A metric is ``module.stat`` with a label, a unit, a kind (``interval``: activity
during a tick, summed across sources and time; ``point``: a level sampled at a
tick, summed across sources and averaged across time) and fields. Every metric
has the discrete field ``hostname``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from fleetscope.model.errors import InputError, NotFound
from fleetscope.model.types import NUMBER, Type

DISCRETE = "discrete"
NUMERIC = "numeric"
INTERVAL = "interval"
POINT = "point"


class Field(NamedTuple):
    """A named attribute of what a metric measures."""

    name: str
    kind: str  # DISCRETE or NUMERIC
    label: str
    type: Type = NUMBER

    def to_json(self) -> dict:
        return {"name": self.name, "kind": self.kind, "label": self.label, "type": self.type.to_json()}


HOSTNAME = Field("hostname", DISCRETE, "host name")


class Metric(NamedTuple):
    """A measurable quantity: ``module.stat`` with its unit, kind and fields."""

    module: str
    stat: str
    label: str
    unit: Type
    kind: str  # INTERVAL or POINT
    fields: tuple[Field, ...]

    @property
    def name(self) -> str:
        return f"{self.module}.{self.stat}"

    def field(self, name: str, where: str = "field") -> Field:
        """The field called ``name``; :class:`InputError` naming ``where`` if there is none."""
        for f in self.fields:
            if f.name == name:
                return f
        known = ", ".join(f.name for f in self.fields)
        raise InputError(where, f"{self.name} has no field {name!r} (fields: {known})")

    def to_json(self) -> dict:
        return {
            "module": self.module,
            "stat": self.stat,
            "name": self.name,
            "label": self.label,
            "unit": self.unit.to_json(),
            "kind": self.kind,
            "fields": [f.to_json() for f in self.fields],
        }


def metric(module: str, stat: str, label: str, unit: Type, kind: str, *fields: Field) -> Metric:
    """Build a metric; ``hostname`` is added as its first field."""
    return Metric(module, stat, label, unit, kind, (HOSTNAME, *fields))


class Catalog:
    """The metrics known to a process, by name."""

    def __init__(self, metrics: Iterable[Metric] = ()) -> None:
        self._metrics: dict[str, Metric] = {}
        for m in metrics:
            self.add(m)

    def add(self, m: Metric) -> None:
        self._metrics[m.name] = m

    def get(self, module: str, stat: str) -> Metric:
        name = f"{module}.{stat}"
        found = self._metrics.get(name)
        if found is None:
            raise NotFound("stat", f"unknown metric {name!r}")
        return found

    def __iter__(self):
        return iter(sorted(self._metrics.values(), key=lambda m: m.name))

    def __len__(self) -> int:
        return len(self._metrics)

    def __contains__(self, name: str) -> bool:
        return name in self._metrics
