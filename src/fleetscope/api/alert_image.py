"""The picture an alert e-mail carries: what the rule compares, around the moment it changed.

A line of exactly what the rule's condition reads from each slot (the value, the alerted key,
the percentile or the average: :func:`fleetscope.model.alerts.observe_point`), the threshold
as a dashed line, and a red (firing) or green (resolved) mark at the moment of the change.
Drawn with Pillow, about 2 ms for a 10-minute window.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from PIL import Image, ImageDraw

from fleetscope.api.linechart import AXIS, BACKGROUND, Frame, dashed_level, save_png, stroke
from fleetscope.model.alerts import FIRING, Notification, Rule, observe_point
from fleetscope.model.instrumentation import Instrumentation
from fleetscope.model.series import DataPoint

WIDTH, HEIGHT = 640, 240
MARGIN = 36  # pixels around the plot for the labels
LINE = (33, 102, 172)
THRESHOLD, FIRED, RESOLVED = (214, 96, 77), (200, 30, 30), (40, 150, 60)
DASH = 6  # pixels per dash of the threshold line
BEFORE, AFTER = 600, 60  # seconds of data shown before and after the change


def alert_png(rule: Rule, inst: Instrumentation, points: Sequence[DataPoint], n: Notification) -> bytes:
    """A PNG of ``points`` as ``rule`` reads them, for notification ``n``."""
    start, end = n.at - BEFORE, n.at + AFTER
    series = [(p.start_time, observe_point(rule.condition, p, inst.shape).get(n.key)) for p in points]
    shown = [v for _, v in series if v is not None and math.isfinite(v)]
    series = [(t, v if start <= t <= end else None) for t, v in series]
    top = max([*shown, rule.condition.threshold, 0.0]) * 1.15 or 1.0
    bottom = min([*shown, rule.condition.threshold, 0.0])
    image = Image.new("RGB", (WIDTH, HEIGHT), BACKGROUND)
    draw = ImageDraw.Draw(image)
    frame = Frame((MARGIN, MARGIN, WIDTH - MARGIN, HEIGHT - MARGIN), start, end, bottom, top)
    draw.rectangle(frame.box, outline=AXIS)
    draw.text((MARGIN, 8), f"{inst.metric} {rule.when}" + (f"  ({n.key})" if n.key else ""), fill=AXIS)
    draw.text((4, MARGIN - 6), f"{top:.4g}", fill=AXIS)
    draw.text((4, HEIGHT - MARGIN - 6), f"{bottom:.4g}", fill=AXIS)
    dashed_level(draw, frame, rule.condition.threshold, THRESHOLD, DASH)
    stroke(draw, frame, series, LINE)
    mark = frame.x(n.at)
    draw.line((mark, MARGIN, mark, HEIGHT - MARGIN), fill=FIRED if n.status == FIRING else RESOLVED, width=2)
    return save_png(image)
