"""Real containers run by podman (Debian's), named by podman's own state: CPU and memory by
container name, image and label; network bytes from the container's namespace; containers that
start and stop during the test; drill-down from a container to its processes through
`fleetscope serve`.

The containers' root filesystem is busybox-static, imported with `podman import` (nothing is
pulled). On this kind of machine (cgroup v1 hybrid, no systemd) podman runs with runc, the
cgroupfs manager and vfs storage, in a storage root of the test's own, which the agent finds the
way podman does (``CONTAINERS_STORAGE_CONF``)."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from fleetscope.sources.cgroup import CgroupSource, find_hierarchies
from fleetscope.sources.proc import ProcSource
from fleetscope.sources.runtimes import Names
from fleetscope.sources.runtimes.podman import PodmanState
from tests.conftest import Server, free_port, wait_for
from tests.guests import busybox_static, rootfs_tar
from tests.test_cgroup import TwoTicks, proc_cpu, remove_dirs

PODMAN = shutil.which("podman")
IMAGE = "localhost/fleetscope-busybox:test"
API = "/api/v1"
BALLAST_MIB = 32  # written to the container's /dev/shm (tmpfs: charged to it as cache)
FETCH_BYTES = 2 << 20  # served by busybox httpd on the container's loopback, fetched by wget
# No output (conmon would burn CPU copying it to the log): a shell loop, after the ballast.
BURN = f"dd if=/dev/zero of=/dev/shm/ballast bs=1M count={BALLAST_MIB} 2>/dev/null; while :; do :; done"


class Podman:
    """podman with a storage root of its own under ``root`` (configured as an operator would:
    storage.conf and containers.conf, named by environment variables)."""

    def __init__(self, root: Path) -> None:
        self.graphroot = root / "storage"
        storage = root / "storage.conf"
        storage.write_text(f'[storage]\ndriver = "vfs"\ngraphroot = "{self.graphroot}"\n'
                           f'runroot = "{root / "run"}"\n')
        containers = root / "containers.conf"
        containers.write_text('[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]\n'
                              'netns = "none"\n[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\n'
                              'events_logger = "file"\n')
        self.env = {**os.environ, "CONTAINERS_STORAGE_CONF": str(storage),
                    "CONTAINERS_CONF": str(containers)}

    def __call__(self, *args: str) -> str:
        done = subprocess.run([PODMAN, *args], env=self.env, capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout.strip()

    def run(self, name: str, command: str, *options: str) -> str:
        """Start a container of IMAGE running ``sh -c command``; its full id."""
        return self("run", "-d", "--name", name, "--network", "none", *options, IMAGE, "sh", "-c", command)

    def pid(self, name: str) -> int:
        return int(self("inspect", "--format", "{{.State.Pid}}", name))

    def names(self, *labels: str) -> Names:
        return Names(labels, podman=PodmanState([str(self.graphroot)]))


@pytest.fixture(scope="module")
def podman(tmp_path_factory: pytest.TempPathFactory):
    if os.geteuid() != 0:
        pytest.fail("podman runs containers with cgroups of their own only as root here", pytrace=False)
    # Missing packages are a failure, not a skip: `make test` installs them.
    if PODMAN is None or shutil.which("runc") is None:
        pytest.fail("needs podman and runc (make test installs them)", pytrace=False)
    if (why := busybox_static()) is not None:
        pytest.fail(why, pytrace=False)
    root = tmp_path_factory.mktemp("podman")
    p = Podman(root)
    p("import", "--quiet", str(rootfs_tar(root / "rootfs.tar")), IMAGE)
    yield p
    p("rm", "--all", "--force", "--time", "0")


def rows_named(src: CgroupSource, metric: str, name: str) -> list[dict]:
    rows = src.collect(metric)
    return [dict(zip([*rows.columns, "value"], r, strict=True)) for r in rows.rows if r[0] == name]


def test_cpu_and_memory_by_name_image_and_label(podman) -> None:
    podman.run("web", BURN, "--label", "app=checkout", "--label", "tier=front")
    pid = podman.pid("web")
    wait_for(lambda: proc_cpu(pid) >= 0.05, timeout=30)  # the ballast is written, the loop runs
    src = CgroupSource(rescan_every=0, names=podman.names("app"))
    m = TwoTicks(src, ["container.cpu", "container.memory"], pid)
    [cpu] = [r for r in m.rows["container.cpu"] if r[0] == "web"]
    # The row's naming fields, as `podman ps` shows them, and the label picked
    assert cpu[:7] == ("web", "podman", "", "", IMAGE, "", "checkout")
    # The container's CPU time is its one burning process's own (/proc/PID/stat).
    assert cpu[-1] == pytest.approx(m.burner, rel=0.1, abs=0.03)
    memory = {r[7]: r[8] for r in m.rows["container.memory"] if r[0] == "web"}
    assert memory["cache"] >= BALLAST_MIB << 20  # the ballast in its /dev/shm
    assert src.names.warning() == ""
    # Its process, named the same: drill from the container into it.
    procs = ProcSource(names=podman.names())
    try:
        procs.begin_tick(0)
        rows = procs.collect("proc.rss")
        mine = [dict(zip(rows.columns, r, strict=False)) for r in rows.rows if r[0] == str(pid)]
    finally:
        procs.close()
    assert mine and mine[0]["container"] == "web" and mine[0]["execname"] == "sh"
    podman("rm", "--force", "--time", "0", "web")  # it burns a CPU


def test_network_bytes_from_the_container_namespace(podman) -> None:
    podman.run("files", f"dd if=/dev/zero of=/www/big bs=1024 count={FETCH_BYTES >> 10} 2>/dev/null; "
               "httpd -p 8080 -h /www; exec sleep 100000")
    src = CgroupSource(rescan_every=0, names=podman.names())
    wait_for(lambda: podman("exec", "files", "sh", "-c", "test -s /www/big && echo ok") == "ok")
    src.begin_tick(0)
    before = time.monotonic()
    src.collect("container.net")
    after_first = time.monotonic()
    podman("exec", "files", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/big")
    # past a normal tick, so the rate is the bytes over the time that really passed
    wait_for(lambda: time.monotonic() - after_first > 1.3, interval=0.05)
    src.begin_tick(1)
    second = time.monotonic()
    rows = {(r["nic"], r["direction"]): r["value"] for r in rows_named(src, "container.net", "files")}
    after = time.monotonic()
    # Only its loopback (--network none), both ways: the file and HTTP and TCP headers on top
    assert set(rows) == {("lo", "in"), ("lo", "out")}
    for rate in rows.values():
        assert rate * (after - before) >= FETCH_BYTES
        assert rate * (second - after_first) <= FETCH_BYTES * 1.05
    assert src.reads["netdev"] >= 2


def test_containers_come_and_go(podman) -> None:
    src = CgroupSource(names=podman.names())  # the default rescan: new cgroups seen by link counts
    src.begin_tick(0)
    src.collect("container.pids")
    podman.run("blip", "exec sleep 100000", "--label", "app=batch")
    src.begin_tick(1)  # the next tick
    rows = rows_named(src, "container.pids", "blip")
    assert [(r["runtime"], r["image"], r["value"]) for r in rows] == [("podman", IMAGE, 1)]
    podman("rm", "--force", "--time", "0", "blip")
    src.begin_tick(2)
    assert rows_named(src, "container.pids", "blip") == []
    assert src.collect("container.pids").warning == ""


def test_a_broken_podman_database_is_a_warning(podman, tmp_path: Path) -> None:
    """A half-written database: the container keeps its short id, the rows say why, nothing fails."""
    podman.run("lonely", "exec sleep 100000")
    cid = podman("inspect", "--format", "{{.Id}}", "lonely")
    root = tmp_path / "storage"
    (root / "libpod").mkdir(parents=True)
    whole = (podman.graphroot / "libpod" / "bolt_state.db").read_bytes()
    (root / "libpod" / "bolt_state.db").write_bytes(whole[: len(whole) // 3])  # cut mid-way
    broken = CgroupSource(names=Names(podman=PodmanState([str(root)])))
    broken.begin_tick(0)
    rows = broken.collect("container.pids")
    assert [r[0] for r in rows.rows if r[0] == cid[:12]] == [cid[:12]]
    assert "bolt_state.db" in rows.warning and "skipped" in rows.warning
    # Whole again: named at the next try, and the warning is gone.
    (root / "libpod" / "bolt_state.db").write_bytes(whole)
    names = Names(podman=PodmanState([str(root)]), retry_after=0)
    fixed = CgroupSource(names=names)
    fixed.begin_tick(0)
    assert "lonely" in {r[0] for r in fixed.collect("container.pids").rows}
    assert fixed.collect("container.pids").warning == ""


def test_serve_breaks_down_by_name_and_label_and_drills_into_processes(podman, tmp_path: Path,
                                                                       monkeypatch) -> None:
    podman.run("api", "while :; do :; done", "--label", "app=checkout")
    podman.run("idle", "exec sleep 100000", "--label", "app=search")
    for key in ("CONTAINERS_STORAGE_CONF", "CONTAINERS_CONF"):  # the server finds podman's state so
        monkeypatch.setenv(key, podman.env[key])
    server = Server(tmp_path, free_port(), ["--container-label", "app"]).start()
    try:
        with server.client() as client:
            def make(body: dict) -> int:
                r = client.post(f"{API}/instrumentations", json=body)
                assert r.status_code == 201, r.text
                return r.json()["id"]

            by_label = make({"module": "container", "stat": "cpu", "predicate": 'app == "checkout"',
                             "decomposition": ["container"]})
            by_image = make({"module": "container", "stat": "memory", "decomposition": ["image"]})
            drill = make({"module": "proc", "stat": "cpu", "predicate": 'container == "api"',
                          "decomposition": ["execname"]})

            def value(inst: int) -> dict:
                return client.get(f"{API}/instrumentations/{inst}/value").json()["value"] or {}

            cpu = wait_for(lambda: value(by_label).get("api", 0) > 0.2 and value(by_label), timeout=30)
            assert "idle" not in cpu  # app=search
            assert wait_for(lambda: value(by_image).get(IMAGE), timeout=30) > 0
            assert wait_for(lambda: value(drill).get("sh", 0) > 0.2, timeout=30)
            dashboards = client.get(f"{API}/dashboards").json()["dashboards"]
            guests = [d for d in dashboards if d["name"] == "Guests"]
            assert len(guests) == 1
            metrics = {client.get(f"{API}/instrumentations/{p['instrumentation']}").json()["module"] + "."
                       + client.get(f"{API}/instrumentations/{p['instrumentation']}").json()["stat"]
                       for p in guests[0]["panels"]}
            assert {"cpu.usage", "container.cpu", "container.memory", "container.net"} <= metrics
    finally:
        server.stop()


@pytest.fixture
def bare_host():
    """A host with no cgroups but the containers to come, for a `fleetscope serve` of its own: an
    empty cgroup made here in every hierarchy, bind-mounted over each hierarchy's mount point in a
    mount namespace of the server's own (this machine always has cgroups of its own: the other
    tests', the sandbox's). Yields (the command prefix that runs serve there, the cgroup path
    that podman's ``--cgroup-parent`` puts containers under)."""
    hierarchies = find_hierarchies()
    if not hierarchies:
        pytest.fail("no cgroup hierarchy mounted", pytrace=False)
    if shutil.which("unshare") is None:
        pytest.fail("needs unshare (util-linux)", pytrace=False)
    parent = f"fleetscope-bare-{os.getpid()}"
    made = [Path(h.mount) / parent for h in hierarchies]
    for d in made:
        d.mkdir()
    binds = "; ".join(f"mount --bind {shlex.quote(str(d))} {shlex.quote(h.mount)}"
                      for d, h in zip(made, hierarchies, strict=True))
    yield ["unshare", "--mount", "--propagation", "private", "sh", "-ec", f'{binds}; exec "$@"', "sh"], \
        "/" + parent
    # What podman left under it (conmon's cgroup...), deepest first, then the cgroup itself.
    remove_dirs(sorted((p for d in made for p in d.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)))
    remove_dirs(made)


def test_serve_started_without_containers_sees_the_first_one(podman, bare_host, tmp_path: Path,
                                                             monkeypatch) -> None:
    """`fleetscope serve` started on a host without any container offers ``container.*`` when the
    first one starts, names it, and makes the Guests dashboard: without a restart."""
    prefix, parent = bare_host
    for key in ("CONTAINERS_STORAGE_CONF", "CONTAINERS_CONF"):
        monkeypatch.setenv(key, podman.env[key])
    server = Server(tmp_path, free_port(), prefix=prefix).start()
    try:
        with server.client() as client:
            def known() -> set[str]:
                return {mt["name"] for mt in client.get(f"{API}/metrics").json()["metrics"]}

            def guests() -> list[dict]:
                listed = client.get(f"{API}/dashboards").json()["dashboards"]
                return [d for d in listed if d["name"] == "Guests"]

            assert "cpu.usage" in wait_for(known)  # the agent has reported
            assert not any(name.startswith("container.") for name in known())
            assert guests() == []
            podman.run("late", "while :; do :; done", "--cgroup-parent", parent)
            wait_for(lambda: "container.cpu" in known(), timeout=30)
            [dashboard] = wait_for(guests)
            panels = {}
            for p in dashboard["panels"]:
                inst = client.get(f"{API}/instrumentations/{p['instrumentation']}").json()
                panels[(inst["module"], inst["stat"], tuple(inst["decomposition"]))] = inst["id"]
            by_container = panels[("container", "cpu", ("container",))]

            def late_cpu() -> float:
                value = client.get(f"{API}/instrumentations/{by_container}/value").json()["value"] or {}
                return value.get("late", 0)

            # By its podman name; busy on one of its CPU
            assert wait_for(lambda: late_cpu() > 0.3, timeout=30)
    finally:
        server.stop()
        podman("rm", "--force", "--time", "0", "late")
