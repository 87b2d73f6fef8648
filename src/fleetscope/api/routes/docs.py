"""``/api/v1/docs``: Swagger UI over the OpenAPI document, served whole from the package.

The assets come from the ``fastapi-offline`` distribution (swagger-ui's own
``dist`` files), so the page works on a machine that cannot reach a CDN.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

from fleetscope.model.errors import NotFound

DOCS = "/api/v1/docs"
ASSETS_DIR = Path(fastapi_offline.__file__).resolve().parent / "static"
ASSETS = ("swagger-ui-bundle.js", "swagger-ui.css", "favicon.png")  # all the page loads

router = APIRouter(prefix=DOCS, include_in_schema=False)


@router.get("")
def swagger_ui(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "")
    return get_swagger_ui_html(
        openapi_url=f"{root}{request.app.openapi_url}",
        title=f"{request.app.title} API",
        swagger_js_url=f"{root}{DOCS}/assets/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{DOCS}/assets/swagger-ui.css",
        swagger_favicon_url=f"{root}{DOCS}/assets/favicon.png",
        swagger_ui_parameters={"validatorUrl": None},  # no badge fetched from swagger.io
    )


@router.get("/assets/{name}")
def swagger_asset(name: str) -> FileResponse:
    if name not in ASSETS:
        raise NotFound("name", f"no docs asset {name!r}")
    return FileResponse(ASSETS_DIR / name, headers={"cache-control": "public, max-age=86400"})
