"""Request bodies of the instrumentation routes, as the OpenAPI document shows them.

The models check the JSON types (strictly: ``persist: 0`` is not ``false``);
:func:`fleetscope.model.instrumentation.validate_spec` then checks the meaning
(metric, predicate, durations), naming the field at fault.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool

Seconds = int | str  # a number of seconds or a duration such as "10m"
Retention = dict[str, Any] | str  # retention per history tier: {"minute": "90d"}


class InstrumentationCreate(BaseModel):
    """The body of a create: ``metric`` (or ``module`` and ``stat``), the rest optional.

    ``predicate`` is the JSON form or the text form.
    """

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "anyOf": [{"required": ["metric"]}, {"required": ["module", "stat"]}],
        "examples": [{"metric": "proc.cpu", "decomposition": ["execname"],
                      "predicate": 'execname != "idle"', "persist": True}],
    })
    module: str | None = Field(None, description="the metric's module, e.g. cpu (with stat)")
    stat: str | None = Field(None, description="the metric's stat, e.g. usage (with module)")
    metric: str | None = Field(None, description="module.stat, e.g. cpu.usage (instead of module and stat)")
    predicate: dict[str, Any] | str | None = Field(None, description="a filter: JSON tree or text form")
    decomposition: list[str] | None = Field(None, description="at most one discrete and one numeric field")
    granularity: Seconds | None = Field(None, description="seconds per data point (default 1)")
    retention: Seconds | None = Field(None, description="how long per-second data is kept in memory")
    idle_max: Seconds | None = Field(None, description="unused for this long, it expires (0: never)")
    persist: StrictBool | None = Field(None, description="keep history in the store")
    history: Retention | None = Field(None, description='retention per history tier, e.g. {"minute": "90d"}')


class InstrumentationUpdate(BaseModel):
    """The body of a change: only these may change after creation."""

    model_config = ConfigDict(extra="forbid")
    retention: Seconds | None = None
    idle_max: Seconds | None = None
    persist: StrictBool | None = None
    history: Retention | None = None
