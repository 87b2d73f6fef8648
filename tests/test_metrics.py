"""Metrics, fields and units as they travel in agents' catalogues."""

from __future__ import annotations

import pytest

from fleetscope.model.errors import InputError
from fleetscope.model.metrics import Metric
from fleetscope.model.types import Type, parse_duration, parse_quantity
from fleetscope.sources.registry import catalog, local_sources


def test_every_local_metric_round_trips_through_json() -> None:
    for m in catalog(local_sources()):
        assert Metric.from_json(m.to_json()) == m


@pytest.mark.parametrize(
    "obj",
    [
        None,
        {"module": "a b", "stat": "x", "kind": "point", "fields": [], "unit": {"base": "number"}},
        {"module": "a", "stat": "x", "kind": "sometimes", "fields": [], "unit": {"base": "number"}},
        {"module": "a", "stat": "x", "kind": "point", "fields": "f", "unit": {"base": "number"}},
        {"module": "a", "stat": "x", "kind": "point", "fields": [], "unit": {"base": "furlongs"}},
        {"module": "a", "stat": "x", "kind": "point", "fields": [{"name": "f", "kind": "odd"}],
         "unit": {"base": "number"}},
    ],
)
def test_malformed_catalogue_entries_are_refused(obj: object) -> None:
    with pytest.raises(InputError) as err:
        Metric.from_json(obj)
    assert err.value.field == "metric"


@pytest.mark.parametrize(
    ("text", "unit", "expected"),
    [("10ms", Type("seconds", -6), 10_000), ("4KiB", Type("bytes"), 4096), ("2G", Type("bytes"), 2 << 30),
     ("50%", Type("percent"), 50), ("1.5", Type("number"), 1.5), ("3s", Type("seconds", -3), 3000)],
)
def test_quantities_convert_to_the_field_unit(text: str, unit: Type, expected: float) -> None:
    assert parse_quantity(text, unit) == pytest.approx(expected)


def test_quantity_errors_name_the_field() -> None:
    with pytest.raises(InputError) as err:
        parse_quantity("10ms", Type("bytes"), "latency")
    assert err.value.field == "latency"
    with pytest.raises(InputError):
        parse_quantity("ten", Type("number"))


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("10m", 600), ("1h30m", 5400), ("7d", 604800),
                                               (60, 60)])
def test_durations(text: object, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["1x", "h", "-5", 1.5, True, "10m5"])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(InputError):
        parse_duration(bad, "retention")
