"""``/api/v1/imports``: performance logs (sysstat, vmstat, iostat, mpstat, sar text, CSV)
imported as a host's history; list, show, delete (with everything an import wrote).

Uploads are ``multipart/form-data``: ``format``, ``host`` (for logs that do not name it),
``tz``, ``start``, ``interval``, ``cpus``, ``mapping`` (a CSV's columns, JSON:
:mod:`fleetscope.perflogs.csvlog`) and one or more ``file`` parts. They must say their
length (411 otherwise) and are refused past the server's limit (413,
:data:`DEFAULT_MAX_BYTES` unless ``app.state.import_max_bytes`` says otherwise) before any of
the body is read. ``Prefer: respond-async`` answers 202 at once and reads the files as a job
whose progress the import shows (:mod:`fleetscope.api.importjobs`). Operators import and
delete, viewers list; a tenant's callers see and delete only their tenant's imports, loading
ones included (:func:`fleetscope.api.scope.imports_for`).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from fleetscope.api import imported, importing, scope
from fleetscope.api.audit import audit
from fleetscope.api.auth import Operator, Viewer
from fleetscope.api.errors import responses
from fleetscope.api.importjobs import ImportJobs
from fleetscope.api.params import ImportId
from fleetscope.api.services import Svc
from fleetscope.model.errors import InputError, NotFound
from fleetscope.model.types import parse_duration
from fleetscope.perflogs.registry import FORMATS
from fleetscope.perflogs.sink import Options
from fleetscope.store.imports import LOADING

router = APIRouter(prefix="/api/v1/imports", tags=["imports"])

DEFAULT_MAX_BYTES = 2 << 30  # a month of 1-second vmstat is about 250 MB
MAX_FIELDS = 16
COPY_BLOCK = 1 << 20

_UPLOAD = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object",
            "required": ["format", "file"],
            "properties": {
                "format": {"type": "string", "enum": list(FORMATS)},
                "host": {"type": "string", "description": "the host the logs are of (sysstat, iostat, "
                         "mpstat and sar text name it themselves)"},
                "tz": {"type": "string", "description": "IANA zone of the logs' local times (default: "
                       "the log's own, else UTC)"},
                "start": {"type": "integer", "description": "epoch seconds of the first report, for "
                          "logs without timestamps"},
                "interval": {"type": "string", "description": "seconds between reports, for logs "
                             "without timestamps"},
                "cpus": {"type": "integer", "description": "CPUs of the host, for vmstat's shares of "
                         "all CPUs (default 1)"},
                "mapping": {"type": "string", "description": "csv only, JSON: time_column, "
                            "time_format, delimiter, metrics [{metric, columns, field, fields, kind, "
                            "unit, scale}] (README: Import performance logs)"},
                "file": {"type": "array", "items": {"type": "string", "format": "binary"}},
            },
        }}},
    },
}


def _int(form, name: str, lo: int, hi: int) -> int | None:
    raw = form.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(str(raw))
    except ValueError:
        raise InputError(name, "must be a whole number") from None
    if not lo <= value <= hi:
        raise InputError(name, f"must be between {lo} and {hi}")
    return value


def _text(form, name: str) -> str | None:
    raw = form.get(name)
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str):
        raise InputError(name, "must be text, not a file")
    return raw


def _options(form) -> Options:
    interval = _text(form, "interval")
    seconds = None
    if interval is not None:
        seconds = parse_duration(interval, "interval")
        if not 1 <= seconds <= 86400:
            raise InputError("interval", "must be between 1 s and 1 day")
    mapping = _text(form, "mapping")
    if mapping is not None:
        try:
            mapping = json.loads(mapping)
        except ValueError as exc:
            raise InputError("mapping", f"must be JSON ({exc})") from None
    return Options(host=_text(form, "host"), tz=_text(form, "tz"), start=_int(form, "start", 0, 2**40),
                   interval=seconds, cpus=_int(form, "cpus", 1, 65536), mapping=mapping)


def _save(uploads, folder: str) -> list[importing.LogFile]:
    out = []
    for n, up in enumerate(uploads):
        path = os.path.join(folder, f"{n}.log")
        with open(path, "wb") as f:
            shutil.copyfileobj(up.file, f, COPY_BLOCK)
        out.append(importing.LogFile(os.path.basename(up.filename or f"file{n + 1}"), path))
    return out


def _jobs(request: Request) -> ImportJobs:
    return request.app.state.import_jobs


@router.post("", status_code=201, summary="Import performance logs of one host (multipart upload)",
             description="With `Prefer: respond-async` the answer is 202 as soon as the upload is in: the "
             "import in state `loading`, whose `progress` `GET /api/v1/imports/{id}` shows until it is "
             "`ready` or `failed` (with its `error`). Without, the request waits for the end: 201 with "
             "the import, or the error.",
             responses={202: {"description": "Accepted: the import, loading (Location: its URL)"},
                        **responses(400, 409, 411, 413, 422, 429)}, openapi_extra=_UPLOAD)
async def create_import(request: Request, svc: Svc, caller: Operator,
                        prefer: Annotated[str | None, Header(description="respond-async: answer 202 at "
                                                             "once, the files read in the background")]
                        = None) -> Any:
    length = request.headers.get("content-length")
    if length is None or not length.isdigit():
        raise InputError("content-length", "an upload must say its length (Content-Length)", 411)
    limit = getattr(request.app.state, "import_max_bytes", DEFAULT_MAX_BYTES)
    if int(length) > limit:
        raise InputError("file", f"the upload is {int(length)} bytes; this server takes at most {limit}", 413)
    _jobs(request).check_room()  # before the body is read
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "multipart/form-data":
        raise InputError("content-type", "must be multipart/form-data (fields format, host, ...; parts "
                         "named file)", 400)
    try:
        form = await request.form(max_files=importing.MAX_FILES, max_fields=MAX_FIELDS)
    except Exception as exc:  # python-multipart's and Starlette's refusals of a malformed body
        raise InputError(None, f"malformed multipart body: {getattr(exc, 'detail', exc)}", 400) from None
    try:
        uploads = [u for u in form.getlist("file") if not isinstance(u, str)]
        if len(uploads) != len(form.getlist("file")):
            raise InputError("file", "must be files, not text fields")
        fmt = _text(form, "format")
        opts = _options(form)
        importing.check_request(fmt, opts.host, len(uploads))
        importing.check_mapping(fmt, opts.mapping)
        folder = tempfile.mkdtemp(prefix="fleetscope-import-")  # the job removes it
        try:
            files = await run_in_threadpool(_save, uploads, folder)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        job = await run_in_threadpool(_jobs(request).start, fmt, files, folder, opts, caller.tenant_name,
                                      svc.control.catalog)
    finally:
        await form.close()
    audit(svc, caller, "import.create", f"import {job.import_id}",
          {"format": fmt, "host": opts.host, "files": [f.name for f in files]})
    if "respond-async" in (prefer or "").lower():
        info = svc.control.store.get_import(job.import_id)
        return JSONResponse(info.to_json(), status_code=202,
                            headers={"location": f"{router.prefix}/{job.import_id}",
                                     "preference-applied": "respond-async"})
    await run_in_threadpool(job.done.wait)
    if job.error is not None:
        svc.control.store.delete_import(job.import_id)  # said in this answer: nothing is kept
        raise job.error
    assert job.info is not None
    return job.info.to_json()


@router.get("", summary="Imports: host, range, samples, origin files; state loading (with progress), "
            "ready or failed (with the error)")
def list_imports(request: Request, svc: Svc, caller: Viewer) -> dict:
    made = _jobs(request).reap(svc.control.store.list_imports())
    return {"imports": imported.listed(svc.control.store, scope.imports_for(caller, made))}


def _get(request: Request, svc, caller, import_id: int):
    info = svc.control.store.get_import(import_id)
    if info is None or not scope.imports_for(caller, [info]):
        raise NotFound("id", f"no import {import_id}")
    return _jobs(request).reap([info])[0] if info.state == LOADING else info


@router.get("/{import_id}", summary="One import: while loading, its progress (read of bytes); failed, "
            "its error (file, line, reason)", responses=responses(404))
def get_import(request: Request, import_id: ImportId, svc: Svc, caller: Viewer) -> dict:
    return imported.listed(svc.control.store, [_get(request, svc, caller, import_id)])[0]


@router.delete("/{import_id}", status_code=204, summary="Delete an import and everything it wrote",
               responses=responses(404, 409))
def delete_import(request: Request, import_id: ImportId, svc: Svc, caller: Operator) -> Response:
    info = _get(request, svc, caller, import_id)
    if info.state == LOADING:
        raise InputError("id", f"import {import_id} is being read: delete it once it is ready or failed", 409)
    svc.control.store.delete_import(import_id)
    if info.document.get("defined"):
        request.app.state.imported_metrics.changed()  # forget its metrics, here and in every API process
    audit(svc, caller, "import.delete", f"import {import_id}")
    return Response(status_code=204)
