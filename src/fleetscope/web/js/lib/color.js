// Colours: the theme's CSS variables, series palettes, and the appliance's heatmap hues.

// Reading computed styles forces a style recalculation: the values are read once per theme.
let cache = null;

/** The current value of a CSS custom property on <html> (cached until the theme changes). */
export function cssVar(name) {
  if (!cache) cache = new Map();
  if (!cache.has(name)) cache.set(name, getComputedStyle(document.documentElement).getPropertyValue(name).trim());
  return cache.get(name);
}

/** Forget the cached theme values (the theme or the system setting changed). */
export function themeChanged() {
  cache = null;
}

export const isDark = () => cssVar("--scheme") === "dark";

// Distinct, colour-blind-aware categorical palettes (Okabe-Ito order, extended), per theme.
const LIGHT = ["#2f6fdf", "#e08a00", "#1b9e77", "#d1495b", "#7b5cc9", "#0fa3b1", "#c05299", "#6a8f1f",
  "#b5651d", "#5f6b7a"];
const DARK = ["#5b9dff", "#ffb23e", "#3fd0a0", "#ff6b7f", "#a88bff", "#3fd4e0", "#ff7ac6", "#a5d05a",
  "#e39a55", "#98a4b5"];

export function palette() {
  return isDark() ? DARK : LIGHT;
}

/** The colour of the i-th series. */
export const seriesColor = (i) => palette()[i % palette().length];

export const FIRST_HUE = 21;
export const HUE_STEP = 91;
export const BASE_HUE = 220;

/** The appliance's hue of the i-th selected key: 21°, then 91° further each. */
export const keyHue = (i) => (FIRST_HUE + HUE_STEP * i) % 360;

/** HSV (hue in degrees, s and v in [0, 1]) to [r, g, b] in 0..255. */
export function hsv(h, s, v) {
  const h6 = ((h % 360) + 360) % 360 / 60;
  const i = Math.floor(h6);
  const f = h6 - i;
  const p = v * (1 - s);
  const q = v * (1 - s * f);
  const t = v * (1 - s * (1 - f));
  const [r, g, b] = [[v, t, p], [q, v, p], [p, v, t], [p, q, v], [t, p, v], [v, p, q]][i % 6];
  return [Math.round(r * 255), Math.round(g * 255), Math.round(b * 255)];
}

export const rgbCss = ([r, g, b]) => `rgb(${r}, ${g}, ${b})`;

/** A CSS colour for a selected key's swatch (the hue at full strength). */
export const keyColor = (i) => rgbCss(hsv(keyHue(i), 0.85, isDark() ? 0.95 : 0.9));
export const baseColor = (underKeys = false) => rgbCss(hsv(BASE_HUE, underKeys ? 0.2 : 0.55, isDark() ? 0.75 : 0.8));
