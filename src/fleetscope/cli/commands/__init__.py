"""The commands of ``fleetscope``, one module per noun.

==================  ===================================================================
module              commands
==================  ===================================================================
servers             serve, agent, aggregator, api (the long-running processes)
buscfg              nats-config (NATS authorization for a fleet)
metrics             metrics
hosts               hosts
instrumentations    inst create|list|show|update|delete, defaults
values              value, watch, export
store               store stats
importing           import FORMAT FILE..., imports list|delete
compare             compare INST A B (imports or ranges, aligned to their starts)
access              login, logout, whoami, token create|list|revoke, tenant ..., audit
alerts              alert create|list|delete|history, alert receiver ..., alerts
==================  ===================================================================

A new noun gets a module here and one line in :func:`register` (a group of its own when it
has several verbs, as ``inst``). Client
commands take the :mod:`~fleetscope.cli.commands.common` options (``--url``, ``--json``),
talk through :class:`fleetscope.cli.client.Api` and report errors with
:func:`~fleetscope.cli.commands.common.reporting_errors`.
"""

from __future__ import annotations

import typer

from fleetscope.cli.commands import (
    access,
    alerts,
    buscfg,
    compare,
    hosts,
    importing,
    instrumentations,
    metrics,
    servers,
    store,
    values,
)


def register_servers(app: typer.Typer) -> None:
    """Add the long-running processes to ``app``."""
    for command in (servers.serve, servers.agent, servers.aggregator, servers.api):
        app.command()(command)
    app.command("nats-config")(buscfg.nats_config)


def register(app: typer.Typer) -> None:
    """Add the client commands (those that talk to a server over HTTP) to ``app``."""
    app.command("metrics")(metrics.metrics)
    app.command("hosts")(hosts.hosts)
    inst = typer.Typer(help="Create, list, show, update and delete instrumentations.", no_args_is_help=True)
    inst.command("create")(instrumentations.inst_create)
    inst.command("list")(instrumentations.inst_list)
    inst.command("show")(instrumentations.inst_show)
    inst.command("update")(instrumentations.inst_update)
    inst.command("delete")(instrumentations.inst_delete)
    app.add_typer(inst, name="inst")
    app.command("defaults")(instrumentations.defaults)
    app.command("value")(values.value)
    app.command("watch")(values.watch)
    app.command("export")(values.export)
    history = typer.Typer(help="The history store.", no_args_is_help=True)
    history.command("stats")(store.store_stats)
    app.add_typer(history, name="store")
    app.command("import")(importing.import_logs)
    imports = typer.Typer(help="Imported performance logs: list, delete.", no_args_is_help=True)
    imports.command("list")(importing.imports_list)
    imports.command("delete")(importing.imports_delete)
    app.add_typer(imports, name="imports")
    app.command("compare")(compare.compare)
    app.command("login")(access.login)
    app.command("logout")(access.logout)
    app.command("whoami")(access.whoami)
    tokens = typer.Typer(help="Make, list and revoke API tokens (admin).", no_args_is_help=True)
    tokens.command("create")(access.token_create)
    tokens.command("list")(access.token_list)
    tokens.command("revoke")(access.token_revoke)
    app.add_typer(tokens, name="token")
    tenants = typer.Typer(help="Tenants: what each one's tokens may see (admin).", no_args_is_help=True)
    tenants.command("create")(access.tenant_create)
    tenants.command("list")(access.tenant_list)
    tenants.command("update")(access.tenant_update)
    tenants.command("delete")(access.tenant_delete)
    app.add_typer(tenants, name="tenant")
    accounts = typer.Typer(help="CloudAPI accounts (tenants): their SSH keys (admin).", no_args_is_help=True)
    accounts.command("add-key")(access.account_add_key)
    accounts.command("keys")(access.account_keys)
    accounts.command("remove-key")(access.account_remove_key)
    app.add_typer(accounts, name="account")
    app.command("audit")(access.audit)
    alert = typer.Typer(help="Alert rules on instrumentations, and where they send (receivers).",
                        no_args_is_help=True)
    alert.command("create")(alerts.alert_create)
    alert.command("list")(alerts.alert_list)
    alert.command("delete")(alerts.alert_delete)
    alert.command("history")(alerts.alert_history)
    receivers = typer.Typer(help="Where alerts go: Alertmanager, webhooks, e-mail.", no_args_is_help=True)
    receivers.command("create")(alerts.receiver_create)
    receivers.command("list")(alerts.receiver_list)
    receivers.command("delete")(alerts.receiver_delete)
    alert.add_typer(receivers, name="receiver")
    app.add_typer(alert, name="alert")
    app.command("alerts")(alerts.alerts)
