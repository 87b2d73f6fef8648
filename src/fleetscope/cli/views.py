"""What the commands draw: text sparklines, bars and heatmaps, rich tables and live views."""

from __future__ import annotations

import json
import math
from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from fleetscope.cli.format import (
    GAP,
    finite,
    format_bytes,
    format_duration,
    format_idle_max,
    format_sources,
    format_time,
    format_timestamp,
    format_value,
    metric_name,
    quantile_label,
    unit_type,
    yes_no,
)
from fleetscope.model.types import NUMBER, Type
from fleetscope.model.values import DISCRETE, DISCRETE_HISTOGRAM, HISTOGRAM, SCALAR

QUANTILES = (0.5, 0.9, 0.99)
SPARK_TICKS = "▁▂▃▄▅▆▇█"


SHADES = " ░▒▓█"  # heatmap cells: index 0 is empty, 1..4 by rank
BAR_EIGHTHS = " ▏▎▍▌▋▊▉"


DISTRIBUTIONS = (HISTOGRAM, DISCRETE_HISTOGRAM)


def sparkline(
    values: Sequence[float | None], lo: float | None = None, hi: float | None = None
) -> str:
    """One character per value, ``▁`` (``lo``) to ``█`` (``hi``); a space for a missing value.

    ``lo`` defaults to ``min(0, smallest value)``: activity is drawn from zero, so that noise
    on a flat level does not look like a swing. ``hi`` defaults to the largest value.
    """
    known = [v for v in values if finite(v)]
    if not known:
        return " " * len(values)
    lo = min(0.0, min(known)) if lo is None else lo
    hi = max(known) if hi is None else hi
    top = len(SPARK_TICKS) - 1
    chars = []
    for v in values:
        if not finite(v):
            chars.append(" ")
        elif hi <= lo:
            chars.append(SPARK_TICKS[0])
        else:
            chars.append(SPARK_TICKS[min(top, max(0, round((v - lo) / (hi - lo) * top)))])
    return "".join(chars)


def bar(value: float, peak: float, width: int) -> str:
    """A horizontal bar of ``value / peak`` of ``width`` cells, in eighths of a cell."""
    if not (finite(value) and finite(peak)) or value <= 0 or peak <= 0:
        return ""
    eighths = round(min(1.0, value / peak) * width * 8)
    full, part = divmod(eighths, 8)
    return "█" * full + (BAR_EIGHTHS[part] if part else "")


def shade_levels(counts: Sequence[Sequence[float]]) -> list[list[int]]:
    """The shade level (0 empty, 1..4) of every cell of ``counts[column][row]``, by rank.

    Rank normalisation, the appliance's default: a non-empty cell's level is
    ``ceil(4 * r / n)`` where ``r`` is the rank of its count among the ``n`` distinct non-empty
    counts, so structure shows at every level rather than only where the mass is. Equal
    counts share a level and the largest count always gets the darkest shade.
    """
    distinct = sorted({c for column in counts for c in column if finite(c) and c > 0})
    n = len(distinct)
    return [
        [
            math.ceil(4 * bisect_right(distinct, c) / n) if finite(c) and c > 0 else 0
            for c in column
        ]
        for column in counts
    ]


def heatmap_lines(
    heatmap: Mapping[str, Any], unit: Type = NUMBER, label_every: int = 5
) -> list[str]:
    """A heatmap answer (``format=json``) as text: one line per y bucket, highest first.

    Each line is a right-aligned label (the upper edge of its bucket, on every
    ``label_every``-th line from the top), ``┤`` or ``│``, then one shade per time column.
    The last lines are the time axis, labelled with ``ymin`` and the first and last times.
    """
    counts = heatmap.get("counts") or []
    nbuckets = int(heatmap.get("nbuckets") or max((len(c) for c in counts), default=0))
    ymin = float(heatmap.get("ymin") or 0)
    ymax = float(heatmap.get("ymax") or 0)
    step = (ymax - ymin) / nbuckets if nbuckets else 0.0
    levels = shade_levels(counts)
    labels = [
        format_value(ymin + (row + 1) * step, unit)
        if (nbuckets - 1 - row) % label_every == 0 else ""
        for row in range(nbuckets)
    ]
    width = max([len(s) for s in labels] + [len(format_value(ymin, unit))])
    lines = []
    for row in range(nbuckets - 1, -1, -1):
        cells = "".join(SHADES[col[row]] if row < len(col) else " " for col in levels)
        tick = "┤" if labels[row] else "│"
        lines.append(f"{labels[row]:>{width}}{tick}{cells}")
    lines.append(f"{format_value(ymin, unit):>{width}}└" + "─" * len(counts))
    times = heatmap.get("times") or []
    if times:
        first, last = format_time(times[0]), format_time(times[-1])
        gap = max(1, len(counts) - len(first) - len(last))
        lines.append(" " * (width + 1) + first + " " * gap + last)
    return lines


def top_keys(values: Sequence[Any], k: int, weight: Callable[[Any], float]) -> list[str]:
    """The ``k`` keys with the largest total ``weight`` over breakdowns ``values`` ({key: v})."""
    totals: dict[str, float] = {}
    for value in values:
        if isinstance(value, Mapping):
            for key, v in value.items():
                totals[key] = totals.get(key, 0.0) + weight(v)
    return sorted(totals, key=lambda key: (-totals[key], key))[:k]


def histogram_count(h: Any) -> float:
    """The ``count`` of a histogram object (0 for anything else)."""
    return float(h.get("count") or 0) if isinstance(h, Mapping) else 0.0


def histogram_stats(value: Any, shape: str) -> tuple[float, float | None]:
    """``(count, average)`` of a histogram value (all keys together for a breakdown).

    The average is ``sum / count``, exact because histograms keep their sum exactly.
    """
    hists = list(value.values()) if shape == DISCRETE_HISTOGRAM and isinstance(value, Mapping) \
        else [value]
    count = sum(histogram_count(h) for h in hists)
    total = sum(float(h.get("sum") or 0) for h in hists if isinstance(h, Mapping))
    return count, (total / count if count else None)


def quantile_values(point: Mapping[str, Any] | None) -> dict[float, Any]:
    """``{q: value}`` of a percentiles point, whatever spelling the keys have (``"0.5"``)."""
    found: dict[float, Any] = {}
    if point and isinstance(point.get("percentiles"), Mapping):
        for key, v in point["percentiles"].items():
            try:
                found[float(key)] = v
            except ValueError:
                continue
    return found


def value_table(
    inst: Mapping[str, Any],
    points: Sequence[Mapping[str, Any]],
    percentiles: Sequence[Mapping[str, Any]] = (),
    *,
    field_unit: Type = NUMBER,
    top: int = 5,
) -> tuple[list[str], list[list[str]]]:
    """Column headers and rows (strings) of ``fleetscope value``, one row per point.

    scalar: time, value; breakdown: time, one column per top key (by total over the points),
    ``(rest)`` for the sum of the others; histogram: time, count, average and percentiles
    (joined from the percentiles answer by ``start_time``), for a breakdown of histograms over
    all keys together. Every table ends with ``sources`` (nsources/expected). A point without
    data (value null: nobody reported) shows :data:`GAP` in every value column, never 0.
    """
    shape = inst.get("shape", SCALAR)
    unit = unit_type(inst.get("unit"))
    granularity = int(inst.get("granularity") or 1)
    values = [p.get("value") for p in points]
    headers = ["time"]
    cells: list[list[str]] = [[format_time(p.get("start_time"), granularity)] for p in points]

    if shape == SCALAR:
        headers.append("value")
        for row, v in zip(cells, values, strict=True):
            row.append(format_value(v, unit))
    elif shape == DISCRETE:
        keys = top_keys(values, top, lambda v: float(v) if finite(v) else 0.0)
        all_keys = set().union(*(v for v in values if isinstance(v, Mapping)))
        headers += keys
        rest = len(all_keys) > len(keys)
        if rest:
            headers.append("(rest)")
        for row, v in zip(cells, values, strict=True):
            v = v if isinstance(v, Mapping) else {}
            row += [format_value(v.get(k, 0), unit) for k in keys]
            if rest:
                others = sum(x for key, x in v.items() if key not in keys and finite(x))
                row.append(format_value(others, unit))
    elif shape in DISTRIBUTIONS:
        by_time = {p.get("start_time"): quantile_values(p) for p in percentiles}
        headers += ["count", "average", *map(quantile_label, QUANTILES)]
        for row, point, v in zip(cells, points, values, strict=True):
            count, average = histogram_stats(v, shape)
            qs = by_time.get(point.get("start_time"), {})
            row += [format_value(count, unit), format_value(average, field_unit)]
            row += [format_value(qs.get(q), field_unit) for q in QUANTILES]
    else:
        headers.append("value")
        for row, v in zip(cells, values, strict=True):
            row.append(json.dumps(v))

    for row, v in zip(cells, values, strict=True):
        if v is None:
            row[1:] = [GAP] * (len(headers) - 1)
    headers.append("sources")
    for row, point in zip(cells, points, strict=True):
        row.append(format_sources(point))
    return headers, cells


def last_point(points: Sequence[dict]) -> dict | None:
    return points[-1] if points else None


def rows_table(headers: Sequence[str], rows: Sequence[Sequence[str]], title: str) -> Table:
    """A table of :func:`value_table`'s output; the time column is never shortened."""
    table = Table(title=title, title_justify="left")
    time_width = max([len(headers[0]), *(len(row[0]) for row in rows)])
    table.add_column(headers[0], no_wrap=True, min_width=time_width)
    for name in headers[1:]:
        table.add_column(name, justify="right", no_wrap=True)
    for row in rows:
        table.add_row(*row)
    return table


def metrics_table(metrics: Sequence[Mapping[str, Any]]) -> Table:
    """The metric catalogue, one section per module, discrete and numeric fields apart."""
    table = Table(title="metrics", title_justify="left")
    table.add_column("metric", no_wrap=True, style="bold")
    table.add_column("label")
    table.add_column("kind", no_wrap=True)
    table.add_column("unit", no_wrap=True)
    table.add_column("discrete fields")
    table.add_column("numeric fields")
    previous = None
    for metric in sorted(metrics, key=lambda m: (str(m.get("module")), str(m.get("name")))):
        module = str(metric.get("module", ""))
        if previous is not None and module != previous:
            table.add_section()
        previous = module
        fields = [f for f in metric.get("fields") or () if isinstance(f, Mapping)]
        table.add_row(
            str(metric.get("name") or f"{module}.{metric.get('stat')}"),
            str(metric.get("label", "")),
            str(metric.get("kind", "")),
            unit_type(metric.get("unit")).name,
            ", ".join(str(f.get("name")) for f in fields if f.get("kind") == "discrete") or "-",
            ", ".join(
                f"{f.get('name')} ({unit_type(f.get('type')).name})"
                for f in fields if f.get("kind") == "numeric"
            ) or "-",
        )
    return table


def instrumentation_table(inst: Mapping[str, Any]) -> Table:
    """One instrumentation as key/value rows, the known fields first, then any others."""
    table = Table(show_header=False, box=None, padding=(0, 2, 0, 0))
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    rows = {
        "id": str(inst.get("id")),
        "metric": metric_name(inst),
        "decomposition": ", ".join(map(str, inst.get("decomposition") or ())) or "-",
        "predicate": inst.get("predicate_text") or "-",
        "shape": str(inst.get("shape", "-")),
        "kind": str(inst.get("kind", "-")),
        "unit": unit_type(inst["unit"]).name if inst.get("unit") else "-",
        "granularity": format_duration(inst.get("granularity")),
        "retention": format_duration(inst.get("retention")),
        "idle_max": format_idle_max(inst.get("idle_max")),
        "persist": yes_no(inst.get("persist")),
        "created": format_timestamp(inst.get("created")),
        "tenant": inst.get("tenant") or "-",
        "warnings": "; ".join(f"{h}: {text}" for h, text in (inst.get("warnings") or {}).items()) or "-",
    }
    shown = {*rows, "module", "stat", "predicate_text", "predicate"}
    for key, text in rows.items():
        table.add_row(key, text)
    for key, v in inst.items():
        if key not in shown and v is not None:
            table.add_row(key, v if isinstance(v, str) else json.dumps(v))
    return table


def instrumentations_table(insts: Sequence[Mapping[str, Any]]) -> Table:
    """One row per instrumentation; the creation time is left to ``inst show``."""
    table = Table()
    table.add_column("id", justify="right", no_wrap=True)
    table.add_column("metric", no_wrap=True)
    table.add_column("by", no_wrap=True)
    table.add_column("where", overflow="fold", ratio=1, min_width=8)
    table.add_column("gran/retention/idle", no_wrap=True)
    table.add_column("persist", no_wrap=True)
    for inst in sorted(insts, key=lambda i: i.get("id") or 0):
        table.add_row(
            str(inst.get("id")),
            metric_name(inst),
            ", ".join(map(str, inst.get("decomposition") or ())) or "-",
            inst.get("predicate_text") or "-",
            " / ".join((format_duration(inst.get("granularity")), format_duration(inst.get("retention")),
                        format_idle_max(inst.get("idle_max")))),
            yes_no(inst.get("persist")),
        )
    return table


def hosts_table(hosts: Sequence[Mapping[str, Any]]) -> Table:
    """One row per agent: status, last report, version, clock offset, buffered batches (and those
    dropped), instrumentations, warnings."""
    table = Table()
    for name, justify in (("host", "left"), ("status", "left"), ("last report", "left"),
                          ("version", "left"), ("clock offset", "right"), ("buffered", "right"),
                          ("instrumentations", "left"), ("warnings", "left")):
        table.add_column(name, justify=justify, overflow="fold")
    for h in hosts:
        warnings = "; ".join(f"{k}: {v}" for k, v in (h.get("warnings") or {}).items()) or "-"
        table.add_row(
            str(h.get("hostname")),
            str(h.get("status")),
            format_time(h.get("last_report")),
            str(h.get("version", "-")),
            f"{h['clock_offset']:+.3f} s" if isinstance(h.get("clock_offset"), int | float) else "-",
            _buffered(h.get("buffer") or {}),
            ", ".join(map(str, h.get("instrumentations") or ())) or "-",
            warnings,
        )
    return table


def _buffered(buffer: Mapping[str, int]) -> str:
    """Batches waiting in an agent's outbox (to be sent, and sent but not yet acknowledged), and
    what it sent again or had to drop (overflow, over size)."""
    text = str(buffer.get("queued", "-"))
    counts = {k: buffer.get(k, 0) for k in ("unacked", "replayed", "dropped", "oversized") if buffer.get(k)}
    return text + "".join(f", {n} {k}" for k, n in counts.items())


def store_stats_table(body: Mapping[str, Any]) -> Table:
    """The table of ``fleetscope store stats`` from the API's answer (fits 80 columns)."""
    from rich import box

    disk = format_bytes(body.get("disk_bytes"))
    table = Table(title=f"history: {body.get('samples', 0):,} samples, {disk} "
                        f"on disk ({body.get('bytes_per_sample') or '-'} B/sample)", title_justify="left",
                  box=box.SIMPLE_HEAD, collapse_padding=True, pad_edge=False)
    table.add_column("id", justify="right", no_wrap=True)
    table.add_column("metric", ratio=1, min_width=12, overflow="fold")
    for name in ("tier", "points", "bytes", "B/sample", "oldest", "newest"):
        table.add_column(name, justify="left" if name in ("tier", "oldest", "newest") else "right",
                         no_wrap=True)
    for row in body.get("tiers", []):
        metric = row.get("metric") or "(deleted)"
        if row.get("decomposition"):
            metric += " by " + ",".join(row["decomposition"])
        table.add_row(str(row["inst_id"]), metric, row["tier"], f"{row['points']:,}",
                      format_bytes(row["bytes"]),
                      f"{row['bytes_per_sample']:.3f}", format_timestamp(row["oldest"], "%m-%d %H:%M"),
                      format_timestamp(row["newest"], "%m-%d %H:%M"))
    return table


def scalar_view(inst: Mapping[str, Any], points: Sequence[Mapping[str, Any]]) -> RenderableType:
    """Current value, sparkline of the window and its range."""
    unit = unit_type(inst.get("unit"))
    values = [p.get("value") if finite(p.get("value")) else None for p in points]
    latest = next((p for p in reversed(points) if finite(p.get("value"))), None)
    known = [v for v in values if v is not None]
    text = Text()
    if latest is None:
        text.append("no data yet\n")
    else:
        text.append(format_value(latest["value"], unit), style="bold")
        text.append(f"  at {format_time(latest.get('start_time'))}  sources {format_sources(latest)}\n")
    text.append(sparkline(values) + "\n", style="cyan")
    if known:
        text.append(
            f"min {format_value(min(known), unit)}  max {format_value(max(known), unit)}"
            f"  over {len(points)} points"
        )
    return text


def breakdown_view(
    inst: Mapping[str, Any], point: Mapping[str, Any] | None, top: int = 10, width: int = 40
) -> RenderableType:
    """The keys of the latest point, largest first, with bars; the rest summed on one line."""
    unit = unit_type(inst.get("unit"))
    value = point.get("value") if point else None
    if not isinstance(value, Mapping) or not value:
        return Text("no data yet")
    # Keys at zero this second (idle processes, unused modes) would crowd out the ones that
    # matter; they are left out, and the rest of the non-zero keys summed on one line.
    items = sorted(
        ((str(k), float(v)) for k, v in value.items() if finite(v) and v != 0),
        key=lambda kv: (-kv[1], kv[0]),
    )
    caption = Text(f"at {format_time(point.get('start_time'))}  sources {format_sources(point)}")
    if not items:
        return Group(Text(f"all {len(value)} keys are zero"), caption)
    peak = items[0][1]
    table = Table(box=None, show_header=False, padding=(0, 1, 0, 0))
    table.add_column(no_wrap=True)
    table.add_column(justify="right", no_wrap=True)
    table.add_column(style="cyan", no_wrap=True)
    for key, v in items[:top]:
        table.add_row(key, format_value(v, unit), bar(v, peak, width))
    if len(items) > top:
        rest = sum(v for _, v in items[top:])
        table.add_row(f"({len(items) - top} more)", format_value(rest, unit), "")
    return Group(table, caption)


def distribution_view(
    heatmap: Mapping[str, Any], percentiles: Mapping[str, Any] | None, field_unit: Type
) -> RenderableType:
    """Text heatmap of the window, then the latest point's percentiles."""
    # The heatmap may name its y unit itself; it is the same as the numeric field's.
    axis_unit = unit_type(heatmap["unit"]) if heatmap.get("unit") else field_unit
    lines = heatmap_lines(heatmap, axis_unit)
    qs = quantile_values(percentiles)
    summary = "  ".join(
        f"{quantile_label(q)} {format_value(qs.get(q), field_unit)}" for q in QUANTILES
    )
    if percentiles:
        summary += f"  at {format_time(percentiles.get('start_time'))}"
    return Group(Text("\n".join(lines)), Text(summary, style="bold"))
