"""Who may ask what, against a real `fleetscope serve` with authentication on (its default):
every route needs a role unless it is on the public list, tokens and their roles, the login
link and the session cookie, the Host check against DNS rebinding, failure limits, and no
secret in any log or answer."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fleetscope.api.auth import FAILURES_ALLOWED, PUBLIC_PATHS, SESSION_COOKIE
from tests.conftest import VENV_BIN, Server, free_port, wait_for

API = "/api/v1"
# Reachable without a token besides PUBLIC_PATHS: the API's own description and its viewer.
PUBLIC_DOCS = {f"{API}/openapi.json", f"{API}/docs", f"{API}/docs/assets/{{name}}"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("secure"), free_port(), auth=True).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def tokens(server: Server) -> dict[str, str]:
    return {role: server.token(f"test-{role}", role) for role in ("viewer", "operator", "admin")}


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def routes(server: Server) -> list[tuple[str, str]]:
    """Every (method, path) of the OpenAPI document, plus the routes it does not describe."""
    doc = httpx.get(server.url + f"{API}/openapi.json").json()
    found = [(m.upper(), p) for p, item in doc["paths"].items() for m in item]
    return [*found, ("GET", "/metrics"), ("GET", "/login"), ("GET", f"{API}/docs"), ("GET", "/")]


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


def test_every_route_needs_a_token_unless_it_is_public(server: Server) -> None:
    public = {*PUBLIC_PATHS, *PUBLIC_DOCS}
    checked = 0
    for method, path in routes(server):
        if path in public:
            continue
        r = httpx.request(method, server.url + concrete(path), json={}, timeout=10)
        assert r.status_code == 401, (method, path, r.status_code, r.text)
        assert r.json()["error"]["field"] == "authorization"
        assert r.headers["www-authenticate"] == "Bearer"
        checked += 1
    assert checked >= 30, "the walk saw the API"


def test_the_document_names_each_routes_role(server: Server, tokens) -> None:
    doc = httpx.get(server.url + f"{API}/openapi.json").json()
    roles = {(m, p): op.get("x-role") for p, item in doc["paths"].items() for m, op in item.items()}
    assert roles[("get", f"{API}/instrumentations")] == "viewer"
    assert roles[("post", f"{API}/instrumentations")] == "operator"
    assert roles[("delete", f"{API}/dashboards/{{id}}")] == "operator"
    assert roles[("post", f"{API}/tokens")] == "admin"
    assert roles[("get", f"{API}/audit")] == "admin"
    for (m, p), role in roles.items():
        if p not in PUBLIC_PATHS | PUBLIC_DOCS:
            assert role in ("viewer", "operator", "admin"), (m, p)
            assert {"401", "403"} <= set(doc["paths"][p][m]["responses"]), (m, p)
    assert set(doc["components"]["securitySchemes"]) == {"bearer", "session"}


def test_roles(server: Server, tokens) -> None:
    body = {"metric": "cpu.usage", "decomposition": ["mode"]}
    url = server.url + f"{API}/instrumentations"
    assert httpx.get(url, headers=bearer(tokens["viewer"])).status_code == 200
    refused = httpx.post(url, json=body, headers=bearer(tokens["viewer"]))
    assert refused.status_code == 403 and "'operator'" in refused.json()["error"]["message"]
    made = httpx.post(url, json=body, headers=bearer(tokens["operator"]))
    assert made.status_code == 201
    assert httpx.get(server.url + f"{API}/tokens", headers=bearer(tokens["operator"])).status_code == 403
    assert httpx.get(server.url + f"{API}/tokens", headers=bearer(tokens["admin"])).status_code == 200
    gone = httpx.delete(f"{url}/{made.json()['id']}", headers=bearer(tokens["viewer"]))
    assert gone.status_code == 403
    assert httpx.delete(f"{url}/{made.json()['id']}", headers=bearer(tokens["operator"])).status_code == 204


def test_wrong_expired_and_revoked_tokens_get_401(server: Server, tokens) -> None:
    url = server.url + f"{API}/instrumentations"
    admin = bearer(tokens["admin"])
    for header in ("Bearer fs_" + "x" * 43, "Bearer nonsense", "Basic dXNlcjpwYXNz", "Bearer"):
        r = httpx.get(url, headers={"authorization": header})
        assert r.status_code == 401, header
    made = httpx.post(server.url + f"{API}/tokens", json={"name": "short", "role": "viewer"},
                      headers=admin).json()
    assert httpx.get(url, headers=bearer(made["token"])).status_code == 200
    assert httpx.delete(server.url + f"{API}/tokens/{made['id']}", headers=admin).status_code == 200
    r = httpx.get(url, headers=bearer(made["token"]))
    assert r.status_code == 401 and "revoked" in r.json()["error"]["message"]
    bad = httpx.post(server.url + f"{API}/tokens", json={"name": "x", "role": "root"}, headers=admin)
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "role"
    bad = httpx.post(server.url + f"{API}/tokens", json={"name": "x", "role": "viewer", "expires": "1s"},
                     headers=admin)
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "expires"


def test_a_token_past_its_expiry_gets_401(server: Server) -> None:
    """A token made (as `token create --expires` makes one, hashed into the store) to expire two
    seconds from now works until then and is refused after, by the server's own clock."""
    from fleetscope.model import access
    from fleetscope.store.open import open_store

    secret = access.new_token()
    store = open_store(f"sqlite:///{server.data_dir / 'fleetscope.db'}", create=False)
    try:
        store.create_token("brief", "viewer", None, "api", access.token_hash(secret), time.time() + 2)
    finally:
        store.close()
    url = server.url + f"{API}/instrumentations"
    assert httpx.get(url, headers=bearer(secret)).status_code == 200
    refused = wait_for(lambda: (r := httpx.get(url, headers=bearer(secret))).status_code == 401 and r, 15)
    assert "expired" in refused.json()["error"]["message"]


def test_the_login_link_sets_a_strict_session_cookie_once(server: Server) -> None:
    link = server.login_link()
    with httpx.Client() as browser:
        r = browser.get(link, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/"
        cookie = r.headers["set-cookie"]
        assert SESSION_COOKIE in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
        assert "token=" not in r.headers["location"]
        me = browser.get(server.url + f"{API}/whoami").json()
        assert me["role"] == "admin" and me["token"]["kind"] == "session"
        # A write with the cookie must come from the dashboard's own origin.
        body = {"name": "from a cookie", "panels": []}
        foreign = browser.post(server.url + f"{API}/dashboards", json=body,
                               headers={"origin": "http://evil.example"})
        assert foreign.status_code == 403 and foreign.json()["error"]["field"] == "origin"
        assert browser.post(server.url + f"{API}/dashboards", json=body).status_code == 403, "no Origin"
        own = browser.post(server.url + f"{API}/dashboards", json=body, headers={"origin": server.url})
        assert own.status_code == 201
        assert browser.post(server.url + f"{API}/logout", headers={"origin": server.url}).status_code == 204
        assert browser.get(server.url + f"{API}/whoami").status_code == 401
    again = httpx.get(link, follow_redirects=False)
    assert again.status_code == 401, "the link works once"


def test_a_pasted_token_logs_the_dashboard_in(server: Server, tokens) -> None:
    with httpx.Client() as browser:
        assert browser.post(server.url + f"{API}/login", json={"token": "fs_wrong"}).status_code == 401
        assert browser.post(server.url + f"{API}/login", json={"token": tokens["viewer"]}).status_code == 204
        assert browser.get(server.url + f"{API}/whoami").json()["role"] == "viewer"


def test_foreign_host_headers_are_refused(server: Server, tokens) -> None:
    """DNS rebinding: a page on evil.example resolves its name to 127.0.0.1; the browser then
    sends `Host: evil.example`, which the server refuses (even /healthz and the dashboard)."""
    for path in ("/healthz", "/", f"{API}/instrumentations"):
        r = httpx.get(server.url + path, headers={"host": "evil.example", **bearer(tokens["admin"])})
        assert r.status_code == 400, path
    for host in (f"localhost:{server.port}", f"127.0.0.1:{server.port}"):
        assert httpx.get(server.url + "/healthz", headers={"host": host}).status_code == 200


def test_failed_attempts_are_limited_per_address(tmp_path: Path) -> None:
    srv = Server(tmp_path, free_port(), auth=True).start()
    try:
        good = srv.token("limit-admin")
        url = srv.url + f"{API}/instrumentations"
        codes = [httpx.get(url, headers=bearer("fs_" + "y" * 43)).status_code
                 for _ in range(FAILURES_ALLOWED + 2)]
        assert codes[:FAILURES_ALLOWED] == [401] * FAILURES_ALLOWED and codes[-1] == 429
        # Even a good token waits: the address is what is limited, not the guess.
        assert httpx.get(url, headers=bearer(good)).status_code == 429
        logged = srv.log.read_text()
        assert good not in logged, "no token reaches the log"
    finally:
        srv.stop()


def test_no_secret_in_answers_audit_or_log(server: Server, tokens) -> None:
    admin = bearer(tokens["admin"])
    made = httpx.post(server.url + f"{API}/tokens", json={"name": "audited", "role": "viewer"},
                      headers=admin).json()
    listed = httpx.get(server.url + f"{API}/tokens?kind=all", headers=admin).text
    audit = httpx.get(server.url + f"{API}/audit", headers=admin).text
    log = server.log.read_text()
    for secret in (*tokens.values(), made["token"]):
        assert secret not in listed and secret not in audit and secret not in log
    rows = httpx.get(server.url + f"{API}/audit", headers=admin).json()["audit"]
    mine = [r for r in rows if r["action"] == "token.create" and r["target"] == f"token {made['id']}"]
    assert mine and mine[0]["actor"].startswith("test-admin (token ") and mine[0]["address"] == "127.0.0.1"


def test_changes_are_audited_with_who_and_what(server: Server, tokens) -> None:
    op = bearer(tokens["operator"])
    inst = httpx.post(server.url + f"{API}/instrumentations", headers=op,
                      json={"metric": "proc.cpu", "decomposition": ["execname"]}).json()
    httpx.patch(server.url + f"{API}/instrumentations/{inst['id']}", headers=op, json={"retention": 120})
    httpx.delete(server.url + f"{API}/instrumentations/{inst['id']}", headers=op)
    exe = str(VENV_BIN / "fleetscope")
    out = subprocess.run([exe, "--token", tokens["admin"], "audit", "--url", server.url, "--json"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    rows = [r for r in json.loads(out)["audit"] if r["target"] == f"instrumentation {inst['id']}"]
    assert [r["action"] for r in rows] == ["instrumentation.delete", "instrumentation.update",
                                           "instrumentation.create"]
    me = httpx.get(server.url + f"{API}/whoami", headers=op).json()["token"]
    assert {r["actor"] for r in rows} == {f"test-operator (token {me['id']})"}
    assert rows[1]["detail"] == {"retention": 120}
    denied = subprocess.run([exe, "--token", tokens["viewer"], "audit", "--url", server.url],
                            capture_output=True, text=True, timeout=60)
    assert denied.returncode == 1 and "'admin'" in denied.stderr


def test_no_auth_is_refused_where_others_can_reach(tmp_path: Path) -> None:
    exe = str(VENV_BIN / "fleetscope")
    out = subprocess.run([exe, "serve", "--no-auth", "--host", "0.0.0.0", "--port", str(free_port()),
                          "--data-dir", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "no-auth" in out.stderr and "0.0.0.0" in out.stderr


def test_cli_login_saves_the_token_privately(server: Server, tokens, tmp_path: Path) -> None:
    exe = str(VENV_BIN / "fleetscope")
    env = {"FLEETSCOPE_CONFIG_DIR": str(tmp_path / "cfg"), "PATH": "/usr/bin:/bin"}
    bad = subprocess.run([exe, "login", server.url, "--token", "fs_nope"], capture_output=True, text=True,
                         timeout=60, env=env)
    assert bad.returncode == 1 and not (tmp_path / "cfg" / "tokens.json").exists()
    ok = subprocess.run([exe, "login", server.url, "--token", tokens["operator"]], capture_output=True,
                        text=True, timeout=60, env=env)
    assert ok.returncode == 0, ok.stderr
    saved = tmp_path / "cfg" / "tokens.json"
    assert saved.stat().st_mode & 0o077 == 0
    who = subprocess.run([exe, "whoami", "--url", server.url], capture_output=True, text=True, timeout=60,
                         env=env)
    assert "test-operator" in who.stdout and "operator" in who.stdout
    listed = subprocess.run([exe, "inst", "list", "--url", server.url], capture_output=True, text=True,
                            timeout=60, env=env)
    assert listed.returncode == 0, listed.stderr
    nothing = subprocess.run([exe, "inst", "list", "--url", server.url], capture_output=True, text=True,
                             timeout=60, env={**env, "FLEETSCOPE_CONFIG_DIR": str(tmp_path / "other")})
    assert nothing.returncode == 1 and "token" in nothing.stderr


def test_a_tenants_quotas_bound_what_it_may_ask(server: Server, tokens) -> None:
    admin = bearer(tokens["admin"])
    made = httpx.post(server.url + f"{API}/tenants", headers=admin, json={
        "name": "quota", "scope": 'container ~ ".*"',
        "quotas": {"instrumentations": 2, "keys": 3, "retention": "2m", "history": "10d"}})
    assert made.status_code == 201, made.text
    assert made.json()["quotas"] == {"instrumentations": 2, "keys": 3, "retention": 120, "history": 864000}
    token = httpx.post(server.url + f"{API}/tokens", headers=admin,
                       json={"name": "quota-op", "role": "operator", "tenant": "quota"}).json()["token"]
    url = server.url + f"{API}/instrumentations"
    too_long = httpx.post(url, headers=bearer(token), json={"metric": "proc.cpu", "retention": "10m"})
    assert too_long.status_code == 422 and too_long.json()["error"]["field"] == "retention"
    by_name = httpx.post(url, headers=bearer(token),
                         json={"metric": "proc.rss", "decomposition": ["execname"], "retention": 120})
    assert by_name.status_code == 201, by_name.text
    inst = by_name.json()
    assert inst["keys"] == 3 and inst["tenant"] == "quota"
    # No tier keeps its history past the quota: the second tier's week stays, the rest are cut.
    assert inst["history"] == {"second": 7 * 86400, "minute": 864000, "hour": 864000}
    kept_long = httpx.post(url, headers=bearer(token), json={"metric": "cpu.usage", "persist": True,
                                                             "retention": 60, "history": {"hour": "1y"}})
    assert kept_long.status_code == 422 and kept_long.json()["error"]["field"] == "history.hour"
    longer = httpx.patch(f"{url}/{inst['id']}", headers=bearer(token), json={"history": {"minute": "90d"}})
    assert longer.status_code == 422 and longer.json()["error"]["field"] == "history.minute"
    assert httpx.post(url, headers=bearer(token), json={"metric": "cpu.usage"}).status_code == 201
    third = httpx.post(url, headers=bearer(token), json={"metric": "cpu.usage"})
    assert third.status_code == 409 and "quota" in third.json()["error"]["message"]
    longer = httpx.patch(f"{url}/{inst['id']}", headers=bearer(token), json={"retention": 600})
    assert longer.status_code == 422 and longer.json()["error"]["field"] == "retention"

    def folded() -> list[dict]:
        points = httpx.get(f"{url}/{inst['id']}/value", headers=bearer(token),
                           params={"duration": 1, "ndatapoints": 10}).json()
        return [p for p in points if p["value"] and len(p["value"]) > 1]

    points = wait_for(folded, 30)
    # Every process has a resident size each second (CPU time would need 4 busy names at once), and
    # this host runs far more than 3 process names: 3 kept, the rest folded.
    for p in points:
        assert set(p["value"]) - {"(other)"} and len(set(p["value"]) - {"(other)"}) <= 3
        assert "(other)" in p["value"]
    # The same question from the operators keeps the fleet's 50: the 3 were the tenant's quota.
    operators = httpx.post(url, headers=admin,
                           json={"metric": "proc.rss", "decomposition": ["execname"]}).json()
    recent = {"duration": 1, "ndatapoints": 10}
    wait_for(lambda: any(len(p["value"] or {}) > 4 for p in httpx.get(
        f"{url}/{operators['id']}/value", headers=admin, params=recent).json()), 30)
