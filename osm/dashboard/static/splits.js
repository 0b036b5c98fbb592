// Traffic splits: per TrafficSplit, the configured weights beside the shares of requests
// each backend actually received in the window, as two stacked bars and a table (with the
// difference in percentage points, so a split that does not behave stands out).

import { colourOf, errorBox, esc, percent, rps, slug } from "./format.js";

let root = null;
const WINDOWS = ["1m", "5m", "15m", "1h"];

export function mount(element, ctx) {
  root = element;
  root.innerHTML = `<div class="toolbar"><label>Window <select data-testid="splits-window">${WINDOWS.map(
    (w) => `<option value="${w}" ${w === ctx.state.window ? "selected" : ""}>${w}</option>`).join("")}</select></label>
    <span class="muted">configured weight (SMI TrafficSplit) vs. observed share of requests</span></div>
    <div class="errors-slot"></div><div class="cards" data-testid="splits"></div>`;
  root.querySelector("[data-testid=splits-window]").addEventListener("change", (event) => {
    ctx.state.window = event.target.value;
    ctx.refreshNow();
  });
}

export function shown(ctx) {
  root.querySelector("[data-testid=splits-window]").value = ctx.state.window;
}

export async function refresh(ctx) {
  const result = await ctx.get(`/api/splits?window=${encodeURIComponent(ctx.state.window)}`);
  const slot = root.querySelector(".errors-slot");
  if (!result.ok) {
    slot.innerHTML = errorBox([result.error], "splits-errors");
    return;
  }
  slot.innerHTML = errorBox(result.body.errors, "splits-errors");
  const splits = result.body.splits ?? [];
  root.querySelector("[data-testid=splits]").innerHTML = splits.length
    ? splits.map(card).join("")
    : `<p class="empty">No TrafficSplits in the mesh.</p>`;
}

function stacked(backends, field, label, testid) {
  const parts = backends.filter((b) => b[field] != null && b[field] > 0);
  const bar = parts.length
    ? parts.map((b) => `<span style="width:${(b[field] * 100).toFixed(2)}%;background:${colourOf(b.service)}"
        title="${esc(b.service)}: ${percent(b[field])}">${b[field] >= 0.08 ? percent(b[field], 0) : ""}</span>`).join("")
    : `<span class="nodata">no traffic observed</span>`;
  return `<div class="bar-row"><span class="bar-label">${label}</span><div class="stack" data-testid="${testid}">${bar}</div></div>`;
}

function card(split) {
  const backends = split.backends ?? [];
  const rows = backends.map((b) => {
    const delta = b.observed_share == null ? null : (b.observed_share - b.configured_share) * 100;
    const off = delta != null && Math.abs(delta) >= 5;
    return `<tr data-testid="split-backend-${slug(b.service)}" data-configured-share="${b.configured_share}"
        data-observed-share="${b.observed_share ?? ""}">
      <td><i class="swatch" style="background:${colourOf(b.service)}"></i>${esc(b.service)}</td>
      <td class="num" data-testid="weight">${esc(b.weight)}</td>
      <td class="num" data-testid="configured">${percent(b.configured_share)}</td>
      <td class="num" data-testid="observed">${percent(b.observed_share)}</td>
      <td class="num ${off ? "warn-text" : "muted"}">${delta == null ? "—" : `${delta >= 0 ? "+" : ""}${delta.toFixed(1)} pp`}</td>
      <td class="num">${rps(b.rps)}</td></tr>`;
  }).join("");
  return `<article class="card" data-testid="split-${slug(split.namespace, split.name)}">
    <h3>${esc(split.namespace)}/${esc(split.name)} <span class="muted">→ root service <b>${esc(split.service)}</b></span></h3>
    ${stacked(backends, "configured_share", "configured", "split-configured-bar")}
    ${stacked(backends, "observed_share", "observed", "split-observed-bar")}
    <table class="grid"><thead><tr><th>backend</th><th class="num">weight</th><th class="num">configured</th>
      <th class="num">observed</th><th class="num">difference</th><th class="num">req/s</th></tr></thead>
      <tbody>${rows}</tbody></table></article>`;
}
