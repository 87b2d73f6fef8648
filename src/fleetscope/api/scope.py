"""The one place where a caller's tenant scope is applied.

Every route reads instrumentations through :func:`visible` / :func:`get` / :func:`listed`
and creates them through :func:`scoped_spec`; no other code decides what a tenant may see.
Cloud Analytics' own tenant leaks came from scope filters added per backend; here a new read
path gets the scope by calling these, and ``tests/test_tenants.py`` checks every path with
two tenants.

An instrumentation of another tenant is answered exactly like one that does not exist (the
same 404, after the same store lookup), so counting ids tells a tenant nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

from fleetscope.model import access
from fleetscope.model import predicate as predicates
from fleetscope.model.access import Caller
from fleetscope.model.errors import InputError, NotFound
from fleetscope.model.instrumentation import Instrumentation
from fleetscope.model.metrics import POINT, Catalog, Metric
from fleetscope.model.tiers import capped_retention
from fleetscope.model.types import NUMBER


def not_found(inst_id: int) -> NotFound:
    return NotFound("id", f"no instrumentation {inst_id}")


def visible(caller: Caller, inst: Instrumentation) -> bool:
    return access.may_see(caller, inst.tenant)


def get(store, caller: Caller, inst_id: int) -> Instrumentation:
    """The instrumentation ``inst_id`` if ``caller`` may see it; 404 otherwise."""
    inst = store.get_instrumentation(inst_id)
    if inst is None or not visible(caller, inst):
        raise not_found(inst_id)
    return inst


def listed(caller: Caller, insts: Iterable[Instrumentation]) -> list[Instrumentation]:
    return [i for i in insts if visible(caller, i)]


def imports_for(caller: Caller, imports: Iterable) -> list:
    """The imports of performance logs ``caller`` may list and delete: a tenant's own (its
    operators imported them); the operators' every one."""
    if caller.tenant is None:
        return list(imports)
    return [i for i in imports if i.tenant == caller.tenant.name]


def import_readable(inst: Instrumentation, imported) -> bool:
    """Whether ``inst`` may read the rows of an import: the operators' imports are read by
    every instrumentation (a tenant's through its scope, which its predicate holds: only the
    rows the scope admits count), a tenant's import only by that tenant's instrumentations."""
    return imported.tenant is None or imported.tenant == inst.tenant


def comparable_import(caller: Caller, inst: Instrumentation, imported) -> bool:
    """Whether ``caller`` may read the import ``imported`` through ``inst`` on its own (a
    compare run): an import the caller may list (:func:`imports_for`) whose rows the
    instrumentation may read (:func:`import_readable`)."""
    return bool(imports_for(caller, [imported])) and import_readable(inst, imported)


def tenant_filter(caller: Caller, tenant: str | None) -> str | None:
    """The ``?tenant=`` filter of a list: operators may name any tenant; a tenant's own
    callers get their own whatever they ask."""
    if caller.tenant is not None:
        return caller.tenant.name
    return tenant


def scoped_spec(caller: Caller, spec: dict, metric: Metric, owned: int) -> dict:
    """A validated create spec with the caller's tenant, scope and quotas applied; ``owned``
    is how many instrumentations the tenant has now."""
    if caller.tenant is None:
        return spec
    tenant = caller.tenant
    access.check_hidden_hosts(caller, spec["predicate"], spec["decomposition"])
    quotas = tenant.quotas
    if quotas.instrumentations is not None and owned >= quotas.instrumentations:
        raise InputError(None, f"tenant {tenant.name!r} has its {quotas.instrumentations} "
                         "instrumentations already (its quota)", 409)
    if quotas.retention is not None and spec["retention"] > quotas.retention:
        raise InputError("retention", f"at most {quotas.retention} s for tenant {tenant.name!r}")
    if quotas.history is not None:
        spec = {**spec, "history": capped_retention(spec["history"], quotas.history)}
    scope = access.scope_for(caller, metric)
    return {**spec, "predicate": access.with_scope(scope, spec["predicate"]),
            "tenant": tenant.name, "scope": scope, "keys": quotas.keys}


def scoped_update(caller: Caller, changes: dict) -> dict:
    """Validated update ``changes`` within the caller's tenant quotas."""
    quotas = caller.tenant.quotas if caller.tenant else None
    if quotas and quotas.retention is not None and changes.get("retention", 0) > quotas.retention:
        raise InputError("retention", f"at most {quotas.retention} s for tenant {caller.tenant.name!r}")
    if quotas and quotas.history is not None and "history" in changes:
        return {**changes, "history": capped_retention(changes["history"], quotas.history)}
    return changes


def catalog_for(caller: Caller, catalog: Catalog) -> list[Metric]:
    """The metrics ``caller`` may instrument: for a tenant, those its scope can be applied to,
    without ``hostname`` when host names are hidden from it."""
    if caller.tenant is None:
        return list(catalog)
    out = []
    for metric in catalog:
        try:
            access.scope_for(caller, metric)
        except InputError:
            continue
        if caller.tenant.hide_hosts:
            shown = tuple(f for f in metric.fields if f.name != access.HOSTNAME_FIELD)
            metric = metric._replace(fields=shown)
        out.append(metric)
    return out


def hosts_for(caller: Caller, hosts: list[dict], visible_ids: set[int]) -> list[dict]:
    """The agents ``caller`` may know of: for a tenant, only hosts that run one of its
    instrumentations, with only those instrumentations and their warnings, and no labels (a
    label may name another customer); none when host names are hidden from it."""
    if caller.tenant is None:
        return hosts
    if caller.tenant.hide_hosts:
        return []
    out = []
    for host in hosts:
        mine = [i for i in host["instrumentations"] if i in visible_ids]
        if mine:
            out.append({**host, "labels": {}, "instrumentations": mine, "buffer": {},
                        "warnings": {k: v for k, v in host["warnings"].items() if int(k) in visible_ids}})
    return out


def parse_scope(pred: object, catalog: Catalog) -> dict:
    """A tenant's scope (JSON or text form), checked against every field the fleet's metrics
    have (a scope is over fields, not one metric); InputError naming ``scope``."""
    fields: dict[str, object] = {}
    for metric in catalog:
        for f in metric.fields:
            fields.setdefault(f.name, f)
    if not pred:
        raise InputError("scope", "is required: a tenant sees only what its scope matches")
    every = Metric("tenant", "scope", "any metric", NUMBER, POINT, tuple(fields.values()))
    return predicates.parse(pred, every, "scope")


def deliveries_for(caller: Caller, rows: Iterable[tuple[str, str, str, dict]]) -> dict[tuple[str, str], dict]:
    """Alert delivery counters ``(process, owner, receiver, counters)`` of the receivers
    ``caller`` may see (a tenant's own; the operators' every one), summed over processes by
    ``(owner, receiver)``; the latest error and success of any process."""
    out: dict[tuple[str, str], dict] = {}
    for _process, owner, name, counters in rows:
        if caller.tenant is not None and owner != caller.tenant.name:
            continue
        acc = out.setdefault((owner, name), dict.fromkeys(DELIVERY_COUNTS, 0) | {
            "last_error": None, "last_error_at": None, "last_success": None})
        for k in DELIVERY_COUNTS:
            acc[k] += counters.get(k, 0)
        if (counters.get("last_error_at") or 0) > (acc["last_error_at"] or 0):
            acc["last_error"], acc["last_error_at"] = counters.get("last_error"), counters["last_error_at"]
        if (counters.get("last_success") or 0) > (acc["last_success"] or 0):
            acc["last_success"] = counters["last_success"]
    return out


DELIVERY_COUNTS = ("sent", "failed_attempts", "given_up", "dropped", "pending")


def warnings_for(caller: Caller, warnings: dict[str, str]) -> dict[str, str]:
    """An instrumentation's warnings by host, with host names numbered instead for a tenant
    from whom they are hidden."""
    if caller.tenant is None or not caller.tenant.hide_hosts:
        return warnings
    return {f"host {n}": text for n, text in enumerate(warnings.values(), 1)}
