"""The default instrumentations: what a new user sees live at once.

`fleetscope serve` creates them on first start (:meth:`fleetscope.api.control.ControlPlane.
ensure_defaults`); in a fleet, `fleetscope defaults` creates them through the public API.
Either way a default is created only where its metric is known (in the catalogue the agents
report): the container ones only when some host has containers (the cgroup source lists
its metrics only then), ``fleetscope.api_requests`` only in `fleetscope serve`.
"""

from __future__ import annotations

from collections.abc import Container, Mapping
from typing import Any

DEFAULT_INSTRUMENTATIONS = (
    {"module": "cpu", "stat": "usage", "decomposition": ["mode"]},
    {"module": "memory", "stat": "used", "decomposition": ["type"]},
    {"module": "disk", "stat": "bytes", "decomposition": ["disk"]},
    {"module": "net", "stat": "bytes", "decomposition": ["nic"]},
    {"module": "proc", "stat": "cpu", "decomposition": ["execname"]},
    {"module": "proc", "stat": "cpu", "decomposition": ["utilization"]},
    # Only on hosts with containers.
    {"module": "container", "stat": "cpu", "decomposition": ["container"]},
    {"module": "container", "stat": "memory", "decomposition": ["container"]},
    # fleetscope's own API latency (`fleetscope serve`): a real latency heatmap from the start.
    {"module": "fleetscope", "stat": "api_requests", "decomposition": ["latency"]},
)
# Kept an hour in memory, never expired, with history.
DEFAULT_OPTIONS = {"retention": 3600, "idle_max": 0, "persist": True}


def metric_of(spec: Mapping[str, Any]) -> str:
    """``module.stat`` of an instrumentation spec or definition."""
    return f"{spec['module']}.{spec['stat']}"


def default_specs(known_metrics: Container[str]) -> list[dict[str, Any]]:
    """The bodies to create the defaults whose metric is in ``known_metrics``, in order."""
    return [{**spec, **DEFAULT_OPTIONS} for spec in DEFAULT_INSTRUMENTATIONS
            if metric_of(spec) in known_metrics]


def same_question(spec: Mapping[str, Any], inst: Mapping[str, Any]) -> bool:
    """Whether the definition ``inst`` (JSON) asks what ``spec`` asks: the same metric,
    predicate and decomposition (granularity, retention and the rest may differ)."""
    return (metric_of(spec) == metric_of(inst)
            and (spec.get("predicate") or {}) == (inst.get("predicate") or {})
            and list(spec.get("decomposition") or ()) == list(inst.get("decomposition") or ()))
