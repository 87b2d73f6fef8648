// The time range every panel shows: live (follows the present) or fixed, with a span.

import { formatDuration, formatTime } from "./format.js";

// As the server's tidy steps (fleetscope.model.tiers.TIDY_STEPS): they divide a minute, an hour
// or a day, or are whole days; a step of 29.2 h would fold a daily cycle into a false wave.
const NICE_STEPS = [1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600, 900, 1200, 1800, 3600, 7200, 10800, 14400,
  21600, 43200, 86400];
const DAY = 86400;
export const TARGET_POINTS = 300;
export const MAX_SPAN = 10 * 366 * DAY; // as the longest history any tier keeps

/** Seconds per data point for `span` seconds at granularity `g`: a tidy step, a multiple of g. */
export function stepFor(span, g = 1, target = TARGET_POINTS) {
  const raw = span / target;
  const nice = NICE_STEPS.find((s) => s >= raw) || Math.ceil(raw / DAY) * DAY;
  return Math.max(g, Math.ceil(nice / g) * g);
}

/**
 * The shared time state. `live`: panels end at the latest data and follow it.
 * Otherwise they show [end - span, end). Listeners get the state after every change.
 */
export class TimeRange extends EventTarget {
  constructor() {
    super();
    this.live = true;
    this.span = 300;
    this.end = null; // epoch seconds when not live
  }

  get start() {
    return (this.end ?? Math.floor(Date.now() / 1000)) - this.span;
  }

  changed() {
    this.dispatchEvent(new Event("change"));
  }

  setSpan(span) {
    this.span = span;
    if (!this.live) this.end = Math.min(this.end, Math.floor(Date.now() / 1000));
    this.changed();
  }

  goLive() {
    this.live = true;
    this.end = null;
    this.changed();
  }

  /** Freeze at `end` (default: now). */
  pause(end = Math.floor(Date.now() / 1000)) {
    this.live = false;
    this.end = end;
    this.changed();
  }

  setRange(start, end) {
    this.live = false;
    this.span = Math.max(60, end - start);
    this.end = end;
    this.changed();
  }

  /** Zoom in (factor < 1) or out (> 1) about the range's end: 1 min to MAX_SPAN. */
  zoom(factor) {
    const span = Math.round(Math.min(MAX_SPAN, Math.max(60, this.span * factor)));
    if (this.live) return this.setSpan(span);
    const mid = this.end - this.span / 2;
    const end = Math.min(Math.floor(Date.now() / 1000), Math.round(mid + span / 2));
    return this.setRange(end - span, end);
  }

  /** Move by half a span back (-1) or forward (+1); forward past the present goes live. */
  pan(direction) {
    const now = Math.floor(Date.now() / 1000);
    const end = (this.live ? now : this.end) + (direction * this.span) / 2;
    if (end >= now) this.goLive();
    else this.pause(Math.round(end));
  }

  /**
   * The range in words, readable at every span: times to the second under an hour, dates
   * without times over a week, and the year whenever the range is not all in this year.
   */
  describe() {
    if (this.live) return `last ${formatDuration(this.span)}, live`;
    const from = formatTime(this.end - this.span);
    const to = formatTime(this.end);
    const today = formatTime(Date.now() / 1000).slice(0, 10);
    const withYear = from.slice(0, 4) !== to.slice(0, 4) || to.slice(0, 4) !== today.slice(0, 4);
    const date = (t) => (withYear ? t.slice(0, 10) : t.slice(5, 10));
    if (this.span >= 7 * DAY) return `${date(from)} – ${date(to)}`;
    const clock = (t) => (this.span < 3600 ? t.slice(11) : t.slice(11, 16));
    const day = (t) => (t.slice(0, 10) === today && !withYear ? clock(t) : `${date(t)} ${clock(t)}`);
    return `${day(from)} – ${from.slice(0, 10) === to.slice(0, 10) ? clock(to) : day(to)}`;
  }

  /** URL parameters that reproduce this range. */
  toParams(q) {
    q.delete("range");
    q.delete("from");
    q.delete("to");
    if (this.live) {
      if (this.span !== 300) q.set("range", String(this.span));
    } else {
      q.set("from", String(this.end - this.span));
      q.set("to", String(this.end));
    }
  }

  fromParams(q) {
    const from = Number(q.get("from"));
    const to = Number(q.get("to"));
    const range = Number(q.get("range"));
    if (from > 0 && to > from) {
      this.live = false;
      this.span = to - from;
      this.end = to;
    } else if (range >= 60) {
      this.span = Math.min(range, MAX_SPAN);
    }
  }
}
