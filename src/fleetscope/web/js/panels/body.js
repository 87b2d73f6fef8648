// What every panel body shares: the range it shows and how live points extend it.

import { TimeRange, stepFor } from "../lib/time.js";

const IDLE_WAIT_MS = 50; // how often a prefetch looks whether the panels are still loading

/**
 * A panel's chart and the data behind it. Subclasses implement fetch(range, signal) (which
 * may correct range.step and range.n to what the API answered: history can be coarser),
 * fetchNext(from, step) (one data point or column starting at `from`), accept(point)
 * (a per-slot point from the stream when step == granularity), draw() and largestShown() (in
 * chart units, for the threshold an alert rule starts with); `chart` draws thresholds.
 */
export class Body {
  constructor(panel) {
    this.panel = panel;
    this.inst = panel.inst;
    this.controller = null;
    this.fetchingNext = false;
    this.range = null;
  }

  /** The range to ask for: {live, step, n, start, end} (start/end only when not live). */
  wanted(time = this.panel.app.time) {
    const g = this.inst.granularity;
    const step = stepFor(time.span, g);
    const n = Math.max(1, Math.ceil(time.span / step));
    if (time.live) return { live: true, step, n, span: n * step };
    const end = Math.ceil(time.end / step) * step;
    return { live: false, step, n, span: n * step, start: end - n * step, end };
  }

  /**
   * Fetch the range wanted now and draw it. While a load is on its way the panel's element
   * carries data-loading: what it shows (data-state) is of the range before, which is how a
   * test knows that, after pausing or selecting, the cells under the pointer will not move.
   */
  async load() {
    this.controller?.abort();
    const controller = new AbortController();
    this.controller = controller;
    const el = this.panel.el;
    el.dataset.loading = "true";
    const range = this.wanted();
    // A range the page moved to (a pan, a zoom) is shown at once from what the panel holds, then
    // refined when the answer arrives: data-wanted names it, data-shown the range drawn (either
    // way), and data-loading stays until the answer is drawn.
    el.dataset.wanted = range.live ? "live" : `${range.start}:${range.end}`;
    if (!range.live && this.preview(range)) el.dataset.shown = el.dataset.wanted;
    try {
      await this.fetch(range, controller.signal);
      if (controller.signal.aborted) return;
      this.range = range;
      this.panel.setError(null);
      this.draw();
      el.dataset.shown = el.dataset.wanted;
      if (!range.live) this.prefetch(range, controller.signal);
    } catch (err) {
      if (err.name !== "AbortError") this.panel.setError(err);
    } finally {
      if (this.controller === controller) delete this.panel.el.dataset.loading;
    }
  }

  /** Draw `range` at once from what the panel holds, before its answer arrives; whether it
   * could. Here: the chart's image moved and stretched (a body that keeps data does better). */
  preview(range) {
    return Boolean(this.range) && !this.range.live && this.chart.preview(range.start, range.end);
  }

  /** The ranges the page's next pan (back, forward) or zoom (in, out) would want; not live ones. */
  neighbours() {
    const time = this.panel.app.time;
    const out = [];
    for (const move of [(t) => t.pan(-1), (t) => t.pan(1), (t) => t.zoom(0.5), (t) => t.zoom(2)]) {
      const next = Object.assign(new TimeRange(), { live: time.live, span: time.span, end: time.end });
      move(next);
      if (!next.live) out.push(this.wanted(next));
    }
    return out;
  }

  /** Resolves once no panel is loading (or `signal` ended): a prefetch must not delay another
   * panel's answer. */
  async idle(signal) {
    while (!signal.aborted && document.querySelector("section.panel[data-loading]")) {
      await new Promise((resolve) => setTimeout(resolve, IDLE_WAIT_MS));
    }
  }

  /**
   * Ask, in the background and one at a time, for what a next pan or zoom from `range` will
   * want, so that it is drawn without waiting: here, `fetchAhead(range)` of each of
   * `neighbours()` (a body whose answers net/api.js keeps). When the page moves on (`signal`),
   * no other starts; the one on its way ends and is kept (the move may want it).
   */
  async prefetch(_range, signal) {
    if (!this.fetchAhead) return;
    this.panel.el.dataset.prefetching = "true";
    try {
      for (const r of this.neighbours()) {
        await this.idle(signal);
        if (signal.aborted) return;
        await this.fetchAhead(r).catch(() => null);
      }
    } finally {
      if (this.controller?.signal === signal) delete this.panel.el.dataset.prefetching;
    }
  }

  /** Start times of the points shown, oldest first. */
  get times() {
    return [];
  }

  /** The end of the last point shown (where the next one starts). */
  get end() {
    const t = this.times;
    return t.length ? t.at(-1) + this.range.step : null;
  }

  /** A final point from the stream; only called in live mode. */
  onPoint(point) {
    if (!this.range || !this.range.live) return;
    const g = this.inst.granularity;
    const t = point.start_time;
    const end = this.end;
    if (end === null) return void this.load();
    if (this.range.step === g) {
      if (t === end || (t < end && t >= this.times[0])) this.accept(point);
      else if (t > end) this.load(); // missed some: reload the range
      return;
    }
    if (t + g >= end + this.range.step && !this.fetchingNext) {
      this.fetchingNext = true;
      this.fetchNext(end, this.range.step)
        .then(() => this.draw())
        .catch((err) => err.name !== "AbortError" && this.panel.setError(err))
        .finally(() => {
          this.fetchingNext = false;
        });
    }
  }

  /** Alert thresholds to draw over the chart (see rules.js): [{id, value, label, state}]. */
  setThresholds(lines) {
    this.chart.setThresholds(lines);
  }

  /** Drop points older than the range (after appending). */
  trim(arrays) {
    const extra = this.times.length - this.range.n;
    if (extra > 0) for (const a of arrays) a.splice(0, extra);
  }

  destroy() {
    this.controller?.abort();
  }
}
