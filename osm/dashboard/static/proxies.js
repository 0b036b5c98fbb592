// Proxies: every connected sidecar with its data plane, the xDS versions it ACKed, its last
// NACK (the row turns red) and when its mesh certificate expires. Problems sort first; a
// filter narrows by pod, namespace, identity or data plane; at most LIMIT rows are drawn
// (thousands of proxies stay fast), the count of the rest is shown.

import { ago, errorBox, esc, slug, span } from "./format.js";

let root = null;
let proxies = [];
const LIMIT = 300;
const SOON_S = 2 * 3600;
const TYPES = ["CDS", "EDS", "LDS", "RDS", "SDS"];

export function mount(element) {
  root = element;
  root.innerHTML = `<div class="errors-slot"></div>
    <div class="stats wide" data-testid="proxies-summary"></div>
    <div class="toolbar"><input type="search" placeholder="filter: pod, namespace, identity, data plane"
      data-testid="proxies-filter" size="40"><span class="muted" data-testid="proxies-count"></span></div>
    <table class="grid" data-testid="proxies-table"><thead><tr><th>pod</th><th>identity</th><th>data plane</th>
      <th>connected</th><th>ACKed versions</th><th>last NACK</th><th>certificate</th></tr></thead><tbody></tbody></table>`;
  root.querySelector("[data-testid=proxies-filter]").addEventListener("input", renderRows);
}

export async function refresh(ctx) {
  const result = await ctx.get("/api/proxies");
  const slot = root.querySelector(".errors-slot");
  if (!result.ok) {
    slot.innerHTML = errorBox([result.error], "proxies-errors");
    return;
  }
  slot.innerHTML = errorBox(result.body.errors, "proxies-errors");
  proxies = result.body.proxies ?? [];
  const summary = result.body.summary ?? {};
  root.querySelector("[data-testid=proxies-summary]").innerHTML = `
    <div><b>${esc(summary.connected ?? proxies.length)}</b>connected</div>
    <div class="${summary.nacked ? "bad-text" : ""}" data-testid="proxies-nacked"><b>${esc(summary.nacked ?? 0)}</b>with a NACK</div>
    <div class="${summary.expiring_soon ? "warn-text" : ""}"><b>${esc(summary.expiring_soon ?? 0)}</b>certificates expiring soon</div>`;
  renderRows();
}

function expirySeconds(proxy, now) {
  if (!proxy.cert_expiry) return null;
  const t = Date.parse(proxy.cert_expiry);
  return Number.isNaN(t) ? null : (t - now) / 1000;
}

function rank(proxy, now) {
  if (proxy.last_nack) return 0;
  const left = expirySeconds(proxy, now);
  return left != null && left < SOON_S ? 1 : 2;
}

function renderRows() {
  const now = Date.now();
  const query = root.querySelector("[data-testid=proxies-filter]").value.trim().toLowerCase();
  const matching = proxies.filter((p) => !query ||
    [p.namespace, p.pod, p.identity, p.data_plane, p.node_id].some((v) => String(v ?? "").toLowerCase().includes(query)));
  matching.sort((a, b) => rank(a, now) - rank(b, now) ||
    String(a.namespace).localeCompare(String(b.namespace)) || String(a.pod).localeCompare(String(b.pod)));
  const shown = matching.slice(0, LIMIT);
  root.querySelector("[data-testid=proxies-count]").textContent = matching.length > LIMIT
    ? `${matching.length} proxies match; the first ${LIMIT} are shown, refine the filter for the rest`
    : `${matching.length} of ${proxies.length} proxies`;
  root.querySelector("[data-testid=proxies-table] tbody").innerHTML = shown.length ? shown.map((p) => row(p, now)).join("")
    : `<tr><td colspan="7" class="empty">${proxies.length ? "No proxy matches the filter." : "No proxies connected."}</td></tr>`;
}

function row(proxy, now) {
  const versions = proxy.acked_versions ?? {};
  const names = [...TYPES.filter((t) => t in versions), ...Object.keys(versions).filter((t) => !TYPES.includes(t)).sort()];
  const acked = names.length
    ? names.map((t) => `<span class="chip" title="${esc(t)} ${esc(versions[t])}">${esc(t)} <b>${esc(versions[t])}</b></span>`).join("")
    : `<span class="muted">none yet</span>`;
  const nack = proxy.last_nack;
  const left = expirySeconds(proxy, now);
  let certificate = `<span class="muted">—</span>`;
  if (left != null) {
    const cls = left <= 0 ? "bad-text" : left < SOON_S ? "warn-text" : "";
    certificate = `<span class="${cls}" data-testid="cert-expiry" title="${esc(proxy.cert_expiry)}">${left <= 0
      ? `expired ${span(left)} ago` : `expires in ${span(left)}`}</span>`;
  }
  return `<tr class="${nack ? "nacked" : ""}" data-testid="proxy-row-${slug(proxy.namespace, proxy.pod)}">
    <td><b>${esc(proxy.pod)}</b><div class="muted">${esc(proxy.namespace)}</div></td>
    <td>${esc(proxy.identity ?? "—")}</td>
    <td>${proxy.data_plane ? `<span class="badge badge-plane-${esc(proxy.data_plane)}">${esc(proxy.data_plane)}</span>` : "—"}
      ${proxy.protocol ? `<div class="muted">${esc(proxy.protocol)}</div>` : ""}</td>
    <td title="${esc(proxy.connected_since ?? "")}">${ago(proxy.connected_since, now)}</td>
    <td class="chips">${acked}</td>
    <td>${nack ? `<div class="nack" data-testid="last-nack"><b>${esc(nack.type ?? "")}</b> ${esc(nack.error ?? "")}
      <div class="muted">${ago(nack.at, now)}</div></div>` : `<span class="muted">—</span>`}</td>
    <td>${certificate}</td></tr>`;
}
