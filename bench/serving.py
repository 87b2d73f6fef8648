"""What the benchmarks share: a real `fleetscope serve` on a free port."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(data_dir: str) -> tuple[subprocess.Popen, str]:
    """Start `fleetscope serve` with its store in ``data_dir``; the process and its URL once healthy."""
    port = free_port()
    exe = Path(sys.executable).parent / "fleetscope"
    proc = subprocess.Popen([str(exe), "serve", "--port", str(port), "--data-dir", data_dir],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("fleetscope serve did not start")
