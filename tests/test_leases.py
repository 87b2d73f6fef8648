"""Aggregator leases in the shared store, on both backends: fair shares, takeover, no double owner."""

from __future__ import annotations

import threading

from fleetscope.store.open import open_store
from tests.store_backends import backend_url, pg_url, store  # noqa: F401 - fixtures

TTL = 6.0
IDS = list(range(1, 11))


def test_one_aggregator_holds_everything_and_renews(store) -> None:  # noqa: F811
    assert store.keep_leases("a", IDS, now=100.0, ttl=TTL) == set(IDS)
    assert store.keep_leases("a", IDS, now=102.0, ttl=TTL) == set(IDS)
    # Deleted instrumentations are let go; new ones are taken.
    assert store.keep_leases("a", [*IDS[:5], 42], now=104.0, ttl=TTL) == {1, 2, 3, 4, 5, 42}


def test_a_second_aggregator_gets_a_fair_share_and_nothing_is_held_twice(store, backend_url) -> None:  # noqa: F811
    other = open_store(backend_url)  # another process
    try:
        assert store.keep_leases("a", IDS, now=100.0, ttl=TTL) == set(IDS)
        assert other.keep_leases("b", IDS, now=100.5, ttl=TTL) == set(), "all held and valid"
        a = store.keep_leases("a", IDS, now=102.0, ttl=TTL)  # sees b: gives back half
        b = other.keep_leases("b", IDS, now=102.5, ttl=TTL)
        assert len(a) == 5 and len(b) == 5 and not a & b and a | b == set(IDS)
        # Both keep their shares on the next rounds.
        assert store.keep_leases("a", IDS, now=104.0, ttl=TTL) == a
        assert other.keep_leases("b", IDS, now=104.5, ttl=TTL) == b
    finally:
        other.close()


def test_a_dead_aggregators_share_moves_after_its_leases_expire(store, backend_url) -> None:  # noqa: F811
    other = open_store(backend_url)
    try:
        store.keep_leases("a", IDS, now=100.0, ttl=TTL)
        other.keep_leases("b", IDS, now=100.5, ttl=TTL)
        a = store.keep_leases("a", IDS, now=102.0, ttl=TTL)
        other.keep_leases("b", IDS, now=102.5, ttl=TTL)
        # a dies after its round at 102: nothing of a's moves while its leases are valid...
        assert not other.keep_leases("b", IDS, now=104.5, ttl=TTL) & a
        # ...and everything is b's once they expired (a is no longer live either).
        assert other.keep_leases("b", IDS, now=108.5, ttl=TTL) == set(IDS)
    finally:
        other.close()


def test_a_clean_stop_frees_everything_at_once(store, backend_url) -> None:  # noqa: F811
    other = open_store(backend_url)
    try:
        store.keep_leases("a", IDS, now=100.0, ttl=TTL)
        store.release_leases("a")
        assert other.keep_leases("b", IDS, now=100.1, ttl=TTL) == set(IDS)
    finally:
        other.close()


def test_racing_aggregators_never_hold_the_same_instrumentation(store, backend_url) -> None:  # noqa: F811
    stores = [open_store(backend_url) for _ in range(4)]
    held: dict[str, set[int]] = {}
    many = list(range(1, 41))
    try:
        for round_ in range(4):
            now = 100.0 + 2 * round_

            def renew(i: int, now: float = now) -> None:
                held[f"agg{i}"] = stores[i].keep_leases(f"agg{i}", many, now=now, ttl=TTL)

            threads = [threading.Thread(target=renew, args=(i,)) for i in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            owners: dict[int, str] = {}
            for name, ids in held.items():
                for inst_id in ids:
                    assert inst_id not in owners, f"{inst_id} held by {owners[inst_id]} and {name}"
                    owners[inst_id] = name
        assert set(owners) == set(many), "after a few rounds everything is aggregated"
        assert max(len(ids) for ids in held.values()) <= 10, "fair shares"
    finally:
        for s in stores:
            s.close()
