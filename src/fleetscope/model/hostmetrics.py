"""The host's own metrics (CPU, memory, disks, network) and their fields, defined once.

The host source (:mod:`fleetscope.sources.host`) measures them live; imported performance
logs (:mod:`fleetscope.perflogs`) write the same metrics from the past, so an instrumentation
answers over both alike. ``container`` and ``runtime`` are the fields every per-container
measurement shares (:mod:`fleetscope.sources.containers`).
"""

from __future__ import annotations

from fleetscope.model.metrics import DISCRETE, INTERVAL, POINT, Field, metric
from fleetscope.model.types import BYTES, NUMBER, PERCENT, SECONDS

HOST_CONTAINER = "/"  # the container key of what runs on the host itself, outside any container
HOST_RUNTIME = "host"  # and its runtime

CPU = Field("cpu", DISCRETE, "CPU")
MODE = Field("mode", DISCRETE, "CPU mode")
CONTAINER = Field("container", DISCRETE, "container")
RUNTIME = Field("runtime", DISCRETE, "container runtime")
PERIOD = Field("period", DISCRETE, "averaging period")
MEMORY_TYPE = Field("type", DISCRETE, "memory type")
DISK = Field("disk", DISCRETE, "disk")
DIRECTION = Field("direction", DISCRETE, "direction")
NIC = Field("nic", DISCRETE, "network interface")
ERROR_TYPE = Field("type", DISCRETE, "error type")

METRICS = (
    metric("cpu", "usage", "CPU time", SECONDS, INTERVAL, CPU, MODE, CONTAINER, RUNTIME),
    # Time the hypervisor gave this guest's virtual CPUs to others (the steal mode of cpu.usage).
    metric("cpu", "steal", "CPU time stolen by the hypervisor", SECONDS, INTERVAL, CPU),
    metric("cpu", "load", "load average", NUMBER, POINT, PERIOD),
    metric("memory", "used", "memory", BYTES, POINT, MEMORY_TYPE),
    metric("disk", "ops", "disk operations", NUMBER, INTERVAL, DISK, DIRECTION),
    metric("disk", "bytes", "disk bytes", BYTES, INTERVAL, DISK, DIRECTION),
    metric("disk", "busy", "disk busy time", PERCENT, POINT, DISK),
    metric("net", "bytes", "network bytes", BYTES, INTERVAL, NIC, DIRECTION),
    metric("net", "packets", "network packets", NUMBER, INTERVAL, NIC, DIRECTION),
    metric("net", "errors", "network errors and drops", NUMBER, INTERVAL, NIC, DIRECTION, ERROR_TYPE),
)
