"""Reading the kernel's files (/proc, /sys, cgroupfs) cheaply, and the clock their counters
run on: the helpers every source that reads the kernel shares."""

from __future__ import annotations

import os
import time

READ_CHUNK = 65536  # bytes per os.read of a file read whole


def clock() -> float:
    """Seconds since boot, counting suspend: the clock of /proc's counters and starttimes."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def read_file(path: str) -> bytes:
    """The whole content of ``path``, read without Python's buffered file layer (cheaper)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = []
        while True:
            chunk = os.read(fd, READ_CHUNK)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
    finally:
        os.close(fd)


def read_devices(procfs: str = "/proc") -> dict[str, str]:
    """Block device names by ``major:minor`` (from ``/proc/diskstats``)."""
    out = {}
    try:
        for line in read_file(procfs + "/diskstats").split(b"\n"):
            p = line.split()
            if len(p) >= 3:
                out[f"{p[0].decode()}:{p[1].decode()}"] = p[2].decode()
    except OSError:
        pass
    return out
