// The panel frame: one instrumentation on the dashboard, with its header, chart, legend and actions
// (drill-down and panel menus); its body is a heatmap panel or a line panel.

import { api } from "../net/api.js";
import { h } from "../lib/dom.js";
import { formatDuration } from "../lib/format.js";
import { HeatBody } from "./heatmap.js";
import { DISTRIBUTIONS, PanelRules } from "./rules.js";
import { LineBody } from "./lines.js";
import { openMenu } from "../lib/menu.js";

/** A readable title: "CPU time by mode", "process CPU time: utilization by execname". */
export function titleOf(inst, metric) {
  const label = metric ? metric.label : inst.metric;
  const cap = label.charAt(0).toUpperCase() + label.slice(1);
  if (inst.numeric && inst.discrete) return `${cap}: ${inst.numeric} by ${inst.discrete}`;
  if (inst.numeric) return `${cap}: ${inst.numeric}`;
  if (inst.discrete) return `${cap} by ${inst.discrete}`;
  return cap;
}

/** JSON predicate `a and b and ...`, flattening nested ands and dropping empty ones. */
export function conjunction(...preds) {
  const parts = [];
  for (const p of preds) {
    if (!p || !Object.keys(p).length) continue;
    if (p.and) parts.push(...p.and);
    else parts.push(p);
  }
  if (!parts.length) return {};
  return parts.length === 1 ? parts[0] : { and: parts };
}

export class Panel {
  /** slot: {uid, instrumentation, options} in the dashboard. */
  constructor(app, slot, inst) {
    this.app = app;
    this.slot = slot;
    this.inst = inst;
    this.metric = app.metrics.get(inst.metric);
    this.drawn = false;
    this.build();
    this.setWarnings(inst.warnings);
    this.body = DISTRIBUTIONS.has(inst.shape) ? new HeatBody(this) : new LineBody(this);
    this.rules = new PanelRules(this);
    this.rules.load();
  }

  get options() {
    return this.slot.options;
  }

  /** The unit of the values drawn: the numeric field's for heatmaps, else the metric's. */
  get unit() {
    if (!this.metric) return { base: "number", power: 0, name: "number" };
    if (this.inst.numeric) return this.metric.fields.find((f) => f.name === this.inst.numeric)?.type || this.metric.unit;
    return this.metric.unit;
  }

  build() {
    const inst = this.inst;
    const where = inst.predicate_text ? `where ${inst.predicate_text}` : "no filter";
    this.valueEl = h("span.current", { title: "latest value" }, "");
    this.drillBtn = h("button.btn.small.drill", {
      title: "new instrumentation: this metric, filtered to the selection, broken down by another field",
      "aria-haspopup": "menu", onclick: () => this.drillMenu(),
    }, "Drill down");
    this.menuBtn = h("button.btn.small.icon", { title: "panel actions", "aria-label": "panel actions",
      "aria-haspopup": "menu", onclick: () => this.actionsMenu() }, "⋯");
    this.warnEl = h("span.warn", { hidden: true, role: "status" });
    this.collapseBtn = h("button.btn.small.icon.collapse", { type: "button", onclick: () => this.setCollapsed(!this.collapsed) });
    this.toolsEl = h("div.tools");
    this.chartEl = h("div.chart");
    this.emptyEl = h("div.empty", {}, "");
    this.tipEl = h("div.tip", { role: "tooltip" });
    // Shown (by CSS, after a moment) while the panel's element carries data-loading.
    this.loadingEl = h("div.loading", { role: "status", "aria-label": "loading" }, h("span.spinner"), "Loading…");
    // Why the panel shows less than asked: a coarser step than the range wanted, fewer keys.
    this.noteEl = h("span.note", { hidden: true, role: "note" });
    this.legendEl = h("aside.legend");
    this.el = h("section.panel", { dataset: { instId: inst.id, state: "loading", points: "0" },
      "aria-label": titleOf(inst, this.metric) },
    h("header.panel-head", {},
      h("h2.panel-title", { title: `instrumentation ${inst.id}` }, titleOf(inst, this.metric)),
      h("div.head-actions", {}, this.warnEl, this.valueEl, this.drillBtn, this.menuBtn, this.collapseBtn),
      h("div.panel-sub", {},
        h("code", {}, inst.metric), h("span.where", { title: where }, where),
        h("span.timing", {}, `${formatDuration(inst.granularity)} · keeps ${formatDuration(inst.retention)}`),
        this.noteEl),
      this.toolsEl),
    h("div.panel-main", {}, h("div.chart-wrap", {}, this.chartEl, this.emptyEl, this.loadingEl, this.tipEl), this.legendEl));
    this.el.classList.toggle("wide", this.options.width === 2);
    this.el.classList.toggle("tall", this.options.height === 2);
    this.layout();
    this.chartEl.addEventListener("mouseleave", () => {
      if (!this.tipEl.classList.contains("pinned")) this.tipEl.classList.remove("show");
    });
  }

  load() {
    return this.body.load();
  }

  /** What the agents report about this instrumentation now, by host ("paused: over its budget…"). */
  setWarnings(warnings) {
    const entries = Object.entries(warnings || {});
    this.warnEl.hidden = entries.length === 0;
    this.warnEl.textContent = entries.length === 1 ? "⚠ 1 host" : `⚠ ${entries.length} hosts`;
    this.warnEl.title = entries.map(([host, text]) => `${host}: ${text}`).join("\n");
  }

  onPoint(point) {
    if (this.app.time.live) {
      const text = this.body.headline(point);
      if (text !== null) this.valueEl.textContent = text;
    }
    this.body.onPoint(point);
  }

  setOption(name, value) {
    if (value === undefined) delete this.slot.options[name];
    else this.slot.options[name] = value;
    this.app.boardChanged();
  }

  /** Say (or stop saying, with null) why the panel shows less than was asked. */
  setNote(text) {
    this.noteEl.hidden = !text;
    this.noteEl.textContent = text || "";
    this.noteEl.title = text || "";
  }

  setPoints(n, last) {
    this.el.dataset.points = String(n);
    this.el.dataset.state = n ? "ready" : "empty";
    if (last !== undefined) this.el.dataset.last = String(last);
    const live = this.app.time.live;
    this.emptyEl.textContent = n ? "" : live ? "Waiting for data…" : "No data in this range";
    this.emptyEl.classList.toggle("show", !n);
  }

  setError(err) {
    if (!err) {
      this.el.classList.remove("has-error");
      return;
    }
    this.el.classList.add("has-error");
    this.el.dataset.state = "error";
    this.emptyEl.textContent = err.status === 404 ? "This instrumentation no longer exists." : err.message;
    this.emptyEl.classList.add("show");
    if (err.status === 0) this.app.connectionLost();
  }

  firstDraw() {
    if (this.drawn || this.el.dataset.state !== "ready") return;
    this.drawn = true;
    this.app.panelDrawn(this);
  }

  placeTip(x, y) {
    const tip = this.tipEl;
    const wrap = this.chartEl.getBoundingClientRect();
    const w = tip.offsetWidth;
    const hgt = tip.offsetHeight;
    let left = x;
    if (left + w > wrap.width) left = Math.max(0, x - w - 24);
    const top = Math.max(0, Math.min(y, wrap.height - hgt));
    tip.style.left = `${left}px`;
    tip.style.top = `${top}px`;
  }

  selectionChanged() {
    const sel = this.body.selection();
    this.drillBtn.classList.toggle("has-selection", Boolean(sel));
    this.app.selectionsToUrl();
  }

  /** Fields a drill-down can break down by, as [{label, decomposition}]. */
  drillChoices() {
    const inst = this.inst;
    if (!this.metric) return [];
    const discrete = this.metric.fields.filter((f) => f.kind === "discrete" && f.name !== inst.discrete);
    if (inst.numeric) {
      return discrete.map((f) => ({ label: `${inst.numeric} by ${f.name}`, decomposition: [f.name, inst.numeric] }));
    }
    const numeric = this.metric.fields.filter((f) => f.kind === "numeric");
    return [...discrete.map((f) => ({ label: `by ${f.name}`, decomposition: [f.name] })),
      ...numeric.map((f) => ({ label: `distribution of ${f.name}`, decomposition: [f.name] }))];
  }

  /** The predicate a drill-down adds for the current selection, and its text. */
  drillFilter() {
    const sel = this.body.selection();
    const inst = this.inst;
    const parts = [];
    const text = [];
    if (sel?.key !== undefined) {
      parts.push({ eq: [inst.discrete, sel.key] });
      text.push(`${inst.discrete} == "${sel.key}"`);
    }
    if (sel?.lo !== undefined) {
      parts.push({ ge: [inst.numeric, sel.lo] }, { lt: [inst.numeric, sel.hi] });
      text.push(`${inst.numeric} >= ${sel.lo} and ${inst.numeric} < ${sel.hi}`);
    }
    return { predicate: conjunction(inst.predicate, ...parts), text: text.join(" and ") };
  }

  drillMenu() {
    const { text } = this.drillFilter();
    const choices = this.drillChoices();
    const how = this.inst.numeric ? "select a key or zoom to a range" : "click a key in the legend";
    openMenu(this.drillBtn, [
      { heading: text ? `Where ${text}` : "No selection" },
      text ? null : { text: `Breaks down everything; to filter, ${how} first.` },
      ...choices.map((c) => ({ label: c.label, testid: `drill-${c.decomposition[0]}`, onSelect: () => this.drill(c) })),
      choices.length ? null : { text: "No other field to break down by." },
    ].filter(Boolean));
  }

  async drill(choice) {
    const { predicate } = this.drillFilter();
    const inst = this.inst;
    try {
      const created = await api.create({ module: inst.module, stat: inst.stat, predicate,
        decomposition: choice.decomposition, granularity: inst.granularity, retention: inst.retention });
      this.app.addPanel(created, { after: this.slot });
    } catch (err) {
      this.app.toast(`Drill-down failed: ${err.message}`, "error");
    }
  }

  actionsMenu() {
    const saved = this.app.board.id !== null;
    const wide = this.options.width === 2;
    openMenu(this.menuBtn, [
      { label: "Change retention…", testid: "edit", onSelect: () => this.app.form.edit(this.inst) },
      { label: "Alert when…", testid: "alert", disabled: Boolean(this.app.writeDenied),
        hint: this.app.writeDenied ? "needs operator role" : null, title: this.app.writeDenied || "a rule on this instrumentation",
        onSelect: () => this.app.alertForm.open(this) },
      { label: wide ? "Narrow" : "Wide", hint: wide ? "one column" : "two columns", onSelect: () => {
        this.setOption("width", wide ? undefined : 2);
        this.el.classList.toggle("wide", !wide);
      } },
      { label: "Save PNG", testid: "export-png", disabled: !this.body.exports?.(), hint: "the API's rendering",
        onSelect: () => this.download("png") },
      { label: "Save CSV", testid: "export-csv", disabled: !this.body.exports?.(), hint: "its numbers over the range",
        onSelect: () => this.download("csv") },
      { label: this.options.height === 2 ? "Shorter" : "Taller", testid: "height",
        hint: this.options.height === 2 ? "one chart height" : "two chart heights", onSelect: () => {
          const tall = this.options.height !== 2;
          this.setOption("height", tall ? 2 : undefined);
          this.el.classList.toggle("tall", tall);
        } },
      { label: "Move earlier", testid: "move-earlier", disabled: this.app.panels.indexOf(this) === 0,
        onSelect: () => this.app.movePanel(this, this.app.panels.indexOf(this) - 1) },
      { label: "Move later", testid: "move-later", disabled: this.app.panels.indexOf(this) === this.app.panels.length - 1,
        onSelect: () => this.app.movePanel(this, this.app.panels.indexOf(this) + 1) },
      this.app.board.rows?.length ? { label: "Move to row…", testid: "move-row", hint: "a titled group",
        onSelect: () => this.app.rowMenu(this, this.menuBtn) } : null,
      saved ? { label: "Remove from dashboard", testid: "remove", onSelect: () => this.app.removePanel(this) } : null,
      { label: "Delete instrumentation", testid: "delete", onSelect: () => this.app.deleteInstrumentation(this) },
    ].filter(Boolean));
  }

  get collapsed() {
    return Boolean(this.options.collapsed);
  }

  /** Only the header (kept in the dashboard); the chart is drawn again when opened. */
  setCollapsed(on) {
    this.setOption("collapsed", on || undefined);
    this.showCollapsed(on);
    if (!on) this.body.draw();
  }

  showCollapsed(on) {
    this.el.classList.toggle("collapsed", on);
    this.collapseBtn.textContent = on ? "▸" : "▾";
    this.collapseBtn.setAttribute("aria-expanded", String(!on));
    this.collapseBtn.setAttribute("aria-label", on ? "expand panel" : "collapse panel");
    this.collapseBtn.title = on ? "show the chart" : "show only the header";
  }

  /** Collapsed state, and dragging the title onto another panel to reorder the dashboard. */
  layout() {
    this.showCollapsed(this.collapsed);
    const title = this.el.querySelector(".panel-title");
    title.draggable = true;
    title.classList.add("handle");
    title.title = `${title.title}: drag onto another panel to move it there`;
    title.addEventListener("dragstart", (e) => {
      e.dataTransfer.setData("application/x-fleetscope-panel", String(this.slot.uid));
      e.dataTransfer.effectAllowed = "move";
      this.el.classList.add("dragging");
    });
    title.addEventListener("dragend", () => this.el.classList.remove("dragging"));
    this.el.addEventListener("dragover", (e) => {
      if (e.dataTransfer.types.includes("application/x-fleetscope-panel")) {
        e.preventDefault();
        this.el.classList.add("drop-here");
      }
    });
    this.el.addEventListener("dragleave", () => this.el.classList.remove("drop-here"));
    this.el.addEventListener("drop", (e) => {
      this.el.classList.remove("drop-here");
      const uid = Number(e.dataTransfer.getData("application/x-fleetscope-panel"));
      const moved = this.app.panels.find((p) => p.slot?.uid === uid);
      if (!moved || moved === this) return;
      e.preventDefault();
      this.app.movePanel(moved, this.app.panels.indexOf(this));
    });
  }

  /** Save the panel as "png" or "csv": a link to the API (or a blob, where a body makes one). */
  async download(kind) {
    const what = this.body.exports?.();
    if (!what) return;
    const target = typeof what[kind] === "function" ? URL.createObjectURL(await what[kind]()) : what[kind];
    const a = h("a", { href: target, download: `fleetscope-${this.inst.id}.${kind}`, hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
    if (target.startsWith("blob:")) setTimeout(() => URL.revokeObjectURL(target), 10_000);
  }

  redrawTheme() {
    this.body.redrawTheme();
  }

  destroy() {
    this.body.destroy();
    this.el.remove();
  }
}

/** A placeholder for a dashboard slot whose instrumentation is gone. */
export function missingPanel(app, slot) {
  const el = h("section.panel.missing", { dataset: { instId: slot.instrumentation, state: "missing" } },
    h("header.panel-head", {}, h("h2.panel-title", {}, `Instrumentation ${slot.instrumentation}`),
      h("div.panel-sub", {}, "no longer exists (deleted, or expired unused); the next save drops it")),
    h("div.missing-body", {}, h("button.btn", { onclick: () => app.removeSlot(slot) }, "Remove from dashboard")));
  return { el, slot, inst: null, rules: null, load() {}, onPoint() {}, redrawTheme() {}, destroy() { el.remove(); } };
}

