"""A real Prometheus Alertmanager (Debian's package) on a free port, for tests."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.conftest import free_port, stop_process, wait_for


@contextlib.contextmanager
def running_alertmanager(tmp_path: Path) -> Iterator[str]:
    """An Alertmanager (no clustering, a receiver that sends nowhere) until the block ends: its URL."""
    exe = shutil.which("prometheus-alertmanager")
    assert exe, "Debian's prometheus-alertmanager package is needed (scripts/system-deps.sh)"
    config = tmp_path / "alertmanager.yml"
    config.write_text("route:\n  receiver: nowhere\n  group_wait: 1s\nreceivers:\n  - name: nowhere\n")
    port = free_port()
    log = open(tmp_path / "alertmanager.log", "wb")  # noqa: SIM115 - kept open for the child
    proc = subprocess.Popen([exe, f"--config.file={config}", f"--storage.path={tmp_path / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert proc.poll() is None, (tmp_path / "alertmanager.log").read_text()[-2000:]
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(url + "/-/ready", timeout=1).status_code == 200
        return False

    try:
        wait_for(ready, timeout=20)
        yield url
    finally:
        stop_process(proc)
        log.close()


def am_alerts(url: str, alertname: str) -> list[dict]:
    """Alertmanager's own view of the alerts of that name."""
    r = httpx.get(url + "/api/v2/alerts", params={"filter": f'alertname="{alertname}"'}, timeout=5)
    r.raise_for_status()
    return r.json()


def active(url: str, alertname: str, key: str) -> dict | None:
    """The active alert of that name and ``key`` label (``""``: none), if any."""
    return next((a for a in am_alerts(url, alertname)
                 if a["labels"].get("key", "") == key and a["status"]["state"] == "active"), None)
