"""`fleetscope login|logout|whoami`, `token create|list|revoke`, `tenant ...`, `account ...` and `audit`.

Through the API with an admin token, except ``token create --store URL``, which writes the
first admin token of a fleet straight into its store (nobody has a token to ask with yet).
A token's secret is printed once, alone on stdout, so that a script can take it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from fleetscope.cli import logins
from fleetscope.cli.client import DEFAULT_URL, Api
from fleetscope.cli.commands.common import AsJson, Url, fail, print_json, reporting_errors, stdout_console
from fleetscope.cli.format import format_timestamp as timestamp
from fleetscope.cli.views import rows_table
from fleetscope.model.types import parse_duration

Role = Annotated[str, typer.Option(help="viewer, operator or admin.")]
Tenant = Annotated[str | None, typer.Option(help="Limit it to this tenant.")]
StoreOpt = Annotated[str | None, typer.Option(
    "--store", help="Write into this store directly (sqlite:///path or postgresql://...): the way to "
    "make a fleet's first admin token.", show_default=False)]


def login(url: Annotated[str, typer.Argument(help="The server, e.g. https://fleet.example:7070.")],
          token: Annotated[str | None, typer.Option(help="The token (default: asked for, hidden).")] = None
          ) -> None:
    """Check a token against a server and save it for that URL (mode 0600)."""
    secret = token or typer.prompt("token", hide_input=True)
    with reporting_errors(url), Api(url, token=secret) as api:
        me = api.whoami()
    path = logins.save_token(url, secret)
    tenant = (me.get("tenant") or {}).get("name")
    typer.echo(f"logged in to {url} as {me['token']['name']} ({me['role']}"
               f"{', tenant ' + tenant if tenant else ''}); token saved in {path}")


def logout(url: Annotated[str, typer.Argument(help="The server.")]) -> None:
    """Forget the token saved for a server."""
    typer.echo(f"forgot the token of {url}" if logins.forget_token(url) else f"no token saved for {url}")


def whoami(url: Url = DEFAULT_URL, as_json: AsJson = False) -> None:
    """Who the server takes you for: role, tenant, token."""
    with reporting_errors(url), Api.from_environment(url) as api:
        me = api.whoami()
    if as_json:
        print_json(me)
        return
    if not me.get("auth"):
        typer.echo(f"{url} has authentication off: everyone is admin")
        return
    tenant = (me.get("tenant") or {}).get("name") or "(all tenants)"
    typer.echo(f"{me['token']['name']} (token {me['token']['id']}): {me['role']}, {tenant}")


def token_create(
    name: Annotated[str, typer.Argument(help="What the token is for, e.g. grafana.")],
    role: Role = "viewer", tenant: Tenant = None,
    expires: Annotated[str | None, typer.Option(help="Lifetime, e.g. 30d (default: until revoked).")] = None,
    store: StoreOpt = None, url: Url = DEFAULT_URL, as_json: AsJson = False,
) -> None:
    """Make a token and print it (once: only its hash is kept)."""
    body: dict[str, Any] = {"name": name, "role": role, "tenant": tenant, "expires": expires}
    with reporting_errors(url):
        made = _create_in_store(store, body) if store else _create_by_api(url, body)
    if as_json:
        print_json(made)
        return
    typer.echo(f"token {made['id']} ({made['role']}{', tenant ' + made['tenant'] if made['tenant'] else ''})"
               " made; it is shown this once:", err=True)
    typer.echo(made["token"])


def _create_by_api(url: str, body: dict) -> dict:
    with Api.from_environment(url) as api:
        return api.create_token({k: v for k, v in body.items() if v is not None})


def _create_in_store(url: str, body: dict) -> dict:
    from fleetscope.api.auth import AuthConfig, Authenticator
    from fleetscope.model.errors import InputError
    from fleetscope.store.open import open_store

    opened = open_store(url)
    try:
        if body["tenant"] and opened.get_tenant(body["tenant"]) is None:
            raise InputError("tenant", f"no tenant {body['tenant']!r}")
        lifetime = parse_duration(body["expires"], "expires") if body["expires"] else None
        secret, info = Authenticator(opened, AuthConfig()).issue(body["name"], body["role"], body["tenant"],
                                                                 expires_in=lifetime)
        opened.add_audit("fleetscope token create --store", "local", "token.create", f"token {info.id}",
                         {"name": info.name, "role": info.role, "tenant": info.tenant})
    finally:
        opened.close()
    return {**info.to_json(), "token": secret}


def token_list(url: Url = DEFAULT_URL, every: Annotated[bool, typer.Option(
        "--all", help="Also dashboard sessions and login links.")] = False, as_json: AsJson = False) -> None:
    """Every token: id, name, role, tenant, created, expires, revoked (never the secret)."""
    with reporting_errors(url), Api.from_environment(url) as api:
        found = api.tokens("all" if every else "api")
    if as_json:
        print_json({"tokens": found})
        return
    rows = [[str(t["id"]), t["name"], t["role"], t["tenant"] or "-", t["kind"], timestamp(t["created"]),
             timestamp(t["expires"]) if t["expires"] else "never",
             timestamp(t["revoked"]) if t["revoked"] else "-"] for t in found]
    headers = ["id", "name", "role", "tenant", "kind", "created", "expires", "revoked"]
    stdout_console().print(rows_table(headers, rows, "tokens"))


def token_revoke(token_id: Annotated[int, typer.Argument(metavar="ID")], url: Url = DEFAULT_URL) -> None:
    """Revoke a token: every API server refuses it within seconds."""
    with reporting_errors(url), Api.from_environment(url) as api:
        info = api.revoke_token(token_id)
    typer.echo(f"token {info['id']} ({info['name']}) revoked")


def _tenant_body(name: str, scope: str | None, hide_hosts: bool, max_instrumentations: int | None,
                 max_keys: int | None, max_retention: str | None, max_history: str | None) -> dict:
    if not scope:
        fail("scope: is required, e.g. --scope 'container ~ \"^acme-\"'")
    quotas = {"instrumentations": max_instrumentations, "keys": max_keys, "retention": max_retention,
              "history": max_history}
    return {"name": name, "scope": scope, "hide_hosts": hide_hosts,
            "quotas": {k: v for k, v in quotas.items() if v is not None}}


ScopeOpt = Annotated[str | None, typer.Option(help="What it may see: a predicate over fields.")]
HideHosts = Annotated[bool, typer.Option("--hide-hosts", help="Never show it host names.")]
MaxInst = Annotated[int | None, typer.Option(help="At most this many instrumentations.")]
MaxKeys = Annotated[int | None, typer.Option(help="At most this many keys per breakdown.")]
MaxRetention = Annotated[str | None, typer.Option(help="At most this real-time retention, e.g. 1h.")]
MaxHistory = Annotated[str | None, typer.Option(help="History kept at most this long in any tier, e.g. 30d.")]


def tenant_create(name: Annotated[str, typer.Argument()], scope: ScopeOpt = None,
                  hide_hosts: HideHosts = False, max_instrumentations: MaxInst = None,
                  max_keys: MaxKeys = None, max_retention: MaxRetention = None,
                  max_history: MaxHistory = None, url: Url = DEFAULT_URL) -> None:
    """Make a tenant: tokens of it see only what its scope matches."""
    body = _tenant_body(name, scope, hide_hosts, max_instrumentations, max_keys, max_retention,
                        max_history)
    with reporting_errors(url), Api.from_environment(url) as api:
        made = api.put_tenant(body, create=True)
    typer.echo(f"tenant {made['name']}: {made['scope_text']}")


def tenant_update(name: Annotated[str, typer.Argument()], scope: ScopeOpt = None,
                  hide_hosts: HideHosts = False, max_instrumentations: MaxInst = None,
                  max_keys: MaxKeys = None, max_retention: MaxRetention = None,
                  max_history: MaxHistory = None, url: Url = DEFAULT_URL) -> None:
    """Replace a tenant's scope, host hiding and quotas (for instrumentations made from now on)."""
    body = _tenant_body(name, scope, hide_hosts, max_instrumentations, max_keys, max_retention,
                        max_history)
    with reporting_errors(url), Api.from_environment(url) as api:
        made = api.put_tenant(body, create=False)
    typer.echo(f"tenant {made['name']}: {made['scope_text']}")


def tenant_list(url: Url = DEFAULT_URL, as_json: AsJson = False) -> None:
    """Every tenant with its scope and quotas."""
    with reporting_errors(url), Api.from_environment(url) as api:
        found = api.tenants()
    if as_json:
        print_json({"tenants": found})
        return
    rows = [[t["name"], t["scope_text"], "yes" if t["hide_hosts"] else "no",
             ", ".join(f"{k} {v}" for k, v in t["quotas"].items()) or "-"] for t in found]
    stdout_console().print(rows_table(["name", "scope", "hides hosts", "quotas"], rows, "tenants"))


def tenant_delete(name: Annotated[str, typer.Argument()], url: Url = DEFAULT_URL) -> None:
    """Delete a tenant and revoke its tokens (its instrumentations stay, the operators')."""
    with reporting_errors(url), Api.from_environment(url) as api:
        api.delete_tenant(name)
    typer.echo(f"tenant {name} deleted")


def account_add_key(login: Annotated[str, typer.Argument(help="The account: a tenant's name.")],
                    keyfile: Annotated[Path, typer.Argument(help="Its SSH public key (the .pub file).")],
                    name: Annotated[str | None, typer.Option(help="What to call it (default: its comment).")]
                    = None, role: Role = "operator", url: Url = DEFAULT_URL) -> None:
    """Register an SSH public key to a CloudAPI account (the tenant LOGIN): requests signed with it
    (node-smartdc's sdc-* commands, HTTP Signature) act as that tenant."""
    try:
        text = keyfile.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"{keyfile}: {exc}")
    with reporting_errors(url), Api.from_environment(url) as api:
        body = {"key": text.strip(), "role": role, **({"name": name} if name else {})}
        made = api.add_account_key(login, body)
    typer.echo(f"key {made['fingerprint']} ({made['type']}, {made['sha256']}) added to account {login} "
               f"as {made['role']}: SDC_ACCOUNT={login} SDC_KEY_ID={made['fingerprint']}")


def account_keys(login: Annotated[str, typer.Argument(help="The account: a tenant's name.")],
                 url: Url = DEFAULT_URL, as_json: AsJson = False) -> None:
    """The SSH keys of a CloudAPI account."""
    with reporting_errors(url), Api.from_environment(url) as api:
        found = api.account_keys(login)
    if as_json:
        print_json({"keys": found})
        return
    # Text cells: rich would read ":ab:" in a fingerprint as an emoji code.
    rows = [[Text(k["fingerprint"]), Text(k["sha256"]), k["type"], k["role"], Text(k["name"]),
             timestamp(k["created"])] for k in found]
    stdout_console().print(rows_table(["fingerprint", "sha256", "type", "role", "name", "added"], rows,
                                      f"keys of {login}"))


def account_remove_key(login: Annotated[str, typer.Argument(help="The account: a tenant's name.")],
                       fingerprint: Annotated[str, typer.Argument(
                           help="MD5 (aa:bb:..) or SHA256:... fingerprint.")],
                       url: Url = DEFAULT_URL) -> None:
    """Remove an SSH key from a CloudAPI account."""
    with reporting_errors(url), Api.from_environment(url) as api:
        api.delete_account_key(login, fingerprint)
    typer.echo(f"key {fingerprint} removed from account {login}")


def audit(url: Url = DEFAULT_URL,
          since: Annotated[str, typer.Option(help="How far back, e.g. 1d.")] = "1d",
          limit: Annotated[int, typer.Option(help="At most this many rows.")] = 1000,
          as_json: AsJson = False) -> None:
    """Changes made through the API: when, who, from where, what."""
    with reporting_errors(url), Api.from_environment(url) as api:
        rows = api.audit(time.time() - parse_duration(since, "since"), limit)
    if as_json:
        print_json({"audit": rows})
        return
    table = [[timestamp(r["time"]), r["actor"], r["address"] or "-", r["action"], r["target"]] for r in rows]
    stdout_console().print(rows_table(["time", "who", "from", "action", "target"], table, "audit"))
