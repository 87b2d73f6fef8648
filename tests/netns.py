"""Separate hosts on one machine: a network namespace per host, joined to this one by a veth pair.

Each :class:`Host` gets its own loopback and one address, ``10.X.N.2/24``, and reaches the machine
at ``10.X.N.1``; ``X`` comes from the test process's id so that two runs do not collide.
"""

from __future__ import annotations

import os
import subprocess


def _ip(*args: str, netns: str | None = None) -> None:
    cmd = ["ip", *(["netns", "exec", netns, "ip"] if netns else []), *args]
    subprocess.run(cmd, check=True, capture_output=True, text=True)


class Host:
    """One network namespace with a veth link to this machine's namespace."""

    def __init__(self, index: int) -> None:
        run = os.getpid() % 100_000
        self.netns = f"fleetscope-{run}-{index}"
        self.link = f"fs{run}h{index}"  # interface names: at most 15 characters
        subnet = f"10.{200 + os.getpid() % 50}.{index}"
        self.gateway, self.address = f"{subnet}.1", f"{subnet}.2"

    def create(self) -> Host:
        peer = f"{self.link}n"
        _ip("netns", "add", self.netns)
        _ip("link", "add", self.link, "type", "veth", "peer", "name", peer)
        _ip("link", "set", peer, "netns", self.netns)
        _ip("addr", "add", f"{self.gateway}/24", "dev", self.link)
        _ip("link", "set", self.link, "up")
        _ip("addr", "add", f"{self.address}/24", "dev", peer, netns=self.netns)
        _ip("link", "set", peer, "up", netns=self.netns)
        _ip("link", "set", "lo", "up", netns=self.netns)
        return self

    def command(self, args: list[str]) -> list[str]:
        """``args`` run inside this host's namespace (``ip netns exec`` execs: same process id)."""
        return ["ip", "netns", "exec", self.netns, *args]

    def delete(self) -> None:
        # Deleting the namespace destroys the peer, and with it the link on this side.
        subprocess.run(["ip", "netns", "delete", self.netns], capture_output=True)
        subprocess.run(["ip", "link", "delete", self.link], capture_output=True)
