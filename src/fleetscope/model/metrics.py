"""Metrics and their fields.

A metric is ``module.stat`` with a label, a unit, a kind (``interval``: activity
during a tick, summed across sources and time; ``point``: a level sampled at a
tick, summed across sources and averaged across time) and fields. Every metric
has the discrete field ``hostname``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import NamedTuple

from fleetscope.model.errors import InputError, NotFound
from fleetscope.model.types import NUMBER, Type

DISCRETE = "discrete"
NUMERIC = "numeric"
INTERVAL = "interval"
POINT = "point"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


class Field(NamedTuple):
    """A named attribute of what a metric measures."""

    name: str
    kind: str  # DISCRETE or NUMERIC
    label: str
    type: Type = NUMBER

    def to_json(self) -> dict:
        return {"name": self.name, "kind": self.kind, "label": self.label, "type": self.type.to_json()}

    @classmethod
    def from_json(cls, obj: object, where: str = "field") -> Field:
        if not isinstance(obj, dict) or not _NAME.fullmatch(str(obj.get("name", ""))) \
                or obj.get("kind") not in (DISCRETE, NUMERIC):
            raise InputError(where, "must be {'name', 'kind': discrete|numeric, 'label', 'type'}")
        return cls(obj["name"], obj["kind"], str(obj.get("label", obj["name"])),
                   Type.from_json(obj.get("type", {"base": "number"}), where))


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

    @classmethod
    def from_json(cls, obj: object, where: str = "metric") -> Metric:
        """Validate and build a metric sent by an agent (its catalogue)."""
        names = ("module", "stat")
        if not isinstance(obj, dict) or not all(_NAME.fullmatch(str(obj.get(k, ""))) for k in names):
            raise InputError(where, "must have a 'module' and a 'stat' made of letters, digits and _")
        if obj.get("kind") not in (INTERVAL, POINT) or not isinstance(obj.get("fields"), list):
            raise InputError(where, "must have a kind (interval|point) and a list of fields")
        fields = tuple(Field.from_json(f, where) for f in obj["fields"])
        unit = Type.from_json(obj.get("unit"), where)
        return cls(obj["module"], obj["stat"], str(obj.get("label", "")), unit, obj["kind"], fields)

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


def with_labels(m: Metric, labels: Iterable[str]) -> Metric:
    """``m`` with a discrete field per host label (``--label role=web`` makes ``role`` a field)."""
    names = {f.name for f in m.fields}
    extra = tuple(Field(k, DISCRETE, f"host label {k}") for k in sorted(labels) if k not in names)
    return m._replace(fields=m.fields + extra) if extra else m


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
        """Add a metric; one already known gains the fields it lacked (hosts with different
        labels report the same metric with different label fields)."""
        known = self._metrics.get(m.name)
        if known is not None and known != m:
            names = {f.name for f in known.fields}
            m = known._replace(fields=known.fields + tuple(f for f in m.fields if f.name not in names))
        self._metrics[m.name] = m

    def replace(self, m: Metric) -> None:
        """Set ``m`` as it is (a definition that may have narrowed: an import deleted)."""
        self._metrics[m.name] = m

    def discard(self, name: str) -> None:
        """Forget the metric called ``name``, if known."""
        self._metrics.pop(name, None)

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
