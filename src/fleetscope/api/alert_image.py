"""The picture an alert e-mail carries: what the rule compares, around the moment it changed.

A line of exactly what the rule's condition reads from each slot (the value, the alerted key,
the percentile or the average: :func:`fleetscope.model.alerts.observe_point`), the threshold
as a dashed line, and a red (firing) or green (resolved) mark at the moment of the change.
Drawn with Pillow, about 2 ms for a 10-minute window.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

from PIL import Image, ImageDraw

from fleetscope.model.alerts import FIRING, Notification, Rule, observe_point
from fleetscope.model.instrumentation import Instrumentation
from fleetscope.model.series import DataPoint

WIDTH, HEIGHT = 640, 240
MARGIN = 36  # pixels around the plot for the labels
BACKGROUND, AXIS, LINE = (255, 255, 255), (120, 120, 120), (33, 102, 172)
THRESHOLD, FIRED, RESOLVED = (214, 96, 77), (200, 30, 30), (40, 150, 60)
DASH = 6  # pixels per dash of the threshold line
BEFORE, AFTER = 600, 60  # seconds of data shown before and after the change


def alert_png(rule: Rule, inst: Instrumentation, points: Sequence[DataPoint], n: Notification) -> bytes:
    """A PNG of ``points`` as ``rule`` reads them, for notification ``n``."""
    series = [(p.start_time, observe_point(rule.condition, p, inst.shape).get(n.key)) for p in points]
    shown = [v for _, v in series if v is not None and math.isfinite(v)]
    top = max([*shown, rule.condition.threshold, 0.0]) * 1.15 or 1.0
    bottom = min([*shown, rule.condition.threshold, 0.0])
    start, end = n.at - BEFORE, n.at + AFTER
    image = Image.new("RGB", (WIDTH, HEIGHT), BACKGROUND)
    draw = ImageDraw.Draw(image)

    def x(t: float) -> float:
        return MARGIN + (t - start) / (end - start) * (WIDTH - 2 * MARGIN)

    def y(v: float) -> float:
        return HEIGHT - MARGIN - (v - bottom) / (top - bottom) * (HEIGHT - 2 * MARGIN)

    draw.rectangle((MARGIN, MARGIN, WIDTH - MARGIN, HEIGHT - MARGIN), outline=AXIS)
    draw.text((MARGIN, 8), f"{inst.metric} {rule.when}" + (f"  ({n.key})" if n.key else ""), fill=AXIS)
    draw.text((4, MARGIN - 6), f"{top:.4g}", fill=AXIS)
    draw.text((4, HEIGHT - MARGIN - 6), f"{bottom:.4g}", fill=AXIS)
    ty = y(rule.condition.threshold)
    for left in range(MARGIN, WIDTH - MARGIN, 2 * DASH):
        draw.line((left, ty, min(left + DASH, WIDTH - MARGIN), ty), fill=THRESHOLD, width=1)
    run: list[tuple[float, float]] = []
    for t, v in series:
        if v is None or not math.isfinite(v) or not start <= t <= end:
            _stroke(draw, run)  # a gap is a gap, never a zero
            run = []
            continue
        run.append((x(t), y(v)))
    _stroke(draw, run)
    mark = x(n.at)
    draw.line((mark, MARGIN, mark, HEIGHT - MARGIN), fill=FIRED if n.status == FIRING else RESOLVED, width=2)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=False)
    return out.getvalue()


def _stroke(draw: ImageDraw.ImageDraw, run: list[tuple[float, float]]) -> None:
    if len(run) > 1:
        draw.line(run, fill=LINE, width=2)
    elif run:
        px, py = run[0]
        draw.ellipse((px - 1, py - 1, px + 1, py + 1), fill=LINE)
