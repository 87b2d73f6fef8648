"""Named dashboards: arrangements of panels, saved in the store.

``GET /api/v1/dashboards`` lists them, ``POST`` creates one (201), and
``GET``/``PUT``/``DELETE /api/v1/dashboards/{id}`` read, replace and delete one
(the routes are in :mod:`fleetscope.api.routes.dashboards`; this module checks
documents).

A dashboard document is::

    {"name": "web tier",                         # 1-100 characters, unique
     "rows": [{"title": "databases",             # at most MAX_ROWS titled groups of panels
               "collapsed": true}],              # only the row's title shown; its panels fetch nothing
     "panels": [                                 # at most MAX_PANELS, in display order
        {"instrumentation": 7,                   # an existing instrumentation id
         "row": 0,                               # the index of its row in "rows" (none: above the rows)
         "options": {"width": 1,                 # 1 or 2 grid columns
                     "chart": "stacked",         # "stacked" or "lines" (breakdowns)
                     "coloring": "rank",         # "rank" or "linear" (heatmaps)
                     "overlays": ["avg", "p99"], # lines over a heatmap: avg, pNN(.N)
                     "selected": ["nginx"],      # keys drawn in their own hue
                     "keys": "isolate",          # what selected keys do: highlight, isolate, exclude
                     "scale": "log",             # a heatmap's value axis: linear or log
                     "top": 20,                  # keys a breakdown draws (the rest folded)
                     "pinned": ["cron"],         # keys a breakdown draws whatever their rank
                     "height": 2,                # 1 or 2 chart heights
                     "compare": 86400,           # the range a day (or a week: 604800) earlier, dashed
                     "collapsed": true,          # only the panel's header shown
                     "ymin": 0, "ymax": 100}}]}  # a zoomed heatmap axis

``rows``, ``row``, ``options`` and each of its keys are optional. Panels without a row come
first, then each row's panels in the order of ``rows`` (as Grafana draws panels above its first
row). The server answers with the
document plus ``id``, ``created``, ``updated`` (epoch seconds) and ``tenant``. Every
document is validated strictly: an unknown key, a wrong type or an unknown
instrumentation is an error naming the field (``panels[2].options.width``),
and changes nothing.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from fleetscope.api.params import MAX_ID
from fleetscope.model.errors import InputError

MAX_NAME = 100
MAX_PANELS = 64
MAX_ROWS = 32
MAX_SELECTED = 16
MAX_KEY = 256
CHARTS = ("stacked", "lines")
COLORINGS = ("rank", "linear")
SCALES = ("linear", "log")
KEY_MODES = ("highlight", "isolate", "exclude")
TOP_CHOICES = (5, 8, 10, 20, 50)  # as the web's panels/lines.js offers them
MAX_PINNED = 16
COMPARE_BACK = (86400, 604800)  # seconds back a panel's comparison may look: a day, a week
_OVERLAY = re.compile(r"^(avg|p(100|[1-9]?\d(\.\d{1,3})?))$")


def _object(value: object, field: str, allowed: set[str]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InputError(field, "must be a JSON object")
    for key in value:
        if key not in allowed:
            where = f"{field}.{key}" if field != "body" else str(key)
            raise InputError(where, f"unknown field (allowed: {', '.join(sorted(allowed))})")
    return value


def _choice(value: object, field: str, choices: tuple) -> Any:
    if value not in choices or isinstance(value, bool):
        raise InputError(field, f"must be one of {', '.join(map(str, choices))}")
    return value


def _finite(value: object, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InputError(field, "must be a finite number")
    return value


def _strings(value: object, field: str, limit: int, check: Callable[[str], bool] = bool) -> list[str]:
    if not isinstance(value, list):
        raise InputError(field, "must be a list of strings")
    if len(value) > limit:
        raise InputError(field, f"at most {limit} entries")
    for i, item in enumerate(value):
        if not isinstance(item, str) or not check(item):
            raise InputError(f"{field}[{i}]", "is not valid here")
    if len(set(value)) != len(value):
        raise InputError(field, "must not repeat an entry")
    return list(value)


def validate_options(value: object, field: str) -> dict:
    """Check one panel's ``options`` and return them as plain JSON."""
    opts = _object(value, field, {"width", "chart", "coloring", "overlays", "selected", "ymin", "ymax",
                                  "keys", "scale", "top", "pinned", "height", "collapsed", "compare"})
    out: dict[str, Any] = {}
    if "width" in opts:
        out["width"] = _choice(opts["width"], f"{field}.width", (1, 2))
    if "chart" in opts:
        out["chart"] = _choice(opts["chart"], f"{field}.chart", CHARTS)
    if "coloring" in opts:
        out["coloring"] = _choice(opts["coloring"], f"{field}.coloring", COLORINGS)
    if "overlays" in opts:
        out["overlays"] = _strings(opts["overlays"], f"{field}.overlays", 8,
                                   lambda s: bool(_OVERLAY.match(s)))
    if "selected" in opts:
        out["selected"] = _strings(opts["selected"], f"{field}.selected", MAX_SELECTED,
                                   lambda s: 0 < len(s) <= MAX_KEY)
    if "compare" in opts:
        out["compare"] = _choice(opts["compare"], f"{field}.compare", COMPARE_BACK)
    if "height" in opts:
        out["height"] = _choice(opts["height"], f"{field}.height", (1, 2))
    if "collapsed" in opts:
        if not isinstance(opts["collapsed"], bool):
            raise InputError(f"{field}.collapsed", "must be true or false")
        out["collapsed"] = opts["collapsed"]
    if "keys" in opts:
        out["keys"] = _choice(opts["keys"], f"{field}.keys", KEY_MODES)
    if "scale" in opts:
        out["scale"] = _choice(opts["scale"], f"{field}.scale", SCALES)
    if "top" in opts:
        out["top"] = _choice(opts["top"], f"{field}.top", TOP_CHOICES)
    if "pinned" in opts:
        out["pinned"] = _strings(opts["pinned"], f"{field}.pinned", MAX_PINNED,
                                 lambda s: 0 < len(s) <= MAX_KEY)
    for name in ("ymin", "ymax"):
        if name in opts and opts[name] is not None:
            out[name] = _finite(opts[name], f"{field}.{name}")
    if "ymin" in out and "ymax" in out and out["ymax"] <= out["ymin"]:
        raise InputError(f"{field}.ymax", "must be greater than ymin")
    if ("ymin" in out) != ("ymax" in out):
        raise InputError(f"{field}.{'ymax' if 'ymin' in out else 'ymin'}",
                         "ymin and ymax go together (a zoomed axis)")
    return out


def validate_dashboard(body: object, exists: Callable[[int], bool]) -> dict:
    """Check a whole document; ``exists(id)`` says whether an instrumentation exists.

    Returns ``{"name", "panels"}`` normalised (``options`` always present), with ``rows``
    when the document has them.
    """
    if not isinstance(body, Mapping):
        raise InputError("body", "the body must be a JSON object", 400)
    doc = _object(body, "body", {"name", "rows", "panels", "id", "created", "updated", "tenant"})
    name = doc.get("name")
    if not isinstance(name, str) or not name.strip():
        raise InputError("name", "is required (a non-empty string)")
    name = name.strip()
    if len(name) > MAX_NAME:
        raise InputError("name", f"at most {MAX_NAME} characters")
    rows = _rows(doc["rows"]) if "rows" in doc else None
    panels = doc.get("panels", [])
    if not isinstance(panels, list):
        raise InputError("panels", "must be a list of panels")
    if len(panels) > MAX_PANELS:
        raise InputError("panels", f"at most {MAX_PANELS} panels")
    out = []
    for i, panel in enumerate(panels):
        where = f"panels[{i}]"
        p = _object(panel, where, {"instrumentation", "row", "options"})
        inst = p.get("instrumentation")
        if isinstance(inst, bool) or not isinstance(inst, int) or inst <= 0:
            raise InputError(f"{where}.instrumentation", "must be an instrumentation id (a positive integer)")
        if inst > MAX_ID or not exists(inst):
            raise InputError(f"{where}.instrumentation", f"no instrumentation {inst}")
        slot: dict[str, Any] = {"instrumentation": inst}
        if "row" in p:
            slot["row"] = _row_index(p["row"], f"{where}.row", len(rows or ()))
        slot["options"] = validate_options(p.get("options", {}), f"{where}.options")
        out.append(slot)
    return {"name": name, "panels": out} if rows is None else {"name": name, "rows": rows, "panels": out}


def _rows(value: object) -> list[dict]:
    """Check a document's ``rows``: titled groups of panels, each collapsed or not."""
    if not isinstance(value, list):
        raise InputError("rows", "must be a list of rows ({title, collapsed})")
    if len(value) > MAX_ROWS:
        raise InputError("rows", f"at most {MAX_ROWS} rows")
    out = []
    for i, row in enumerate(value):
        where = f"rows[{i}]"
        r = _object(row, where, {"title", "collapsed"})
        title = r.get("title")
        if not isinstance(title, str) or not title.strip() or len(title.strip()) > MAX_NAME:
            raise InputError(f"{where}.title", f"is required: 1 to {MAX_NAME} characters")
        collapsed = r.get("collapsed", False)
        if not isinstance(collapsed, bool):
            raise InputError(f"{where}.collapsed", "must be true or false")
        out.append({"title": title.strip(), "collapsed": collapsed})
    return out


def _row_index(value: object, field: str, nrows: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(field, "must be the index of a row in rows (an integer)")
    if not nrows:
        raise InputError(field, "the dashboard has no rows")
    if not 0 <= value < nrows:
        raise InputError(field, f"must be the index of a row in rows (0 to {nrows - 1})")
    return value


_OPTIONS_SCHEMA = {
    "type": "object", "additionalProperties": False,
    "dependentRequired": {"ymin": ["ymax"], "ymax": ["ymin"]},
    "properties": {
        "width": {"enum": [1, 2], "description": "grid columns"},
        "chart": {"enum": list(CHARTS)},
        "coloring": {"enum": list(COLORINGS)},
        "overlays": {"type": "array", "maxItems": 8, "uniqueItems": True,
                     "items": {"type": "string", "pattern": _OVERLAY.pattern}},
        "selected": {"type": "array", "maxItems": MAX_SELECTED, "uniqueItems": True,
                     "items": {"type": "string", "minLength": 1, "maxLength": MAX_KEY}},
        "height": {"enum": [1, 2], "description": "chart heights"},
        "compare": {"enum": list(COMPARE_BACK), "description": "seconds back of a dashed comparison"},
        "collapsed": {"type": "boolean", "description": "only the panel's header shown"},
        "keys": {"enum": list(KEY_MODES), "description": "what the selected keys do"},
        "scale": {"enum": list(SCALES), "description": "a heatmap's value axis"},
        "top": {"enum": list(TOP_CHOICES), "description": "keys a breakdown draws"},
        "pinned": {"type": "array", "maxItems": MAX_PINNED, "uniqueItems": True,
                   "items": {"type": "string", "minLength": 1, "maxLength": MAX_KEY},
                   "description": "keys a breakdown draws whatever their rank"},
        "ymin": {"type": "number", "description": "a zoomed axis: with ymax"},
        "ymax": {"type": "number", "description": "a zoomed axis: with ymin, and greater than it"},
    },
}

DASHBOARD_SCHEMA = {
    "title": "Dashboard",
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": MAX_NAME, "pattern": r"\S",
                 "description": "unique among dashboards"},
        "rows": {"type": "array", "maxItems": MAX_ROWS, "description": "titled groups of panels", "items": {
            "type": "object", "required": ["title"], "additionalProperties": False,
            "properties": {"title": {"type": "string", "minLength": 1, "maxLength": MAX_NAME,
                                     "pattern": r"\S"},
                           "collapsed": {"type": "boolean",
                                         "description": "only the title shown; its panels fetch nothing"}}}},
        "panels": {"type": "array", "maxItems": MAX_PANELS, "items": {
            "type": "object", "required": ["instrumentation"], "additionalProperties": False,
            "properties": {"instrumentation": {"type": "integer", "minimum": 1, "maximum": MAX_ID,
                                               "description": "an existing instrumentation id"},
                           "row": {"type": "integer", "minimum": 0, "maximum": MAX_ROWS - 1,
                                   "description": "the index of the panel's row in rows"},
                           "options": _OPTIONS_SCHEMA}}},
        "id": {"description": "ignored: the server's own (so a document read can be sent back)"},
        "created": {"description": "ignored"},
        "updated": {"description": "ignored"},
        "tenant": {"description": "ignored: the tenant of the token that made it"},
    },
}
"""The JSON schema of a dashboard document, as :func:`validate_dashboard` checks it (for OpenAPI)."""
