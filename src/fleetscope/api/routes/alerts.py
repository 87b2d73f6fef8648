"""``/api/v1/alerts``: alert rules, receivers, what fires now and what fired before.

A rule belongs to its instrumentation's tenant and is seen, like the instrumentation, only
through :mod:`fleetscope.api.scope`; a rule sends only to receivers of its own tenant (the
operators' rules to the operators' receivers). Receivers' secrets are answered masked.
Evaluation happens where the instrumentation is aggregated (:mod:`fleetscope.alerts.engine`);
these routes only read and write the store.
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response

from fleetscope.api import scope
from fleetscope.api.audit import audit
from fleetscope.api.auth import Operator, Viewer
from fleetscope.api.bodies import AlertRuleBody, ReceiverBody
from fleetscope.api.errors import responses
from fleetscope.api.params import known_id
from fleetscope.api.services import Services, Svc
from fleetscope.model import access
from fleetscope.model.access import Caller
from fleetscope.model.alerts import AlertState, Receiver, Rule, parse_receiver, parse_rule
from fleetscope.model.errors import InputError, NotFound
from fleetscope.model.types import Type
from fleetscope.store.alerts import owner_of

router = APIRouter(prefix="/api/v1/alerts", tags=["alerts"])
MAX_RULES = 10_000  # per tenant (and for the operators): each is evaluated every second
RECENT = 6 * 3600  # seconds of resolved alerts that GET /alerts lists by default


async def _rule_id(id: Annotated[int, Path(description="an alert rule id")]) -> int:
    return known_id(id, "alert rule")


RuleId = Annotated[int, Depends(_rule_id)]
ReceiverName = Annotated[str, Path(description="a receiver's name", pattern=r"^[a-z][a-z0-9_-]{0,62}$")]


def _visible(caller: Caller, rule: Rule) -> bool:
    return access.may_see(caller, rule.tenant)


def _found(svc: Services, caller: Caller, rule_id: int) -> Rule:
    rule = svc.control.store.get_alert_rule(rule_id)
    if rule is None or not _visible(caller, rule):
        raise NotFound("id", f"no alert rule {rule_id}")
    return rule


def _rule_from(svc: Services, caller: Caller, body: AlertRuleBody, rule_id: int = 0,
               created: float | None = None) -> Rule:
    """A rule checked against its instrumentation (seen through the caller's scope) and the
    receivers of its tenant; InputError naming the field."""
    try:
        inst = svc.get(caller, body.instrumentation)
    except NotFound:
        raise InputError("instrumentation", f"no instrumentation {body.instrumentation}") from None
    unit: Type | None = None
    if inst.numeric:
        metric = svc.control.catalog.get(inst.module, inst.stat)
        unit = next((f.type for f in metric.fields if f.name == inst.numeric), None)
    rule = parse_rule(body.to_body(), inst, unit, rule_id, time.time() if created is None else created)
    for name in rule.receivers:
        if svc.control.store.get_alert_receiver(rule.tenant, name) is None:
            raise InputError("receivers", f"no receiver {name!r} (fleetscope alert receiver create)")
    return rule


def _shown(rule: Rule) -> dict:
    return {**rule.to_json(), "instrumentation": rule.inst_id}


@router.get("/rules", summary="Every alert rule (a tenant's own)")
def list_rules(svc: Svc, caller: Viewer, instrumentation: Annotated[int | None, Query(ge=1)] = None) -> dict:
    rules = [r for r in svc.control.store.list_alert_rules() if _visible(caller, r)
             and (instrumentation is None or r.inst_id == instrumentation)]
    return {"rules": [_shown(r) for r in rules]}


@router.post("/rules", status_code=201, summary="Create an alert rule", responses=responses(400, 409, 422))
def create_rule(body: AlertRuleBody, svc: Svc, caller: Operator) -> dict:
    rule = _rule_from(svc, caller, body)
    owned = sum(1 for r in svc.control.store.list_alert_rules() if r.tenant == rule.tenant)
    if owned >= MAX_RULES:
        raise InputError(None, f"at most {MAX_RULES} alert rules", 409)
    made = svc.control.store.create_alert_rule(rule)
    audit(svc, caller, "alert_rule.create", f"alert rule {made.id}",
          {"instrumentation": made.inst_id, "when": made.when})
    return _shown(made)


@router.get("/rules/{id}", summary="One alert rule", responses=responses(404, 422))
def get_rule(id: RuleId, svc: Svc, caller: Viewer) -> dict:
    return _shown(_found(svc, caller, id))


@router.put("/rules/{id}", summary="Replace an alert rule (its alerts start over)",
            responses=responses(400, 404, 422))
def replace_rule(id: RuleId, body: AlertRuleBody, svc: Svc, caller: Operator) -> dict:
    current = _found(svc, caller, id)
    rule = _rule_from(svc, caller, body, id, current.created)
    if not svc.control.store.replace_alert_rule(rule):
        raise NotFound("id", f"no alert rule {id}")
    audit(svc, caller, "alert_rule.update", f"alert rule {id}", {"instrumentation": rule.inst_id,
                                                                 "when": rule.when})
    return _shown(rule)


@router.delete("/rules/{id}", status_code=204, summary="Delete an alert rule", response_class=Response,
               responses=responses(404, 422))
def delete_rule(id: RuleId, svc: Svc, caller: Operator) -> Response:
    _found(svc, caller, id)
    if not svc.control.store.delete_alert_rule(id):
        raise NotFound("id", f"no alert rule {id}")
    audit(svc, caller, "alert_rule.delete", f"alert rule {id}")
    return Response(status_code=204)


# -- what fires -------------------------------------------------------------------------------------


@router.get("", summary="Alerts firing and pending now, and those resolved recently",
            responses=responses(422))
def alerts_now(svc: Svc, caller: Viewer,
               since: Annotated[float | None, Query(ge=0, le=2**53, description="resolved since (epoch s; "
                                                    "default: the last 6 hours)")] = None) -> dict:
    store = svc.control.store
    rules = {r.id: r for r in store.list_alert_rules() if _visible(caller, r)}
    current = [_alert(s, rules[s.rule_id]) for s in store.alert_states() if s.rule_id in rules]
    start = time.time() - RECENT if since is None else since
    resolved = [e for e in store.alert_events(start)
                if e["status"] == "resolved" and access.may_see(caller, e["tenant"])]
    return {"firing": [a for a in current if a["state"] == "firing"],
            "pending": [a for a in current if a["state"] == "pending"], "resolved": resolved}


def _alert(state: AlertState, rule: Rule) -> dict:
    return {**state.to_json(), "instrumentation": rule.inst_id, "severity": rule.severity, "when": rule.when,
            "name": rule.name}


@router.get("/history", summary="Every alert state change since a time, newest first",
            responses=responses(422))
def history(svc: Svc, caller: Viewer,
            since: Annotated[float, Query(ge=0, le=2**53, description="epoch seconds")] = 0.0,
            limit: Annotated[int, Query(ge=1, le=10_000)] = 1000) -> dict:
    events = svc.control.store.alert_events(since, limit if caller.tenant is None else 10_000)
    return {"events": [e for e in events if access.may_see(caller, e["tenant"])][:limit]}


# -- receivers --------------------------------------------------------------------------------------


def _receiver(svc: Services, caller: Caller, name: str) -> Receiver:
    found = svc.control.store.get_alert_receiver(caller.tenant_name, name)
    if found is None:
        raise NotFound("name", f"no receiver {name!r}")
    return found


@router.get("/receivers", summary="Every receiver of the caller's tenant (secrets masked), with its "
            "delivery counters")
def list_receivers(svc: Svc, caller: Viewer) -> dict:
    own = owner_of(caller.tenant_name)
    deliveries = scope.deliveries_for(caller, svc.control.store.alert_deliveries())
    mine = [r for r in svc.control.store.list_alert_receivers() if owner_of(r.tenant) == own]
    return {"receivers": [{**r.to_json(), "delivery": deliveries.get((own, r.name))} for r in mine]}


@router.post("/receivers", status_code=201, summary="Create a receiver", responses=responses(400, 409, 422))
def create_receiver(body: ReceiverBody, svc: Svc, caller: Operator) -> dict:
    receiver = parse_receiver(body.model_dump(), caller.tenant_name, time.time())
    if not svc.control.store.put_alert_receiver(receiver, create=True):
        raise InputError("name", f"a receiver is already called {receiver.name!r}", 409)
    audit(svc, caller, "alert_receiver.create", f"receiver {receiver.name}", {"kind": receiver.kind})
    return receiver.to_json()


@router.get("/receivers/{name}", summary="One receiver (secrets masked)", responses=responses(404, 422))
def get_receiver(name: ReceiverName, svc: Svc, caller: Viewer) -> dict:
    return _receiver(svc, caller, name).to_json()


@router.put("/receivers/{name}", summary="Replace a receiver (a masked secret keeps the stored one)",
            responses=responses(400, 404, 422))
def replace_receiver(name: ReceiverName, body: ReceiverBody, svc: Svc, caller: Operator) -> dict:
    current = _receiver(svc, caller, name)
    if body.name != name:
        raise InputError("name", f"is {name!r} in the path: a receiver is not renamed")
    receiver = parse_receiver(body.model_dump(), caller.tenant_name, current.created, previous=current)
    if not svc.control.store.put_alert_receiver(receiver, create=False):
        raise NotFound("name", f"no receiver {name!r}")
    audit(svc, caller, "alert_receiver.update", f"receiver {name}", {"kind": receiver.kind})
    return receiver.to_json()


@router.delete("/receivers/{name}", status_code=204, summary="Delete a receiver", response_class=Response,
               responses=responses(404, 409, 422))
def delete_receiver(name: ReceiverName, svc: Svc, caller: Operator) -> Response:
    _receiver(svc, caller, name)
    users = [r.id for r in svc.control.store.list_alert_rules()
             if r.tenant == caller.tenant_name and name in r.receivers]
    if users:
        raise InputError("name", f"rules {', '.join(map(str, users))} send to it: change them first", 409)
    svc.control.store.delete_alert_receiver(caller.tenant_name, name)
    audit(svc, caller, "alert_receiver.delete", f"receiver {name}")
    return Response(status_code=204)

