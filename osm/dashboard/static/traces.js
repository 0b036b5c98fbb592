// Traces: the recent traces (/api/traces) as a list; a selected trace as a waterfall of its
// spans (/api/traces/<id>, already ordered parents first): indentation by depth, a bar per
// span on the trace's time axis, the service's colour; a click on a span shows its tags.
// The selected trace and the opened span survive refreshes.

import { ago, colourOf, errorBox, esc, micros, slug } from "./format.js";

let root = null;
let selectedTrace = null;
let openSpan = null;
let service = "";
let knownServices = new Set();

export function mount(element, ctx) {
  root = element;
  root.innerHTML = `<div class="toolbar"><label>Service <select data-testid="traces-service">
      <option value="">all</option></select></label>
      <span class="muted">last 15 minutes, newest first</span></div>
    <div class="errors-slot"></div>
    <div class="split-pane traces">
      <div class="pane-list"><table class="grid selectable" data-testid="traces-list"><thead><tr>
        <th>root</th><th>services</th><th class="num">spans</th><th class="num">duration</th><th>started</th>
        </tr></thead><tbody></tbody></table></div>
      <div class="pane-detail" data-testid="trace-detail"><p class="empty">Select a trace for its waterfall.</p></div>
    </div>`;
  root.querySelector("[data-testid=traces-service]").addEventListener("change", (event) => {
    service = event.target.value;
    ctx.refreshNow();
  });
  root.querySelector("[data-testid=traces-list] tbody").addEventListener("click", (event) => {
    const tr = event.target.closest("tr[data-trace]");
    if (!tr) return;
    selectedTrace = tr.dataset.trace;
    openSpan = null;
    for (const other of root.querySelectorAll("tr[data-trace]")) other.classList.toggle("selected", other === tr);
    loadTrace(ctx);
  });
  root.querySelector("[data-testid=trace-detail]").addEventListener("click", (event) => {
    const row = event.target.closest(".span-row");
    if (!row) return;
    openSpan = openSpan === row.dataset.span ? null : row.dataset.span;
    for (const tags of root.querySelectorAll(".span-tags")) tags.hidden = tags.dataset.span !== openSpan;
  });
}

export async function refresh(ctx) {
  const query = new URLSearchParams({ limit: "20", lookback: "15m" });
  if (service) query.set("service", service);
  const result = await ctx.get(`/api/traces?${query}`);
  const slot = root.querySelector(".errors-slot");
  if (!result.ok) {
    slot.innerHTML = errorBox([result.error], "traces-errors");
    return;
  }
  slot.innerHTML = errorBox(result.body.errors, "traces-errors");
  const traces = result.body.traces ?? [];
  for (const trace of traces) for (const name of trace.services ?? []) knownServices.add(name);
  const select = root.querySelector("[data-testid=traces-service]");
  const options = ["", ...[...knownServices].sort()];
  if (select.options.length !== options.length) {
    select.innerHTML = options.map((name) => `<option value="${esc(name)}">${name ? esc(name) : "all"}</option>`).join("");
    select.value = service;
  }
  const now = Date.now();
  root.querySelector("[data-testid=traces-list] tbody").innerHTML = traces.length ? traces.map((t) => `
    <tr data-trace="${esc(t.trace_id)}" data-testid="trace-row-${slug(t.trace_id)}"
        class="${t.trace_id === selectedTrace ? "selected" : ""} ${t.error ? "error-row" : ""}">
      <td><b>${esc(t.root_service)}</b> <span class="muted">${esc(t.root_name)}</span>${t.error ? ` <span class="badge badge-bad">error</span>` : ""}</td>
      <td>${(t.services ?? []).map((s) => `<span class="chip" style="border-color:${colourOf(s)}">${esc(s)}</span>`).join("")}</td>
      <td class="num">${esc(t.span_count)}</td><td class="num">${micros(t.duration_us)}</td>
      <td>${t.start_us ? ago(new Date(t.start_us / 1000).toISOString(), now) : "—"}</td></tr>`).join("")
    : `<tr><td colspan="5" class="empty">No traces in the last 15 minutes.</td></tr>`;
}

async function loadTrace(ctx) {
  const id = selectedTrace;
  const detail = root.querySelector("[data-testid=trace-detail]");
  detail.innerHTML = `<p class="muted">loading ${esc(id)}…</p>`;
  const result = await ctx.get(`/api/traces/${encodeURIComponent(id)}`);
  if (id !== selectedTrace) return;
  if (!result.ok) {
    detail.innerHTML = errorBox([result.error], "trace-errors");
    return;
  }
  detail.innerHTML = errorBox(result.body.errors, "trace-errors") + waterfall(result.body);
}

function waterfall(trace) {
  const spans = trace.spans ?? [];
  const total = Math.max(trace.duration_us ?? 0, ...spans.map((s) => (s.start_us ?? 0) + (s.duration_us ?? 0)), 1);
  const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) => `<span style="left:${f * 100}%">${micros(total * f)}</span>`).join("");
  const services = [...new Set(spans.map((s) => s.service))];
  const rows = spans.map((s) => {
    const left = ((s.start_us ?? 0) / total) * 100;
    const width = Math.max(((s.duration_us ?? 0) / total) * 100, 0.4);
    const colour = s.error ? "#d93636" : colourOf(s.service);
    const tags = Object.entries(s.tags ?? {}).sort(([a], [b]) => a.localeCompare(b));
    return `<div class="span-row ${s.error ? "error-row" : ""}" data-span="${esc(s.id)}" data-testid="span-row-${slug(s.id)}"
        data-service="${esc(s.service)}" data-depth="${esc(s.depth)}">
      <div class="span-name" style="padding-left:${(s.depth ?? 0) * 16 + 6}px">
        <i class="swatch" style="background:${colourOf(s.service)}"></i><b>${esc(s.service)}</b>
        <span class="muted">${esc(s.name)}</span>${s.kind ? ` <span class="kind">${esc(String(s.kind).toLowerCase())}</span>` : ""}</div>
      <div class="span-track"><span class="span-bar" style="left:${left}%;width:${width}%;background:${colour}"></span>
        ${left + width > 82
          ? `<span class="span-duration before" style="right:${100 - left}%">${micros(s.duration_us)}</span>`
          : `<span class="span-duration" style="left:${left + width}%">${micros(s.duration_us)}</span>`}</div>
    </div>
    <div class="span-tags" data-span="${esc(s.id)}" data-testid="span-tags-${slug(s.id)}" ${openSpan === s.id ? "" : "hidden"}>
      <div class="kv"><span>span</span><span>${esc(s.id)}</span><span>parent</span><span>${esc(s.parent_id ?? "—")}</span>
      <span>start</span><span>+${micros(s.start_us)}</span>
      ${tags.map(([k, v]) => `<span>${esc(k)}</span><span>${esc(v)}</span>`).join("")}</div></div>`;
  }).join("");
  return `<div class="waterfall" data-testid="waterfall" data-trace="${esc(trace.trace_id)}">
    <div class="detail-head"><h3>trace ${esc(trace.trace_id)}</h3>
      <span class="muted">${spans.length} spans · ${services.length} services · ${micros(trace.duration_us)}</span></div>
    <div class="span-row axis"><div class="span-name muted">service / span</div><div class="span-track ticks">${ticks}</div></div>
    ${rows}</div>`;
}
