"""`fleetscope serve`, `agent`, `aggregator` and `api`: the long-running processes.

Each command only declares its options (flags and environment variables) and hands what
the user typed to :mod:`fleetscope.processes.config`, which checks it and reads the TOML
file; :mod:`fleetscope.processes` assembles and runs the process. Heavy imports (uvicorn,
the agent, the sources) happen inside the commands, so the client commands start fast.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any

import typer
from platformdirs import user_data_dir

from fleetscope import __version__
from fleetscope.cli.commands.common import fail
from fleetscope.model.errors import InputError
from fleetscope.processes.config import (
    DEFAULT_AUTH_FAILURES,
    DEFAULT_HOST,
    DEFAULT_PORT,
    DEFAULT_TICK_BUDGET,
    agent_config,
    fleet_config,
    serve_config,
)


@contextmanager
def refusing_bad_config() -> Iterator[None]:
    """A refused setting ends the command with ``error: <field>: <message>`` and status 1."""
    try:
        yield
    except InputError as exc:
        fail(str(exc))


ContainerLabel = Annotated[list[str] | None, typer.Option(
    help="A container label key (e.g. app) to make a field of the container metrics, read from "
         "the container's runtime (repeatable).", show_default=False)]
PublicUrl = Annotated[str | None, typer.Option(
    help="The address people open the dashboard at (links in alert notifications), e.g. "
         "https://fleet.example.com.", show_default=False)]
ReverseDns = Annotated[str | None, typer.Option(
    help="CloudAPI's reversedns transformation: 'system' (the resolvers of /etc/resolv.conf), "
         "'off', or DNS servers HOST\\[:PORT],... (default: system)", show_default=False)]
GeoIpDb = Annotated[str | None, typer.Option(
    help="A MaxMind GeoIP database (.mmdb) for CloudAPI's geolocate transformation (none is "
         "shipped; without one, geolocate is not offered).", show_default=False)]


def serve(
    port: int = typer.Option(DEFAULT_PORT, help="TCP port of the API and dashboard."),
    host: str = typer.Option(DEFAULT_HOST, help="Address to listen on."),
    data_dir: Path = typer.Option(Path(user_data_dir("fleetscope")), help="Where the store lives."),
    hostname: str = typer.Option(None, help="Host name to report (default: this machine's)."),
    log_level: str = typer.Option("warning", help="debug, info, warning or error."),
    store: str = typer.Option(None, help="Store URL: sqlite:///path/to/file.db or "
                              "postgresql://user@host/dbname (default: SQLite in the data dir)."),
    history: str = typer.Option(None, help="Retention of the history tiers, e.g. "
                                "'second=7d,minute=30d,hour=1y' (these are the defaults)."),
    flush_every: float = typer.Option(5.0, help="Seconds between writes of new history to the store "
                                      "(a crash loses at most these)."),
    statsd: str = typer.Option(None, help="Receive StatsD (UDP and TCP) at [HOST:]PORT, e.g. 8125."),
    statsd_prefix: str = typer.Option("app", help="Module of the metrics received over StatsD."),
    otlp: str = typer.Option(None, help="Receive OpenTelemetry metrics over OTLP/HTTP at [HOST:]PORT, "
                             "e.g. 4318 (POST /v1/metrics, protobuf or JSON)."),
    otlp_prefix: str = typer.Option("otel", help="Module of the metrics received over OTLP."),
    remote_write: str = typer.Option(None, help="Receive Prometheus remote write at [HOST:]PORT, e.g. "
                                     "9201 (POST /api/v1/write)."),
    remote_write_prefix: str = typer.Option("prom", help="Module of the series received over remote "
                                            "write."),
    remote_write_token_file: str = typer.Option(None, help="A file whose first line is the token remote "
                                                "writers must send (Authorization: Bearer); needed "
                                                "unless --remote-write listens on loopback."),
    scrape: list[str] = typer.Option([], help="Scrape Prometheus/OpenMetrics text at URL[,interval "
                                     "seconds] (default 10 s; repeatable)."),
    ingest_max_metrics: int = typer.Option(1000, help="StatsD, OTLP, scrape, remote write: at most this "
                                           "many metric names per source (more are dropped and counted)."),
    ingest_max_keys: int = typer.Option(1000, help="StatsD, OTLP, scrape, remote write: at most this many "
                                        "distinct values per field of a metric (more are dropped and "
                                        "counted)."),
    tick_budget: str = typer.Option(DEFAULT_TICK_BUDGET, help="CPU each instrumentation may use per tick "
                                    "on the agent; one over it is paused there with a warning (1ms..1s)."),
    no_auth: bool = typer.Option(False, "--no-auth", help="No tokens at all: for a single-user laptop "
                                 "(refused unless listening on loopback)."),
    allowed_host: AllowedHost = None,
    auth_failures: AuthFailures = DEFAULT_AUTH_FAILURES,
    public_url: PublicUrl = None,
    container_label: ContainerLabel = None,
    reverse_dns: ReverseDns = None,
    geoip_db: GeoIpDb = None,
) -> None:
    """Run everything on this host: agent, aggregator, store, API and dashboard.

    Prints a one-time login address for the dashboard (unless --no-auth)."""
    from fleetscope.processes import serve as process
    from fleetscope.processes.common import configure_logging

    with refusing_bad_config():
        config = serve_config(data_dir=data_dir, host=host, port=port, hostname=hostname, store=store,
                              history=history, flush_every=flush_every, log_level=log_level, statsd=statsd,
                              statsd_prefix=statsd_prefix, otlp=otlp, otlp_prefix=otlp_prefix,
                              remote_write=remote_write, remote_write_prefix=remote_write_prefix,
                              remote_write_token_file=remote_write_token_file, scrape=scrape,
                              ingest_max_metrics=ingest_max_metrics, ingest_max_keys=ingest_max_keys,
                              tick_budget=tick_budget, no_auth=no_auth,
                              allowed_host=allowed_host, auth_failures=auth_failures,
                              public_url=public_url, container_label=container_label,
                              reverse_dns=reverse_dns or "system", geoip_db=geoip_db)
        configure_logging(log_level)
        application = process.serve_app(config)
    typer.echo(f"fleetscope {__version__} serving at http://{host}:{port}/ (data in {data_dir})")
    link = process.login_link(application, config)
    if link:
        typer.echo(f"Open the dashboard (this address logs you in, once; valid for a day):\n    {link}")
    else:
        typer.echo("Authentication is off (--no-auth): anyone who can reach this port is admin.")
    process.run(application, config)


# -- options of the fleet processes ---------------------------------------------------------------

BusUrl = Annotated[str | None, typer.Option("--bus", envvar="FLEETSCOPE_BUS",
                                            help="NATS URL, e.g. nats://nats1:4222.")]
StoreUrl = Annotated[str | None, typer.Option("--store", envvar="FLEETSCOPE_STORE",
                                              help="postgresql://user@host/db (or sqlite:///path).")]
# The bus's credentials and TLS files: --nats-* flags, FLEETSCOPE_NATS_* variables, nats_* keys.
Creds = Annotated[str | None, typer.Option("--nats-creds", envvar="FLEETSCOPE_NATS_CREDS",
                                           help="NATS credentials file (JWT and seed).")]
User = Annotated[str | None, typer.Option("--nats-user", envvar="FLEETSCOPE_NATS_USER", help="NATS user.")]
Password = Annotated[str | None, typer.Option("--nats-password", envvar="FLEETSCOPE_NATS_PASSWORD",
                                              help="NATS password.")]
Token = Annotated[str | None, typer.Option("--nats-token", envvar="FLEETSCOPE_NATS_TOKEN",
                                           help="NATS token.")]
NKey = Annotated[str | None, typer.Option(
    "--nats-nkey", envvar="FLEETSCOPE_NATS_NKEY",
    help="File with this process's NKey seed (fleetscope nats-config).")]
TlsCa = Annotated[str | None, typer.Option("--nats-tls-ca", envvar="FLEETSCOPE_NATS_TLS_CA",
                                           help="CA certificate of the NATS servers.")]
TlsCert = Annotated[str | None, typer.Option("--nats-tls-cert", envvar="FLEETSCOPE_NATS_TLS_CERT",
                                             help="Client certificate for NATS.")]
TlsKey = Annotated[str | None, typer.Option("--nats-tls-key", envvar="FLEETSCOPE_NATS_TLS_KEY",
                                            help="Client key for NATS.")]
AllowedHost = Annotated[list[str] | None, typer.Option(
    help="Another Host header to answer (a name the server is reached by; *.domain; repeatable). "
         "Requests for any other are refused, against DNS rebinding.")]
AuthFailures = Annotated[int, typer.Option(
    help="Failed authentications allowed per client address and minute (then 429).")]
LogLevel = Annotated[str, typer.Option(help="debug, info, warning or error.")]


def _nats(creds: str | None, nkey: str | None, user: str | None, password: str | None, token: str | None,
          tls_ca: str | None, tls_cert: str | None, tls_key: str | None) -> dict[str, str | None]:
    """The NATS flags by name, as fleetscope.processes.config.NATS_KEYS."""
    return {"creds": creds, "nkey": nkey, "user": user, "password": password, "token": token,
            "tls_ca": tls_ca, "tls_cert": tls_cert, "tls_key": tls_key}


def config_option(section: str) -> object:
    # "\[": a literal bracket; rich markup (Typer's help) would take "[agent]" for a style and drop it.
    return typer.Option(envvar="FLEETSCOPE_CONFIG",
                        help=f"TOML file (\\[{section}] table, and top-level keys).")


def agent(
    bus: BusUrl = None,
    hostname: Annotated[str | None, typer.Option(envvar="FLEETSCOPE_HOSTNAME",
                                                 help="Host name to report.")] = None,
    label: Annotated[list[str] | None, typer.Option(
        help="A host label key=value, usable as a field (repeatable).")] = None,
    creds: Creds = None, nkey: NKey = None, user: User = None, password: Password = None, token: Token = None,
    tls_ca: TlsCa = None, tls_cert: TlsCert = None, tls_key: TlsKey = None,
    buffer: Annotated[str | None, typer.Option(envvar="FLEETSCOPE_BUFFER",
                                               help="Memory for batches while the bus is away, "
                                                    "e.g. 64MiB.")] = None,
    config: Annotated[Path | None, config_option("agent")] = None,
    log_level: LogLevel = "info",
    statsd: Annotated[str | None, typer.Option(envvar="FLEETSCOPE_STATSD", help="Receive StatsD (UDP and "
                                               "TCP) at [HOST:]PORT, e.g. 8125.")] = None,
    statsd_prefix: Annotated[str | None, typer.Option(
        help="Module of the metrics received over StatsD (app).")] = None,
    otlp: Annotated[str | None, typer.Option(envvar="FLEETSCOPE_OTLP",
                                             help="Receive OTLP/HTTP metrics at [HOST:]PORT, "
                                                  "e.g. 4318.")] = None,
    otlp_prefix: Annotated[str | None, typer.Option(
        help="Module of the metrics received over OTLP (otel).")] = None,
    remote_write: Annotated[str | None, typer.Option(envvar="FLEETSCOPE_REMOTE_WRITE",
                                                     help="Receive Prometheus remote write at "
                                                          "[HOST:]PORT, e.g. 9201.")] = None,
    remote_write_prefix: Annotated[str | None, typer.Option(
        help="Module of the series received over remote write (prom).")] = None,
    remote_write_token_file: Annotated[str | None, typer.Option(
        envvar="FLEETSCOPE_REMOTE_WRITE_TOKEN_FILE",
        help="A file whose first line is the token remote writers must send (Authorization: Bearer); "
             "needed unless --remote-write listens on loopback.")] = None,
    scrape: Annotated[list[str] | None, typer.Option(
        help="Scrape Prometheus/OpenMetrics text at URL[,interval seconds] (default 10 s; "
             "repeatable).")] = None,
    ingest_max_metrics: Annotated[int | None, typer.Option(
        help="StatsD, OTLP, scrape, remote write: at most this many metric names per source (more are "
             "dropped and counted).")] = None,
    ingest_max_keys: Annotated[int | None, typer.Option(
        help="StatsD, OTLP, scrape, remote write: at most this many distinct values per field of a "
             "metric (more are dropped and counted).")] = None,
    tick_budget: Annotated[str | None, typer.Option(
        envvar="FLEETSCOPE_TICK_BUDGET", help="CPU each instrumentation may use per tick (50ms); one "
        "over it is paused on this host with a warning (1ms..1s).")] = None,
    container_label: ContainerLabel = None,
) -> None:
    """Collect on this host and publish to the fleet's bus (NATS)."""
    from fleetscope.processes import agent as process
    from fleetscope.processes.common import configure_logging

    with refusing_bad_config():
        cfg = agent_config(config=config, bus=bus, hostname=hostname, label=label, buffer=buffer,
                           nats=_nats(creds, nkey, user, password, token, tls_ca, tls_cert, tls_key),
                           log_level=log_level, statsd=statsd, statsd_prefix=statsd_prefix, otlp=otlp,
                           otlp_prefix=otlp_prefix, remote_write=remote_write,
                           remote_write_prefix=remote_write_prefix,
                           remote_write_token_file=remote_write_token_file, scrape=scrape,
                           ingest_max_metrics=ingest_max_metrics,
                           ingest_max_keys=ingest_max_keys, tick_budget=tick_budget,
                           container_label=container_label)
        configure_logging(log_level)
        running = process.assemble(cfg)
    typer.echo(f"fleetscope agent {__version__} on {running.agent.hostname}, bus {cfg.bus_url}")
    process.run(running)


def _run_fleet_process(process: ModuleType, banner: str, *, section: str, **settings: Any) -> None:
    """Check the config of `fleetscope <section>`, open its bus and store, print ``banner``
    (with ``{version}`` and ``{bus}``) and run ``process`` (fleetscope.processes.aggregator or .api)."""
    from fleetscope.processes.common import configure_logging

    with refusing_bad_config():
        cfg = fleet_config(section, **settings)
        parts = process.assemble(cfg)
    configure_logging(cfg.log_level)
    typer.echo(banner.format(version=__version__, bus=cfg.bus_url))
    process.run(parts, cfg)


def aggregator(
    bus: BusUrl = None, store: StoreUrl = None,
    name: Annotated[str | None, typer.Option(help="A name unique in the fleet (default host:pid).")] = None,
    creds: Creds = None, nkey: NKey = None, user: User = None, password: Password = None, token: Token = None,
    tls_ca: TlsCa = None, tls_cert: TlsCert = None, tls_key: TlsKey = None,
    config: Annotated[Path | None, config_option("aggregator")] = None, log_level: LogLevel = "info",
    public_url: PublicUrl = None,
) -> None:
    """Merge the agents' data (a share of the instrumentations) and write history to the store;
    evaluate their alert rules."""
    from fleetscope.processes import aggregator as process

    _run_fleet_process(process, "fleetscope aggregator {version}, bus {bus}", section="aggregator",
                       config=config, bus=bus, store=store, log_level=log_level, name=name,
                       public_url=public_url,
                       nats=_nats(creds, nkey, user, password, token, tls_ca, tls_cert, tls_key))


def api(
    bus: BusUrl = None, store: StoreUrl = None,
    port: Annotated[int, typer.Option(help="TCP port of the API and dashboard.")] = DEFAULT_PORT,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = DEFAULT_HOST,
    creds: Creds = None, nkey: NKey = None, user: User = None, password: Password = None, token: Token = None,
    tls_ca: TlsCa = None, tls_cert: TlsCert = None, tls_key: TlsKey = None,
    config: Annotated[Path | None, config_option("api")] = None, log_level: LogLevel = "warning",
    allowed_host: AllowedHost = None,
    auth_failures: Annotated[int | None, typer.Option(
        help="Failed authentications allowed per client address and minute (10).")] = None,
    https_cert: Annotated[str | None, typer.Option("--tls-cert", envvar="FLEETSCOPE_TLS_CERT",
                                                   help="Serve HTTPS with this certificate (PEM).")] = None,
    https_key: Annotated[str | None, typer.Option("--tls-key", envvar="FLEETSCOPE_TLS_KEY",
                                                  help="The certificate's private key (PEM).")] = None,
    reverse_dns: ReverseDns = None,
    geoip_db: GeoIpDb = None,
) -> None:
    """Serve the API and the dashboard of a fleet (any number of these, behind a balancer).

    Every request needs a token: make the first with `fleetscope token create --store URL`."""
    from fleetscope.processes import api as process

    banner = f"fleetscope api {{version}} serving at {'https' if https_cert else 'http'}://{host}:{port}/"
    _run_fleet_process(process, banner + " (bus {bus})",
                       section="api", config=config, bus=bus, store=store, log_level=log_level, host=host,
                       port=port, nats=_nats(creds, nkey, user, password, token, tls_ca, tls_cert, tls_key),
                       allowed_host=allowed_host, tls_cert=https_cert, tls_key=https_key,
                       auth_failures=auth_failures, reverse_dns=reverse_dns, geoip_db=geoip_db)
