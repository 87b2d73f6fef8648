// Line and stacked-area charts of time series on a canvas, with a hover crosshair.

import { CanvasView, MARGIN, axisTicks, axisWidth, drawAnnotations, drawThresholds, drawTimeAxis, drawValueAxis,
  themeColors, tidyTop } from "./canvas.js";

const OVERLAY_DASH = [6, 4];
const THRESHOLD_ROOM = 1.08; // the axis reaches this far past the highest threshold (room for its label)

/**
 * data: {start, end, step, times: [t], series: [{key, color, values: [number|null]}], unit, rate,
 *   overlays: [{key, label, color, values}]} (overlays: dashed lines over the rest, never stacked:
 *   the same panel a day or a week earlier)
 *   band: {color, lo: [number|null], hi: [number|null]} or null: per point, the smallest and the
 *   largest of the finer points inside it (the API's envelopes), drawn per pixel column behind the
 *   lines (the top of a stack: the envelope of the total) so that a peak a coarse step averages
 *   away is still seen; as drawn in `bandDrawn` (one lo/hi per pixel column, null where none).
 * style: {stacked, highlight: key|null, isolate: key|null}
 * onHover(index|null) is called as the pointer moves over a point.
 * setThresholds([{id, value, label, state}]): alert thresholds, drawn as dashed lines (the value
 * axis reaches up to them, so that a threshold above the data is seen); as drawn in `thresholdsDrawn`.
 */
export class LineChart extends CanvasView {
  constructor(container, { onHover } = {}) {
    super(container);
    this.data = null;
    this.style = { stacked: true, highlight: null, isolate: null };
    this.hoverIndex = null;
    this.thresholds = [];
    this.thresholdsDrawn = [];
    this.onHover = onHover || (() => {});
    this.canvas.addEventListener("mousemove", (e) => this.hover(e));
    this.canvas.addEventListener("mouseleave", () => this.setHover(null));
  }

  setData(data, style) {
    this.data = data;
    if (style) this.style = { ...this.style, ...style };
    this.requestDraw();
  }

  drawnSpan() {
    return this.data && this.data.end > this.data.start ? { start: this.data.start, end: this.data.end } : null;
  }

  setThresholds(lines) {
    this.thresholds = lines;
    this.requestDraw();
  }

  setHover(index) {
    if (index === this.hoverIndex) return;
    this.hoverIndex = index;
    this.onHover(index);
    this.requestDraw();
  }

  hover(event) {
    const d = this.data;
    if (!d || !d.times.length) return;
    const a = this.a || this.area();
    const { x } = this.pointer(event);
    if (x < a.x0 || x > a.x1) return this.setHover(null);
    const t = d.start + ((x - a.x0) / a.w) * (d.end - d.start);
    const i = Math.round((t - d.times[0] - d.step / 2) / d.step);
    this.setHover(i >= 0 && i < d.times.length ? i : null);
  }

  /** The series drawn, bottom first, and the y extent. */
  visible() {
    const { series } = this.data;
    // Keys that stayed at zero add nothing but clutter on top of a stack.
    const shown = series.filter((s) => (this.style.isolate ? s.key === this.style.isolate
      : series.length === 1 || s.values.some((v) => v > 0)));
    const n = this.data.times.length;
    let max = 0;
    let stacks = null;
    if (this.style.stacked) {
      stacks = [];
      const acc = new Float64Array(n);
      for (const s of shown) {
        const top = new Array(n);
        for (let i = 0; i < n; i++) {
          const v = s.values[i];
          if (v === null || v === undefined) top[i] = null;
          else {
            acc[i] += v;
            top[i] = acc[i];
            if (acc[i] > max) max = acc[i];
          }
        }
        stacks.push(top);
      }
    } else {
      for (const s of shown) for (const v of s.values) if (v > max) max = v;
    }
    for (const o of this.data.overlays || []) for (const v of o.values) if (v > max) max = v;
    const lineMax = max;
    if (this.data.band) for (const v of this.data.band.hi) if (v > max) max = v;
    return { shown, stacks, max, lineMax };
  }

  draw(ctx) {
    const d = this.data;
    if (!d) return;
    const c = themeColors();
    const { shown, stacks, max, lineMax } = this.visible();
    this.lineMax = lineMax;
    const top = tidyTop(Math.max(max, ...this.thresholds.map((t) => t.value * THRESHOLD_ROOM)), d.unit);
    this.top = top; // the value axis' top: a saved PNG (the API's rendering) uses the same
    const ticks = axisTicks(0, top, d.unit, this.height - MARGIN.top - MARGIN.bottom);
    const a = this.area({ ...MARGIN, left: axisWidth(ctx, ticks, c, d.rate) });
    this.a = a;
    const x = (i) => a.x0 + ((d.times[i] + d.step / 2 - d.start) / (d.end - d.start)) * a.w;
    const y = (v) => a.y1 - (v / top) * a.h;
    drawValueAxis(ctx, a, 0, top, ticks, c, d.rate);
    drawTimeAxis(ctx, a, d.start, d.end, c);
    ctx.save();
    ctx.beginPath();
    ctx.rect(a.x0, a.y0 - 2, a.w, a.h + 2);
    ctx.clip();
    this.bandDrawn = d.band ? drawBand(ctx, a, d, y) : null;
    const hl = this.style.highlight;
    shown.forEach((s, k) => {
      const dim = hl !== null && hl !== s.key;
      const values = stacks ? stacks[k] : s.values;
      const below = stacks && k > 0 ? stacks[k - 1] : null;
      if (stacks || shown.length === 1) {
        ctx.globalAlpha = dim ? 0.08 : hl === s.key ? 0.55 : stacks ? 0.32 : 0.16;
        ctx.fillStyle = s.color;
        fillBetween(ctx, values, below, x, y);
      }
      ctx.globalAlpha = dim ? 0.25 : 1;
      ctx.strokeStyle = s.color;
      ctx.lineWidth = hl === s.key ? 2.2 : 1.4;
      strokeLine(ctx, values, x, y);
    });
    ctx.globalAlpha = 1;
    ctx.setLineDash(OVERLAY_DASH);
    ctx.lineWidth = 1.6;
    for (const o of d.overlays || []) {
      ctx.strokeStyle = o.color;
      strokeLine(ctx, o.values, x, y);
    }
    ctx.setLineDash([]);
    ctx.restore();
    this.thresholdsDrawn = drawThresholds(ctx, a, 0, top, this.thresholds, c);
    this.annotationsDrawn = drawAnnotations(ctx, a, d.start, d.end, this.annotations, c);
    if (this.hoverIndex !== null && this.hoverIndex < d.times.length) {
      const px = Math.round(x(this.hoverIndex)) + 0.5;
      ctx.strokeStyle = c.muted;
      ctx.setLineDash([3, 3]);
      ctx.beginPath();
      ctx.moveTo(px, a.y0);
      ctx.lineTo(px, a.y1);
      ctx.stroke();
      ctx.setLineDash([]);
      shown.forEach((s, k) => {
        const v = (stacks ? stacks[k] : s.values)[this.hoverIndex];
        if (v === null || v === undefined) return;
        ctx.fillStyle = s.color;
        ctx.beginPath();
        ctx.arc(px, y(v), 3, 0, 2 * Math.PI);
        ctx.fill();
      });
    }
  }
}

/** Runs of consecutive non-null points: [[i0, i1], ...]. */
function runs(values) {
  const out = [];
  let from = -1;
  for (let i = 0; i <= values.length; i++) {
    const ok = i < values.length && values[i] !== null && values[i] !== undefined;
    if (ok && from < 0) from = i;
    if (!ok && from >= 0) {
      out.push([from, i - 1]);
      from = -1;
    }
  }
  return out;
}

/**
 * The line through `values`, by pixel column: where points are denser than pixels, each column
 * draws its first, lowest, highest and last point (M4: the same pixels as every point, with a
 * path of at most four points a column).
 */
function strokeLine(ctx, values, x, y) {
  ctx.beginPath();
  for (const [i0, i1] of runs(values)) {
    ctx.moveTo(x(i0), y(values[i0]));
    if (i0 === i1) ctx.lineTo(x(i0) + 1, y(values[i0]));
    let i = i0 + 1;
    while (i <= i1) {
      const col = Math.floor(x(i));
      let j = i;
      let lo = i;
      let hi = i;
      while (j + 1 <= i1 && Math.floor(x(j + 1)) === col) {
        j += 1;
        if (values[j] < values[lo]) lo = j;
        if (values[j] > values[hi]) hi = j;
      }
      if (j === i) ctx.lineTo(x(i), y(values[i]));
      else {
        const px = col + 0.5;
        ctx.lineTo(px, y(values[i]));
        ctx.lineTo(px, y(values[lo]));
        ctx.lineTo(px, y(values[hi]));
        ctx.lineTo(px, y(values[j]));
      }
      i = j + 1;
    }
  }
  ctx.stroke();
}

/**
 * The envelope band of `d` on plot `a`, per pixel column: each column the lowest `lo` and the
 * highest `hi` of the points whose step it overlaps, filled between them behind the lines.
 * Returns what was drawn for the tests: {x0, lo: [], hi: [] (null: none), y, time(c): [t0, t1)}.
 */
function drawBand(ctx, a, d, y) {
  const ncols = Math.max(1, Math.round(a.w));
  const lo = new Array(ncols).fill(null);
  const hi = new Array(ncols).fill(null);
  const perSecond = a.w / (d.end - d.start);
  const { band } = d;
  for (let i = 0; i < d.times.length; i++) {
    const l = band.lo[i];
    const u = band.hi[i];
    if (l === null || l === undefined || u === null || u === undefined) continue;
    const c0 = Math.max(0, Math.floor((d.times[i] - d.start) * perSecond));
    const c1 = Math.min(ncols, Math.max(c0 + 1, Math.ceil((d.times[i] + d.step - d.start) * perSecond)));
    for (let c = c0; c < c1; c++) {
      if (lo[c] === null || l < lo[c]) lo[c] = l;
      if (hi[c] === null || u > hi[c]) hi[c] = u;
    }
  }
  ctx.globalAlpha = 0.22;
  ctx.fillStyle = band.color;
  for (const [c0, c1] of runs(hi)) {
    ctx.beginPath();
    ctx.moveTo(a.x0 + c0, y(hi[c0]));
    for (let c = c0; c <= c1; c++) {
      ctx.lineTo(a.x0 + c, y(hi[c]));
      ctx.lineTo(a.x0 + c + 1, y(hi[c]));
    }
    for (let c = c1; c >= c0; c--) {
      ctx.lineTo(a.x0 + c + 1, y(lo[c]));
      ctx.lineTo(a.x0 + c, y(lo[c]));
    }
    ctx.closePath();
    ctx.fill();
  }
  ctx.globalAlpha = 1;
  const secondsPerColumn = 1 / perSecond;
  return { x0: a.x0, lo, hi, y, time: (c) => [d.start + c * secondsPerColumn, d.start + (c + 1) * secondsPerColumn] };
}

function fillBetween(ctx, values, below, x, y) {
  for (const [i0, i1] of runs(values)) {
    ctx.beginPath();
    ctx.moveTo(x(i0), y(values[i0]));
    for (let i = i0 + 1; i <= i1; i++) ctx.lineTo(x(i), y(values[i]));
    for (let i = i1; i >= i0; i--) ctx.lineTo(x(i), y(below ? below[i] ?? 0 : 0));
    ctx.closePath();
    ctx.fill();
  }
}
