// The public HTTP API, and nothing else: every request the page makes goes through here.

const BASE = "/api/v1";

/** An answer other than 2xx: `field` names the input at fault (API errors are {error: {code, message, field}}). */
export class ApiError extends Error {
  constructor(status, { code = "error", message = "request failed", field = null } = {}) {
    super(field ? `${field}: ${message}` : message);
    this.status = status;
    this.code = code;
    this.field = field;
    this.detail = message;
  }
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null && v !== "") q.set(k, Array.isArray(v) ? v.join(",") : v);
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}

// Answers over ranges that are over (ending FINAL_LAG seconds before they were asked) are kept a
// while by address, so that a range the page comes back to, or one a panel prefetched, is drawn
// without asking again (see cachedGet). Bounded in entries and bytes; kept KEPT_SECONDS at most,
// as history can still change (a late slot, an imported log).
export const FINAL_LAG = 120;
const KEPT_ANSWERS = 48;
const KEPT_CHARS = 16_000_000;
export const KEPT_SECONDS = 300;
const kept = new Map(); // address -> {at, text}, least recently used first
let keptChars = 0;

function keep(url, text) {
  kept.set(url, { at: Date.now() / 1000, text });
  keptChars += text.length;
  for (const [old, entry] of kept) {
    if (kept.size <= KEPT_ANSWERS && keptChars <= KEPT_CHARS) break;
    kept.delete(old);
    keptChars -= entry.text.length;
  }
}

const inflight = new Map(); // address -> a prefetch on its way (settles, never rejects)

/** `promise`, or an AbortError as soon as `signal` ends. */
export function untilAborted(promise, signal) {
  if (!signal) return promise;
  if (signal.aborted) return Promise.reject(new DOMException("aborted", "AbortError"));
  return Promise.race([promise, new Promise((_, reject) => signal.addEventListener("abort",
    () => reject(new DOMException("aborted", "AbortError")), { once: true }))]);
}

/**
 * A GET whose answer is kept (see FINAL_LAG) when its range is over; parsed anew each time, so
 * that no caller changes another's answer. One without `signal` is a prefetch: it runs to its
 * end (a move does not cancel it), and a caller asking the same meanwhile waits for it.
 */
async function cachedGet(path, params, signal) {
  const url = BASE + path + query(params);
  const pending = inflight.get(url);
  if (pending) await untilAborted(pending, signal);
  const now = Date.now() / 1000;
  const hit = kept.get(url);
  if (hit) kept.delete(url);
  if (hit && now - hit.at < KEPT_SECONDS) {
    kept.set(url, hit); // the most recently used last
    return JSON.parse(hit.text);
  }
  if (hit) keptChars -= hit.text.length;
  const over = Number(params?.end_time) <= now - FINAL_LAG;
  const answer = request("GET", path, { params, signal, keep: over ? (text) => keep(url, text) : null });
  if (!signal && over) {
    const settled = answer.catch(() => null).finally(() => inflight.delete(url));
    inflight.set(url, settled);
  }
  return answer;
}

async function request(method, path, { params, body, signal, keep: keepText = null } = {}) {
  let resp;
  try {
    resp = await fetch(BASE + path + query(params), {
      method,
      signal,
      headers: body === undefined ? {} : { "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, { code: "network", message: "the server cannot be reached" });
  }
  if (resp.status === 204) return null;
  let data = null;
  try {
    const text = await resp.text();
    data = JSON.parse(text);
    if (resp.ok && keepText) keepText(text);
  } catch (err) {
    if (err.name === "AbortError") throw err;
    if (resp.ok) throw new ApiError(resp.status, { message: "the answer is not JSON" });
  }
  if (!resp.ok) throw new ApiError(resp.status, (data && data.error) || { message: resp.statusText });
  return data;
}

const get = (path, params, signal) => request("GET", path, { params, signal });
const inst = (id) => `/instrumentations/${id}`;

export const api = {
  metrics: () => get("/metrics").then((d) => d.metrics),
  instrumentations: () => get("/instrumentations").then((d) => d.instrumentations),
  create: (body) => request("POST", "/instrumentations", { body }),
  validate: (body, signal) => request("POST", "/instrumentations/validate", { body, signal }),
  update: (id, body) => request("PATCH", inst(id), { body }),
  remove: (id) => request("DELETE", inst(id)),
  values: (id, params, signal) => get(`${inst(id)}/value`, params, signal),
  heatmap: (id, params, signal) => cachedGet(`${inst(id)}/heatmap`, { format: "json", ...params }, signal),
  details: (id, params, signal) => get(`${inst(id)}/heatmap/details`, params, signal),
  heatmapKeys: (id, params, signal) => get(`${inst(id)}/heatmap/keys`, params, signal),
  percentiles: (id, params, signal) => get(`${inst(id)}/percentiles`, params, signal),
  average: (id, params, signal) => get(`${inst(id)}/average`, params, signal),
  dashboards: () => get("/dashboards").then((d) => d.dashboards),
  whoami: () => get("/whoami"),
  login: (token) => request("POST", "/login", { body: { token } }),
  logout: () => request("POST", "/logout"),
  dashboard: (id) => get(`/dashboards/${id}`),
  createDashboard: (doc) => request("POST", "/dashboards", { body: doc }),
  saveDashboard: (id, doc) => request("PUT", `/dashboards/${id}`, { body: doc }),
  deleteDashboard: (id) => request("DELETE", `/dashboards/${id}`),
  alertRules: (instrumentation) => get("/alerts/rules", { instrumentation }).then((d) => d.rules),
  createAlertRule: (body) => request("POST", "/alerts/rules", { body }),
  alertReceivers: () => get("/alerts/receivers").then((d) => d.receivers),
  alerts: () => get("/alerts"),
  annotations: (params, signal) => get("/annotations", params, signal).then((d) => d.annotations),
  healthy: async () => {
    try {
      return (await fetch("/healthz", { cache: "no-store" })).ok;
    } catch {
      return false;
    }
  },
};

/** The address of an API resource, for links the browser follows itself (downloads). */
export const apiUrl = (path, params) => BASE + path + query(params);

export const streamUrl = (ids) => `${BASE}/stream?ids=${ids.join(",")}`;
