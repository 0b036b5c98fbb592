// The page of `osm dashboard`: a header with the mesh's sources (/api/status) and a banner
// per source that is missing, down or slow; five views, each a module with
// `mount(root, ctx)` (once, on first show) and `refresh(ctx)` (on show and every
// `refresh_s`). Only the visible view is fetched. A refresh re-renders data in place: the
// user's selection, the graph's layout and zoom, filters and open panels survive it.
// The hash names the view (#graph, #splits, ...), so a reload keeps the place.

import { getJSON } from "./api.js";
import { bannered, esc } from "./format.js";
import * as graph from "./graph.js";
import * as proxies from "./proxies.js";
import * as services from "./services.js";
import * as splits from "./splits.js";
import * as traces from "./traces.js";

const VIEWS = { graph, splits, services, proxies, traces };
const SOURCES = ["kubernetes", "prometheus", "tracing", "controller"];
const SOURCE_NAMES = { kubernetes: "Kubernetes", prometheus: "Prometheus", tracing: "Tracing", controller: "Controller" };
const STATE_WORDS = {
  ok: "ok", unreachable: "unreachable", timeout: "slow", "not-installed": "not installed", error: "error",
};
/** What the user loses while a source is not ok, and what brings it back. */
const CONSEQUENCES = {
  kubernetes: "the graph has no workloads, services or policies until it answers.",
  prometheus: "request rates, success rates and latencies stay empty until it answers.",
  tracing: "no traces until it answers.",
  controller: "the proxies' xDS versions, NACKs and certificates are unknown until it answers.",
};
const REMEDIES = {
  prometheus:
    "install it (<code>osm install --set osm.deployPrometheus=true</code>; local mode: <code>osm up</code>), " +
    "then <code>osm metrics enable --namespace &lt;ns&gt;</code> for the namespaces to scrape; ",
  tracing:
    "set <code>spec.observability.tracing.enable: true</code> in the MeshConfig (local mode runs the trace store " +
    "<code>jaeger</code> in osm-system); ",
  controller: "start the control plane (<code>osm install</code>, local mode: <code>osm up</code>); ",
  kubernetes: "",
};
const DEFAULT_REFRESH_S = 5;

const ctx = {
  get: getJSON,
  state: { window: "1m", status: null },
  /** Views call this when they want the page to fetch them again now (a changed control). */
  refreshNow: () => tick(),
};
const mounted = new Set();
const rendered = new Set();
let current = null;
let refreshS = DEFAULT_REFRESH_S;
let timer = null;
let busy = false;
let lastOk = null;

function viewFromHash() {
  const name = location.hash.replace(/^#/, "").split("/")[0];
  return name in VIEWS ? name : "graph";
}

async function show(name) {
  current = name;
  for (const [view] of Object.entries(VIEWS)) {
    document.getElementById(`view-${view}`).hidden = view !== name;
  }
  for (const tab of document.querySelectorAll(".tabs a")) {
    tab.classList.toggle("active", tab.dataset.view === name);
  }
  const root = document.getElementById(`view-${name}`);
  if (!mounted.has(name)) {
    mounted.add(name);
    guard(name, () => VIEWS[name].mount(root, ctx));
  }
  const first = !rendered.has(name);
  if (VIEWS[name].shown) guard(name, () => VIEWS[name].shown(ctx));
  await tick();
  if (first && current === name) {
    // For the render bench: a view's first data is in the DOM (the graph's own mark,
    // osm-graph-rendered, waits for its layout and the frame that paints it).
    rendered.add(name);
    performance.mark(`osm-view-rendered:${name}`);
  }
}

/** A view's failure is shown in the view, never thrown into the page. */
function guard(name, action) {
  try {
    const result = action();
    if (result && typeof result.catch === "function") {
      return result.catch((error) => viewFailed(name, error));
    }
    return result;
  } catch (error) {
    viewFailed(name, error);
    return undefined;
  }
}

function viewFailed(name, error) {
  const root = document.getElementById(`view-${name}`);
  let box = root.querySelector(":scope > .view-crash");
  if (!box) {
    box = document.createElement("div");
    box.className = "view-errors view-crash";
    box.dataset.testid = "view-crash";
    root.prepend(box);
  }
  box.textContent = `⚠ this view could not render the data: ${error?.message ?? error}`;
  console.warn("osm dashboard:", name, error);
}

async function tick() {
  if (busy) return;
  busy = true;
  try {
    // The status and the view's data are asked at once, but the status is rendered first:
    // the views leave out problems the header already shows as banners.
    const status = getJSON("/api/status").then(renderStatus);
    const name = current;
    const view = { ...ctx, get: async (path) => (await Promise.all([getJSON(path), status]))[0] };
    await guard(name, () => VIEWS[name].refresh(view));
    await status;
  } finally {
    busy = false;
  }
}

function renderStatus(result) {
  const sources = document.querySelector("[data-testid=sources]");
  const banners = document.querySelector("[data-testid=banners]");
  const updated = document.querySelector("[data-testid=updated]");
  if (!result.ok) {
    banners.innerHTML = banner("dashboard", "down", "Dashboard server unreachable",
      `${esc(result.error)} — retrying every ${refreshS} s; the page keeps the last data it had.`);
    updated.textContent = lastOk ? `last update ${new Date(lastOk).toLocaleTimeString()}` : "no data yet";
    updated.classList.add("stale");
    return;
  }
  const status = result.body;
  ctx.state.status = status;
  lastOk = Date.now();
  updated.classList.remove("stale");
  updated.textContent = `${status.mode ?? "?"} mode · updated ${new Date().toLocaleTimeString()}`;
  const known = status.sources ?? {};
  sources.innerHTML = SOURCES.map((name) => {
    const source = known[name] ?? { state: "error", detail: "not reported by the dashboard" };
    const state = source.state ?? "error";
    return `<span class="source source-${esc(state)}" data-testid="source-${name}" data-state="${esc(state)}"
      title="${esc(source.detail ?? "")}${source.url ? ` (${esc(source.url)})` : ""}">
      <i></i>${SOURCE_NAMES[name]} <b>${esc(STATE_WORDS[state] ?? state)}</b></span>`;
  }).join("");
  const rows = [];
  bannered.clear();
  for (const name of SOURCES) {
    const source = known[name] ?? { state: "error", detail: "not reported by the dashboard" };
    if (source.state === "ok") continue;
    bannered.add(name);
    const title = `${SOURCE_NAMES[name]} ${STATE_WORDS[source.state] ?? source.state}`;
    const remedy = source.state === "not-installed" ? REMEDIES[name] : "";
    const detail = source.detail ? `<span class="detail">${esc(source.detail)}</span>` : "";
    rows.push(banner(name, source.state, title, `${remedy}${CONSEQUENCES[name]} ${detail}`));
  }
  for (const error of status.errors ?? []) {
    const [name] = String(error).split(":");
    if (SOURCES.includes(name) && known[name] && known[name].state !== "ok") continue;
    rows.push(banner("other", "error", "Problem", esc(error)));
  }
  banners.innerHTML = rows.join("");
  const wanted = Number(status.refresh_s) > 0 ? Number(status.refresh_s) : DEFAULT_REFRESH_S;
  if (wanted !== refreshS) {
    refreshS = wanted;
    schedule();
  }
}

function banner(name, state, title, html) {
  const level = state === "timeout" ? "warn" : "bad";
  return `<div class="banner banner-${level}" data-testid="banner-${esc(name)}" data-state="${esc(state)}">
    <strong>${esc(title)}</strong> — ${html}</div>`;
}

function schedule() {
  clearInterval(timer);
  timer = setInterval(() => {
    if (!document.hidden) tick();
  }, refreshS * 1000);
}

window.__osm = { ctx, views: VIEWS, tick };
window.addEventListener("hashchange", () => show(viewFromHash()));
window.addEventListener("unhandledrejection", (event) => {
  console.warn("osm dashboard:", event.reason);
  event.preventDefault();
});
schedule();
show(viewFromHash());
