"""The marks of a time range a caller may see: its annotations, the alert state changes of its
instrumentations and its imported performance logs, as ``{id, kind, time, end_time, text, tags}``.

One function for every reader (``GET /api/v1/annotations``, and the heatmap and line PNGs that draw
them through :func:`visible_marks`), so that a tenant's picture never shows what its list would not.
"""

from __future__ import annotations

from fleetscope.api import scope
from fleetscope.api.heatmap.png import Mark
from fleetscope.api.services import Services
from fleetscope.model import access
from fleetscope.model.access import Caller
from fleetscope.store.imports import READY

MAX_LISTED = 1000  # annotations, alert changes and imports one answer lists, each
_ALERTS_READ = 10_000  # alert events read to find those of the range and the caller


def visible_annotations(svc: Services, caller: Caller, start_time: float, end_time: float) -> list[dict]:
    """Every mark of ``[start_time, end_time)`` the caller may see, oldest first.

    A tenant sees its own annotations, the alerts of its own instrumentations
    (:func:`fleetscope.model.access.may_see`) and its own imports (:func:`scope.imports_for`).
    """
    store = svc.control.store
    owner = None if caller.tenant is None else caller.tenant_name
    posted = [{**a, "kind": "annotation"} for a in store.annotations(start_time, end_time, owner, MAX_LISTED)]
    alerts = [{"id": e["id"], "kind": "alert", "time": e["at"], "end_time": None,
               "text": f"alert {e['status']}: instrumentation {e['inst_id']}"
                       f"{' ' + e['key'] if e.get('key') else ''} (rule {e['rule_id']})",
               "tags": [t for t in (e.get("status"), e.get("severity")) if t],
               "instrumentation": e["inst_id"]}
              for e in store.alert_events(start_time, _ALERTS_READ)
              if e["at"] < end_time and access.may_see(caller, e.get("tenant"))][:MAX_LISTED]
    imported = [{"id": i.id, "kind": "import", "time": float(i.start), "end_time": float(i.end),
                 "text": f"imported {i.format} of {i.host} (import {i.id})", "tags": [i.format]}
                for i in scope.imports_for(caller, store.list_imports())
                if i.state == READY and i.start is not None and i.end is not None
                and i.start < end_time and i.end > start_time][:MAX_LISTED]
    return sorted(posted + alerts + imported, key=lambda a: (a["time"], a["kind"], a["id"]))


def visible_marks(svc: Services, caller: Caller, start: float, end: float) -> list[Mark]:
    """The caller's marks of ``[start, end)`` at their places across a picture of that range."""
    def at(t: float | None) -> float | None:
        return None if t is None else (t - start) / (end - start)
    return [Mark(at(a["time"]), at(a["end_time"]), a["kind"] == "alert")
            for a in visible_annotations(svc, caller, start, end)]
