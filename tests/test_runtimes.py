"""Container names from runtimes that cannot run here, on their state laid out as they lay it out:
the kubelet's log directories with real cgroups in its cgroupfs layout, and Docker's
``config.v2.json``; label fields; a source's warning reaching the instrumentation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fleetscope.sources.cgroup import CgroupSource
from fleetscope.sources.containers import resolve
from fleetscope.sources.runtimes import Names, label_field
from fleetscope.sources.runtimes.docker import DockerState
from fleetscope.sources.runtimes.kubernetes import KubeletLogs
from tests.test_cgroup import V1, remove_dirs

UID = "6b1f3c2e-9a4d-4f7e-8c1b-2d3e4f5a6b7c"
WEB = "a1" * 32  # the app container's id
PAUSE = "b2" * 32  # the sandbox's: the kubelet keeps no log for it
NO_RUNTIME = object()


def kubelet_logs(root: Path) -> Path:
    """The kubelet's log layout for pod shop/checkout-7d9f (uid UID) with container web."""
    pod_dir = root / "pods" / f"shop_checkout-7d9f_{UID}" / "web"
    pod_dir.mkdir(parents=True)
    (pod_dir / "0.log").write_text("")
    (root / "containers").mkdir()
    (root / "containers" / f"checkout-7d9f_shop_web-{WEB}.log").symlink_to(pod_dir / "0.log")
    return root


@pytest.fixture
def kube_cgroups():
    """The cgroupfs driver's layout, /kubepods/burstable/pod<uid>/<container id>, in the v1 pids
    hierarchy, with a sleeping process in each container."""
    if os.geteuid() != 0 or "pids" not in V1:
        pytest.fail("needs root and the v1 pids hierarchy to make cgroups", pytrace=False)
    top = Path(V1["pids"].mount) / "kubepods"
    made = [top, top / "burstable", top / "burstable" / f"pod{UID}"]
    made += [made[-1] / WEB, made[-1] / PAUSE]
    procs = []
    for d in made:
        d.mkdir(exist_ok=True)
    for d in made[-2:]:
        enter = (lambda d=d: (d / "cgroup.procs").write_text(str(os.getpid())))  # noqa: E731
        procs.append(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                                      preexec_fn=enter))
    yield
    for p in procs:
        p.kill()
        p.wait()
    remove_dirs(list(reversed(made)))


def test_kubernetes_names_from_the_kubelet_log_layout(kube_cgroups, tmp_path: Path) -> None:
    logs = KubeletLogs(str(kubelet_logs(tmp_path)))
    src = CgroupSource(rescan_every=0, names=Names(kubernetes=logs, docker=NO_RUNTIME, podman=NO_RUNTIME))
    src.begin_tick(0)
    rows = src.collect("container.pids")
    got = {r[0]: dict(zip(rows.columns, r, strict=False)) for r in rows.rows if r[1] == "containerd"}
    # the app container: every name; the sandbox: its pod's names, and its short id
    assert (got["web"]["pod"], got["web"]["namespace"]) == ("checkout-7d9f", "shop")
    assert (got[PAUSE[:12]]["pod"], got[PAUSE[:12]]["namespace"]) == ("checkout-7d9f", "shop")
    assert rows.warning == ""
    listed = logs.containers.lists + logs.pods.lists
    src.begin_tick(1)
    src.collect("container.pids")
    assert logs.containers.lists + logs.pods.lists == listed  # nothing new: nothing listed again


def test_kubernetes_rules_on_paths() -> None:
    logs = KubeletLogs("/nonexistent")  # no kubelet: nothing known, nothing fails
    assert logs.lookup(WEB, UID) is None


def test_docker_names_from_config_v2(tmp_path: Path) -> None:
    def container(ident: str, doc: dict) -> None:
        d = tmp_path / "containers" / ident
        d.mkdir(parents=True)
        (d / "config.v2.json").write_text(json.dumps(doc))

    container(WEB, {"Name": "/web", "Config": {"Image": "nginx:1.25", "Labels": {"app": "checkout"}}})
    container(PAUSE, {"Name": "/k8s_api_checkout-7d9f_shop_x_0", "Config": {"Image": "api:2", "Labels": {
        "io.kubernetes.pod.name": "checkout-7d9f", "io.kubernetes.pod.namespace": "shop",
        "io.kubernetes.container.name": "api"}}})
    names = Names(["app"], docker=DockerState(str(tmp_path)), podman=NO_RUNTIME, kubernetes=NO_RUNTIME)
    named, extra = names.describe(resolve(f"/system.slice/docker-{WEB}.scope"))
    assert (named.name, named.runtime, extra) == ("web", "docker", ("nginx:1.25", "", "checkout"))
    named, extra = names.describe(resolve(f"/docker/{PAUSE}"))
    assert (named.name, named.pod, extra) == ("api", "checkout-7d9f", ("api:2", "shop", ""))
    # Half written: skipped with a warning, the container keeps its short id.
    (tmp_path / "containers" / ("c3" * 32)).mkdir()
    (tmp_path / "containers" / ("c3" * 32) / "config.v2.json").write_text('{"Name": "/half')
    named, _ = names.describe(resolve(f"/docker/{'c3' * 32}"))
    assert named.name == "c3" * 6 and "config.v2.json" in names.warning()


def test_label_fields() -> None:
    assert label_field("app") == "app"
    assert label_field("app.kubernetes.io/name") == "app_kubernetes_io_name"
    for bad in ("", "9lives", "container", "image", "x" * 65):
        with pytest.raises(ValueError):
            label_field(bad)
    with pytest.raises(ValueError, match="same field"):
        Names(["a.b", "a/b"], podman=NO_RUNTIME, docker=NO_RUNTIME, kubernetes=NO_RUNTIME)
    names = Names(["team", "app"], podman=NO_RUNTIME, docker=NO_RUNTIME, kubernetes=NO_RUNTIME)
    assert names.fields == ("image", "namespace", "team", "app")
    src = CgroupSource(hierarchies=[], names=names)
    assert src.columns["container.cpu"] == ("container", "runtime", "pod", "vm", "image", "namespace",
                                            "team", "app", "utilization")


def test_a_source_warning_reaches_the_instrumentation() -> None:
    """Rows with a warning are evaluated as usual, and the warning goes with the value."""

    from fleetscope.agent.agent import Agent
    from fleetscope.bus.memory import MemoryBus
    from fleetscope.model.instrumentation import Instrumentation
    from fleetscope.model.metrics import DISCRETE, POINT, Field, metric
    from fleetscope.model.types import NUMBER
    from fleetscope.sources.base import Rows

    class Warned:
        name = "warned"

        def metrics(self):
            return [metric("test", "level", "a level", NUMBER, POINT, Field("container", DISCRETE, "c"))]

        def begin_tick(self, now: float) -> None:
            pass

        def collect(self, name: str) -> Rows:
            return Rows(("container",), [("web", 3.0)], warning="container names: skipped x (half written)")

        def close(self) -> None:
            pass

    agent = Agent(MemoryBus(), [Warned()], hostname="h1")
    inst = Instrumentation.from_json({"id": 1, "module": "test", "stat": "level",
                                      "decomposition": ["container"], "created": 0, "predicate": {},
                                      "granularity": 1, "retention": 600, "idle_max": 0, "persist": False})
    agent.enable(inst)
    batch = agent.tick(1000.0)
    [partial] = batch.partials
    assert partial.warning == "container names: skipped x (half written)"
    assert agent.warnings[1] == partial.warning
