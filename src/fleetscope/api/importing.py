"""Importing performance logs: files in, an import in the store, or nothing at all.

:func:`run_import` hashes the files (an already imported content is refused, 409), claims
them in a ``loading`` import, streams each through its parser
(:mod:`fleetscope.perflogs`) into an :class:`~fleetscope.store.importwrite.ImportWriter`,
and makes the import ``ready``; on any error it deletes everything the import wrote and
raises an InputError that names the file, the line (or record) and the reason. The metrics
imports write are added to the catalogue so that instrumentations can be made on them.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from typing import NamedTuple

from fleetscope.model.errors import InputError
from fleetscope.model.metrics import Catalog
from fleetscope.perflogs import registry
from fleetscope.perflogs.errors import LogError
from fleetscope.perflogs.metrics import METRICS
from fleetscope.perflogs.sink import Options
from fleetscope.store.imports import DuplicateImport, ImportInfo
from fleetscope.store.importwrite import ImportWriter

MAX_FILES = 64
HOST_MAX = 253  # a DNS name's length
HASH_BLOCK = 1 << 20


class LogFile(NamedTuple):
    name: str  # as the user named it (no directories)
    path: str  # where it lies on the server now


def sha256_of(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(HASH_BLOCK):
            h.update(block)
    return h.hexdigest()


def check_request(fmt: object, host: object, nfiles: int) -> None:
    if fmt not in registry.FORMATS:
        raise InputError("format", f"must be one of {', '.join(registry.FORMATS)}")
    if host is not None and (not isinstance(host, str) or not host.strip() or len(host) > HOST_MAX
                             or any(c.isspace() for c in host)):
        raise InputError("host", f"must be a host name (no spaces, at most {HOST_MAX} characters)")
    if host is None and fmt not in registry.NAMES_HOST:
        raise InputError("host", f"{fmt} logs do not name their host: give one (--host NAME)")
    if not 1 <= nfiles <= MAX_FILES:
        raise InputError("file", f"give 1 to {MAX_FILES} files")


def add_metrics(catalog: Catalog) -> None:
    """Make the metrics of imports known (instrumentations can then be made on them)."""
    for m in METRICS:
        if m.name not in catalog:
            catalog.add(m)


def run_import(store, fmt: str, files: Sequence[LogFile], opts: Options, tenant: str | None) -> ImportInfo:
    """Import ``files`` of format ``fmt`` as one import (see the module docstring)."""
    check_request(fmt, opts.host, len(files))
    described = [{"name": os.path.basename(f.name) or "upload", "sha256": sha256_of(f.path),
                  "bytes": os.path.getsize(f.path)} for f in files]
    options = {k: v for k, v in opts._asdict().items() if v is not None and k != "host"}
    try:
        import_id = store.begin_import(opts.host or "", fmt, tenant, described, {"options": options})
    except DuplicateImport as exc:
        raise InputError("file", str(exc), 409) from None
    try:
        writer = ImportWriter(store, import_id)
        hosts: list[str] = []
        backwards = 0
        for f, d in zip(files, described, strict=True):
            writer.named_host = None
            with open(f.path, "rb") as stream:
                clock = registry.parse(fmt, stream, d["name"], opts, writer, f.path)
            backwards += clock.backwards
            if writer.named_host and writer.named_host not in hosts:
                hosts.append(writer.named_host)
        writer.flush()
        if not writer.samples:
            raise InputError("file", f"{', '.join(d['name'] for d in described)}: no samples (a log needs "
                             "at least two reports: the first only marks the start)")
        host = opts.host
        if host is None:
            if len(hosts) != 1:
                raise InputError("host", "the files are of several hosts "
                                 f"({', '.join(hosts)}): import them apart, or give --host"
                                 if hosts else "the files do not name their host: give one (--host NAME)")
            host = hosts[0]
        store.finish_import(import_id, host, writer.start, writer.end,
                            {**writer.summary(), "clock_went_back": backwards})
    except LogError as exc:
        store.delete_import(import_id)
        raise InputError("file", str(exc)) from None
    except BaseException:
        store.delete_import(import_id)
        raise
    info = store.get_import(import_id)
    assert info is not None
    return info
