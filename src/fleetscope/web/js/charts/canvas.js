// Canvas plumbing shared by the charts: sizing for the device pixel ratio, theme colours, axes.

import { cssVar } from "../lib/color.js";
import { formatTick, timeTicks, valueTicks } from "../lib/format.js";
import { frameThrottle, h } from "../lib/dom.js";

export const MARGIN = { left: 58, right: 10, top: 8, bottom: 20 };

/** The theme's chart colours, read from CSS variables. */
export function themeColors() {
  return {
    text: cssVar("--text"),
    muted: cssVar("--muted"),
    grid: cssVar("--grid"),
    axis: cssVar("--border-strong"),
    panel: cssVar("--panel"),
    accent: cssVar("--accent"),
    warn: cssVar("--warn"),
    danger: cssVar("--danger"),
    font: `11px ${cssVar("--font-mono") || "monospace"}`,
  };
}

/**
 * A canvas filling `container`, redrawn (at most once a frame) when resized or asked to.
 * Subclasses implement draw(ctx, width, height) in CSS pixels.
 */
export class CanvasView {
  constructor(container) {
    this.container = container;
    this.canvas = h("canvas.chart-canvas");
    container.append(this.canvas);
    this.ctx = this.canvas.getContext("2d");
    this.width = 0;
    this.height = 0;
    this.requestDraw = frameThrottle(() => this.paint());
    this.observer = new ResizeObserver(() => this.resize());
    this.observer.observe(container);
    this.annotations = [];
    this.annotationsDrawn = [];
    // An annotation's text as the canvas' title while the pointer is on its marker.
    this.canvas.addEventListener("mousemove", (e) => {
      const text = annotationAt(this.annotationsDrawn, e.clientX - this.canvas.getBoundingClientRect().left);
      if (this.canvas.title !== text) this.canvas.title = text;
    });
  }

  /** Annotations to mark on the time axis ([{id, kind, time, end_time, text}]). */
  setAnnotations(list) {
    this.annotations = list || [];
    this.requestDraw();
  }

  resize() {
    const { width, height } = this.container.getBoundingClientRect();
    const dpr = window.devicePixelRatio || 1;
    if (width === this.width && height === this.height && this.dpr === dpr) return;
    this.width = width;
    this.height = height;
    this.dpr = dpr;
    this.canvas.width = Math.max(1, Math.round(width * dpr));
    this.canvas.height = Math.max(1, Math.round(height * dpr));
    this.canvas.style.width = `${width}px`;
    this.canvas.style.height = `${height}px`;
    this.paint();
  }

  /** Draw now (synchronously). */
  paint() {
    if (!this.width || !this.height) return;
    const ctx = this.ctx;
    ctx.setTransform(this.dpr, 0, 0, this.dpr, 0, 0);
    ctx.clearRect(0, 0, this.width, this.height);
    this.draw(ctx, this.width, this.height);
  }

  /** The plot area inside the axes: {x0, x1, y0 (top), y1 (bottom), w, h}. */
  area(margin = MARGIN) {
    const x0 = margin.left;
    const x1 = Math.max(x0 + 10, this.width - margin.right);
    const y0 = margin.top;
    const y1 = Math.max(y0 + 10, this.height - margin.bottom);
    return { x0, x1, y0, y1, w: x1 - x0, h: y1 - y0 };
  }

  /** Mouse position relative to the canvas, in CSS pixels. */
  pointer(event) {
    const r = this.canvas.getBoundingClientRect();
    return { x: event.clientX - r.left, y: event.clientY - r.top };
  }

  /** The time range drawn, {start, end}, or null (charts over time keep `start` and `end`). */
  drawnSpan() {
    return Number.isFinite(this.start) && Number.isFinite(this.end) ? { start: this.start, end: this.end } : null;
  }

  /**
   * Show [start, end) at once from the image drawn: the plot moved and stretched so that each
   * time lands where the new range puts it (blank where the old range held nothing), under the
   * new range's time axis. A stand-in while the data are on their way (a pan or zoom must not
   * wait for the network); the next paint replaces it. Returns whether it could.
   */
  preview(start, end) {
    const from = this.drawnSpan();
    const a = this.a;
    if (!from || !a || !this.width || !(end > start) || !(from.end > from.start)) return false;
    const copy = (this.previewCanvas ||= document.createElement("canvas"));
    copy.width = this.canvas.width;
    copy.height = this.canvas.height;
    copy.getContext("2d").drawImage(this.canvas, 0, 0);
    const ctx = this.ctx;
    const dpr = this.dpr || 1;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(a.x0, a.y0 - 2, a.w + 1, a.h + 2);
    ctx.clearRect(0, a.y1 + 1, this.width, this.height - a.y1 - 1);
    const lo = Math.max(from.start, start);
    const hi = Math.min(from.end, end);
    if (hi > lo) {
      const old = a.w / (from.end - from.start);
      const now = a.w / (end - start);
      const sx = a.x0 + (lo - from.start) * old;
      ctx.drawImage(copy, sx * dpr, (a.y0 - 2) * dpr, (hi - lo) * old * dpr, (a.h + 2) * dpr,
        a.x0 + (lo - start) * now, a.y0 - 2, (hi - lo) * now, a.h + 2);
    }
    drawTimeAxis(ctx, a, start, end, themeColors());
    return true;
  }

  destroy() {
    this.observer.disconnect();
  }
}

/** Vertical grid and time labels along the bottom of `a` for [start, end). */
export function drawTimeAxis(ctx, a, start, end, c) {
  const { ticks, step } = timeTicks(start, end, a.w);
  const x = (t) => a.x0 + ((t - start) / (end - start)) * a.w;
  ctx.font = c.font;
  ctx.textBaseline = "top";
  ctx.textAlign = "center";
  ctx.lineWidth = 1;
  for (const t of ticks) {
    const px = Math.round(x(t)) + 0.5;
    ctx.strokeStyle = c.grid;
    ctx.beginPath();
    ctx.moveTo(px, a.y0);
    ctx.lineTo(px, a.y1);
    ctx.stroke();
    ctx.fillStyle = c.muted;
    const label = formatTick(t, step);
    const w = ctx.measureText(label).width / 2;
    if (px - w > a.x0 - 20 && px + w < a.x1 + 8) ctx.fillText(label, px, a.y1 + 5);
  }
  ctx.strokeStyle = c.axis;
  ctx.beginPath();
  ctx.moveTo(a.x0, a.y1 + 0.5);
  ctx.lineTo(a.x1, a.y1 + 0.5);
  ctx.stroke();
}

/** Ticks for a value axis over [lo, hi] on a plot `height` pixels high. */
export function axisTicks(lo, hi, unit, height) {
  return valueTicks(lo, hi, unit, Math.max(2, Math.floor(height / 40)));
}

const tickLabel = (t, rate) => (rate && t.value !== 0 ? `${t.label}/s` : t.label);

/** The left margin that fits the labels of `ticks`. */
export function axisWidth(ctx, ticks, c, rate = false) {
  ctx.font = c.font;
  let w = 0;
  for (const t of ticks) w = Math.max(w, ctx.measureText(tickLabel(t, rate)).width);
  return Math.ceil(Math.max(24, w) + 12);
}

/** Horizontal grid and value labels along the left of `a` for [lo, hi]. */
export function drawValueAxis(ctx, a, lo, hi, ticks, c, rate = false) {
  const y = (v) => a.y1 - ((v - lo) / (hi - lo)) * a.h;
  ctx.font = c.font;
  ctx.textBaseline = "middle";
  ctx.textAlign = "right";
  ctx.lineWidth = 1;
  for (const t of ticks) {
    const py = Math.round(y(t.value)) + 0.5;
    if (py < a.y0 - 1 || py > a.y1 + 1) continue;
    ctx.strokeStyle = c.grid;
    ctx.beginPath();
    ctx.moveTo(a.x0, py);
    ctx.lineTo(a.x1, py);
    ctx.stroke();
    ctx.fillStyle = c.muted;
    ctx.fillText(tickLabel(t, rate), a.x0 - 6, Math.min(Math.max(py, a.y0 + 5), a.y1 - 4));
  }
}

/** A tidy top for an axis from 0 that holds `max`: the first tick at or above it. */
export function tidyTop(max, unit) {
  if (!(max > 0)) return 1;
  const ticks = valueTicks(0, max, unit, 4);
  const step = ticks.length > 1 ? ticks[1].value - ticks[0].value : max;
  return Math.ceil(max / step - 1e-9) * step;
}

const THRESHOLD_DASH = [6, 4];
const THRESHOLD_LABEL_GAP = 13; // px between the labels of thresholds drawn close together

/**
 * Alert thresholds over the plot `a` whose value axis runs over [lo, hi]: a dashed horizontal
 * line at each `value` with its condition as label, in the colour of its state (ok: muted,
 * pending: warn, firing: danger); one outside the axis is only named at that edge (▲ or ▼).
 * lines: [{id, value, label, state}]. Returns them as drawn, with `y` (null: off the axis) for
 * the browser tests.
 */
export function drawThresholds(ctx, a, lo, hi, lines, c) {
  const drawn = [];
  const colour = (state) => (state === "firing" ? c.danger : state === "pending" ? c.warn : c.muted);
  ctx.save();
  ctx.font = c.font;
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  const labels = [];
  for (const line of lines) {
    const inside = line.value >= lo && line.value <= hi && hi > lo;
    const y = inside ? Math.round(a.y1 - ((line.value - lo) / (hi - lo)) * a.h) + 0.5 : null;
    drawn.push({ ...line, y });
    if (inside) {
      ctx.strokeStyle = colour(line.state);
      ctx.lineWidth = line.state === "firing" ? 1.6 : 1.2;
      ctx.setLineDash(THRESHOLD_DASH);
      ctx.beginPath();
      ctx.moveTo(a.x0, y);
      ctx.lineTo(a.x1, y);
      ctx.stroke();
    }
    const text = `${y === null ? (line.value > hi ? "▲ " : "▼ ") : ""}${line.label}${line.state === "firing" ? " · firing" : ""}`;
    const ly = y === null ? (line.value > hi ? a.y0 + 7 : a.y1 - 7) : y - 7 < a.y0 + 6 ? y + 8 : y - 7;
    labels.push({ text, y: ly, color: colour(line.state) });
  }
  ctx.setLineDash([]);
  labels.sort((p, q) => p.y - q.y);
  let prev = -Infinity;
  for (const l of labels) {
    const ly = Math.max(l.y, prev + THRESHOLD_LABEL_GAP);
    prev = ly;
    const w = ctx.measureText(l.text).width;
    ctx.globalAlpha = 0.85;
    ctx.fillStyle = c.panel;
    ctx.fillRect(a.x1 - w - 7, ly - 6, w + 6, 12);
    ctx.globalAlpha = 1;
    ctx.fillStyle = l.color;
    ctx.fillText(l.text, a.x1 - 4, ly);
  }
  ctx.restore();
  return drawn;
}

const ANNOTATION_DASH = [2, 3];
const FLAG = 5; // px: the marker's flag at the top of the plot

/**
 * Annotations over [start, end) as markers on `a`: a dotted vertical line at each time (a band
 * for one with an end_time), a small flag at the top (alerts in the danger colour). Returns what
 * was drawn: [{id, kind, x, text}] (for the hover title and the tests).
 */
export function drawAnnotations(ctx, a, start, end, list, c) {
  const drawn = [];
  const x = (t) => a.x0 + ((t - start) / (end - start)) * a.w;
  ctx.save();
  for (const n of list || []) {
    const to = n.end_time ?? n.time;
    if (to < start || n.time >= end) continue;
    const x0 = Math.max(a.x0, x(n.time));
    const colour = n.kind === "alert" ? c.danger : c.accent;
    if (n.end_time) {
      ctx.globalAlpha = 0.08;
      ctx.fillStyle = colour;
      ctx.fillRect(x0, a.y0, Math.max(1, Math.min(a.x1, x(to)) - x0), a.h);
      ctx.globalAlpha = 1;
    }
    const px = Math.round(x0) + 0.5;
    ctx.strokeStyle = colour;
    ctx.lineWidth = 1;
    ctx.setLineDash(ANNOTATION_DASH);
    ctx.beginPath();
    ctx.moveTo(px, a.y0);
    ctx.lineTo(px, a.y1);
    ctx.stroke();
    ctx.setLineDash([]);
    ctx.fillStyle = colour;
    ctx.beginPath();
    ctx.moveTo(px, a.y0);
    ctx.lineTo(px + FLAG, a.y0 + FLAG / 2);
    ctx.lineTo(px, a.y0 + FLAG);
    ctx.fill();
    drawn.push({ id: n.id, kind: n.kind, x: px, text: n.text });
  }
  ctx.restore();
  return drawn;
}

/** The text of the annotations drawn within a few pixels of `x` (the canvas' hover title). */
export function annotationAt(drawn, x, reach = 4) {
  return (drawn || []).filter((d) => Math.abs(d.x - x) <= reach).map((d) => d.text).join("\n");
}
