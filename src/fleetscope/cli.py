"""The `fleetscope` command: `serve` here, the API client commands in cli_client."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import tomllib
from pathlib import Path
from typing import Annotated

import typer
from platformdirs import user_data_dir

from fleetscope import __version__
from fleetscope.cli_client import register

DEFAULT_PORT = 7070
DEFAULT_HOST = "127.0.0.1"

app = typer.Typer(
    name="fleetscope",
    help="Cloud analytics for a fleet of hosts: ad-hoc questions answered every second.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"fleetscope {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """fleetscope."""


@app.command()
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
    scrape: list[str] = typer.Option([], help="Scrape Prometheus/OpenMetrics text at URL[,interval "
                                     "seconds] (default 10 s; repeatable)."),
    ingest_max_metrics: int = typer.Option(1000, help="StatsD, OTLP, scrape: at most this many metric "
                                           "names per source (more are dropped and counted)."),
    ingest_max_keys: int = typer.Option(1000, help="StatsD, OTLP, scrape: at most this many distinct "
                                        "values per field of a metric (more are dropped and counted)."),
    tick_budget: str = typer.Option("50ms", help="CPU each instrumentation may use per tick on the "
                                    "agent; one over it is paused there with a warning (1ms..1s)."),
) -> None:
    """Run everything on this host: agent, aggregator, store, API and dashboard."""
    import uvicorn

    from fleetscope.api.embedded import embedded_app

    if not 1 <= port <= 65535:
        typer.echo(f"error: port: {port} is not a TCP port (1-65535)", err=True)
        raise typer.Exit(1)
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            typer.echo(f"error: port: cannot listen on {host}:{port}: {exc.strerror}", err=True)
            raise typer.Exit(1) from None
    _configure_logging(log_level)
    from fleetscope.agent.budget import parse_budget
    from fleetscope.model.errors import InputError
    from fleetscope.model.tiers import DEFAULT_RETENTION, validate_retention
    from fleetscope.store.history import HistoryConfig

    try:
        if not 0.1 <= flush_every <= 3600:
            raise InputError("flush-every", "must be between 0.1 and 3600 seconds")
        limits = _ingest_limits(ingest_max_metrics, ingest_max_keys)
        retention = {**DEFAULT_RETENTION, **validate_retention(history or {}, field="history")}
        application = embedded_app(data_dir, hostname, store,
                                   HistoryConfig(retention=retention, flush_every=flush_every),
                                   statsd=_limited(_statsd_config(statsd, statsd_prefix), limits),
                                   otlp=_limited(_otlp_config(otlp, otlp_prefix), limits),
                                   scrape=_scrape_targets(scrape), scrape_limits=limits,
                                   tick_budget=parse_budget(tick_budget))
    except InputError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"fleetscope {__version__} serving at http://{host}:{port}/ (data in {data_dir})")
    uvicorn.run(application, host=host, port=port, log_level=log_level, access_log=False,
                timeout_graceful_shutdown=5)


def _load_config(path: Path | None, section: str) -> dict:
    """The ``[section]`` table of a TOML config file (top-level keys apply to every section)."""
    if path is None:
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        typer.echo(f"error: config: cannot read {path}: {exc}", err=True)
        raise typer.Exit(1) from None
    common = {k: v for k, v in data.items() if not isinstance(v, dict)}
    return {**common, **data.get(section, {})}


def _setting(value, config: dict, key: str, default=None):
    """A flag or environment variable wins over the config file, which wins over the default."""
    return value if value is not None else config.get(key, default)


def _nats_options(cfg: dict, **flags: str | None) -> dict[str, str | None]:
    """NATS credentials and TLS files: each flag (or its environment variable), else the config file."""
    return {key: _setting(value, cfg, key) for key, value in flags.items()}


def _configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _labels(pairs: list[str]) -> dict[str, str]:
    labels = {}
    for pair in pairs:
        key, sep, val = pair.partition("=")
        if not sep or not key.isidentifier() or not val:
            typer.echo(f"error: label: {pair!r} is not key=value (key a plain name)", err=True)
            raise typer.Exit(1)
        labels[key] = val
    return labels


def _probe(field: str, host: str, port: int, *kinds: int) -> None:
    """InputError naming ``field`` unless ``host:port`` can be bound (for each socket kind)."""
    from fleetscope.model.errors import InputError

    for kind in kinds:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, kind) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as exc:
                raise InputError(field, f"cannot listen on {host}:{port}: {exc.strerror}") from None


def _statsd_config(address: str | None, prefix: str):
    """The StatsD listener of ``--statsd [HOST:]PORT`` (None when not asked for);
    InputError naming ``statsd`` or ``statsd-prefix`` if either is bad."""
    if address is None:
        return None
    from fleetscope.model.errors import InputError
    from fleetscope.sources.statsd import StatsdConfig, parse_address
    from fleetscope.sources.statsd_parse import sanitize

    host, port = parse_address(address)
    if not prefix or sanitize(prefix) != prefix:
        raise InputError("statsd-prefix", f"{prefix!r} is not a plain name (letters, digits, _)")
    _probe("statsd", host, port, socket.SOCK_STREAM, socket.SOCK_DGRAM)
    return StatsdConfig(host=host, port=port, prefix=prefix)


def _otlp_config(address: str | None, prefix: str):
    """The OTLP receiver of ``--otlp [HOST:]PORT`` (None when not asked for)."""
    if address is None:
        return None
    from fleetscope.model.errors import InputError
    from fleetscope.sources.otlp import OtlpConfig
    from fleetscope.sources.statsd import parse_address
    from fleetscope.sources.statsd_parse import sanitize

    host, port = parse_address(address, "otlp")
    if not prefix or sanitize(prefix) != prefix:
        raise InputError("otlp-prefix", f"{prefix!r} is not a plain name (letters, digits, _)")
    _probe("otlp", host, port, socket.SOCK_STREAM)
    return OtlpConfig(host=host, port=port, prefix=prefix)


def _ingest_limits(max_metrics: int, max_keys: int) -> tuple[int, int]:
    """``(names, keys per field)`` for the application sources; InputError if out of range."""
    from fleetscope.model.errors import InputError

    if not 1 <= max_metrics <= 1_000_000:
        raise InputError("ingest-max-metrics", "must be between 1 and 1000000")
    if not 1 <= max_keys <= 1_000_000:
        raise InputError("ingest-max-keys", "must be between 1 and 1000000")
    return max_metrics, max_keys


def _limited(config, limits: tuple[int, int]):
    """A StatsD or OTLP config with the caps of ``limits`` (None stays None)."""
    return None if config is None else config._replace(max_metrics=limits[0], max_keys=limits[1])


def _scrape_targets(texts: list[str]) -> list:
    """The targets of ``--scrape URL[,interval]`` (InputError naming ``scrape`` if one is bad)."""
    from fleetscope.sources.scrape import parse_target

    return [parse_target(t) for t in texts]


def _run_until_signalled(main) -> None:
    """Run ``main(stop_event)`` on a new event loop; SIGTERM and SIGINT set the event."""

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    asyncio.run(runner())


@app.command()
def agent(
    bus: str = typer.Option(None, envvar="FLEETSCOPE_BUS", help="NATS URL, e.g. nats://nats1:4222."),
    hostname: str = typer.Option(None, envvar="FLEETSCOPE_HOSTNAME", help="Host name to report."),
    label: list[str] = typer.Option([], help="A host label key=value, usable as a field (repeatable)."),
    creds: str = typer.Option(None, envvar="FLEETSCOPE_NATS_CREDS", help="NATS credentials file."),
    user: str = typer.Option(None, envvar="FLEETSCOPE_NATS_USER", help="NATS user."),
    password: str = typer.Option(None, envvar="FLEETSCOPE_NATS_PASSWORD", help="NATS password."),
    token: str = typer.Option(None, envvar="FLEETSCOPE_NATS_TOKEN", help="NATS token."),
    tls_ca: str = typer.Option(None, envvar="FLEETSCOPE_TLS_CA", help="CA certificate for TLS."),
    tls_cert: str = typer.Option(None, envvar="FLEETSCOPE_TLS_CERT", help="Client certificate."),
    tls_key: str = typer.Option(None, envvar="FLEETSCOPE_TLS_KEY", help="Client key."),
    buffer: str = typer.Option(None, envvar="FLEETSCOPE_BUFFER",
                               help="Memory for batches while the bus is away, e.g. 64MiB."),
    config: Path = typer.Option(None, envvar="FLEETSCOPE_CONFIG", help="TOML file ([agent] table)."),
    log_level: str = typer.Option("info", help="debug, info, warning or error."),
    statsd: str = typer.Option(None, envvar="FLEETSCOPE_STATSD",
                               help="Receive StatsD (UDP and TCP) at [HOST:]PORT, e.g. 8125."),
    statsd_prefix: str = typer.Option(None, help="Module of the metrics received over StatsD (app)."),
    otlp: str = typer.Option(None, envvar="FLEETSCOPE_OTLP",
                             help="Receive OTLP/HTTP metrics at [HOST:]PORT, e.g. 4318."),
    otlp_prefix: str = typer.Option(None, help="Module of the metrics received over OTLP (otel)."),
    scrape: list[str] = typer.Option([], help="Scrape Prometheus/OpenMetrics text at URL[,interval "
                                     "seconds] (default 10 s; repeatable)."),
    ingest_max_metrics: int = typer.Option(None, help="StatsD, OTLP, scrape: at most this many metric "
                                           "names per source (more are dropped and counted)."),
    ingest_max_keys: int = typer.Option(None, help="StatsD, OTLP, scrape: at most this many distinct "
                                        "values per field of a metric (more are dropped and counted)."),
    tick_budget: str = typer.Option(None, help="CPU each instrumentation may use per tick (50ms); one "
                                    "over it is paused on this host with a warning (1ms..1s)."),
) -> None:
    """Collect on this host and publish to the fleet's bus (NATS)."""
    from fleetscope.agent.agent import Agent
    from fleetscope.agent.budget import DEFAULT_BUDGET, parse_budget
    from fleetscope.bus.base import connect_bus
    from fleetscope.model.errors import InputError
    from fleetscope.model.types import BYTES, parse_quantity
    from fleetscope.sources.registry import local_sources

    cfg = _load_config(config, "agent")
    url = _setting(bus, cfg, "bus", "nats://127.0.0.1:4222")
    options = _nats_options(cfg, creds=creds, user=user, password=password, token=token,
                            tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key)
    name = _setting(hostname, cfg, "hostname") or socket.gethostname()
    try:
        # The connection's name shows in the server's monitoring (connz): which host is which.
        transport = connect_bus(url, name=f"fleetscope agent {name}", **options)
        max_bytes = int(parse_quantity(str(_setting(buffer, cfg, "buffer", "64MiB")), BYTES, "buffer"))
        limits = _ingest_limits(int(_setting(ingest_max_metrics, cfg, "ingest_max_metrics", 1000)),
                                int(_setting(ingest_max_keys, cfg, "ingest_max_keys", 1000)))
        statsd_config = _limited(_statsd_config(_setting(statsd, cfg, "statsd"),
                                                str(_setting(statsd_prefix, cfg, "statsd_prefix", "app"))),
                                 limits)
        otlp_config = _limited(_otlp_config(_setting(otlp, cfg, "otlp"),
                                            str(_setting(otlp_prefix, cfg, "otlp_prefix", "otel"))), limits)
        targets = _scrape_targets(scrape or list(cfg.get("scrape", [])))
        budget = parse_budget(_setting(tick_budget, cfg, "tick_budget", DEFAULT_BUDGET))
    except InputError as exc:
        typer.echo(f"error: {exc.field}: {exc.message}", err=True)
        raise typer.Exit(1) from None
    labels = {**cfg.get("labels", {}), **_labels(label)}
    _configure_logging(log_level)
    try:
        from fleetscope.sources.selfmetrics import SelfSource

        own = SelfSource(api=False)  # fleetscope.agent_tick
        sources = [*local_sources(), own]
        if statsd_config is not None:
            from fleetscope.sources.statsd import StatsdSource

            sources.append(StatsdSource(statsd_config))
        if otlp_config is not None:
            from fleetscope.sources.otlp import OtlpSource

            sources.append(OtlpSource(otlp_config))
        if targets:
            from fleetscope.sources.scrape import ScrapeSource

            sources.append(ScrapeSource(targets, max_metrics=limits[0], max_keys=limits[1]))
        collector = Agent(transport, sources, hostname=_setting(hostname, cfg, "hostname"),
                          labels=labels, buffer_bytes=max_bytes, budget=budget)
        collector.on_tick = own.record_tick
    except InputError as exc:
        typer.echo(f"error: {exc.field}: {exc.message}", err=True)
        raise typer.Exit(1) from None

    async def main(stop: asyncio.Event) -> None:
        task = asyncio.get_running_loop().create_task(collector.run())
        await stop.wait()
        collector.stop()
        try:
            await asyncio.wait_for(task, 5)
        except TimeoutError:  # still waiting for the bus at start: nothing to flush
            task.cancel()
        collector.close()
        await transport.close()

    typer.echo(f"fleetscope agent {__version__} on {collector.hostname}, bus {url}")
    _run_until_signalled(main)


# -- fleet processes: options shared by `aggregator` and `api` ---------------------------------

BusUrl = Annotated[str | None, typer.Option("--bus", envvar="FLEETSCOPE_BUS",
                                            help="NATS URL, e.g. nats://nats1:4222.")]
StoreUrl = Annotated[str | None, typer.Option("--store", envvar="FLEETSCOPE_STORE",
                                              help="postgresql://user@host/db (or sqlite:///path).")]
Creds = Annotated[str | None, typer.Option(envvar="FLEETSCOPE_NATS_CREDS", help="NATS credentials file.")]
User = Annotated[str | None, typer.Option(envvar="FLEETSCOPE_NATS_USER", help="NATS user.")]
Password = Annotated[str | None, typer.Option(envvar="FLEETSCOPE_NATS_PASSWORD", help="NATS password.")]
Token = Annotated[str | None, typer.Option(envvar="FLEETSCOPE_NATS_TOKEN", help="NATS token.")]
TlsCa = Annotated[str | None, typer.Option(envvar="FLEETSCOPE_TLS_CA", help="CA certificate for TLS.")]
TlsCert = Annotated[str | None, typer.Option(envvar="FLEETSCOPE_TLS_CERT", help="Client certificate.")]
TlsKey = Annotated[str | None, typer.Option(envvar="FLEETSCOPE_TLS_KEY", help="Client key.")]
Config = Annotated[Path | None, typer.Option(envvar="FLEETSCOPE_CONFIG", help="TOML config file.")]
LogLevel = Annotated[str, typer.Option(help="debug, info, warning or error.")]


def _fleet_parts(section: str, config: Path | None, bus: str | None, store: str | None,
                 **nats: str | None):
    """The bus and the store of a fleet process, from flags, environment and config file."""
    from fleetscope.bus.base import connect_bus
    from fleetscope.model.errors import InputError
    from fleetscope.store.base import open_store

    cfg = _load_config(config, section)
    url = _setting(bus, cfg, "bus", "nats://127.0.0.1:4222")
    store_url = _setting(store, cfg, "store")
    try:
        if not store_url:
            raise InputError("store", "is required: the shared store, e.g. postgresql://fleetscope@db/fleetscope")
        transport = connect_bus(url, name=f"fleetscope {section}", **_nats_options(cfg, **nats))
        return transport, open_store(store_url), url
    except InputError as exc:
        typer.echo(f"error: {exc.field}: {exc.message}", err=True)
        raise typer.Exit(1) from None


@app.command()
def aggregator(
    bus: BusUrl = None, store: StoreUrl = None, name: Annotated[str | None, typer.Option(
        help="A name unique in the fleet (default host:pid).")] = None,
    creds: Creds = None, user: User = None, password: Password = None, token: Token = None,
    tls_ca: TlsCa = None, tls_cert: TlsCert = None, tls_key: TlsKey = None,
    config: Config = None, log_level: LogLevel = "info",
) -> None:
    """Merge the agents' data (a share of the instrumentations) and write history to the store."""
    from fleetscope.api.fleet import run_aggregator

    transport, shared, url = _fleet_parts("aggregator", config, bus, store, creds=creds, user=user,
                                          password=password, token=token, tls_ca=tls_ca,
                                          tls_cert=tls_cert, tls_key=tls_key)
    _configure_logging(log_level)
    typer.echo(f"fleetscope aggregator {__version__}, bus {url}")

    async def main(stop: asyncio.Event) -> None:
        try:
            await run_aggregator(transport, shared, stop, name)
        finally:
            await transport.close()
            shared.close()

    _run_until_signalled(main)


@app.command()
def api(
    bus: BusUrl = None, store: StoreUrl = None,
    port: Annotated[int, typer.Option(help="TCP port of the API and dashboard.")] = DEFAULT_PORT,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = DEFAULT_HOST,
    creds: Creds = None, user: User = None, password: Password = None, token: Token = None,
    tls_ca: TlsCa = None, tls_cert: TlsCert = None, tls_key: TlsKey = None,
    config: Config = None, log_level: LogLevel = "warning",
) -> None:
    """Serve the API and the dashboard of a fleet (any number of these, behind a balancer)."""
    import uvicorn

    from fleetscope.api.fleet import api_app

    transport, shared, url = _fleet_parts("api", config, bus, store, creds=creds, user=user,
                                          password=password, token=token, tls_ca=tls_ca,
                                          tls_cert=tls_cert, tls_key=tls_key)
    _configure_logging(log_level)
    typer.echo(f"fleetscope api {__version__} serving at http://{host}:{port}/ (bus {url})")
    uvicorn.run(api_app(transport, shared), host=host, port=port, log_level=log_level, access_log=False,
                timeout_graceful_shutdown=5)


register(app)
