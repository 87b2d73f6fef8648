"""Importing performance logs: files in, an import in the store, or nothing at all.

:func:`begin` hashes the files (an already imported content is refused, 409) and claims
them in a ``loading`` import; :func:`load` streams each through its parser
(:mod:`fleetscope.perflogs`) into an :class:`~fleetscope.store.importwrite.ImportWriter`,
and makes the import ``ready``; on any error it deletes everything the import wrote (the
row stays, ``failed``, with the reason) and raises an InputError that names the file, the
line (or record) and the reason. :func:`run_import` does both at once and keeps nothing of
a failure; the API runs them as a job (:mod:`fleetscope.api.importjobs`). The metrics
imports write are added to the catalogue so that instrumentations can be made on them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Sequence
from typing import BinaryIO, NamedTuple, Protocol

from fleetscope.model.errors import InputError
from fleetscope.model.metrics import Catalog, Metric
from fleetscope.perflogs import csvlog, registry
from fleetscope.perflogs.errors import LogError
from fleetscope.perflogs.metrics import METRICS
from fleetscope.perflogs.sink import Options, Sink
from fleetscope.store.imports import FAILED, READY, DuplicateImport, ImportInfo
from fleetscope.store.importwrite import ImportWriter

MAX_FILES = 64
HOST_MAX = 253  # a DNS name's length
HASH_BLOCK = 1 << 20
EVENT_CHUNK_ROWS = 256  # x csvevents.MAX_KEYS columns: 8 MB
METRICS_KEY = "imports_metrics"  # meta: {version, names}: the metrics imports define changed
WATCH_EVERY = 1.0  # seconds between two looks at METRICS_KEY (a read of one meta row)

log = logging.getLogger(__name__)


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
        if info.state == FAILED:
            continue
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


def add_metrics(catalog: Catalog) -> None:
    """Make the metrics every import may write known (instrumentations can then be made on
    them); those CSV imports define are :class:`ImportedMetrics`'."""
    for m in METRICS:
        if m.name not in catalog:
            catalog.add(m)


STOPPED_REASON = ("the server stopped while reading this import: nothing of it was kept; "
                  "import the files again")


class Stopped(Exception):
    """Raised by a watched sink when the import is to stop (its process is stopping)."""


class Watch(Protocol):
    """What a job (:mod:`fleetscope.api.importjobs`) follows a load by: each file as it is
    opened, and the sink the parser fills (which may refuse to go on)."""

    def opened(self, index: int, stream: BinaryIO) -> None: ...

    def sink(self, writer: ImportWriter) -> Sink:
        """The sink to fill: ``writer``, or one around it that raises :class:`Stopped`."""
        ...

    def read_all(self) -> dict:
        """Every file is read: what the ready import's document keeps of the job."""
        ...


def begin(store, fmt: str, files: Sequence[LogFile], opts: Options, tenant: str | None,
          catalog: Catalog | None = None, progress: dict | None = None) -> int:
    """Check the request, hash the files and claim them in a new ``loading`` import (its id);
    InputError (409 for content imported already) otherwise. A CSV's new metrics are checked
    against ``catalog`` (the live sources' metrics); ``progress`` starts the document's."""
    check_request(fmt, opts.host, len(files))
    made = check_mapping(fmt, opts.mapping)
    _check_defined(made, store, catalog)
    described = [{"name": os.path.basename(f.name) or "upload", "sha256": sha256_of(f.path),
                  "bytes": os.path.getsize(f.path)} for f in files]
    options = {k: v for k, v in opts._asdict().items() if v is not None and k != "host"}
    document: dict = {"options": options}
    if made:
        document["defined"] = {m.name: m.to_json() for m in made}
    if progress is not None:
        document["progress"] = progress
    try:
        return store.begin_import(opts.host or "", fmt, tenant, described, document)
    except DuplicateImport as exc:
        raise InputError("file", str(exc), 409) from None


def load(store, import_id: int, fmt: str, files: Sequence[LogFile], opts: Options,
         watch: Watch | None = None) -> ImportInfo:
    """Read ``files`` into the loading import ``import_id`` and make it ready. On any error the
    import is failed (:meth:`~fleetscope.store.imports.ImportTables.fail_import`: nothing it
    wrote is kept, the row keeps the reason) and the error raised: an InputError naming the
    file, the line (or record) and the reason for a bad file."""
    try:
        # Events (csvevents) hand over wide rows (a column per field value and bucket): fewer
        # of them per chunk keep the writer's matrix small.
        writer = (ImportWriter(store, import_id, EVENT_CHUNK_ROWS) if csvlog.is_events(opts.mapping)
                  else ImportWriter(store, import_id))
        sink = writer if watch is None else watch.sink(writer)
        names = [os.path.basename(f.name) or "upload" for f in files]
        hosts: list[str] = []
        backwards = 0
        for n, (f, name) in enumerate(zip(files, names, strict=True)):
            writer.named_host = None
            with open(f.path, "rb") as stream:
                if watch is not None:
                    watch.opened(n, stream)
                clock = registry.parse(fmt, stream, name, opts, sink, f.path)
            backwards += clock.backwards
            if writer.named_host and writer.named_host not in hosts:
                hosts.append(writer.named_host)
        final = watch.read_all() if watch is not None else {}
        writer.flush()
        if not writer.samples:
            raise InputError("file", f"{', '.join(names)}: no samples (a log needs "
                             "at least two reports: the first only marks the start)")
        host = opts.host
        if host is None:
            if len(hosts) != 1:
                raise InputError("host", "the files are of several hosts "
                                 f"({', '.join(hosts)}): import them apart, or give --host"
                                 if hosts else "the files do not name their host: give one (--host NAME)")
            host = hosts[0]
        store.finish_import(import_id, host, writer.start, writer.end,
                            {**writer.summary(), "clock_went_back": backwards, **final})
    except Stopped:
        store.fail_import(import_id, error_of(InputError("file", STOPPED_REASON, 503)))
        raise
    except LogError as exc:
        store.fail_import(import_id, error_of(InputError("file", str(exc)), exc))
        raise InputError("file", str(exc)) from None
    except InputError as exc:
        store.fail_import(import_id, error_of(exc))
        raise
    except BaseException as exc:
        store.fail_import(import_id, error_of(exc))
        raise
    info = store.get_import(import_id)
    assert info is not None
    return info


def error_of(exc: BaseException, log: LogError | None = None) -> dict:
    """What a failed import's row keeps of why: the API's error (code, message, field) and its
    HTTP status; a bad file's name, line (or record) and reason."""
    if isinstance(exc, InputError):
        out = {**exc.to_json()["error"], "status": exc.status}
    else:  # the server's own failure (the store went away...): said as such, as a 500 would be
        out = {"code": "internal", "message": f"the import failed on the server: {type(exc).__name__}",
               "field": None, "status": 500}
    if log is not None:
        out.update(log.to_json())
    out["at"] = time.time()
    return out


class ImportedMetrics:
    """The metrics of imports (:func:`add_metrics` once there is one, and those CSV imports
    define), kept in this process's catalogue as the store's ready imports say, in every API
    process of a store.

    A process that makes an import ready or deletes one that defines metrics calls
    :meth:`changed`: it writes a new version in the store's meta (:data:`METRICS_KEY`, with
    every name imports ever defined) and learns at once; the others look at the version every
    :data:`WATCH_EVERY` seconds (:meth:`watch`: one small read) and learn when it moved. To
    learn is to set each definition of the ready imports (the widest: one with more fields
    widens the known one) and to forget the names ever defined that no ready import defines
    any more, so deleting the last import of a metric forgets it everywhere (its
    instrumentations stay and answer nothing)."""

    def __init__(self, store, catalog: Catalog) -> None:
        self.store = store
        self.catalog = catalog
        self.version: str | None = None
        self.forgotten: set[str] = set()  # names imports defined and no ready import does now
        self._lock = threading.Lock()

    def _record(self) -> dict:
        raw = self.store.get_meta(METRICS_KEY)
        try:
            record = json.loads(raw) if raw else {}
        except ValueError:
            record = {}
        return record if isinstance(record, dict) else {}

    def sync(self) -> None:
        """Learn the definitions of the ready imports and forget the rest (see the class)."""
        with self._lock:
            record = self._record()
            ready = [info for info in self.store.list_imports() if info.state == READY]
            if ready:
                add_metrics(self.catalog)
            defined = Catalog()  # every definition: one with more fields widens the known one
            for info in ready:
                for obj in info.document.get("defined", {}).values():
                    defined.add(Metric.from_json(obj))
            self.forgotten = {name for name in record.get("names", []) if name not in defined}
            for name in self.forgotten:
                self.catalog.discard(name)
            for m in defined:
                self.catalog.replace(m)
            self.version = record.get("version")

    def changed(self, info: ImportInfo | None = None) -> None:
        """An import was made ready (``info``) or one that defines metrics deleted here: a new
        version for the other processes, and learn now."""
        with self._lock:
            record = self._record()
            names = set(record.get("names", []))
            if info is not None:
                names |= set(info.document.get("defined", {}))
            names |= {name for i in self.store.list_imports() for name in i.document.get("defined", {})}
            version = uuid.uuid4().hex
            self.store.set_meta(METRICS_KEY, json.dumps({"version": version, "names": sorted(names)}))
        self.sync()

    def learnt(self, info: ImportInfo) -> None:
        """A job made ``info`` ready (:class:`fleetscope.api.importjobs.ImportJobs`): the metrics
        every import may write (the first import) and those it defines, in every process."""
        self.changed(info)

    async def watch(self, stop: asyncio.Event) -> None:
        """Learn when another process changed the imports' metrics, until ``stop``."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), WATCH_EVERY)
                return
            try:
                record = await asyncio.to_thread(self._record)
                # A forgotten name back in the catalogue: the agents' saved catalogue (control's
                # load_catalog) held it from when an import defined it.
                if record.get("version") != self.version or any(n in self.catalog for n in self.forgotten):
                    await asyncio.to_thread(self.sync)
            except Exception:  # the store is away a moment: look again at the next turn
                log.warning("imports' metrics not looked at", exc_info=True)


def run_import(store, fmt: str, files: Sequence[LogFile], opts: Options, tenant: str | None,
               catalog: Catalog | None = None) -> ImportInfo:
    """Import ``files`` of format ``fmt`` as one import, here and now (see the module
    docstring): on any error nothing of it is kept, not even its row."""
    import_id = begin(store, fmt, files, opts, tenant, catalog)
    try:
        return load(store, import_id, fmt, files, opts)
    except BaseException:
        store.delete_import(import_id)
        raise
