// Numbers with units, times, and tidy axis ticks.

const BYTE_UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
const SI = [["", 1], ["k", 1e3], ["M", 1e6], ["G", 1e9], ["T", 1e12]];

function digits(x, n = 3) {
  if (x === 0) return "0";
  const a = Math.abs(x);
  if (a >= 1000) return Math.round(x).toLocaleString("en-US");
  const d = Math.max(0, n - 1 - Math.floor(Math.log10(a)));
  return x.toFixed(Math.min(d, 6)).replace(/(\.\d*?)0+$/, "$1").replace(/\.$/, "");
}

/**
 * A scale for values of `unit` (from the API: {base, power, name}) around `magnitude`:
 * {div, suffix}. Values are shown as value / div followed by suffix.
 */
export function scaleFor(unit, magnitude) {
  const m = Math.abs(magnitude) || 0;
  const base = unit?.base || "number";
  if (base === "bytes") {
    let i = 0;
    while (i < BYTE_UNITS.length - 1 && m >= 1024 ** (i + 1)) i++;
    return { div: 1024 ** i, suffix: ` ${BYTE_UNITS[i]}` };
  }
  if (base === "seconds") {
    const s = 10 ** (unit.power || 0); // seconds per unit
    const secs = m * s;
    for (const [suffix, size] of [["s", 1], ["ms", 1e-3], ["µs", 1e-6]]) {
      if (secs >= size) return { div: size / s, suffix: ` ${suffix}` };
    }
    return { div: 1e-9 / s, suffix: " ns" };
  }
  if (base === "percent") return { div: 1, suffix: " %" };
  let pick = SI[0];
  for (const entry of SI) if (m >= entry[1]) pick = entry;
  return { div: pick[1], suffix: pick[0] };
}

/** `value` in `unit`, short: "1.5 GiB", "12 ms", "3.2 %", "1.2k"; rate adds "/s". */
export function formatValue(value, unit, { rate = false, n = 3 } = {}) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  if (value === 0) return "0";
  const { div, suffix } = scaleFor(unit, value);
  return `${digits(value / div, n)}${suffix}${rate ? "/s" : ""}`;
}

/** A count of things (heatmap cells): 12, 3.5, 0.25, 1.2k. */
export function formatCount(x) {
  return formatValue(x, { base: "number" });
}

/** Ticks for a value axis over [lo, hi] in `unit`: [{value, label}], about `count` of them. */
export function valueTicks(lo, hi, unit, count = 4) {
  const { div, suffix } = scaleFor(unit, Math.max(Math.abs(lo), Math.abs(hi)));
  const a = lo / div;
  const b = hi / div;
  const span = b - a || 1;
  const raw = span / count;
  const p = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * p).find((s) => s >= raw) || 10 * p;
  const out = [];
  for (let v = Math.ceil(a / step - 1e-9) * step; v <= b + 1e-9 * span; v += step) {
    const value = v * div;
    out.push({ value, label: `${digits(Math.abs(v) < step * 1e-6 ? 0 : v, 4)}${suffix}` });
  }
  return out;
}

const TIME_STEPS = [1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
  172800, 604800, 1209600];
const MONTH = 2629746; // seconds in an average month: steps of months are calendar months
const MONTH_STEPS = [1, 2, 3, 6, 12, 24, 60];
const tzOffset = () => -new Date().getTimezoneOffset() * 60;

/**
 * Time ticks (epoch seconds) between start and end, at least `minGap` pixels apart over `px`
 * (the density follows the axis width): seconds to two weeks on multiples of the step in local
 * time, then the first days of calendar months (every 1, 2, 3, 6 or 12 of them).
 */
export function timeTicks(start, end, px, minGap = 80) {
  const span = end - start;
  const want = Math.max(1, Math.floor(px / minGap));
  const step = TIME_STEPS.find((s) => span / s <= want);
  const ticks = [];
  if (step) {
    const off = tzOffset();
    const first = Math.ceil((start + off) / step) * step - off;
    for (let t = first; t <= end; t += step) ticks.push(t);
    return { ticks, step, start, end };
  }
  const months = MONTH_STEPS.find((m) => span / (m * MONTH) <= want) || MONTH_STEPS.at(-1);
  const d = new Date(start * 1000);
  let y = d.getFullYear();
  let m = Math.ceil((d.getMonth() + (d.getDate() > 1 || d.getHours() ? 1 : 0)) / months) * months;
  for (;;) {
    const t = new Date(y + Math.floor(m / 12), m % 12, 1).getTime() / 1000;
    if (t > end) break;
    ticks.push(t);
    m += months;
  }
  return { ticks, step: months * MONTH, start, end };
}

const pad = (n) => String(n).padStart(2, "0");

/**
 * A label for a tick `step` seconds apart: 14:05:30, 14:05, "Tue 8", "Dec 8", "Dec" (months),
 * the year alone on the first of January (so a range that crosses a year says which).
 */
export function formatTick(t, step) {
  const d = new Date(t * 1000);
  const newYear = d.getMonth() === 0 && d.getDate() === 1 && d.getHours() === 0 && d.getMinutes() === 0;
  if (step >= 86400 && newYear) return String(d.getFullYear());
  if (step >= 28 * 86400) return d.toLocaleDateString(undefined, { month: "short" });
  if (step >= 86400) return d.toLocaleDateString(undefined, { month: "short", day: "numeric" });
  const hm = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  if (step < 60) return `${hm}:${pad(d.getSeconds())}`;
  if (step >= 3600 && d.getHours() === 0 && d.getMinutes() === 0) {
    return newYear ? String(d.getFullYear()) : d.toLocaleDateString(undefined, { weekday: "short", day: "numeric" });
  }
  return hm;
}

/** Full local time of an epoch second, to the second: "2026-11-21 14:05:30". */
export function formatTime(t) {
  const d = new Date(t * 1000);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** A duration in seconds, short: 1 s, 15 s, 5 min, 1 h, 1 d 6 h. */
export function formatDuration(s) {
  if (s < 60) return `${s} s`;
  if (s < 3600) return s % 60 ? `${Math.floor(s / 60)} min ${s % 60} s` : `${s / 60} min`;
  if (s < 86400) return s % 3600 ? `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min` : `${s / 3600} h`;
  return s % 86400 ? `${Math.floor(s / 86400)} d ${Math.round((s % 86400) / 3600)} h` : `${s / 86400} d`;
}

/** "<input type=datetime-local>" value for an epoch second, and back. */
export const toLocalInput = (t) => {
  const d = new Date(t * 1000);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
};
export const fromLocalInput = (s) => Math.floor(new Date(s).getTime() / 1000);
