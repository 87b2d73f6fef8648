"""The metrics imported logs are written as.

Where a log measures what a live source measures, the import uses the live metric and its
fields (``cpu.usage`` by ``cpu``, ``mode``, ``container``, ``runtime``; ``disk.bytes`` by
``disk`` and ``direction``...): the very definitions of :mod:`fleetscope.model.hostmetrics`,
which the live host source uses, so that a server that has only imported data still knows
them. What only logs give has metrics of its own:

* ``cpu.utilization``: each CPU's busy percentage as a numeric field (a heatmap across
  CPUs), one row per CPU;
* ``cpu.runqueue``: runnable and blocked tasks (vmstat's ``r``/``b``, sar's ``runq-sz``);
* ``cpu.events``: interrupts, context switches, forks;
* ``memory.swap``: bytes swapped in and out;
* ``memory.paging``: page faults, major faults, pages freed;
* ``disk.await``: each device's mean I/O latency as a numeric field (a heatmap across
  devices), one row per device and direction.

:data:`COLUMNS` gives the fields (without ``hostname``) in the order a layout's key holds
them; :data:`VALUE_FIELD` the metrics whose stored value is a numeric field rather than a
measure (their rows measure 1: one CPU, one device).

Host-wide figures of logs that do not break down by device (vmstat's ``bi``/``bo``,
iostat's ``avg-cpu``) use the key ``all`` for the device or CPU; sar's per-device ``tps``
and ``await``, which do not say read or write, use the direction ``all``.
"""

from __future__ import annotations

from fleetscope.model.hostmetrics import (
    CPU,
    DIRECTION,
    DISK,
    HOST_CONTAINER,
    HOST_RUNTIME,
    METRICS,
)
from fleetscope.model.metrics import DISCRETE, INTERVAL, NUMERIC, POINT, Field, Metric, metric
from fleetscope.model.types import BYTES, MILLISECONDS, NUMBER, PERCENT

__all__ = ["ALL", "HOST_CONTAINER", "HOST_RUNTIME", "LIVE", "LOGS_ONLY"]  # the parsers import these

ALL = "all"  # the CPU, disk or direction of a figure that covers them all

STATE = Field("state", DISCRETE, "task state")
EVENT = Field("type", DISCRETE, "event")
PAGING = Field("type", DISCRETE, "paging event")
UTILIZATION = Field("utilization", NUMERIC, "CPU utilization", PERCENT)
LATENCY = Field("latency", NUMERIC, "I/O latency", MILLISECONDS)

LIVE = METRICS  # the live host metrics (fleetscope.model.hostmetrics)
LOGS_ONLY = (
    metric("cpu", "utilization", "CPU utilization by CPU (imported logs)", NUMBER, POINT, CPU, UTILIZATION),
    metric("cpu", "runqueue", "tasks runnable or blocked (imported logs)", NUMBER, POINT, STATE),
    metric("cpu", "events", "interrupts, context switches, forks (imported logs)", NUMBER, INTERVAL, EVENT),
    metric("memory", "swap", "bytes swapped (imported logs)", BYTES, INTERVAL, DIRECTION),
    metric("memory", "paging", "paging events (imported logs)", NUMBER, INTERVAL, PAGING),
    metric("disk", "await", "I/O latency by device (imported logs)", NUMBER, POINT, DISK, DIRECTION, LATENCY),
)
METRICS: tuple[Metric, ...] = LIVE + LOGS_ONLY
BY_NAME = {m.name: m for m in METRICS}
COLUMNS = {m.name: tuple(f.name for f in m.fields[1:]) for m in METRICS}
# Metric -> the numeric field its stored value is (the row's measure is then 1).
VALUE_FIELD = {"cpu.utilization": "utilization", "disk.await": "latency"}
KINDS = {m.name: m.kind for m in METRICS}
