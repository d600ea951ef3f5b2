// The /ui page: draws the fabric from topology.json, the queue from ../debug/queue, and the
// selected gang's explanation from ../debug/explain. Read-only; every name shown comes from
// Kubernetes objects, so text goes in through textContent only, never as markup.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const REFRESH_MS = 5000;
const PAD = 8;
const LABEL_H = 16;
const GAP = 6;

const state = { fabric: null, queue: null, selected: "", gangOfNode: new Map() };

function selectedFromUrl() {
  return new URLSearchParams(window.location.search).get("gang") || "";
}

async function getJson(url) {
  const reply = await fetch(url, { cache: "no-store" });
  const doc = await reply.json();
  if (!reply.ok) throw new Error(doc.Error || `${url}: HTTP ${reply.status}`);
  return doc;
}

function el(tag, attrs = {}, text = "") {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text) node.textContent = text;
  return node;
}

function html(tag, text = "", cls = "") {
  const node = document.createElement(tag);
  if (text) node.textContent = text;
  if (cls) node.className = cls;
  return node;
}

// ---------------------------------------------------------------- layout
function cellSize(nNodes) {
  if (nNodes <= 64) return { w: 64, h: 40, gpus: true, label: true };
  if (nNodes <= 256) return { w: 48, h: 34, gpus: true, label: true };
  if (nNodes <= 2048) return { w: 14, h: 12, gpus: false, label: false };
  return { w: 7, h: 6, gpus: false, label: false };
}

function buildTree(fabric) {
  const byId = new Map();
  const roots = [];
  for (const d of fabric.domains) byId.set(d.id, { ...d, children: [], nodes: [] });
  for (const d of byId.values()) {
    if (d.parent && byId.has(d.parent)) byId.get(d.parent).children.push(d);
    else roots.push(d);
  }
  const loose = [];
  for (const n of fabric.nodes) {
    if (n.domain && byId.has(n.domain)) byId.get(n.domain).nodes.push(n);
    else loose.push(n);
  }
  if (loose.length) roots.push({ id: "", level: "", name: "nodes", children: [], nodes: loose });
  return roots;
}

// Sizes every box bottom-up: a box of nodes is a grid, a box of boxes wraps them in rows.
function measure(box, cell, maxW) {
  if (box.nodes.length) {
    const n = box.nodes.length;
    const cols = Math.max(1, Math.min(n, Math.max(4, Math.ceil(Math.sqrt(2 * n)))));
    const rows = Math.ceil(n / cols);
    box.cols = cols;
    box.w = 2 * PAD + cols * cell.w + (cols - 1) * GAP;
    box.h = LABEL_H + 2 * PAD + rows * cell.h + (rows - 1) * GAP;
  } else {
    let x = 0, rowH = 0, w = 0, h = 0;
    box.places = [];
    for (const child of box.children) {
      measure(child, cell, maxW - 2 * PAD);
      if (x > 0 && x + child.w > maxW - 2 * PAD) { h += rowH + GAP; x = 0; rowH = 0; }
      box.places.push({ x, y: h });
      x += child.w + GAP;
      rowH = Math.max(rowH, child.h);
      w = Math.max(w, x - GAP);
    }
    box.w = Math.max(w + 2 * PAD, 120);
    box.h = LABEL_H + 2 * PAD + h + rowH;
  }
  if (box.name) box.w = Math.max(box.w, 6.5 * domainLabel(box).length + 2 * PAD);
}

function domainLabel(box) {
  const count = countNodes(box);
  const free = box.gpus !== undefined ? ` · ${box.free_gpus}/${box.gpus} GPUs free` : "";
  const level = box.level && !box.name.startsWith(box.level) ? `${box.level} ` : "";
  return `${level}${box.name} · ${plural(count, "node")}${free}`;
}

function plural(n, word) {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

function countNodes(box) {
  return box.nodes.length + box.children.reduce((s, c) => s + countNodes(c), 0);
}

function drawBox(parent, box, x, y, depth, cell) {
  const g = el("g", { class: `domain depth-${depth}`, "data-domain": box.id });
  g.appendChild(el("rect", { x, y, width: box.w, height: box.h, rx: 4 }));
  g.appendChild(el("text", { x: x + PAD, y: y + 12 }, domainLabel(box)));
  parent.appendChild(g);
  const top = y + LABEL_H + PAD;
  if (box.nodes.length) {
    box.nodes.forEach((n, i) => {
      const nx = x + PAD + (i % box.cols) * (cell.w + GAP);
      const ny = top + Math.floor(i / box.cols) * (cell.h + GAP);
      g.appendChild(drawNode(n, nx, ny, cell));
    });
  } else {
    box.children.forEach((child, i) => {
      const p = box.places[i];
      drawBox(g, child, x + PAD + p.x, top + p.y, depth + 1, cell);
    });
  }
}

function nodeFill(n) {
  if (!n.gpus) return "#d1d5db";
  const f = n.allocated / n.gpus;  // white -> light blue as the node fills
  const mix = (a, b) => Math.round(a + (b - a) * f);
  return `rgb(${mix(255, 191)},${mix(255, 219)},${mix(255, 254)})`;
}

function drawNode(n, x, y, cell) {
  const g = el("g", { class: "node", "data-node": n.name });
  if (n.reserved > 0) g.classList.add("reserved");
  const gangs = state.gangOfNode.get(n.name) || [];
  const tip = [
    n.name + (n.product ? ` (${n.product})` : ""),
    `${n.allocated}/${n.gpus} GPUs allocated, ${n.reserved} reserved`,
    ...gangs.map((k) => `gang ${k}`),
  ].join("\n");
  g.appendChild(el("title", {}, tip));
  g.appendChild(el("rect", { class: "cell", x, y, width: cell.w, height: cell.h, fill: nodeFill(n), rx: 2 }));
  if (cell.label) {
    g.appendChild(el("text", { x: x + 3, y: y + 11 }, `${n.allocated}/${n.gpus}`));
  }
  if (cell.gpus && n.gpus > 0) {
    const bound = n.allocated - n.reserved;
    const size = Math.min(6, (cell.w - 6) / n.gpus - 1);
    for (let i = 0; i < n.gpus; i++) {
      const kind = i < bound ? "bound" : i < n.allocated ? "reserved" : "free";
      g.appendChild(el("rect", {
        class: `gpu ${kind}`, x: x + 3 + i * (size + 1), y: y + cell.h - size - 4, width: size, height: size,
      }));
    }
  }
  g.addEventListener("click", (event) => {
    event.stopPropagation();
    if (gangs.length) select(gangs[(gangs.indexOf(state.selected) + 1) % gangs.length]);
  });
  return g;
}

function drawFabric(fabric) {
  const host = document.getElementById("fabric");
  const cell = cellSize(fabric.nodes.length);
  const maxW = Math.max(600, host.clientWidth || 900);
  const roots = buildTree(fabric);
  const top = { id: "", level: "", name: "", children: roots, nodes: [] };
  measure(top, cell, maxW);
  const svg = el("svg", {
    width: top.w, height: top.h, viewBox: `0 0 ${top.w} ${top.h}`, role: "img",
    "aria-label": `fabric of ${fabric.cluster}`,
  });
  roots.forEach((root, i) => drawBox(svg, root, PAD + top.places[i].x, PAD + top.places[i].y, 1, cell));
  svg.addEventListener("click", () => select(""));
  host.replaceChildren(svg);
}

// ---------------------------------------------------------------- side panel
function gangItem(key, text, code) {
  const li = html("li", text);
  li.dataset.gang = key;
  if (code) li.appendChild(html("span", ` ${code}`, "code"));
  li.addEventListener("click", () => select(key));
  return li;
}

function drawQueue(queue) {
  document.getElementById("queue-policy").textContent =
    `policy ${queue.policy}; ${queue.phases.pending.length} pending`;
  const host = document.getElementById("queues");
  const parts = [];
  for (const q of queue.queues) {
    parts.push(html("h3", `${q.name} (${q.pending.length})`));
    const list = html("ol", "", "gangs");
    for (const g of q.pending) {
      list.appendChild(gangItem(g.key, `${g.key} · ${g.gpus_wanted} GPUs`, g.code || "untried"));
    }
    parts.push(list);
  }
  if (!parts.length) parts.push(html("p", "no gang waits", "muted"));
  host.replaceChildren(...parts);
}

function drawPlaced(fabric) {
  const list = document.getElementById("placed");
  list.replaceChildren(...fabric.gangs.map((g) =>
    gangItem(g.key, `${g.key} · ${g.phase} · ${g.gpus} GPUs on ${plural(g.nodes.length, "node")}`, "")));
  if (!fabric.gangs.length) list.replaceChildren(html("li", "none", "muted"));
}

function drawSummary(fabric) {
  document.getElementById("cluster").textContent = fabric.cluster;
  const g = fabric.gpus;
  const levels = fabric.levels.map((l) => l.name + (l.nvlink ? " (NVLink)" : "")).join(" < ");
  document.getElementById("summary").textContent =
    `${fabric.nodes.length} nodes, ${g.total} GPUs: ${g.total - g.free} allocated ` +
    `(${g.reserved} reserved, not bound yet), ${g.free} free · levels ${levels}`;
}

// ---------------------------------------------------------------- selection
function highlight() {
  const key = state.selected;
  const gang = state.fabric ? state.fabric.gangs.find((g) => g.key === key) : undefined;
  const nodes = new Set(gang ? gang.nodes : []);
  const svg = document.querySelector("#fabric svg");
  if (svg) svg.classList.toggle("has-selection", nodes.size > 0);
  for (const g of document.querySelectorAll("#fabric .node")) {
    g.classList.toggle("selected", nodes.has(g.dataset.node));
  }
  for (const li of document.querySelectorAll("li[data-gang]")) {
    li.classList.toggle("selected", li.dataset.gang === key);
  }
}

function detail(dl, name, value) {
  if (value === undefined || value === null || value === "") return;
  dl.append(html("dt", name), html("dd", String(value)));
}

async function showSelection() {
  const panel = document.getElementById("selection");
  const key = state.selected;
  panel.hidden = !key;
  if (!key) return;
  document.getElementById("selection-key").textContent = key;
  const dl = document.getElementById("selection-details");
  let doc;
  try {
    doc = await getJson(`../debug/explain?gang=${encodeURIComponent(key)}`);
  } catch (err) {
    dl.replaceChildren(html("dt", "error"), html("dd", err.message));
    return;
  }
  if (key !== state.selected) return;
  dl.replaceChildren();
  detail(dl, "phase", doc.phase);
  detail(dl, "queue", doc.queue);
  detail(dl, "tenant", doc.tenant);
  detail(dl, "position", doc.position);
  detail(dl, "reason", doc.code);
  detail(dl, "message", doc.message);
  detail(dl, "would run if", doc.would_run_if);
  for (const plan of doc.plans || []) {
    detail(dl, "domain", `${plan.level} ${plan.domain}`);
    const shown = plan.nodes.slice(0, 12).join(", ");
    detail(dl, "nodes", plan.nodes.length > 12 ? `${shown} … (${plan.nodes.length})` : shown);
    detail(dl, "cost", `${plan.cost.total} (${plan.solver})`);
    detail(dl, "expires in", plan.expires_in_s === null ? "" : `${plan.expires_in_s} s`);
  }
}

function select(key) {
  state.selected = key;
  const url = new URL(window.location.href);
  if (key) url.searchParams.set("gang", key);
  else url.searchParams.delete("gang");
  window.history.replaceState(null, "", url);
  highlight();
  showSelection();
}

// ---------------------------------------------------------------- refresh
async function refresh() {
  try {
    const [fabric, queue] = await Promise.all([getJson("topology.json"), getJson("../debug/queue")]);
    state.fabric = fabric;
    state.gangOfNode = new Map();
    for (const g of fabric.gangs) {
      for (const n of g.nodes) {
        if (!state.gangOfNode.has(n)) state.gangOfNode.set(n, []);
        state.gangOfNode.get(n).push(g.key);
      }
    }
    drawSummary(fabric);
    drawFabric(fabric);
    drawQueue(queue);
    drawPlaced(fabric);
    highlight();
    document.getElementById("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
    document.body.dataset.state = "ready";
  } catch (err) {
    document.getElementById("summary").textContent = `cannot read the extender: ${err.message}`;
    document.body.dataset.state = "error";
  }
}

document.addEventListener("DOMContentLoaded", () => {
  state.selected = selectedFromUrl();
  document.getElementById("clear").addEventListener("click", () => select(""));
  refresh().then(showSelection);
  setInterval(() => { if (!document.hidden) refresh(); }, REFRESH_MS);
});
