"""`fleetscope nats-config`: NATS authorization for a fleet, so nobody writes it by hand.

Prints the nats-server ``authorization`` block (public keys and each user's permissions, see
:mod:`fleetscope.bus.permissions`) and writes each process's NKey seed to a file of its own
(mode 0600) in ``--out``: copy ``agent-HOST.nk`` to HOST and start its agent with
``--nats-nkey agent-HOST.nk``. The seeds are written, never printed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from fleetscope.cli.commands.common import fail


def nats_config(
    agent: Annotated[list[str] | None, typer.Option(
        help="A host whose agent gets a key (repeatable).")] = None,
    aggregator: Annotated[list[str] | None, typer.Option(
        help="A name for an aggregator's key (repeatable; default: one, 'aggregator').")] = None,
    api: Annotated[list[str] | None, typer.Option(
        help="A name for an API server's key (repeatable; default: one, 'api').")] = None,
    out: Annotated[Path, typer.Option(
        help="Folder for the seed files (created, mode 0700).")] = Path("nats-keys"),
) -> None:
    """Print a nats-server authorization block for these hosts and services; write their keys."""
    from fleetscope.agent.agent import HOSTNAME
    from fleetscope.bus.permissions import authorization_block, new_user

    hosts = agent or []
    for host in hosts:
        if not HOSTNAME.fullmatch(host):
            fail(f"agent: {host!r} is not a host name (letters, digits, '.', '-', '_')")
    wanted = ([("agent", h) for h in hosts] + [("aggregator", n) for n in aggregator or ["aggregator"]]
              + [("api", n) for n in api or ["api"]])
    names = [f"{role}-{name}" for role, name in wanted]
    if len(set(names)) != len(names):
        fail("agent, aggregator, api: each name may appear once per role")
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    taken = [n for n in names if (out / f"{n}.nk").exists()]
    if taken:
        fail(f"out: {out / (taken[0] + '.nk')} exists (keys are never overwritten; choose another --out)")
    users = [new_user(role, name) for role, name in wanted]
    for user, name in zip(users, names, strict=True):
        path = out / f"{name}.nk"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(user.seed)
    typer.echo(f"# fleetscope nats-config: {len(users)} users; their seeds are in {out}/")
    typer.echo(authorization_block(users), nl=False)
