"""Line charts as PNG, drawn with Pillow: one plot box, its scales, and lines broken at gaps.

Two pictures use it: the API's rendering of a line panel (``GET .../value?format=png``,
:func:`render_lines`: the series the panel draws, stacked or not, with time and value axes in
the metric's unit, a legend and the caller's annotations; the envelope band and the dashed line of
an earlier range when the panel draws them; times in the viewer's zone) and the picture of an alert e-mail
(:mod:`fleetscope.api.alert_image`). Colours are the dashboard's light theme
(``web/js/lib/color.js`` LIGHT, ``web/css/app.css``), so that a saved PNG looks like the panel.
Pillow draws without anti-aliasing: a line is exactly its series' colour, which the tests read.
About 5 ms for 300 points of 9 series at 800 x 300.
"""

from __future__ import annotations

import functools
import io
import math
import time
import zoneinfo
from collections.abc import Sequence
from datetime import UTC, datetime, tzinfo
from typing import NamedTuple

from PIL import Image, ImageDraw, ImageFont

from fleetscope.api.heatmap.matrix import tidy_max
from fleetscope.api.heatmap.png import Mark, dashed_polyline, draw_marks
from fleetscope.api.queries import Envelope
from fleetscope.model import values
from fleetscope.model.series import DataPoint
from fleetscope.model.types import Type, format_quantity

BACKGROUND, AXIS, GRID, TEXT = (255, 255, 255), (120, 120, 120), (232, 235, 240), (60, 64, 72)
PALETTE = ((47, 111, 223), (224, 138, 0), (27, 158, 119), (209, 73, 91), (123, 92, 201), (15, 163, 177),
           (192, 82, 153), (106, 143, 31), (181, 101, 29), (95, 107, 122))  # color.js LIGHT
REST_COLOUR = (170, 179, 192)  # app.css --rest
MUTED = (102, 112, 133)  # app.css --muted: the earlier range's dashed line, a breakdown's band
BAND_ALPHA = 0.22  # the envelope band, as charts/lines.js drawBand
OVERLAY_DASH = (6, 4)  # pixels on, off: the earlier range's line, as charts/lines.js OVERLAY_DASH
LINE_WIDTH = 2
STACK_ALPHA, ALONE_ALPHA = 0.32, 0.16  # area fills, as charts/lines.js draws them
TICK_GAP = 80  # pixels at least between time ticks, as the dashboard's timeTicks
VALUE_TICKS = 4  # about this many value ticks up the axis
PAD = 6  # pixels between the labels and the plot, and around the picture
SWATCH = 9  # pixels: a legend entry's colour square
MIN_PLOT = 20  # pixels: the plot keeps at least this much; legend rows beyond it are left out
MIN_PIXELS = 64  # a picture's least width and height: room for the labels and a plot
MAX_KEYS_DRAWN = 50  # keys a picture draws in their own colour (the dashboard's largest top N)
TIME_STEPS = (1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200,
              86400, 172800, 604800, 1209600, 2419200, 7257600, 31536000)
YEAR = TIME_STEPS[-1]
_TIDY = (1, 2, 2.5, 5, 10)

FONT = ImageFont.load_default()


class Frame(NamedTuple):
    """The plot box ``(x0, y0, x1, y1)`` in pixels and what it spans: ``[start, end)`` seconds
    across, ``[bottom, top]`` up."""

    box: tuple[int, int, int, int]
    start: float
    end: float
    bottom: float
    top: float

    def x(self, t: float) -> float:
        x0, _, x1, _ = self.box
        return x0 + (t - self.start) / (self.end - self.start) * (x1 - x0)

    def y(self, v: float) -> float:
        _, y0, _, y1 = self.box
        return y1 - (v - self.bottom) / (self.top - self.bottom) * (y1 - y0)


class Band(NamedTuple):
    """The envelope band: per slot the least and the largest value drawn (None: none), and its colour."""

    colour: tuple[int, int, int]
    lo: list[float | None]
    hi: list[float | None]


class Series(NamedTuple):
    """One line: its legend label, colour and values (None: a gap, never drawn as zero)."""

    label: str
    colour: tuple[int, int, int]
    values: list[float | None]


def stroke(draw: ImageDraw.ImageDraw, frame: Frame, points: Sequence[tuple[float, float | None]],
           colour: tuple[int, int, int], width: int = LINE_WIDTH) -> None:
    """``(t, v)`` as a line, broken where ``v`` is None or not finite (a gap is a gap)."""
    run: list[tuple[float, float]] = []
    for t, v in [*points, (math.nan, None)]:
        if v is None or not math.isfinite(v):
            if len(run) > 1:
                draw.line(run, fill=colour, width=width)
            elif run:
                px, py = run[0]
                draw.ellipse((px - 1, py - 1, px + 1, py + 1), fill=colour)
            run = []
            continue
        run.append((frame.x(t), frame.y(v)))


def dashed_stroke(draw: ImageDraw.ImageDraw, frame: Frame, points: Sequence[tuple[float, float | None]],
                  colour: tuple[int, int, int], dash: tuple[int, int] = OVERLAY_DASH,
                  width: int = LINE_WIDTH) -> None:
    """``(t, v)`` as a dashed line (:func:`fleetscope.api.heatmap.png.dashed_polyline`), broken
    where ``v`` is None or not finite."""
    dashed_polyline(draw, [None if v is None or not math.isfinite(v) else (frame.x(t), frame.y(v))
                           for t, v in points], colour, dash, width)


def dashed_level(draw: ImageDraw.ImageDraw, frame: Frame, v: float, colour: tuple[int, int, int],
                 dash: int) -> None:
    """A dashed horizontal line across the plot at value ``v``."""
    x0, _, x1, _ = frame.box
    at = frame.y(v)
    for left in range(x0, x1, 2 * dash):
        draw.line((left, at, min(left + dash, x1), at), fill=colour, width=1)


def save_png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=3)
    return out.getvalue()


def line_series(points: Sequence[DataPoint], shape: str, *, rate: bool, selected: Sequence[str] = (),
                top: int = 8, other: bool = True) -> list[Series]:
    """The series a line panel draws of ``points``, bottom of a stack first.

    A number: one line. A breakdown: the ``selected`` keys (else the ``top`` keys by their total
    over the range, ``(other)`` not among them), each in its colour, then (unless not ``other``)
    every other key summed as ``(other)`` when there is any. ``rate``: values per second (a point's
    sum over its duration), as the dashboard draws interval metrics.
    """
    def per(p: DataPoint, v: float) -> float:
        return v / p.duration if rate else v

    if shape == values.SCALAR:
        return [Series("value", PALETTE[0], [None if p.value is None else per(p, p.value) for p in points])]
    totals: dict[str, float] = {}
    for p in points:
        for k, v in (p.value or {}).items():
            totals[k] = totals.get(k, 0.0) + v
    if selected:
        keys = list(dict.fromkeys(selected))
    else:
        ranked = sorted((k for k in totals if k != values.OTHER), key=lambda k: (-totals[k], k))
        keys = ranked[:top]
    chosen = set(keys)
    out = [Series(k, PALETTE[i % len(PALETTE)], [None if p.value is None else per(p, p.value.get(k, 0.0))
                                                 for p in points]) for i, k in enumerate(keys)]
    if other and any(k not in chosen for k in totals):
        out.append(Series(values.OTHER, REST_COLOUR, [
            None if p.value is None else per(p, sum(v for k, v in p.value.items() if k not in chosen))
            for p in points]))
    return out


def totals(points: Sequence[DataPoint], *, rate: bool) -> list[float | None]:
    """Each point's value as one number (a breakdown: the sum of its keys), per second when
    ``rate``; None for a gap."""
    out: list[float | None] = []
    for p in points:
        v = p.value
        if v is None:
            out.append(None)
            continue
        whole = sum(v.values()) if isinstance(v, dict) else v
        out.append(whole / p.duration if rate else whole)
    return out


def envelope_band(drawn: Sequence[float | None], envelopes: Sequence[Envelope | None], *, rate: bool,
                  colour: tuple[int, int, int]) -> Band:
    """The band of ``drawn`` (per slot, as :func:`totals`) and the slots' envelopes
    (or None), as the line panel's band(): each slot from
    the least of its value and its finer points to the largest (per second of the finer points'
    own resolution when ``rate``)."""
    lo: list[float | None] = []
    hi: list[float | None] = []
    for v, e in zip(drawn, envelopes, strict=True):
        if v is None or e is None:
            lo.append(v)
            hi.append(v)
            continue
        per = e.resolution if rate else 1
        lo.append(min(v, e.least / per))
        hi.append(max(v, e.most / per))
    return Band(colour, lo, hi)


def compare_label(now: Sequence[float | None], earlier: Sequence[float | None], unit: Type,
                  rate: bool) -> str:
    """``avg 40/s vs 25/s (+60.0 %)``: the averages of both ranges and the change, as the line
    panel's toolbar says them (gaps left out; no change when the earlier average is 0 or none)."""
    def mean(xs: Sequence[float | None]) -> float | None:
        ok = [x for x in xs if x is not None and math.isfinite(x)]
        return sum(ok) / len(ok) if ok else None

    a, b = mean(now), mean(earlier)
    return f"avg {value_label(a, unit, rate)} vs {value_label(b, unit, rate)}{change_label(a, b)}"


def change_label(now: float | None, earlier: float | None) -> str:
    """`` (+56.2 %)``: the change from ``earlier`` to ``now``, as the panels' toolbars say it;
    nothing when either is missing or ``earlier`` is 0."""
    if now is None or not earlier:
        return ""
    return f" ({'+' if now >= earlier else ''}{(now - earlier) / earlier * 100:.1f} %)"


def render_lines(times: Sequence[int], step: int, series: Sequence[Series], *, width: int, height: int,
                 unit: Type, rate: bool, stacked: bool, title: str, ymax: float | None = None,
                 marks: Sequence[Mark] = (), band: Band | None = None, earlier: Series | None = None,
                 zone: tzinfo = UTC) -> bytes:
    """A PNG of ``series`` (one value per slot of ``times``, each ``step`` seconds), drawn at the
    middle of its slot as the dashboard does, over ``[times[0], times[-1] + step)``.

    The value axis runs from 0 to ``ymax`` (default the smallest tidy number, 1, 2, 2.5 or 5 times
    a power of ten, at or above the largest value drawn). ``stacked``: each series on top of the
    ones before it, its area filled. A legend of the series below the time axis; ``marks`` on
    the plot as the heatmap PNG draws them (:func:`fleetscope.api.heatmap.png.draw_marks`), under
    the lines. ``band``: the envelope band, per pixel column the least ``lo`` and the largest
    ``hi`` of the slots the column overlaps (as charts/lines.js drawBand), blended over the areas.
    ``earlier``: the same range earlier, dashed over the rest (slot ``i`` of it drawn at slot ``i``).
    Time ticks in ``zone``.
    """
    start = times[0] if times else 0
    end = start + max(1, len(times)) * step
    drawn = _stack(series) if stacked else [s.values for s in series]
    also = [*([band.hi] if band else []), *([earlier.values] if earlier else [])]
    largest = max((v for vs in [*drawn, *also] for v in vs if v is not None and math.isfinite(v)),
                  default=0.0)
    top = ymax if ymax is not None else tidy_max(largest)
    ticks = value_ticks(top)
    labels = [value_label(v, unit, rate) for v in ticks]
    line_h = FONT.getbbox("0Ag")[3] + 2
    image = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(image)
    left = PAD + max(draw.textlength(s, font=FONT) for s in labels) + PAD
    legend = _legend_rows(draw, series, width - 2 * PAD)
    fits = max(0, (height - 2 * PAD - 2 * line_h - MIN_PLOT) // line_h)
    legend_h = min(len(legend), fits) * line_h
    box = (int(min(left, width // 2)), PAD + line_h, width - PAD,
           max(PAD + line_h + 1, height - PAD - line_h - legend_h))
    frame = Frame(box, start, end, 0.0, top)
    x0, y0, x1, y1 = box

    draw.text((x0, PAD // 2), title, fill=TEXT, font=FONT)
    for v, label in zip(ticks, labels, strict=True):
        at = frame.y(v)
        draw.line((x0, at, x1, at), fill=GRID)
        draw.text((x0 - PAD - draw.textlength(label, font=FONT), at - line_h // 2), label, fill=TEXT,
                  font=FONT)
    for t, label in time_ticks(start, end, x1 - x0, zone):
        at = frame.x(t)
        draw.line((at, y1, at, y1 + 3), fill=AXIS)
        draw.text((at - draw.textlength(label, font=FONT) / 2, y1 + 3), label, fill=TEXT, font=FONT)

    mids = [t + step / 2 for t in times]
    plot = image.crop(box)  # lines and fills stay inside the plot
    inner = frame._replace(box=(0, 0, x1 - x0, y1 - y0))
    below: list[float | None] = [0.0] * len(times)
    for s, upper in zip(series, drawn, strict=True):
        if stacked or len(series) == 1:
            _fill(plot, inner, mids, below, upper, s.colour, STACK_ALPHA if stacked else ALONE_ALPHA)
        if stacked:
            below = upper
    if band:
        _band(plot, inner, times, step, band)
    # Marks over the areas and under the lines: a window's shade would change a line's colour.
    draw_marks(plot, marks)
    pdraw = ImageDraw.Draw(plot)
    for s, upper in zip(series, drawn, strict=True):
        stroke(pdraw, inner, list(zip(mids, upper, strict=True)), s.colour)
    if earlier:
        dashed_stroke(pdraw, inner, list(zip(mids, earlier.values, strict=False)), earlier.colour)
    image.paste(plot, box[:2])
    draw.rectangle(box, outline=AXIS)

    y = y1 + line_h + 2
    for row in legend[:legend_h // line_h]:
        for x, s in row:
            draw.rectangle((x, y + 1, x + SWATCH, y + 1 + SWATCH), fill=s.colour)
            draw.text((x + SWATCH + 4, y), s.label, fill=TEXT, font=FONT)
        y += line_h
    return save_png(image)


def value_ticks(top: float, count: int = VALUE_TICKS) -> list[float]:
    """Tidy values from 0 to ``top`` (1, 2, 2.5 or 5 times a power of ten apart), about ``count``."""
    if top <= 0 or not math.isfinite(top):
        return [0.0]
    raw = top / count
    power = 10.0 ** math.floor(math.log10(raw))
    gap = next(m * power for m in _TIDY if m * power >= raw * (1 - 1e-9))
    return [float(f"{i * gap:.12g}") for i in range(int(top / gap * (1 + 1e-9)) + 1)]


def time_ticks(start: float, end: float, pixels: float, zone: tzinfo = UTC) -> list[tuple[float, str]]:
    """Ticks on whole multiples of a step of ``zone``'s wall clock, at least :data:`TICK_GAP`
    pixels apart, labelled in ``zone`` with what the step needs: seconds, minutes, the day, the
    year when the range crosses one. The wall clock's offset is that at the range's start (a
    change of summer time inside the range moves later ticks off the whole hour, not their labels)."""
    span = end - start
    want = max(1, int(pixels // TICK_GAP))
    # Past the largest step, whole years: never more ticks than fit, whatever the span.
    gap = next((s for s in TIME_STEPS if span / s <= want), None) or math.ceil(span / want / YEAR) * YEAR
    shift = utc_offset(zone, start)
    years = _wall(zone, start).tm_year != _wall(zone, max(start, end - 1)).tm_year
    if gap < 60:
        pattern = "%H:%M:%S"
    elif gap < 86400:
        pattern = "%m-%d %H:%M" if span > 86400 else "%H:%M"
    else:
        pattern = "%Y-%m-%d" if years or gap >= YEAR else "%m-%d"
    first = math.ceil((start + shift) / gap) * gap - shift
    return [(t, time.strftime(pattern, _wall(zone, t))) for t in range(int(first), int(end) + 1, gap)
            if t < end]


def range_label(start: float, end: float, zone: tzinfo = UTC) -> str:
    """``2026-12-08 03:00 to 04:00 UTC``: the year always, the day again only when it changes;
    in ``zone``, named by its key (``Europe/Berlin``)."""
    a, b = _wall(zone, start), _wall(zone, end)
    last = "%H:%M" if a[:3] == b[:3] else "%Y-%m-%d %H:%M"
    return f"{time.strftime('%Y-%m-%d %H:%M', a)} to {time.strftime(last, b)} {zone}"


@functools.cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones()) | {"UTC"}


def zone_named(name: str) -> tzinfo:
    """The IANA time zone ``name`` (``Europe/Berlin``); ValueError for one this machine's tz
    database does not hold (a name is looked up among the database's keys, never opened as a path)."""
    if name not in _zones():
        raise ValueError(f"unknown time zone {name[:64]!r} (an IANA name such as Europe/Berlin)")
    return UTC if name == "UTC" else zoneinfo.ZoneInfo(name)


# datetime holds years 1 to 9999; a range may reach 2**53 s (year 285 million), where ``time.gmtime``
# still counts: beyond datetime's years a zone's offset is that of its last days (two days short of
# 9999-12-31, so that the zone's wall clock there is a datetime too).
_DATETIME_MAX = 253402300799 - 2 * 86400


def utc_offset(zone: tzinfo, t: float) -> int:
    """Seconds ``zone``'s wall clock is ahead of UTC at epoch second ``t``."""
    at = datetime.fromtimestamp(min(max(t, 0), _DATETIME_MAX), UTC)
    return int(zone.utcoffset(at.astimezone(zone)).total_seconds())


def _wall(zone: tzinfo, t: float) -> time.struct_time:
    """``zone``'s wall clock at ``t`` as a struct_time (for strftime)."""
    return time.gmtime(t + utc_offset(zone, t))


def value_label(v: float | None, unit: Type, rate: bool) -> str:
    """``v`` in ``unit`` (per second when ``rate``), ``-`` for none."""
    if v is None:
        return "-"
    return "0" if v == 0 else format_quantity(v, unit) + ("/s" if rate else "")


def _stack(series: Sequence[Series]) -> list[list[float | None]]:
    """Each series' top when stacked on the ones before it (a gap stays a gap)."""
    out: list[list[float | None]] = []
    acc = [0.0] * (len(series[0].values) if series else 0)
    for s in series:
        tops: list[float | None] = []
        for i, v in enumerate(s.values):
            if v is None or not math.isfinite(v):
                tops.append(None)
            else:
                acc[i] += v
                tops.append(acc[i])
        out.append(tops)
    return out


def _band(image: Image.Image, frame: Frame, times: Sequence[int], step: int, band: Band) -> None:
    """The envelope band per pixel column: from the least ``lo`` to the largest ``hi`` of the slots
    the column overlaps, ``band.colour`` at :data:`BAND_ALPHA` over what is drawn."""
    x0, _, x1, _ = frame.box
    ncols = max(1, x1 - x0)
    lo: list[float | None] = [None] * ncols
    hi: list[float | None] = [None] * ncols
    per_second = ncols / (frame.end - frame.start)
    for t, low, high in zip(times, band.lo, band.hi, strict=True):
        if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
            continue
        c0 = max(0, math.floor((t - frame.start) * per_second))
        c1 = min(ncols, max(c0 + 1, math.ceil((t + step - frame.start) * per_second)))
        for c in range(c0, c1):
            lo[c] = low if lo[c] is None else min(lo[c], low)
            hi[c] = high if hi[c] is None else max(hi[c], high)
    mask = Image.new("L", image.size, 0)
    draw = ImageDraw.Draw(mask)
    for c in range(ncols):
        if hi[c] is not None:
            draw.rectangle((x0 + c, round(frame.y(hi[c])), x0 + c, round(frame.y(lo[c]))),
                           fill=round(255 * BAND_ALPHA))
    image.paste(Image.composite(Image.new("RGB", image.size, band.colour), image, mask))


def _fill(image: Image.Image, frame: Frame, mids: Sequence[float], below: Sequence[float | None],
          upper: Sequence[float | None], colour: tuple[int, int, int], alpha: float) -> None:
    """The area between ``below`` and ``upper``, in ``colour`` at ``alpha`` over white, run by run."""
    tint = tuple(round(c * alpha + b * (1 - alpha)) for c, b in zip(colour, BACKGROUND, strict=True))
    draw = ImageDraw.Draw(image)
    run: list[int] = []
    for i in [*range(len(mids)), -1]:
        if i >= 0 and upper[i] is not None and math.isfinite(upper[i]):
            run.append(i)
            continue
        if len(run) > 1:
            top = [(frame.x(mids[j]), frame.y(upper[j])) for j in run]
            base = [(frame.x(mids[j]), frame.y(below[j] or 0.0)) for j in reversed(run)]
            draw.polygon(top + base, fill=tint)
        run = []


def _legend_rows(draw: ImageDraw.ImageDraw, series: Sequence[Series],
                 width: float) -> list[list[tuple[float, Series]]]:
    """The legend's entries laid out in rows of ``width`` pixels: ``[(x, series)]`` a row."""
    rows: list[list[tuple[float, Series]]] = [[]]
    x = float(PAD)
    for s in series:
        size = SWATCH + 4 + draw.textlength(s.label, font=FONT) + 2 * PAD
        if rows[-1] and x + size > width:
            rows.append([])
            x = float(PAD)
        rows[-1].append((x, s))
        x += size
    return rows if rows[0] else []
