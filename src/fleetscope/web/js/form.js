// The drawer that creates an instrumentation (or changes one), checking input as it is typed.

import { api } from "./net/api.js";
import { debounce, fill, h } from "./lib/dom.js";
import { formatDuration } from "./lib/format.js";

const FIELDS = ["metric", "decomposition", "predicate", "granularity", "retention", "idle_max", "persist"];

function unitName(type) {
  return { number: "", percent: "%", bytes: "bytes" }[type.base] ?? type.name;
}

export class InstrumentationForm {
  constructor(app) {
    this.app = app;
    this.editing = null;
    this.check = debounce(() => this.validate(), 250);
    this.controller = null;
    this.build();
  }

  build() {
    const input = (name, attrs) => h("input", { id: `f-${name}`, name, autocomplete: "off", spellcheck: false, ...attrs });
    const error = (name) => h("div.field-error", { id: `f-${name}-error`, role: "alert", dataset: { for: name } });
    this.metricSel = h("select", { id: "f-metric", name: "metric", onchange: () => this.metricChanged() });
    this.discreteSel = h("select", { id: "f-discrete", onchange: () => this.check() });
    this.numericSel = h("select", { id: "f-numeric", onchange: () => this.check() });
    this.predicate = input("predicate", { placeholder: 'e.g. execname != "idle" and utilization > 5%',
      oninput: () => this.check() });
    this.predicateMsg = error("predicate");
    this.granularity = input("granularity", { type: "number", min: 1, max: 3600, value: 1, oninput: () => this.check() });
    this.retention = input("retention", { value: "10m", oninput: () => this.check() });
    this.idleMax = input("idle_max", { value: "1h", oninput: () => this.check() });
    this.persist = input("persist", { type: "checkbox" });
    this.info = h("div.metric-info");
    this.general = error("general");
    this.submitBtn = h("button.btn.primary", { type: "submit", id: "f-submit" }, "Create");
    this.titleEl = h("h2", {}, "New instrumentation");
    const row = (label, control, name, hint) => h("label.form-row", { dataset: { field: name } },
      h("span.form-label", {}, label), control, hint ? h("span.form-hint", {}, hint) : null, error(name));
    this.form = h("form.drawer-form", { onsubmit: (e) => {
      e.preventDefault();
      this.submit();
    } },
    row("Metric", this.metricSel, "metric"),
    this.info,
    h("div.form-pair", {}, row("Break down by", this.discreteSel, "decomposition"),
      row("Distribution of", this.numericSel, "numeric", "drawn as a heatmap")),
    h("label.form-row", { dataset: { field: "predicate" } }, h("span.form-label", {}, "Filter"), this.predicate,
      this.predicateMsg),
    h("div.form-pair", {},
      row("Granularity (s)", this.granularity, "granularity"),
      row("Retention", this.retention, "retention", "e.g. 10m, 1h, 1d")),
    h("div.form-pair", {},
      row("Expire when unused for", this.idleMax, "idle_max", "0: never"),
      h("label.form-row.check", { dataset: { field: "persist" } }, this.persist,
        h("span", {}, "Keep history in the store"), error("persist"))),
    this.general,
    h("div.form-actions", {}, h("button.btn", { type: "button", onclick: () => this.close() }, "Cancel"),
      this.submitBtn));
    this.el = h("div.drawer", { id: "drawer", "aria-hidden": "true" },
      h("div.drawer-inner", { role: "dialog", "aria-labelledby": "drawer-title" },
        h("header.drawer-head", {}, Object.assign(this.titleEl, { id: "drawer-title" }),
          h("button.btn.icon", { type: "button", title: "close", "aria-label": "close", onclick: () => this.close() }, "×")),
        this.form));
    this.el.addEventListener("mousedown", (e) => {
      if (e.target === this.el) this.close();
    });
    document.addEventListener("keydown", (e) => {
      if (e.key === "Escape" && this.isOpen) this.close();
    });
    document.body.append(this.el);
  }

  get isOpen() {
    return this.el.classList.contains("open");
  }

  fillMetrics() {
    const groups = new Map();
    for (const m of this.app.metrics.values()) {
      if (!groups.has(m.module)) groups.set(m.module, []);
      groups.get(m.module).push(m);
    }
    fill(this.metricSel, [...groups.entries()].map(([module, ms]) => h("optgroup", { label: module },
      ms.map((m) => h("option", { value: m.name }, `${m.name} — ${m.label}`)))));
  }

  openCreate(metric = "proc.cpu") {
    this.editing = null;
    this.fillMetrics();
    this.metricSel.value = this.app.metrics.has(metric) ? metric : this.metricSel.options[0]?.value;
    this.titleEl.textContent = "New instrumentation";
    this.submitBtn.textContent = "Create";
    this.predicate.value = "";
    this.granularity.value = 1;
    this.retention.value = "10m";
    this.idleMax.value = "1h";
    this.persist.checked = false;
    this.setLocked(false);
    this.metricChanged();
    this.show();
    this.metricSel.focus();
  }

  edit(inst) {
    this.editing = inst;
    this.fillMetrics();
    this.metricSel.value = inst.metric;
    this.metricChanged();
    this.discreteSel.value = inst.discrete || "";
    this.numericSel.value = inst.numeric || "";
    this.predicate.value = inst.predicate_text;
    this.granularity.value = inst.granularity;
    this.retention.value = formatDuration(inst.retention).replace(/ /g, "").replace("min", "m");
    this.idleMax.value = inst.idle_max ? String(inst.idle_max) : "0";
    this.persist.checked = inst.persist;
    this.titleEl.textContent = `Instrumentation ${inst.id}`;
    this.submitBtn.textContent = "Save changes";
    this.setLocked(true);
    this.clearErrors();
    this.show();
    this.retention.focus();
  }

  setLocked(locked) {
    for (const el of [this.metricSel, this.discreteSel, this.numericSel, this.predicate, this.granularity]) {
      el.disabled = locked;
    }
    this.form.classList.toggle("locked", locked);
  }

  show() {
    this.el.classList.add("open");
    this.el.setAttribute("aria-hidden", "false");
  }

  close() {
    this.el.classList.remove("open");
    this.el.setAttribute("aria-hidden", "true");
    this.check.cancel();
  }

  metric() {
    return this.app.metrics.get(this.metricSel.value);
  }

  metricChanged() {
    const m = this.metric();
    if (!m) return;
    const opt = (f) => h("option", { value: f.name }, `${f.name}${unitName(f.type) ? ` (${unitName(f.type)})` : ""}`);
    const discrete = m.fields.filter((f) => f.kind === "discrete");
    const numeric = m.fields.filter((f) => f.kind === "numeric");
    fill(this.discreteSel, h("option", { value: "" }, "— nothing —"), discrete.map(opt));
    fill(this.numericSel, h("option", { value: "" }, numeric.length ? "— none —" : "— no numeric field —"),
      numeric.map(opt));
    this.numericSel.disabled = !numeric.length || Boolean(this.editing);
    const kind = m.kind === "interval" ? "activity per interval, summed over time" : "a level, averaged over time";
    fill(this.info, h("div.metric-line", {}, h("strong", {}, m.label), ` · ${m.unit.name} · ${kind}`),
      h("div.metric-fields", {}, m.fields.map((f) => h("span.field-chip", {
        class: f.kind, title: `${f.label} (${f.kind}${unitName(f.type) ? `, ${unitName(f.type)}` : ""})`,
      }, f.name))));
    if (!this.editing) this.check();
  }

  body() {
    const decomposition = [this.discreteSel.value, this.numericSel.value].filter(Boolean);
    const body = { metric: this.metricSel.value, decomposition };
    if (this.predicate.value.trim()) body.predicate = this.predicate.value;
    const g = this.granularity.value.trim();
    body.granularity = /^\d+$/.test(g) ? Number(g) : g;
    body.retention = this.retention.value.trim();
    body.idle_max = this.idleMax.value.trim();
    body.persist = this.persist.checked;
    return body;
  }

  clearErrors() {
    for (const el of this.el.querySelectorAll(".field-error")) {
      el.textContent = "";
      el.classList.remove("ok");
    }
    for (const el of this.el.querySelectorAll(".invalid")) el.classList.remove("invalid");
  }

  /** Show an API error next to the input it names. */
  showError(err) {
    const field = FIELDS.includes(err.field) ? err.field : err.field === "stat" || err.field === "module" ? "metric" : null;
    const target = field ? this.el.querySelector(`#f-${field}-error`) : this.general;
    target.textContent = field ? `${err.field}: ${err.detail}` : err.message;
    const input = field && this.el.querySelector(`#f-${field === "decomposition" ? "discrete" : field}`);
    input?.classList.add("invalid");
  }

  async validate() {
    if (this.editing) return;
    this.controller?.abort();
    const controller = new AbortController();
    this.controller = controller;
    try {
      const spec = await api.validate(this.body(), controller.signal);
      if (controller.signal.aborted) return;
      this.clearErrors();
      this.predicateMsg.classList.add("ok");
      this.predicateMsg.textContent = spec.predicate_text ? `✓ ${spec.predicate_text}` : "✓ no filter: everything";
    } catch (err) {
      if (err.name === "AbortError" || controller.signal.aborted) return;
      this.clearErrors();
      this.showError(err);
    }
  }

  async submit() {
    this.check.cancel();
    this.submitBtn.disabled = true;
    try {
      if (this.editing) {
        const body = { retention: this.retention.value.trim(), idle_max: this.idleMax.value.trim(),
          persist: this.persist.checked };
        const updated = await api.update(this.editing.id, body);
        this.app.instrumentationChanged(updated);
      } else {
        const created = await api.create(this.body());
        this.app.addPanel(created);
      }
      this.close();
    } catch (err) {
      this.clearErrors();
      this.showError(err);
    } finally {
      this.submitBtn.disabled = false;
    }
  }
}
