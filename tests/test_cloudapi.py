"""CloudAPI's analytics routes, driven by the original client: node-smartdc 8.1.0 (installed from
the npm registry into a directory of the tests), with SSH keys made by ssh-keygen and registered
by `fleetscope account add-key`, against a real `fleetscope serve` with authentication on.

Two accounts (tenants): acme sees user-mode CPU time, beta system-mode (their scopes), so that
both have data every second on any host. What the client prints is compared with what
fleetscope's native API answers for the same instrumentation. The security tests sign requests
themselves (cryptography), to send what the client never would: wrong keys, another account's
key, old and future dates, replays, signatures over other headers, Basic credentials."""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from email.utils import formatdate
from pathlib import Path

import httpx
import psutil
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from fleetscope.model import access, sshkeys
from tests.conftest import VENV_BIN, Server, free_port, wait_for
from tests.store_backends import backend_url, pg_url, store  # noqa: F401 - fixtures

API = "/api/v1"
SMARTDC_VERSION = "8.1.0"
CACHE = Path("/var/cache/fleetscope-test") / f"smartdc-{SMARTDC_VERSION}"
# gamma's scope is this host: every metric has a hostname, so it may use all of them (heatmaps).
SCOPES = {"acme": 'mode == "user"', "beta": 'mode == "system"',
          "gamma": f'hostname == "{socket.gethostname()}"'}


# -- the client ----------------------------------------------------------------------------------------


def smartdc_bin(tmp_root: Path) -> Path:
    """node-smartdc's bin directory, installed with npm when missing (scripts/system-deps.sh
    installs it into CACHE beforehand in `make test`)."""
    for root in (CACHE, tmp_root / "smartdc"):
        bin_dir = root / "node_modules" / "smartdc" / "bin"
        if (bin_dir / "sdc-describeanalytics").exists():
            return bin_dir
    if not shutil.which("npm") or not shutil.which("node"):
        pytest.fail("node and npm are needed (scripts/system-deps.sh installs them)", pytrace=False)
    root = CACHE if os.access(CACHE.parent if CACHE.parent.exists() else Path("/var/cache"), os.W_OK) \
        else tmp_root / "smartdc"
    root.mkdir(parents=True, exist_ok=True)
    subprocess.run(["npm", "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(root),
                    f"smartdc@{SMARTDC_VERSION}"], check=True, timeout=300, capture_output=True)
    return root / "node_modules" / "smartdc" / "bin"


class Account:
    """A login with an SSH key made by ssh-keygen (in its own HOME/.ssh, where node-smartdc looks)."""

    def __init__(self, login: str, home: Path, kind: str) -> None:
        self.login, self.home, self.kind = login, home, kind
        ssh = home / ".ssh"
        ssh.mkdir(parents=True, exist_ok=True)
        self.key_file = ssh / f"id_{kind}"
        bits = ["-b", "3072"] if kind == "rsa" else []
        subprocess.run(["ssh-keygen", "-q", "-t", kind, *bits, "-N", "", "-C", f"{login}@test", "-f",
                        str(self.key_file)], check=True, timeout=60)
        self.public = sshkeys.parse_public_key(self.key_file.with_suffix(".pub").read_text())
        self.private = serialization.load_ssh_private_key(self.key_file.read_bytes(), None)
        self.agent_env: dict[str, str] = {}

    @property
    def key_id(self) -> str:
        return f"/{self.login}/keys/{self.public.md5}"


class Cloud:
    def __init__(self, server: Server, admin: str, bin_dir: Path, accounts: dict[str, Account]) -> None:
        self.server, self.admin, self.bin_dir, self.accounts = server, admin, bin_dir, accounts

    def sdc(self, who: str, command: str, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
        account = self.accounts[who]
        env = {k: v for k, v in os.environ.items() if not k.startswith("SDC_") and k != "SSH_AUTH_SOCK"}
        env.update(HOME=str(account.home), SDC_URL=self.server.url, SDC_ACCOUNT=account.login,
                   SDC_KEY_ID=account.public.md5, **account.agent_env)
        done = subprocess.run(["node", str(self.bin_dir / command), *args], env=env, capture_output=True,
                              text=True, timeout=60)
        if ok:
            assert done.returncode == 0, (command, args, done.stdout, done.stderr)
        return done

    def sdc_json(self, who: str, command: str, *args: str):
        return json.loads(self.sdc(who, command, *args).stdout)

    def add_key(self, account: Account) -> None:
        """Register ``account``'s key as an operator would: `fleetscope account add-key`."""
        added = subprocess.run([str(VENV_BIN / "fleetscope"), "account", "add-key", account.login,
                                str(account.key_file.with_suffix(".pub")), "--url", self.server.url],
                               env={**os.environ, "FLEETSCOPE_TOKEN": self.admin}, capture_output=True,
                               text=True, timeout=60)
        assert added.returncode == 0, added.stderr
        assert f"SDC_KEY_ID={account.public.md5}" in added.stdout

    def native(self, method: str, path: str, **kwargs) -> httpx.Response:
        return httpx.request(method, self.server.url + API + path, timeout=20,
                             headers={"authorization": f"Bearer {self.admin}"}, **kwargs)


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    tmp = tmp_path_factory.mktemp("cloudapi")
    bin_dir = smartdc_bin(tmp)
    # The security tests fail on purpose more often than the default 10 a minute allows.
    server = Server(tmp / "serve", free_port(), ["--auth-failures", "1000"], auth=True)
    server.data_dir.mkdir()
    server.start()
    agents = []
    try:
        admin = server.token("cloudapi-admin", "admin")
        cloud = Cloud(server, admin, bin_dir, {})
        for login, scope in SCOPES.items():
            made = cloud.native("POST", "/tenants", json={"name": login, "scope": scope})
            assert made.status_code == 201, made.text
        cloud.accounts = {"acme": Account("acme", tmp / "acme", "rsa"),
                          "acme-ec": Account("acme", tmp / "acme-ec", "ecdsa"),
                          "acme-ed": Account("acme", tmp / "acme-ed", "ed25519"),
                          "beta": Account("beta", tmp / "beta", "ed25519"),
                          "gamma": Account("gamma", tmp / "gamma", "ecdsa")}
        for account in cloud.accounts.values():
            cloud.add_key(account)
            if account.kind == "ed25519":
                # smartdc 8.1's sshpk reads no Ed25519 key file: the client signs through ssh-agent.
                agent = tmp / f"agent-{account.home.name}.sock"
                proc = subprocess.Popen(["ssh-agent", "-D", "-a", str(agent)], stdout=subprocess.DEVNULL)
                agents.append(proc)
                wait_for(agent.exists, 10)
                subprocess.run(["ssh-add", "-q", str(account.key_file)], env={"SSH_AUTH_SOCK": str(agent)},
                               check=True, timeout=30, capture_output=True)
                account.agent_env = {"SSH_AUTH_SOCK": str(agent)}
        yield cloud
    finally:
        for proc in agents:
            proc.terminate()
            proc.wait(10)
        server.stop()


# -- signing by hand ---------------------------------------------------------------------------------


def sign(account: Account, method: str, path: str, *, date: str | None = None, headers: str = "date",
         signed: dict[str, str] | None = None, key=None, key_id: str | None = None) -> dict[str, str]:
    """Request headers with an HTTP Signature by ``account``'s key (or ``key``) over ``headers``;
    ``signed`` replaces header values in the signing string only (to sign other values than sent)."""
    date = date or formatdate(usegmt=True)
    sent = {"date": date, "host": "127.0.0.1"}
    lines = []
    for name in headers.split():
        if name == "(request-target)":
            lines.append(f"(request-target): {method.lower()} {path}")
        else:
            lines.append(f"{name}: {(signed or {}).get(name, sent.get(name, ''))}")
    data = "\n".join(lines).encode()
    key = key or account.private
    if isinstance(key, rsa.RSAPrivateKey):
        algorithm, signature = "rsa-sha256", key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        algorithm, signature = "ecdsa-sha256", key.sign(data, ec.ECDSA(hashes.SHA256()))
    else:
        algorithm, signature = "ed25519-sha512", key.sign(data)
    value = (f'Signature keyId="{key_id or account.key_id}",algorithm="{algorithm}",headers="{headers}",'
             f'signature="{base64.b64encode(signature).decode()}"')
    return {"date": date, "authorization": value}


def call(cloud: Cloud, who: str, method: str, path: str, body: dict | None = None,
         **signing) -> httpx.Response:
    headers = sign(cloud.accounts[who], method, path, **signing)
    return httpx.request(method, cloud.server.url + path, headers=headers, json=body, timeout=20)


def refused(r: httpx.Response, status: int, code: str, words: str = "") -> None:
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert body["code"] == code and words in body["message"], body


# -- the real client ---------------------------------------------------------------------------------


def test_describe_analytics_with_the_real_client(cloud: Cloud) -> None:
    described = cloud.sdc_json("acme", "sdc-describeanalytics")
    assert set(described) == {"modules", "fields", "types", "metrics", "transformations"}
    # Reverse DNS with the system's resolvers; no geolocate without a GeoIP database.
    assert list(described["transformations"]) == ["reversedns"]
    assert "raddr" in described["transformations"]["reversedns"]["fields"]
    metrics = {f"{m['module']}.{m['stat']}": m for m in described["metrics"]}
    # acme's scope is over `mode`: only the metrics with that field are offered to it.
    assert set(metrics) == {"cpu.usage"}
    usage = metrics["cpu.usage"]
    assert usage["interval"] == "interval" and usage["type"] == "percent"
    assert {"hostname", "zonename", "cpumode"} <= set(usage["fields"])
    assert "container" not in usage["fields"] and "mode" not in usage["fields"], "renamed, not doubled"
    assert described["fields"]["zonename"]["type"] == "string"
    assert described["types"]["string"] == {"arity": "discrete", "unit": ""}
    assert described["modules"]["cpu"] == {"label": "CPU"}
    # gamma's scope is over hostname: every metric; containers are zones on all of them.
    everything = cloud.sdc_json("gamma", "sdc-describeanalytics")
    proc = next(m for m in everything["metrics"] if (m["module"], m["stat"]) == ("proc", "cpu"))
    assert "zonename" in proc["fields"] and "container" not in proc["fields"]
    assert proc["type"] == "time_s" and everything["types"]["time_s"]["power"] == 0
    assert everything["types"][everything["fields"]["utilization"]["type"]]["arity"] == "numeric"
    assert "container" not in everything["fields"]


def test_the_real_client_creates_lists_reads_and_deletes(cloud: Cloud) -> None:
    made = cloud.sdc_json("acme", "sdc-createinstrumentation", "-m", "cpu", "-s", "usage", "-n", "zonename")
    inst_id = made["id"]
    assert isinstance(inst_id, str) and made["module"] == "cpu" and made["stat"] == "usage"
    assert made["decomposition"] == ["zonename"] and made["predicate"] == {}
    assert made["value-arity"] == "discrete-decomposition" and made["value-dimension"] == 2
    assert made["uri"] == f"/acme/analytics/instrumentations/{inst_id}"
    assert made["uris"] == [{"uri": f"{made['uri']}/value/raw", "name": "value_raw"}]
    # The same instrumentation through fleetscope's own API: the mapped metric and field, acme's
    # scope AND-ed in, owned by acme.
    native = cloud.native("GET", f"/instrumentations/{inst_id}").json()
    assert native["metric"] == "cpu.usage" and native["decomposition"] == ["container"]
    assert native["tenant"] == "acme" and native["predicate"] == {"eq": ["mode", "user"]}
    assert made["crtime"] == int(native["created"] * 1000)
    assert made["retention-time"] == native["retention"] and made["idle-max"] == native["idle_max"]
    assert made["granularity"] == native["granularity"] and made["persist-data"] == native["persist"]

    listed = cloud.sdc_json("acme", "sdc-listinstrumentations")
    assert [i["id"] for i in listed] == [inst_id]
    assert listed[0] == made
    assert cloud.sdc_json("acme", "sdc-getinstrumentation", inst_id) == made

    # A value with data: the client's answer against the native value of the same second, as
    # percent of one CPU (fleetscope keeps CPU seconds).
    def value_with_data():
        got = cloud.sdc_json("acme", "sdc-getinstrumentation", "--value", inst_id)
        return got if got["nsources"] and got["value"] else None

    got = wait_for(value_with_data, 20, 0.5)
    assert got["duration"] == 1 and got["end_time"] == got["start_time"] + 1
    assert got["transformations"] == {}
    same = cloud.native("GET", f"/instrumentations/{inst_id}/value",
                        params={"start_time": got["start_time"], "duration": 1}).json()
    assert same["start_time"] == got["start_time"] and same["nsources"] == got["nsources"]
    assert set(got["value"]) == set(same["value"])
    for key, seconds in same["value"].items():
        assert got["value"][key] == pytest.approx(seconds * 100), key

    cloud.sdc("acme", "sdc-deleteinstrumentation", inst_id)
    assert cloud.native("GET", f"/instrumentations/{inst_id}").status_code == 404
    assert cloud.sdc_json("acme", "sdc-listinstrumentations") == []
    gone = cloud.sdc("acme", "sdc-getinstrumentation", inst_id, ok=False)
    assert gone.returncode != 0 and "ResourceNotFound" in gone.stderr


def test_ecdsa_and_ed25519_keys_with_the_real_client(cloud: Cloud) -> None:
    made = cloud.sdc_json("acme-ec", "sdc-createinstrumentation", "-m", "cpu", "-s", "usage", "-n", "cpumode")
    try:
        assert made["decomposition"] == ["cpumode"]
        assert [i["id"] for i in cloud.sdc_json("acme-ed", "sdc-listinstrumentations")] == [made["id"]]
        got = cloud.sdc_json("acme-ed", "sdc-getinstrumentation", "--value", made["id"])
        assert set(got["value"]) <= {"user"}, "acme's scope keeps user-mode time only"
    finally:
        cloud.sdc("acme-ed", "sdc-deleteinstrumentation", made["id"])


def test_refusals_in_the_original_shape_through_the_client(cloud: Cloud) -> None:
    unknown = cloud.sdc("acme", "sdc-createinstrumentation", "-m", "cpu", "-s", "nosuch", ok=False)
    assert unknown.returncode != 0 and "InvalidArgument" in unknown.stderr and "cpu.nosuch" in unknown.stderr
    field = cloud.sdc("acme", "sdc-createinstrumentation", "-m", "cpu", "-s", "usage", "-n", "execname",
                      ok=False)
    assert "InvalidArgument" in field.stderr and "execname" in field.stderr
    regex = cloud.sdc("acme", "sdc-createinstrumentation", "-m", "cpu", "-s", "usage", "-p",
                      '{"re": ["zonename", "^a"]}', ok=False)
    assert "InvalidArgument" in regex.stderr and "'re'" in regex.stderr
    assert cloud.sdc_json("acme", "sdc-listinstrumentations") == [], "nothing was made"


def test_predicates_in_the_original_form(cloud: Cloud) -> None:
    pred = {"and": [{"eq": ["cpumode", "user"]}, {"ne": ["zonename", "nosuch"]}]}
    r = call(cloud, "acme-ec", "POST", "/acme/analytics/instrumentations",
             {"module": "cpu", "stat": "usage", "predicate": json.dumps(pred), "decomposition": "cpumode",
              "retention-time": "120", "persist-data": False})
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["predicate"] == pred and made["retention-time"] == 120
    assert r.headers["location"] == made["uri"]
    native = cloud.native("GET", f"/instrumentations/{made['id']}").json()
    assert native["predicate"] == {"and": [{"eq": ["mode", "user"]},
                                           {"and": [{"eq": ["mode", "user"]},
                                                    {"ne": ["container", "nosuch"]}]}]}
    # clone: the same question, with what the body says changed.
    cloned = call(cloud, "acme-ec", "POST", "/acme/analytics/instrumentations",
                  {"clone": made["id"], "retention-time": 60})
    assert cloned.status_code == 201, cloned.text
    copy = cloned.json()
    assert copy["id"] != made["id"] and copy["predicate"] == pred and copy["decomposition"] == ["cpumode"]
    assert copy["retention-time"] == 60
    for uri in (made["uri"], copy["uri"]):
        assert call(cloud, "acme-ec", "DELETE", uri).status_code == 204


def test_heatmap_image_and_details(cloud: Cloud) -> None:
    """A heatmap of process CPU utilization by execname, as the original portal asked for it; the
    details of a bucket against the same bucket counted from the value/raw distributions."""
    r = call(cloud, "gamma", "POST", "/gamma/analytics/instrumentations",
             {"module": "proc", "stat": "cpu", "decomposition": ["execname", "utilization"]})
    assert r.status_code == 201, r.text
    inst = r.json()
    assert inst["value-arity"] == "numeric-decomposition" and inst["value-dimension"] == 3
    assert {u["name"] for u in inst["uris"]} == {"value_raw", "value_heatmap", "details_heatmap"}
    image = inst["uri"] + "/value/heatmap/image"
    serve = psutil.Process(cloud.server.proc.pid).name()  # uses some CPU every second
    try:
        def drawn():
            got = call(cloud, "gamma", "GET", f"{image}?duration=10&selected={serve}").json()
            return got if got["present"] and got["nsources"] else None

        got = wait_for(drawn, 30, 0.5)
        assert got["width"] == 600 and got["height"] == 300 and got["nbuckets"] == 100
        assert got["duration"] == 10 and got["end_time"] == got["start_time"] + 10
        png = base64.b64decode(got["image"])
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        assert int.from_bytes(png[16:20], "big") == 600 and int.from_bytes(png[20:24], "big") == 300
        assert serve in got["present"]
        small = call(cloud, "gamma", "GET", f"{image}?start_time={got['start_time']}&duration=10&width=50"
                     f"&height=40&nbuckets=20&ymax=100&selected[]={serve}&isolate=true").json()
        png = base64.b64decode(small["image"])
        assert (int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")) == (50, 40)
        assert small["ymax"] == 100 and small["nbuckets"] == 20

        # Details of every bucket of the last column against the raw distributions of that second.
        start = small["start_time"]
        last = f"{inst['uri']}/value/raw?start_time={start + 9}&duration=1"
        raw = call(cloud, "gamma", "GET", last).json()
        total_raw = sum(count for dist in raw["value"].values() for _, count in dist)
        found = 0.0
        for y in range(0, 40, 2):
            d = call(cloud, "gamma", "GET", f"{inst['uri']}/value/heatmap/details?start_time={start}"
                     f"&duration=10&width=50&height=40&nbuckets=20&ymax=100&x=49&y={y}").json()
            assert d["bucket_time"] == start + 9
            assert d["bucket_ymax"] - d["bucket_ymin"] == pytest.approx(5.0)
            assert d["bucket_ymin"] == pytest.approx(100 - 5 * (y // 2 + 1))
            assert d["total"] == pytest.approx(sum(d["present"].values()))
            found += d["total"]
        assert found == pytest.approx(total_raw, rel=1e-6), "every bucket once, utilization within [0, 100)"
        refused(call(cloud, "gamma", "GET", inst["uri"] + "/value/heatmap/details"), 409, "MissingParameter")
        refused(call(cloud, "gamma", "GET", image + "?hues=ff0000"), 409, "InvalidArgument", "hues")
        refused(call(cloud, "gamma", "GET", image + "?isolate=true&exclude=true"), 409, "InvalidArgument")
        refused(call(cloud, "gamma", "GET", image + "?nbuckets=0"), 409, "InvalidArgument", "nbuckets")
    finally:
        call(cloud, "gamma", "DELETE", inst["uri"])
    scalar = call(cloud, "acme-ec", "POST", "/acme/analytics/instrumentations",
                  {"module": "cpu", "stat": "usage"})
    refused(call(cloud, "acme-ec", "GET", scalar.json()["uri"] + "/value/heatmap/image"), 409,
            "InvalidArgument")
    call(cloud, "acme-ec", "DELETE", scalar.json()["uri"])


def test_clone_modify_and_head_as_the_original_had_them(cloud: Cloud) -> None:
    # ECDSA: RSA signatures of the same second are equal, and a second change would be a replay.
    made = cloud.sdc_json("acme-ec", "sdc-createinstrumentation", "-m", "cpu", "-s", "usage", "-n", "cpumode")
    made_ids = [made["id"]]
    try:
        # The real client's --clone, and CloudAPI's CloneInstrumentation route with an override.
        copy = cloud.sdc_json("acme-ec", "sdc-createinstrumentation", "--clone", made["id"])
        made_ids.append(copy["id"])
        assert copy["id"] != made["id"] and copy["decomposition"] == ["cpumode"] and copy["module"] == "cpu"
        r = call(cloud, "acme-ec", "POST", f"{made['uri']}?action=clone", {"decomposition": []})
        assert r.status_code == 201, r.text
        made_ids.append(r.json()["id"])
        assert r.json()["decomposition"] == [] and r.json()["value-arity"] == "scalar"
        assert r.headers["location"] == r.json()["uri"]
        refused(call(cloud, "acme-ec", "POST", f"{made['uri']}?action=explode"), 409, "InvalidArgument",
                "explode is not a valid action")
        refused(call(cloud, "acme-ec", "POST", made["uri"]), 409, "InvalidArgument", "not a valid action")
        # Modify (CA's PUT): retention-time, idle-max, persist-data; nothing else.
        r = call(cloud, "acme-ec", "PUT", made["uri"], {"retention-time": 300, "idle-max": 7200})
        assert r.status_code == 200, r.text
        assert r.json()["retention-time"] == 300 and r.json()["idle-max"] == 7200
        native = cloud.native("GET", f"/instrumentations/{made['id']}").json()
        assert native["retention"] == 300 and native["idle_max"] == 7200
        refused(call(cloud, "acme-ec", "PUT", made["uri"], {"granularity": 5}), 409, "InvalidArgument",
                "granularity: cannot be changed")
        refused(call(cloud, "acme-ec", "PUT", made["uri"], {"retention-time": "soon"}), 409,
                "InvalidArgument", "retention-time")
        refused(call(cloud, "acme-ec", "PUT", made["uri"], {}), 409, "MissingParameter")
        assert cloud.native("GET", f"/instrumentations/{made['id']}").json()["retention"] == 300
        refused(call(cloud, "beta", "PUT", made["uri"].replace("/acme/", "/beta/"), {"idle-max": 60}), 404,
                "ResourceNotFound")
        # HEAD beside every GET, as CloudAPI mounted them: the GET's status, no body.
        for path in ("/acme/analytics", "/acme/analytics/instrumentations", made["uri"],
                     made["uri"] + "/value/raw"):
            head = call(cloud, "acme-ec", "HEAD", path)
            assert head.status_code == 200 and head.content == b"", path
        assert httpx.head(cloud.server.url + made["uri"]).status_code == 401
        # What CloudAPI did not route, in restify's words.
        r = call(cloud, "acme-ec", "PATCH", made["uri"], {"idle-max": 60})
        refused(r, 405, "MethodNotAllowedError", "PATCH is not allowed")
        assert r.headers["allow"] == "DELETE, GET, HEAD, POST, PUT"
        refused(call(cloud, "acme-ec", "GET", made["uri"] + "/value"), 404, "ResourceNotFound",
                "/value does not exist")
    finally:
        for inst_id in made_ids:
            call(cloud, "acme-ec", "DELETE", f"/acme/analytics/instrumentations/{inst_id}")


def test_heatmap_average_and_percentile(cloud: Cloud) -> None:
    """Cloud Analytics' column average and percentile, against fleetscope's own /average and
    /percentiles of the same seconds."""
    inst = call(cloud, "gamma", "POST", "/gamma/analytics/instrumentations",
                {"module": "proc", "stat": "cpu", "decomposition": ["utilization"]}).json()
    try:
        def with_data():
            got = call(cloud, "gamma", "GET", inst["uri"] + "/value/heatmap/average?ndatapoints=5").json()
            return got if all(v["average"] is not None for v in got) else None

        averages = wait_for(with_data, 30, 0.5)
        start = averages[0]["start_time"]
        native = cloud.native("GET", f"/instrumentations/{inst['id']}/average",
                              params={"start_time": start, "ndatapoints": 5}).json()
        assert [v["average"] for v in averages] == pytest.approx([v["average"] for v in native])
        assert [v["start_time"] for v in averages] == [v["start_time"] for v in native]
        p90 = call(cloud, "gamma", "GET", inst["uri"] + f"/value/heatmap/percentile?percentile=0.9"
                   f"&start_time={start}&duration=1&nbuckets=50&ymax=100").json()
        native = cloud.native("GET", f"/instrumentations/{inst['id']}/percentiles",
                              params={"start_time": start, "duration": 1, "q": "0.9"}).json()
        assert p90["percentile"] == pytest.approx(native["percentiles"]["0.9"])
        assert p90["start_time"] == start and p90["duration"] == 1 and p90["requested_start_time"] == start
        refused(call(cloud, "gamma", "GET", inst["uri"] + "/value/heatmap/percentile"), 409,
                "MissingParameter", "percentile")
        refused(call(cloud, "gamma", "GET", inst["uri"] + "/value/heatmap/percentile?percentile=90"), 409,
                "InvalidArgument", "percentile")
    finally:
        call(cloud, "gamma", "DELETE", inst["uri"])
    scalar = call(cloud, "acme-ec", "POST", "/acme/analytics/instrumentations",
                  {"module": "cpu", "stat": "usage"}).json()
    refused(call(cloud, "acme-ec", "GET", scalar["uri"] + "/value/heatmap/average"), 409, "InvalidArgument")
    call(cloud, "acme-ec", "DELETE", scalar["uri"])


# -- security -----------------------------------------------------------------------------------------


def test_no_signature_basic_or_bearer_is_refused(cloud: Cloud) -> None:
    url = cloud.server.url + "/acme/analytics"
    refused(httpx.get(url), 401, "InvalidCredentials", "signed request")
    basic = base64.b64encode(b"acme:secret").decode()
    refused(httpx.get(url, headers={"authorization": f"Basic {basic}"}), 401, "InvalidCredentials", "Basic")
    token = cloud.server.token("acme-token", "operator", "acme")
    refused(httpx.get(url, headers={"authorization": f"Bearer {token}"}), 401, "InvalidCredentials", "Bearer")
    for path in ("/acme/analytics/instrumentations", "/acme/analytics/instrumentations/1",
                 "/acme/analytics/instrumentations/1/value/raw"):
        r = httpx.get(cloud.server.url + path)
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Signature"), path
    refused(httpx.post(cloud.server.url + "/acme/analytics/instrumentations", json={}), 401,
            "InvalidCredentials")
    refused(httpx.delete(cloud.server.url + "/acme/analytics/instrumentations/1"), 401, "InvalidCredentials")


def test_wrong_key_and_wrong_account(cloud: Cloud) -> None:
    acme = cloud.accounts["acme"]
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    # acme's key id, signed by another key.
    refused(call(cloud, "acme-ec", "GET", "/acme/analytics", key=stranger), 401, "InvalidCredentials",
            "does not verify")
    # A key nobody registered.
    unknown = "/acme/keys/" + ":".join(["00"] * 16)
    refused(call(cloud, "acme-ec", "GET", "/acme/analytics", key_id=unknown), 401, "InvalidCredentials",
            "no key")
    # beta's key claimed as acme's, and acme's key claimed as beta's: the key is looked up under the
    # account keyId names, so neither verifies.
    beta_as_acme = f"/acme/keys/{cloud.accounts['beta'].public.md5}"
    refused(call(cloud, "beta", "GET", "/acme/analytics", key_id=beta_as_acme), 401, "InvalidCredentials")
    refused(call(cloud, "acme-ec", "GET", "/beta/analytics", key_id=f"/beta/keys/{acme.public.md5}"), 401,
            "InvalidCredentials")
    # acme's own key, properly signed, on beta's routes.
    for path in ("/beta/analytics", "/beta/analytics/instrumentations"):
        refused(call(cloud, "acme-ec", "GET", path), 403, "NotAuthorized", "'beta'")
    # /my is the signer's own account.
    assert call(cloud, "beta", "GET", "/my/analytics/instrumentations").status_code == 200


def test_old_future_and_missing_dates(cloud: Cloud) -> None:
    now = __import__("time").time()
    for skew in (-330, 330, -3600):  # HTTP dates drop the fraction: a margin past the 300 s limit
        old = formatdate(now + skew, usegmt=True)
        refused(call(cloud, "acme-ec", "GET", "/acme/analytics", date=old), 401, "InvalidCredentials",
                "server's clock")
    assert call(cloud, "acme-ec", "GET", "/acme/analytics",
                date=formatdate(now - 240, usegmt=True)).status_code == 200
    refused(call(cloud, "acme-ec", "GET", "/acme/analytics", date="yesterday"), 401, "InvalidCredentials",
            "HTTP date")


def test_a_signature_over_other_headers_is_refused(cloud: Cloud) -> None:
    # Signed over "host" while claiming "date": does not verify.
    refused(call(cloud, "acme-ec", "GET", "/acme/analytics", signed={"date": "host: 127.0.0.1"}), 401,
            "InvalidCredentials", "does not verify")
    # A signature that leaves out the date is refused before any key is looked at.
    refused(call(cloud, "acme-ec", "GET", "/acme/analytics", headers="host"), 401, "InvalidCredentials",
            "date header")
    # Signed over another date than the one sent.
    other = formatdate(__import__("time").time() - 60, usegmt=True)
    refused(call(cloud, "acme-ec", "GET", "/acme/analytics", signed={"date": other}), 401,
            "InvalidCredentials", "does not verify")
    # (request-target) signed too: for this path only.
    ok = call(cloud, "acme-ec", "GET", "/acme/analytics", headers="(request-target) date")
    assert ok.status_code == 200
    headers = sign(cloud.accounts["acme-ec"], "GET", "/acme/analytics", headers="(request-target) date")
    moved = httpx.get(cloud.server.url + "/acme/analytics/instrumentations", headers=headers)
    refused(moved, 401, "InvalidCredentials", "does not verify")


def test_a_replayed_change_is_refused(cloud: Cloud) -> None:
    acme = cloud.accounts["acme-ec"]  # ECDSA signatures differ each time, RSA ones within a second do not
    path = "/acme/analytics/instrumentations"
    headers = sign(acme, "POST", path)
    body = {"module": "cpu", "stat": "usage"}
    first = httpx.post(cloud.server.url + path, headers=headers, json=body)
    assert first.status_code == 201
    refused(httpx.post(cloud.server.url + path, headers=headers, json=body), 401, "InvalidCredentials",
            "replayed")
    # The same signature turned into a delete: refused too, and nothing was deleted.
    uri = first.json()["uri"]
    refused(httpx.delete(cloud.server.url + uri, headers=headers), 401, "InvalidCredentials", "replayed")
    assert call(cloud, "acme-ec", "GET", uri).status_code == 200
    # A read's signature may make one change, never two.
    read = sign(acme, "GET", path)
    assert httpx.get(cloud.server.url + path, headers=read).status_code == 200
    assert httpx.delete(cloud.server.url + uri, headers=read).status_code == 204
    refused(httpx.delete(cloud.server.url + uri, headers=read), 401, "InvalidCredentials", "replayed")
    assert [i for i in cloud.native("GET", "/instrumentations", params={"tenant": "acme"}).json()
            ["instrumentations"]] == []


def test_two_accounts_see_only_their_own(cloud: Cloud) -> None:
    mine = call(cloud, "acme-ec", "POST", "/acme/analytics/instrumentations",
                {"module": "cpu", "stat": "usage", "decomposition": ["cpumode"]}).json()
    theirs = call(cloud, "beta", "POST", "/beta/analytics/instrumentations",
                  {"module": "cpu", "stat": "usage", "decomposition": ["cpumode"]}).json()
    try:
        listed = call(cloud, "acme-ec", "GET", "/acme/analytics/instrumentations").json()
        assert [i["id"] for i in listed] == [mine["id"]]
        assert [i["id"] for i in cloud.sdc_json("beta", "sdc-listinstrumentations")] == [theirs["id"]]
        nosuch = str(int(theirs["id"]) + 1000)
        for inst_id in (theirs["id"], nosuch):  # another account's id looks like one that does not exist
            for suffix in ("", "/value/raw"):
                r = call(cloud, "acme-ec", "GET", f"/acme/analytics/instrumentations/{inst_id}{suffix}")
                refused(r, 404, "ResourceNotFound", f"no instrumentation {inst_id}")
            r = call(cloud, "acme-ec", "DELETE", f"/acme/analytics/instrumentations/{inst_id}")
            refused(r, 404, "ResourceNotFound", f"no instrumentation {inst_id}")
        cloned = call(cloud, "acme-ec", "POST", "/acme/analytics/instrumentations", {"clone": theirs["id"]})
        refused(cloned, 404, "ResourceNotFound")
        # Each one's values hold only its own mode, whatever it asks for.
        def keys(who: str, inst: dict) -> set[str] | None:
            got = call(cloud, who, "GET", f"{inst['uri']}/value/raw").json()
            return set(got["value"]) if got["value"] else None

        assert wait_for(lambda: keys("acme", mine), 20) == {"user"}
        assert wait_for(lambda: keys("beta", theirs), 20) == {"system"}
        sneaky = call(cloud, "acme-ec", "POST", "/acme/analytics/instrumentations",
                      {"module": "cpu", "stat": "usage", "decomposition": ["cpumode"],
                       "predicate": {"or": [{"eq": ["cpumode", "system"]}, {"ne": ["cpumode", "x"]}]}}).json()
        assert wait_for(lambda: keys("acme", sneaky), 20) == {"user"}
        assert call(cloud, "acme-ec", "DELETE", sneaky["uri"]).status_code == 204
    finally:
        call(cloud, "acme-ec", "DELETE", mine["uri"])
        call(cloud, "beta", "DELETE", theirs["uri"])


def test_a_viewer_key_reads_but_does_not_change(cloud: Cloud, tmp_path: Path) -> None:
    viewer = Account("acme", tmp_path / "viewer", "ecdsa")
    r = cloud.native("POST", "/accounts/acme/keys", json={"key": viewer.public.text, "role": "viewer"})
    assert r.status_code == 201 and r.json()["fingerprint"] == viewer.public.md5
    cloud.accounts["viewer"] = viewer
    assert call(cloud, "viewer", "GET", "/acme/analytics/instrumentations").status_code == 200
    refused(call(cloud, "viewer", "POST", "/acme/analytics/instrumentations",
                 {"module": "cpu", "stat": "usage"}), 403, "NotAuthorized", "'operator'")
    # Removed, it no longer signs anything.
    assert cloud.native("DELETE", f"/accounts/acme/keys/{viewer.public.sha256}").status_code == 204
    refused(call(cloud, "viewer", "GET", "/acme/analytics"), 401, "InvalidCredentials", "no key")


def test_account_keys_are_checked(cloud: Cloud) -> None:
    acme = cloud.accounts["acme"]
    again = cloud.native("POST", "/accounts/acme/keys", json={"key": acme.public.text})
    assert again.status_code == 409 and again.json()["error"]["field"] == "key"
    private = acme.key_file.read_text()
    bad = cloud.native("POST", "/accounts/acme/keys", json={"key": private})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "key"
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    bad = cloud.native("POST", "/accounts/acme/keys", json={"key": small})
    assert bad.status_code == 422 and "2048" in bad.json()["error"]["message"]
    assert cloud.native("POST", "/accounts/nosuch/keys", json={"key": acme.public.text}).status_code == 404
    listed = cloud.native("GET", "/accounts/acme/keys").json()["keys"]
    assert {k["fingerprint"] for k in listed} >= {acme.public.md5, cloud.accounts["acme-ed"].public.md5}
    assert all("PRIVATE" not in json.dumps(k) for k in listed)


def test_logins_that_are_fleetscope_paths_cannot_be_made(cloud: Cloud) -> None:
    for name in ("api", "metrics", "healthz", "web", "login", "prometheus", "my"):
        r = cloud.native("POST", "/tenants", json={"name": name, "scope": 'mode == "user"'})
        assert r.status_code == 422 and r.json()["error"]["field"] == "name", name
    # Every top-level path of the app is reserved (a new route must add its first segment).
    from fleetscope.api.routes import ROUTERS

    firsts = {route.path.strip("/").split("/")[0] for router in ROUTERS for route in router.routes}
    firsts -= {"", "{login}"}
    assert firsts <= access.RESERVED_LOGINS, firsts - access.RESERVED_LOGINS
    # fleetscope's own paths still answer as before.
    assert httpx.get(cloud.server.url + "/healthz").status_code == 200


# -- the store ---------------------------------------------------------------------------------------


def test_account_keys_in_both_stores(store) -> None:  # noqa: F811 - fixture
    key = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    parsed = sshkeys.parse_public_key(key + " me@host")
    assert parsed.kind == "ed25519" and parsed.comment == "me@host"
    made = store.add_account_key("acme", "me", "operator", parsed.kind, parsed.md5, parsed.sha256,
                                 parsed.text)
    assert made is not None and made.public_key == parsed.text
    assert store.add_account_key("acme", "again", "viewer", parsed.kind, parsed.md5, parsed.sha256,
                                 parsed.text) is None
    assert store.add_account_key("beta", "same key", "viewer", parsed.kind, parsed.md5, parsed.sha256,
                                 parsed.text) is not None
    assert store.account_key("acme", parsed.md5) == made
    assert store.account_key("acme", parsed.sha256) == made
    assert store.account_key("gamma", parsed.md5) is None
    assert [k.login for k in store.account_keys("beta")] == ["beta"]
    assert store.delete_account_keys("acme", parsed.sha256) == 1
    assert store.account_key("acme", parsed.md5) is None
    assert store.delete_account_keys("beta") == 1


def test_fingerprints_match_ssh_keygen(tmp_path: Path) -> None:
    for kind in ("rsa", "ecdsa", "ed25519"):
        account = Account("x", tmp_path / kind, kind)
        pub = str(account.key_file.with_suffix(".pub"))
        md5 = subprocess.run(["ssh-keygen", "-l", "-E", "md5", "-f", pub], capture_output=True, text=True,
                             check=True).stdout.split()[1]
        sha = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", pub], capture_output=True, text=True,
                             check=True).stdout.split()[1]
        assert md5 == f"MD5:{account.public.md5}" and sha == account.public.sha256
        assert sshkeys.normalise_fingerprint(md5) == account.public.md5
