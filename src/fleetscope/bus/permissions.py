"""Who may publish and subscribe to what on a NATS bus: the permissions of each role, and the
nats-server ``authorization`` block that grants them (printed by ``fleetscope nats-config``).

An agent may publish only its own host's subjects (its batches and its status) and ask for the
instrumentations meant for it; it may hear only its own control subject, the fleet-wide
disable and the replies to its own requests (its inbox carries a digest of its host name, see
:func:`fleetscope.bus.messages.agent_inbox`). So a compromised host can neither speak for
another nor read what is meant for another. Aggregators and API servers are the fleet's own
services and get what their work needs, no more: an aggregator never publishes control
messages, an API server never publishes data.

Each user authenticates with an NKey (an Ed25519 key pair): the server's configuration holds
only public keys, and each process keeps its seed in a file of its own.
See https://docs.nats.io/running-a-nats-service/configuration/securing_nats/authorization.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import NamedTuple

import nkeys

from fleetscope.bus import messages as m

ROLES = ("agent", "aggregator", "api")


class Permissions(NamedTuple):
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]


class User(NamedTuple):
    """One bus user: its role, the host it speaks for (agents) or a name, and its NKey."""

    role: str
    name: str
    public_key: str
    seed: bytes  # the secret half: goes to that process only, never into the server's config


def agent_permissions(host: str) -> Permissions:
    return Permissions(
        publish=(m.data_subject(host), m.status_subject(host), m.CTL_LIST),
        subscribe=(m.agent_subject(host), m.CTL_DISABLE, f"{m.agent_inbox(host)}.>"),
    )


AGGREGATOR = Permissions(
    # Finals for API servers, partials of its partitions for the owners (and, as an owner, their
    # acknowledgements), answers to window requests, acknowledgements to agents' inboxes, and its
    # own requests for the list; it hears the others' finals (a new owner must not make a slot
    # final twice).
    publish=(f"{m.FINAL}.>", f"{m.PARTIAL}.*", f"{m.PARTIAL_ACK}.*", m.CTL_LIST, "_INBOX.>"),
    subscribe=(f"{m.DATA}.>", f"{m.PARTIAL}.*", f"{m.PARTIAL_ACK}.*", f"{m.FINAL}.>", f"{m.AGENT_STATUS}.>",
               f"{m.WINDOW}.*", m.CTL_ENABLE, m.CTL_DISABLE, "_INBOX.>"),
)

API = Permissions(
    # Control messages to aggregators and agents, window and list requests (it follows the
    # instrumentations and windows too), and answers to list requests.
    publish=(m.CTL_ENABLE, f"{m.CTL_AGENT}.>", m.CTL_DISABLE, m.CTL_LIST, f"{m.WINDOW}.*", "_INBOX.>"),
    subscribe=(m.CTL_LIST, m.CTL_ENABLE, m.CTL_DISABLE, f"{m.AGENT_STATUS}.>", f"{m.FINAL}.>", "_INBOX.>"),
)


def permissions(role: str, name: str) -> Permissions:
    """The permissions of a user of ``role``; ``name`` is the host an agent speaks for."""
    if role == "agent":
        return agent_permissions(name)
    if role == "aggregator":
        return AGGREGATOR
    if role == "api":
        return API
    raise ValueError(f"unknown role {role!r}: one of {', '.join(ROLES)}")


def new_user(role: str, name: str) -> User:
    """A user with a fresh NKey (32 random bytes from the OS)."""
    permissions(role, name)  # refuse an unknown role before making a key
    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    public = nkeys.from_seed(bytearray(seed)).public_key.decode()
    return User(role, name, public, seed)


def _quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _list(items: Iterable[str]) -> str:
    return "[" + ", ".join(_quote(i) for i in items) + "]"


def authorization_block(users: Iterable[User]) -> str:
    """A nats-server ``authorization`` block granting each user its role's permissions (what is
    not allowed is denied), with a comment naming each key's role and name."""
    lines = ["authorization {", "  users = ["]
    for user in users:
        p = permissions(user.role, user.name)
        lines.append(f"    # {user.role} {user.name}")
        lines.append(f"    {{nkey: {_quote(user.public_key)}, permissions: {{")
        lines.append(f"      publish: {{allow: {_list(p.publish)}}}")
        lines.append(f"      subscribe: {{allow: {_list(p.subscribe)}}}")
        lines.append("    }}")
    lines += ["  ]", "}"]
    return "\n".join(lines) + "\n"
