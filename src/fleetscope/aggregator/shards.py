"""Spreading instrumentations and partitions over the running aggregators, with leases in the
shared store.

Every aggregator renews a heartbeat and its leases every ``RENEW_EVERY``
seconds; a lease lasts ``LEASE_TTL``. Each takes its fair share
(``ceil(instrumentations / live aggregators)``): it keeps the leases it holds,
gives back what is over its share, and claims instrumentations whose lease
expired or that nobody holds. A claim is one conditional upsert, so two
aggregators never hold one instrumentation at once; an aggregator that cannot
renew (store or network away) stops aggregating before its leases run out.
When an aggregator dies, its instrumentations move to the others within
``LEASE_TTL + RENEW_EVERY`` seconds (under 10 s).

Partitions of hosts (:data:`fleetscope.bus.messages.PARTITIONS`) are leased the same way, each
aggregator taking its fair share of them too: it receives only those partitions' batches. A
partition that changes hands is merged by its new holder from the next whole second on.

The store clock is each aggregator's own: keep them synchronised (NTP); a skew
well under a second does not matter.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time

from fleetscope.aggregator.aggregator import Aggregator
from fleetscope.bus import messages as m

log = logging.getLogger(__name__)

RENEW_EVERY = 2.0
LEASE_TTL = 6.0
# A lease is given up this long before it runs out if it could not be renewed.
SAFETY = 1.0


def default_name() -> str:
    """A name unique to this process: host and pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


class LeaseKeeper:
    """Keeps an aggregator's shard (its ``owned`` set) in step with the leases in the store."""

    def __init__(self, store, aggregator: Aggregator, name: str | None = None) -> None:
        self.store = store
        self.aggregator = aggregator
        self.name = name or default_name()
        self.valid_until = 0.0

    def renew(self, now: float | None = None) -> tuple[set[int], set[int]]:
        """One round: heartbeat, renew, rebalance, claim; returns the instrumentations owned and
        the partitions held now (the partitions are the caller's to apply: it subscribes)."""
        now = time.time() if now is None else now
        owned = self.store.keep_leases(self.name, sorted(self.aggregator.known), now, LEASE_TTL)
        held = set()
        if self.aggregator.partitioned:
            held = self.store.keep_leases(self.name, range(m.PARTITIONS), now, LEASE_TTL,
                                          table="partition_leases")
        self.valid_until = now + LEASE_TTL - SAFETY
        self.aggregator.own(owned)
        return owned, held

    async def run(self) -> None:
        while True:
            try:
                before = set(self.aggregator.windows), set(self.aggregator.partitions)
                owned, held = await asyncio.to_thread(self.renew)
                if self.aggregator.partitioned:
                    await self.aggregator.hold_partitions(held, time.time())
                if (owned, held) != before:
                    log.info("%s aggregates %d instrumentations and %d partitions", self.name, len(owned),
                             len(held))
            except Exception as exc:  # the store is away: keep what we hold while the leases last
                log.warning("cannot renew leases: %s", exc)
                if time.time() > self.valid_until and (self.aggregator.windows or self.aggregator.partitions):
                    log.warning("leases ran out: stop aggregating until the store is back")
                    self.aggregator.own(set())
                    await self.aggregator.hold_partitions(set(), time.time())
            await asyncio.sleep(RENEW_EVERY)

    def release(self) -> None:
        """Give every lease back at once (on a clean stop), so others take over without waiting."""
        try:
            self.store.release_leases(self.name)
        except Exception as exc:
            log.warning("cannot release leases: %s", exc)
