// "Alert when…": the small form (a modal dialog) that makes an alert rule on a panel's
// instrumentation, started from the panel's own values; the API's errors show by their field.

import { api } from "./net/api.js";
import { fill, h } from "./lib/dom.js";

const FIELDS = ["when", "for", "clear", "severity", "receivers", "summary"]; // the body fields shown here
const SEVERITIES = ["info", "warning", "critical"];
const DEFAULT_FOR = "30s"; // quiet until it really holds: a spike of a few seconds does not fire
const RECEIVER_ROWS = 4; // visible rows of the receivers' list

export class AlertForm {
  constructor(app) {
    this.app = app;
    this.panel = null;
    this.build();
  }

  build() {
    const input = (name, attrs) => h("input", { id: `a-${name}`, name, autocomplete: "off", spellcheck: false, ...attrs });
    const error = (name) => h("div.field-error", { id: `a-${name}-error`, role: "alert", dataset: { for: name } });
    const row = (label, control, name, hint) => h("label.form-row", { dataset: { field: name } },
      h("span.form-label", {}, label), control, hint || null, error(name));
    this.when = input("when", { required: true, maxLength: 1024 });
    this.whenHint = h("span.form-hint");
    this.forInput = input("for", { placeholder: "0s", title: "how long the condition must hold before it fires" });
    this.clear = input("clear", { placeholder: "the threshold", title: "hysteresis: a firing alert clears only past this" });
    this.severity = h("select", { id: "a-severity", name: "severity" },
      SEVERITIES.map((s) => h("option", { value: s }, s)));
    this.receivers = h("select", { id: "a-receivers", name: "receivers", multiple: true, size: RECEIVER_ROWS });
    this.receiversHint = h("span.form-hint#a-receivers-hint");
    this.summary = input("summary", { placeholder: "{metric} is {value} ({key})", maxLength: 1024 });
    this.general = error("general");
    this.subEl = h("p.alert-on");
    this.submitBtn = h("button.btn.primary", { type: "submit", id: "a-submit" }, "Create rule");
    this.form = h("form.alert-form", { onsubmit: (e) => {
      e.preventDefault();
      this.submit();
    } },
    row("When", this.when, "when", this.whenHint),
    h("div.form-pair", {},
      row("For", this.forInput, "for", h("span.form-hint", {}, "holds this long before it fires")),
      row("Clear at", this.clear, "clear", h("span.form-hint", {}, "hysteresis (optional)"))),
    row("Severity", this.severity, "severity"),
    row("Tell", this.receivers, "receivers", this.receiversHint),
    row("Summary", this.summary, "summary", h("span.form-hint", {}, "{value}, {key}, {threshold}, {metric} are filled in")),
    this.general,
    h("div.form-actions", {}, h("button.btn", { type: "button", onclick: () => this.close() }, "Cancel"),
      this.submitBtn));
    this.el = h("dialog.dialog.alert-dialog#alert-dialog", { "aria-labelledby": "alert-title" },
      h("h2#alert-title", {}, "Alert when…"), this.subEl, this.form);
    document.body.append(this.el);
  }

  get isOpen() {
    return this.el.open;
  }

  /** Open the form for `panel`, with a condition suggested from what it shows. */
  open(panel) {
    this.panel = panel;
    const inst = panel.inst;
    this.subEl.textContent = `On instrumentation ${inst.id}: ${inst.metric}` +
      `${inst.decomposition.length ? ` by ${inst.decomposition.join(", ")}` : ""}` +
      `${inst.predicate_text ? ` where ${inst.predicate_text}` : ""}`;
    this.when.value = panel.rules.suggestion();
    this.whenHint.textContent = panel.rules.hint();
    this.forInput.value = DEFAULT_FOR;
    this.clear.value = "";
    this.severity.value = "warning";
    this.summary.value = "";
    this.clearErrors();
    this.loadReceivers();
    this.el.showModal();
    this.when.focus();
    this.when.select();
  }

  close() {
    this.el.close();
  }

  /** The receivers a rule can tell (the caller's tenant's); how to make one when there is none. */
  async loadReceivers() {
    fill(this.receivers);
    this.receivers.hidden = false;
    this.receiversHint.textContent = "loading receivers…";
    let receivers;
    try {
      receivers = await api.alertReceivers();
    } catch (err) {
      this.receiversHint.textContent = `Receivers cannot be listed: ${err.message}`;
      return;
    }
    fill(this.receivers, receivers.map((r) => h("option", { value: r.name }, `${r.name} (${r.kind})`)));
    this.receivers.size = Math.min(RECEIVER_ROWS, Math.max(2, receivers.length));
    this.receivers.hidden = !receivers.length;
    if (receivers.length) {
      this.receiversHint.textContent = "ctrl-click to pick several; none: the alert shows only under Alerts";
      return;
    }
    fill(this.receiversHint, "No receivers yet: the alert shows only under Alerts. To be told, make one (",
      h("code", {}, "fleetscope alert receiver create ops --kind webhook --set url=https://…"),
      ", or --kind alertmanager / email; see the README's Alerts section) and reopen this form.");
  }

  body() {
    const body = { instrumentation: this.panel.inst.id, when: this.when.value.trim(), severity: this.severity.value,
      receivers: [...this.receivers.selectedOptions].map((o) => o.value) };
    const duration = (text) => (/^\d+$/.test(text) ? Number(text) : text);
    if (this.forInput.value.trim()) body.for = duration(this.forInput.value.trim());
    if (this.clear.value.trim()) body.clear = this.clear.value.trim();
    if (this.summary.value.trim()) body.summary = this.summary.value.trim();
    return body;
  }

  clearErrors() {
    for (const el of this.el.querySelectorAll(".field-error")) el.textContent = "";
    for (const el of this.el.querySelectorAll(".invalid")) el.classList.remove("invalid");
  }

  /** Show an API error next to the field it names (`error.field`), or under the form. */
  showError(err) {
    const field = FIELDS.includes(err.field) ? err.field : null;
    const target = field ? this.el.querySelector(`#a-${field}-error`) : this.general;
    target.textContent = field ? `${err.field}: ${err.detail}` : err.message;
    if (field) this.el.querySelector(`#a-${field}`)?.classList.add("invalid");
  }

  async submit() {
    const panel = this.panel;
    this.submitBtn.disabled = true;
    try {
      const rule = await api.createAlertRule(this.body());
      this.close();
      this.app.toast(`Alert rule ${rule.id} made: ${rule.when}.`);
      panel.rules.load();
      this.app.alerting.refresh();
    } catch (err) {
      this.clearErrors();
      this.showError(err);
    } finally {
      this.submitBtn.disabled = false;
    }
  }
}
