// The mesh as a live graph (cytoscape.js, dagre layout left to right, a box per namespace):
// workloads (circles) call services (triangles) over traffic edges labelled with requests/s,
// success rate and p99, coloured by success; idle edges (allowed, no traffic) grey and
// dotted; denied edges red and dashed, their side panel naming the policy that decides and
// the TrafficTarget YAML that would allow them; "serves" edges (service → its workloads) thin.
// A refresh changes the elements' data in place; the layout runs again only when the set of
// nodes changes, and never touches the user's zoom, pan or selection.
// The first rendered graph sets `window.__osmRendered` (ms since navigation) and the
// performance mark `osm-graph-rendered`; `window.__osmLayoutMs` is the last layout's cost.
// Cost: the style has no per-element mappers but `data(label)` (colours and widths are
// classes), and a graph of more than LARGE_NODES nodes is laid out in one pass per
// namespace (layers by longest path, ordered by their neighbours) instead of dagre, drawn at
// pixel ratio 1, with edges hidden and a texture shown while the user pans or zooms.

import { HEALTH_COLOURS, errorBox, esc, health, ms, percent, rps } from "./format.js";

let cy = null;
let root = null;
let nodeKey = "";
let selectedId = null;
let lastData = null;
/** Edge labels: on for small graphs (as Kiali, off by default for large ones), a toggle. */
let edgeLabels = null;
/** Decided by the first graph's size: namespace boxes are plain nodes under their members
 * (not compound parents, whose bookkeeping dominates drawing), node labels shown only when
 * zoomed in enough to read them. */
let large = null;
let quietLabels = true;
const LABEL_ZOOM = 0.75;
const LABELLED_EDGES = 80;

const WINDOWS = ["1m", "5m", "15m", "1h"];

/** Above this many nodes the graph is "large": one-pass layout, cheaper drawing. */
const LARGE_NODES = 60;
const EDGE_WIDTHS = [1.5, 2, 2.5, 3, 3.5, 4, 4.5, 5, 5.5, 6, 6.5, 7];
const NODE_BORDERS = { service: "#8b5cf6", workload: "#4f7cff" };

const STYLE = [
  {
    selector: "node",
    style: {
      label: "data(label)", "font-size": 11, color: "#1f2937", "text-valign": "bottom",
      "text-margin-y": 4, width: 30, height: 30,
      "background-color": "#e8eefc", "border-width": 2, "border-color": NODE_BORDERS.workload,
      "min-zoomed-font-size": 6,
    },
  },
  { selector: "node.workload", style: { shape: "ellipse" } },
  {
    selector: "node.service",
    style: {
      shape: "round-triangle", "background-color": "#efe7fb", width: 32, height: 28,
      "border-color": NODE_BORDERS.service,
    },
  },
  ...Object.entries(HEALTH_COLOURS).map(([name, colour]) => ({
    selector: `node.health-${name}`, style: { "border-color": colour },
  })),
  {
    selector: "node.namespace",
    style: {
      shape: "round-rectangle", "background-color": "#f7f8fa", "background-opacity": 1,
      "border-width": 1, "border-style": "dashed", "border-color": "#b8c0cc", label: "data(label)",
      "text-valign": "top", "text-halign": "center", "text-margin-y": -4, "font-size": 12,
      "font-weight": "bold", color: "#4b5563", padding: 14,
    },
  },
  {
    selector: "edge",
    style: {
      width: 1.5, "line-color": HEALTH_COLOURS.none, "target-arrow-color": HEALTH_COLOURS.none,
      "target-arrow-shape": "triangle", "arrow-scale": 0.9, "curve-style": "bezier",
      "font-size": 9, color: "#374151", "text-background-color": "#ffffff",
      "text-background-opacity": 0.85, "text-background-padding": 2, "text-rotation": "autorotate",
      "min-zoomed-font-size": 7, "line-style": "solid",
    },
  },
  ...Object.entries(HEALTH_COLOURS).map(([name, colour]) => ({
    selector: `edge.health-${name}`, style: { "line-color": colour, "target-arrow-color": colour },
  })),
  ...EDGE_WIDTHS.map((width, index) => ({ selector: `edge.w${index}`, style: { width } })),
  { selector: "edge.labelled", style: { label: "data(label)" } },
  {
    selector: "edge.idle",
    style: {
      "line-style": "dotted", "target-arrow-shape": "vee", "line-color": "#a3abb8",
      "target-arrow-color": "#a3abb8",
    },
  },
  {
    selector: "edge.denied",
    style: {
      "line-style": "dashed", "line-dash-pattern": [7, 4], color: "#b91c1c", "font-weight": "bold",
      "line-color": "#d93636", "target-arrow-color": "#d93636", width: 2.5,
    },
  },
  {
    selector: "edge.serves",
    style: { "line-color": "#c5cbd6", "target-arrow-color": "#c5cbd6", width: 1, "arrow-scale": 0.6 },
  },
  { selector: ":selected", style: { "overlay-color": "#2563eb", "overlay-opacity": 0.18, "overlay-padding": 6 } },
  { selector: "node:selected", style: { "border-width": 4, "border-color": "#2563eb" } },
  { selector: ".faded", style: { opacity: 0.25 } },
  {
    selector: "node.box",
    style: { width: "data(w)", height: "data(h)", padding: 0, "z-index": 0, events: "no", "z-index-compare": "manual" },
  },
  { selector: ".large", style: { "z-index-compare": "manual", "curve-style": "straight" } },
  { selector: "node.large", style: { "z-index": 2 } },
  { selector: "edge.large", style: { "z-index": 1 } },
  { selector: "node.quiet", style: { label: "" } },
  { selector: "edge.hidden", style: { display: "none" } },
];

export function mount(element, ctx) {
  root = element;
  root.innerHTML = `
    <div class="toolbar">
      <label>Window <select data-testid="graph-window">${WINDOWS.map(
        (w) => `<option value="${w}" ${w === ctx.state.window ? "selected" : ""}>${w}</option>`,
      ).join("")}</select></label>
      <label><input type="checkbox" data-testid="graph-show-idle" checked> idle edges</label>
      <label><input type="checkbox" data-testid="graph-show-serves" checked> service → workload</label>
      <label><input type="checkbox" data-testid="graph-edge-labels"> edge labels</label>
      <button type="button" data-testid="graph-fit">Fit</button>
      <button type="button" data-testid="graph-relayout">Re-layout</button>
      <span class="legend">
        <span><i class="dot ok"></i>≥ 99 %</span><span><i class="dot warn"></i>≥ 95 %</span>
        <span><i class="dot bad"></i>&lt; 95 %</span><span><i class="line idle"></i>idle</span>
        <span><i class="line denied"></i>denied</span>
        <span>● workload</span><span>▲ service</span>
      </span>
    </div>
    <div class="errors-slot" data-testid="graph-errors-slot"></div>
    <div class="graph-wrap">
      <div class="graph-canvas" data-testid="graph-canvas"></div>
      <div class="graph-empty" data-testid="graph-empty" hidden></div>
      <div class="tooltip" data-testid="graph-tooltip" hidden></div>
      <aside class="side-panel" data-testid="side-panel"></aside>
    </div>`;
  root.querySelector("[data-testid=graph-window]").addEventListener("change", (event) => {
    ctx.state.window = event.target.value;
    ctx.refreshNow();
  });
  root.querySelector("[data-testid=graph-show-idle]").addEventListener("change", applyFilters);
  root.querySelector("[data-testid=graph-show-serves]").addEventListener("change", applyFilters);
  root.querySelector("[data-testid=graph-edge-labels]").addEventListener("change", (event) => {
    edgeLabels = event.target.checked;
    if (lastData) render(lastData);
  });
  root.querySelector("[data-testid=graph-fit]").addEventListener("click", () => cy?.fit(undefined, 30));
  root.querySelector("[data-testid=graph-relayout]").addEventListener("click", () => layout(true));
  root.querySelector("[data-testid=side-panel]").addEventListener("click", onPanelClick);
}

export function shown() {
  if (cy) {
    cy.resize();
  }
}

export async function refresh(ctx) {
  const result = await ctx.get(`/api/graph?window=${encodeURIComponent(ctx.state.window)}`);
  const slot = root.querySelector("[data-testid=graph-errors-slot]");
  if (!result.ok) {
    slot.innerHTML = errorBox([result.error], "graph-errors");
    return;
  }
  const data = result.body;
  lastData = data;
  slot.innerHTML = errorBox(data.errors, "graph-errors");
  render(data);
}

function elementsOf(data) {
  const nodes = data.nodes ?? [];
  large ??= nodes.length > LARGE_NODES;
  const extra = large ? " large" : "";
  const edges = data.edges ?? [];
  const inbound = new Map();
  for (const edge of edges) {
    if (edge.kind !== "traffic" || edge.state !== "active" || edge.success_rate == null) continue;
    const sum = inbound.get(edge.target) ?? { weight: 0, ok: 0 };
    const weight = edge.rps ?? 0;
    sum.weight += weight;
    sum.ok += weight * edge.success_rate;
    inbound.set(edge.target, sum);
  }
  const namespaces = [...new Set(nodes.map((n) => n.namespace))].sort();
  const out = namespaces.map((ns) => ({
    group: "nodes",
    data: { id: `namespace:${ns}`, kind: "namespace", label: ns },
    classes: large ? "namespace box" : "namespace",
    ...(large ? { selectable: false, grabbable: false } : {}),
  }));
  for (const node of nodes) {
    const sum = inbound.get(node.id);
    const rate = sum && sum.weight > 0 ? sum.ok / sum.weight : null;
    out.push({
      group: "nodes",
      data: { ...node, ...(large ? {} : { parent: `namespace:${node.namespace}` }), label: node.label || node.name },
      classes: (rate == null ? node.kind : `${node.kind} health-${health(rate)}`) + extra + (large && quietLabels ? " quiet" : ""),
    });
  }
  const ids = new Set(nodes.map((n) => n.id));
  if (edgeLabels === null) {
    edgeLabels = edges.filter((e) => e.kind === "traffic").length <= LABELLED_EDGES;
    root.querySelector("[data-testid=graph-edge-labels]").checked = edgeLabels;
  }
  for (const edge of edges) {
    if (!ids.has(edge.source) || !ids.has(edge.target)) continue;
    const look = edgeLook(edge);
    if (!edgeLabels && edge.state !== "denied") look.label = "";
    out.push({ group: "edges", data: { ...edge, label: look.label }, classes: look.classes + extra });
  }
  return out;
}

/** An edge's label and classes (colour by health or state, width by rate). */
function edgeLook(edge) {
  if (edge.kind === "serves") return { label: "", classes: "serves" };
  if (edge.state === "denied") return { label: "denied", classes: "denied labelled" };
  if (edge.state === "idle") return { label: "", classes: "idle" };
  const width = edge.rps ? Math.min(7, 1.5 + Math.log10(1 + edge.rps) * 2) : 1.5;
  const step = Math.round((width - 1.5) * 2);
  const parts = [];
  if (edge.rps != null) parts.push(`${rps(edge.rps)} rps`);
  if (edge.success_rate != null) parts.push(percent(edge.success_rate));
  if (edge.p99_ms != null) parts.push(`p99 ${ms(edge.p99_ms)}`);
  const label = parts.join(" · ");
  return { label, classes: `health-${health(edge.success_rate)} w${step} labelled` };
}

function render(data) {
  const elements = elementsOf(data);
  const empty = root.querySelector("[data-testid=graph-empty]");
  const nodeCount = (data.nodes ?? []).length;
  empty.hidden = nodeCount > 0;
  empty.textContent = nodeCount > 0 ? "" : "No workloads or services to show (yet): " +
    ((data.errors ?? []).join("; ") || "the mesh has no meshed workloads.");
  const key = elements.filter((e) => e.group === "nodes").map((e) => e.data.id).sort().join("\n");
  if (!cy) {
    performance.mark("osm-graph-data");
    const t0 = performance.now();
    const ids = wantedIds(elements);
    const positions = positionsOf(data.nodes ?? [], (data.edges ?? []).filter(
      (e) => ids.has(e.source) && ids.has(e.target)));
    window.__osmLayoutMs = performance.now() - t0;
    performance.mark("osm-graph-laid-out");
    for (const element of elements) {
      const placed = positions.get(element.data.id);
      if (placed && (large || !placed.w)) element.position = { x: placed.x, y: placed.y };
      if (large && placed?.w) Object.assign(element.data, { w: placed.w, h: placed.h });
    }
    cy = window.cytoscape({
      container: root.querySelector("[data-testid=graph-canvas]"),
      elements,
      style: STYLE,
      layout: { name: "preset", fit: true, padding: 30 },
      minZoom: 0.05,
      maxZoom: 3,
      boxSelectionEnabled: false,
      textureOnViewport: large,
      hideEdgesOnViewport: large,
      pixelRatio: large ? 1 : "auto",
    });
    performance.mark("osm-graph-created");
    window.__osmCy = cy;
    nodeKey = key;
    bind();
    applyFilters();
    panel();
    // The canvas paints on the next frame; the mark is for the frame that shows the graph.
    requestAnimationFrame(() => {
      performance.mark("osm-graph-rendered");
      window.__osmRendered = performance.now();
    });
    return;
  }
  const wanted = new Map(elements.map((e) => [e.data.id, e]));
  cy.batch(() => {
    cy.elements().forEach((element) => {
      if (!wanted.has(element.id())) element.remove();
    });
    const added = [];
    for (const element of elements) {
      const existing = cy.getElementById(element.data.id);
      if (existing.nonempty()) {
        existing.data(element.data);
        existing.classes(element.classes);
      } else added.push(element);
    }
    // Nodes before edges: an edge needs its ends.
    cy.add(added.filter((e) => e.group === "nodes"));
    cy.add(added.filter((e) => e.group === "edges"));
  });
  applyFilters();
  if (key !== nodeKey) {
    nodeKey = key;
    layout(false);
  }
  if (selectedId && cy.getElementById(selectedId).empty()) selectedId = null;
  if (selectedId) cy.getElementById(selectedId).select();
  panel();
}

/**
 * Two-level layered layout: dagre (left to right) inside each namespace over its own edges,
 * then dagre over the namespaces as boxes of those sizes, joined by the traffic between them.
 * dagre's own compound mode fails on cross-namespace edges ("Not possible to find
 * intersection inside of the rectangle") and is slow; this is neither. Each dagre run is on
 * a headless cytoscape instance, so the page's graph only receives final positions.
 */
function wantedIds(elements) {
  return new Set(elements.filter((e) => e.group === "nodes").map((e) => e.data.id));
}

function layout(fit) {
  const t0 = performance.now();
  const nodes = cy.nodes("[kind != 'namespace']").map((n) => n.data());
  const edges = cy.edges().map((e) => e.data());
  const positions = positionsOf(nodes, edges);
  cy.batch(() => {
    (large ? cy.nodes() : cy.nodes("[kind != 'namespace']")).forEach((node) => {
      const placed = positions.get(node.id());
      if (!placed) return;
      node.position({ x: placed.x, y: placed.y });
      if (placed.w) node.data({ w: placed.w, h: placed.h });
    });
  });
  if (fit) cy.fit(undefined, 30);
  window.__osmLayoutMs = performance.now() - t0;
  applyFilters();
  panel();
}

/**
 * Two-level layered layout of node data and edge data: dagre (left to right) inside each
 * namespace over its own edges, then dagre over the namespaces as boxes of those sizes,
 * joined by the traffic between them. dagre's own compound mode fails on cross-namespace
 * edges ("Not possible to find intersection inside of the rectangle") and is slow; this is
 * neither. Each dagre run is on a headless cytoscape instance; the result is centres by id.
 */
function positionsOf(nodes, edges) {
  const members = new Map();
  const namespaceOf = new Map();
  for (const node of nodes) {
    if (!members.has(node.namespace)) members.set(node.namespace, []);
    members.get(node.namespace).push(node);
    namespaceOf.set(node.id, node.namespace);
  }
  const inner = new Map([...members.keys()].map((ns) => [ns, []]));
  for (const edge of edges) {
    const ns = namespaceOf.get(edge.source);
    if (ns !== undefined && ns === namespaceOf.get(edge.target)) inner.get(ns).push(edge);
  }
  const place = nodes.length > LARGE_NODES ? layered : dagre;
  const boxes = new Map();
  for (const [ns, inside] of members) {
    const sized = inside.map((n) => ({ id: n.id, w: Math.max(36, Math.min(140, String(n.label).length * 6.2)), h: 52 }));
    const positions = place(sized, inner.get(ns), 22, 90);
    let [x1, y1, x2, y2] = [Infinity, Infinity, -Infinity, -Infinity];
    for (const node of sized) {
      const p = positions.get(node.id);
      x1 = Math.min(x1, p.x - node.w / 2); x2 = Math.max(x2, p.x + node.w / 2);
      y1 = Math.min(y1, p.y - node.h / 2); y2 = Math.max(y2, p.y + node.h / 2);
    }
    boxes.set(ns, { positions, cx: (x1 + x2) / 2, cy: (y1 + y2) / 2, w: x2 - x1 + 40, h: y2 - y1 + 56 });
  }
  const between = new Map();
  for (const edge of edges) {
    const [a, b] = [namespaceOf.get(edge.source), namespaceOf.get(edge.target)];
    if (edge.kind === "traffic" && a !== undefined && b !== undefined && a !== b) {
      between.set(`${a}\n${b}`, { source: `ns:${a}`, target: `ns:${b}` });
    }
  }
  const sizes = [...boxes].map(([ns, box]) => ({ id: `ns:${ns}`, w: box.w, h: box.h }));
  const centres = nodes.length > LARGE_NODES ? grid(sizes, 30, 60) : dagre(sizes, [...between.values()], 30, 120);
  const out = new Map();
  for (const [ns, inside] of members) {
    const box = boxes.get(ns);
    const centre = centres.get(`ns:${ns}`);
    out.set(`namespace:${ns}`, { x: centre.x, y: centre.y, w: box.w, h: box.h });
    for (const node of inside) {
      const p = box.positions.get(node.id);
      out.set(node.id, { x: centre.x + p.x - box.cx, y: centre.y + p.y - box.cy });
    }
  }
  return out;
}

/**
 * Positions (centres) of `nodes` [{id, w, h}] in layers left to right, in one pass: a node's
 * layer is its longest path from a source over `edges` (edges that close a cycle ignored),
 * each layer ordered by the mean position of its nodes' neighbours in the layer before (one
 * sweep; nodes without such neighbours keep their order). The spacing is dagre's.
 */
function layered(nodes, edges, nodeSep, rankSep) {
  const out = new Map(nodes.map((n) => [n.id, []]));
  const into = new Map(nodes.map((n) => [n.id, []]));
  for (const edge of edges) {
    if (out.has(edge.source) && out.has(edge.target) && edge.source !== edge.target) {
      out.get(edge.source).push(edge.target);
      into.get(edge.target).push(edge.source);
    }
  }
  const rank = new Map();
  const visiting = new Set();
  const rankOf = (id) => {
    if (rank.has(id)) return rank.get(id);
    visiting.add(id);
    let r = 0;
    for (const from of into.get(id)) if (!visiting.has(from)) r = Math.max(r, rankOf(from) + 1);
    visiting.delete(id);
    rank.set(id, r);
    return r;
  };
  const layers = [];
  for (const node of nodes) {
    const r = rankOf(node.id);
    (layers[r] ??= []).push(node);
  }
  const order = new Map();
  const positions = new Map();
  let x = 0;
  for (const layer of layers) {
    if (!layer) continue;
    const keyed = layer.map((node, index) => {
      const before = into.get(node.id).filter((id) => order.has(id)).map((id) => order.get(id));
      const key = before.length ? before.reduce((a, b) => a + b, 0) / before.length : index;
      return { node, key, index };
    });
    keyed.sort((a, b) => a.key - b.key || a.index - b.index);
    const width = Math.max(...layer.map((n) => n.w));
    let y = 0;
    keyed.forEach(({ node }, index) => {
      order.set(node.id, index);
      positions.set(node.id, { x: x + width / 2, y: y + node.h / 2 });
      y += node.h + nodeSep;
    });
    x += width + rankSep;
  }
  return positions;
}

/**
 * Centres of boxes [{id, w, h}] in rows, in their order, with as many per row as makes the
 * whole the shape of the canvas (so that fitting it zooms out least).
 */
function grid(boxes, gapX, gapY) {
  const canvas = root.querySelector("[data-testid=graph-canvas]");
  const aspect = Math.max(0.2, (canvas.clientWidth || 1000) / (canvas.clientHeight || 600));
  let best = null;
  for (let columns = 1; columns <= boxes.length; columns++) {
    const rows = [];
    for (let i = 0; i < boxes.length; i += columns) rows.push(boxes.slice(i, i + columns));
    const width = Math.max(...rows.map((row) => row.reduce((sum, b) => sum + b.w + gapX, -gapX)));
    const height = rows.reduce((sum, row) => sum + Math.max(...row.map((b) => b.h)) + gapY, -gapY);
    const scale = Math.min(aspect / width, 1 / height);
    if (!best || scale > best.scale) best = { scale, rows };
  }
  const centres = new Map();
  let y = 0;
  for (const row of best?.rows ?? []) {
    const tall = Math.max(...row.map((b) => b.h));
    let x = 0;
    for (const box of row) {
      centres.set(box.id, { x: x + box.w / 2, y: y + tall / 2 });
      x += box.w + gapX;
    }
    y += tall + gapY;
  }
  return centres;
}

/** Positions (centres) of `nodes` [{id, w, h}] laid out by dagre, left to right. */
function dagre(nodes, edges, nodeSep, rankSep) {
  const headless = window.cytoscape({
    headless: true,
    styleEnabled: true,
    style: [{ selector: "node", style: { width: "data(w)", height: "data(h)", shape: "rectangle" } }],
    elements: [
      ...nodes.map((n) => ({ group: "nodes", data: n })),
      ...edges.map((e, i) => ({ group: "edges", data: { id: `e${i}`, source: e.source, target: e.target } })),
    ],
  });
  headless.layout({ name: "dagre", rankDir: "LR", nodeSep, rankSep, animate: false, fit: false }).run();
  const positions = new Map(headless.nodes().map((n) => [n.id(), { ...n.position() }]));
  headless.destroy();
  return positions;
}

function applyFilters() {
  if (!cy) return;
  const idle = root.querySelector("[data-testid=graph-show-idle]").checked;
  const serves = root.querySelector("[data-testid=graph-show-serves]").checked;
  cy.batch(() => {
    cy.edges().forEach((edge) => {
      const data = edge.data();
      edge.toggleClass("hidden", (!idle && data.state === "idle") || (!serves && data.kind === "serves"));
    });
  });
}

function bind() {
  cy.on("tap", "node[kind != 'namespace'], edge", (event) => {
    selectedId = event.target.id();
    cy.elements().unselect();
    event.target.select();
    panel();
  });
  cy.on("tap", (event) => {
    if (event.target === cy) {
      selectedId = null;
      cy.elements().unselect();
      panel();
    }
  });
  const tooltip = root.querySelector("[data-testid=graph-tooltip]");
  cy.on("mouseover", "edge[kind = 'traffic']", (event) => {
    const edge = event.target.data();
    const position = event.renderedPosition;
    tooltip.innerHTML = edgeSummary(edge) + (edge.state === "denied"
      ? `<div class="muted">click for the TrafficTarget that would allow it</div>` : "");
    tooltip.style.left = `${position.x + 14}px`;
    tooltip.style.top = `${position.y + 14}px`;
    tooltip.hidden = false;
  });
  cy.on("mouseout", "edge", () => {
    tooltip.hidden = true;
  });
  cy.on("pan zoom", () => {
    tooltip.hidden = true;
  });
  if (large) {
    const labels = () => {
      const wanted = cy.zoom() < LABEL_ZOOM;
      if (wanted !== quietLabels) {
        quietLabels = wanted;
        cy.batch(() => cy.nodes("[kind != 'namespace']").toggleClass("quiet", quietLabels));
      }
    };
    cy.on("zoom", labels);
    labels();
  }
}

function nameOf(id) {
  const node = cy?.getElementById(id);
  if (node && node.nonempty()) return `${node.data("namespace")}/${node.data("name")}`;
  return id.replace(/^(workload|service):/, "");
}

function edgeSummary(edge) {
  const head = `<div><b>${esc(nameOf(edge.source))}</b> → <b>${esc(nameOf(edge.target))}</b></div>`;
  if (edge.state === "denied") {
    return `${head}<div class="bad-text">denied: ${esc(edge.policy?.by ?? "policy")}</div>`;
  }
  if (edge.state === "idle") return `${head}<div class="muted">idle: allowed, no traffic in the window</div>`;
  return `${head}<div>${rps(edge.rps)} rps · ${percent(edge.success_rate)} success · p50 ${ms(edge.p50_ms)} · p99 ${ms(edge.p99_ms)}</div>`;
}

function panel() {
  const aside = root.querySelector("[data-testid=side-panel]");
  if (!cy) return;
  const element = selectedId ? cy.getElementById(selectedId) : null;
  if (!element || element.empty()) {
    aside.innerHTML = overview();
    return;
  }
  aside.innerHTML = element.isEdge() ? edgePanel(element.data()) : nodePanel(element);
}

function overview() {
  const data = lastData ?? { nodes: [], edges: [] };
  const traffic = (data.edges ?? []).filter((e) => e.kind === "traffic");
  const count = (state) => traffic.filter((e) => e.state === state).length;
  const denied = traffic.filter((e) => e.state === "denied");
  return `<h3>Mesh</h3>
    <div class="stats">
      <div><b>${(data.nodes ?? []).filter((n) => n.kind === "workload").length}</b>workloads</div>
      <div><b>${(data.nodes ?? []).filter((n) => n.kind === "service").length}</b>services</div>
      <div><b>${count("active")}</b>active edges</div>
      <div class="${denied.length ? "bad-text" : ""}"><b>${denied.length}</b>denied</div>
    </div>
    ${denied.length ? `<h4>Denied traffic</h4><ul class="links" data-testid="denied-list">${denied.map(
      (e) => `<li><a href="#graph" data-select="${esc(e.id)}">${esc(nameOf(e.source))} → ${esc(nameOf(e.target))}</a></li>`,
    ).join("")}</ul>` : ""}
    <p class="muted">Click a workload, a service or an edge for its details. Window: ${esc(data.window ?? "")}.</p>`;
}

function edgePanel(edge) {
  const stateClass = edge.state === "denied" ? "bad" : edge.state === "idle" ? "none" : health(edge.success_rate);
  const policy = edge.policy ?? {};
  let html = `<h3 data-testid="panel-title">${esc(nameOf(edge.source))} → ${esc(nameOf(edge.target))}</h3>
    <div><span class="badge badge-${stateClass}" data-testid="panel-state">${esc(edge.kind === "serves" ? "serves" : edge.state)}</span></div>`;
  if (edge.kind === "traffic") {
    html += `<div class="stats">
      <div><b>${rps(edge.rps)}</b>requests/s</div>
      <div class="${health(edge.success_rate)}-text"><b>${percent(edge.success_rate)}</b>success</div>
      <div><b>${ms(edge.p50_ms)}</b>p50</div><div><b>${ms(edge.p99_ms)}</b>p99</div></div>
      <h4>Policy</h4>
      <p data-testid="panel-policy"><span class="badge badge-${policy.allowed ? "ok" : "bad"}">${policy.allowed ? "allowed" : "denied"}</span> by <b>${esc(policy.by ?? "—")}</b></p>`;
    if (policy.suggestion) {
      html += `<h4>A TrafficTarget that would allow it</h4>
        <pre class="yaml" data-testid="policy-suggestion">${esc(policy.suggestion)}</pre>
        <button type="button" data-copy="suggestion">Copy YAML</button>
        <p class="muted">Apply with <code>kubectl apply -f -</code> (or <code>osm apply</code> in local mode).</p>`;
    }
  } else {
    html += `<p class="muted">The service's selector picks this workload's pods.</p>`;
  }
  return html;
}

function nodePanel(node) {
  const data = node.data();
  const edges = (lastData?.edges ?? []).filter((e) => e.kind === "traffic");
  const list = (items, other) => items.length ? `<ul class="links">${items.map((e) =>
    `<li><a href="#graph" data-select="${esc(e.id)}">${esc(nameOf(e[other]))}</a>
      <span class="badge badge-${e.state === "denied" ? "bad" : e.state === "idle" ? "none" : health(e.success_rate)}">${e.state === "active" ? `${rps(e.rps)} rps · ${percent(e.success_rate)}` : esc(e.state)}</span></li>`,
  ).join("")}</ul>` : `<p class="muted">none</p>`;
  return `<h3 data-testid="panel-title">${esc(data.namespace)}/${esc(data.name)}</h3>
    <div class="kv">
      <span>kind</span><span>${esc(data.kind)}</span>
      <span>data plane</span><span>${esc(data.data_plane ?? "—")}</span>
      <span>pods</span><span>${esc(data.pods ?? "—")}</span></div>
    <h4>Calls in</h4>${list(edges.filter((e) => e.target === data.id), "source")}
    <h4>Calls out</h4>${list(edges.filter((e) => e.source === data.id), "target")}`;
}

function onPanelClick(event) {
  const link = event.target.closest("[data-select]");
  if (link) {
    event.preventDefault();
    selectedId = link.dataset.select;
    cy.elements().unselect();
    const element = cy.getElementById(selectedId);
    element.select();
    if (element.nonempty()) cy.animate({ center: { eles: element }, duration: 200 });
    panel();
    return;
  }
  const copy = event.target.closest("[data-copy]");
  if (copy) {
    const text = root.querySelector("[data-testid=policy-suggestion]")?.textContent ?? "";
    navigator.clipboard?.writeText(text).then(
      () => { copy.textContent = "Copied"; },
      () => { copy.textContent = "Select the text to copy"; },
    );
  }
}
