// The dashboard application: loads metrics, instrumentations and dashboards, keeps the panels
// live through one event stream, and follows the time range, the URL and the theme.

import { AlertForm } from "./alertform.js";
import { AlertList } from "./alerts.js";
import { api } from "./net/api.js";
import { themeChanged } from "./lib/color.js";
import { $, $$, debounce, fill, h } from "./lib/dom.js";
import { fromLocalInput, toLocalInput } from "./lib/format.js";
import { InstrumentationForm } from "./form.js";
import { openMenu } from "./lib/menu.js";
import { Panel, missingPanel } from "./panels/panel.js";
import { LiveStream } from "./net/stream.js";
import { TimeRange } from "./lib/time.js";
import { installImports } from "./importing.js";

const ALL = { id: null, name: "All instrumentations" };
const THEMES = ["auto", "light", "dark"];
const WARNINGS_EVERY_MS = 15_000;
const RULES_EVERY_MS = 15_000; // panels ask for their alert rules again (made elsewhere, changed, deleted)
const WRITERS = new Set(["operator", "admin"]); // roles that may make alert rules (DESIGN.md)
let uid = 0;

class App {
  constructor() {
    this.metrics = new Map();
    this.insts = new Map();
    this.dashboards = [];
    this.board = { ...ALL, panels: [] };
    this.allOrder = [];
    this.allOptions = new Map();
    this.panels = []; // the panels made, in the order shown (a collapsed row's are not made)
    this.panelOf = new Map(); // slot uid -> its panel, while made
    this.online = true;
    this.firstChart = null;
    this.time = new TimeRange();
    this.formInstance = null;
    this.alertFormInstance = null;
    this.me = null; // the caller (GET /whoami): role and tenant
    this.focusPending = Number(new URLSearchParams(location.search).get("inst")) || null;
    this.alerting = new AlertList(this);
    this.stream = new LiveStream({
      onValue: (p) => this.onValue(p),
      onDown: () => this.connectionLost(),
      onUp: () => this.setConn("live"),
      onOverflow: () => this.reloadPanels(),
      onGone: () => this.sync(),
    });
    this.save = debounce(() => this.saveBoard(), 500);
    // Agents' warnings (an instrumentation paused over its budget, ...) come with the list.
    setInterval(() => this.refreshWarnings(), WARNINGS_EVERY_MS);
    setInterval(() => this.refreshRules(), RULES_EVERY_MS);
  }

  refreshRules() {
    if (!this.online || document.hidden) return;
    for (const p of this.panels) p.rules?.load();
    if (this.time.live) this.loadAnnotations();
  }

  /** The alerts' states changed: thresholds change colour. */
  alertStatesChanged() {
    for (const p of this.panels) p.rules?.draw();
  }

  /** Why this caller may not make alert rules, or null if it may. */
  get writeDenied() {
    if (!this.me) return "Your role is not known (the server did not say who you are).";
    if (WRITERS.has(this.me.role)) return null;
    return `Your role is ${this.me.role}: alert rules need the operator role.`;
  }

  async refreshWarnings() {
    if (!this.online || document.hidden) return;
    try {
      for (const inst of await api.instrumentations()) {
        const known = this.insts.get(inst.id);
        if (known) known.warnings = inst.warnings;
      }
    } catch { return; /* the next sync or reconnect says what is wrong */ }
    for (const p of this.panels) if (p.inst) p.setWarnings(this.insts.get(p.inst.id)?.warnings);
  }

  /** The create/change drawer, built when first needed (it is not part of the first screen). */
  get form() {
    if (!this.formInstance) this.formInstance = new InstrumentationForm(this);
    return this.formInstance;
  }

  /** The "Alert when…" form, built when first needed. */
  get alertForm() {
    if (!this.alertFormInstance) this.alertFormInstance = new AlertForm(this);
    return this.alertFormInstance;
  }

  // -- start ---------------------------------------------------------------------------------

  async boot() {
    this.time.fromParams(new URLSearchParams(location.search));
    this.bindControls();
    installImports(this); // the Import dialog and the compare view (importing.js)
    this.applyTheme();
    this.time.addEventListener("change", () => this.timeChanged());
    window.addEventListener("popstate", () => this.sync());
    this.renderTime();
    try {
      await this.sync();
    } catch (err) {
      if (err.status === 401) this.askLogin(err.detail);
      else if (err.status === 0) this.connectionLost();
      else this.toast(err.message, "error");
    }
  }

  async logout() {
    try {
      await api.logout();
    } catch { /* no session (authentication off): nothing to end */ }
    location.reload();
  }

  /** No valid session: the server wants a token. The link `fleetscope serve` prints logs in
   * by itself; otherwise a token pasted here becomes the session (an HttpOnly cookie: the page
   * never keeps the token). */
  askLogin(reason) {
    this.stream.close();
    const input = h("input#login-token", { type: "password", autocomplete: "off", required: true,
      placeholder: "fs_…", "aria-label": "token" });
    const error = h("p.login-error", { role: "alert" });
    const form = h("form#login.login", {},
      h("h2", {}, "Log in to fleetscope"),
      h("p", {}, "Open the address that ", h("code", {}, "fleetscope serve"), " printed, or paste a token (",
        h("code", {}, "fleetscope token create NAME"), ")."),
      input, h("button.btn.primary", { type: "submit" }, "Log in"), error);
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      try {
        await api.login(input.value.trim());
        location.reload();
      } catch (err) {
        error.textContent = err.detail || err.message;
      }
    });
    fill($("#grid"), form);
    this.setConn("login");
    input.focus();
    error.textContent = reason && !/a token is needed/.test(reason) ? reason : "";
  }

  /** (Re)load everything from the server and show the dashboard the URL names. */
  async sync() {
    const q = new URLSearchParams(location.search);
    const wanted = Number(q.get("dashboard")) || null;
    const who = api.whoami().catch(() => null); // asked alongside: what the caller may do
    const [metrics, insts, boards] = await this.firstAnswers();
    this.metrics = new Map(metrics.map((m) => [m.name, m]));
    this.insts = new Map(insts.map((i) => [i.id, i]));
    this.dashboards = boards;
    const known = new Set(this.insts.keys());
    this.allOrder = [...this.allOrder.filter((id) => known.has(id)),
      ...insts.map((i) => i.id).filter((id) => !this.allOrder.includes(id))];
    let board = { ...ALL };
    if (wanted !== null) {
      const found = boards.find((b) => b.id === wanted);
      if (found) board = structuredClone(found);
      else this.toast(`There is no dashboard ${wanted}: showing all instrumentations.`, "error");
    }
    this.show(board);
    this.setConn("live");
    this.me = await who; // after the first drawing is on its way: only menus and the alerts need it
    this.alerting.refresh();
    if (this.focusPending !== null) {
      this.focusPanel(this.focusPending);
      this.focusPending = null;
      const q = new URLSearchParams(location.search);
      q.delete("inst"); // followed once: a reload or a copied link of this view need not scroll again
      history.replaceState(null, "", `${location.pathname}${q.size ? `?${q}` : ""}`);
    }
  }

  /** Metrics, instrumentations and dashboards: requested by index.html on the first load. */
  async firstAnswers() {
    const boot = window.fleetscopeBoot;
    window.fleetscopeBoot = null;
    if (boot) {
      try {
        const [m, i, d] = await boot;
        return [m.metrics, i.instrumentations, d.dashboards];
      } catch { /* ask again below, with the API's errors */ }
    }
    return Promise.all([api.metrics(), api.instrumentations(), api.dashboards()]);
  }

  // -- dashboards ------------------------------------------------------------------------------

  allSlots() {
    return this.allOrder.map((id) => {
      if (!this.allOptions.has(id)) this.allOptions.set(id, {});
      return { uid: ++uid, instrumentation: id, options: this.allOptions.get(id) };
    });
  }

  show(board) {
    for (const p of this.panels) p.destroy();
    this.panelOf = new Map();
    const rows = board.id === null ? [] : (board.rows || []).map((r) => ({ uid: ++uid, title: r.title,
      collapsed: Boolean(r.collapsed) }));
    this.board = board.id === null ? { ...ALL, rows, panels: this.allSlots() }
      : { ...board, rows, panels: board.panels.map((s) => ({ uid: ++uid, instrumentation: s.instrumentation,
        row: rows[s.row] ?? null, options: { ...(s.options || {}) } })) };
    this.arrange();
    const grid = $("#grid");
    if (!this.board.panels.length) {
      grid.append(h("div.empty-board", {},
        h("p", {}, this.board.id === null ? "No instrumentations yet." : "This dashboard has no panels yet."),
        h("button.btn.primary", { onclick: () => this.form.openCreate() }, "New instrumentation")));
    }
    this.renderBoards();
    this.reloadPanels();
    this.openStream();
    document.title = this.board.id === null ? "fleetscope" : `${this.board.name} · fleetscope`;
  }

  /**
   * Lay the grid out as the dashboard orders it: the panels without a row, then each row's title
   * and, unless it is collapsed, its panels. A collapsed row's panels are not made, so they fetch
   * nothing (Grafana's rows do the same); those of a row just collapsed are let go. Returns the
   * panels made now, for the caller to load.
   */
  arrange() {
    const rows = [null, ...this.board.rows];
    const of = (row) => this.board.panels.filter((s) => (s.row ?? null) === row);
    this.board.panels = rows.flatMap(of);
    const made = [];
    const shown = [];
    const els = [];
    for (const row of rows) {
      const slots = of(row);
      if (row) els.push(this.rowHead(row, slots.length));
      for (const slot of slots) {
        let panel = this.panelOf.get(slot.uid);
        if (row?.collapsed) {
          panel?.destroy();
          this.panelOf.delete(slot.uid);
          continue;
        }
        if (!panel) {
          panel = this.makePanel(slot);
          this.panelOf.set(slot.uid, panel);
          made.push(panel);
        }
        shown.push(panel);
        els.push(panel.el);
      }
    }
    this.panels = shown;
    fill($("#grid"), els);
    return made;
  }

  /** A row's title bar: a button that collapses or expands it, its panel count and its menu; a
   * panel's title dropped on it moves that panel into the row. */
  rowHead(row, count) {
    const index = this.board.rows.indexOf(row);
    const toggle = h("button.row-toggle", { type: "button", "aria-expanded": String(!row.collapsed),
      title: row.collapsed ? "show this row's panels" : "hide this row's panels (they stop asking for data)",
      onclick: () => this.toggleRow(row) },
    h("span.row-caret", { "aria-hidden": "true" }, row.collapsed ? "▸" : "▾"), h("span.row-title", {}, row.title),
    h("span.row-count", {}, `${count} panel${count === 1 ? "" : "s"}`));
    const menu = h("button.btn.small.icon", { type: "button", "aria-label": `row actions: ${row.title}`,
      title: "row actions", "aria-haspopup": "menu", onclick: (e) => openMenu(e.currentTarget, [
        { label: "Rename row…", testid: "row-rename", onSelect: () => this.renameRow(row) },
        { label: "Move row up", testid: "row-up", disabled: index === 0, onSelect: () => this.moveRow(row, -1) },
        { label: "Move row down", testid: "row-down", disabled: index === this.board.rows.length - 1,
          onSelect: () => this.moveRow(row, 1) },
        { label: "Remove row", testid: "row-remove", hint: "its panels stay, above the rows",
          onSelect: () => this.removeRow(row) },
      ]) }, "⋯");
    const el = h("div.board-row", { dataset: { row: String(index), collapsed: String(row.collapsed) } },
      h("h2.row-heading", {}, toggle), menu);
    el.addEventListener("dragover", (e) => {
      if (!e.dataTransfer.types.includes("application/x-fleetscope-panel")) return;
      e.preventDefault();
      el.classList.add("drop-here");
    });
    el.addEventListener("dragleave", () => el.classList.remove("drop-here"));
    el.addEventListener("drop", (e) => {
      el.classList.remove("drop-here");
      const moved = this.board.panels.find((s) => s.uid === Number(e.dataTransfer.getData("application/x-fleetscope-panel")));
      if (!moved) return;
      e.preventDefault();
      this.moveToRow(moved, row);
    });
    return el;
  }

  /** Collapse or expand `row` (kept in the dashboard): its panels are let go, or made and loaded. */
  toggleRow(row) {
    row.collapsed = !row.collapsed;
    this.relayout();
  }

  /** After a change of rows: lay out again, load the panels made, follow the panels shown live. */
  relayout() {
    for (const p of this.arrange()) p.load();
    this.openStream();
    this.boardChanged();
  }

  async addRow() {
    const title = await this.ask("New row", "Title", "", "Add");
    if (title === null) return;
    this.board.rows.push({ uid: ++uid, title, collapsed: false });
    this.relayout();
    this.toast(`Row “${title}” added: drag a panel's title onto it, or use a panel's menu.`);
  }

  async renameRow(row) {
    const title = await this.ask("Rename row", "Title", row.title, "Rename");
    if (title === null) return;
    row.title = title;
    this.relayout();
  }

  moveRow(row, by) {
    const rows = this.board.rows;
    const i = rows.indexOf(row);
    const j = Math.max(0, Math.min(rows.length - 1, i + by));
    if (i < 0 || i === j) return;
    rows.splice(i, 1);
    rows.splice(j, 0, row);
    this.relayout();
  }

  removeRow(row) {
    for (const s of this.board.panels) if (s.row === row) s.row = null;
    this.board.rows = this.board.rows.filter((r) => r !== row);
    this.relayout();
  }

  /** Put the panel of `slot` at the end of `row` (null: above the rows). */
  moveToRow(slot, row) {
    const list = this.board.panels;
    list.splice(list.indexOf(slot), 1);
    slot.row = row;
    list.push(slot); // arrange() orders by row, keeping this order within each
    this.relayout();
  }

  /** The menu of rows a panel can move to (from its own menu). */
  rowMenu(panel, anchor) {
    const here = panel.slot.row ?? null;
    openMenu(anchor, [
      { heading: "Move to row" },
      ...[null, ...this.board.rows].map((row) => ({ label: row ? row.title : "No row (above the rows)",
        testid: `to-row-${row ? this.board.rows.indexOf(row) : "none"}`, disabled: row === here,
        onSelect: () => this.moveToRow(panel.slot, row) })),
    ]);
  }

  makePanel(slot) {
    const inst = this.insts.get(slot.instrumentation);
    if (!inst) return missingPanel(this, slot);
    const panel = new Panel(this, slot, inst);
    panel.body.chart.setAnnotations(this.annotations || []);
    return panel;
  }

  renderBoards() {
    const sel = $("#board");
    fill(sel, h("option", { value: "" }, ALL.name),
      this.dashboards.map((b) => h("option", { value: String(b.id) }, b.name)));
    sel.value = this.board.id === null ? "" : String(this.board.id);
    $("#save-state").textContent = "";
  }

  /** The dashboard as the API stores it (panels of deleted instrumentations left out). */
  document(name = this.board.name) {
    const rows = this.board.rows;
    const doc = { name, panels: this.board.panels.filter((s) => this.insts.has(s.instrumentation))
      .map((s) => ({ instrumentation: s.instrumentation, ...(s.row ? { row: rows.indexOf(s.row) } : {}),
        options: s.options })) };
    if (rows.length) doc.rows = rows.map((r) => ({ title: r.title, collapsed: r.collapsed }));
    return doc;
  }

  boardChanged() {
    if (this.board.id !== null) {
      $("#save-state").textContent = "saving…";
      this.save();
    }
  }

  async saveBoard() {
    if (this.board.id === null) return;
    try {
      const saved = await api.saveDashboard(this.board.id, this.document());
      this.dashboards = this.dashboards.map((b) => (b.id === saved.id ? saved : b));
      $("#save-state").textContent = "saved";
    } catch (err) {
      $("#save-state").textContent = "";
      this.toast(`Not saved: ${err.message}`, "error");
    }
  }

  async saveAs() {
    const name = await this.ask("Save dashboard", "Name", this.board.id === null ? "" : `${this.board.name} (copy)`, "Save");
    if (name === null) return;
    try {
      const created = await api.createDashboard(this.document(name));
      this.dashboards.push(created);
      this.navigate(created.id);
      this.toast(`Saved “${created.name}”. Its address shows it to anyone.`);
    } catch (err) {
      this.toast(err.message, "error");
      if (err.status === 409 || err.field === "name") this.saveAs();
    }
  }

  async rename() {
    const name = await this.ask("Rename dashboard", "Name", this.board.name, "Rename");
    if (name === null) return;
    try {
      const saved = await api.saveDashboard(this.board.id, this.document(name));
      this.board.name = saved.name;
      this.dashboards = this.dashboards.map((b) => (b.id === saved.id ? saved : b));
      this.renderBoards();
    } catch (err) {
      this.toast(err.message, "error");
    }
  }

  async deleteBoard() {
    if (!(await this.confirm(`Delete the dashboard “${this.board.name}”?`, "Its instrumentations stay.", "Delete"))) return;
    try {
      await api.deleteDashboard(this.board.id);
      this.dashboards = this.dashboards.filter((b) => b.id !== this.board.id);
      this.navigate(null);
    } catch (err) {
      this.toast(err.message, "error");
    }
  }

  /** The panels' selections in the address (`sel=ID:h:KEY` highlighted, `sel=ID:i:KEY` shown
   * alone), so that a copied link shows what its sender saw; read back by each panel. */
  selectionsToUrl() {
    const q = new URLSearchParams(location.search);
    q.delete("sel");
    for (const p of this.panels) {
      const sel = p.body?.urlSelection?.();
      if (sel) q.append("sel", `${p.inst.id}:${sel}`);
    }
    history.replaceState(null, "", `${location.pathname}${q.size ? `?${q}` : ""}`);
  }

  async copyLink() {
    try {
      await navigator.clipboard.writeText(location.href);
      this.toast("Link copied.");
    } catch {
      await this.ask("Link to this view", "Copy it from here", location.href, "Done");
    }
  }

  navigate(id) {
    const q = new URLSearchParams(location.search);
    if (id === null) q.delete("dashboard");
    else q.set("dashboard", String(id));
    q.delete("sel"); // another dashboard's panels
    history.pushState(null, "", `${location.pathname}${q.size ? `?${q}` : ""}`);
    this.sync();
  }

  // -- panels ----------------------------------------------------------------------------------

  reloadPanels() {
    for (const p of this.panels) p.load();
    this.loadAnnotations();
  }

  /** Annotations and alert state changes of the range shown, drawn on every panel. */
  async loadAnnotations() {
    const end = this.time.live ? Math.floor(Date.now() / 1000) + 60 : this.time.end;
    const start = end - this.time.span - 60;
    try {
      this.annotations = await api.annotations({ start_time: start, end_time: end });
    } catch {
      return; // not fatal: the panels still draw (an older server, a connection lost)
    }
    for (const p of this.panels) p.body?.chart?.setAnnotations?.(this.annotations);
  }

  openStream() {
    const ids = this.panels.filter((p) => p.inst).map((p) => p.inst.id);
    if (!this.stream.sameAs(ids)) this.stream.open(ids);
  }

  onValue(point) {
    if (!this.time.live) return;
    for (const p of this.panels) if (p.inst && p.inst.id === point.instrumentation) p.onPoint(point);
  }

  /** Put a new instrumentation on the dashboard (after the panel it was drilled from). */
  addPanel(inst, { after = null } = {}) {
    this.insts.set(inst.id, inst);
    const options = {};
    const slot = { uid: ++uid, instrumentation: inst.id, row: after?.row ?? null, options };
    if (this.board.id === null) {
      this.allOptions.set(inst.id, options);
      const at = after ? this.allOrder.indexOf(after.instrumentation) + 1 : this.allOrder.length;
      this.allOrder.splice(at || this.allOrder.length, 0, inst.id);
    }
    const index = after ? this.board.panels.indexOf(after) + 1 : this.board.panels.length;
    this.board.panels.splice(index || this.board.panels.length, 0, slot);
    if (slot.row) slot.row.collapsed = false;
    for (const p of this.arrange()) p.load();
    const panel = this.panelOf.get(slot.uid);
    this.openStream();
    this.boardChanged();
    this.flash(panel, "nearest");
    return panel;
  }

  /** Scroll `panel` into view and mark it for a moment. */
  flash(panel, block) {
    panel.el.classList.add("fresh");
    panel.el.scrollIntoView({ block, behavior: "smooth" });
    setTimeout(() => panel.el.classList.remove("fresh"), 1600);
  }

  /** Bring the panel of instrumentation `id` into view, if it is on this dashboard. */
  focusPanel(id) {
    const panel = this.panels.find((p) => p.inst && p.inst.id === id);
    if (panel) this.flash(panel, "center");
    else this.toast(`Instrumentation ${id} is not on this dashboard.`);
  }

  /** Show [from, to) and the panel of instrumentation `id` (an alert's link, followed in the page). */
  showAround(from, to, id) {
    this.time.setRange(from, to);
    this.focusPanel(id);
  }

  removeSlot(slot) {
    const i = this.board.panels.indexOf(slot);
    if (i < 0) return;
    this.board.panels.splice(i, 1);
    this.panelOf.get(slot.uid)?.destroy();
    this.panelOf.delete(slot.uid);
    this.arrange();
    this.openStream();
    this.boardChanged();
  }

  removePanel(panel) {
    this.removeSlot(panel.slot);
  }

  /** Put `panel` at position `to` of the panels shown (a drag onto another panel, or its menu),
   * in the row of the panel it takes the place of. */
  movePanel(panel, to) {
    const from = this.panels.indexOf(panel);
    to = Math.max(0, Math.min(this.panels.length - 1, to));
    if (from < 0 || from === to) return;
    const target = this.panels[to].slot;
    const list = this.board.panels;
    list.splice(list.indexOf(panel.slot), 1);
    panel.slot.row = target.row ?? null;
    list.splice(list.indexOf(target) + (from < to ? 1 : 0), 0, panel.slot);
    if (this.board.id === null) this.allOrder = list.map((s) => s.instrumentation);
    this.arrange();
    this.boardChanged();
  }

  async deleteInstrumentation(panel) {
    const inst = panel.inst;
    const ok = await this.confirm(`Delete instrumentation ${inst.id}?`,
      `${inst.metric}${inst.decomposition.length ? ` by ${inst.decomposition.join(", ")}` : ""}: it stops collecting ` +
      "and leaves every dashboard.", "Delete");
    if (!ok) return;
    try {
      await api.remove(inst.id);
    } catch (err) {
      if (err.status !== 404) return this.toast(err.message, "error");
    }
    this.insts.delete(inst.id);
    this.allOrder = this.allOrder.filter((id) => id !== inst.id);
    for (const slot of this.board.panels.filter((s) => s.instrumentation === inst.id)) this.removeSlot(slot);
    this.toast(`Instrumentation ${inst.id} deleted.`);
  }

  instrumentationChanged(inst) {
    this.insts.set(inst.id, inst);
    this.panels = this.panels.map((p) => {
      if (!p.inst || p.inst.id !== inst.id) return p;
      const fresh = this.makePanel(p.slot);
      p.el.replaceWith(fresh.el);
      p.destroy();
      this.panelOf.set(p.slot.uid, fresh);
      fresh.load();
      return fresh;
    });
    this.toast(`Instrumentation ${inst.id} changed.`);
  }

  panelDrawn() {
    if (this.firstChart !== null) return;
    this.firstChart = performance.now();
    performance.mark("fleetscope:first-chart");
    document.documentElement.dataset.ready = "true";
  }

  // -- time ------------------------------------------------------------------------------------

  /** Keys for the whole page, unless typing in a field or a menu/dialog has them: ← → pan by
   * half a range, + − zoom by two about its middle, Escape leaves every panel's selection. */
  keyboard(e) {
    if (e.ctrlKey || e.metaKey || e.altKey || e.defaultPrevented) return;
    if (e.target.closest?.("input, textarea, select, [contenteditable], dialog, [role=menu]")) return;
    const act = { ArrowLeft: () => this.time.pan(-1), ArrowRight: () => this.time.pan(1),
      "+": () => this.time.zoom(0.5), "=": () => this.time.zoom(0.5), "-": () => this.time.zoom(2),
      Escape: () => { for (const p of this.panels) p.body?.clearSelection?.(); } }[e.key];
    if (!act) return;
    e.preventDefault();
    act();
  }

  timeChanged() {
    const q = new URLSearchParams(location.search);
    this.time.toParams(q);
    history.replaceState(null, "", `${location.pathname}${q.size ? `?${q}` : ""}`);
    this.renderTime();
    this.reloadPanels();
  }

  renderTime() {
    const t = this.time;
    for (const b of $$("#presets .seg[data-span]")) {
      b.setAttribute("aria-pressed", String(Number(b.dataset.span) === t.span));
    }
    $("#custom-btn").setAttribute("aria-pressed", String(!t.live && ![60, 300, 3600, 86400].includes(t.span)));
    const live = $("#live-btn");
    live.textContent = t.live ? "Pause" : "Live";
    live.title = t.live ? "stop following the present" : "follow the present";
    live.classList.toggle("paused", !t.live);
    $("#range-label").textContent = t.live ? "" : t.describe();
    $("#range-label").title = t.describe();
    document.documentElement.classList.toggle("is-paused", !t.live);
    this.setConn(this.online ? "live" : "down");
  }

  bindControls() {
    for (const b of $$("#presets .seg[data-span]")) {
      b.addEventListener("click", () => {
        $("#custom-range").hidden = true;
        this.time.span = Number(b.dataset.span);
        if (this.time.live) this.time.changed();
        else this.time.pause(Math.min(this.time.end, Math.floor(Date.now() / 1000)));
      });
    }
    $("#custom-btn").addEventListener("click", () => {
      const form = $("#custom-range");
      form.hidden = !form.hidden;
      $("#range-from").value = toLocalInput(this.time.start);
      $("#range-to").value = toLocalInput(this.time.end ?? Math.floor(Date.now() / 1000));
    });
    $("#custom-range").addEventListener("submit", (e) => {
      e.preventDefault();
      const from = fromLocalInput($("#range-from").value);
      const to = fromLocalInput($("#range-to").value);
      if (!(to > from)) return this.toast("The range must end after it starts.", "error");
      $("#custom-range").hidden = true;
      this.time.setRange(from, to);
    });
    $("#range-cancel").addEventListener("click", () => {
      $("#custom-range").hidden = true;
    });
    $("#live-btn").addEventListener("click", () => (this.time.live ? this.time.pause() : this.time.goLive()));
    $("#pan-back").addEventListener("click", () => this.time.pan(-1));
    $("#pan-fwd").addEventListener("click", () => this.time.pan(1));
    document.addEventListener("keydown", (e) => this.keyboard(e));
    $("#new-inst").addEventListener("click", () => this.form.openCreate());
    $("#save-as").addEventListener("click", () => this.saveAs());
    $("#board").addEventListener("change", (e) => this.navigate(e.target.value ? Number(e.target.value) : null));
    $("#board-menu").addEventListener("click", (e) => {
      const saved = this.board.id !== null;
      openMenu(e.currentTarget, [
        { label: "Save as new dashboard…", onSelect: () => this.saveAs() },
        { label: "New row…", testid: "new-row", disabled: !saved, hint: saved ? "a titled group of panels" : "save the dashboard first",
          onSelect: () => this.addRow() },
        { label: "Rename…", disabled: !saved, onSelect: () => this.rename() },
        { label: "Copy link", hint: "this dashboard and range", onSelect: () => this.copyLink() },
        { label: "Delete dashboard", disabled: !saved, onSelect: () => this.deleteBoard() },
        { label: "Log out", hint: "end this session", onSelect: () => this.logout() },
      ], { align: "left" });
    });
    $("#theme-btn").addEventListener("click", () => {
      const now = document.documentElement.dataset.theme || "auto";
      const next = THEMES[(THEMES.indexOf(now) + 1) % THEMES.length];
      try {
        localStorage.setItem("fleetscope.theme", next);
      } catch { /* private mode: the choice lasts for this page */ }
      document.documentElement.dataset.theme = next;
      this.applyTheme();
    });
    matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => this.applyTheme());
  }

  applyTheme() {
    themeChanged();
    const theme = document.documentElement.dataset.theme || "auto";
    const btn = $("#theme-btn");
    btn.textContent = { auto: "◐", light: "☀", dark: "☾" }[theme];
    btn.title = `theme: ${theme === "auto" ? "follows the system" : theme} (click to change)`;
    for (const p of this.panels) p.redrawTheme();
  }

  // -- connection ------------------------------------------------------------------------------

  setConn(state) {
    const el = $("#conn");
    const paused = !this.time.live;
    const s = state === "down" || state === "login" ? state : paused ? "paused" : "live";
    el.dataset.state = s;
    $(".conn-text", el).textContent = { down: "offline", login: "not logged in", paused: "paused", live: "live" }[s];
  }

  /** The server went away: say so, and come back by ourselves when it answers again. */
  async connectionLost() {
    if (!this.online || this.checking) return;
    this.stream.close();
    // A stream can also fail while the server is fine (an instrumentation deleted elsewhere):
    // then reload what the page shows, without crying wolf.
    this.checking = true;
    const up = await api.healthy();
    this.checking = false;
    if (up) {
      try {
        await this.sync();
        return;
      } catch { /* it went away after all */ }
    }
    if (!this.online) return;
    this.online = false;
    $("#banner").hidden = false;
    this.setConn("down");
    const attempt = async (delay) => {
      if (await api.healthy()) {
        try {
          await this.sync();
          this.online = true;
          $("#banner").hidden = true;
          this.setConn("live");
          this.toast("Reconnected.");
          return;
        } catch { /* not ready yet */ }
      }
      setTimeout(() => attempt(Math.min(delay * 1.5, 5000)), delay);
    };
    setTimeout(() => attempt(500), 300);
  }

  // -- small UI ----------------------------------------------------------------------------------

  toast(message, kind = "info") {
    const el = h("div.toast", { class: kind, role: kind === "error" ? "alert" : "status" }, message);
    $("#toasts").append(el);
    setTimeout(() => el.classList.add("out"), kind === "error" ? 6000 : 3000);
    setTimeout(() => el.remove(), kind === "error" ? 6400 : 3400);
  }

  /** A modal asking for a line of text; resolves to it, or null if cancelled. */
  ask(title, label, value, action) {
    const dialog = $("#dialog");
    const input = h("input", { id: "dialog-input", value, autocomplete: "off", required: true, maxLength: 100 });
    return new Promise((resolve) => {
      fill(dialog, h("form", { method: "dialog", onsubmit: (e) => {
        e.preventDefault();
        const v = input.value.trim();
        if (!v) return;
        dialog.close();
        resolve(v);
      } },
      h("h2", {}, title), h("label.form-row", {}, h("span.form-label", {}, label), input),
      h("div.form-actions", {}, h("button.btn", { type: "button", onclick: () => {
        dialog.close();
        resolve(null);
      } }, "Cancel"), h("button.btn.primary", { type: "submit", id: "dialog-ok" }, action))));
      dialog.onclose = () => resolve(null);
      dialog.showModal();
      input.select();
    });
  }

  /** A modal yes/no question; resolves to true when confirmed. */
  confirm(title, text, action) {
    const dialog = $("#dialog");
    return new Promise((resolve) => {
      const done = (v) => {
        dialog.close();
        resolve(v);
      };
      fill(dialog, h("h2", {}, title), h("p", {}, text), h("div.form-actions", {},
        h("button.btn", { type: "button", onclick: () => done(false) }, "Cancel"),
        h("button.btn.danger", { type: "button", id: "dialog-ok", onclick: () => done(true) }, action)));
      dialog.onclose = () => resolve(false);
      dialog.showModal();
    });
  }
}

const app = new App();
window.fleetscope = app; // for the browser tests and the benchmark
app.boot();
