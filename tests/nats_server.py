"""A real nats-server on a free port, for tests (no JetStream: the agent must not need it)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NatsServer:
    def __init__(self, log_dir: Path, port: int | None = None, listen: str = "127.0.0.1",
                 max_payload: int | None = None, monitor: bool = False, config: str = "") -> None:
        self.port = port or free_port()
        self.monitor_port = free_port() if monitor else None
        self.listen = listen
        self.url = f"nats://127.0.0.1:{self.port}"
        self.config = log_dir / f"nats-{self.port}.conf"
        self.config.write_text((f"max_payload: {max_payload}\n" if max_payload else "") + config)
        self.log = log_dir / f"nats-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> NatsServer:
        exe = shutil.which("nats-server") or "/usr/sbin/nats-server"
        self.proc = subprocess.Popen([exe, "-c", str(self.config), "-a", self.listen, "-p", str(self.port),
                                      "-l", str(self.log),
                                      *(["-m", str(self.monitor_port)] if self.monitor_port else [])])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("nats-server did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
