"""Request bodies of the instrumentation routes, as the OpenAPI document shows them.

The models check the JSON types (strictly: ``persist: 0`` is not ``false``);
:func:`fleetscope.model.instrumentation.validate_spec` then checks the meaning
(metric, predicate, durations), naming the field at fault.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from fleetscope.model import access

# A number of seconds or a duration such as "10m" or "1h30m" (model.types.parse_duration).
Seconds = (Annotated[StrictInt, Field(ge=0)]
           | Annotated[StrictStr, Field(pattern=r"^\s*([0-9]+|([0-9]+[smhdwSMHDW])+)\s*$")])
Retention = dict[str, Any] | str  # retention per history tier: {"minute": "90d"}


class InstrumentationCreate(BaseModel):
    """The body of a create: ``metric`` (or ``module`` and ``stat``), the rest optional.

    ``predicate`` is the JSON form or the text form (null: everything). A field left out takes
    its default; no other field may be null (``None`` defaults are never validated: they mean
    "left out").
    """

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "anyOf": [{"required": ["metric"]}, {"required": ["module", "stat"]}],
        "examples": [{"metric": "proc.cpu", "decomposition": ["execname"],
                      "predicate": 'execname != "idle"', "persist": True}],
    })
    module: str = Field(None, description="the metric's module, e.g. cpu (with stat)")
    stat: str = Field(None, description="the metric's stat, e.g. usage (with module)")
    metric: str = Field(None, description="module.stat, e.g. cpu.usage (instead of module and stat)")
    predicate: dict[str, Any] | str | None = Field(None, description="a filter: JSON tree or text form")
    decomposition: list[str] = Field(None, description="at most one discrete and one numeric field")
    granularity: Seconds = Field(None, description="seconds per data point (default 1)")
    retention: Seconds = Field(None, description="how long per-second data is kept in memory")
    idle_max: Seconds = Field(None, description="unused for this long, it expires (0: never)")
    persist: StrictBool = Field(None, description="keep history in the store")
    history: Retention = Field(None, description='retention per history tier, e.g. {"minute": "90d"}')


class InstrumentationUpdate(BaseModel):
    """The body of a change: only these may change after creation."""

    model_config = ConfigDict(extra="forbid")
    retention: Seconds = None
    idle_max: Seconds = None
    persist: StrictBool = None
    history: Retention = None


class TokenCreate(BaseModel):
    """A new token: shown once in the answer, kept only as its hash."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"name": "grafana", "role": "viewer", "expires": "90d"}]})
    name: str = Field(pattern=access.TOKEN_NAME.pattern, description="what the token is for")
    role: Literal["viewer", "operator", "admin"] = Field(description="what it may do")
    tenant: str = Field(None, pattern=access.TENANT_NAME.pattern, description="limit it to this tenant")
    expires: Seconds = Field(None, description="lifetime, 1 minute to 10 years, e.g. 30d (default: until "
                                               "revoked)")


class Quotas(BaseModel):
    model_config = ConfigDict(extra="forbid")
    instrumentations: StrictInt = Field(None, ge=0, le=100_000, description="at most this many at once")
    keys: StrictInt = Field(None, ge=1, le=10_000, description="keys per breakdown (the rest is (other))")
    retention: Seconds = Field(None, description="longest real-time retention per instrumentation")
    history: Seconds = Field(None, description="longest time any history tier keeps an instrumentation")


class TenantBody(BaseModel):
    """A tenant: what its tokens may see."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"name": "acme", "scope": 'container ~ "^acme-"', "hide_hosts": True,
                      "quotas": {"instrumentations": 20}}]})
    name: str = Field(pattern=access.TENANT_NAME.pattern, description="lower-case letters, digits, _ and -")
    scope: dict[str, Any] | str = Field(description="a predicate over fields: JSON tree or text form")
    hide_hosts: StrictBool = Field(False, description="host names are never shown to it")
    quotas: Quotas = Field(default_factory=Quotas)


class Login(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token: str = Field(description="a token (or the one-time token of a login link)")
