"""Reverse DNS of IP addresses, bounded and cached: CloudAPI's ``reversedns`` transformation.

Cloud Analytics answered a ``reversedns`` transformation from a cache and started the lookups
it missed without waiting for them ("the first time you request a transformation like
reversedns, you may see no values transformed at all"): an address is in the answer once its
lookup has finished, absent while it is pending, absent for good (until its entry expires) when
the name does not exist. :class:`ReverseDns` does the same, with limits the original lacked,
so that no caller can make the server do unbounded work:

* only keys that are IP addresses are ever looked up (anything else is never a DNS query);
* at most :attr:`ReverseDns.per_call` lookups are started by one call (the rest are pending,
  as the original answered them) and at most :attr:`ReverseDns.in_flight` run at once in the
  whole process, on :attr:`ReverseDns.workers` threads of their own (never on the event loop,
  nor on the threads that answer requests);
* each lookup gives up after :attr:`ReverseDns.timeout` seconds (dnspython's lifetime: all
  retries and servers included); a lookup that failed so (or with SERVFAIL) is not tried
  again for :attr:`ReverseDns.retry_after` seconds;
* answers are cached for their record's TTL, clamped to [:data:`MIN_TTL`, :data:`MAX_TTL`],
  a name that does not exist for :data:`NEGATIVE_TTL`; the cache holds at most
  :attr:`ReverseDns.max_entries` addresses (least recently used evicted first).

The cache is the process's: an account never sees names for keys that are not in its own
answer, since only the keys of its own (tenant-scoped) value are passed in.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import dns.exception
import dns.resolver
import dns.reversename

log = logging.getLogger(__name__)

MIN_TTL = 30.0  # seconds an answer is kept at least (a TTL of 0 would mean a query per request)
MAX_TTL = 3600.0  # ... and at most
NEGATIVE_TTL = 300.0  # seconds "no such name" is kept
DEFAULT_TIMEOUT = 2.0
DEFAULT_PORT = 53


class Entry(NamedTuple):
    """What is known of one address until ``expires`` (monotonic seconds): its names, or None
    when it has none (NXDOMAIN, no PTR record) or its lookup failed."""

    expires: float
    names: list[str] | None


def parse_server(text: str) -> tuple[str, int]:
    """``HOST`` or ``HOST:PORT`` (``[V6]:PORT``) of a DNS server: an IP address, since a name
    would need the resolver it configures; ValueError with the reason otherwise."""
    host, port = text.strip(), DEFAULT_PORT
    if host.startswith("["):
        host, sep, rest = host[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"{text!r} is not HOST[:PORT]")
        if rest:
            port = _port(rest[1:], text)
    elif host.count(":") == 1:
        host, _, rest = host.partition(":")
        port = _port(rest, text)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{host!r} is not an IP address (the DNS server's address)") from None
    return host, port


def _port(text: str, whole: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"{whole!r}: the port must be a number from 1 to 65535")
    return int(text)


class ReverseDns:
    """A bounded, cached reverse resolver; ``servers`` None: the system's (/etc/resolv.conf).

    >>> rdns = ReverseDns([("127.0.0.1", 5353)])
    >>> rdns.names(["10.0.0.1", "(other)"])  # nothing cached yet: the lookup starts
    {}
    >>> rdns.names(["10.0.0.1"])  # a moment later
    {'10.0.0.1': ['web1.example']}
    """

    def __init__(self, servers: list[tuple[str, int]] | None = None, *, timeout: float = DEFAULT_TIMEOUT,
                 per_call: int = 16, in_flight: int = 64, workers: int = 4, max_entries: int = 10_000,
                 retry_after: float = 30.0) -> None:
        assert timeout > 0 and per_call > 0 and in_flight > 0 and workers > 0 and max_entries > 0
        self.servers, self.timeout = servers, timeout
        self.per_call, self.in_flight, self.workers = per_call, in_flight, workers
        self.max_entries, self.retry_after = max_entries, retry_after
        self._cache: OrderedDict[str, Entry] = OrderedDict()
        self._pending: set[str] = set()
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._resolver: dns.resolver.Resolver | None = None
        self.started = 0  # lookups started since the process began (for tests and curiosity)

    def names(self, keys: Iterable[str]) -> dict[str, list[str]]:
        """The names of the keys that are IP addresses, from the cache; starts lookups for those
        it does not know (within the limits) and returns without waiting for them."""
        out: dict[str, list[str]] = {}
        wanted: dict[str, None] = {}  # in the keys' order, once each
        now = time.monotonic()
        with self._lock:
            for key in keys:
                address = canonical_address(key)
                if address is None:
                    continue
                entry = self._cache.get(address)
                if entry is not None and entry.expires > now:
                    self._cache.move_to_end(address)
                    if entry.names:
                        out[key] = list(entry.names)
                elif address not in self._pending:
                    wanted[address] = None
            room = min(self.per_call, self.in_flight - len(self._pending))
            started = list(wanted)[:max(room, 0)]
            self._pending.update(started)
            self.started += len(started)
        for address in started:
            try:
                self._executor().submit(self._lookup, address)
            except RuntimeError:  # closed (the server is stopping): the address stays unknown
                with self._lock:
                    self._pending.discard(address)
        return out

    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            with self._lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="reversedns")
        return self._pool

    def _dns(self) -> dns.resolver.Resolver:
        if self._resolver is None:
            resolver = dns.resolver.Resolver(configure=self.servers is None)
            if self.servers is not None:
                resolver.nameservers = [host for host, _ in self.servers]
                resolver.nameserver_ports = {host: port for host, port in self.servers}
            resolver.timeout = resolver.lifetime = self.timeout
            resolver.cache = None  # ours is bounded; dnspython's would be a second copy
            self._resolver = resolver
        return self._resolver

    def _lookup(self, address: str) -> None:
        try:
            entry = self._resolve(address)
        except Exception as exc:  # never leave the address pending (no /etc/resolv.conf, a bad scope id...)
            log.warning("reverse lookup of %s failed: %s", address, exc)
            entry = Entry(time.monotonic() + self.retry_after, None)
        with self._lock:
            self._pending.discard(address)
            self._cache[address] = entry
            self._cache.move_to_end(address)
            while len(self._cache) > self.max_entries:
                self._cache.popitem(last=False)

    def _resolve(self, address: str) -> Entry:
        try:
            answer = self._dns().resolve(dns.reversename.from_address(address), "PTR",
                                         lifetime=self.timeout)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return Entry(time.monotonic() + NEGATIVE_TTL, None)
        except (dns.exception.Timeout, dns.resolver.NoNameservers, dns.resolver.LifetimeTimeout):
            return Entry(time.monotonic() + self.retry_after, None)
        ttl = min(max(float(answer.rrset.ttl if answer.rrset else 0), MIN_TTL), MAX_TTL)
        names = sorted(str(record.target).rstrip(".") for record in answer)  # as node's dns.reverse
        return Entry(time.monotonic() + ttl, names)


def canonical_address(key: str) -> str | None:
    """``key`` as a canonical IP address, or None when it is not one."""
    if not isinstance(key, str) or len(key) > 45:  # the longest IPv6 text form is 45 characters
        return None
    try:
        return str(ipaddress.ip_address(key))
    except ValueError:
        return None
