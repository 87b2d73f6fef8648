"""Validation of instrumentation specs, updates and range parameters."""

from __future__ import annotations

import pytest

from fleetscope.api.queries import Range, resolve_range
from fleetscope.model import values
from fleetscope.model.errors import InputError
from fleetscope.model.instrumentation import Instrumentation, validate_spec, validate_update
from fleetscope.model.metrics import DISCRETE, NUMERIC, Catalog, Field, metric
from fleetscope.model.types import PERCENT, SECONDS

CATALOG = Catalog([
    metric("proc", "cpu", "process CPU", SECONDS, "interval",
           Field("pid", DISCRETE, "pid"), Field("execname", DISCRETE, "name"),
           Field("utilization", NUMERIC, "utilization", PERCENT)),
])


def spec(**body: object) -> dict:
    return validate_spec({"module": "proc", "stat": "cpu", **body}, CATALOG)


def test_defaults_and_shapes() -> None:
    s = spec()
    assert (s["granularity"], s["retention"], s["idle_max"], s["persist"]) == (1, 600, 3600, False)
    assert s["shape"] == values.SCALAR
    assert spec(decomposition=["execname"])["shape"] == values.DISCRETE
    assert spec(decomposition=["utilization"])["shape"] == values.HISTOGRAM
    both = spec(decomposition=["utilization", "execname"])
    assert both["shape"] == values.DISCRETE_HISTOGRAM
    assert both["decomposition"] == ("execname", "utilization")
    assert spec(retention="10m", idle_max="1h")["retention"] == 600
    assert validate_spec({"metric": "proc.cpu"}, CATALOG)["stat"] == "cpu"


def test_text_and_json_predicates_validate_the_same() -> None:
    assert spec(predicate='execname != "idle"')["predicate"] == spec(
        predicate={"ne": ["execname", "idle"]})["predicate"]


@pytest.mark.parametrize(
    ("body", "field", "status"),
    [
        ({"stat": "nope"}, "stat", 404),
        ({"module": ""}, "module", 422),
        ({"decomposition": ["nope"]}, "decomposition", 422),
        ({"decomposition": ["pid", "execname"]}, "decomposition", 422),
        ({"decomposition": "execname"}, "decomposition", 422),
        ({"granularity": 0}, "granularity", 422),
        ({"granularity": "soon"}, "granularity", 422),
        ({"granularity": 2, "retention": 1}, "retention", 422),
        ({"retention": 10**9}, "retention", 422),
        ({"idle_max": -1}, "idle_max", 422),
        ({"persist": "yes"}, "persist", 422),
        ({"colour": "red"}, "colour", 422),
        ({"predicate": 'nosuch == "x"'}, "predicate", 422),
        ({"predicate": "execname > 3"}, "predicate", 422),
    ],
)
def test_bad_specs_name_the_field(body: dict, field: str, status: int) -> None:
    with pytest.raises(InputError) as err:
        spec(**body)
    assert err.value.field == field
    assert err.value.status == status


def test_only_retention_idle_max_and_persist_change() -> None:
    current = Instrumentation(id=1, created=0.0, **spec(granularity=5))
    assert validate_update({"retention": "1h", "persist": True}, current) == {"retention": 3600,
                                                                              "persist": True}
    for body, field in (({"granularity": 1}, "granularity"), ({"retention": 1}, "retention"),
                        ({"predicate": "x"}, "predicate")):
        with pytest.raises(InputError) as err:
            validate_update(body, current)
        assert err.value.field == field


def test_resolve_range() -> None:
    i = Instrumentation(id=1, created=0.0, **spec(granularity=5))
    assert resolve_range(i, latest=1000) == Range(1000, 5, 1)
    assert resolve_range(i, latest=1000, ndatapoints=3) == Range(990, 5, 3)
    assert resolve_range(i, latest=None, start_time=1003, ndatapoints=2) == Range(1000, 5, 2)
    assert resolve_range(i, latest=None, start_time=1000, end_time=1100) == Range(1000, 5, 20)
    assert resolve_range(i, latest=None, start_time=1000, end_time=1100, ndatapoints=4) == Range(1000, 25, 4)
    for kwargs, field in (({"duration": 3}, "duration"), ({"ndatapoints": 0}, "ndatapoints"),
                          ({"start_time": -1}, "start_time"),
                          ({"start_time": 10, "end_time": 5}, "end_time"),
                          ({"start_time": 0, "end_time": 10**9}, "end_time")):
        with pytest.raises(InputError) as err:
            resolve_range(i, latest=1000, **kwargs)
        assert err.value.field == field
