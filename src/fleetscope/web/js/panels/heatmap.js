// The heatmap panel (distributions): the API's JSON matrix, drawn by charts/heatmap.js, with hover
// details, key selection from a cell or from a search over every key of the range, vertical drag
// to zoom, average/percentile lines, and the same lines a day or a week earlier (compare).

import { api, apiUrl } from "../net/api.js";
import { Body } from "./body.js";
import { COMPARE } from "./lines.js";
import { baseColor, keyColor } from "../lib/color.js";
import { debounce, fill, h } from "../lib/dom.js";
import { formatCount, formatDuration, formatTime, formatValue } from "../lib/format.js";
import { HeatmapChart } from "../charts/heatmap.js";

export const NBUCKETS = 100;
export const OVERLAYS = ["avg", "p50", "p90", "p99"];
const RESCALE_EVERY = 60; // live columns between automatic rescales of the y axis
const FOUND_ROWS = 50; // keys the search lists at most (type more to narrow)
const KEYS_STALE = 10; // the search's keys are asked again once the map moved a tenth of its width

const quantile = (name) => Number(name.slice(1)) / 100;

export class HeatBody extends Body {
  constructor(panel) {
    super(panel);
    this.m = null;
    this.overlays = {};
    this.pinned = null;
    this.hover = null;
    this.details = new Map();
    this.sinceRescale = 0;
    this.chart = new HeatmapChart(panel.chartEl, {
      onHover: (cell) => this.hovered(cell),
      onClick: (cell) => this.pin(cell),
      onZoom: (lo, hi) => this.zoom(lo, hi),
    });
    this.fetchDetails = debounce((cell) => this.loadDetails(cell), 120);
    this.past = null; // the lines of the range options.compare seconds earlier: {avg, pNN: [v]}
    this.averages = null; // {now, past}: the averages of both ranges, over every key
    this.keyList = null; // {range: {start, step, n}, keys: [{key, count}], total}: every key, once asked
    this.legendBody = h("div.legend-body");
    this.searchBox = this.inst.discrete ? this.keySearch() : null;
    fill(this.panel.legendEl, this.searchBox, this.legendBody);
    this.toolbar();
  }

  /** A search over every key of the range's breakdown, not only those selected: a key found is
   * selected (then Highlight, Isolate or Exclude apply to it). The keys are asked for when the
   * search is first used in a range, so that a dashboard of heatmaps asks for nothing more. */
  keySearch() {
    const field = this.inst.discrete;
    this.searchEl = h("input.legend-search", { type: "search", placeholder: `find any ${field}…`,
      "aria-label": `find a ${field} to select`, autocomplete: "off",
      onfocus: () => this.loadKeys(), oninput: () => this.loadKeys() });
    this.foundEl = h("ul.legend-list.legend-found", { "aria-label": `${field} values found` });
    return h("div.key-search", {}, this.searchEl, this.foundEl);
  }

  /** The range shown: {start, step, n}. */
  shownRange() {
    const m = this.m;
    return m && m.times.length ? { start: m.start_time, step: m.step, n: m.times.length } : null;
  }

  /** Whether the keys listed for range `r` still do for the range shown: the same columns, or
   * moved on by at most a tenth of them (a live map moves a column a slot; asking every slot
   * while a search is open would cost a request a second for keys that barely change). */
  keysFit(r) {
    const now = this.shownRange();
    return Boolean(r && now && r.step === now.step && r.n === now.n
      && Math.abs(now.start - r.start) <= (now.n * now.step) / KEYS_STALE);
  }

  async loadKeys() {
    const r = this.shownRange();
    if (!r) return this.foundRows();
    if (!this.keysFit(this.keyList?.range) && !this.keysFit(this.keysAsked)) {
      this.keysAsked = r;
      try {
        const got = await api.heatmapKeys(this.inst.id, { start_time: r.start, end_time: r.start + r.n * r.step,
          ndatapoints: r.n });
        if (this.keysFit(r)) this.keyList = { range: r, keys: got.keys, total: got.total_keys };
      } catch (err) {
        this.keyList = { range: r, keys: [], total: 0, error: err.message };
      } finally {
        if (this.keysAsked === r) this.keysAsked = null;
      }
    }
    this.foundRows();
  }

  /** The keys matching the search that are not selected: click one (or Enter) to select it. */
  foundRows() {
    if (!this.foundEl) return;
    const q = this.searchEl.value.trim().toLowerCase();
    const list = this.keysFit(this.keyList?.range) ? this.keyList : null;
    if (!q || !list) return void fill(this.foundEl);
    if (list.error) return void fill(this.foundEl, h("li.legend-more", {}, list.error));
    const chosen = new Set(this.selected);
    const hits = list.keys.filter(({ key }) => !chosen.has(key) && key.toLowerCase().includes(q));
    const pick = (key) => {
      this.searchEl.value = "";
      fill(this.foundEl);
      this.select(key, true);
    };
    fill(this.foundEl, hits.slice(0, FOUND_ROWS).map(({ key, count }) => h("li.legend-row.found", {
      dataset: { key }, tabindex: 0, title: `${key}: click to select it`, onclick: () => pick(key),
      onkeydown: (e) => (e.key === "Enter" || e.key === " ") && (e.preventDefault(), pick(key)),
    }, h("span.swatch"), h("span.k", {}, key), h("span.v", {}, `n ${formatCount(count)}`))),
    hits.length > FOUND_ROWS ? h("li.legend-more", {}, `${hits.length - FOUND_ROWS} more: type more of the name`) : null,
    hits.length ? null : h("li.legend-more", {}, `none of the ${list.total} keys matches`));
  }

  get times() {
    return this.m ? this.m.times : [];
  }

  get options() {
    return this.panel.options;
  }

  get selected() {
    return this.options.selected || [];
  }

  get zoomed() {
    return this.options.ymin !== undefined && this.options.ymax !== undefined;
  }

  toolbar() {
    const o = this.options;
    const coloring = o.coloring || "rank";
    const overlays = new Set(o.overlays || []);
    const seg = (label, value, title) => h("button.seg", {
      "aria-pressed": String(coloring === value), title,
      onclick: () => {
        this.panel.setOption("coloring", value);
        this.toolbar();
        this.chart.setData(this.m, { coloring: value });
      },
    }, label);
    const option = (name, value, label, title) => h("button.seg", {
      "aria-pressed": String((name === "scale" ? this.scale : this.keyMode) === value), title,
      dataset: { [name]: value },
      onclick: () => {
        const fallback = name === "scale" ? "linear" : "highlight";
        this.panel.setOption(name, value === fallback ? undefined : value);
        this.toolbar();
        this.load();
      },
    }, label);
    const compare = h("select.compare", { "aria-label": "compare with the past",
      title: "the average and percentile lines of the same range earlier, dashed",
      onchange: (e) => {
        this.panel.setOption("compare", Number(e.target.value) || undefined);
        this.load();
      } }, h("option", { value: "" }, "compare…"), Object.entries(COMPARE).map(([v, label]) =>
      h("option", { value: v, selected: Number(v) === o.compare }, `vs ${label}`)));
    this.compareEl = this.compareEl || h("span.compare-text", { role: "status" });
    fill(this.panel.toolsEl, this.compareEl, compare,
      h("div.segmented", { role: "group", "aria-label": "colouring" },
        seg("Rank", "rank", "colour by rank: structure at every level"),
        seg("Linear", "linear", "colour by count: where the mass is")),
      h("div.segmented", { role: "group", "aria-label": "lines over the map" }, OVERLAYS.map((name) =>
        h("button.seg", {
          "aria-pressed": String(overlays.has(name)), dataset: { overlay: name },
          title: name === "avg" ? "draw the average" : `draw the ${name.slice(1)}th percentile`,
          onclick: () => {
            const next = new Set(o.overlays || []);
            if (next.has(name)) next.delete(name);
            else next.add(name);
            this.panel.setOption("overlays", OVERLAYS.filter((x) => next.has(x)));
            this.toolbar();
            this.loadOverlays().then(() => this.draw());
          },
        }, name))),
      h("div.segmented", { role: "group", "aria-label": "value axis" },
        option("scale", "linear", "Lin", "linear value axis"), option("scale", "log", "Log", "logarithmic value axis")),
      this.selected.length ? h("div.segmented", { role: "group", "aria-label": "selected keys" },
        option("keys", "highlight", "Highlight", "selected keys in their own hues over the rest"),
        option("keys", "isolate", "Isolate", "only the selected keys"),
        option("keys", "exclude", "Exclude", "everything but the selected keys")) : null,
      this.zoomed ? h("button.btn.small", { dataset: { testid: "reset-zoom" }, onclick: () => this.resetZoom() },
        "Reset zoom") : null);
  }

  /** The value axis: "linear" or "log" (kept in the dashboard). */
  get scale() {
    return this.options.scale || "linear";
  }

  /** What the selected keys do: "highlight" (own hues), "isolate" or "exclude" (kept). */
  get keyMode() {
    return this.options.keys || "highlight";
  }

  /** The bottom of a log axis: four decades under the top of the last linear one. */
  logFloor() {
    const top = this.options.ymax ?? this.m?.ymax;
    return top > 0 ? 10 ** (Math.floor(Math.log10(top)) - 4) : null;
  }

  /** The keys the map shows, as the API's heatmap, average and percentiles take them: with
   * Isolate or Exclude the lines are of what the map draws, not of every key. */
  keyParams() {
    return this.selected.length && this.keyMode !== "highlight"
      ? { selected: this.selected.join(","), [this.keyMode]: true } : {};
  }

  params(r, linear = false) {
    const p = { nbuckets: NBUCKETS, selected: this.selected.join(","), ...this.keyParams() };
    if (this.zoomed) Object.assign(p, { ymin: this.options.ymin, ymax: this.options.ymax });
    if (this.scale === "log" && !linear) {
      p.scale = "log";
      if (!(p.ymin > 0)) p.ymin = this.logFloor();
    }
    return r.live ? { ...p, duration: r.span, ndatapoints: r.n }
      : { ...p, start_time: r.start, end_time: r.end, ndatapoints: r.n };
  }

  /** A range a next pan or zoom will want, asked ahead (net/api.js keeps the answer for the
   * fetch that follows: see Body.prefetch). */
  fetchAhead(r, signal) {
    return api.heatmap(this.inst.id, this.params(r), signal);
  }

  async fetch(r, signal) {
    // A log axis needs a bottom above 0: four decades under the top a linear map finds.
    if (this.scale === "log" && !this.zoomed && !this.logFloor()) await this.fetchMatrix(r, signal, true);
    const m = await this.fetchMatrix(r, signal);
    const asked = r.step;
    if (m.times.length) Object.assign(r, { step: m.step, n: m.times.length }); // as answered (history tiers)
    this.panel.setNote(m.step > asked && m.resolution > this.inst.granularity
      ? `coarser: ${formatDuration(m.step)} per column (history kept per ${formatDuration(m.resolution)})` : null);
    this.m = m;
    this.sinceRescale = 0;
    this.details.clear();
    if (this.pinned) this.panel.tipEl.classList.remove("show", "pinned");
    this.pinned = null;
    this.chart.pinned = null;
    await Promise.all([this.loadOverlays(signal), this.loadPast(signal)]);
  }

  /**
   * Compare (options.compare seconds back): the average line, and the percentile lines the panel
   * draws, of the same range earlier, to draw dashed over the map; and the average of each whole
   * range (the columns' averages weighted by their counts: the mean of the merged histograms).
   * Lines, not a second map: the appliance's operator reads "is latency higher than yesterday" off
   * where the mass sits, and a dashed line over today's cells shows that without halving the map.
   * Lines and averages are of what the map shows (the isolated keys, or all but the excluded).
   */
  async loadPast(signal) {
    this.past = null;
    this.averages = null;
    const m = this.m;
    const back = this.options.compare;
    if (!back || !m || !m.times.length) return this.sayCompare();
    const span = (shift) => ({ start_time: m.start_time - shift,
      end_time: m.start_time + m.times.length * m.step - shift, ndatapoints: m.times.length });
    const wanted = ["avg", ...(this.options.overlays || []).filter((n) => n !== "avg")];
    const [now, past] = await Promise.all([api.average(this.inst.id, { ...span(0), ...this.keyParams() }, signal),
      this.overlayValues(span(back), wanted, signal, true)]);
    const whole = (points) => {
      let sum = 0;
      let n = 0;
      for (const p of points) {
        if (p.average === null || !p.count) continue;
        sum += p.average * p.count;
        n += p.count;
      }
      return { mean: n ? sum / n : null, count: n };
    };
    const [a, b] = [whole(now), whole(past.points)];
    this.past = past.lines;
    this.averages = { now: a.mean, past: b.mean, countNow: a.count, countPast: b.count };
    this.sayCompare();
  }

  /** The toolbar's "avg 20 ms vs 10 ms (+100.0 %) · n 2.9k vs 2.8k" (the averages and the counts
   * of both ranges: latency up, and with more or fewer operations), or nothing when not comparing. */
  sayCompare() {
    const el = this.compareEl;
    const a = this.averages;
    if (!a) {
      el.textContent = "";
      for (const k of ["now", "past", "countNow", "countPast"]) delete el.dataset[k];
      return;
    }
    const unit = this.panel.unit;
    const change = (x, y) => (x !== null && y ? ` (${x >= y ? "+" : ""}${(((x - y) / y) * 100).toFixed(1)} %)` : "");
    el.textContent = `avg ${formatValue(a.now, unit)} vs ${formatValue(a.past, unit)}${change(a.now, a.past)}`
      + ` · n ${formatCount(a.countNow)} vs ${formatCount(a.countPast)}`;
    const of = this.keyParams().selected
      ? { isolate: "the selected keys", exclude: "every key but the selected" }[this.keyMode] : "every key";
    el.title = `average and count of ${of} over the range, and over the same range ${COMPARE[this.options.compare]}`;
    el.dataset.now = String(a.now);
    el.dataset.past = String(a.past);
    el.dataset.countNow = String(a.countNow);
    el.dataset.countPast = String(a.countPast);
  }

  async fetchMatrix(r, signal, linear = false) {
    const m = await api.heatmap(this.inst.id, this.params(r, linear), signal);
    if (linear) this.m = m;
    return m;
  }

  /** Average and percentile lines over the columns shown. */
  async loadOverlays(signal) {
    const m = this.m;
    const wanted = this.options.overlays || [];
    this.overlays = {};
    if (!m || !wanted.length || !m.times.length) return;
    const span = { start_time: m.start_time, end_time: m.start_time + m.times.length * m.step,
      ndatapoints: m.times.length };
    Object.assign(this.overlays, await this.overlayValues(span, wanted, signal));
  }

  /** The lines `wanted` (avg, pNN) over `span`: {name: [v]}; with `points`, {lines, points} (the
   * average's points too, for their counts). */
  async overlayValues(span, wanted, signal, points = false) {
    const out = {};
    const qs = wanted.filter((n) => n !== "avg");
    const keys = this.keyParams();
    const [pct, avg] = await Promise.all([
      qs.length ? api.percentiles(this.inst.id, { ...span, ...keys, q: qs.map(quantile).join(",") }, signal) : null,
      wanted.includes("avg") ? api.average(this.inst.id, { ...span, ...keys }, signal) : null,
    ]);
    if (avg) out.avg = avg.map((p) => p.average);
    for (const name of qs) {
      const key = String(quantile(name));
      out[name] = pct.map((p) => p.percentiles[key] ?? null);
    }
    return points ? { lines: out, points: avg || [] } : out;
  }

  /** One more column starting at `from` (live), with the same axis and selection. */
  async column(from, step) {
    const m = this.m;
    const p = { start_time: from, end_time: from + step, ndatapoints: 1, nbuckets: m.nbuckets, ymin: m.ymin,
      ymax: m.ymax, selected: this.selected.join(","), ...this.keyParams(), ...(m.log ? { scale: "log" } : {}) };
    const wanted = this.options.overlays || [];
    const back = this.options.compare;
    const pastWanted = this.past ? Object.keys(this.past) : [];
    const [col, ov, pv] = await Promise.all([api.heatmap(this.inst.id, p),
      wanted.length ? this.overlayValues({ start_time: from, end_time: from + step, ndatapoints: 1 }, wanted)
        : {},
      pastWanted.length ? this.overlayValues({ start_time: from - back, end_time: from - back + step,
        ndatapoints: 1 }, pastWanted) : {}]);
    if (this.m !== m || this.end !== from) return; // reloaded meanwhile
    m.times.push(col.times[0]);
    m.counts.push(col.counts[0]);
    for (const k of Object.keys(m.keys)) m.keys[k].push(col.keys[k] ? col.keys[k][0] : new Array(m.nbuckets).fill(0));
    m.present.push(col.present[0]);
    m.clipped_below.push(col.clipped_below[0]);
    m.clipped_above.push(col.clipped_above[0]);
    const arrays = [m.times, m.counts, ...Object.values(m.keys), m.present, m.clipped_below, m.clipped_above];
    for (const name of wanted) {
      this.overlays[name] = this.overlays[name] || new Array(m.times.length - 1).fill(null);
      this.overlays[name].push(ov[name] ? ov[name][0] : null);
      arrays.push(this.overlays[name]);
    }
    for (const name of pastWanted) {
      if (!this.past?.[name]) continue;
      this.past[name].push(pv[name] ? pv[name][0] : null);
      arrays.push(this.past[name]);
    }
    this.trim(arrays);
    m.start_time = m.times[0];
    this.sinceRescale++;
    if (!this.zoomed && (col.clipped_above[0] > 0 || this.sinceRescale >= RESCALE_EVERY)) {
      this.load(); // the data outgrew (or may have shrunk under) the automatic axis
    }
  }

  fetchNext(from, step) {
    return this.column(from, step);
  }

  accept(point) {
    if (point.start_time !== this.end) {
      // Late data for a column shown empty (a new instrumentation catching up): reload.
      const i = this.m.times.indexOf(point.start_time);
      if (i >= 0 && !this.m.present[i] && point.value !== null) this.load();
      return; // otherwise a revision, picked up by the next reload
    }
    if (this.fetchingNext) return;
    this.fetchingNext = true;
    this.column(point.start_time, this.range.step)
      .then(() => this.draw())
      .catch((err) => err.name !== "AbortError" && this.panel.setError(err))
      .finally(() => {
        this.fetchingNext = false;
      });
  }

  draw() {
    const m = this.m;
    if (!m) return;
    this.chart.setData(m, { coloring: this.options.coloring || "rank", order: this.selected,
      overlays: this.overlays, past: this.past || {} });
    const present = m.times.filter((t, i) => m.present[i]);
    this.panel.setPoints(present.length, present.at(-1));
    if (!this.range.live || !this.panel.valueEl.textContent) {
      const i = m.present.lastIndexOf(true);
      let n = i < 0 ? 0 : m.clipped_below[i] + m.clipped_above[i] + m.counts[i].reduce((a, b) => a + b, 0);
      for (const k of Object.keys(m.keys)) if (i >= 0) n += m.keys[k][i].reduce((a, b) => a + b, 0);
      this.panel.valueEl.textContent = i < 0 ? "" : `n ${formatCount(n)}`;
    }
    this.legendRows();
    if (this.searchEl?.value) this.loadKeys(); // the range changed under a search: its keys
    this.panel.firstDraw();
  }

  legendRows() {
    const m = this.m;
    const unit = this.panel.unit;
    const i = this.hover ? this.hover.col : m.times.length - 1;
    const rows = [];
    for (const name of this.options.overlays || []) {
      const v = this.overlays[name]?.[i];
      rows.push(h("li.legend-row.static", {}, h("span.k", {}, name), h("span.v", {}, formatValue(v, unit))));
    }
    for (const [name, values] of Object.entries(this.past || {})) {
      rows.push(h("li.legend-row.static.past", { title: `${name} of the same column ${COMPARE[this.options.compare]} (dashed)` },
        h("span.k", {}, `${name} ${COMPARE[this.options.compare]}`), h("span.v", {}, formatValue(values[i], unit))));
    }
    fill(this.legendBody,
      h("div.legend-head", {}, h("span", {}, "axis"), h("span.v", {}, `${formatValue(m.ymin, unit)} – ${formatValue(m.ymax, unit)}`)),
      rows.length ? h("ul.legend-list", {}, rows) : null,
      this.inst.discrete ? h("div.legend-sub", {}, this.selected.length ? "selected keys"
        : `click a cell, or find below, to pick ${this.inst.discrete} values`) : null,
      h("ul.legend-list", {}, this.selected.map((key, n) => h("li.legend-row", { dataset: { key } },
        h("span.swatch", { style: { background: keyColor(n) } }), h("span.k", {}, key),
        h("button.x", { title: `stop drawing ${key} apart`, onclick: () => this.select(key, false) }, "×")))),
      this.selected.length && this.keyMode !== "isolate" ? h("div.legend-row.static", {}, h("span.swatch", { style: { background: baseColor(true) } }),
        h("span.k", {}, this.keyMode === "exclude" ? "everything but the selected keys" : "everything else")) : null,
      this.selected.length && this.keyMode === "isolate" ? h("div.legend-sub", {}, "only the selected keys") : null,
      h("div.legend-hint", {}, this.zoomed ? "zoomed: drag again to narrow" : "drag up or down to zoom"));
  }

  hovered(cell) {
    this.hover = cell;
    this.legendRows();
    if (this.pinned) return;
    if (!cell) return void this.panel.tipEl.classList.remove("show");
    this.showTip(cell, false);
    if (this.inst.discrete && cell.count > 0) this.fetchDetails(cell);
  }

  cellKey(cell) {
    return `${cell.time}:${cell.row}`;
  }

  async loadDetails(cell) {
    const id = this.cellKey(cell);
    if (this.details.has(id)) return;
    try {
      const d = await api.details(this.inst.id, { t: cell.time, duration: cell.step, ymin: cell.lo, ymax: cell.hi });
      this.details.set(id, d);
      const shown = this.pinned || this.hover;
      if (shown && this.cellKey(shown) === id) this.showTip(shown, Boolean(this.pinned));
    } catch (err) {
      if (err.status) this.details.set(id, { error: err.message });
    }
  }

  /** The tooltip of a cell: time, value range, count, and counts by key once loaded. */
  showTip(cell, pinned) {
    const unit = this.panel.unit;
    const tip = this.panel.tipEl;
    const d = this.details.get(this.cellKey(cell));
    const byKey = [];
    if (this.inst.discrete && cell.count > 0) {
      if (!d) byKey.push(h("div.tip-empty", {}, `counts by ${this.inst.discrete}…`));
      else if (d.error) byKey.push(h("div.tip-empty", {}, d.error));
      else {
        const entries = Object.entries(d.keys).slice(0, 10);
        byKey.push(h("div.tip-sub", {}, `by ${this.inst.discrete}${pinned ? " (click to select)" : " (click the cell to pick)"}`),
          h("table.tip-table", {}, entries.map(([k, v]) => h("tr", {},
            h("td.k", {}, pinned ? h("button.linklike", {
              dataset: { key: k }, onclick: () => this.select(k, !this.selected.includes(k)),
            }, (this.selected.includes(k) ? "✓ " : "") + k) : k),
            h("td.v", {}, formatCount(v))))),
          Object.keys(d.keys).length > 10 ? h("div.tip-empty", {}, `and ${Object.keys(d.keys).length - 10} more`) : null);
      }
    }
    const layers = Object.entries(cell.layers).filter(([, v]) => v > 0);
    fill(tip,
      pinned ? h("button.tip-close", { title: "close", onclick: () => this.pin(null) }, "×") : null,
      h("div.tip-time", {}, formatTime(cell.time), cell.step > 1 ? ` (+${cell.step} s)` : ""),
      h("div.tip-range", {}, `${formatValue(cell.lo, unit)} to ${formatValue(cell.hi, unit)}`),
      h("div.tip-count", {}, cell.present ? `count ${formatCount(cell.count)}` : "no data"),
      layers.length ? h("table.tip-table", {}, layers.map(([k, v]) => h("tr", {},
        h("td", {}, h("span.swatch", { style: { background: keyColor(this.selected.indexOf(k)) } })),
        h("td.k", {}, k), h("td.v", {}, formatCount(v))))) : null,
      byKey);
    tip.classList.toggle("pinned", pinned);
    tip.classList.add("show");
    const a = this.chart.area();
    const m = this.m;
    this.panel.placeTip(a.x0 + ((cell.col + 1) / m.times.length) * a.w + 8,
      a.y1 - ((cell.row + 1) / m.nbuckets) * a.h);
  }

  /** Escape: let go of the pinned cell. */
  clearSelection() {
    if (this.pinned) this.pin(null);
  }

  /** CSV of the range from the API's export, and the API's own PNG rendering of the map shown
   * (same columns, axis, selection and colouring, at the chart's size; its average and
   * percentile lines, and those of the earlier range when comparing). */
  exports() {
    const m = this.m;
    const r = this.range;
    if (!m || !r || !m.times.length) return null;
    const end = m.start_time + m.times.length * m.step;
    const box = this.chart.area();
    return {
      csv: apiUrl(`/instrumentations/${this.inst.id}/export`,
        { start_time: m.start_time, end_time: end, step: m.step, format: "csv" }),
      png: apiUrl(`/instrumentations/${this.inst.id}/heatmap`, {
        ...this.params(r), start_time: m.start_time, end_time: end, duration: undefined,
        ndatapoints: m.times.length, ymin: m.ymin, ymax: m.ymax, coloring: this.options.coloring || "rank",
        width: Math.max(1, Math.round(box.w)), height: Math.max(1, Math.round(box.h)), format: "png",
        lines: (this.options.overlays || []).join(",") || undefined,
        compare: this.past && this.options.compare ? this.options.compare : undefined }),
    };
  }

  pin(cell) {
    this.pinned = cell && (!this.pinned || this.cellKey(cell) !== this.cellKey(this.pinned)) ? cell : null;
    this.chart.pinned = this.pinned;
    this.chart.requestDraw();
    this.panel.selectionChanged();
    if (!this.pinned) return void this.panel.tipEl.classList.remove("show", "pinned");
    this.showTip(cell, true);
    if (this.inst.discrete && cell.count > 0) this.loadDetails(cell);
  }

  select(key, on) {
    const next = this.selected.filter((k) => k !== key);
    if (on) next.push(key);
    this.panel.setOption("selected", next);
    this.panel.selectionChanged();
    this.toolbar();
    this.load();
  }

  zoom(lo, hi) {
    const tidy = (v) => Number(v.toPrecision(4));
    const [a, b] = [tidy(lo), tidy(hi)];
    if (!(b > a)) return;
    this.setYRange(a, b);
  }

  resetZoom() {
    this.setYRange(undefined, undefined);
  }

  /** Draw the values in [ymin, ymax) (both undefined: the automatic axis), and reload. */
  setYRange(ymin, ymax) {
    this.panel.setOption("ymin", ymin);
    this.panel.setOption("ymax", ymax);
    this.toolbar();
    this.panel.selectionChanged();
    this.load();
  }

  /** What a drill-down filters to: {key, lo, hi} (any of them may be missing), or null. */
  selection() {
    const out = {};
    if (this.inst.discrete && this.selected.length) out.key = this.selected[0];
    if (this.zoomed) Object.assign(out, { lo: this.options.ymin, hi: this.options.ymax });
    else if (this.pinned) Object.assign(out, { lo: Number(this.pinned.lo.toPrecision(6)), hi: Number(this.pinned.hi.toPrecision(6)) });
    return Object.keys(out).length ? out : null;
  }

  /** The top of the highest row holding any count (the axis's top if values were clipped above it). */
  largestShown() {
    const m = this.m;
    if (!m || !m.times.length) return 0;
    if (m.clipped_above.some((n) => n > 0)) return m.ymax;
    let top = -1;
    for (const layer of [m.counts, ...Object.values(m.keys)]) {
      for (const col of layer) {
        for (let r = col.length - 1; r > top; r--) {
          if (col[r] > 0) {
            top = r;
            break;
          }
        }
      }
    }
    return top < 0 ? 0 : m.ymin + ((top + 1) * (m.ymax - m.ymin)) / m.nbuckets;
  }

  headline(point) {
    if (point.value === null) return null;
    const v = point.value;
    const count = this.inst.shape === "histogram" ? v.count
      : Object.values(v).reduce((a, x) => a + x.count, 0);
    return `n ${formatCount(count)}`;
  }

  redrawTheme() {
    this.chart.render();
    this.legendRows();
  }

  destroy() {
    super.destroy();
    this.chart.destroy();
  }
}
