// A panel's alert rules: fetched for its instrumentation, turned into threshold lines in the units
// its chart draws, and the condition suggested for a new rule ("Alert when…").
//
// Units: a rule compares what one slot holds (model/alerts.py), a line panel draws an interval
// metric per second (a slot's sum over its duration). So for an interval metric a threshold of
// X per slot of g seconds is drawn at X / g, and a suggestion made from the chart is multiplied
// back by g. Levels (point metrics) and distributions are drawn as the rule compares them.

import { api } from "../net/api.js";
import { formatCount, formatDuration, formatValue } from "../lib/format.js";

export const DISTRIBUTIONS = new Set(["histogram", "discrete_histogram"]);
// What each chart can draw on its value axis: a line chart the value (of the whole or of a key),
// a heatmap a percentile or the average. "no data" and "sources < expected" have no line.
const DRAWN = { lines: new Set(["value"]), heatmap: new Set(["percentile", "average"]) };
const HEADROOM = 1.1; // a suggested threshold is at least this much above the largest value shown
const UNIT_WORDS = { s: "seconds" };
const ROUND_STEPS = [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]; // round numbers within a power of ten

/** The first round number (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8 times a power of ten) at or above x. */
export function roundUp(x) {
  if (!(x > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(x));
  const m = ROUND_STEPS.find((s) => s * p >= x * (1 - 1e-12));
  return Number((m * p).toPrecision(6));
}

/** Seconds per slot that a line panel divides an interval metric's values by (1 otherwise). */
export function perSlot(inst) {
  return !DISTRIBUTIONS.has(inst.shape) && inst.kind === "interval" ? inst.granularity : 1;
}

/** The unit what a rule compares is in: the numeric field's for a percentile or average, else the metric's. */
export function comparedUnit(condition, inst, metric) {
  const numeric = ["percentile", "average"].includes(condition?.what) && inst.numeric;
  if (!metric) return { base: "number", power: 0, name: "number" };
  if (numeric) return metric.fields.find((f) => f.name === inst.numeric)?.type || metric.unit;
  return metric.unit;
}

/** A value an alert observed, as people read it: "1.9 s/s", "230 ms", "silent for 45 s". */
export function observedText(value, condition, inst, metric) {
  if (value === null || value === undefined) return "no data";
  if (condition?.what === "nodata") return `silent for ${formatDuration(Math.round(value))}`;
  if (condition?.what === "sources") return `${formatCount(value)} missing`;
  if (!inst) return formatCount(value);
  if (condition?.what === "value" && DISTRIBUTIONS.has(inst.shape)) return `n ${formatCount(value)}`;
  const rate = condition?.what === "value" && inst.kind === "interval";
  return formatValue(rate ? value / inst.granularity : value, comparedUnit(condition, inst, metric), { rate });
}

export class PanelRules {
  constructor(panel) {
    this.panel = panel;
    this.rules = [];
  }

  get inst() {
    return this.panel.inst;
  }

  get distribution() {
    return DISTRIBUTIONS.has(this.inst.shape);
  }

  /** Fetch the rules on this instrumentation and draw them. */
  async load() {
    try {
      this.rules = await api.alertRules(this.inst.id);
    } catch {
      return; // the next refresh asks again; meanwhile the panel keeps what it drew
    }
    this.draw();
  }

  /** Threshold lines in chart units: [{id, value, label, state}] (state: ok, pending, firing). */
  lines() {
    const drawn = DRAWN[this.distribution ? "heatmap" : "lines"];
    const g = perSlot(this.inst);
    return this.rules.filter((r) => drawn.has(r.condition.what)).map((r) => ({
      id: r.id, value: r.condition.threshold / g, label: r.when, state: this.panel.app.alerting.stateOf(r.id),
    }));
  }

  draw() {
    this.panel.el.dataset.rules = String(this.rules.length);
    this.panel.body.setThresholds(this.lines());
  }

  /** The condition a new rule starts with: `value > X`, `each key > X` or `p99 > X`, with X a
   * round number a bit above the largest value the panel shows now. */
  suggestion() {
    const largest = this.panel.body.largestShown() * (this.distribution ? 1 : perSlot(this.inst));
    const x = roundUp(largest * HEADROOM);
    // A percentile of percentages is at most 100 (a cell at the top of the axis would suggest 120).
    if (this.distribution) return `p99 > ${this.panel.unit.base === "percent" ? Math.min(x, 100) : x}`;
    return this.inst.discrete ? `each key > ${x}` : `value > ${x}`;
  }

  /** What a bare number in a condition means here, for the form's hint. */
  hint() {
    const unit = this.panel.unit;
    const g = perSlot(this.inst);
    const per = g > 1 ? ` per ${g} s slot` : this.inst.kind === "interval" && !this.distribution ? " per second" : "";
    const what = this.distribution ? `percentiles (p50, p99.9) or the average (avg) of ${this.inst.numeric}`
      : this.inst.discrete ? `each ${this.inst.discrete} (each key), one (key "x") or the total (value)` : "the value";
    const suffix = { seconds: ", or 200ms", percent: ", or 80%", bytes: ", or 4MiB" }[unit.base] || "";
    const inUnit = unit.base === "number" ? "" : ` in ${UNIT_WORDS[unit.name] || unit.name}`;
    return `Compares ${what}: a number${inUnit}${per}${suffix}. Also: no data for 30s.`;
  }
}
