// Services: a table of golden signals (requests/s, success rate, p50, p99), sortable;
// selecting a service shows its signals over time as uPlot charts, from
// /api/services/<ns>/<name>. The selection and the sort survive refreshes (charts get new
// data in place).

import { errorBox, esc, health, ms, percent, rps, slug } from "./format.js";

let root = null;
let selected = null;
let sort = { key: "rps", descending: true };
let range = "30m";
let charts = {};
let rows = [];

const RANGES = { "15m": "15s", "30m": "15s", "1h": "30s", "3h": "1m" };
const COLUMNS = [
  ["name", "service"], ["namespace", "namespace"], ["rps", "req/s"], ["success_rate", "success"],
  ["p50_ms", "p50"], ["p99_ms", "p99"],
];

export function mount(element, ctx) {
  root = element;
  root.innerHTML = `<div class="errors-slot"></div>
    <div class="split-pane">
      <div class="pane-list"><table class="grid selectable" data-testid="services-table">
        <thead><tr>${COLUMNS.map(([key, label]) => `<th data-sort="${key}" class="${["name", "namespace"].includes(key) ? "" : "num"}">${label}</th>`).join("")}</tr></thead>
        <tbody></tbody></table></div>
      <div class="pane-detail" data-testid="service-detail"><p class="empty">Select a service for its signals over time.</p></div>
    </div>`;
  root.querySelector("thead").addEventListener("click", (event) => {
    const th = event.target.closest("[data-sort]");
    if (!th) return;
    const key = th.dataset.sort;
    sort = { key, descending: sort.key === key ? !sort.descending : !["name", "namespace"].includes(key) };
    renderTable();
  });
  root.querySelector("tbody").addEventListener("click", (event) => {
    const tr = event.target.closest("tr[data-ns]");
    if (!tr) return;
    selected = { namespace: tr.dataset.ns, name: tr.dataset.name };
    destroyCharts();
    renderTable();
    loadSeries(ctx);
  });
  window.addEventListener("resize", () => {
    for (const chart of Object.values(charts)) chart.setSize(size(chart.root.parentElement));
  });
}

export async function refresh(ctx) {
  const [list] = await Promise.all([
    ctx.get(`/api/services?window=${encodeURIComponent(ctx.state.window)}`),
    selected ? loadSeries(ctx) : null,
  ]);
  const slot = root.querySelector(".errors-slot");
  if (!list.ok) {
    slot.innerHTML = errorBox([list.error], "services-errors");
    return;
  }
  slot.innerHTML = errorBox(list.body.errors, "services-errors");
  rows = list.body.services ?? [];
  renderTable();
}

function renderTable() {
  const { key, descending } = sort;
  const sorted = [...rows].sort((a, b) => {
    const x = a[key];
    const y = b[key];
    if (x == null && y == null) return 0;
    if (x == null) return 1;
    if (y == null) return -1;
    const order = typeof x === "string" ? x.localeCompare(y) : x - y;
    return descending ? -order : order;
  });
  for (const th of root.querySelectorAll("th[data-sort]")) {
    th.classList.toggle("sorted", th.dataset.sort === key);
    th.classList.toggle("descending", th.dataset.sort === key && descending);
  }
  root.querySelector("[data-testid=services-table] tbody").innerHTML = sorted.length ? sorted.map((s) => {
    const isSelected = selected && selected.namespace === s.namespace && selected.name === s.name;
    return `<tr data-ns="${esc(s.namespace)}" data-name="${esc(s.name)}" class="${isSelected ? "selected" : ""}"
        data-testid="service-row-${slug(s.namespace, s.name)}">
      <td><b>${esc(s.name)}</b></td><td>${esc(s.namespace)}</td><td class="num">${rps(s.rps)}</td>
      <td class="num ${health(s.success_rate)}-text">${percent(s.success_rate)}</td>
      <td class="num">${ms(s.p50_ms)}</td><td class="num">${ms(s.p99_ms)}</td></tr>`;
  }).join("") : `<tr><td colspan="6" class="empty">No services.</td></tr>`;
}

async function loadSeries(ctx) {
  const target = selected;
  const detail = root.querySelector("[data-testid=service-detail]");
  if (!detail.querySelector(".charts")) {
    detail.innerHTML = `<div class="detail-head"><h3>${esc(target.namespace)}/${esc(target.name)}</h3>
      <label>Range <select data-testid="service-range">${Object.keys(RANGES).map(
        (r) => `<option ${r === range ? "selected" : ""}>${r}</option>`).join("")}</select></label></div>
      <div class="errors-slot"></div>
      <div class="charts">
        <div class="chart"><h4>Requests/s</h4><div data-testid="chart-rps"></div></div>
        <div class="chart"><h4>Success rate (%)</h4><div data-testid="chart-success"></div></div>
        <div class="chart"><h4>Latency (ms)</h4><div data-testid="chart-latency"></div></div>
      </div>`;
    detail.querySelector("[data-testid=service-range]").addEventListener("change", (event) => {
      range = event.target.value;
      destroyCharts();
      loadSeries(ctx);
    });
  }
  const path = `/api/services/${encodeURIComponent(target.namespace)}/${encodeURIComponent(target.name)}` +
    `?range=${range}&step=${RANGES[range]}`;
  const result = await ctx.get(path);
  if (selected !== target) return;
  const slot = detail.querySelector(".errors-slot");
  if (!result.ok) {
    slot.innerHTML = errorBox([result.error], "service-series-errors");
    return;
  }
  slot.innerHTML = errorBox(result.body.errors, "service-series-errors");
  const series = result.body.series ?? {};
  draw("rps", detail, [columns(series.rps)], [{ label: "req/s", stroke: "#4f7cff", fill: "rgba(79,124,255,0.08)" }], {});
  draw("success", detail, [columns(series.success_rate, 100)], [{ label: "success %", stroke: "#2e9e5b" }],
    { y: { range: (_u, min) => [Math.min(min ?? 100, 90), 100] } });
  draw("latency", detail, [columns(series.p50_ms), columns(series.p99_ms)], [
    { label: "p50 ms", stroke: "#18a999" }, { label: "p99 ms", stroke: "#e07a2e" }], {});
}

/** [[t, v], ...] as uPlot's columns [xs, ys]; a missing series is an empty one. */
function columns(points, scale = 1) {
  const xs = [];
  const ys = [];
  for (const [t, v] of points ?? []) {
    xs.push(t);
    ys.push(v == null ? null : v * scale);
  }
  return [xs, ys];
}

function size(element) {
  return { width: Math.max(260, element.clientWidth - 8), height: 170 };
}

function draw(name, detail, lines, series, scales) {
  const element = detail.querySelector(`[data-testid=chart-${name}]`);
  const xs = lines[0][0];
  const data = [xs, ...lines.map(([lineXs, ys]) => (lineXs.length === xs.length ? ys : xs.map(() => null)))];
  if (xs.length === 0) {
    charts[name]?.destroy();
    delete charts[name];
    element.innerHTML = `<p class="empty" data-testid="chart-${name}-empty">no data</p>`;
    return;
  }
  if (charts[name]) {
    charts[name].setData(data);
    return;
  }
  element.innerHTML = "";
  charts[name] = new window.uPlot({
    ...size(element.parentElement),
    series: [{}, ...series.map((s) => ({ width: 2, spanGaps: false, ...s }))],
    scales: { x: { time: true }, ...scales },
    axes: [{ stroke: "#6b7280", grid: { stroke: "#eef0f3" } }, { stroke: "#6b7280", grid: { stroke: "#eef0f3" } }],
    legend: { live: true },
  }, data, element);
}

function destroyCharts() {
  for (const chart of Object.values(charts)) chart.destroy();
  charts = {};
  const detail = root?.querySelector("[data-testid=service-detail]");
  if (detail) detail.innerHTML = "";
}
