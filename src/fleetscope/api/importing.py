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
from fleetscope.model.metrics import Catalog, Metric
from fleetscope.perflogs import csvlog, registry
from fleetscope.perflogs.errors import LogError
from fleetscope.perflogs.metrics import METRICS
from fleetscope.perflogs.sink import Options
from fleetscope.store.imports import DuplicateImport, ImportInfo
from fleetscope.store.importwrite import ImportWriter

MAX_FILES = 64
HOST_MAX = 253  # a DNS name's length
HASH_BLOCK = 1 << 20
EVENT_CHUNK_ROWS = 256  # x csvevents.MAX_KEYS columns: 8 MB


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


def check_mapping(fmt: str, mapping: object) -> list[Metric]:
    """A CSV import's mapping checked (:mod:`fleetscope.perflogs.csvlog`); the new metrics it
    defines. Other formats take none."""
    if fmt != "csv":
        if mapping is not None:
            raise InputError("mapping", "only a csv import takes a mapping")
        return []
    if mapping is None:
        raise InputError("mapping", "a csv import needs a mapping: its time_column and metrics "
                         "(fleetscope import csv --time-column C --metric module.stat ...)")
    try:
        return csvlog.defined(csvlog.check(mapping))
    except ValueError as exc:
        raise InputError("mapping", str(exc)) from None


def defined_metrics(imports: Sequence[ImportInfo]) -> dict[str, Metric]:
    """The metrics CSV imports defined, by name (the first definition of each)."""
    out: dict[str, Metric] = {}
    for info in imports:
        for name, obj in info.document.get("defined", {}).items():
            out.setdefault(name, Metric.from_json(obj))
    return out


def _check_defined(made: list[Metric], store, catalog: Catalog | None) -> None:
    """Refuse a CSV's new metric that is a live source's, or that an earlier import defined
    with another kind or unit (their rows could not be asked one question)."""
    earlier = defined_metrics(store.list_imports()) if made else {}
    for m in made:
        old = earlier.get(m.name)
        if old is None and catalog is not None and m.name in catalog:
            raise InputError("mapping", f"{m.name} is a metric of the live sources: an import cannot "
                             "write it (imports write " + ", ".join(sorted(x.name for x in METRICS))
                             + ", or metrics of their own)")
        if old is not None and (old.kind, old.unit) != (m.kind, m.unit):
            raise InputError("mapping", f"{m.name} was imported before as {old.kind} in "
                             f"{old.unit.to_json()}: give the same kind and unit, or another name")
        kinds = {f.name: f for f in old.fields} if old is not None else {}
        for f in m.fields:
            was = kinds.get(f.name)
            if was is not None and (was.kind, was.type) != (f.kind, f.type):
                raise InputError("mapping", f"{m.name} was imported before with field {f.name} "
                                 f"{was.kind} in {was.type.to_json()}: give the same, or another name")


def add_metrics(catalog: Catalog, imports: Sequence[ImportInfo] = ()) -> None:
    """Make the metrics of imports known (instrumentations can then be made on them): the
    ones every import may write, and those CSV ``imports`` defined."""
    for m in METRICS:
        if m.name not in catalog:
            catalog.add(m)
    for info in imports:  # every definition: one with more fields widens the known one
        for obj in info.document.get("defined", {}).values():
            catalog.add(Metric.from_json(obj))


def run_import(store, fmt: str, files: Sequence[LogFile], opts: Options, tenant: str | None,
               catalog: Catalog | None = None) -> ImportInfo:
    """Import ``files`` of format ``fmt`` as one import (see the module docstring); a CSV's new
    metrics are checked against ``catalog`` (the live sources' metrics)."""
    check_request(fmt, opts.host, len(files))
    made = check_mapping(fmt, opts.mapping)
    _check_defined(made, store, catalog)
    described = [{"name": os.path.basename(f.name) or "upload", "sha256": sha256_of(f.path),
                  "bytes": os.path.getsize(f.path)} for f in files]
    options = {k: v for k, v in opts._asdict().items() if v is not None and k != "host"}
    document: dict = {"options": options}
    if made:
        document["defined"] = {m.name: m.to_json() for m in made}
    try:
        import_id = store.begin_import(opts.host or "", fmt, tenant, described, document)
    except DuplicateImport as exc:
        raise InputError("file", str(exc), 409) from None
    try:
        # Events (csvevents) hand over wide rows (a column per field value and bucket): fewer
        # of them per chunk keep the writer's matrix small.
        writer = (ImportWriter(store, import_id, EVENT_CHUNK_ROWS) if csvlog.is_events(opts.mapping)
                  else ImportWriter(store, import_id))
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
