// Firing and recent alerts: asked of the API every few seconds, counted on the toolbar's Alerts
// button, listed in a drawer (firing, pending, resolved) with a link to the dashboard around the
// time of each; the panels colour their thresholds by the state of their rules from here.

import { api } from "./net/api.js";
import { $, fill, h } from "./lib/dom.js";
import { formatDuration, formatTime } from "./lib/format.js";
import { observedText } from "./panels/rules.js";

const EVERY_MS = 10_000;
// Seconds before and after an alert that its link shows: as the notifications' links
// (alerts/engine.py's LINK_BEFORE and LINK_AFTER).
const LINK_BEFORE = 600;
const LINK_AFTER = 300;
const SECTIONS = [
  ["firing", "Firing"],
  ["pending", "Pending", "the condition holds, not yet for long enough"],
  ["resolved", "Resolved", "in the last 6 hours"],
];

/** A local time: of day when it is today ("14:05:30"), else with its date. */
function clock(t) {
  const text = formatTime(t);
  return text.slice(0, 10) === formatTime(Date.now() / 1000).slice(0, 10) ? text.slice(11) : text;
}

export class AlertList {
  constructor(app) {
    this.app = app;
    this.now = { firing: [], pending: [], resolved: [] };
    this.rules = new Map(); // id -> rule, to name what the list shows (read when the drawer opens)
    this.states = new Map(); // rule id -> "firing" | "pending"
    this.button = $("#alerts-btn");
    this.badge = $("#alerts-count");
    this.el = null;
    this.button.addEventListener("click", () => (this.isOpen ? this.close() : this.open()));
    setInterval(() => this.refresh(), EVERY_MS);
  }

  /** "firing", "pending" or "ok": the state of a rule's alerts (the worst of its keys). */
  stateOf(ruleId) {
    return this.states.get(ruleId) || "ok";
  }

  get isOpen() {
    return Boolean(this.el && this.el.classList.contains("open"));
  }

  async refresh() {
    if (!this.app.online || !this.app.me || (document.hidden && !this.isOpen)) return;
    try {
      const [now, rules] = await Promise.all([api.alerts(), this.isOpen ? api.alertRules() : null]);
      this.now = now;
      if (rules) this.rules = new Map(rules.map((r) => [r.id, r]));
    } catch {
      return; // the connection's own checks say what is wrong; the next round asks again
    }
    const states = new Map();
    for (const a of this.now.pending) states.set(a.rule_id, "pending");
    for (const a of this.now.firing) states.set(a.rule_id, "firing");
    const changed = states.size !== this.states.size || [...states].some(([id, s]) => this.states.get(id) !== s);
    this.states = states;
    this.renderBadge();
    if (changed) this.app.alertStatesChanged();
    if (this.isOpen) this.render();
  }

  renderBadge() {
    const { firing, pending } = this.now;
    this.badge.textContent = String(firing.length);
    this.badge.hidden = firing.length === 0;
    this.button.classList.toggle("firing", firing.length > 0);
    this.button.title = `alerts: ${firing.length} firing, ${pending.length} pending (click for the list)`;
    this.button.setAttribute("aria-label", `alerts: ${firing.length} firing`);
  }

  build() {
    this.listEl = h("div.alert-sections");
    this.el = h("div.drawer#alerts-drawer", { "aria-hidden": "true" },
      h("div.drawer-inner", { role: "dialog", "aria-labelledby": "alerts-title" },
        h("header.drawer-head", {}, h("h2#alerts-title", {}, "Alerts"),
          h("button.btn.icon", { type: "button", title: "close", "aria-label": "close", onclick: () => this.close() }, "×")),
        this.listEl));
    this.el.addEventListener("mousedown", (e) => {
      if (e.target === this.el) this.close();
    });
    document.addEventListener("keydown", (e) => {
      if (e.key === "Escape" && this.isOpen) this.close();
    });
    document.body.append(this.el);
  }

  open() {
    if (!this.el) this.build();
    this.el.classList.add("open");
    this.el.setAttribute("aria-hidden", "false");
    this.button.setAttribute("aria-expanded", "true");
    this.render();
    this.refresh();
  }

  close() {
    this.el.classList.remove("open");
    this.el.setAttribute("aria-hidden", "true");
    this.button.setAttribute("aria-expanded", "false");
  }

  render() {
    fill(this.listEl, SECTIONS.map(([state, title, note]) => {
      const alerts = this.now[state] || [];
      return h("section.alert-section", { dataset: { state } },
        h("h3", {}, `${title} `, h("span.alert-n", {}, String(alerts.length)), note ? h("span.alert-note", {}, ` · ${note}`) : null),
        alerts.length ? h("ul.alert-list", {}, alerts.map((a) => this.item(a, state)))
          : h("p.alert-none", {}, `Nothing ${state}.`));
    }));
  }

  /** One alert: its rule, the instrumentation's metric, key, value, since/when, and a link. */
  item(a, state) {
    const instId = a.instrumentation ?? a.inst_id;
    const rule = this.rules.get(a.rule_id);
    const inst = this.app.insts.get(instId);
    const metric = inst && this.app.metrics.get(inst.metric);
    const condition = rule?.condition;
    const when = a.when || rule?.when;
    const name = a.name || rule?.name;
    const severity = a.severity || rule?.severity || "warning";
    const at = state === "resolved" ? a.at : a.since;
    const now = Date.now() / 1000;
    const lasted = (from, to) => formatDuration(Math.max(0, Math.round(to - from)));
    const timing = state === "resolved"
      ? `fired ${clock(a.since)}, resolved ${clock(a.at)} (after ${lasted(a.since, a.at)})`
      : `${state === "firing" ? "firing" : "holding"} since ${clock(a.since)} (${lasted(a.since, now)})`;
    const link = this.link(at, instId);
    return h("li.alert-item", { class: state, dataset: { rule: String(a.rule_id), key: a.key } },
      h("div.alert-title", {}, h("span.sev", { class: severity }, severity),
        h("strong", {}, name || when || `rule ${a.rule_id}`),
        name && when ? h("code", {}, when) : null, h("span.alert-rule", {}, `rule ${a.rule_id}`)),
      h("div.alert-what", {},
        h("code", {}, inst ? inst.metric : `instrumentation ${instId}`),
        inst ? h("span", {}, ` #${instId}`) : null,
        a.key ? h("span.alert-key", {}, ` · key ${a.key}`) : null,
        h("span.alert-value", {}, ` · ${observedText(a.value, condition, inst, metric)}`)),
      h("div.alert-when", {}, h("span", {}, timing), " ",
        h("a.alert-link", { href: link, onclick: (e) => this.follow(e, at, instId) }, "show on the dashboard")));
  }

  /** The dashboard around `t` (as the notifications link it), on the dashboard shown now. */
  link(t, instId) {
    const q = new URLSearchParams();
    if (this.app.board.id !== null) q.set("dashboard", String(this.app.board.id));
    q.set("from", String(Math.floor(t) - LINK_BEFORE));
    q.set("to", String(Math.floor(t) + LINK_AFTER));
    q.set("inst", String(instId));
    return `/?${q}`;
  }

  /** A plain click shows that range here, without reloading the page (a new tab loads the link). */
  follow(event, t, instId) {
    if (event.button !== 0 || event.ctrlKey || event.metaKey || event.shiftKey || event.altKey) return;
    event.preventDefault();
    this.close();
    this.app.showAround(Math.floor(t) - LINK_BEFORE, Math.floor(t) + LINK_AFTER, instId);
  }
}
