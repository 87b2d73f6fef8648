"""Parameters shared by several routes: resource ids, ranges, and the one-or-many rule.

Each is declared once, with its bounds, so the OpenAPI document and the checks
agree everywhere. An id no store can hold (SQLite and PostgreSQL keys are signed
64-bit integers) is an id that does not exist: 404, like any other unknown id,
never an overflow deeper down.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, TypeVar

from fastapi import Depends, Path, Query
from starlette.convertors import StringConvertor, register_url_convertor

from fleetscope.api import queries
from fleetscope.model.errors import NotFound

MAX_ID = 2**63 - 1  # the largest signed 64-bit key
MAX_TIME = queries.MAX_TIME


def known_id(value: int, what: str, field: str = "id") -> int:
    """``value`` when a store can hold such an id; else NotFound naming ``field``."""
    if not 0 < value <= MAX_ID:
        raise NotFound(field, f"no {what} {value}")
    return value


async def _instrumentation_id(id: Annotated[int, Path(description="an instrumentation id")]) -> int:
    return known_id(id, "instrumentation")


async def _dashboard_id(id: Annotated[int, Path(description="a dashboard id")]) -> int:
    return known_id(id, "dashboard")


async def _import_id(import_id: Annotated[int, Path(description="an import id")]) -> int:
    return known_id(import_id, "import", "import_id")


InstId = Annotated[int, Depends(_instrumentation_id)]
DashboardId = Annotated[int, Depends(_dashboard_id)]
ImportId = Annotated[int, Depends(_import_id)]


class IdSegment(StringConvertor):
    """A path segment for ``{id:idseg}``: anything but a word that names a sibling route.

    ``/instrumentations/validate`` is a route of its own (POST only), so it must
    not also match ``/instrumentations/{id}``: a PATCH there is then a 405 with
    ``Allow: POST`` rather than an id that is not a number. Any other segment
    still matches, so that ``/instrumentations/abc`` is a 422 naming ``id``.
    """

    regex = r"(?!validate$)[^/]+"


register_url_convertor("idseg", IdSegment())


# -- ranges -------------------------------------------------------------------------------

RangeStart = Annotated[int | None, Query(ge=0, le=MAX_TIME, description="epoch seconds of the first point")]
RangeEnd = Annotated[int | None, Query(ge=0, le=MAX_TIME, description="epoch seconds where the range ends")]
RangeDuration = Annotated[int | None, Query(ge=1, le=MAX_TIME, description=(
    "seconds per data point (a multiple of the granularity; default the granularity)"))]
RangePoints = Annotated[int | None, Query(ge=1, le=queries.MAX_POINTS, description=(
    "number of data points (an array is returned)"))]

ONE_OR_MANY = (
    "One point (an object) or several (an array): an array when `ndatapoints` is given or when "
    "both `start_time` and `end_time` are, else the single point that starts at `start_time`, "
    "or ends at `end_time`, or is the latest final one."
)

T = TypeVar("T")


def one_or_many(points: Sequence[T], start_time: int | None, end_time: int | None,
                ndatapoints: int | None) -> T | list[T]:
    """The answer of a value-like route, by the rule in :data:`ONE_OR_MANY`."""
    if ndatapoints is not None or (start_time is not None and end_time is not None):
        return list(points)
    return points[-1]


__all__ = [
    "MAX_ID",
    "MAX_TIME",
    "ONE_OR_MANY",
    "DashboardId",
    "IdSegment",
    "InstId",
    "RangeDuration",
    "RangeEnd",
    "RangePoints",
    "RangeStart",
    "known_id",
    "one_or_many",
]
