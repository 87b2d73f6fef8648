// "Import": performance logs uploaded as a host's history (POST /api/v1/imports), with the
// upload's progress and then the server's parse, the imports listed and deleted; and
// "Compare…": one instrumentation over two runs (imports or time ranges) aligned to their
// starts (GET /instrumentations/{id}/compare), as a table and an overlay of the two runs.
//
// Its own module, dialogs and stylesheet: main.js only calls installImports(app).

import { ApiError } from "./net/api.js";
import { fill, h } from "./lib/dom.js";
import { formatTime, formatValue, fromLocalInput } from "./lib/format.js";

const BASE = "/api/v1";
const FORMATS = ["sysstat", "vmstat", "iostat", "mpstat", "sar-text", "csv"];
const NAMES_HOST = new Set(["sysstat", "iostat", "mpstat", "sar-text"]); // the logs name their host
const CSV_EXAMPLE = '{"time_column": "time", "metrics": [{"metric": "app.latency", "field": "route", "unit": "ms"}]}';
const CHART = { width: 560, height: 180, pad: 34 }; // the overlay's SVG size and left/bottom margin
const SVG = "http://www.w3.org/2000/svg";
const FOLLOW_MS = 250; // between two looks at an import the server reads

/** Add the "Import" button to the toolbar; the dialogs are built when first opened. */
export function installImports(app) {
  const css = h("link", { rel: "stylesheet", href: "/web/css/importing.css" });
  document.head.append(css);
  let dialog = null;
  const button = h("button.btn#import-btn", { type: "button", title: "import performance logs; compare runs",
    "aria-haspopup": "dialog", onclick: () => {
      dialog ||= new ImportDialog(app);
      dialog.open();
    } }, "Import");
  const anchor = document.getElementById("new-inst");
  if (anchor) anchor.before(button);
  return button;
}

/** JSON of `path`, or an ApiError with the server's message (file, line and reason for a log). */
async function getJson(path, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) if (v !== undefined && v !== null && v !== "") q.set(k, v);
  let resp;
  try {
    resp = await fetch(`${BASE}${path}${q.size ? `?${q}` : ""}`, { method: params === null ? "DELETE" : "GET" });
  } catch {
    throw new ApiError(0, { code: "network", message: "the server cannot be reached" });
  }
  if (resp.status === 204) return null;
  const data = await resp.json().catch(() => null);
  if (!resp.ok) throw new ApiError(resp.status, data?.error || { message: resp.statusText });
  return data;
}

/**
 * POST the form as multipart with XMLHttpRequest (fetch tells nothing of an upload's progress):
 * `onProgress(sent, total)` while the body goes up, `onParsing()` once it is all sent. The server
 * answers at once (Prefer: respond-async) with the import loading: resolves with it, rejects
 * with an ApiError (a duplicate, a bad request).
 */
export function upload(form, { onProgress, onParsing } = {}) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `${BASE}/imports`);
    xhr.setRequestHeader("Prefer", "respond-async");
    xhr.responseType = "json";
    xhr.upload.onprogress = (ev) => onProgress?.(ev.loaded, ev.lengthComputable ? ev.total : 0);
    xhr.upload.onload = () => onParsing?.();
    xhr.onerror = () => reject(new ApiError(0, { code: "network", message: "the server cannot be reached" }));
    xhr.onload = () => {
      if (xhr.status === 201 || xhr.status === 202) resolve(xhr.response);
      else reject(new ApiError(xhr.status, xhr.response?.error || { message: xhr.statusText }));
    };
    xhr.send(form);
  });
}

/**
 * Follow an import the server reads: `onRead(progress)` at each look while it loads. Resolves
 * with the import once ready, rejects with an ApiError carrying the server's reason (file, line)
 * if it failed.
 */
export async function follow(imported, { onRead } = {}) {
  let imp = imported;
  while (imp.state === "loading") {
    onRead?.(imp.progress || {});
    await new Promise((done) => setTimeout(done, FOLLOW_MS));
    imp = await getJson(`/imports/${imp.id}`);
  }
  if (imp.state === "failed") {
    const error = imp.error || {};
    throw new ApiError(error.status || 422, error);
  }
  return imp;
}

class ImportDialog {
  constructor(app) {
    this.app = app;
    this.compare = null;
    const input = (name, attrs) => h("input", { id: `imp-${name}`, name, autocomplete: "off", spellcheck: false, ...attrs });
    const row = (label, control, hint) => h("label.form-row", {}, h("span.form-label", {}, label), control,
      hint ? h("span.form-hint", {}, hint) : null);
    this.format = h("select#imp-format", { name: "format", onchange: () => this.formatChanged() },
      FORMATS.map((f) => h("option", { value: f }, f)));
    this.host = input("host", { placeholder: "from the file" });
    this.tz = input("tz", { placeholder: "UTC" });
    this.cpus = input("cpus", { type: "number", min: 1, placeholder: "1" });
    this.mapping = h("textarea#imp-mapping", { name: "mapping", rows: 3, spellcheck: false, placeholder: CSV_EXAMPLE });
    this.mappingRow = row("Mapping (JSON)", this.mapping, "time_column, metrics: see the README");
    this.files = input("files", { type: "file", multiple: true, required: true });
    this.bar = h("progress#imp-progress", { max: 1, value: 0, hidden: true });
    this.status = h("div#imp-status.imp-status", { role: "status", "aria-live": "polite" });
    this.error = h("div#imp-error.field-error", { role: "alert" });
    this.submitBtn = h("button.btn.primary#imp-submit", { type: "submit" }, "Import");
    this.form = h("form.imp-form", { onsubmit: (e) => {
      e.preventDefault();
      this.submit();
    } },
    h("div.form-pair", {}, row("Format", this.format), row("Host", this.host)),
    h("div.form-pair", {}, row("Time zone", this.tz, "of local times in the logs"),
      row("CPUs", this.cpus, "vmstat gives shares of them")),
    this.mappingRow, row("Files", this.files, "one host's logs: one import, all files or none"),
    this.bar, this.status, this.error,
    h("div.form-actions", {}, h("button.btn", { type: "button", onclick: () => this.el.close() }, "Close"),
      this.submitBtn));
    this.list = h("div#imp-list.imp-list");
    this.compareBtn = h("button.btn.small#imp-compare", { type: "button", onclick: () => this.openCompare() },
      "Compare…");
    this.el = h("dialog.dialog.imp-dialog#import-dialog", { "aria-labelledby": "imp-title" },
      h("h2#imp-title", {}, "Import performance logs"), this.form,
      h("div.imp-head", {}, h("h3", {}, "Imports"), this.compareBtn), this.list);
    document.body.append(this.el);
    this.formatChanged();
  }

  open() {
    this.error.textContent = "";
    this.el.showModal();
    this.refresh();
  }

  formatChanged() {
    const fmt = this.format.value;
    this.mappingRow.hidden = fmt !== "csv";
    this.host.placeholder = NAMES_HOST.has(fmt) ? "from the file" : "required";
  }

  async submit() {
    const body = new FormData();
    body.set("format", this.format.value);
    for (const [name, el] of [["host", this.host], ["tz", this.tz], ["cpus", this.cpus]]) {
      if (el.value.trim()) body.set(name, el.value.trim());
    }
    if (this.format.value === "csv" && this.mapping.value.trim()) body.set("mapping", this.mapping.value.trim());
    for (const f of this.files.files) body.append("file", f, f.name);
    this.error.textContent = "";
    this.submitBtn.disabled = true;
    this.bar.hidden = false;
    this.bar.max = 1;
    this.bar.value = 0;
    this.el.dataset.state = "uploading";
    const parsing = () => {
      if (this.el.dataset.state === "parsing") return;
      this.el.dataset.state = "parsing";
      this.bar.removeAttribute("value"); // indeterminate until the server says how far it is
      this.status.textContent = "uploaded; the server is reading the logs…";
    };
    try {
      const loading = await upload(body, {
        onProgress: (sent, total) => {
          this.bar.max = total || 1;
          this.bar.value = total ? sent : 0;
          this.status.textContent = total ? `uploading: ${Math.round((100 * sent) / total)} %` : "uploading";
        },
        onParsing: parsing,
      });
      parsing();
      this.refresh(); // the import, loading, in the list
      const made = await follow(loading, {
        onRead: (p) => {
          if (!p.bytes) return;
          this.bar.max = p.bytes;
          this.bar.value = p.read || 0;
          const cell = this.list.querySelector(`tr[data-import-id="${loading.id}"] .imp-state`);
          if (cell) cell.textContent = percent(p);
          this.status.textContent = p.phase === "writing" ? "writing the import…"
            : p.phase === "queued" ? "uploaded; waiting for the server to read other imports first…"
              : `reading ${p.file || "the logs"}: ${percent(p)}`;
        },
      });
      this.bar.value = this.bar.max;
      this.el.dataset.state = "done";
      this.status.textContent = `import ${made.id}: ${made.host}, ${made.samples} samples every ` +
        `${made.interval} s, ${formatTime(made.start_time)} to ${formatTime(made.end_time)}`;
      this.files.value = "";
      this.refresh();
      this.app.sync?.(); // the metrics imports write may be new to the page
    } catch (err) {
      this.el.dataset.state = "error";
      this.status.textContent = "";
      this.error.textContent = err.detail || err.message;
      this.refresh(); // a failed import is listed with its reason
    } finally {
      this.bar.hidden = true;
      this.submitBtn.disabled = false;
    }
  }

  async refresh() {
    let imports;
    try {
      imports = (await getJson("/imports")).imports;
    } catch (err) {
      fill(this.list, h("p.alert-none", {}, err.detail || err.message));
      return;
    }
    this.imports = imports;
    if (!imports.length) {
      fill(this.list, h("p.alert-none", {}, "No imports yet."));
      return;
    }
    const rows = imports.map((i) => h("tr", { dataset: { importId: i.id } },
      h("td", {}, String(i.id)), h("td", {}, i.host), h("td", {}, i.format),
      h("td", {}, i.start_time ? formatTime(i.start_time) : "–"), h("td", {}, i.end_time ? formatTime(i.end_time) : "–"),
      h("td.num", {}, i.state === "ready" ? `${i.samples ?? "–"}${indexing(i.answers)}`
        : h("span.imp-state", { dataset: { state: i.state }, title: i.error?.message || "" },
          i.state === "loading" && i.progress?.bytes ? percent(i.progress) : i.state)),
      h("td.imp-files", {}, (i.files || []).map((f) => f.name).join(", ")),
      h("td", {}, h("button.btn.small.icon", { type: "button", disabled: i.state === "loading",
        title: i.state === "loading" ? "being read: delete it once it is ready or failed"
          : `delete import ${i.id} and all it wrote`,
        "aria-label": `delete import ${i.id}`, onclick: () => this.remove(i.id) }, "✕"))));
    fill(this.list, h("table.imp-table", {},
      h("thead", {}, h("tr", {}, ["id", "host", "format", "from", "to", "samples", "files", ""].map((c) => h("th", {}, c)))),
      h("tbody", {}, rows)));
  }

  async remove(id) {
    try {
      await getJson(`/imports/${id}`, null);
    } catch (err) {
      this.error.textContent = err.detail || err.message;
      return;
    }
    this.refresh();
  }

  /** The compare dialog over the imports as they are now (the list may still be loading, or
   * an import may have become ready since it was drawn). */
  async openCompare() {
    this.compare ||= new CompareDialog(this.app);
    await this.refresh();
    this.compare.open(this.imports || []);
  }
}

/** One instrumentation over two runs, aligned to their starts: the table and the overlay. */
class CompareDialog {
  constructor(app) {
    this.app = app;
    this.inst = h("select#cmp-inst", { name: "instrumentation" });
    this.runs = { a: this.runControls("a"), b: this.runControls("b") };
    this.step = h("input#cmp-step", { type: "number", min: 1, placeholder: "auto", name: "step" });
    this.error = h("div#cmp-error.field-error", { role: "alert" });
    this.result = h("div#cmp-result.cmp-result");
    const form = h("form.cmp-form", { onsubmit: (e) => {
      e.preventDefault();
      this.run();
    } },
    h("label.form-row", {}, h("span.form-label", {}, "Instrumentation"), this.inst),
    h("div.form-pair", {}, this.runs.a.row, this.runs.b.row),
    h("label.form-row", {}, h("span.form-label", {}, "Step (s)"), this.step),
    this.error,
    h("div.form-actions", {}, h("button.btn", { type: "button", onclick: () => this.el.close() }, "Close"),
      h("button.btn.primary#cmp-submit", { type: "submit" }, "Compare")));
    this.el = h("dialog.dialog.cmp-dialog#compare-dialog", { "aria-labelledby": "cmp-title" },
      h("h2#cmp-title", {}, "Compare runs"), form, this.result);
    document.body.append(this.el);
  }

  /** A run's controls: an import, or a range (from, to). */
  runControls(which) {
    const pick = h(`select#cmp-${which}-import`, { name: `${which}_import`, onchange: () => update() });
    const from = h(`input#cmp-${which}-from`, { type: "datetime-local", step: 1 });
    const to = h(`input#cmp-${which}-to`, { type: "datetime-local", step: 1 });
    const range = h("div.cmp-range", {}, from, to);
    const update = () => { range.hidden = pick.value !== "range"; };
    const row = h("div.form-row", {}, h("span.form-label", {}, `Run ${which.toUpperCase()}`), pick, range);
    return { pick, from, to, range, row, update };
  }

  open(imports) {
    fill(this.inst, [...this.app.insts.values()].map((i) => h("option", { value: i.id },
      `${i.id}: ${i.metric}${i.decomposition.length ? ` by ${i.decomposition.join(", ")}` : ""}` +
      `${i.predicate_text ? ` where ${i.predicate_text}` : ""}`)));
    const ready = imports.filter((i) => i.state === "ready");
    ready.forEach((imp, n) => {
      for (const which of ["a", "b"]) {
        const c = this.runs[which];
        if (n === 0) fill(c.pick);
        c.pick.append(h("option", { value: imp.id }, `import ${imp.id}: ${imp.host} (${formatTime(imp.start_time)})`));
      }
    });
    for (const [n, which] of ["a", "b"].entries()) {
      const c = this.runs[which];
      if (!ready.length) fill(c.pick);
      c.pick.append(h("option", { value: "range" }, "a time range…"));
      c.pick.selectedIndex = Math.min(n, c.pick.options.length - 1);
      c.update();
    }
    this.error.textContent = "";
    this.el.showModal();
  }

  params() {
    const out = {};
    for (const which of ["a", "b"]) {
      const c = this.runs[which];
      if (c.pick.value === "range") {
        out[`${which}_start`] = fromLocalInput(c.from.value);
        out[`${which}_end`] = fromLocalInput(c.to.value);
      } else {
        out[`${which}_import`] = c.pick.value;
      }
    }
    if (this.step.value) out.step = this.step.value;
    return out;
  }

  async run() {
    this.error.textContent = "";
    let body;
    try {
      body = await getJson(`/instrumentations/${this.inst.value}/compare`, this.params());
    } catch (err) {
      this.error.textContent = err.message;
      return;
    }
    this.body = body;
    const inst = this.app.insts.get(body.instrumentation);
    const unit = this.unitOf(inst, body);
    fill(this.result, compareTable(body, unit), overlay(body, unit));
  }

  /** The unit of the values compared: the numeric field's for a distribution, else the metric's. */
  unitOf(inst, body) {
    const metric = this.app.metrics.get(body.metric);
    if (!metric) return { base: "number" };
    if (body.shape === "histogram" || body.shape === "discrete_histogram") {
      const field = metric.fields.find((f) => f.kind === "numeric" && inst?.decomposition.includes(f.name));
      return field?.type || { base: "number" };
    }
    return metric.unit;
  }
}

/** How far the server has read an import: "42 %". */
/** " (indexing 2/3)" while the instrumentations' answers over an import are being made (a long
 * range of it answers once they are), else nothing. */
function indexing(answers) {
  return answers?.pending ? ` (indexing ${answers.ready}/${answers.ready + answers.pending})` : "";
}

function percent(progress) {
  return `${Math.round((100 * (progress.read || 0)) / progress.bytes)} %`;
}

/** Per key and statistic: a, b, b - a, change. */
export function compareTable(body, unit) {
  const stats = ["average", ...body.quantiles.map((q) => `p${+(q * 100).toFixed(3)}`)];
  const rate = body.per_second;
  const pct = (x) => (x === null || x === undefined ? "–" : `${x >= 0 ? "+" : ""}${(100 * x).toFixed(1)} %`);
  const rows = [];
  for (const row of body.rows) {
    stats.forEach((stat, i) => rows.push(h("tr", { dataset: { key: row.key, stat } },
      h("th", { scope: "row" }, i === 0 ? row.key || "(value)" : ""), h("td", {}, stat),
      h("td.num", {}, formatValue(row.a?.[stat], unit, { rate })), h("td.num", {}, formatValue(row.b?.[stat], unit, { rate })),
      h("td.num", {}, formatValue(row.difference[stat], unit, { rate })), h("td.num", {}, pct(row.change[stat])))));
  }
  return h("table.cmp-table#cmp-table", {},
    h("caption", {}, `a = ${body.runs.a.label}, b = ${body.runs.b.label}; steps of ${body.step} s from each start`),
    h("thead", {}, h("tr", {}, ["key", "", "a", "b", "b − a", "change"].map((c) => h("th", {}, c)))),
    h("tbody", {}, rows));
}

/** The first key's two runs over the time since their starts, one line each (SVG). */
export function overlay(body, unit) {
  const key = body.rows[0]?.key ?? "";
  const pick = (v) => {
    if (v === null || v === undefined) return null;
    if (typeof v === "number") return v;
    if (typeof v === "object" && key in v) return typeof v[key] === "number" ? v[key] : null;
    return null;
  };
  if (body.shape === "histogram" || body.shape === "discrete_histogram") {
    return h("p.alert-none", {}, "Distributions are compared by their merged histograms (the table).");
  }
  const series = { a: body.series.a.map(pick), b: body.series.b.map(pick) };
  const all = [...series.a, ...series.b].filter((x) => x !== null);
  const hi = Math.max(...all, 0) || 1;
  const lo = Math.min(...all, 0);
  const { width, height, pad } = CHART;
  const n = Math.max(body.offsets.length - 1, 1);
  const x = (i) => pad + ((width - pad - 6) * i) / n;
  const y = (v) => height - pad - ((height - pad - 8) * (v - lo)) / (hi - lo || 1);
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("class", "cmp-chart");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `runs a and b of ${key || "the value"} since their starts`);
  const add = (tag, attrs, text) => {
    const el = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
    if (text) el.textContent = text;
    svg.append(el);
    return el;
  };
  add("line", { x1: pad, y1: height - pad, x2: width - 6, y2: height - pad, class: "cmp-axis" });
  add("text", { x: pad - 4, y: y(hi) + 4, "text-anchor": "end", class: "cmp-label" }, formatValue(hi, unit, { rate: body.per_second }));
  add("text", { x: pad - 4, y: y(lo), "text-anchor": "end", class: "cmp-label" }, formatValue(lo, unit));
  add("text", { x: width - 6, y: height - pad + 14, "text-anchor": "end", class: "cmp-label" },
    `+${body.offsets[body.offsets.length - 1] ?? 0} s`);
  for (const which of ["a", "b"]) {
    const pts = series[which].map((v, i) => (v === null ? null : `${x(i).toFixed(1)},${y(v).toFixed(1)}`));
    // A gap breaks the line: one polyline per stretch with data.
    let run = [];
    for (const p of [...pts, null]) {
      if (p !== null) { run.push(p); continue; }
      if (run.length) add("polyline", { points: run.join(" "), class: `cmp-line cmp-${which}`, "data-run": which });
      run = [];
    }
  }
  const legend = h("div.cmp-legend", {}, h("span.cmp-key.cmp-a", {}, `a: ${body.runs.a.label}`),
    h("span.cmp-key.cmp-b", {}, `b: ${body.runs.b.label}`), key ? h("span", {}, ` (${key})`) : null);
  return h("figure.cmp-figure", {}, svg, legend);
}
