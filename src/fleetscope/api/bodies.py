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


class AccountKeyBody(BaseModel):
    """An SSH public key for a CloudAPI account: the one line of its .pub file."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA... you@laptop", "role": "operator"}]})
    key: str = Field(max_length=16_384,
                     description="OpenSSH public key line (RSA >= 2048 bits, ECDSA, Ed25519)")
    name: str = Field(None, max_length=128, description="what to call it (default: the key's comment)")
    role: Literal["viewer", "operator", "admin"] = Field("operator",
                                                         description="what signed requests may do")


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


class AlertWindow(BaseModel):
    model_config = ConfigDict(extra="forbid")
    days: list[StrictStr] | StrictStr = Field(None, description="mon, tue, ... sun (default: every day)")
    start: StrictStr = Field(None, description="time of day it starts, e.g. 08:00")
    end: StrictStr = Field(None, description="time of day it ends, e.g. 18:00 (before start: past midnight)")
    tz: StrictStr = Field(None, description="time zone, e.g. Europe/Berlin (default UTC)")


class AlertRuleBody(BaseModel):
    """An alert rule on one instrumentation (see fleetscope.model.alerts for the conditions)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, json_schema_extra={
        "examples": [{"instrumentation": 1, "when": "p99 > 200ms", "for": "1m", "clear": "150ms",
                      "severity": "critical", "receivers": ["alertmanager"],
                      "summary": "p99 latency of {key} is {value}"}]})
    instrumentation: StrictInt = Field(ge=1, le=2**63 - 1, description="the instrumentation it watches")
    name: StrictStr = Field(None, max_length=128, description="the alert's name (default rule-ID)")
    when: StrictStr = Field(description="value > 0.9 | each key > 0.9 | key \"k\" > 1 | p99 > 200ms | "
                                        "avg > 10ms | no data for 30s | sources < expected")
    for_: Seconds = Field(None, alias="for", description="how long it must hold before firing")
    clear: StrictInt | float | StrictStr = Field(None, description="clears only past this (hysteresis)")
    clear_for: Seconds = Field(None, description="how long it must stay clear before resolving")
    window: AlertWindow = Field(None, description="when the rule is active (default: always)")
    severity: Literal["info", "warning", "critical"] = Field(None)
    labels: dict[str, StrictStr] = Field(None, description="added to the alert's labels")
    summary: StrictStr = Field(None, description="text with {value}, {key}, {threshold}, {metric} ...")
    description: StrictStr = Field(None)
    repeat: Seconds = Field(None, description="tell the receivers again this often while firing (0: never)")
    receivers: list[StrictStr] = Field(None, description="names of receivers to tell")

    def to_body(self) -> dict:
        """The fields given, as :func:`fleetscope.model.alerts.parse_rule` takes them."""
        return self.model_dump(by_alias=True, exclude_none=True)


class ReceiverBody(BaseModel):
    """Where notifications go: kind alertmanager {url}, webhook {url, secret}, email {host, port,
    starttls, username, password, sender, to}."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"name": "alertmanager", "kind": "alertmanager",
                      "settings": {"url": "http://127.0.0.1:9093"}}]})
    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,62}$")
    kind: Literal["alertmanager", "webhook", "email"]
    settings: dict[str, Any] = Field(description="depends on kind; secrets are shown masked")
