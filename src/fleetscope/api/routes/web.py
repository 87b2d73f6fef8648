"""The dashboard's page and ``/healthz``; the dashboard's files are mounted at ``/web`` by the app."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, JSONResponse

from fleetscope import __version__

WEB_DIR = Path(__file__).resolve().parent.parent.parent / "web"

router = APIRouter(include_in_schema=False)


@router.get("/healthz")
def healthz() -> JSONResponse:
    return JSONResponse({"status": "ok", "version": __version__})


if (WEB_DIR / "index.html").exists():
    @router.get("/")
    def index() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html")
