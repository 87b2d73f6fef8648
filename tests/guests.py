"""Real guests for the tests, made from Debian's packages on this machine (nothing pulled from a
registry): a container root filesystem and a virtual machine's initramfs, both from
``busybox-static``; the VM's kernel from Debian's cloud kernel package, which
``scripts/system-deps.sh`` unpacks into :data:`KERNEL_DIR`."""

from __future__ import annotations

import glob
import io
import os
import subprocess
import tarfile
from pathlib import Path

BUSYBOX = "/bin/busybox"
CACHE = Path("/var/cache/fleetscope-test")
KERNEL_DIR = CACHE / "kernel"
GUEST_READY = "fleetscope-guest-ready"  # what the guest's init prints on its console
NEWC_MAGIC = b"070701"
NEWC_TRAILER = "TRAILER!!!"
DIR_MODE, FILE_MODE, LINK_MODE = 0o040755, 0o100755, 0o120777


def busybox_static() -> str | None:
    """Why busybox cannot make a root filesystem here, or None when it can."""
    if not os.path.exists(BUSYBOX):
        return f"{BUSYBOX} is missing (make test installs busybox-static)"
    out = subprocess.run(["ldd", BUSYBOX], capture_output=True, text=True)
    if "not a dynamic executable" not in out.stdout + out.stderr:
        return f"{BUSYBOX} is not static (make test installs busybox-static)"
    return None


def applets() -> list[str]:
    return subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True).stdout.split()


def rootfs_tar(path: Path) -> Path:
    """A container root filesystem as a tar (for ``podman import``): busybox and a link per
    applet in /bin, and the empty directories a runtime mounts onto."""
    with tarfile.open(path, "w") as tar:
        for d in ("bin", "dev", "proc", "sys", "tmp", "www", "etc"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        tar.add(BUSYBOX, "bin/busybox")
        for name in applets():
            if name != "busybox":
                info = tarfile.TarInfo(f"bin/{name}")
                info.type, info.linkname = tarfile.SYMTYPE, "busybox"
                tar.addfile(info)
    return path


def _newc(entries: list[tuple[str, int, bytes]]) -> bytes:
    """A cpio archive in the kernel's initramfs format ("newc": ``Documentation/driver-api/
    early-userspace/buffer-format.rst``): a 110-byte ASCII header per entry, name and data each
    padded to 4 bytes."""
    out = io.BytesIO()

    def entry(ino: int, name: str, mode: int, data: bytes) -> None:
        raw = name.encode() + b"\0"
        # ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor, rdevminor,
        # namesize, check
        fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(raw), 0)
        out.write(NEWC_MAGIC + b"".join(b"%08X" % f for f in fields) + raw)
        out.write(b"\0" * (-out.tell() % 4))
        out.write(data)
        out.write(b"\0" * (-out.tell() % 4))

    for ino, (name, mode, data) in enumerate(entries, 1):
        entry(ino, name, mode, data)
    entry(len(entries) + 1, NEWC_TRAILER, 0, b"")
    return out.getvalue()


# The guest's init: say it is up on the console, then keep its one vCPU busy (without writing
# anything more: the console is a file on the host).
GUEST_INIT = f"""#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox echo {GUEST_READY}
while :; do :; done
"""


def initramfs(path: Path) -> Path:
    """An initramfs whose /init is :data:`GUEST_INIT`, run by busybox."""
    with open(BUSYBOX, "rb") as f:
        busybox = f.read()
    entries = [("bin", DIR_MODE, b""), ("proc", DIR_MODE, b""), ("dev", DIR_MODE, b""),
               ("bin/busybox", FILE_MODE, busybox), ("bin/sh", LINK_MODE, b"busybox"),
               ("init", FILE_MODE, GUEST_INIT.encode())]
    path.write_bytes(_newc(entries))
    return path


def guest_kernel() -> str | None:
    """The kernel image system-deps.sh unpacked, or None."""
    found = sorted(glob.glob(str(KERNEL_DIR / "boot" / "vmlinuz-*")))
    return found[-1] if found else None
