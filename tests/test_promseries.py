"""The Prometheus mapping of a breakdown's points (api/promseries.py) read by the PromQL engine:
a key absent from a point the instrumentation answered has no value there (a stale marker, as a
series missing from a scrape), instead of its last value carried on by the lookback."""

from __future__ import annotations

from fleetscope.api.promseries import inst_series
from fleetscope.model.instrumentation import Instrumentation, validate_spec
from fleetscope.model.metrics import Catalog
from fleetscope.model.series import DataPoint
from fleetscope.perflogs.metrics import METRICS
from fleetscope.promql.engine import instant, range_query
from fleetscope.promql.storage import MemoryStorage
from fleetscope.store.block import from_points

T0 = 1_800_000_000
# cpu.usage by mode, 1-second points: "user" has no key in the middle one (0 % that second).
POINTS = [DataPoint(T0, 1, {"idle": 1.5, "user": 0.5}, 1, 1),
          DataPoint(T0 + 1, 1, {"idle": 2.0}, 1, 1),
          DataPoint(T0 + 2, 1, {"idle": 1.0, "user": 1.0}, 1, 1)]


def storage(points: list[DataPoint]) -> tuple[Instrumentation, MemoryStorage]:
    spec = validate_spec({"metric": "cpu.usage", "decomposition": ["mode"]}, Catalog(METRICS))
    inst = Instrumentation(id=7, created=0.0, **spec)
    return inst, MemoryStorage(inst_series(inst, from_points(points, inst.shape), 1, []))


def modes_at(store: MemoryStorage, t: int) -> dict[str, float]:
    data = instant('fleetscope_cpu_usage{instrumentation="7"}', store, t * 1000).data
    return {s["metric"]["mode"]: float(s["value"][1]) for s in data["result"]}


def test_a_key_missing_from_a_point_has_no_value_there() -> None:
    _, store = storage(POINTS)
    assert modes_at(store, T0) == {"idle": 1.5, "user": 0.5}
    assert modes_at(store, T0 + 1) == {"idle": 2.0}  # not user's 0.5 of the second before
    assert modes_at(store, T0 + 2) == {"idle": 1.0, "user": 1.0}


def test_stale_markers_are_not_samples_of_range_functions() -> None:
    _, store = storage(POINTS)
    data = range_query('count_over_time(fleetscope_cpu_usage{mode="user"}[5s])', store,
                       (T0 + 2) * 1000, (T0 + 2) * 1000, 1000).data
    assert [v for _, v in data["result"][0]["values"]] == ["2"]


def test_a_gap_in_the_instrumentation_marks_nothing() -> None:
    # No point at all at T0 + 1 (no data, not an empty breakdown): the lookback carries on.
    _, store = storage([POINTS[0], POINTS[2]])
    assert modes_at(store, T0 + 1) == {"idle": 1.5, "user": 0.5}
