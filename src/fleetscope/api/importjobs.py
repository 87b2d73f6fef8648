"""Imports as jobs: an upload is answered at once, the files are read in the background, and
how far the reading has got is in the import itself.

``POST /api/v1/imports`` with ``Prefer: respond-async`` (RFC 7240) answers ``202`` with the
import in state ``loading`` as soon as the upload is in and its files are claimed (a
duplicate is still a ``409``, a bad request a ``4xx``, at once); ``GET /api/v1/imports/{id}``
then shows its ``progress`` (``read`` of ``bytes``, the ``file`` being read, ``phase``:
``queued`` while :data:`MAX_READING` others are read, ``reading``, ``writing``), and
ends ``ready`` or ``failed`` with the ``error`` (code, message, HTTP status, and for a bad
file its ``file``, ``line`` or ``record``, ``reason``). A failed import keeps nothing but its
row (:meth:`~fleetscope.store.imports.ImportTables.fail_import`: the same files can be
imported again); the row goes after :data:`FAILED_KEPT` or with ``DELETE``. Without the
header the request waits for the end, as it always did (``201``, or the error). A process
holds at most :data:`MAX_JOBS` jobs: past them an upload is refused (``429``) before its body
is read.

The state is in the store, not in this process, so any API process of a fleet answers for
any import, and only to the import's tenant (the routes' scope). Every
:data:`PROGRESS_EVERY` seconds a job's ticker writes its progress, with its **owner** (host,
process id and the process's start time): an import left ``loading`` by a process that
stopped (killed, crashed, the machine restarted) is failed by the first process that looks
(:meth:`ImportJobs.reap`, on start and on every listing) when its owner is a process of this
host that is gone, or when its progress is older than :data:`STALE_AFTER`; a process that
stops cleanly fails its own jobs (:meth:`ImportJobs.stop`). Readers never see a loading or
failed import's rows: a restart never leaves half an import.

Progress is the offset of the file being read (``lseek`` on the parser's descriptor, read
by the ticker: nothing is added to the parser's loop), and for a sysstat file, which ``sadf``
reads, sadf's own offset in it (``/proc/PID/fdinfo``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np

from fleetscope.api import imported, importing
from fleetscope.model.errors import InputError
from fleetscope.perflogs.sink import Layout, Options, Sink
from fleetscope.store.imports import FAILED, LOADING, ImportInfo
from fleetscope.store.importwrite import ImportWriter

log = logging.getLogger(__name__)

PROGRESS_EVERY = 0.5  # seconds between a job's progress writes (one small UPDATE)
STALE_AFTER = 30.0  # a loading import whose progress is older than this has lost its writer
FAILED_KEPT = 3600.0  # seconds a failed import's row is kept for whoever waits for it
STOP_WAIT = 10.0  # seconds a stopping process waits for its jobs to fail their imports
READING, WRITING, QUEUED = "reading", "writing", "queued"
MAX_READING = 2  # jobs reading at once per process (parsing is CPU-bound: more only share the cores)
MAX_JOBS = 16  # jobs per process, reading or queued: past them an upload is refused (429)


def _start_ticks(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot, /proc/PID/stat field 22): with the
    pid, it names one process even when pids are reused; None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def me() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "since": _start_ticks(os.getpid())}


def owner_gone(owner: object) -> bool:
    """Whether ``owner`` (a progress's) is a process of this host that is not running."""
    if not isinstance(owner, dict) or owner.get("host") != socket.gethostname():
        return False
    pid = owner.get("pid")
    return not isinstance(pid, int) or _start_ticks(pid) != owner.get("since")


class _Guard:
    """The sink a job's parser fills: the writer, until the job is told to stop."""

    def __init__(self, writer: ImportWriter, stop: threading.Event) -> None:
        self.writer = writer
        self.stop = stop

    def add(self, time: int, interval: int, layout: Layout, values: Sequence[float]) -> None:
        if self.stop.is_set():
            raise importing.Stopped
        self.writer.add(time, interval, layout, values)

    def add_block(self, times: np.ndarray, intervals: np.ndarray, layout: Layout, values: np.ndarray) -> None:
        if self.stop.is_set():
            raise importing.Stopped
        self.writer.add_block(times, intervals, layout, values)

    def host(self, name: str) -> None:
        self.writer.host(name)


class Job:
    """One import being read by this process."""

    def __init__(self, import_id: int, fmt: str, files: Sequence[importing.LogFile], folder: str,
                 opts: Options, owner: dict) -> None:
        self.import_id = import_id
        self.owner = owner
        self.fmt = fmt
        self.files = list(files)
        self.folder = folder
        self.opts = opts
        self.sizes = [os.path.getsize(f.path) for f in files]
        self.index = 0
        self.fd: int | None = None
        self.phase = QUEUED
        self.stop = threading.Event()
        self.done = threading.Event()
        self.info: ImportInfo | None = None
        self.error: BaseException | None = None

    # -- importing.Watch -------------------------------------------------------------------------

    def opened(self, index: int, stream: BinaryIO) -> None:
        self.index, self.fd = index, stream.fileno()

    def sink(self, writer: ImportWriter) -> Sink:
        return _Guard(writer, self.stop)

    def read_all(self) -> dict:
        self.phase = WRITING
        return {"progress": self.progress()}

    # -- progress --------------------------------------------------------------------------------

    def read(self) -> int:
        """Bytes of the files read so far."""
        fd, i = self.fd, self.index
        if fd is None:
            return 0
        offset = 0
        with contextlib.suppress(OSError):  # the file was closed between two looks
            offset = os.lseek(fd, 0, os.SEEK_CUR)
        if self.fmt == "sysstat":
            offset = max(offset, _child_offset(self.files[i].path))
        return sum(self.sizes[:i]) + min(offset, self.sizes[i])

    def progress(self) -> dict:
        total = sum(self.sizes)
        done = total if self.phase == WRITING else 0 if self.phase == QUEUED else self.read()
        return {"read": done, "bytes": total, "file": os.path.basename(self.files[self.index].name),
                "files": len(self.files), "phase": self.phase, "owner": self.owner, "updated": time.time()}


def _child_offset(path: str) -> int:
    """The offset in ``path`` of a child process of this one that has it open (sadf reading a
    sysstat file); 0 if none does. The children are found by their parent in ``/proc/*/stat``
    (``/proc/PID/task/*/children`` is not in every kernel): a few ms for a few hundred
    processes, every :data:`PROGRESS_EVERY` s while a sysstat file is read."""
    me = os.getpid()
    best = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            if int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]) != me:
                continue
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") == path:
                    info = Path(f"/proc/{pid}/fdinfo/{fd}").read_text()
                    best = max(best, int(info.split("pos:", 1)[1].split()[0]))
    return best


class ImportJobs:
    """The imports this process reads, a thread each (see the module docstring). ``learnt``
    is called with the import once one is ready (the catalogue learns its metrics)."""

    def __init__(self, store, learnt=None) -> None:
        self.store = store
        self.learnt = learnt
        self.owner = me()
        self._jobs: dict[int, Job] = {}
        self._lock = threading.Lock()
        self._reading = threading.Semaphore(MAX_READING)

    def start(self, fmt: str, files: Sequence[importing.LogFile], folder: str, opts: Options,
              tenant: str | None, catalog=None) -> Job:
        """Claim ``files`` (lying in ``folder``, which the job removes when it ends) in a new
        loading import and read them in a thread; InputError (409 included) at once otherwise,
        with ``folder`` removed."""
        try:
            self.check_room()
            job = Job(0, fmt, files, folder, opts, self.owner)
            job.import_id = importing.begin(self.store, fmt, files, opts, tenant, catalog,
                                            progress=job.progress())
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        with self._lock:
            self._jobs[job.import_id] = job
        threading.Thread(target=self._run, args=(job,), name=f"import-{job.import_id}", daemon=True).start()
        return job

    def check_room(self) -> None:
        """InputError (429) when this process has :data:`MAX_JOBS` jobs already."""
        if len(self.running()) >= MAX_JOBS:
            raise InputError(None, f"this server is reading {MAX_JOBS} imports already: send this one "
                             "once one of them is ready", 429)

    def _run(self, job: Job) -> None:
        ticker = threading.Thread(target=self._tick, args=(job,), name=f"import-{job.import_id}-progress",
                                  daemon=True)
        ticker.start()
        reading = False
        try:
            while not (reading := self._reading.acquire(timeout=PROGRESS_EVERY)):  # queued meanwhile
                if job.stop.is_set():
                    raise importing.Stopped
            job.phase = READING
            job.info = importing.load(self.store, job.import_id, job.fmt, job.files, job.opts, job)
            if self.learnt is not None:
                self.learnt(job.info)
            imported.queue_import(self.store, job.info)  # its answers made before they are asked
        except importing.Stopped as exc:
            job.error = exc
            if not reading:  # stopped while queued: load() never ran to fail it
                self.store.fail_import(job.import_id, importing.error_of(
                    InputError("file", importing.STOPPED_REASON, 503)))
        except BaseException as exc:  # load() failed the import and said why in its row
            job.error = exc
            if not isinstance(exc, InputError):
                log.exception("import %s failed", job.import_id)
        finally:
            if reading:
                self._reading.release()
            job.done.set()
            ticker.join()
            shutil.rmtree(job.folder, ignore_errors=True)
            with self._lock:
                self._jobs.pop(job.import_id, None)

    def _tick(self, job: Job) -> None:
        while not job.done.wait(PROGRESS_EVERY):
            try:
                self.store.set_import_progress(job.import_id, job.progress())
            except Exception:  # the store is away a moment: the next tick says it again
                log.warning("import %s: progress not recorded", job.import_id, exc_info=True)

    def running(self) -> list[int]:
        with self._lock:
            return sorted(self._jobs)

    def reap(self, imports: list[ImportInfo], now: float | None = None) -> list[ImportInfo]:
        """``imports`` (the store's list) after failing those left loading by a writer that is
        gone, and forgetting failed ones older than :data:`FAILED_KEPT`."""
        now = time.time() if now is None else now
        mine = set(self.running())
        out = []
        for info in imports:
            if info.state == LOADING and info.id not in mine:
                progress = info.document.get("progress") or {}
                updated = progress.get("updated", info.created)
                if owner_gone(progress.get("owner")) or now - updated > STALE_AFTER:
                    error = importing.error_of(InputError("file", importing.STOPPED_REASON, 503))
                    if self.store.fail_import(info.id, error):
                        log.warning("import %s was left loading by a server that stopped: failed", info.id)
                    info = self.store.get_import(info.id) or info
            elif info.state == FAILED and now - info.document.get("error", {}).get("at", 0) > FAILED_KEPT:
                self.store.delete_import(info.id)
                continue
            out.append(info)
        return out

    def stop(self) -> None:
        """Stop every job of this process: each fails its import (nothing of it is kept)."""
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            job.stop.set()
        deadline = time.monotonic() + STOP_WAIT
        for job in jobs:
            job.done.wait(max(0.0, deadline - time.monotonic()))
