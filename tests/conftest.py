"""Shared fixtures: a real `fleetscope serve` process on a free port."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

VENV_BIN = Path(sys.executable).parent


def wait_for(fn, timeout: float = 15.0, interval: float = 0.1):
    """Call ``fn`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = fn()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s (last: {result!r})")
        time.sleep(interval)


def stop_process(proc: subprocess.Popen | None, sig: int = signal.SIGTERM) -> int | None:
    """Send ``sig`` to a running ``proc`` and wait for it (killed after 15 s); its return code."""
    if proc and proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode if proc else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_token(store: str, name: str, role: str = "admin", tenant: str | None = None) -> str:
    """A new token in the store at URL ``store``, made the way an operator makes a fleet's first
    one (`fleetscope token create`, printing the secret once)."""
    exe = shutil.which("fleetscope", path=str(VENV_BIN)) or "fleetscope"
    cmd = [exe, "token", "create", name, "--role", role, "--store", store,
           *(["--tenant", tenant] if tenant else [])]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True)
    return done.stdout.strip()


class Server:
    """A running `fleetscope serve` subprocess: with ``--no-auth`` unless ``auth`` (the tests of
    who may ask what use ``auth=True`` and :meth:`token`)."""

    def __init__(self, data_dir: Path, port: int, extra: list[str] | None = None, auth: bool = False,
                 prefix: list[str] | None = None) -> None:
        """``prefix``: a command that runs ``fleetscope serve ...`` (its arguments follow it)."""
        self.prefix = list(prefix or [])
        self.data_dir = data_dir
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.extra = [*(extra or []), *([] if auth else ["--no-auth"])]
        self.proc: subprocess.Popen | None = None
        self.log = data_dir / "server.log"

    def start(self, timeout: float = 20.0) -> Server:
        exe = shutil.which("fleetscope", path=str(VENV_BIN)) or "fleetscope"
        cmd = [*self.prefix, exe, "serve", "--port", str(self.port), "--data-dir", str(self.data_dir),
               *self.extra]
        with open(self.log, "ab") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server did not start: {self.log.read_text()[-3000:]}")

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        return stop_process(self.proc, sig)

    def token(self, name: str, role: str = "admin", tenant: str | None = None) -> str:
        """A new token in this server's store."""
        return make_token(f"sqlite:///{self.data_dir / 'fleetscope.db'}", name, role, tenant)

    def login_link(self) -> str:
        """The one-time login address `serve` printed."""
        found = wait_for(lambda: [w for w in self.log.read_text().split() if "/login?token=" in w])
        return found[-1]

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One `fleetscope serve` shared by the tests of a session (with its default instrumentations)."""
    srv = Server(tmp_path_factory.mktemp("serve"), free_port()).start()
    yield srv
    srv.stop()


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[Server]:
    """A `fleetscope serve` of its own, for tests that restart or change global state."""
    srv = Server(tmp_path, free_port()).start()
    yield srv
    srv.stop()


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c
