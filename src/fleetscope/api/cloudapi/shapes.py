"""Instrumentations, predicates and values in the original API's JSON shapes.

An instrumentation is shown with the original's names (``retention-time``, ``value-arity``,
``crtime`` in milliseconds, ``id`` as a string, ``uris``); its ``predicate`` is the one the
account wrote: the tenant's scope, which fleetscope AND-ed in, is not shown (the original did
not show the customer filter either), but it applies to every value.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from fleetscope.api.cloudapi.errors import MISSING_PARAMETER, CloudApiError, invalid
from fleetscope.api.cloudapi.mapping import PERCENT_OF_CPU, Offered
from fleetscope.model import values
from fleetscope.model.histogram import Histogram
from fleetscope.model.instrumentation import Instrumentation
from fleetscope.model.series import DataPoint

ORIGINAL_OPERATORS = frozenset({"eq", "ne", "lt", "le", "gt", "ge", "and", "or"})
LEAF_OPERATORS = ORIGINAL_OPERATORS - {"and", "or"}
CREATE_FIELDS = {"module", "stat", "predicate", "decomposition", "granularity", "retention-time",
                 "persist-data", "idle-max", "clone"}
_ARITY = {values.SCALAR: "scalar", values.DISCRETE: "discrete-decomposition",
          values.HISTOGRAM: "numeric-decomposition", values.DISCRETE_HISTOGRAM: "numeric-decomposition"}
_NUMBERS = {"granularity": "granularity", "retention-time": "retention", "idle-max": "idle_max"}


def predicate_in(pred: object, offer: Offered) -> dict:
    """An original predicate (JSON, or JSON text as node-smartdc's ``-p`` sends it) over this
    API's field names, as a fleetscope predicate; :class:`CloudApiError` naming what is wrong."""
    if isinstance(pred, str):
        if not pred.strip():
            return {}
        try:
            pred = json.loads(pred)
        except ValueError:
            raise invalid(f"predicate: not JSON: {pred[:80]!r}") from None
    if pred is None:
        return {}
    return _rename_in(pred, offer, "predicate")


def _rename_in(pred: object, offer: Offered, where: str) -> dict:
    if not isinstance(pred, dict) or len(pred) > 1:
        raise invalid(f"{where}: must be an object with one operator, "
                      'e.g. {"eq": ["zonename", "web"]}')
    if not pred:
        return {}
    (op, args), = pred.items()
    if op not in ORIGINAL_OPERATORS:
        raise invalid(f"{where}: unknown operator {op!r} "
                      f"(the operators are {', '.join(sorted(ORIGINAL_OPERATORS))})")
    if op in ("and", "or"):
        if not isinstance(args, list) or not args:
            raise invalid(f"{where}.{op}: must be a non-empty array of predicates")
        return {op: [_rename_in(p, offer, f"{where}.{op}[{i}]") for i, p in enumerate(args)]}
    if not isinstance(args, list) or len(args) != 2 or not isinstance(args[0], str):
        raise invalid(f"{where}.{op}: must be [field, value]")
    field = offer.to_fleetscope(args[0])
    if field is None:
        raise invalid(f"{where}.{op}: {offer.name} has no field {args[0]!r} "
                      f"(fields: {', '.join(offer.fields)})")
    return {op: [field, args[1]]}


def predicate_out(pred: dict, offer: Offered | None) -> dict:
    """A fleetscope predicate with this API's field names (operators as they are)."""
    if not pred or offer is None:
        return pred
    (op, args), = pred.items()
    if op in ("and", "or"):
        return {op: [predicate_out(p, offer) for p in args]}
    if op == "not":
        return {op: predicate_out(args, offer)}
    if isinstance(args, list) and args and isinstance(args[0], str):
        return {op: [offer.from_fleetscope(args[0]), *args[1:]]}
    return pred


def own_predicate(inst: Instrumentation) -> dict:
    """The predicate the creator wrote, without the tenant's scope AND-ed in (access.with_scope)."""
    if not inst.scope:
        return inst.predicate
    if inst.predicate == inst.scope:
        return {}
    parts = inst.predicate.get("and")
    if isinstance(parts, list) and len(parts) == 2 and parts[0] == inst.scope:
        return parts[1]
    return inst.predicate


def _integer(name: str, value: object) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise invalid(f"{name}: must be a whole number of seconds")


def _boolean(name: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return value == "true"
    raise invalid(f"{name}: must be true or false")


def decomposition_in(value: object, offer: Offered) -> list[str]:
    """``["zonename"]``, or the text ``"zonename"`` / ``"zonename,latency"`` node-smartdc's
    ``-n`` sends, as fleetscope field names."""
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise invalid("decomposition: must be an array of field names")
    out = []
    for name in value:
        field = offer.to_fleetscope(name)
        if field is None:
            raise invalid(f"decomposition: {offer.name} has no field {name!r} "
                          f"(fields: {', '.join(offer.fields)})")
        out.append(field)
    return out


def create_spec(body: Mapping, offer: Offered, base: Mapping | None = None) -> dict:
    """A fleetscope create body from the original's (``base``: a cloned instrumentation's
    properties in the original's names, which ``body`` overrides)."""
    merged = {**(base or {}), **{k: v for k, v in body.items() if k != "clone"}}
    spec: dict = {"metric": offer.metric.name,
                  "predicate": predicate_in(merged.get("predicate"), offer),
                  "decomposition": decomposition_in(merged.get("decomposition", []), offer)}
    for name, mine in _NUMBERS.items():
        if name in merged:
            spec[mine] = _integer(name, merged[name])
    if "persist-data" in merged:
        spec["persist"] = _boolean("persist-data", merged["persist-data"])
    return spec


def check_create_body(body: object) -> dict:
    if not isinstance(body, dict):
        raise invalid("the body must be a JSON object (or form fields)")
    unknown = sorted(set(body) - CREATE_FIELDS)
    if unknown:
        raise invalid(f"{unknown[0]}: not a property of an instrumentation (they are "
                      f"{', '.join(sorted(CREATE_FIELDS))})")
    if "clone" not in body:
        for needed in ("module", "stat"):
            if not body.get(needed):
                raise CloudApiError(409, MISSING_PARAMETER, f"{needed} is required")
    return body


MODIFY_FIELDS = ("retention-time", "idle-max", "persist-data")


def modify_spec(body: object) -> dict:
    """A fleetscope update from the original's "Modify Instrumentation Properties" body: only
    ``retention-time``, ``idle-max`` and ``persist-data`` may change."""
    if not isinstance(body, dict):
        raise invalid("the body must be a JSON object (or form fields)")
    unknown = sorted(set(body) - set(MODIFY_FIELDS))
    if unknown:
        raise invalid(f"{unknown[0]}: cannot be changed (only {', '.join(MODIFY_FIELDS)} can)")
    if not body:
        raise CloudApiError(409, MISSING_PARAMETER, f"one of {', '.join(MODIFY_FIELDS)} is required")
    spec: dict = {mine: _integer(name, body[name]) for name, mine in _NUMBERS.items() if name in body}
    if "persist-data" in body:
        spec["persist"] = _boolean("persist-data", body["persist-data"])
    return spec


def instrumentation(inst: Instrumentation, offer: Offered | None, login: str, transformations: dict) -> dict:
    """An instrumentation as the original showed it; ``transformations``: those it supports
    (:meth:`.transforms.Transforms.for_decomposition`)."""
    uri = f"/{login}/analytics/instrumentations/{inst.id}"
    uris = []
    if inst.numeric is not None:
        uris += [{"uri": f"{uri}/value/heatmap/image", "name": "value_heatmap"},
                 {"uri": f"{uri}/value/heatmap/details", "name": "details_heatmap"}]
    uris.append({"uri": f"{uri}/value/raw", "name": "value_raw"})
    module, stat = (offer.module, offer.stat) if offer else (inst.module, inst.stat)
    rename = offer.from_fleetscope if offer else str
    return {
        "module": module,
        "stat": stat,
        "predicate": predicate_out(own_predicate(inst), offer),
        "decomposition": [rename(d) for d in inst.decomposition],
        "value-dimension": 1 + len(inst.decomposition),
        "value-arity": _ARITY[inst.shape],
        "enabled": True,
        "retention-time": inst.retention,
        "idle-max": inst.idle_max,
        "transformations": transformations,
        "granularity": inst.granularity,
        "persist-data": inst.persist,
        "crtime": int(inst.created * 1000),
        "value-scope": inst.kind,
        "id": str(inst.id),
        "uri": uri,
        "uris": uris,
    }


def _distribution(h: Histogram) -> list:
    """A histogram as the original's ``[[[min, max], count], ...]``."""
    return [[[lower, upper], count] for lower, upper, count in h.iter_buckets() if count]


def value(point: DataPoint, inst: Instrumentation, offer: Offered | None) -> object:
    """A point's value in the original shape; a gap is the original's empty value (0, {} or
    []) with ``nsources`` 0 beside it."""
    shape = inst.shape
    v = point.value
    factor = 100.0 / point.duration if offer is not None and offer.scale == PERCENT_OF_CPU else 1.0
    if shape == values.SCALAR:
        return 0 if v is None else v * factor
    if shape == values.DISCRETE:
        return {} if v is None else {k: x * factor for k, x in v.items()}
    if shape == values.HISTOGRAM:
        return [] if v is None else _distribution(v)
    return {} if v is None else {k: _distribution(h) for k, h in v.items()}


def raw_value(point: DataPoint, inst: Instrumentation, offer: Offered | None, requested: dict,
              transformed: dict) -> dict:
    """One value as GetInstrumentationValue answers it; ``transformed``: the transformations of
    its keys (``{}`` when none was asked for, as the original's documentation shows)."""
    return {"value": value(point, inst, offer), "transformations": transformed,
            "start_time": point.start_time, "duration": point.duration,
            "end_time": point.start_time + point.duration,
            "nsources": point.nsources, "minreporting": point.expected, **requested}
