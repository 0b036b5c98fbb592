// Formatting and small DOM helpers shared by the views: numbers as people read them (rps,
// percentages, durations), relative times, HTML escaping, and a stable colour per name.

export function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => ({
    "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;",
  })[c]);
}

/** A value safe inside a data-testid: letters, digits, dashes. */
export function slug(...parts) {
  return parts.join("-").replace(/[^A-Za-z0-9_-]+/g, "-");
}

export function rps(value) {
  if (value == null) return "—";
  if (value === 0) return "0";
  if (value < 0.1) return value.toFixed(3);
  if (value < 10) return value.toFixed(2);
  if (value < 1000) return value.toFixed(1);
  return `${(value / 1000).toFixed(1)}k`;
}

export function percent(share, digits = 1) {
  if (share == null) return "—";
  const p = share * 100;
  return `${p === 100 ? "100" : p.toFixed(digits)}%`;
}

export function ms(value) {
  if (value == null) return "—";
  if (value < 1) return `${value.toFixed(2)} ms`;
  if (value < 1000) return `${value < 10 ? value.toFixed(1) : Math.round(value)} ms`;
  return `${(value / 1000).toFixed(2)} s`;
}

export function micros(value) {
  if (value == null) return "—";
  if (value < 1000) return `${Math.round(value)} µs`;
  return ms(value / 1000);
}

/** Health class of a success rate: ok ≥ 99 %, warn ≥ 95 %, bad below; none without data. */
export function health(successRate) {
  if (successRate == null) return "none";
  if (successRate >= 0.99) return "ok";
  if (successRate >= 0.95) return "warn";
  return "bad";
}

export const HEALTH_COLOURS = { ok: "#2e9e5b", warn: "#e39b17", bad: "#d93636", none: "#8a94a6" };

/** "3h 12m" for a span of seconds (absolute value), coarsest two units. */
export function span(seconds) {
  let s = Math.abs(Math.round(seconds));
  const units = [["d", 86400], ["h", 3600], ["m", 60], ["s", 1]];
  const out = [];
  for (const [name, size] of units) {
    if (s >= size || (name === "s" && out.length === 0)) {
      out.push(`${Math.floor(s / size)}${name}`);
      s %= size;
    }
    if (out.length === 2) break;
  }
  return out.join(" ");
}

export function ago(iso, now = Date.now()) {
  if (!iso) return "—";
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return esc(iso);
  const seconds = (now - t) / 1000;
  return seconds >= 0 ? `${span(seconds)} ago` : `in ${span(seconds)}`;
}

const PALETTE = [
  "#4f7cff", "#18a999", "#e07a2e", "#9b59d0", "#d6477b", "#3a9ad9", "#7cb342", "#c2a200",
  "#5c6bc0", "#00897b",
];

export function colourOf(name) {
  let h = 0;
  for (const c of String(name)) h = (h * 31 + c.codePointAt(0)) >>> 0;
  return PALETTE[h % PALETTE.length];
}

/** Sources the header already shows a banner for; their errors are not repeated in views. */
export const bannered = new Set();

/** The list of problems a response carries, as a warning box (empty string when none). */
export function errorBox(errors, testid) {
  errors = (errors ?? []).filter((e) => !bannered.has(String(e).split(":")[0]));
  if (errors.length === 0) return "";
  return `<div class="view-errors" data-testid="${esc(testid)}">${errors
    .map((e) => `<div>⚠ ${esc(e)}</div>`).join("")}</div>`;
}
