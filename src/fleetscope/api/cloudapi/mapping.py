"""The original Cloud Analytics metrics and fields, and the fleetscope metrics they map to.

Rules (the README's "Cloud Analytics compatibility" table is this module in prose):

1. A metric the original had and fleetscope can answer is offered under its original
   ``module.stat`` (:data:`MAPPED`), with its original field names where fleetscope has the
   same field under another name (``zonename`` is ``container``, ``cpumode`` is ``mode``,
   ``optype`` is ``direction``). Its other fleetscope fields are offered under their own names.
2. Every other fleetscope metric is offered under its own ``module.stat`` and field names
   (``proc.cpu``, ``container.memory``...), except ``container``, which is ``zonename`` on every
   metric (:data:`EVERYWHERE`): they are new metrics to the original clients, as a new CA
   release's metrics were, and DescribeAnalytics describes them the same way.
3. ``cpu.usage`` was "percent of one CPU" in the original, fleetscope's ``cpu.usage`` is CPU
   seconds: its values are multiplied by 100 / the point's duration (:data:`PERCENT_OF_CPU`).
   No other value is changed.
4. Anything else is refused with the original's error (``InvalidArgument``): unknown metrics
   and fields, predicates with operators the original did not have (``re``, ``in``, ``not``).
5. The fields whose values are IP addresses, which the transformations (``reversedns``,
   ``geolocate``) apply to, are those named in :data:`IP_FIELDS`, on any metric: the original's
   ``raddr`` (remote address) and OpenTelemetry's address attributes as the OTLP source names
   them (``client.address`` becomes ``client_address``). fleetscope's own sources have no such
   field; StatsD tags, OTLP attributes and Prometheus labels of these names are.
"""

from __future__ import annotations

from typing import NamedTuple

from fleetscope.model.metrics import DISCRETE, Catalog, Field, Metric
from fleetscope.model.types import Type

PERCENT_OF_CPU = "percent_of_cpu"  # seconds of CPU per point -> percent of one CPU
EVERYWHERE = {"zonename": "container"}  # original field name -> fleetscope's, on every metric
IP_FIELDS = frozenset({"raddr", "laddr", "client_address", "server_address", "source_address",
                       "destination_address", "network_peer_address", "network_local_address",
                       "net_peer_ip", "net_sock_peer_addr", "net_host_ip"})


class Mapped(NamedTuple):
    """An original metric answered by a fleetscope metric."""

    module: str
    stat: str
    metric: str  # fleetscope's module.stat
    label: str
    renames: dict[str, str]  # original field name -> fleetscope field name
    scale: str | None = None  # how values are converted (PERCENT_OF_CPU), None: as they are

    @property
    def name(self) -> str:
        return f"{self.module}.{self.stat}"


MAPPED = (
    Mapped("cpu", "usage", "cpu.usage", "aggregated CPU usage", {"zonename": "container", "cpumode": "mode"},
           PERCENT_OF_CPU),
    Mapped("disk", "physio_bytes", "disk.bytes", "bytes read and written", {"optype": "direction"}),
    Mapped("disk", "physio_ops", "disk.ops", "I/O operations", {"optype": "direction"}),
    Mapped("nic", "bytes", "net.bytes", "NIC throughput", {}),
    Mapped("nic", "packets", "net.packets", "NIC packets", {}),
    Mapped("vnic", "bytes", "container.net", "VNIC throughput", {"zonename": "container"}),
    Mapped("vnic", "packets", "container.net_packets", "VNIC packets", {"zonename": "container"}),
)
MODULE_LABELS = {"cpu": "CPU", "disk": "Disk", "nic": "Network interfaces",
                 "vnic": "Virtual network interfaces",
                 "memory": "Memory", "container": "Containers", "proc": "Processes", "net": "Network",
                 "vm": "Virtual machines", "fleetscope": "fleetscope itself", "app": "Applications"}
_PERCENT = Type("percent")


class Offered(NamedTuple):
    """One metric as this API offers it: its original (or own) name and fields, over the
    fleetscope metric that answers it."""

    module: str
    stat: str
    label: str
    metric: Metric  # fleetscope's
    fields: dict[str, Field]  # this API's field name -> fleetscope field
    scale: str | None

    @property
    def name(self) -> str:
        return f"{self.module}.{self.stat}"

    def to_fleetscope(self, name: str) -> str | None:
        found = self.fields.get(name)
        return found.name if found else None

    def from_fleetscope(self, name: str) -> str:
        for mine, f in self.fields.items():
            if f.name == name:
                return mine
        return name

    def unit(self) -> Type:
        return _PERCENT if self.scale == PERCENT_OF_CPU else self.metric.unit


def _fields(metric: Metric, renames: dict[str, str]) -> dict[str, Field]:
    back = {v: k for k, v in renames.items()}
    return {back.get(f.name, f.name): f for f in metric.fields}


def offered(catalog: Catalog, metrics: list[Metric] | None = None) -> list[Offered]:
    """Every metric this API offers, from the fleetscope metrics ``metrics`` (default: the whole
    catalogue; a tenant's are fewer): mapped ones first, then the rest under their own names."""
    known = {m.name: m for m in (catalog if metrics is None else metrics)}
    out = [Offered(m.module, m.stat, m.label, known[m.metric], _fields(known[m.metric], m.renames), m.scale)
           for m in MAPPED if m.metric in known]
    taken = {o.name for o in out}
    out += [Offered(m.module, m.stat, m.label, m, _fields(m, EVERYWHERE), None)
            for m in known.values() if m.name not in taken]
    return out


def find(offers: list[Offered], module: str, stat: str) -> Offered | None:
    return next((o for o in offers if o.module == module and o.stat == stat), None)


def for_instrumentation(offers: list[Offered], metric: str) -> Offered | None:
    """How an instrumentation of fleetscope ``metric`` is shown: by its mapped name when the
    original had one, else under its own."""
    return next((o for o in offers if o.metric.name == metric), None)


def type_name(field: Field) -> str:
    """The name of a field's type in DescribeAnalytics' ``types``."""
    if field.kind == DISCRETE:
        return "string"
    return _type_name(field.type)


def _type_name(t: Type) -> str:
    if t.base == "seconds":
        return {0: "time_s", -3: "time_ms", -6: "time_us", -9: "time"}.get(t.power, f"time_1e{t.power}")
    return {"bytes": "size", "percent": "percent"}.get(t.base, "number")


def type_json(t: Type) -> dict:
    """A numeric type as the original described one (``arity``, ``unit``, ``abbr``, ``base``, ``power``)."""
    if t.base == "seconds":
        return {"arity": "numeric", "unit": "seconds", "abbr": "s", "base": 10, "power": t.power}
    if t.base == "bytes":
        return {"arity": "numeric", "unit": "bytes", "abbr": "B", "base": 2}
    if t.base == "percent":
        return {"arity": "numeric", "unit": "percent", "abbr": "%"}
    return {"arity": "numeric", "unit": ""}


def describe(offers: list[Offered], transformations: dict) -> dict:
    """DescribeAnalytics' answer: modules, fields, types, metrics, and ``transformations`` (as
    :meth:`.transforms.Transforms.describe` gives them)."""
    modules: dict[str, dict] = {}
    fields: dict[str, dict] = {}
    types: dict[str, dict] = {"string": {"arity": "discrete", "unit": ""}}
    metrics = []
    for o in offers:
        modules.setdefault(o.module, {"label": MODULE_LABELS.get(o.module, o.module)})
        for name, f in o.fields.items():
            tname = type_name(f)
            if tname != "string":
                types.setdefault(tname, type_json(f.type))
            fields.setdefault(name, {"label": f.label, "type": tname})
        entry = {"module": o.module, "stat": o.stat, "label": o.label, "interval": o.metric.kind,
                 "fields": list(o.fields)}
        unit = o.unit()
        if unit.base == "number":
            entry["unit"] = "count"
        else:
            entry["type"] = _type_name(unit)
            types.setdefault(entry["type"], type_json(unit))
        metrics.append(entry)
    return {"modules": modules, "fields": fields, "types": types, "metrics": metrics,
            "transformations": transformations}
