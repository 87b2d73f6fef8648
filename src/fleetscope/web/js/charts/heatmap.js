// Heatmap drawing: the API's JSON matrix on a canvas, the way the appliance drew them.
//
// Colour (DESIGN.md): one hue per selected key (21°, then 91° further each), the rest in a
// blue-grey, much less saturated while keys are selected so that they stand out (the third
// key's hue, 203°, is close to it); saturation grows with the cell's normalised count (by rank among the non-empty
// cells of every layer, or linearly by count / max). A cell shows the layer with the highest
// normalised count (a key wins a tie with the rest). On the dark theme the count raises the
// brightness instead, so that faint cells stay faint against the dark background.

import { CanvasView, MARGIN, axisTicks, axisWidth, drawAnnotations, drawThresholds, drawTimeAxis, drawValueAxis,
  themeColors }
  from "./canvas.js";
import { BASE_HUE, cssVar, hsv, isDark, keyHue } from "../lib/color.js";
import { formatValue } from "../lib/format.js";

const MIN_SATURATION = 0.08;
const KEY_SATURATION = 1.0;
const BASE_SATURATION = 0.45;
const BASE_SATURATION_UNDER_KEYS = 0.16;
const OVERLAY_COLORS = { avg: "--text", p50: "--ov-1", p90: "--ov-2", p95: "--ov-2", p99: "--ov-3" };
const PAST_DASH = [2, 3]; // an earlier range's lines (compare): finer than the average's own dash
const PAST_ALPHA = 0.75;

/**
 * The cells of a matrix as flat column-major arrays: one Float32Array per layer (selected keys
 * first, the rest last) and the indices of the cells where any layer is non-empty.
 */
export function flatten(layers, ncols, nrows) {
  const size = ncols * nrows;
  const mark = new Uint8Array(size);
  const flat = layers.map((layer) => {
    const out = new Float32Array(size);
    for (let c = 0; c < ncols; c++) {
      const col = layer[c];
      const base = c * nrows;
      for (let r = 0; r < nrows; r++) {
        const v = col[r];
        if (v > 0) {
          out[base + r] = v;
          mark[base + r] = 1;
        }
      }
    }
    return out;
  });
  const filled = new Int32Array(size);
  let n = 0;
  for (let i = 0; i < size; i++) if (mark[i]) filled[n++] = i;
  return { flat, filled: filled.subarray(0, n) };
}

/**
 * Joint normalisation of the filled cells of every layer to (0, 1] (0 stays 0): by rank among
 * all non-empty cells of all layers (equal counts share a colour), or by count / largest.
 * Returns one Float32Array per layer, aligned with `filled`.
 */
export function normalise({ flat, filled }, coloring) {
  const norm = flat.map(() => new Float32Array(filled.length));
  const values = new Float32Array(flat.length * filled.length);
  let nv = 0;
  for (const f of flat) {
    for (let j = 0; j < filled.length; j++) {
      const v = f[filled[j]];
      if (v > 0) values[nv++] = v;
    }
  }
  if (!nv) return norm;
  if (coloring === "linear") {
    let max = 0;
    for (let k = 0; k < nv; k++) if (values[k] > max) max = values[k];
    flat.forEach((f, l) => {
      for (let j = 0; j < filled.length; j++) norm[l][j] = f[filled[j]] / max;
    });
    return norm;
  }
  const sorted = values.subarray(0, nv).sort();
  const n = nv;
  flat.forEach((f, l) => {
    const out = norm[l];
    for (let j = 0; j < filled.length; j++) {
      const v = f[filled[j]];
      if (!(v > 0)) continue;
      let lo = 0;
      let hi = n; // the first index holding more than v
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (sorted[mid] <= v) lo = mid + 1;
        else hi = mid;
      }
      out[j] = lo / n;
    }
  });
  return norm;
}

/** Colour lookup tables (256 levels) for a hue, on the current theme: Uint8Array of rgb triples. */
function ramp(hue, top, dark) {
  const lut = new Uint8Array(256 * 3);
  for (let i = 0; i < 256; i++) {
    const n = i / 255;
    const rgb = dark
      ? hsv(hue, top * (0.35 + 0.65 * n), 0.22 + 0.73 * n)
      : hsv(hue, MIN_SATURATION + (top - MIN_SATURATION) * n, 0.95);
    lut.set(rgb, i * 3);
  }
  return lut;
}

/**
 * The heatmap. setData(matrix, opts): matrix is the API's JSON (times, counts, keys, ymin,
 * ymax, nbuckets, step, unit); opts = {coloring, order: [selected keys], overlays: {name: [v]},
 * past: {name: [v]}} (past: the same lines of an earlier range, drawn dashed under today's).
 * Callbacks: onHover(cell|null), onClick(cell), onZoom(lo, hi).
 * setThresholds([{id, value, label, state}]): alert thresholds on the value axis (percentile and
 * average rules), dashed lines over the map; as drawn in `thresholdsDrawn`.
 */
export class HeatmapChart extends CanvasView {
  constructor(container, { onHover, onClick, onZoom } = {}) {
    super(container);
    this.matrix = null;
    this.opts = { coloring: "rank", order: [], overlays: {}, past: {} };
    this.image = null; // an offscreen canvas, one pixel per cell
    this.hoverCell = null;
    this.pinned = null;
    this.drag = null;
    this.thresholds = [];
    this.thresholdsDrawn = [];
    this.onHover = onHover || (() => {});
    this.onClick = onClick || (() => {});
    this.onZoom = onZoom || (() => {});
    const c = this.canvas;
    c.addEventListener("mousemove", (e) => this.move(e));
    c.addEventListener("mouseleave", () => {
      this.pointerAt = null;
      if (!this.drag) this.setHover(null);
    });
    c.addEventListener("mousedown", (e) => this.down(e));
    window.addEventListener("mouseup", (e) => this.up(e));
  }

  /** The plot area of the last drawing (its left margin fits the axis labels). */
  area() {
    return this.a || super.area({ ...MARGIN, right: 34 });
  }

  /** New data (even if the same object, changed in place) and options: recompute and draw. */
  setData(matrix, opts = {}) {
    this.matrix = matrix;
    this.cells = null;
    this.opts = { ...this.opts, ...opts };
    this.render();
    if (this.pointerAt && !this.drag) {
      // The data moved under a still pointer: what it points at now is another cell.
      this.hoverCell = null;
      this.setHover(this.cellAt(this.pointerAt.x, this.pointerAt.y));
    }
  }

  setThresholds(lines) {
    this.thresholds = lines;
    this.requestDraw();
  }

  setOverlays(overlays) {
    this.opts.overlays = overlays;
    this.requestDraw();
  }

  /** Recompute every cell's colour (after new data, colouring, selection or theme). */
  render() {
    const m = this.matrix;
    if (!m) return;
    const keys = this.opts.order.filter((k) => m.keys[k]);
    const ncols = m.counts.length;
    const nrows = m.nbuckets;
    if (!this.cells || this.cells.keys.join("\n") !== keys.join("\n")) {
      this.cells = { keys, ...flatten([...keys.map((k) => m.keys[k]), m.counts], ncols, nrows) };
    }
    if (!this.image) this.image = document.createElement("canvas");
    this.image.width = Math.max(1, ncols);
    this.image.height = nrows;
    this.layerKeys = keys;
    if (!ncols) return this.requestDraw();
    const { filled } = this.cells;
    const norm = normalise(this.cells, this.opts.coloring);
    const dark = isDark();
    const luts = [...keys.map((k) => ramp(keyHue(this.opts.order.indexOf(k)), KEY_SATURATION, dark)),
      ramp(BASE_HUE, keys.length ? BASE_SATURATION_UNDER_KEYS : BASE_SATURATION, dark)];
    const img = new ImageData(ncols, nrows);
    const px = img.data;
    const nl = norm.length;
    for (let j = 0; j < filled.length; j++) {
      let best = 0;
      let win = -1;
      for (let l = 0; l < nl; l++) {
        const v = norm[l][j];
        if (v > best) {
          best = v;
          win = l;
        }
      }
      if (win < 0) continue;
      const i = filled[j];
      const c = (i / nrows) | 0;
      const r = i - c * nrows;
      const o = ((nrows - 1 - r) * ncols + c) * 4;
      const li = Math.round(best * 255) * 3;
      const lut = luts[win];
      px[o] = lut[li];
      px[o + 1] = lut[li + 1];
      px[o + 2] = lut[li + 2];
      px[o + 3] = 255;
    }
    this.image.getContext("2d").putImageData(img, 0, 0);
    this.paint();
  }

  get start() {
    return this.matrix.start_time;
  }

  get end() {
    return this.matrix.start_time + this.matrix.times.length * this.matrix.step;
  }

  /** The cell under a point: {col, row, time, step, lo, hi, count, layers: {key: count}} or null. */
  cellAt(x, y) {
    const m = this.matrix;
    const a = this.area();
    if (!m || !m.times.length || x < a.x0 || x >= a.x1 || y < a.y0 || y >= a.y1) return null;
    const col = Math.floor(((x - a.x0) / a.w) * m.times.length);
    const row = Math.floor(((a.y1 - y) / a.h) * m.nbuckets);
    return this.cell(col, row);
  }

  /** Where `v` sits on the value axis, 0 (ymin) to 1 (ymax): linear, or logarithmic (m.log). */
  frac(v) {
    const m = this.matrix;
    if (m.log) return v > 0 ? Math.log(v / m.ymin) / Math.log(m.ymax / m.ymin) : -Infinity;
    return (v - m.ymin) / (m.ymax - m.ymin);
  }

  /** The value at `f` (0 to 1) of the axis: frac's inverse. */
  at(f) {
    const m = this.matrix;
    return m.log ? m.ymin * (m.ymax / m.ymin) ** f : m.ymin + f * (m.ymax - m.ymin);
  }

  /** The value axis' ticks: tidy values (linear), or 1, 2, 5 times powers of ten (log; only
   * the powers when there are many decades), as {value, label}. */
  ticks(height) {
    const m = this.matrix;
    if (!m.log) return axisTicks(m.ymin, m.ymax, m.unit, height);
    const out = [];
    const decades = Math.log10(m.ymax / m.ymin);
    const mults = decades > Math.max(1, height / 60) ? [1] : [1, 2, 5];
    for (let k = Math.floor(Math.log10(m.ymin)); k <= Math.ceil(Math.log10(m.ymax)); k++) {
      for (const x of mults) {
        const v = Number((x * 10 ** k).toPrecision(12));
        if (v >= m.ymin && v <= m.ymax) out.push({ value: v, label: formatValue(v, m.unit) });
      }
    }
    return out;
  }

  cell(col, row) {
    const m = this.matrix;
    if (col < 0 || col >= m.times.length || row < 0 || row >= m.nbuckets) return null;
    const layers = {};
    let count = m.counts[col][row];
    for (const k of this.layerKeys || []) {
      layers[k] = m.keys[k][col][row];
      count += layers[k];
    }
    return {
      col, row, time: m.times[col], step: m.step, present: m.present[col],
      lo: this.at(row / m.nbuckets), hi: this.at((row + 1) / m.nbuckets), count, rest: m.counts[col][row], layers,
    };
  }

  /** Value on the y axis at a canvas y. */
  valueAt(y) {
    const a = this.area();
    const m = this.matrix;
    const f = Math.min(1, Math.max(0, (a.y1 - y) / a.h));
    return m ? this.at(f) : 0;
  }

  setHover(cell) {
    const same = cell && this.hoverCell && cell.col === this.hoverCell.col && cell.row === this.hoverCell.row;
    if (same || (!cell && !this.hoverCell)) return;
    this.hoverCell = cell;
    this.onHover(cell);
    this.requestDraw();
  }

  move(e) {
    const p = this.pointer(e);
    this.pointerAt = p;
    if (this.drag) {
      this.drag.y1 = p.y;
      if (Math.abs(this.drag.y1 - this.drag.y0) > 4) this.drag.moved = true;
      this.requestDraw();
      return;
    }
    this.setHover(this.cellAt(p.x, p.y));
  }

  down(e) {
    if (e.button !== 0 || !this.matrix) return;
    const p = this.pointer(e);
    const a = this.area();
    if (p.x < a.x0 || p.x >= a.x1 || p.y < a.y0 || p.y >= a.y1) return;
    e.preventDefault();
    this.drag = { x: p.x, y0: p.y, y1: p.y, moved: false };
  }

  up(e) {
    const d = this.drag;
    if (!d) return;
    this.drag = null;
    if (d.moved) {
      const lo = this.valueAt(Math.max(d.y0, d.y1));
      const hi = this.valueAt(Math.min(d.y0, d.y1));
      this.requestDraw();
      if (hi > lo) this.onZoom(lo, hi);
      return;
    }
    const cell = this.cellAt(d.x, d.y0);
    this.requestDraw();
    if (cell) this.onClick(cell, e);
  }

  draw(ctx) {
    const m = this.matrix;
    if (!m) return;
    const c = themeColors();
    const ticks = this.ticks(this.height - MARGIN.top - MARGIN.bottom);
    const a = super.area({ ...MARGIN, right: 34, left: axisWidth(ctx, ticks, c) });
    this.a = a;
    // Axis and thresholds are drawn on the axis' fractions: linear or log alike.
    drawValueAxis(ctx, a, 0, 1, ticks.map((t) => ({ ...t, value: this.frac(t.value) })), c);
    drawTimeAxis(ctx, a, this.start, this.end, c);
    if (this.image && m.times.length) {
      ctx.imageSmoothingEnabled = false;
      ctx.drawImage(this.image, a.x0, a.y0, a.w, a.h);
    }
    this.drawOverlays(ctx, a, c);
    this.thresholdsDrawn = drawThresholds(ctx, a, 0, 1, this.thresholds.map((t) => ({ ...t, value: this.frac(t.value) })), c)
      .map((d, i) => ({ ...d, value: this.thresholds[i].value }));
    this.annotationsDrawn = drawAnnotations(ctx, a, this.start, this.end, this.annotations, c);
    const mark = (cell, style) => {
      if (!cell) return;
      const cw = a.w / m.times.length;
      const ch = a.h / m.nbuckets;
      ctx.strokeStyle = style;
      ctx.lineWidth = 1.5;
      ctx.strokeRect(a.x0 + cell.col * cw - 0.5, a.y1 - (cell.row + 1) * ch - 0.5, Math.max(2, cw) + 1, ch + 1);
    };
    mark(this.pinned, c.accent);
    mark(this.hoverCell, c.text);
    if (this.drag && this.drag.moved) {
      const y0 = Math.max(a.y0, Math.min(this.drag.y0, this.drag.y1));
      const y1 = Math.min(a.y1, Math.max(this.drag.y0, this.drag.y1));
      ctx.fillStyle = c.accent;
      ctx.globalAlpha = 0.15;
      ctx.fillRect(a.x0, y0, a.w, y1 - y0);
      ctx.globalAlpha = 1;
      ctx.strokeStyle = c.accent;
      ctx.strokeRect(a.x0 + 0.5, y0 + 0.5, a.w - 1, y1 - y0);
    }
  }

  drawOverlays(ctx, a, c) {
    const m = this.matrix;
    const n = m.times.length;
    const x = (i) => a.x0 + ((i + 0.5) / n) * a.w;
    const y = (v) => a.y1 - Math.max(-1, this.frac(v)) * a.h;
    ctx.save();
    ctx.beginPath();
    ctx.rect(a.x0, a.y0, a.w, a.h);
    ctx.clip();
    const labels = [];
    this.pastDrawn = [];
    const lines = [...Object.entries(this.opts.past || {}).map(([name, values]) => ({ name, values, past: true })),
      ...Object.entries(this.opts.overlays || {}).map(([name, values]) => ({ name, values, past: false }))];
    for (const { name, values, past } of lines) {
      if (!values || values.length !== n) continue;
      const color = cssVar(OVERLAY_COLORS[name] || "--ov-3") || c.text;
      ctx.strokeStyle = past ? c.muted || color : color;
      ctx.globalAlpha = past ? PAST_ALPHA : 1;
      ctx.lineWidth = past ? 1.4 : 1.6;
      ctx.setLineDash(past ? PAST_DASH : name === "avg" ? [5, 3] : []);
      if (past) this.pastDrawn.push(name);
      ctx.beginPath();
      let open = false;
      let last = null;
      for (let i = 0; i < n; i++) {
        const v = values[i];
        if (v === null || v === undefined) {
          open = false;
          continue;
        }
        if (open) ctx.lineTo(x(i), y(v));
        else ctx.moveTo(x(i), y(v));
        open = true;
        last = v;
      }
      ctx.stroke();
      ctx.globalAlpha = 1;
      if (last !== null && !past) labels.push({ name, color, y: y(last) });
    }
    ctx.restore();
    ctx.setLineDash([]);
    ctx.font = c.font;
    ctx.textAlign = "left";
    ctx.textBaseline = "middle";
    labels.sort((p, q) => p.y - q.y);
    let prev = -Infinity;
    for (const l of labels) {
      const ly = Math.min(a.y1 - 5, Math.max(a.y0 + 5, Math.max(l.y, prev + 11)));
      prev = ly;
      ctx.fillStyle = l.color;
      ctx.fillText(l.name, a.x1 + 4, ly);
    }
  }
}
