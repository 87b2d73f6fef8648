"""Who may ask what: roles, tokens, tenants and the one scope function.

* **Roles** are ordered: ``viewer`` reads; ``operator`` also changes instrumentations,
  dashboards and alert rules; ``admin`` also manages tokens, tenants and settings.
* **Tokens** are 256 random bits, shown once (``fs_`` + 43 URL-safe characters). The store
  keeps only their SHA-256: a password hash (argon2, bcrypt) exists to slow the guessing of
  secrets people chose, and buys nothing against 256 random bits while costing tens of
  milliseconds on every request.
* **Tenants** (Cloud Analytics' customers) are a name and a scope: a predicate over fields
  (``container =~ "^acme-"``, a host label ``customer == "acme"``). :func:`scope_for` is the
  one place that turns a caller into the predicate AND-ed into everything it creates; the API
  answers a tenant only from its own instrumentations (:func:`may_see`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from fleetscope.model import predicate as predicates
from fleetscope.model.errors import InputError
from fleetscope.model.metrics import Metric

ROLES = ("viewer", "operator", "admin")  # each may do everything the ones before it may
VIEWER, OPERATOR, ADMIN = ROLES

TOKEN_PREFIX = "fs_"
TOKEN_BYTES = 32
# A tenant name is also a label in URLs, logs and exported series.
TENANT_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")  # anchored: also a JSON Schema pattern
TOKEN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
HOSTNAME_FIELD = "hostname"
# A tenant's name is also its CloudAPI login, the first segment of /:login/analytics at the root
# of the address: names of fleetscope's own top-level paths (and CloudAPI's "my", the signer's own
# account) cannot be logins. tests/test_cloudapi.py checks that every top-level path of the app is
# here.
RESERVED_LOGINS = frozenset({"api", "metrics", "healthz", "login", "logout", "web", "prometheus", "docs",
                             "static", "assets", "favicon", "robots", "my", "openapi"})


def allows(role: str, needed: str) -> bool:
    """Whether a caller of ``role`` may do what ``needed`` may."""
    return ROLES.index(role) >= ROLES.index(needed)


def check_tenant_name(name: object, field: str = "name") -> str:
    """A tenant's name (also its CloudAPI login); InputError naming ``field`` otherwise."""
    if not isinstance(name, str) or not TENANT_NAME.fullmatch(name):
        raise InputError(field, "must be 1-63 lower-case letters, digits, '_' or '-', starting with a letter")
    if name in RESERVED_LOGINS:
        raise InputError(field, f"{name!r} is one of fleetscope's own paths (/{name}), so it cannot be a "
                         "tenant's CloudAPI login")
    return name


def check_role(role: object, name: str = "role") -> str:
    if role not in ROLES:
        raise InputError(name, f"must be one of {', '.join(ROLES)}")
    return role  # type: ignore[return-value]


def new_token() -> str:
    """A fresh secret token (shown once to whoever asked for it)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


def token_hash(token: str) -> str:
    """What the store keeps of ``token`` (hex SHA-256)."""
    return hashlib.sha256(token.encode()).hexdigest()


def looks_like_token(text: str) -> bool:
    return text.startswith(TOKEN_PREFIX) and 8 < len(text) <= 128


def same_hash(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


@dataclass(frozen=True)
class Quotas:
    """Limits of one tenant; ``None`` is no limit beyond the server's own."""

    instrumentations: int | None = None  # how many it may have at once
    keys: int | None = None  # keys per breakdown (the rest is folded into "(other)")
    retention: int | None = None  # seconds of per-second data in memory per instrumentation
    history: int | None = None  # seconds any history tier keeps of an instrumentation

    def to_json(self) -> dict:
        return {k: v for k, v in (("instrumentations", self.instrumentations), ("keys", self.keys),
                                  ("retention", self.retention), ("history", self.history))
                if v is not None}


@dataclass(frozen=True)
class Tenant:
    name: str
    scope: dict  # a validated predicate (JSON form) over fields
    hide_hosts: bool = False
    quotas: Quotas = field(default_factory=Quotas)
    created: float = 0.0

    def to_json(self) -> dict:
        return {"name": self.name, "scope": self.scope,
                "scope_text": predicates.to_text(self.scope) if self.scope else "",
                "hide_hosts": self.hide_hosts, "quotas": self.quotas.to_json(), "created": self.created}

    @classmethod
    def from_json(cls, obj: Mapping) -> Tenant:
        """Rebuild from :meth:`to_json` output (trusted: written by fleetscope itself)."""
        return cls(obj["name"], obj.get("scope") or {}, bool(obj.get("hide_hosts")),
                   Quotas(**obj.get("quotas", {})), float(obj.get("created", 0.0)))


class TokenInfo(NamedTuple):
    """A stored token, without its secret."""

    id: int
    name: str
    role: str
    tenant: str | None
    kind: str  # "api" (made by an admin), "session" (a dashboard login), "login" (one-time link)
    created: float
    expires: float | None
    revoked: float | None

    def to_json(self) -> dict:
        return self._asdict()

    def valid_at(self, now: float) -> bool:
        return self.revoked is None and (self.expires is None or now < self.expires)


class AccountKey(NamedTuple):
    """An SSH public key registered to a CloudAPI account (a tenant's login): only the public
    half, with its fingerprints (see :mod:`fleetscope.model.sshkeys`)."""

    id: int
    login: str
    name: str
    role: str  # what requests signed with it may do within the tenant (operator by default)
    kind: str  # rsa, ecdsa, ed25519
    md5: str
    sha256: str
    public_key: str
    created: float

    def to_json(self) -> dict:
        return {"id": self.id, "login": self.login, "name": self.name, "role": self.role, "type": self.kind,
                "fingerprint": self.md5, "sha256": self.sha256, "key": self.public_key,
                "created": self.created}


class Caller(NamedTuple):
    """Who is asking: what :func:`scope_for` and the role checks are made of."""

    role: str
    tenant: Tenant | None = None
    token: TokenInfo | None = None  # None when authentication is off
    address: str = ""

    @property
    def tenant_name(self) -> str | None:
        """The caller's tenant's name; None for the operators."""
        return self.tenant.name if self.tenant else None

    @property
    def who(self) -> str:
        """How the audit log names the caller."""
        if self.token is None:
            return "anonymous (no auth)"
        return f"{self.token.name} (token {self.token.id})"


def scope_for(caller: Caller, metric: Metric) -> dict:
    """The predicate AND-ed into every instrumentation ``caller`` creates on ``metric``: the
    tenant's scope (``{}`` for the operators, who see everything). InputError when the metric
    lacks a field the scope needs, or the tenant may not see host names and the metric's only
    way to tell its sources apart would be them: a tenant never gets a value it cannot be
    scoped on."""
    if caller.tenant is None:
        return {}
    tenant = caller.tenant
    missing = predicates.fields_of(tenant.scope) - {f.name for f in metric.fields}
    if missing:
        raise InputError("metric", f"{metric.name} cannot be limited to tenant {tenant.name!r} "
                         f"(it has no field {sorted(missing)[0]!r})", 422)
    return tenant.scope


def with_scope(scope: dict, pred: dict) -> dict:
    """``pred`` AND ``scope`` (either may be ``{}``, everything)."""
    if not scope:
        return pred
    if not pred:
        return scope
    return {"and": [scope, pred]}


def check_hidden_hosts(caller: Caller, pred: dict, decomposition: tuple[str, ...]) -> None:
    """A tenant from whom host names are hidden may neither break down nor filter by them."""
    if caller.tenant is None or not caller.tenant.hide_hosts:
        return
    if HOSTNAME_FIELD in decomposition:
        raise InputError("decomposition", "host names are hidden from this tenant", 422)
    if HOSTNAME_FIELD in predicates.fields_of(pred):
        raise InputError("predicate", "host names are hidden from this tenant", 422)


def may_see(caller: Caller, tenant_of_thing: str | None) -> bool:
    """Whether ``caller`` may see something (an instrumentation, a dashboard) of that tenant:
    operators see everything, a tenant only its own."""
    return caller.tenant is None or caller.tenant.name == tenant_of_thing
