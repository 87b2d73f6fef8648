"""Answering range questions from the real-time window and the history tiers.

Every value-like endpoint takes the same range parameters; :func:`resolve_range`
turns them into ``(start, duration, n)``: ``n`` consecutive data points of
``duration`` seconds (the step) starting at ``start``. :func:`data_points`
answers them: from the window alone for an instrumentation that is not
persisted, else from the history tier whose resolution divides the step (the
coarsest such: rollups are exact, so it answers the same, faster), merged with
the window (the window wins where both hold a slot; nothing is counted twice).

Which tier: the step is ``duration`` when given (then it is kept as asked, and
a range older than the retention of every tier it can be read from is an
error), else the smallest step that fits the range in ``ndatapoints`` points,
rounded up to a multiple of the coarsest tier not coarser than it, and to the
finest tier that still holds the range's start; once that is a tier coarser than
the raw one, to a tidy multiple of it (:func:`fleetscope.model.tiers.tidy_step`:
a year in 300 points is two days per point, not 29.2 hours, which would fold a
daily cycle into a false five-day wave). Points are aligned to that tier's
resolution, and responses say which resolution answered.

Bounded work: a range reads at most :data:`READ_BUDGET` rows of one tier. A
``duration`` that would read more from the tier it divides (the dashboard's
``ceil(span / 300)`` over a year: 525,600 minutes) snaps to a tidy multiple of
the coarsest tier it reaches (:func:`within_budget`); one that reaches none that
could answer is refused (422) naming the tier and step that would. And the rows
read are rolled up a chunk's span at a time (:func:`data_pieces`), so memory
follows the answer (points x keys), not the range.

Envelopes (:func:`envelopes`): a step coarser than the data hides its peaks (a year in two-day
steps averages a one-minute spike away), so a request may also ask, per step, for the smallest
and the largest of the finer points inside it, read from the finest tier that holds them within
:data:`ENVELOPE_BUDGET` rows.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np

from fleetscope.aggregator.window import Window
from fleetscope.model import values
from fleetscope.model.errors import InputError
from fleetscope.model.histogram import Histogram
from fleetscope.model.instrumentation import Instrumentation
from fleetscope.model.metrics import POINT
from fleetscope.model.series import DataPoint
from fleetscope.model.tiers import SPANS, Tier, tidy_step
from fleetscope.model.types import parse_duration
from fleetscope.store.block import Block, concat, from_points, merge, take, to_points
from fleetscope.store.rollup import rollup

MAX_POINTS = 10_000
# Rows of one tier a request may read (about 4.6 days of seconds, 9 months of minutes, 45 years
# of hours); a step that would read more snaps to a coarser tier, or the request is refused.
READ_BUDGET = 400_000
# Rows of finer tiers the envelopes of a request may read (:func:`envelopes`), besides the answer's
# own: a quarter of the budget keeps such a request within 1.25 times the work of the answer
# alone (a day of seconds, two months of minutes; a year of minutes is read from the hour tier).
ENVELOPE_BUDGET = READ_BUDGET // 4
MAX_TIME = 2**53  # epoch seconds: far beyond any real time, exact as a float, and a time_t
WINDOW_RETENTION = 1 << 62  # the real-time window's "retention": it holds what it holds
HEATMAP_COLUMNS = 1000  # columns of a heatmap when the request does not say
DEFAULT_SINCE = 3600  # seconds an export reaches back when the request does not say


class Range(NamedTuple):
    start: int
    duration: int
    n: int

    @property
    def end(self) -> int:
        return self.start + self.duration * self.n

    def times(self) -> list[int]:
        return [self.start + i * self.duration for i in range(self.n)]


def window_tiers(inst: Instrumentation) -> tuple[Tier, ...]:
    """The one "tier" of an instrumentation that is not persisted: its real-time window."""
    return (Tier(0, "second", inst.granularity, WINDOW_RETENTION, SPANS[0] * inst.granularity),)


def tiers_of(inst: Instrumentation, history) -> tuple[Tier, ...]:
    """The tiers a range of ``inst`` can be read from (``history``: a History or None)."""
    if history is None or not inst.persist:
        return window_tiers(inst)
    return history.tiers(inst)


def tier_for(tiers: Sequence[Tier], step: int) -> Tier:
    """The tier that answers points of ``step`` seconds: the coarsest whose resolution divides it."""
    return max((t for t in tiers if step % t.resolution == 0), key=lambda t: t.resolution)


def resolution(inst: Instrumentation, rng: Range, history) -> int:
    """The resolution (seconds) of the data that answers ``rng``."""
    return tier_for(tiers_of(inst, history), rng.duration).resolution


def _days(seconds: int) -> str:
    return f"{seconds // 86400} days" if seconds % 86400 == 0 else f"{seconds} s"


def _round_step(tiers: Sequence[Tier], step: int, resolution: int, tidy: bool) -> int:
    """``step`` rounded up to a multiple of ``resolution``; to a tidy one (:func:`tidy_step`)
    when ``tidy`` and ``resolution`` is that of a tier coarser than the raw one."""
    if tidy and resolution > tiers[0].resolution:
        return tidy_step(step, resolution)
    return -(-step // resolution) * resolution


def fit_step(tiers: Sequence[Tier], step: int, start: int, now: float, strict: bool,
             field: str, tidy: bool = False) -> tuple[Tier, int]:
    """The tier for points of ``step`` seconds from ``start``, and the step, rounded up when
    it may be (``strict`` False) to that tier's resolution (to a tidy multiple of it with
    ``tidy``, see :func:`_round_step`)."""
    if not strict:
        r = max(t.resolution for t in tiers if t.resolution <= step)
        step = _round_step(tiers, step, r, tidy)
    tier = tier_for(tiers, step)
    if start < now - tier.retention:
        covering = next((t for t in tiers if start >= now - t.retention), None)
        if covering is not None and covering.resolution > tier.resolution:
            if strict:
                raise InputError(field, f"{tier.name} history is kept for {_days(tier.retention)} and this "
                                 f"range starts earlier: use a step that is a multiple of "
                                 f"{covering.resolution} s (the {covering.name} tier)")
            step = _round_step(tiers, step, covering.resolution, tidy)
            tier = tier_for(tiers, step)
    return tier, step


def rows_read(tier: Tier, start: int, end: int, now: float) -> int:
    """Rows of ``tier`` a range ``[start, end)`` reads: those its retention still holds, up to now
    (one per resolution; a breakdown's row holds at most its kept keys and ``(other)``)."""
    first = max(start, int(now) - tier.retention)
    last = min(end, int(now) + tier.resolution)
    return max(0, (last - first) // tier.resolution)


def within_budget(tiers: Sequence[Tier], tier: Tier, step: int, start: int, end: int, now: float,
                  field: str) -> tuple[Tier, int]:
    """``(tier, step)`` as given when reading ``[start, end)`` from ``tier`` stays within
    :data:`READ_BUDGET` rows; else the step snapped to a tidy multiple of the coarsest tier it
    reaches (a ``duration`` of 105,120 s over a year: two days from the hour tier, not 525,600
    minutes summed 1,752 at a time). :class:`InputError` (422) when no tier the step reaches
    can answer within the budget, naming the tier and step that would.

    The real-time window (an instrumentation without history) holds what it holds: no budget.
    """
    if tier.retention >= WINDOW_RETENTION or rows_read(tier, start, end, now) <= READ_BUDGET:
        return tier, step
    reached = [t for t in tiers if tier.resolution < t.resolution <= step]
    if reached:
        coarser = reached[-1]
        snapped = _round_step(tiers, step, coarser.resolution, True)
        tier = tier_for(tiers, snapped)
        if rows_read(tier, start, end, now) <= READ_BUDGET:
            return tier, snapped
    fits = next((t for t in tiers if t.resolution > tier.resolution
                 and rows_read(t, start, end, now) <= READ_BUDGET), None)
    rows = rows_read(tier, start, end, now)
    hint = (f"a step that is a multiple of {fits.resolution} s (the {fits.name} tier), e.g. "
            f"{tidy_step(max(step, fits.resolution), fits.resolution)}" if fits
            else "a shorter range")
    raise InputError(field, f"steps of {step} s read {rows} points of the {tier.name} tier, over the "
                     f"{READ_BUDGET} one request may read: use {hint}")


def _nonneg_int(value: int | None, name: str) -> int | None:
    if value is not None and value < 0:
        raise InputError(name, "must not be negative")
    return value


def resolve_range(
    inst: Instrumentation,
    latest: int | None,
    start_time: int | None = None,
    end_time: int | None = None,
    duration: int | None = None,
    ndatapoints: int | None = None,
    default_points: int = 1,
    tiers: Sequence[Tier] | None = None,
    now: float | None = None,
) -> Range:
    """The data points a request asks for.

    ``duration`` (default: the granularity) is the span of each point and must
    be a multiple of the granularity. With ``start_time`` and ``end_time`` the
    points cover that range (at most ``ndatapoints`` of them when given); with
    one of them, ``ndatapoints`` points start or end there; with neither, they
    end with the latest final slot. ``tiers`` (default: the real-time window
    only) and ``now`` decide the resolution, see the module docstring.
    """
    g = inst.granularity
    tiers = tiers or window_tiers(inst)
    now = time.time() if now is None else now
    _nonneg_int(start_time, "start_time")
    _nonneg_int(end_time, "end_time")
    strict = duration is not None
    step = g if duration is None else duration
    if step <= 0 or step % g:
        raise InputError("duration", f"must be a positive multiple of the granularity ({g} s)")
    if ndatapoints is not None and not 1 <= ndatapoints <= MAX_POINTS:
        raise InputError("ndatapoints", f"must be between 1 and {MAX_POINTS}")
    if start_time is not None and end_time is not None:
        if end_time <= start_time:
            raise InputError("end_time", "must be after start_time")
        if ndatapoints is not None:
            needed = math.ceil((end_time - start_time + start_time % g) / ndatapoints / g) * g
            strict = strict and needed <= step
            step = max(step, needed)
        for _ in range(8):
            tier, step = fit_step(tiers, step, start_time, now, strict, "duration", tidy=True)
            tier, step = within_budget(tiers, tier, step, start_time, end_time, now, "duration")
            start = start_time - start_time % tier.resolution
            n = math.ceil((end_time - start) / step)
            if ndatapoints is None or n <= ndatapoints or strict:
                break
            step += tier.resolution  # aligning the start added a point: widen the step
        if n > MAX_POINTS:
            raise InputError("end_time", f"the range holds more than {MAX_POINTS} points of {step} s "
                             "(ask for fewer with ndatapoints, or a longer duration)")
        return within_time(Range(start, step, n))
    n = ndatapoints or default_points
    if start_time is not None:
        tier, step = fit_step(tiers, step, start_time, now, strict, "duration", tidy=True)
        tier, step = within_budget(tiers, tier, step, start_time, start_time + n * step, now, "duration")
        return within_time(Range(start_time - start_time % tier.resolution, step, n))
    if end_time is None:
        end_time = latest + g if latest is not None else int(now) // g * g
    for _ in range(4):  # a coarser tier may be needed for the earlier start a wider step gives
        tier, wider = fit_step(tiers, step, end_time - n * step, now, strict, "duration", tidy=True)
        tier, wider = within_budget(tiers, tier, wider, end_time - n * wider, end_time, now, "duration")
        if wider == step:
            break
        step = wider
    end = end_time - end_time % tier.resolution
    return within_time(Range(end - n * step, step, n))


def within_time(rng: Range, field: str = "duration") -> Range:
    """``rng`` when each of its points starts between epoch 0 and :data:`MAX_TIME`; else
    InputError naming ``field`` (many long points reach past what any clock or picture can show)."""
    if rng.start < 0 or rng.end - rng.duration > MAX_TIME:
        raise InputError(field, f"the points asked for reach outside epoch seconds 0 to {MAX_TIME} "
                         "(ask for fewer or shorter points)")
    return rng


def heatmap_range(
    inst: Instrumentation,
    latest: int | None,
    start_time: int | None,
    end_time: int | None,
    span: int | None,
    step: int | None,
    ncolumns: int | None,
    tiers: Sequence[Tier] | None = None,
    now: float | None = None,
) -> Range:
    """The columns of a heatmap: over ``[start_time, end_time)``, or ``span`` seconds (default
    60 slots) ending with the latest slot (or at ``end_time``, or from ``start_time``); one
    column per ``step`` seconds, else at most ``ncolumns`` (default :data:`HEATMAP_COLUMNS`)."""
    g = inst.granularity
    ncolumns = HEATMAP_COLUMNS if ncolumns is None else ncolumns
    if start_time is not None and end_time is not None:
        return resolve_range(inst, latest, start_time, end_time, step, ncolumns, tiers=tiers, now=now)
    tiers = tiers or window_tiers(inst)
    now = time.time() if now is None else now
    span = 60 * g if span is None else span
    if span <= 0:
        raise InputError("duration", "must be positive")
    if not 1 <= ncolumns <= MAX_POINTS:
        raise InputError("ndatapoints", f"must be between 1 and {MAX_POINTS}")
    if step is not None and (step <= 0 or step % g):
        raise InputError("step", f"must be a positive multiple of the granularity ({g} s)")
    if start_time is None and end_time is None:
        end_time = latest + g if latest is not None else int(now) // g * g
    first = start_time if start_time is not None else max(0, end_time - span)
    wanted = step if step is not None else math.ceil(span / ncolumns / g) * g
    tier, step = fit_step(tiers, wanted, first, now, step is not None, "step", tidy=True)
    tier, step = within_budget(tiers, tier, step, first, first + span, now, "step")
    n = math.ceil(span / step)
    if n > MAX_POINTS:
        raise InputError("step", f"{span} s in steps of {step} s is more than {MAX_POINTS} columns")
    if start_time is not None:
        return within_time(Range(start_time - start_time % tier.resolution, step, n))
    # Whole columns ending with the last complete step of the tier.
    end = end_time - end_time % tier.resolution
    return within_time(Range(end - n * step, step, n))


def data_points(inst: Instrumentation, window: Window | None, rng: Range, topk: int,
                history=None, now: float | None = None) -> list[DataPoint]:
    """One data point per step of ``rng``; gaps have ``value`` None. Built a piece at a time
    (:func:`data_pieces`): no matrix of every key over the whole range."""
    found = {p.start_time: p for block in data_pieces(inst, window, rng, topk, history, now)
             for p in to_points(block, inst.shape, inst.kind, rng.duration)}
    return [found.get(t) or DataPoint(t, rng.duration, None, 0, 0) for t in rng.times()]


def block_points(inst: Instrumentation, block: Block, rng: Range) -> list[DataPoint]:
    """The points of ``block`` on every step of ``rng``, gaps (value None) where it has none."""
    found = {p.start_time: p for p in to_points(block, inst.shape, inst.kind, rng.duration)}
    return [found.get(t) or DataPoint(t, rng.duration, None, 0, 0) for t in rng.times()]


def data_block(inst: Instrumentation, window: Window | None, rng: Range, topk: int,
               history=None, now: float | None = None) -> Block:
    """The steps of ``rng`` that hold data, as a block (sums with their counts: see
    :mod:`fleetscope.store.block`), for readers that work on columns."""
    return merge(list(data_pieces(inst, window, rng, topk, history, now)), inst.shape)


def data_pieces(inst: Instrumentation, window: Window | None, rng: Range, topk: int,
                history=None, now: float | None = None) -> Iterator[Block]:
    """The steps of ``rng`` that hold data, as blocks of whole steps, oldest first.

    History is read one span of its tier at a time (a day of minutes, 30 days of hours: one
    chunk's worth), rolled up into steps without folding keys, the step a span ends inside
    carried into the next span, and each step folded to its top keys once complete. So the
    memory a range takes is one span's rows by their keys plus the answer, whatever the range:
    a year of minutes by 973 keys in 300 steps once took a 525,600 x 973 matrix (13.5 GB)."""
    tiers = tiers_of(inst, history)
    tier = tier_for(tiers, rng.duration)
    step, shape, kept = rng.duration, inst.shape, inst.keys_kept(topk)
    finals = window.points(rng.start, rng.end) if window else []
    if history is None or not inst.persist:  # the window alone
        block = from_points(finals, shape)
        yield block if step == tier.resolution else rollup(block, shape, rng.start, step, kept)
        return
    window_from = min(window.slots) if window and window.slots else None
    pending = None  # the step the last span ended inside: sums so far, keys not folded
    # Only where the tier can hold data: a range of 2**53 s must not walk 3 billion empty spans.
    now = time.time() if now is None else now
    e = max(rng.start, int(now) - tier.retention)
    last = min(rng.end, int(now) + tier.span)
    while e < last:
        s, e = e, min(last, (e // tier.span + 1) * tier.span)
        block = history.read(inst, tier, s, e, now, finals, window_from)
        if step == tier.resolution:
            if block.n:
                yield block
            continue
        part = rollup(block, shape, rng.start, step, None)
        if pending is not None:
            part = rollup(concat([pending, part], shape), shape, rng.start, step, None)
        done = int(np.searchsorted(part.times, e - step, side="right"))  # steps ending by e
        if done:
            yield rollup(take(part, slice(0, done)), shape, rng.start, step, kept)  # fold
        pending = take(part, slice(done, None)) if done < part.n else None
    if pending is not None:
        yield rollup(pending, shape, rng.start, step, kept)


class Envelope(NamedTuple):
    """The smallest and the largest value of the finer points inside one step (as values of
    points of ``resolution`` seconds: sums for an interval metric, levels for a point one)."""

    least: float
    most: float
    resolution: int

    def to_json(self) -> dict:
        return {"min": self.least, "max": self.most, "resolution": self.resolution}


def envelope_plan(tiers: Sequence[Tier], rng: Range, now: float) -> list[tuple[Tier, int, int]]:
    """Where each step's envelope is read from: ``[(tier, start, end)]``, newest first, the
    finest tier finer than the step that holds a part of the range (by its retention), as long
    as the rows read stay within :data:`ENVELOPE_BUDGET`; older steps from the next tier.
    Parts split on step boundaries, so that each step's envelope comes from one tier."""
    plan: list[tuple[Tier, int, int]] = []
    step, end, budget = rng.duration, rng.end, ENVELOPE_BUDGET
    for tier in tiers:
        if tier.resolution >= step or step % tier.resolution or end <= rng.start:
            continue
        oldest = int(now) - tier.retention
        start = rng.start if oldest <= rng.start else rng.start + -(-(oldest - rng.start) // step) * step
        if start >= end:
            continue
        rows = 0 if tier.retention >= WINDOW_RETENTION else rows_read(tier, start, end, now)
        if rows > budget:
            continue  # a coarser tier reads fewer rows for the same steps
        plan.append((tier, start, end))
        budget -= rows
        end = start
    return plan


def _row_levels(block: Block, kind: str) -> np.ndarray:
    """One number per row of a block of numbers: a breakdown's total (NaN: no key), a point
    metric's level (sum / count)."""
    vals = block.values
    present = (~np.isnan(vals)).any(axis=1)
    totals = np.where(present, np.nansum(vals, axis=1), np.nan) if vals.shape[1] else \
        np.full(block.n, np.nan)
    return totals / block.counts if kind == POINT else totals


def envelopes(inst: Instrumentation, window: Window | None, rng: Range, history=None,
              now: float | None = None) -> dict[int, Envelope]:
    """Per step of ``rng`` (by its start) the smallest and the largest value of the finer
    points it holds (a breakdown: of their totals), read per :func:`envelope_plan`: what a
    step's average hides, so that a one-minute spike in a year drawn in two-day steps is still
    seen. Read a span of its tier at a time, as :func:`data_pieces` reads, keeping only a
    minimum and a maximum per step. Steps with no finer point (or no tier finer than the
    step) have none. Numbers only (a distribution is drawn as a heatmap)."""
    assert inst.shape in (values.SCALAR, values.DISCRETE), inst.shape
    now = time.time() if now is None else now
    step = rng.duration
    least = np.full(rng.n, np.inf)
    most = np.full(rng.n, -np.inf)
    res = np.zeros(rng.n, np.int64)
    finals = window.points(rng.start, rng.end) if window else []
    persisted = history is not None and inst.persist
    window_from = min(window.slots) if window and window.slots else None

    def add(block: Block, resolution: int) -> None:
        if not block.n:
            return
        level = _row_levels(block, inst.kind)
        ok = ~np.isnan(level)
        idx = (block.times[ok] - rng.start) // step
        inside = (idx >= 0) & (idx < rng.n)
        idx, level = idx[inside], level[ok][inside]
        np.minimum.at(least, idx, level)
        np.maximum.at(most, idx, level)
        res[idx] = resolution

    for tier, start, end in envelope_plan(tiers_of(inst, history), rng, now):
        if not persisted:
            add(from_points([p for p in finals if start <= p.start_time < end], inst.shape), tier.resolution)
            continue
        e = max(start, int(now) - tier.retention)
        last = min(end, int(now) + tier.span)
        while e < last:
            s, e = e, min(last, (e // tier.span + 1) * tier.span)
            add(history.read(inst, tier, s, e, now, finals, window_from), tier.resolution)
    return {rng.start + i * step: Envelope(float(least[i]), float(most[i]), int(res[i]))
            for i in np.flatnonzero(res).tolist()}


def require_distribution(inst: Instrumentation) -> None:
    if inst.shape not in (values.HISTOGRAM, values.DISCRETE_HISTOGRAM):
        raise InputError("decomposition", f"instrumentation {inst.id} has no numeric decomposition "
                         "(add a numeric field to its decomposition for distributions)", 409)


def histogram_of(value: values.Value | None, shape: str) -> Histogram | None:
    """One histogram of a distribution value (a breakdown's keys merged), or None for a gap."""
    if value is None:
        return None
    if shape == values.HISTOGRAM:
        return value  # type: ignore[return-value]
    merged = Histogram()
    for h in value.values():  # type: ignore[union-attr]
        merged.merge(h)
    return merged


def parse_quantiles(text: str) -> list[float]:
    try:
        qs = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InputError("q", "must be comma-separated numbers between 0 and 1, e.g. 0.5,0.99") from None
    if not qs or any(not 0.0 <= q <= 1.0 or math.isnan(q) for q in qs):
        raise InputError("q", "must be comma-separated numbers between 0 and 1, e.g. 0.5,0.99")
    return qs


def finite_or_none(x: float) -> float | None:
    return None if x is None or math.isnan(x) or math.isinf(x) else x


def export_plan(inst: Instrumentation, tiers, start_time: int | None, end_time: int | None,
                since: str | int | None, step: int | None, now: float) -> tuple[int, int, int]:
    """``(start, end, step)`` of an export: from ``start_time`` (or ``since`` seconds ago,
    default an hour) to ``end_time`` (default now), in points of ``step`` seconds (default the
    finest tier that holds the start)."""
    if start_time is not None and since is not None:
        raise InputError("since", "give since or start_time, not both")
    for name, v in (("start_time", start_time), ("end_time", end_time)):
        if v is not None and v < 0:
            raise InputError(name, "must not be negative")
    end = int(now) if end_time is None else end_time
    if start_time is None:
        ago = DEFAULT_SINCE if since is None else parse_duration(since, "since")
        if ago <= 0:
            raise InputError("since", "must be a positive duration such as '7d'")
        start_time = end - ago
        if start_time < 0:
            raise InputError("since", "reaches back before 1970 (epoch second 0)")
    if end <= start_time:
        raise InputError("end_time", "must be after the start of the range")
    g = inst.granularity
    if step is not None and (step <= 0 or step % g):
        raise InputError("step", f"must be a positive multiple of the granularity ({g} s)")
    tier, step = fit_step(tiers, step or g, start_time, now, step is not None, "step")
    start = start_time - start_time % tier.resolution
    return start, end, step


def window_points(inst: Instrumentation, finals: list[DataPoint], start: int, step: int,
                   topk: int) -> list[DataPoint]:
    """The points of ``step`` seconds from ``start`` that the real-time window's ``finals`` make
    (for an instrumentation without history); only the slots that hold data."""
    block = from_points(finals, inst.shape)
    if step != inst.granularity:
        block = rollup(block, inst.shape, start, step, inst.keys_kept(topk))
    return to_points(block, inst.shape, inst.kind, step)
