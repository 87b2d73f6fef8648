"""Instrumentations: active questions (metric + predicate + decomposition + timing).

:func:`validate_spec` turns a request body into a normalised spec (a plain dict)
and is the only place the rules live; the store assigns ``id`` and ``created``
and :class:`Instrumentation` is what everyone else passes around.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

from fleetscope.model import predicate as predicates
from fleetscope.model import values
from fleetscope.model.errors import InputError
from fleetscope.model.metrics import DISCRETE, NUMERIC, Catalog, Metric
from fleetscope.model.tiers import validate_retention
from fleetscope.model.types import parse_duration

DEFAULT_GRANULARITY = 1
DEFAULT_RETENTION = 600
DEFAULT_IDLE_MAX = 3600
MAX_GRANULARITY = 3600
# The real-time window lives in memory: bound it to a day of slots.
MAX_RETENTION = 86400
MAX_IDLE_MAX = 366 * 86400

CREATE_FIELDS = {"module", "stat", "metric", "predicate", "decomposition", "granularity",
                 "retention", "idle_max", "persist", "history"}
UPDATE_FIELDS = ("retention", "idle_max", "persist", "history")


@dataclass(frozen=True)
class Instrumentation:
    """An active question, as stored and as sent to agents and aggregators."""

    id: int
    module: str
    stat: str
    predicate: dict
    decomposition: tuple[str, ...]
    granularity: int
    retention: int
    idle_max: int
    persist: bool
    created: float
    kind: str = "interval"
    shape: str = values.SCALAR
    discrete: str | None = None  # the discrete field of the decomposition
    numeric: str | None = None  # the numeric field of the decomposition
    unit: dict = field(default_factory=dict)  # the unit of the values (Type.to_json())
    # Retention of the history tiers, {tier: seconds}, for the tiers not left to the global setting.
    history: dict = field(default_factory=dict)
    # The tenant that owns it (None: the operators'), and that tenant's scope, which
    # ``predicate`` includes (AND-ed in at creation; shown apart so the tenant sees why).
    tenant: str | None = None
    scope: dict = field(default_factory=dict)
    # Keys kept per breakdown when fewer than the fleet's own (a tenant's quota): the rest is
    # folded into "(other)", exactly, in the window and in every rollup.
    keys: int | None = None
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def metric(self) -> str:
        return f"{self.module}.{self.stat}"

    def keys_kept(self, default: int) -> int:
        """The top keys a breakdown of this instrumentation keeps, where ``default`` is the
        fleet's (values.TOP_K unless configured)."""
        return min(self.keys, default) if self.keys else default

    def to_json(self) -> dict:
        d = asdict(self)
        d.pop("extra")
        d["decomposition"] = list(self.decomposition)
        d["metric"] = self.metric
        d["predicate_text"] = predicates.to_text(self.predicate) if self.predicate else ""
        return d

    @classmethod
    def from_json(cls, obj: Mapping) -> Instrumentation:
        """Rebuild from :meth:`to_json` output (trusted: written by fleetscope itself)."""
        names = cls.__dataclass_fields__.keys() - {"extra"}
        kw = {k: obj[k] for k in names if k in obj}
        kw["decomposition"] = tuple(kw.get("decomposition", ()))
        return cls(**kw)

    def updated(self, changes: Mapping) -> Instrumentation:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d.update(changes)
        return Instrumentation(**d)


def _positive_int(value: object, name: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InputError(name, "must be a whole number of seconds")
    seconds = parse_duration(value, name)
    if not lo <= seconds <= hi:
        raise InputError(name, f"must be between {lo} and {hi} seconds, not {seconds}")
    return seconds


def _bool(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise InputError(name, "must be true or false")
    return value


def resolve_metric(body: Mapping, catalog: Catalog) -> Metric:
    """The metric a create body names, by ``module`` + ``stat`` or by ``metric`` (``module.stat``)."""
    if "metric" in body and "module" not in body:
        name = body["metric"]
        if not isinstance(name, str) or name.count(".") != 1:
            raise InputError("metric", "must be 'module.stat', e.g. 'cpu.usage'")
        module, stat = name.split(".")
    else:
        module, stat = body.get("module"), body.get("stat")
        if not isinstance(module, str) or not module:
            raise InputError("module", "is required (a module name such as 'cpu')")
        if not isinstance(stat, str) or not stat:
            raise InputError("stat", "is required (a stat name such as 'usage')")
    return catalog.get(module, stat)


def decomposition_fields(metric: Metric, decomposition: object) -> tuple[str | None, str | None]:
    """Validate a decomposition: at most one discrete and one numeric field of ``metric``."""
    if decomposition is None:
        return None, None
    if not isinstance(decomposition, list | tuple) or not all(isinstance(x, str) for x in decomposition):
        raise InputError("decomposition", "must be a list of field names")
    discrete = numeric = None
    for name in decomposition:
        f = metric.field(name, "decomposition")
        if f.kind == DISCRETE:
            if discrete is not None:
                raise InputError("decomposition", f"at most one discrete field ({discrete!r}, {name!r})")
            discrete = name
        elif f.kind == NUMERIC:
            if numeric is not None:
                raise InputError("decomposition", f"at most one numeric field ({numeric!r}, {name!r})")
            numeric = name
    return discrete, numeric


def validate_spec(body: object, catalog: Catalog) -> dict:
    """Validate a create request and return the normalised spec (everything but id and created)."""
    if not isinstance(body, Mapping):
        raise InputError(None, "the body must be a JSON object", status=400)
    unknown = set(body) - CREATE_FIELDS
    if unknown:
        raise InputError(sorted(unknown)[0], "unknown field")
    metric = resolve_metric(body, catalog)
    discrete, numeric = decomposition_fields(metric, body.get("decomposition"))
    granularity = _positive_int(body.get("granularity", DEFAULT_GRANULARITY), "granularity",
                                1, MAX_GRANULARITY)
    retention = _positive_int(body.get("retention", DEFAULT_RETENTION), "retention",
                              granularity, MAX_RETENTION)
    idle_max = _positive_int(body.get("idle_max", DEFAULT_IDLE_MAX), "idle_max", 0, MAX_IDLE_MAX)
    return {
        "module": metric.module,
        "stat": metric.stat,
        "predicate": predicates.parse(body.get("predicate"), metric),
        "decomposition": tuple(x for x in (discrete, numeric) if x),
        "granularity": granularity,
        "retention": retention,
        "idle_max": idle_max,
        "persist": _bool(body.get("persist", False), "persist"),
        "kind": metric.kind,
        "shape": values.shape_for(discrete is not None, numeric is not None),
        "discrete": discrete,
        "numeric": numeric,
        "unit": metric.unit.to_json(),
        "history": validate_retention(body.get("history", {})),
    }


def validate_update(body: object, current: Instrumentation) -> dict:
    """Validate a change: only retention, idle_max and persist may change after creation."""
    if not isinstance(body, Mapping):
        raise InputError(None, "the body must be a JSON object", status=400)
    for name in body:
        if name not in UPDATE_FIELDS:
            raise InputError(name, "cannot be changed after creation "
                             "(only retention, idle_max, persist, history)")
    changes: dict = {}
    if "retention" in body:
        changes["retention"] = _positive_int(body["retention"], "retention",
                                             current.granularity, MAX_RETENTION)
    if "idle_max" in body:
        changes["idle_max"] = _positive_int(body["idle_max"], "idle_max", 0, MAX_IDLE_MAX)
    if "persist" in body:
        changes["persist"] = _bool(body["persist"], "persist")
    if "history" in body:
        changes["history"] = validate_retention(body["history"])
    return changes
