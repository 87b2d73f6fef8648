"""Roles, tokens, tenants and the scope function (model/access.py), and their tables in both
stores (store/access.py)."""

from __future__ import annotations

import threading
import time

import pytest

from fleetscope.model import access
from fleetscope.model import predicate as predicates
from fleetscope.model.access import Caller, Quotas, Tenant
from fleetscope.model.errors import InputError
from fleetscope.sources.registry import catalog, local_sources
from tests.store_backends import backend_url, pg_url, store  # noqa: F401 - fixtures

CATALOG = catalog(local_sources())


def tenant(name: str = "acme", scope: str = 'container ~ "^acme-"', **kw) -> Tenant:
    return Tenant(name, predicates.parse(scope, CATALOG.get("container", "cpu")), **kw)


def test_roles_are_ordered() -> None:
    assert [access.allows(r, access.OPERATOR) for r in access.ROLES] == [False, True, True]
    assert access.allows(access.ADMIN, access.ADMIN) and not access.allows(access.OPERATOR, access.ADMIN)
    with pytest.raises(InputError) as err:
        access.check_role("root")
    assert err.value.field == "role"


def test_tokens_are_random_and_only_their_hash_is_kept() -> None:
    tokens = {access.new_token() for _ in range(1000)}
    assert len(tokens) == 1000
    token = tokens.pop()
    assert token.startswith("fs_") and len(token) == 3 + 43 and access.looks_like_token(token)
    digest = access.token_hash(token)
    assert len(digest) == 64 and token not in digest
    assert access.same_hash(digest, access.token_hash(token))
    assert not access.same_hash(digest, access.token_hash(token[:-1] + "x"))


def test_the_scope_is_anded_into_what_a_tenant_asks() -> None:
    acme = Caller(access.OPERATOR, tenant())
    metric = CATALOG.get("proc", "cpu")
    scope = access.scope_for(acme, metric)
    assert scope == {"re": ["container", "^acme-"]}
    asked = predicates.parse('execname == "nginx"', metric)
    both = access.with_scope(scope, asked)
    assert both == {"and": [scope, asked]}
    columns = ("container", "execname")
    match = predicates.compile_predicate(both, columns)
    assert match(("acme-web", "nginx")) and not match(("other-web", "nginx"))
    # Whatever the tenant writes, including `or` and `not`, stays inside the scope.
    for text in ('execname == "nginx" or container == "other-web"', 'not container ~ "^acme-"',
                 'container ~ ".*"', ""):
        pred = access.with_scope(scope, predicates.parse(text or None, metric))
        matches = predicates.compile_predicate(pred, columns)
        assert matches is not True and not matches(("other-web", "nginx")), text
    assert access.scope_for(Caller(access.OPERATOR), metric) == {}, "operators see everything"


def test_a_metric_without_the_scopes_fields_is_refused_to_the_tenant() -> None:
    with pytest.raises(InputError) as err:
        access.scope_for(Caller(access.VIEWER, tenant()), CATALOG.get("memory", "used"))
    assert err.value.field == "metric" and "container" in err.value.message


def test_hidden_host_names_cannot_be_asked_for() -> None:
    hidden = Caller(access.OPERATOR, tenant(hide_hosts=True))
    access.check_hidden_hosts(hidden, {}, ("execname",))
    for pred, decomposition, field in (({}, ("hostname",), "decomposition"),
                                       ({"eq": ["hostname", "web1"]}, (), "predicate")):
        with pytest.raises(InputError) as err:
            access.check_hidden_hosts(hidden, pred, decomposition)
        assert err.value.field == field
    access.check_hidden_hosts(Caller(access.OPERATOR, tenant()), {}, ("hostname",))


def test_tenants_round_trip() -> None:
    t = tenant(hide_hosts=True, quotas=Quotas(instrumentations=5, retention=600), created=12.5)
    assert Tenant.from_json(t.to_json()) == t
    assert t.to_json()["scope_text"] == 'container ~ "^acme-"'


def test_tokens_in_the_store(store) -> None:  # noqa: F811
    secret = access.new_token()
    info = store.create_token("ci", access.VIEWER, None, "api", access.token_hash(secret), None)
    assert store.token_by_hash(access.token_hash(secret)) == info
    assert store.token_by_hash(access.token_hash(access.new_token())) is None
    later = store.create_token("tmp", access.ADMIN, "acme", "api", access.token_hash(access.new_token()),
                               time.time() - 1)
    assert not later.valid_at(time.time()) and info.valid_at(time.time())
    revoked = store.revoke_token(info.id, 100.0)
    assert revoked.revoked == 100.0 and not revoked.valid_at(time.time())
    assert store.revoke_token(999_999, 1.0) is None
    assert [t.id for t in store.list_tokens()] == [info.id, later.id]
    assert store.revoke_tenant_tokens("acme", 5.0) == 1
    with pytest.raises(Exception):  # noqa: B017 - the hash is unique: a duplicate is a bug
        store.create_token("dup", access.VIEWER, None, "api", access.token_hash(secret), None)


def test_a_login_link_is_taken_once_even_by_racing_requests(store) -> None:  # noqa: F811
    secret = access.new_token()
    store.create_token("link", access.ADMIN, None, "login", access.token_hash(secret), time.time() + 60)
    taken: list[object] = []
    threads = [threading.Thread(target=lambda: taken.append(
        store.take_token(access.token_hash(secret), "login", time.time()))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(x is not None for x in taken) == 1
    assert store.take_token(access.token_hash(secret), "login", time.time()) is None
    api = access.new_token()
    store.create_token("api", access.ADMIN, None, "api", access.token_hash(api), None)
    assert store.take_token(access.token_hash(api), "login", time.time()) is None, "only login links"


def test_tenants_and_audit_in_the_store(store) -> None:  # noqa: F811
    t = tenant(quotas=Quotas(keys=20))
    assert store.put_tenant(t, create=True)
    assert not store.put_tenant(t, create=True), "a name is taken once"
    assert store.get_tenant("acme") == t
    changed = Tenant("acme", {}, hide_hosts=True)
    assert store.put_tenant(changed, create=False) and store.get_tenant("acme") == changed
    assert not store.put_tenant(Tenant("nobody", {}), create=False)
    assert [x.name for x in store.list_tenants()] == ["acme"]
    assert store.delete_tenant("acme") and not store.delete_tenant("acme")
    store.add_audit("ci (token 1)", "127.0.0.1", "instrumentation.create", "instrumentation 7", {"a": 1})
    store.add_audit("ci (token 1)", "127.0.0.1", "instrumentation.delete", "instrumentation 7", {})
    rows = list(store.read_audit())
    assert [r["action"] for r in rows] == ["instrumentation.delete", "instrumentation.create"]
    assert rows[1]["detail"] == {"a": 1} and rows[1]["address"] == "127.0.0.1"
