"""The default instrumentations: what a new user sees live at once.

`fleetscope serve` creates them on first start (:meth:`fleetscope.api.control.ControlPlane.
ensure_defaults`); in a fleet, `fleetscope defaults` creates them through the public API.
Either way a default is created only where its metric is known (in the catalogue the agents
report): the container ones only when some host has containers (the cgroup source lists
its metrics only then), ``fleetscope.api_requests`` only in `fleetscope serve`.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping
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

# The "Guests" dashboard: the host and every guest on it side by side, as XMLPulse showed a Xen
# host's dom0 and its domUs. Made once per store when some host has containers or VMs, with the
# panels whose metric the catalogue has: (instrumentation spec, panel options).
GUESTS_DASHBOARD = "Guests"
GUESTS_PANELS: tuple[tuple[dict[str, Any], dict[str, Any]], ...] = (
    # the host's CPU split between the host itself (container "/") and each guest
    ({"module": "cpu", "stat": "usage", "decomposition": ["container"]}, {"width": 2}),
    ({"module": "cpu", "stat": "steal", "decomposition": ["cpu"]}, {"chart": "lines"}),
    ({"module": "container", "stat": "cpu", "decomposition": ["container"]}, {}),
    ({"module": "container", "stat": "memory", "decomposition": ["container"]}, {}),
    ({"module": "container", "stat": "net", "decomposition": ["container"]}, {}),
    ({"module": "container", "stat": "stall", "decomposition": ["container"]}, {}),
    ({"module": "vm", "stat": "cpu", "decomposition": ["vm"]}, {}),
    ({"module": "vm", "stat": "memory", "predicate": {"eq": ["type", "rss"]}, "decomposition": ["vm"]},
     {}),
    ({"module": "vm", "stat": "state", "decomposition": ["state"]}, {}),
    # the hypervisor's own processes (QEMU) by the VM they run
    ({"module": "proc", "stat": "cpu", "predicate": {"ne": ["vm", ""]}, "decomposition": ["vm"]}, {}),
)
GUEST_MODULES = ("container.", "vm.")


def has_guests(known_metrics: Iterable[str]) -> bool:
    """Whether a catalogue says some host has containers or VMs."""
    return any(name.startswith(GUEST_MODULES) for name in known_metrics)


def guests_panels(known_metrics: Container[str]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """The Guests dashboard's (spec, options) whose metric is in ``known_metrics``, in order."""
    return [({**spec, **DEFAULT_OPTIONS}, options) for spec, options in GUESTS_PANELS
            if metric_of(spec) in known_metrics]


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
