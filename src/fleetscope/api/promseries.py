"""fleetscope's instrumentations as Prometheus series: the mapping of the ``/prometheus`` API.

Each instrumentation is a metric of the name ``/metrics`` exports it under
(:func:`fleetscope.api.exposition.metric_name`): ``fleetscope_<module>_<stat>``, a per-second
rate for interval metrics and a level for point metrics. Its labels are
``instrumentation`` (its id) and, for a breakdown, its discrete field (one series per key,
``(other)`` included). A distribution is the native histogram
``fleetscope_<module>_<stat>_<numeric field>`` with its classic ``_sum`` and ``_count``.

A field the instrumentation's predicate requires to equal a text is a label of all its
series (``hostname == "web1"`` gives ``hostname="web1"``), and a matcher whose very term is in
the predicate selects it (how a query made ``instrument=true`` finds what it made).
Distributions also have classic ``_bucket`` series (``le`` at the bounds of the buckets).

Samples: one per data point, at its start (milliseconds), from the tier the API's own
ranges would read for the query's step (:func:`sample_range`); interval metrics divided by
the point's duration, so every tier gives the same per-second unit. Series are found from
the keys an instrumentation had over a range (real-time window and history, at most
:data:`KEY_POINTS` points read per instrumentation, for the discovery routes; the query
routes read every point). Label matchers are :mod:`fleetscope.promql.matchers`.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from fleetscope.api import queries
from fleetscope.api.exposition import family_name, field_label, label_name, metric_name
from fleetscope.model import values
from fleetscope.model.errors import InputError
from fleetscope.model.histogram import Histogram
from fleetscope.model.instrumentation import Instrumentation
from fleetscope.model.metrics import INTERVAL
from fleetscope.model.series import DataPoint
from fleetscope.model.tiers import Tier
from fleetscope.promql.matchers import NAME, Matcher, matches_one, parse_selector
from fleetscope.promql.storage import STALE_NAN, Series
from fleetscope.store.block import Block, take, to_points

__all__ = ["Matcher", "parse_selector"]  # the selectors of the discovery routes

INSTRUMENTATION = "instrumentation"
LE = "le"
KEY_POINTS = 120  # points read per instrumentation to learn its keys over a range
MAX_SERIES = 10_000  # series one answer lists, at most
SELECT_POINTS = 100_000  # samples one series may read: past that a coarser tier answers


def is_distribution(inst: Instrumentation) -> bool:
    return inst.shape in (values.HISTOGRAM, values.DISCRETE_HISTOGRAM)


def names(inst: Instrumentation) -> list[str]:
    """The metric names ``inst`` answers to."""
    if is_distribution(inst):
        family = family_name(inst)
        return [family, f"{family}_sum", f"{family}_count"]
    return [metric_name(inst)]


def metadata(inst: Instrumentation, help_text: str) -> dict[str, list[dict]]:
    """``/metadata`` entries of ``inst``'s metric names."""
    unit = "per second" if inst.kind == INTERVAL else ""
    if is_distribution(inst):
        family = family_name(inst)
        return {family: [{"type": "histogram", "help": help_text, "unit": unit}]}
    return {metric_name(inst): [{"type": "gauge", "help": help_text, "unit": unit}]}


def terms(inst: Instrumentation) -> list[dict]:
    """The terms AND-ed at the top of ``inst``'s predicate (the tenant's scope among them)."""
    return _conjuncts(inst.predicate or {})


def _conjuncts(pred: dict) -> list[dict]:
    if not pred:
        return []
    if set(pred) == {"and"}:
        return [t for p in pred["and"] for t in _conjuncts(p)]
    return [pred]


def constant_labels(inst: Instrumentation) -> dict[str, str]:
    """Labels every series of ``inst`` has because its predicate fixes them: a field the
    predicate requires to equal a text (``hostname == "web1"`` gives ``hostname="web1"``)."""
    out = {}
    for term in terms(inst):
        if set(term) == {"eq"} and isinstance(term["eq"][1], str):
            out[field_label(term["eq"][0])] = term["eq"][1]
    return out


def matcher_term(m: Matcher) -> dict:
    """The predicate term that selects what matcher ``m`` selects (regexes anchored)."""
    if m.op == "=":
        return {"eq": [m.name, m.value]}
    if m.op == "!=":
        return {"ne": [m.name, m.value]}
    regex = {"re": [m.name, f"^(?:{m.value})$"]}
    return regex if m.op == "=~" else {"not": regex}


def base_labels(inst: Instrumentation, name: str) -> dict[str, str]:
    """The labels every series ``name`` of ``inst`` has."""
    return {**constant_labels(inst), NAME: name, INSTRUMENTATION: str(inst.id)}


def series(inst: Instrumentation, keys: Iterable[str]) -> list[dict[str, str]]:
    """Every series of ``inst``, given the keys of its breakdown (ignored without one)."""
    label = label_name(inst)
    keyed = [{label: key} for key in sorted(keys)] if label else [{}]
    return [{**base_labels(inst, name), **k} for name in names(inst) for k in keyed]


def label_names(inst: Instrumentation) -> list[str]:
    label = label_name(inst)
    return [NAME, INSTRUMENTATION, *constant_labels(inst), *([label] if label else [])]


# -- samples ------------------------------------------------------------------------------------


def sample_range(inst: Instrumentation, tiers: Sequence[Tier], start: float, end: float, step: float,
                 now: float) -> queries.Range:
    """The points that answer a selection of ``[start, end]`` (seconds) for a query of ``step``
    seconds (0: an instant query): the tier the API's own ranges would pick for that step
    (the coarsest whose resolution divides it, or a coarser one when it alone still holds
    ``start``), coarser still while the range would need over SELECT_POINTS samples."""
    want = max(inst.granularity, int(step))
    tier, _ = queries.fit_step(tiers, want, int(start), now, False, "step")
    first = int(start) // tier.resolution * tier.resolution
    n = int(end) // tier.resolution - first // tier.resolution + 1
    for coarser in (t for t in tiers if t.resolution > tier.resolution):
        if n <= SELECT_POINTS:
            break
        tier = coarser
        first = int(start) // tier.resolution * tier.resolution
        n = int(end) // tier.resolution - first // tier.resolution + 1
    if n > SELECT_POINTS:
        raise InputError("query", f"selects {n} samples of {tier.resolution} s per series from "
                         f"instrumentation {inst.id}, over the {SELECT_POINTS} any series may read: "
                         "shorten the range")
    return queries.Range(first, tier.resolution, n)


def selects(inst: Instrumentation, labels: dict[str, str], matchers: Sequence[Matcher]) -> bool:
    """Whether ``matchers`` select the series of ``inst`` with ``labels``. A matcher on a field
    that is no label of it holds when ``inst``'s predicate has its very term (see
    :func:`matcher_term`: ``{hostname!="web1"}`` selects an instrumentation made with that
    matcher), else as on the empty string, as Prometheus judges a missing label."""
    carried = terms(inst)
    return all(matches_one(m, labels[m.name]) if m.name in labels else
               (matcher_term(m) in carried or matches_one(m, "")) for m in matchers)


def _base_matches(inst: Instrumentation, name: str, matchers: Sequence[Matcher]) -> bool:
    """Whether some series named ``name`` of ``inst`` may be selected, judged on the labels all
    of them share (the breakdown label and ``le`` are judged per series)."""
    label = label_name(inst)
    return selects(inst, base_labels(inst, name), [m for m in matchers if m.name not in (label, LE)])


def selected_names(inst: Instrumentation, matchers: Sequence[Matcher]) -> list[str]:
    """The metric names of ``inst`` (``_bucket`` included) ``matchers`` may select."""
    all_names = names(inst) + ([f"{family_name(inst)}_bucket"] if is_distribution(inst) else [])
    return [n for n in all_names if _base_matches(inst, n, matchers)]


def _seconds(inst: Instrumentation, duration: int) -> int:
    """What a value is divided by: an interval metric's point by its seconds, a level by 1."""
    return duration if inst.kind == INTERVAL else 1


def _by_key(inst: Instrumentation, points: Sequence[DataPoint]) -> dict[str | None, list[tuple[int, object]]]:
    """Each key's samples ``(start_time, value)`` (one key, None, without a breakdown)."""
    out: dict[str | None, list[tuple[int, object]]] = {}
    for p in points:
        if p.value is None:
            continue
        if inst.shape in (values.DISCRETE, values.DISCRETE_HISTOGRAM):
            for key, v in p.value.items():  # type: ignore[union-attr]
                out.setdefault(key, []).append((p.start_time, v))
        else:
            out.setdefault(None, []).append((p.start_time, p.value))
    return out


def _cumulative(h: Histogram) -> tuple[list[float], list[float]]:
    """Upper bounds and the cumulative counts at them (the zero bucket first)."""
    bounds, counts, total = [], [], 0.0
    for _, upper, count in h.iter_buckets():
        total += count
        if math.isfinite(upper):
            bounds.append(upper)
            counts.append(total)
    return bounds, counts


def _classic(name: str, labels: dict[str, str], times: np.ndarray, hs: list[Histogram]) -> Iterator[Series]:
    """The classic ``_bucket`` series of native histogram samples: one per bound any of them
    has, and ``+Inf``; each counts the observations at or below its bound."""
    from fleetscope.api.exposition import bound_text

    cums = [_cumulative(h) for h in hs]
    for bound in sorted({b for bounds, _ in cums for b in bounds}):
        counts = [cum[i - 1] if (i := bisect.bisect_right(bounds, bound)) else 0.0 for bounds, cum in cums]
        yield Series({**labels, NAME: name, LE: bound_text(bound)}, times, np.array(counts), None)
    yield Series({**labels, NAME: name, LE: "+Inf"}, times, np.array([h.count for h in hs]), None)


def _key_series(inst: Instrumentation, wanted: Sequence[str], labels: dict[str, str],
                samples: list[tuple[int, object]], duration: int) -> Iterator[Series]:
    times = np.array([t * 1000 for t, _ in samples], dtype=np.int64)
    per = _seconds(inst, duration)
    family = family_name(inst)
    hs = [v if per == 1 else v.scale(1.0 / per) for _, v in samples]  # type: ignore[union-attr]
    for name in wanted:
        if name == family:
            yield Series({**labels, NAME: name}, times, None, hs)
        elif name == f"{family}_sum":
            yield Series({**labels, NAME: name}, times, np.array([h.sum for h in hs]), None)
        elif name == f"{family}_count":
            yield Series({**labels, NAME: name}, times, np.array([h.count for h in hs]), None)
        else:
            yield from _classic(name, labels, times, hs)


def _number_series(inst: Instrumentation, block: Block, duration: int, shared: dict[str, str]
                   ) -> Iterator[Series]:
    """The series of a number or breakdown straight from a block's columns: a point metric's
    sums divided by their counts, an interval metric's by the point's seconds.

    A key absent from a point the instrumentation answered (others present) is a stale marker
    there, as a series missing from a scrape is in Prometheus: an instant query then finds no
    value of it, as the point has none, rather than carrying its last value on."""
    label = label_name(inst)
    sums = block.values
    per = block.counts[:, None] if inst.kind != INTERVAL else duration
    levels = sums / per
    times = block.times.astype(np.int64) * 1000
    name = metric_name(inst)
    answered = ~np.isnan(levels).all(axis=1)
    for j, key in enumerate(block.keys):
        present = ~np.isnan(levels[:, j])
        if present.any():
            gone = answered & ~present
            gone[: int(present.argmax())] = False  # nothing to end before its first sample
            kept = present | gone
            labels = {**shared, **({label: key} if label else {}), NAME: name}
            yield Series(labels, times[kept], np.where(present, levels[:, j], STALE_NAN)[kept], None)


def inst_series(inst: Instrumentation, block: Block, duration: int,
                matchers: Sequence[Matcher]) -> list[Series]:
    """The series of ``inst`` that ``matchers`` select, from its points (a block) of
    ``duration`` seconds: samples at each point's start (milliseconds), interval metrics per
    second."""
    shared = {**constant_labels(inst), INSTRUMENTATION: str(inst.id)}
    if not is_distribution(inst):
        return [s for s in _number_series(inst, block, duration, shared) if selects(inst, s.labels, matchers)]
    wanted = selected_names(inst, matchers)
    label = label_name(inst)
    out: list[Series] = []
    for key, samples in _by_key(inst, to_points(block, inst.shape, inst.kind, duration)).items():
        labels = {**shared, **({label: key} if label and key is not None else {})}
        found = _key_series(inst, wanted, labels, samples, duration)
        out.extend(s for s in found if selects(inst, s.labels, matchers))
    return out


class InstrumentationStorage:
    """The PromQL engine's storage (:class:`fleetscope.promql.storage.Storage`) over the
    instrumentations ``caller`` may see, read through ``svc`` (window and history)."""

    def __init__(self, svc, caller, now: float | None = None) -> None:
        self.svc = svc
        self.caller = caller
        self.now = now
        self.read: set[int] = set()  # the instrumentations selections read from

    def select(self, matchers: Sequence[Matcher], start_ms: int, end_ms: int, step_ms: int) -> list[Series]:
        now = time.time() if self.now is None else self.now
        out: list[Series] = []
        for inst in self.svc.listed(self.caller):
            if not selected_names(inst, matchers):
                continue
            rng = sample_range(inst, self.svc.tiers(inst), start_ms / 1000, end_ms / 1000,
                               step_ms / 1000, now)
            block = self.svc.block(inst, rng)
            block = take(block, (block.times * 1000 >= start_ms) & (block.times * 1000 <= end_ms))
            out.extend(inst_series(inst, block, rng.duration, matchers))
            self.read.add(inst.id)
            if len(out) > MAX_SERIES:
                raise InputError("query", f"a selector matches over {MAX_SERIES} series: narrow it")
        return out
