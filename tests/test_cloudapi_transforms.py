"""CloudAPI's transformations (reversedns, geolocate) against real things: a `fleetscope serve`
receiving StatsD lines whose ``raddr`` tag holds IP addresses, a real dnsmasq serving PTR records
on a free port (``--reverse-dns 127.0.0.1:PORT``), a GeoIP database written here with
mmdb-writer (``--geoip-db``), the original client node-smartdc 8.1, and the resolver itself
against a DNS "server" that never answers.

Two accounts, east and west (scopes ``site == "east"`` / ``"west"``), send different addresses:
neither ever sees a name (or a location) for the other's keys. What the names should be is what
this file wrote into dnsmasq's records, not what fleetscope answered before."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fleetscope.api.cloudapi.mapping import IP_FIELDS
from fleetscope.api.cloudapi.reversedns import ReverseDns, parse_server
from tests.conftest import VENV_BIN, Server, free_port, wait_for
from tests.test_cloudapi import Account, Cloud, call, refused, smartdc_bin

EAST = {"10.0.0.1": ["web1.east.example"], "10.0.0.2": ["api.east.example", "www.east.example"]}
EAST_NXDOMAIN = "10.0.0.3"  # no record: a private address dnsmasq answers NXDOMAIN for (--bogus-priv)
WEST = {"10.0.1.1": ["db1.west.example"]}
BULK = {f"10.0.2.{i}": [f"h{i}.bulk.example"] for i in range(1, 41)}  # more than one request looks up
PER_CALL = ReverseDns().per_call
LOCATIONS = {"10.0.0.0/24": {"location": {"latitude": 52.52, "longitude": 13.405},
                             "country": {"iso_code": "DE", "names": {"en": "Germany"}},
                             "continent": {"code": "EU", "names": {"en": "Europe"}},
                             "city": {"names": {"en": "Berlin"}}},
             "10.0.1.0/24": {"location": {"latitude": 48.8566, "longitude": 2.3522},
                             "country": {"iso_code": "FR", "names": {"en": "France"}}}}
INSTS = "/{login}/analytics/instrumentations"


def _ptr(address: str) -> str:
    import dns.reversename

    return str(dns.reversename.from_address(address)).rstrip(".")


class Dnsmasq:
    """A real dnsmasq answering the PTR records of ``names`` on a free port, logging each query."""

    def __init__(self, tmp: Path, names: dict[str, list[str]]) -> None:
        exe = shutil.which("dnsmasq") or shutil.which("dnsmasq", path="/usr/sbin:/sbin")
        if exe is None:
            pytest.fail("dnsmasq is needed (scripts/system-deps.sh installs dnsmasq-base)", pytrace=False)
        self.port = free_udp_port()
        self.log = tmp / "dnsmasq.log"
        records = [f"--ptr-record={_ptr(a)},{n}" for a, ns in names.items() for n in ns]
        cmd = [exe, "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
               "--bind-interfaces", "--listen-address=127.0.0.1", f"--port={self.port}", "--bogus-priv",
               "--local-ttl=300", "--log-queries", "--log-facility=-", "--pid-file=", "--user=root",
               *records]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        wait_for(lambda: self.proc.poll() is not None or "started" in self.log.read_text(), 10)
        if self.proc.poll() is not None:
            pytest.fail(f"dnsmasq did not start: {self.log.read_text()[-2000:]}", pytrace=False)

    def queries(self, address: str) -> int:
        """How many PTR queries for ``address`` dnsmasq received."""
        return self.log.read_text().count(f"query[PTR] {_ptr(address)} ")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def geoip_database(path: Path) -> Path:
    """A small MaxMind database of :data:`LOCATIONS`, in GeoIP2-City's layout."""
    from mmdb_writer import MMDBWriter
    from netaddr import IPSet

    writer = MMDBWriter(ip_version=4, database_type="GeoIP2-City", languages=["en"],
                        description="fleetscope test")
    for network, record in LOCATIONS.items():
        writer.insert_network(IPSet([network]), record)
    writer.to_db_file(str(path))
    return path


class StatsdFeed:
    """Sends every 0.2 s, until stopped, one connection counter per address and site, and one
    latency timer per east address (for heatmaps), to serve's StatsD port."""

    def __init__(self, port: int) -> None:
        self.port, self.stopped = port, threading.Event()
        lines = [f"conns:1|c|#site:east,kind:web,raddr:{a}" for a in [*EAST, EAST_NXDOMAIN]]
        lines += [f"conns:1|c|#site:west,kind:web,raddr:{a}" for a in WEST]
        lines += [f"conns:1|c|#site:east,kind:bulk,raddr:{a}" for a in BULK]
        lines += [f"latency:{5 + i}|ms|#site:east,raddr:{a}" for i, a in enumerate(EAST)]
        self.packets = ["\n".join(lines[i:i + 10]).encode() for i in range(0, len(lines), 10)]
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            while not self.stopped.wait(0.2):
                for packet in self.packets:
                    sock.sendto(packet, ("127.0.0.1", self.port))

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(5)


class Setup:
    def __init__(self, cloud: Cloud, dns: Dnsmasq) -> None:
        self.cloud, self.dns = cloud, dns

    def create(self, who: str, body: dict) -> dict:
        login = self.cloud.accounts[who].login
        made = call(self.cloud, who, "POST", INSTS.format(login=login), body)
        assert made.status_code == 201, made.text
        return made.json()

    def raw(self, who: str, inst: dict, query: str = "") -> httpx.Response:
        return call(self.cloud, who, "GET", f"{inst['uri']}/value/raw{query}")

    def when_all_keys(self, who: str, inst: dict, keys: set[str]) -> dict:
        """A value (no transformation asked) once it holds every one of ``keys``."""
        def ready():
            got = self.raw(who, inst).json()
            return got if isinstance(got["value"], dict) and keys <= set(got["value"]) else None
        return wait_for(ready, 30, 0.3)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    tmp = tmp_path_factory.mktemp("transforms")
    bin_dir = smartdc_bin(tmp)
    dns = Dnsmasq(tmp, {**EAST, **WEST, **BULK})
    statsd = free_udp_port()
    server = Server(tmp / "serve", free_port(),
                    ["--auth-failures", "1000", "--statsd", f"127.0.0.1:{statsd}", "--reverse-dns",
                     f"127.0.0.1:{dns.port}", "--geoip-db", str(geoip_database(tmp / "cities.mmdb"))],
                    auth=True)
    server.data_dir.mkdir()
    server.start()
    feed = StatsdFeed(statsd)
    try:
        admin = server.token("transforms-admin", "admin")
        cloud = Cloud(server, admin, bin_dir, {})
        wait_for(lambda: "app.conns" in cloud.native("GET", "/metrics").text, 20, 0.2)
        for login in ("east", "west"):
            made = cloud.native("POST", "/tenants", json={"name": login, "scope": f'site == "{login}"'})
            assert made.status_code == 201, made.text
        cloud.accounts = {"east": Account("east", tmp / "east", "ecdsa"),
                          "west": Account("west", tmp / "west", "ecdsa")}
        for account in cloud.accounts.values():
            cloud.add_key(account)
        yield Setup(cloud, dns)
    finally:
        feed.stop()
        server.stop()
        dns.stop()


# -- what is offered ---------------------------------------------------------------------------------


def test_describe_and_instrumentations_list_the_transformations(setup: Setup) -> None:
    described = setup.cloud.sdc_json("east", "sdc-describeanalytics")
    fields = sorted(IP_FIELDS)
    assert "raddr" in fields
    assert described["transformations"] == {
        "geolocate": {"label": "geolocate IP addresses", "fields": fields},
        "reversedns": {"label": "reverse dns IP addresses lookup", "fields": fields}}
    conns = next(m for m in described["metrics"] if (m["module"], m["stat"]) == ("app", "conns"))
    assert {"site", "kind", "raddr"} <= set(conns["fields"])
    create = ("sdc-createinstrumentation", "-m", "app", "-s", "conns", "-n")
    by_addr, by_kind = (setup.cloud.sdc_json("east", *create, field) for field in ("raddr", "kind"))
    try:
        assert by_addr["transformations"] == described["transformations"]
        assert by_kind["transformations"] == {}
        assert setup.cloud.sdc_json("east", "sdc-getinstrumentation", by_addr["id"]) == by_addr
    finally:
        for inst in (by_addr, by_kind):
            setup.cloud.sdc("east", "sdc-deleteinstrumentation", inst["id"])


# -- reversedns -----------------------------------------------------------------------------------


def test_reversedns_through_the_real_client(setup: Setup) -> None:
    inst = setup.cloud.sdc_json("east", "sdc-createinstrumentation", "-m", "app", "-s", "conns",
                                "-n", "raddr", "-p", '{"eq": ["kind", "web"]}')
    try:
        setup.when_all_keys("east", inst, {*EAST, EAST_NXDOMAIN})
        first = None

        def named():
            nonlocal first
            got = setup.cloud.sdc_json("east", "sdc-getinstrumentation", "--value",
                                       "--transformations=reversedns", inst["id"])
            first = first or got
            return got if got["transformations"].get("reversedns") == EAST else None

        got = wait_for(named, 30, 0.3)
        # The first answer has no more than is known (lookups are answered once they finished);
        # the address without a record never gets a name; no key of west's is ever there.
        assert set(first["transformations"]["reversedns"]) <= set(EAST)
        assert set(got["value"]) == {*EAST, EAST_NXDOMAIN}
        assert got["transformations"] == {"reversedns": EAST}
        # Without the parameter: no transformation, as before.
        plain = setup.cloud.sdc_json("east", "sdc-getinstrumentation", "--value", inst["id"])
        assert plain["transformations"] == {}
    finally:
        setup.cloud.sdc("east", "sdc-deleteinstrumentation", inst["id"])


def test_lookups_are_capped_per_request_and_cached(setup: Setup) -> None:
    inst = setup.create("east", {"module": "app", "stat": "conns", "decomposition": ["raddr"],
                                 "predicate": {"eq": ["kind", "bulk"]}})
    try:
        setup.when_all_keys("east", inst, set(BULK))
        first = setup.raw("east", inst, "?transformations=reversedns").json()
        assert first["transformations"]["reversedns"].keys() <= BULK.keys()
        # One request starts at most PER_CALL lookups: the rest are pending (absent), as the
        # original answered them; each lookup is one query (dnsmasq answers at once).
        wait_for(lambda: sum(setup.dns.queries(a) for a in BULK) == PER_CALL, 10, 0.05)

        def all_named():
            got = setup.raw("east", inst, "?transformations=reversedns").json()
            return got if got["transformations"]["reversedns"] == BULK else None

        wait_for(all_named, 30, 0.2)
        # Asked again and again, each address was looked up once: the rest came from the cache.
        for _ in range(3):
            assert setup.raw("east", inst, "?transformations=reversedns").json()["transformations"] == \
                {"reversedns": BULK}
        assert {a: setup.dns.queries(a) for a in BULK} == dict.fromkeys(BULK, 1)
        # ndatapoints: every value has the transformations of its own keys, and the whole request
        # still starts lookups within the same cap (all are cached by now).
        many = setup.raw("east", inst, "?transformations=reversedns&ndatapoints=3").json()
        assert len(many) == 3
        for value in many:
            assert value["transformations"]["reversedns"] == {k: BULK[k] for k in value["value"]}
    finally:
        call(setup.cloud, "east", "DELETE", inst["uri"])


def test_two_accounts_never_see_each_others_names(setup: Setup) -> None:
    east = setup.create("east", {"module": "app", "stat": "conns", "decomposition": ["raddr"],
                                 "predicate": {"eq": ["kind", "web"]}})
    west = setup.create("west", {"module": "app", "stat": "conns", "decomposition": ["raddr"]})
    try:
        def names(who: str, inst: dict, expected: dict):
            got = setup.raw(who, inst, "?transformations=reversedns&transformations=geolocate").json()
            return got if got["transformations"]["reversedns"] == expected else None

        west_got = wait_for(lambda: names("west", west, WEST), 30, 0.3)
        east_got = wait_for(lambda: names("east", east, EAST), 30, 0.3)
        assert set(west_got["value"]) == set(WEST)
        assert set(west_got["transformations"]["geolocate"]) == set(WEST)
        assert not set(east_got["transformations"]["geolocate"]) & set(WEST)
        # west trying east's instrumentation, with a transformation: as if it did not exist.
        other = call(setup.cloud, "west", "GET", east["uri"].replace("/east/", "/west/") +
                     "/value/raw?transformations=reversedns")
        refused(other, 404, "ResourceNotFound")
    finally:
        call(setup.cloud, "east", "DELETE", east["uri"])
        call(setup.cloud, "west", "DELETE", west["uri"])


def test_transformations_of_a_heatmap(setup: Setup) -> None:
    inst = setup.create("east", {"module": "app", "stat": "latency", "decomposition": ["raddr", "value"]})
    try:
        image = f"{inst['uri']}/value/heatmap/image?duration=10&transformations=reversedns"

        def named():
            got = call(setup.cloud, "east", "GET", image).json()
            return got if got["transformations"].get("reversedns") == EAST else None

        got = wait_for(named, 30, 0.3)
        assert set(got["present"]) == set(EAST)
        details = call(setup.cloud, "east", "GET", f"{inst['uri']}/value/heatmap/details?duration=10"
                       f"&ymax=100&x=599&y=299&transformations=reversedns")
        assert details.status_code == 200, details.text
    finally:
        call(setup.cloud, "east", "DELETE", inst["uri"])


def test_geolocate(setup: Setup) -> None:
    inst = setup.create("east", {"module": "app", "stat": "conns", "decomposition": ["raddr"],
                                 "predicate": {"eq": ["kind", "web"]}})
    try:
        setup.when_all_keys("east", inst, {*EAST, EAST_NXDOMAIN})
        got = setup.raw("east", inst, "?transformations=geolocate").json()
        berlin = {"latitude": 52.52, "longitude": 13.405, "country_code": "DE", "continent_code": "EU",
                  "country": "Germany", "city": "Berlin"}
        assert got["transformations"] == {"geolocate": dict.fromkeys([*EAST, EAST_NXDOMAIN], berlin)}
    finally:
        call(setup.cloud, "east", "DELETE", inst["uri"])


def test_refusals_in_the_original_shape(setup: Setup) -> None:
    by_kind = setup.create("east", {"module": "app", "stat": "conns", "decomposition": ["kind"]})
    by_addr = setup.create("east", {"module": "app", "stat": "conns", "decomposition": ["raddr"]})
    try:
        refused(setup.raw("east", by_addr, "?transformations=nosuch"), 409, "InvalidArgument",
                "non-existent transformation 'nosuch'")
        refused(setup.raw("east", by_kind, "?transformations=reversedns"), 409, "InvalidArgument",
                "incompatible transformation 'reversedns'")
        refused(setup.raw("east", by_addr, '?transformations=["reversedns", 1]'), 409, "InvalidArgument",
                "transformations")
    finally:
        call(setup.cloud, "east", "DELETE", by_kind["uri"])
        call(setup.cloud, "east", "DELETE", by_addr["uri"])


def test_bad_settings_are_refused(tmp_path: Path) -> None:
    exe = str(VENV_BIN / "fleetscope")
    for flags, field in ((["--reverse-dns", "dns.example:53"], "reverse-dns"),
                         (["--reverse-dns", "127.0.0.1:99999"], "reverse-dns"),
                         (["--geoip-db", str(tmp_path / "nosuch.mmdb")], "geoip-db")):
        done = subprocess.run([exe, "serve", "--port", str(free_port()), "--data-dir", str(tmp_path / "d"),
                               "--no-auth", *flags], capture_output=True, text=True, timeout=60)
        assert done.returncode == 1 and f"{field}:" in done.stderr, (flags, done.stderr)
    (tmp_path / "junk.mmdb").write_bytes(b"not a database")
    done = subprocess.run([exe, "serve", "--port", str(free_port()), "--data-dir", str(tmp_path / "d"),
                           "--no-auth", "--geoip-db", str(tmp_path / "junk.mmdb")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "geoip-db:" in done.stderr, done.stderr


def test_reverse_dns_off_offers_nothing() -> None:
    from fleetscope.api.cloudapi import transforms
    from fleetscope.api.cloudapi.errors import CloudApiError

    off = transforms.from_settings("off")
    assert off.describe() == {} and off.for_decomposition(["raddr"]) == {}
    with pytest.raises(CloudApiError) as refused_:
        off.check(["reversedns"], {})
    assert refused_.value.code == "InvalidArgument" and "non-existent" in refused_.value.message


def test_the_api_process_reads_them_from_its_config_file(tmp_path: Path) -> None:
    from fleetscope.model.errors import InputError
    from fleetscope.processes.config import fleet_config

    db = geoip_database(tmp_path / "cities.mmdb")
    config = tmp_path / "fleet.toml"
    config.write_text(f'store = "sqlite:///x.db"\n[api]\nreverse_dns = "10.0.0.53:5353"\ngeoip_db = "{db}"\n')
    api = fleet_config("api", config=config)
    assert (api.reverse_dns, api.geoip_db) == ("10.0.0.53:5353", str(db))
    assert fleet_config("api", config=config, reverse_dns="off").reverse_dns == "off", "the flag wins"
    assert fleet_config("aggregator", config=config).reverse_dns == "system", "the api's setting only"
    config.write_text('store = "sqlite:///x.db"\n[api]\nreverse_dns = "resolver.example"\n')
    with pytest.raises(InputError) as refused_:
        fleet_config("api", config=config)
    assert refused_.value.field == "reverse-dns"


# -- the resolver against a server that never answers -------------------------------------------------


class Blackhole:
    """A UDP "DNS server" that reads every query and answers none; it records the names asked."""

    def __init__(self) -> None:
        import dns.message

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.asked: list[str] = []
        self.stopped = threading.Event()

        def run() -> None:
            while not self.stopped.is_set():
                try:
                    data, _ = self.sock.recvfrom(4096)
                except TimeoutError:
                    continue
                self.asked.append(str(dns.message.from_wire(data).question[0].name))

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(5)
        self.sock.close()


def test_a_lookup_gives_up_after_its_timeout_and_is_not_retried_at_once() -> None:
    hole = Blackhole()
    rdns = ReverseDns([("127.0.0.1", hole.port)], timeout=0.5, retry_after=60)
    try:
        began = time.monotonic()
        assert rdns.names(["192.0.2.7"]) == {}
        assert time.monotonic() - began < 0.2, "the caller never waits for DNS"
        wait_for(lambda: rdns.pending() == 0, 5, 0.02)
        assert time.monotonic() - began < 0.5 + 0.5, "given up after the timeout"
        assert set(hole.asked) == {_ptr("192.0.2.7") + "."}
        asked = len(hole.asked)
        for _ in range(5):  # a failed lookup is not tried again before retry_after
            assert rdns.names(["192.0.2.7"]) == {}
        assert rdns.pending() == 0 and len(hole.asked) == asked
    finally:
        rdns.close()
        hole.stop()


def test_lookups_in_flight_are_bounded() -> None:
    hole = Blackhole()
    rdns = ReverseDns([("127.0.0.1", hole.port)], timeout=1.0, per_call=8, in_flight=20, workers=4)
    try:
        addresses = [f"192.0.2.{i}" for i in range(1, 101)]
        assert rdns.names([*addresses, "not an address", "(other)", "x" * 1000]) == {}
        assert rdns.started == 8 and rdns.pending() == 8, "per call"
        for _ in range(10):
            rdns.names(addresses)
        assert rdns.started == 20 and rdns.pending() <= 20, "in flight in the whole process"
        wait_for(lambda: rdns.pending() == 0, 15, 0.05)
        names = {n.removesuffix(".in-addr.arpa.") for n in hole.asked}
        assert len(names) == 20 and not any("other" in n for n in names), "only IP addresses are asked"
    finally:
        rdns.close()
        hole.stop()


def test_the_resolver_against_dnsmasq(tmp_path: Path) -> None:
    dns = Dnsmasq(tmp_path, {"192.0.2.1": ["one.example"], "2001:db8::1": ["six.example"]})
    rdns = ReverseDns([parse_server(f"127.0.0.1:{dns.port}")], max_entries=2)
    try:
        wanted = {"192.0.2.1": ["one.example"]}
        assert wait_for(lambda: rdns.names(["192.0.2.1", "10.9.9.9"]) == wanted, 10, 0.05)
        assert dns.queries("10.9.9.9") == 1
        # NXDOMAIN is remembered too: no second query for 10.9.9.9.
        for _ in range(3):
            assert rdns.names(["192.0.2.1", "10.9.9.9"]) == wanted
        assert dns.queries("10.9.9.9") == 1 and dns.queries("192.0.2.1") == 1
        # The cache holds two addresses: a third pushes out the least recently used.
        wait_for(lambda: rdns.names(["2001:db8::1"]) == {"2001:db8::1": ["six.example"]}, 10, 0.05)
        wait_for(lambda: rdns.names(["192.0.2.1"]) == wanted, 10, 0.05)
        assert dns.queries("10.9.9.9") == 1 and dns.queries("192.0.2.1") == 2
    finally:
        rdns.close()
        dns.stop()


def test_dns_servers_are_parsed() -> None:
    assert parse_server("127.0.0.1") == ("127.0.0.1", 53)
    assert parse_server("127.0.0.1:5353") == ("127.0.0.1", 5353)
    assert parse_server("[::1]:5353") == ("::1", 5353)
    assert parse_server("::1") == ("::1", 53)
    for bad in ("dns.example", "127.0.0.1:0", "[::1", "1.2.3.4:x"):
        with pytest.raises(ValueError):
            parse_server(bad)
