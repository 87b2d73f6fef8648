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


EXE = Path(sys.executable).parent / "fleetscope"


def start_server(data_dir: str, auth: bool = False) -> tuple[subprocess.Popen, str]:
    """Start `fleetscope serve` with its store in ``data_dir`` (``--no-auth`` unless ``auth``);
    the process and its URL once healthy."""
    port = free_port()
    proc = subprocess.Popen([str(EXE), "serve", "--port", str(port), "--data-dir", data_dir,
                             *([] if auth else ["--no-auth"])],
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


def make_token(data_dir: str, role: str = "admin") -> str:
    """A token for the server of ``data_dir``, made as an operator makes the first one."""
    return subprocess.run([str(EXE), "token", "create", f"bench-{role}", "--role", role, "--store",
                           f"sqlite:///{data_dir}/fleetscope.db"], capture_output=True, text=True,
                          check=True).stdout.strip()
