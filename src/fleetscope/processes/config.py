"""The configuration of each process, read from flags, the environment and a TOML file.

The ``fleetscope`` commands hand over what the user typed (a flag, or its environment
variable, which Typer reads; None when absent); the functions here check it, fill in
the config file's values and the defaults, and return one typed, immutable config per
process. A flag or environment variable wins over the config file, which wins over the
default. Anything bad raises :class:`~fleetscope.model.errors.InputError` naming the
flag (``port``, ``statsd-prefix``, ``config``, ...), before anything is started.

Light to import (the ``fleetscope`` command imports it for its defaults): the sources and
the store, whose config types appear here, are imported only when a config is built.
"""

from __future__ import annotations

import hashlib
import re
import socket
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fleetscope.model.errors import InputError

if TYPE_CHECKING:
    from fleetscope.sources.otlp import OtlpConfig
    from fleetscope.sources.remote_write import RemoteWriteConfig
    from fleetscope.sources.scrape import Target
    from fleetscope.sources.statsd import StatsdConfig
    from fleetscope.store.history import HistoryConfig

DEFAULT_PORT = 7070
DEFAULT_HOST = "127.0.0.1"
DEFAULT_BUS = "nats://127.0.0.1:4222"
DEFAULT_BUFFER = "64MiB"
DEFAULT_TICK_BUDGET = "50ms"  # agent.budget.DEFAULT_BUDGET, as the flag is written
DEFAULT_AUTH_FAILURES = 10  # api.auth.FAILURES_ALLOWED: per client address and minute
DEFAULT_INGEST_MAX = 1000  # metric names per source, and distinct values per field of a metric
MAX_INGEST_MAX = 1_000_000
NATS_KEYS = ("creds", "nkey", "user", "password", "token", "tls_ca", "tls_cert", "tls_key")


@dataclass(frozen=True)
class IngestConfig:
    """The application sources of a host: StatsD, OTLP, Prometheus scrape and remote write (each
    off by default)."""

    statsd: StatsdConfig | None = None
    otlp: OtlpConfig | None = None
    scrape: tuple[Target, ...] = ()
    max_metrics: int = DEFAULT_INGEST_MAX
    max_keys: int = DEFAULT_INGEST_MAX
    remote_write: RemoteWriteConfig | None = None


@dataclass(frozen=True)
class ServeConfig:
    """`fleetscope serve`: everything in one process."""

    data_dir: Path
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    hostname: str | None = None
    store_url: str | None = None  # default: SQLite in data_dir
    history: HistoryConfig | None = None  # None: the defaults
    ingest: IngestConfig = field(default_factory=IngestConfig)
    tick_budget: float = 0.05  # CPU seconds per instrumentation per tick on the agent
    auth: bool = True  # tokens (or the session of the login link) required; off only on loopback
    auth_failures: int = DEFAULT_AUTH_FAILURES  # failed authentications per client address and minute
    allowed_hosts: tuple[str, ...] = ()  # Host headers answered besides the machine's own names
    public_url: str | None = None  # the address people open (links in alerts); default: host and port
    log_level: str = "warning"
    container_labels: tuple[str, ...] = ()  # container label keys made fields of container metrics
    reverse_dns: str = "system"  # CloudAPI's reversedns: system, off, or DNS servers HOST[:PORT],...
    geoip_db: str | None = None  # CloudAPI's geolocate: a MaxMind database file


@dataclass(frozen=True)
class AgentConfig:
    """`fleetscope agent`: collect on this host and publish to the bus."""

    bus_url: str = DEFAULT_BUS
    nats: dict[str, str | None] = field(default_factory=dict)  # NATS_KEYS: credentials, TLS files
    hostname: str | None = None  # default: this machine's
    labels: dict[str, str] = field(default_factory=dict)
    buffer_bytes: int = 64 << 20
    ingest: IngestConfig = field(default_factory=IngestConfig)
    tick_budget: float = 0.05  # CPU seconds per instrumentation per tick
    log_level: str = "info"
    container_labels: tuple[str, ...] = ()  # container label keys made fields of container metrics


@dataclass(frozen=True)
class FleetConfig:
    """`fleetscope aggregator` and `fleetscope api`: a bus and the shared store."""

    section: str  # "aggregator" or "api": the config file's table, and the bus connection's name
    store_url: str
    bus_url: str = DEFAULT_BUS
    nats: dict[str, str | None] = field(default_factory=dict)
    name: str | None = None  # aggregator: unique in the fleet (default host:pid)
    host: str = DEFAULT_HOST  # api: where to listen
    port: int = DEFAULT_PORT
    allowed_hosts: tuple[str, ...] = ()  # api: Host headers answered besides the machine's names
    auth_failures: int = DEFAULT_AUTH_FAILURES  # api: failed authentications per address and minute
    tls_cert: str | None = None  # api: serve HTTPS with this certificate (PEM) and key
    tls_key: str | None = None
    public_url: str = ""  # aggregator: the fleet's dashboard address, for links in alerts
    log_level: str = "info"
    reverse_dns: str = "system"  # api: CloudAPI's reversedns (see ServeConfig)
    geoip_db: str | None = None  # api: CloudAPI's geolocate


# -- the TOML file ------------------------------------------------------------------------------


def load_section(path: Path | None, section: str) -> dict[str, Any]:
    """The ``[section]`` table of a TOML config file (top-level keys apply to every section)."""
    if path is None:
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InputError("config", f"cannot read {path}: {exc}") from None
    common = {k: v for k, v in data.items() if not isinstance(v, dict)}
    table = data.get(section, {})
    if not isinstance(table, dict):
        raise InputError("config", f"{path}: [{section}] is not a table")
    return {**common, **table}


def setting(value: Any, cfg: dict[str, Any], key: str, default: Any = None) -> Any:
    """A flag or environment variable wins over the config file, which wins over the default."""
    return value if value is not None else cfg.get(key, default)


def nats_options(cfg: dict[str, Any], flags: dict[str, str | None]) -> dict[str, str | None]:
    """NATS credentials and TLS files: each flag (or its environment variable), else the config
    file's ``nats_<key>`` (``nats_creds``, ``nats_tls_ca``, ...)."""
    assert set(flags) <= set(NATS_KEYS), flags
    return {key: setting(flags.get(key), cfg, f"nats_{key}") for key in NATS_KEYS}


# -- pieces ---------------------------------------------------------------------------------------


def check_port(field_name: str, host: str, port: int, *kinds: int) -> None:
    """InputError naming ``field_name`` unless ``host:port`` can be bound (for each socket kind)."""
    if not 1 <= port <= 65535:
        raise InputError(field_name, f"{port} is not a TCP port (1-65535)")
    for kind in kinds or (socket.SOCK_STREAM,):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, kind) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as exc:
                raise InputError(field_name, f"cannot listen on {host}:{port}: {exc.strerror}") from None


def check_auth_failures(n: int) -> int:
    if not 1 <= n <= 100_000:
        raise InputError("auth-failures", f"{n} is not between 1 and 100000 (per address and minute)")
    return n


def is_loopback(host: str) -> bool:
    """Whether listening on ``host`` is reachable from this machine only."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_patterns(hosts: list[str]) -> tuple[str, ...]:
    """``--allowed-host`` values: names or addresses, ``*.example.com`` for a whole domain."""
    import re

    for h in hosts:
        if not re.fullmatch(r"(\*\.)?[A-Za-z0-9]([A-Za-z0-9.:_-]*[A-Za-z0-9])?", h):
            raise InputError("allowed-host", f"{h!r} is not a host name, an address or *.domain")
    return tuple(hosts)


def labels(pairs: list[str]) -> dict[str, str]:
    """``key=value`` host labels; InputError naming ``label`` for anything else."""
    found = {}
    for pair in pairs:
        key, sep, val = pair.partition("=")
        if not sep or not key.isidentifier() or not val:
            raise InputError("label", f"{pair!r} is not key=value (key a plain name)")
        found[key] = val
    return found


def container_labels(keys: list[str]) -> tuple[str, ...]:
    """The container label keys to make fields of (``--container-label``), checked."""
    from fleetscope.sources.runtimes import Names

    try:
        return Names(keys, podman=_NO_RUNTIME, docker=_NO_RUNTIME, kubernetes=_NO_RUNTIME).labels
    except ValueError as exc:
        raise InputError("container-label", str(exc)) from None


class _NoRuntime:
    """Stands for a runtime's state while checking labels: nothing is read."""

    runtime = ""

    @staticmethod
    def lookup(ident: str, pod_uid: str = "") -> None:
        return None


_NO_RUNTIME = _NoRuntime()


def _prefix(name: str, prefix: str) -> None:
    from fleetscope.sources.statsd_parse import sanitize

    if not prefix or sanitize(prefix) != prefix:
        raise InputError(f"{name}-prefix", f"{prefix!r} is not a plain name (letters, digits, _)")


def remote_write_token(path: str | None, host: str) -> str | None:
    """The SHA-256 (hex) of the token in ``path`` (its first line), or None without one, which
    only a loopback address may have: a receiver other machines reach takes pushes from them."""
    field = "remote-write-token-file"
    if path is None:
        if not is_loopback(host):
            raise InputError(field, f"remote write on {host} can be reached from other machines: give a "
                             "file holding a token, which Prometheus sends (authorization: credentials_file)")
        return None
    try:
        token = Path(path).read_text().split("\n", 1)[0].strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(field, f"cannot read {path}: {exc}") from None
    if len(token) < 16:
        raise InputError(field, f"{path} must hold a token of at least 16 characters on its first line")
    return hashlib.sha256(token.encode()).hexdigest()


def ingest_config(*, statsd: str | None, statsd_prefix: str, otlp: str | None, otlp_prefix: str,
                  scrape: list[str], max_metrics: int, max_keys: int, remote_write: str | None = None,
                  remote_write_prefix: str = "prom", remote_write_token_file: str | None = None
                  ) -> IngestConfig:
    """StatsD at ``[HOST:]PORT``, OTLP/HTTP at ``[HOST:]PORT``, scrape targets ``URL[,interval]``,
    Prometheus remote write at ``[HOST:]PORT``, each capped at ``max_metrics`` names and
    ``max_keys`` values per field; the listening ports are checked to be free. Remote write
    asks for the token in ``remote_write_token_file``, and must have one unless it listens on
    loopback."""
    from fleetscope.sources.otlp import OtlpConfig
    from fleetscope.sources.remote_write import RemoteWriteConfig
    from fleetscope.sources.scrape import parse_target
    from fleetscope.sources.statsd import StatsdConfig, parse_address

    if not 1 <= max_metrics <= MAX_INGEST_MAX:
        raise InputError("ingest-max-metrics", f"must be between 1 and {MAX_INGEST_MAX}")
    if not 1 <= max_keys <= MAX_INGEST_MAX:
        raise InputError("ingest-max-keys", f"must be between 1 and {MAX_INGEST_MAX}")
    statsd_config = otlp_config = None
    if statsd is not None:
        host, port = parse_address(statsd, "statsd")
        _prefix("statsd", statsd_prefix)
        check_port("statsd", host, port, socket.SOCK_STREAM, socket.SOCK_DGRAM)
        statsd_config = StatsdConfig(host=host, port=port, prefix=statsd_prefix, max_metrics=max_metrics,
                                     max_keys=max_keys)
    if otlp is not None:
        host, port = parse_address(otlp, "otlp")
        _prefix("otlp", otlp_prefix)
        check_port("otlp", host, port, socket.SOCK_STREAM)
        otlp_config = OtlpConfig(host=host, port=port, prefix=otlp_prefix, max_metrics=max_metrics,
                                 max_keys=max_keys)
    remote_write_config = None
    if remote_write is not None:
        host, port = parse_address(remote_write, "remote-write")
        _prefix("remote-write", remote_write_prefix)
        check_port("remote-write", host, port, socket.SOCK_STREAM)
        token = remote_write_token(remote_write_token_file, host)
        remote_write_config = RemoteWriteConfig(host=host, port=port, prefix=remote_write_prefix,
                                                max_metrics=max_metrics, max_keys=max_keys,
                                                token_sha256=token)
    return IngestConfig(statsd_config, otlp_config, tuple(parse_target(t) for t in scrape),
                        max_metrics, max_keys, remote_write_config)


# -- one per process ------------------------------------------------------------------------------


def serve_config(*, data_dir: Path, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                 hostname: str | None = None, store: str | None = None, history: str | None = None,
                 flush_every: float = 5.0, log_level: str = "warning", statsd: str | None = None,
                 statsd_prefix: str = "app", otlp: str | None = None, otlp_prefix: str = "otel",
                 remote_write: str | None = None, remote_write_prefix: str = "prom",
                 remote_write_token_file: str | None = None,
                 scrape: list[str] | None = None, ingest_max_metrics: int = DEFAULT_INGEST_MAX,
                 ingest_max_keys: int = DEFAULT_INGEST_MAX,
                 tick_budget: str = DEFAULT_TICK_BUDGET, no_auth: bool = False,
                 allowed_host: list[str] | None = None,
                 auth_failures: int = DEFAULT_AUTH_FAILURES, public_url: str | None = None,
                 container_label: list[str] | None = None, reverse_dns: str = "system",
                 geoip_db: str | None = None) -> ServeConfig:
    """The config of `fleetscope serve` from its flags (it reads no config file)."""
    from fleetscope.agent.budget import parse_budget
    from fleetscope.model.tiers import DEFAULT_RETENTION, validate_retention
    from fleetscope.store.history import HistoryConfig

    check_port("port", host, port)
    if no_auth and not is_loopback(host):
        raise InputError("no-auth", f"is for a single-user laptop: refused on {host}, which other "
                         "machines can reach (use tokens: fleetscope token create)")
    if not 0.1 <= flush_every <= 3600:
        raise InputError("flush-every", "must be between 0.1 and 3600 seconds")
    ingest = ingest_config(statsd=statsd, statsd_prefix=statsd_prefix, otlp=otlp, otlp_prefix=otlp_prefix,
                           remote_write=remote_write, remote_write_prefix=remote_write_prefix,
                           remote_write_token_file=remote_write_token_file,
                           scrape=scrape or [], max_metrics=ingest_max_metrics, max_keys=ingest_max_keys)
    retention = {**DEFAULT_RETENTION, **validate_retention(history or {}, field="history")}
    return ServeConfig(data_dir=data_dir, host=host, port=port, hostname=hostname, store_url=store,
                       history=HistoryConfig(retention=retention, flush_every=flush_every), ingest=ingest,
                       tick_budget=parse_budget(tick_budget), auth=not no_auth,
                       auth_failures=check_auth_failures(auth_failures),
                       allowed_hosts=host_patterns(allowed_host or []),
                       public_url=check_public_url(public_url) if public_url else None, log_level=log_level,
                       container_labels=container_labels(container_label or []),
                       **check_transforms(reverse_dns, geoip_db))


def agent_config(*, config: Path | None = None, bus: str | None = None, hostname: str | None = None,
                 label: list[str] | None = None, nats: dict[str, str | None] | None = None,
                 buffer: str | None = None, log_level: str = "info", statsd: str | None = None,
                 statsd_prefix: str | None = None, otlp: str | None = None, otlp_prefix: str | None = None,
                 remote_write: str | None = None, remote_write_prefix: str | None = None,
                 remote_write_token_file: str | None = None,
                 scrape: list[str] | None = None, ingest_max_metrics: int | None = None,
                 ingest_max_keys: int | None = None, tick_budget: str | None = None,
                 container_label: list[str] | None = None) -> AgentConfig:
    """The config of `fleetscope agent`: its flags over the ``[agent]`` table of ``config``."""
    from fleetscope.agent.budget import parse_budget
    from fleetscope.model.types import BYTES, parse_quantity

    cfg = load_section(config, "agent")
    buffer_bytes = int(parse_quantity(str(setting(buffer, cfg, "buffer", DEFAULT_BUFFER)), BYTES, "buffer"))
    ingest = ingest_config(
        statsd=setting(statsd, cfg, "statsd"),
        statsd_prefix=str(setting(statsd_prefix, cfg, "statsd_prefix", "app")),
        otlp=setting(otlp, cfg, "otlp"),
        otlp_prefix=str(setting(otlp_prefix, cfg, "otlp_prefix", "otel")),
        remote_write=setting(remote_write, cfg, "remote_write"),
        remote_write_prefix=str(setting(remote_write_prefix, cfg, "remote_write_prefix", "prom")),
        remote_write_token_file=setting(remote_write_token_file, cfg, "remote_write_token_file"),
        scrape=list(scrape or cfg.get("scrape", [])),
        max_metrics=int(setting(ingest_max_metrics, cfg, "ingest_max_metrics", DEFAULT_INGEST_MAX)),
        max_keys=int(setting(ingest_max_keys, cfg, "ingest_max_keys", DEFAULT_INGEST_MAX)))
    table_labels = cfg.get("labels", {})
    if not isinstance(table_labels, dict):
        raise InputError("config", f"{config}: labels is not a table of key = value")
    return AgentConfig(bus_url=str(setting(bus, cfg, "bus", DEFAULT_BUS)), nats=nats_options(cfg, nats or {}),
                       hostname=setting(hostname, cfg, "hostname"),
                       labels={**table_labels, **labels(label or [])}, buffer_bytes=buffer_bytes,
                       ingest=ingest, log_level=log_level,
                       tick_budget=parse_budget(setting(tick_budget, cfg, "tick_budget",
                                                        DEFAULT_TICK_BUDGET)),
                       container_labels=container_labels(
                           list(container_label or cfg.get("container_labels", []))))


def fleet_config(section: str, *, config: Path | None = None, bus: str | None = None,
                 store: str | None = None, nats: dict[str, str | None] | None = None,
                 log_level: str = "info", allowed_host: list[str] | None = None,
                 tls_cert: str | None = None, tls_key: str | None = None, auth_failures: int | None = None,
                 **extra: Any) -> FleetConfig:
    """The config of `fleetscope aggregator` or `fleetscope api` (``section``): flags over the
    ``[section]`` table of ``config``; ``extra`` are the process's own settings (name, host, port)."""
    cfg = load_section(config, section)
    tls_cert, tls_key = setting(tls_cert, cfg, "tls_cert"), setting(tls_key, cfg, "tls_key")
    if bool(tls_cert) != bool(tls_key):
        raise InputError("tls-key" if tls_cert else "tls-cert", "HTTPS needs both --tls-cert and --tls-key")
    for name, path in (("tls-cert", tls_cert), ("tls-key", tls_key)):
        if path and not Path(path).is_file():
            raise InputError(name, f"no file {path}")
    extra.update(allowed_hosts=host_patterns(list(allowed_host or cfg.get("allowed_hosts", []))),
                 tls_cert=tls_cert, tls_key=tls_key,
                 auth_failures=check_auth_failures(int(setting(auth_failures, cfg, "auth_failures",
                                                                    DEFAULT_AUTH_FAILURES))))
    if section == "api":
        rdns = str(setting(extra.pop("reverse_dns", None), cfg, "reverse_dns", "system"))
        extra.update(check_transforms(rdns, setting(extra.pop("geoip_db", None), cfg, "geoip_db")))
    if "public_url" in extra or "public_url" in cfg:
        url = setting(extra.pop("public_url", None), cfg, "public_url")
        extra["public_url"] = check_public_url(str(url)) if url else ""
    store_url = setting(store, cfg, "store")
    if not store_url:
        raise InputError("store", "is required: the shared store, e.g. postgresql://fleetscope@db/fleetscope")
    return FleetConfig(section=section, store_url=str(store_url),
                       bus_url=str(setting(bus, cfg, "bus", DEFAULT_BUS)), nats=nats_options(cfg, nats or {}),
                       log_level=log_level, **extra)


def check_transforms(reverse_dns: str, geoip_db: str | None) -> dict[str, Any]:
    """``--reverse-dns`` and ``--geoip-db`` (CloudAPI's transformations) as config fields;
    InputError naming the flag that is wrong."""
    from fleetscope.api.cloudapi import transforms

    try:
        transforms.from_settings(reverse_dns, None).close()
    except ValueError as exc:
        raise InputError("reverse-dns", f"{exc} (or system, or off)") from None
    if geoip_db:
        try:
            transforms.from_settings(transforms.OFF, geoip_db).close()
        except ValueError as exc:
            raise InputError("geoip-db", str(exc)) from None
    return {"reverse_dns": reverse_dns.strip(), "geoip_db": geoip_db or None}


def check_public_url(url: str) -> str:
    """``--public-url``: an http(s) address without a trailing slash; InputError otherwise."""
    if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", url):
        raise InputError("public-url", f"{url!r} is not an http:// or https:// address such as "
                         "https://fleet.example.com")
    return url.rstrip("/")
