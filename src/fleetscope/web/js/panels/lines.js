// The line panel (values and discrete breakdowns): a line chart or stacked areas of the top keys,
// drawn by charts/lines.js, with a legend of current values (click: highlight, double-click: isolate).

import { FINAL_LAG, KEPT_SECONDS, api, apiUrl, untilAborted } from "../net/api.js";
import { Body } from "./body.js";
import { cssVar, seriesColor } from "../lib/color.js";
import { h, fill } from "../lib/dom.js";
import { formatDuration, formatTime, formatValue } from "../lib/format.js";
import { stepFor } from "../lib/time.js";
import { LineChart } from "../charts/lines.js";

export const TOP_KEYS = 8;
export const TOP_CHOICES = [5, 8, 10, 20, 50];
export const COMPARE = { 86400: "a day earlier", 604800: "a week earlier" }; // options.compare: seconds back
const FOUND_ROWS = 50; // keys a legend search lists at most
// Answers kept for pans and zooms (by step, then start time), at most this many points a panel:
// about 13 ranges of 300 points; a breakdown's point (50 keys) is about 2.5 kB.
const CACHE_POINTS = 4000;
export const REST = "(rest)";
const OTHER = "(other)";
const PNG_MIN_PIXELS = 64; // the API's least picture (api/linechart.py MIN_PIXELS)

export class LineBody extends Body {
  constructor(panel) {
    super(panel);
    this.discrete = this.inst.shape === "discrete";
    this.pts = [];
    this.highlight = null;
    this.isolate = null;
    this.hoverIndex = null;
    this.colors = new Map();
    this.cache = new Map(); // step -> Map(start_time -> point), least recently used step first
    this.chart = new LineChart(panel.chartEl, { onHover: (i) => this.hovered(i) });
    this.legend = panel.legendEl;
    panel.el.classList.toggle("no-legend", !this.discrete);
    this.fromUrl();
    this.toolbar();
  }

  get times() {
    return this.pts.map((p) => p.start_time);
  }

  get options() {
    return this.panel.options;
  }

  toolbar() {
    const stacked = (this.options.chart || "stacked") === "stacked";
    const seg = (label, value, on) => h("button.seg", {
      "aria-pressed": String(on), onclick: () => {
        this.panel.setOption("chart", value);
        this.toolbar();
        this.draw();
      },
    }, label);
    const top = h("select.top-n", { "aria-label": "keys drawn", title: "keys drawn, by their total over the range",
      onchange: (e) => {
        this.panel.setOption("top", Number(e.target.value) === TOP_KEYS ? undefined : Number(e.target.value));
        this.draw();
      } }, TOP_CHOICES.map((n) => h("option", { value: String(n), selected: n === this.topN }, `top ${n}`)));
    const compare = h("select.compare", { "aria-label": "compare with the past", title: "draw the same range earlier, dashed",
      onchange: (e) => {
        this.panel.setOption("compare", Number(e.target.value) || undefined);
        this.load();
      } }, h("option", { value: "" }, "compare…"), Object.entries(COMPARE).map(([v, label]) =>
      h("option", { value: v, selected: Number(v) === this.options.compare }, `vs ${label}`)));
    this.compareEl = this.compareEl || h("span.compare-text", { role: "status" });
    if (!this.discrete) return void fill(this.panel.toolsEl, this.compareEl, compare);
    fill(this.panel.toolsEl, this.compareEl, compare, top, h("div.segmented", { role: "group", "aria-label": "chart style" },
      seg("Stacked", "stacked", stacked), seg("Lines", "lines", !stacked)),
    this.isolate ? h("button.chip", { title: "show every key", onclick: () => this.setIsolate(null) },
      `only ${this.isolate} ×`) : null);
  }

  /** How many keys are drawn (the rest folded): the panel's choice, else TOP_KEYS. */
  get topN() {
    return this.options.top || TOP_KEYS;
  }

  /** Keys picked from the legend's search: drawn whether or not they are in the top N. */
  get pinned() {
    return this.options.pinned || [];
  }

  /** The answers kept at `step` (made the most recently used). */
  cached(step) {
    const m = this.cache.get(step);
    if (m) {
      this.cache.delete(step);
      this.cache.set(step, m);
    }
    return m;
  }

  /** Keep `pts` (one answer) for later ranges; the least recently used steps go first when
   * the panel holds more than CACHE_POINTS. */
  remember(pts) {
    if (!pts.length) return;
    const m = this.cached(pts[0].duration) || new Map();
    this.cache.set(pts[0].duration, m);
    const at = Date.now() / 1000;
    for (const p of pts) m.set(p.start_time, { ...p, fetchedAt: at });
    let size = 0;
    for (const other of this.cache.values()) size += other.size;
    for (const [step, other] of this.cache) {
      if (size <= CACHE_POINTS || other === m) break;
      size -= other.size;
      this.cache.delete(step);
    }
    if (size > CACHE_POINTS) m.clear(); // one answer over the bound: keep none rather than grow
  }

  /** Whether a kept point is as the server will answer it again: over FINAL_LAG seconds before
   * it was fetched (late slots), and fetched under KEPT_SECONDS ago (imported logs). */
  final(p) {
    return p.start_time + p.duration <= p.fetchedAt - FINAL_LAG && Date.now() / 1000 - p.fetchedAt < KEPT_SECONDS;
  }

  /** The points of [start, end) at `step` from the cache: [points, first, last] with `first` and
   * `last` the indices of the first and last point missing or not final (-1: none). */
  fromCache(step, start, end) {
    const m = this.cached(step);
    const pts = [];
    let first = -1;
    let last = -1;
    for (let t = start, i = 0; t < end; t += step, i++) {
      const p = m?.get(t);
      if (!p || !this.final(p)) {
        if (first < 0) first = i;
        last = i;
      }
      pts.push(p || { start_time: t, duration: step, value: null, nsources: 0, expected: 0 });
    }
    return [pts, first, last];
  }

  /**
   * Draw `r` at once from the answers kept: those of its step, else of the step that covers
   * the most of it (a zoom in shows the coarser points until the finer arrive), gaps where none.
   */
  preview(r) {
    let best = null;
    for (const [step, m] of this.cache) {
      const from = Math.floor(r.start / step) * step;
      let have = 0;
      for (let t = from; t < r.end; t += step) if (m.has(t)) have += step;
      if (have && (!best || have > best.have || (have === best.have && step === r.step))) best = { step, from, have };
    }
    if (!best) return super.preview(r);
    const [pts] = this.fromCache(best.step, best.from, r.end);
    this.pts = pts;
    this.range = { ...r, step: best.step, n: pts.length };
    this.draw();
    return true;
  }

  /**
   * After a range is drawn, one request at a time, what the next move from it wants: the spans
   * before and after it at its step (a pan by half a span), the range at the step of half the
   * span (a zoom in) and, at the step of twice the span, the range with a span each side (a zoom
   * out); only what is not kept already. When the page moves on (`signal`), no other starts.
   */
  async prefetch(r, signal) {
    const g = this.inst.granularity;
    const span = r.end - r.start;
    const now = Date.now() / 1000;
    const aligned = (step, start, end) => [Math.floor(start / step) * step, Math.min(Math.ceil(end / step) * step,
      Math.ceil(now / step) * step)];
    const fine = stepFor(span / 2, g);
    const coarse = stepFor(span * 2, g);
    const wants = [[r.step, ...aligned(r.step, r.start - span, r.start)], [r.step, ...aligned(r.step, r.end, r.end + span)],
      [fine, ...aligned(fine, r.start, r.end)], [coarse, ...aligned(coarse, r.start - span, r.end + span)]];
    this.panel.el.dataset.prefetching = "true";
    try {
      for (const [step, start, end] of wants) {
        await this.idle(signal);
        if (signal.aborted) return;
        if (end <= start) continue;
        const [, first, last] = this.fromCache(step, start, end);
        if (first < 0) continue;
        // Not cancelled by a move: the move may want it, and waits for it (see fetch).
        const ahead = api.values(this.inst.id, { start_time: start + first * step, end_time: start + (last + 1) * step,
          duration: step, envelope: true }).then((pts) => {
          if (Array.isArray(pts) && pts.length && pts[0].duration === step) this.remember(pts);
        }).catch(() => null);
        this.ahead = ahead;
        await ahead;
        if (this.ahead === ahead) this.ahead = null;
      }
    } finally {
      if (this.controller?.signal === signal) delete this.panel.el.dataset.prefetching;
    }
  }

  async fetch(r, signal) {
    if (!r.live && !this.options.compare) {
      if (this.ahead) await untilAborted(this.ahead, signal); // a prefetch on its way: it may hold the range
      // What the cache holds of the range; only the rest is asked for (a pan: the half not shown
      // before; a range ending now: its last points).
      const [pts, missing, last] = this.fromCache(r.step, r.start, r.end);
      let first = missing;
      if (first >= 0 && last - first + 1 < r.n) {
        const rest = await api.values(this.inst.id, { start_time: r.start + first * r.step,
          end_time: r.start + (last + 1) * r.step, duration: r.step, envelope: true }, signal);
        if (Array.isArray(rest) && rest.length && rest[0].duration === r.step) {
          this.remember(rest);
          for (const p of rest) if (p.start_time >= r.start && p.start_time < r.end) pts[(p.start_time - r.start) / r.step] = p;
          first = -1;
        }
      }
      if (first < 0) {
        this.pts = pts;
        this.panel.setNote(null);
        this.past = null;
        return;
      }
    }
    const params = r.live ? { ndatapoints: r.n, duration: r.step, envelope: true }
      : { start_time: r.start, end_time: r.end, duration: r.step, envelope: true };
    let pts;
    let refused = null;
    try {
      pts = await api.values(this.inst.id, params, signal);
    } catch (err) {
      if (err.status !== 422 || !params.duration) throw err;
      // Over the server's budget for this step: let it choose one that fits, and say so.
      refused = err.message;
      delete params.duration;
      params.ndatapoints = r.n;
      pts = await api.values(this.inst.id, params, signal);
    }
    this.pts = Array.isArray(pts) ? pts : [pts];
    if (!r.live && this.pts.length && this.pts[0].duration === r.step) this.remember(this.pts);
    const asked = r.step;
    if (this.pts.length) Object.assign(r, { step: this.pts[0].duration, n: this.pts.length }); // as answered
    const res = this.pts[0]?.resolution;
    this.panel.setNote(refused || r.step > asked
      ? `coarser: ${formatDuration(r.step)} per point${res ? ` (history kept per ${formatDuration(res)})` : ""}`
      : null);
    if (refused) this.panel.noteEl.title = refused;
    this.past = null;
    const back = this.options.compare;
    if (back && this.pts.length) {
      const start = this.pts[0].start_time - back;
      const past = await api.values(this.inst.id, { start_time: start, end_time: start + r.n * r.step,
        duration: r.step }, signal);
      this.past = Array.isArray(past) ? past : [past];
    }
  }

  /** The value of a point as one number: a breakdown's total. */
  total(p) {
    if (p.value === null) return null;
    return this.discrete ? Object.values(p.value).reduce((a, b) => a + b, 0) : p.value;
  }

  /** The dashed line of the range `options.compare` seconds earlier (a breakdown: its total),
   * on the same steps; and the averages of both, said in the toolbar. */
  overlays() {
    const past = this.past;
    if (!past || !this.options.compare) {
      if (this.compareEl) this.compareEl.textContent = "";
      return [];
    }
    const values = this.pts.map((_, i) => (past[i] ? this.shown(past[i], this.total(past[i])) : null));
    const now = this.pts.map((p) => this.shown(p, this.total(p)));
    const mean = (xs) => {
      const ok = xs.filter((v) => v !== null);
      return ok.length ? ok.reduce((a, b) => a + b, 0) / ok.length : null;
    };
    const [a, b] = [mean(now), mean(values)];
    const opts = { rate: this.inst.kind === "interval" };
    const change = a !== null && b ? ` (${a >= b ? "+" : ""}${(((a - b) / b) * 100).toFixed(1)} %)` : "";
    this.compareEl.textContent = `avg ${formatValue(a, this.panel.unit, opts)} vs ${formatValue(b, this.panel.unit, opts)}${change}`;
    this.compareEl.title = `average over the range, and over the same range ${COMPARE[this.options.compare]}`;
    this.compareEl.dataset.now = String(a);
    this.compareEl.dataset.past = String(b);
    return [{ key: "(earlier)", label: COMPARE[this.options.compare], color: cssVar("--muted"), values }];
  }

  async fetchNext(from, step) {
    const p = await api.values(this.inst.id, { start_time: from, duration: step });
    if (this.pts.length && p.start_time === this.end) {
      this.pts.push(p);
      this.trim([this.pts]);
    }
  }

  accept(point) {
    const i = this.pts.findIndex((p) => p.start_time === point.start_time);
    if (i >= 0) this.pts[i] = point;
    else {
      this.pts.push(point);
      this.trim([this.pts]);
    }
    this.draw();
  }

  /** Per-second rates for interval metrics (summed over a point's duration), levels as they are. */
  scale(p) {
    return this.inst.kind === "interval" ? p.duration : 1;
  }

  /** Whether a point's bucket is over: one that ends in the future holds only part of its sum,
   * and would draw a false drop at the right edge (it is left out of the chart and legend). */
  complete(p) {
    return p.start_time + p.duration <= Date.now() / 1000;
  }

  /** The value of `p` drawn (null: a gap, or a bucket not over yet). */
  shown(p, v) {
    return p.value === null || !this.complete(p) ? null : v / this.scale(p);
  }

  colorOf(key) {
    if (!this.colors.has(key)) this.colors.set(key, this.colors.size);
    return seriesColor(this.colors.get(key));
  }

  /**
   * The envelope band (see charts/lines.js): per point, the least and the largest of the finer
   * points the API found inside it (a breakdown: of their totals), as drawn (per second for rates),
   * and the point's own value; for the one value, or the top of a stack of every key. None for
   * separate lines of a breakdown or an isolated key (the envelope is of the total).
   */
  band() {
    const stacked = this.discrete && (this.options.chart || "stacked") === "stacked";
    if ((this.discrete && !stacked) || this.isolate || !this.pts.some((p) => p.envelope)) return null;
    const lo = [];
    const hi = [];
    for (const p of this.pts) {
      const v = this.shown(p, this.total(p));
      const e = p.envelope;
      const per = this.inst.kind === "interval" && e ? e.resolution : 1;
      lo.push(v === null ? null : e ? Math.min(v, e.min / per) : v);
      hi.push(v === null ? null : e ? Math.max(v, e.max / per) : v);
    }
    return { color: this.discrete ? cssVar("--muted") : seriesColor(0), lo, hi };
  }

  /** Series of the top keys (by total over the range) and the rest; or the one value. */
  series() {
    const pts = this.pts;
    if (!this.discrete) {
      return [{ key: "value", label: "value", color: seriesColor(0), values: pts.map((p) => this.shown(p, p.value)) }];
    }
    const totals = new Map();
    for (const p of pts) {
      if (!p.value) continue;
      for (const [k, v] of Object.entries(p.value)) totals.set(k, (totals.get(k) || 0) + v);
    }
    const ranked = [...totals.entries()].filter(([k]) => k !== OTHER).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
    this.ranked = ranked; // every key of the range, largest total first: what the legend searches
    const top = ranked.slice(0, this.topN).map(([k]) => k);
    for (const k of this.pinned) if (totals.has(k) && !top.includes(k)) top.push(k);
    for (const k of top) this.colorOf(k);
    const inTop = new Set(top);
    const out = top.map((key) => ({ key, label: key, color: this.colorOf(key),
      values: pts.map((p) => this.shown(p, p.value?.[key] || 0)) }));
    const restKeys = [...totals.keys()].filter((k) => !inTop.has(k));
    if (restKeys.length) {
      out.push({ key: REST, label: `${REST} ${restKeys.length} key${restKeys.length > 1 ? "s" : ""}`,
        color: cssVar("--rest"),
        values: pts.map((p) => {
          if (p.value === null) return null;
          let s = 0;
          for (const [k, v] of Object.entries(p.value)) if (!inTop.has(k)) s += v;
          return this.shown(p, s);
        }) });
    }
    return out;
  }

  draw() {
    if (!this.range) return;
    const unit = this.panel.unit;
    const rate = this.inst.kind === "interval";
    this.current = this.series();
    if (this.highlight && !this.current.some((s) => s.key === this.highlight)) this.highlight = null;
    const start = this.pts.length ? this.pts[0].start_time : 0;
    const end = start + this.range.n * this.range.step;
    this.chart.setData({ start, end, step: this.range.step, times: this.times, series: this.current, unit, rate,
      overlays: this.overlays(), band: this.band() },
      { stacked: this.discrete && (this.options.chart || "stacked") === "stacked", highlight: this.highlight,
        isolate: this.isolate });
    const present = this.pts.filter((p) => p.value !== null);
    this.panel.setPoints(present.length, present.at(-1)?.start_time);
    const last = present.findLast((p) => this.complete(p));
    if (!this.range.live || !this.panel.valueEl.textContent) this.panel.valueEl.textContent = last ? this.headline(last) : "";
    this.legendRows();
    this.panel.firstDraw();
  }

  /** The index whose values the legend shows: the hovered one, else the latest complete one
   * with data (a bucket not over yet holds only part of its sum). */
  shownIndex() {
    if (this.hoverIndex !== null) return this.hoverIndex;
    for (let i = this.pts.length - 1; i >= 0; i--) if (this.pts[i].value !== null && this.complete(this.pts[i])) return i;
    return null;
  }

  hovered(i) {
    this.hoverIndex = i;
    this.legendRows();
    const tip = this.panel.tipEl;
    if (i === null || !this.current) return void tip.classList.remove("show");
    const p = this.pts[i];
    const unit = this.panel.unit;
    const rate = this.inst.kind === "interval";
    const rows = this.current.filter((s) => !this.isolate || s.key === this.isolate)
      .map((s) => ({ s, v: s.values[i] }))
      .filter(({ v }) => v !== null && v !== undefined)
      .sort((a, b) => b.v - a.v);
    fill(tip, h("div.tip-time", {}, formatTime(p.start_time), p.duration > 1 ? ` (+${p.duration} s)` : ""),
      p.value === null ? h("div.tip-empty", {}, "no data") : h("table.tip-table", {}, rows.map(({ s, v }) =>
        h("tr", {}, h("td", {}, h("span.swatch", { style: { background: s.color } })), h("td.k", {}, s.label),
          h("td.v", {}, formatValue(v, unit, { rate }))))));
    tip.classList.add("show");
    const a = this.chart.a || this.chart.area();
    const x = a.x0 + ((p.start_time + p.duration / 2 - this.pts[0].start_time) / (this.range.n * this.range.step)) * a.w;
    this.panel.placeTip(x, a.y0 + 4);
  }

  /**
   * The legend: the time shown, the total, and a row per series. Rows are built when the keys
   * change and updated in place otherwise: a live point arrives every second, and a row rebuilt
   * between the press and the release of a click would lose the click (the browser then sends
   * it to the list, not to the row).
   */
  legendRows() {
    if (!this.discrete || !this.current) return;
    const i = this.shownIndex();
    const unit = this.panel.unit;
    const rate = this.inst.kind === "interval";
    const total = i === null || this.pts[i].value === null ? null
      : Object.values(this.pts[i].value).reduce((a, b) => a + b, 0) / this.scale(this.pts[i]);
    const keys = this.current.map((s) => s.key).join("\n");
    if (this.legendKeys !== keys) {
      this.legendKeys = keys;
      this.legendTime = h("span");
      this.legendTotal = h("span.v");
      this.rows = new Map(this.current.map((s) => [s.key, this.legendRow(s.key)]));
      const query = this.search?.value || "";
      this.search = h("input.legend-search", { type: "search", placeholder: `find among ${this.ranked?.length || 0} keys`,
        "aria-label": "find a key to draw", value: query, oninput: () => this.foundRows() });
      this.found = h("ul.legend-list.legend-found");
      fill(this.legend, h("div.legend-head", {}, this.legendTime, this.legendTotal),
        (this.ranked?.length || 0) > this.topN ? this.search : null,
        h("ul.legend-list", {}, [...this.rows.values()].map((r) => r.el)), this.found);
      this.foundRows();
    }
    const shown = i !== null ? this.pts[i] : null;
    this.legendTime.textContent = !shown ? "" : this.hoverIndex !== null || !this.range.live || shown.duration > this.inst.granularity
      ? formatTime(shown.start_time).slice(this.range.span >= 86400 ? 5 : 11, 16) : "now";
    this.legendTime.title = shown ? `${formatTime(shown.start_time)} (+${formatDuration(shown.duration)})` : "";
    this.legendTotal.textContent = formatValue(total, unit, { rate });
    for (const s of this.current) {
      const row = this.rows.get(s.key);
      row.el.className = ["legend-row", s.key === this.highlight ? "hl" : "", this.highlight && s.key !== this.highlight ? "dim" : "",
        this.isolate === s.key ? "iso" : "", this.isolate && this.isolate !== s.key ? "dim" : ""].filter(Boolean).join(" ");
      row.el.title = `${s.label}: click to highlight, double-click to show only this key`;
      row.swatch.style.background = s.color;
      row.label.textContent = s.label;
      row.value.textContent = formatValue(i === null ? null : s.values[i], unit, { rate });
    }
  }

  /** Keys of the range matching the legend's search that are not drawn: click one to draw it. */
  foundRows() {
    if (!this.found) return;
    const q = (this.search?.value || "").trim().toLowerCase();
    if (!q) return void fill(this.found);
    const drawn = new Set(this.current.map((s) => s.key));
    const hits = (this.ranked || []).filter(([k]) => !drawn.has(k) && k.toLowerCase().includes(q));
    const unit = this.panel.unit;
    const span = this.pts.reduce((a, p) => a + (p.value === null ? 0 : p.duration), 0) || 1;
    const rate = this.inst.kind === "interval";
    fill(this.found, hits.slice(0, FOUND_ROWS).map(([k, total]) => h("li.legend-row.found", {
      dataset: { key: k }, tabindex: 0, title: `${k}: click to draw it`,
      onclick: () => this.pin(k),
      onkeydown: (e) => (e.key === "Enter" || e.key === " ") && (e.preventDefault(), this.pin(k)),
    }, h("span.swatch"), h("span.k", {}, k), h("span.v", {}, formatValue(rate ? total / span : total / this.pts.length, unit, { rate })))),
    hits.length > FOUND_ROWS ? h("li.legend-more", {}, `${hits.length - FOUND_ROWS} more: type more of the name`) : null,
    hits.length ? null : h("li.legend-more", {}, "no other key matches"));
  }

  /** Draw `key` (from the search) in its own colour; pinned keys stay drawn (and saved). */
  pin(key) {
    this.panel.setOption("pinned", [...this.pinned.filter((k) => k !== key), key]);
    this.search.value = "";
    this.draw();
  }

  unpin(key) {
    const left = this.pinned.filter((k) => k !== key);
    this.panel.setOption("pinned", left.length ? left : undefined);
    this.draw();
  }

  /** One legend row of series `key`, filled in by legendRows. */
  legendRow(key) {
    const swatch = h("span.swatch");
    const label = h("span.k");
    const value = h("span.v");
    const el = h("li.legend-row", {
      dataset: { key },
      tabindex: 0,
      onkeydown: (e) => {
        if (e.key === "Enter" || e.key === " ") {
          e.preventDefault();
          if (e.shiftKey) this.setIsolate(this.isolate === key ? null : key);
          else this.setHighlight(this.highlight === key ? null : key);
        }
      },
      onclick: () => this.setHighlight(this.highlight === key ? null : key),
      ondblclick: () => this.setIsolate(this.isolate === key ? null : key),
    }, swatch, label, value, this.pinned.includes(key) ? h("button.unpin", {
      type: "button", title: "stop drawing this key", "aria-label": `stop drawing ${key}`,
      onclick: (e) => { e.stopPropagation(); this.unpin(key); } }, "×") : null);
    return { el, swatch, label, value };
  }

  setHighlight(key) {
    this.highlight = key;
    this.panel.selectionChanged();
    this.chart.setData(this.chart.data, { highlight: key });
    this.legendRows();
  }

  setIsolate(key) {
    this.isolate = key;
    if (key) this.highlight = key;
    this.panel.selectionChanged();
    this.toolbar();
    this.chart.setData({ ...this.chart.data, band: this.band() }, { isolate: key, highlight: this.highlight });
    this.legendRows();
  }

  /** A selection the address holds for this panel (see App.selectionsToUrl). */
  fromUrl() {
    const mine = `${this.inst.id}:`;
    for (const sel of new URLSearchParams(location.search).getAll("sel")) {
      if (!sel.startsWith(mine)) continue;
      const [how, ...rest] = sel.slice(mine.length).split(":");
      const key = rest.join(":");
      if (!key) continue;
      this.highlight = key;
      if (how === "i") this.isolate = key;
    }
  }

  /** This panel's selection for the address: "h:KEY", "i:KEY" or null. */
  urlSelection() {
    if (this.isolate) return `i:${this.isolate}`;
    return this.highlight ? `h:${this.highlight}` : null;
  }

  /** Escape: no highlight, no isolated key. */
  clearSelection() {
    if (this.isolate) this.setIsolate(null);
    if (this.highlight) this.setHighlight(null);
  }

  /** The points shown as CSV from the API (its export: any range, every key), and the API's own
   * PNG rendering of the chart shown (same range, step, keys, style and value axis, at the
   * chart's size; the keys not drawn summed as (other); the envelope band and the earlier range
   * when drawn; times in the browser's zone). */
  exports() {
    const r = this.range;
    const start = this.pts[0]?.start_time;
    if (!r || start === undefined) return null;
    const range = { start_time: start, end_time: start + r.n * r.step };
    const drawn = (this.current || []).map((s) => s.key).filter((k) => k !== REST);
    return {
      csv: apiUrl(`/instrumentations/${this.inst.id}/export`, { ...range, step: r.step, format: "csv" }),
      png: apiUrl(`/instrumentations/${this.inst.id}/value`, {
        ...range, duration: r.step, format: "png",
        width: Math.max(PNG_MIN_PIXELS, Math.round(this.chart.width)),
        height: Math.max(PNG_MIN_PIXELS, Math.round(this.chart.height)),
        selected: this.discrete ? (this.isolate ? [this.isolate] : drawn) : undefined,
        other: this.isolate ? false : undefined,
        stacked: this.discrete && (this.options.chart || "stacked") === "stacked",
        ymax: this.chart.top,
        envelope: this.band() ? true : undefined,
        compare: this.past && this.options.compare ? this.options.compare : undefined,
        tz: Intl.DateTimeFormat().resolvedOptions().timeZone }),
    };
  }

  /** The key a drill-down filters to, or null. */
  selection() {
    const key = this.isolate || this.highlight;
    if (!key || key === REST || key === OTHER) return null;
    return { key };
  }

  /** The largest value drawn: of the value, or of any one key of a breakdown (per second for rates). */
  largestShown() {
    let max = 0;
    for (const p of this.pts) {
      if (p.value === null) continue;
      const values = this.discrete ? Object.entries(p.value).filter(([k]) => k !== OTHER).map(([, v]) => v) : [p.value];
      for (const v of values) max = Math.max(max, v / this.scale(p));
    }
    return max;
  }

  /** The value shown big in the header for a live point. */
  headline(point) {
    if (point.value === null) return null;
    const v = this.discrete ? Object.values(point.value).reduce((a, b) => a + b, 0) : point.value;
    return formatValue(v / this.scale(point), this.panel.unit, { rate: this.inst.kind === "interval" });
  }

  redrawTheme() {
    this.draw();
  }

  destroy() {
    super.destroy();
    this.chart.destroy();
  }
}
