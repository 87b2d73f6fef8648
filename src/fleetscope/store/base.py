"""The store interface: the :class:`Store` protocol and the records its history methods take
and return. It imports none of its implementations (``store/sqlite.py``,
``store/postgres.py``); ``fleetscope.store.open.open_store`` picks one from a URL."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import NamedTuple, Protocol

from fleetscope.model.access import Tenant, TokenInfo
from fleetscope.model.alerts import AlertState, Receiver, Rule
from fleetscope.model.instrumentation import Instrumentation


class NewChunk(NamedTuple):
    """A chunk to insert."""

    inst_id: int
    tier: int
    start: int
    end: int  # exclusive
    npoints: int
    nsamples: int
    data: bytes


class Chunk(NamedTuple):
    """A stored chunk (``data`` is empty when only the index was asked for)."""

    id: int
    start: int
    end: int
    npoints: int
    nsamples: int
    data: bytes


class HistoryChange(NamedTuple):
    """Changes to the history applied in one transaction by :meth:`SQLStore.write_history`."""

    add: Sequence[NewChunk] = ()
    delete: Sequence[int] = ()  # chunk ids
    pending_add: Sequence[tuple[int, int, int]] = ()  # (inst_id, tier, start)
    pending_done: Sequence[tuple[int, int, int]] = ()
    watermarks: Sequence[tuple[int, int, int]] = ()  # (inst_id, tier, done_until)


class TierStats(NamedTuple):
    inst_id: int
    tier: int
    chunks: int
    points: int
    samples: int
    bytes: int
    oldest: int
    newest: int  # exclusive end of the newest slot


class Store(Protocol):
    """Definitions and history kept across restarts. Methods are synchronous and each call is
    atomic (one transaction)."""

    def create_instrumentation(self, spec: dict, created: float) -> Instrumentation: ...

    def get_instrumentation(self, inst_id: int) -> Instrumentation | None: ...

    def list_instrumentations(self) -> list[Instrumentation]: ...

    def update_instrumentation(self, inst: Instrumentation) -> None: ...

    def delete_instrumentation(self, inst_id: int) -> bool: ...

    def get_meta(self, key: str) -> str | None: ...

    def set_meta(self, key: str, value: str) -> None: ...

    # Access (fleetscope.store.access): tokens are kept as their hashes only.

    def create_token(self, name: str, role: str, tenant: str | None, kind: str, hash: str,
                     expires: float | None) -> TokenInfo: ...

    def token_by_hash(self, hash: str) -> TokenInfo | None: ...

    def take_token(self, hash: str, kind: str, now: float) -> TokenInfo | None: ...

    def list_tokens(self, kind: str | None = None) -> list[TokenInfo]: ...

    def revoke_token(self, token_id: int, now: float) -> TokenInfo | None: ...

    def revoke_tenant_tokens(self, tenant: str, now: float) -> int: ...

    def list_tenants(self) -> list[Tenant]: ...

    def get_tenant(self, name: str) -> Tenant | None: ...

    def put_tenant(self, tenant: Tenant, create: bool) -> bool: ...

    def delete_tenant(self, name: str) -> bool: ...

    def add_audit(self, actor: str, address: str, action: str, target: str, detail: dict) -> None: ...

    def read_audit(self, since: float = 0.0, limit: int = 1000) -> Iterator[dict]: ...

    # Alerts (fleetscope.store.alerts): rules, receivers (owned by a tenant or the operators),
    # the state of each pending or firing alert, and the history of state changes.

    def create_alert_rule(self, rule: Rule) -> Rule: ...

    def get_alert_rule(self, rule_id: int) -> Rule | None: ...

    def list_alert_rules(self) -> list[Rule]: ...

    def replace_alert_rule(self, rule: Rule) -> bool: ...

    def delete_alert_rule(self, rule_id: int) -> bool: ...

    def put_alert_receiver(self, receiver: Receiver, create: bool) -> bool: ...

    def get_alert_receiver(self, tenant: str | None, name: str) -> Receiver | None: ...

    def list_alert_receivers(self) -> list[Receiver]: ...

    def delete_alert_receiver(self, tenant: str | None, name: str) -> bool: ...

    def alerts_version(self) -> str | None: ...

    def alert_states(self, rule_id: int | None = None) -> list[AlertState]: ...

    def save_alert_changes(self, states: list[AlertState], ended: list[tuple[int, str]],
                           events: list[dict]) -> None: ...

    def alert_events(self, since: float, limit: int = 1000) -> list[dict]: ...

    def save_alert_deliveries(self, process: str, counters: dict[tuple[str, str], dict]) -> None: ...

    def alert_deliveries(self) -> list[tuple[str, str, str, dict]]: ...

    # Dashboards: JSON documents ``{name, panels, ...}`` validated by the API. The store adds
    # ``id`` (an integer), ``created`` and ``updated`` (epoch seconds) and returns the whole.

    def list_dashboards(self) -> list[dict]: ...

    def get_dashboard(self, dashboard_id: int) -> dict | None: ...

    def create_dashboard(self, doc: dict) -> dict: ...

    def update_dashboard(self, dashboard_id: int, doc: dict) -> dict | None: ...

    def delete_dashboard(self, dashboard_id: int) -> bool: ...

    # History (see fleetscope.store.sql for the tables and fleetscope.store.history for their use).

    def write_history(self, change: HistoryChange) -> None: ...

    def read_chunks(self, inst_id: int, tier: int, start: int, end: int, span: int,
                    with_data: bool = True) -> list[Chunk]: ...

    def read_chunk_ids(self, ids: Sequence[int]) -> list[Chunk]: ...

    def chunk_index(self, inst_id: int, tier: int, since: int = 0) -> list[Chunk]: ...

    def first_chunk_start(self, inst_id: int, tier: int, since: int) -> int | None: ...

    def last_chunk_end(self, inst_id: int, tier: int) -> int | None: ...

    def watermarks(self) -> dict[tuple[int, int], int]: ...

    def pending_rollups(self) -> list[tuple[int, int, int]]: ...

    def expire_chunks(self, inst_id: int, tier: int, before: int) -> int: ...

    def history_ids(self) -> list[int]: ...

    def delete_history(self, inst_id: int) -> None: ...

    def history_stats(self) -> list[TierStats]: ...

    def disk_bytes(self) -> int: ...

    def reclaim(self) -> None: ...

    def integrity_check(self) -> str: ...

    def close(self) -> None: ...
