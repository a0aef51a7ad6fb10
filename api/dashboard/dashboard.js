// The fleet dashboard: one GraphQL query, rendered with the DOM (no framework, no build).
// The token is asked for once and kept in sessionStorage: it lives as long as the tab.
"use strict";

const TOKEN_KEY = "gpuinv.token";
const REFRESH_MS = 30000;
const AMOUNTS = "{ capacity allocatable allocated available }";
const GROUP = `{ key nodes nodesAllocatable wholeNodesFree utilizationPercent
  resources { gpus ${AMOUNTS} }
  gpuModels { vendor model nodes gpus ${AMOUNTS} } }`;
const QUERY = `query Dashboard {
  me { name role tenant }
  capacity { total ${GROUP} sites ${GROUP} }
  allocationTotals { tenant allocations devices gpus }
  syncState { lastSuccessAt lagSeconds lastError lastErrorAt }
  auditEvents(first: 12) { edges { node { at actor action objectKind objectName tenant } } }
}`;

const $ = (id) => document.getElementById(id);
const number = new Intl.NumberFormat();
let timer = null;

class Unauthenticated extends Error {}

async function ask(token) {
  const response = await fetch("/graphql", {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
    body: JSON.stringify({ query: QUERY, operationName: "Dashboard" }),
  });
  const body = await response.json();
  const error = (body.errors || [])[0];
  if (error) {
    const code = (error.extensions || {}).code;
    if (code === "UNAUTHENTICATED") throw new Unauthenticated(error.message);
    throw new Error(`${code || "ERROR"}: ${error.message}`);
  }
  return body.data;
}

function showSignIn(message) {
  clearTimeout(timer);
  sessionStorage.removeItem(TOKEN_KEY);
  $("dashboard").hidden = true;
  $("signout").hidden = $("refresh").hidden = true;
  $("who").textContent = "";
  $("signin").hidden = false;
  $("signin-error").textContent = message || "";
  $("token").focus();
}

async function load() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) return showSignIn();
  clearTimeout(timer);
  try {
    const data = await ask(token);
    $("signin").hidden = true;
    $("dashboard").hidden = false;
    $("signout").hidden = $("refresh").hidden = false;
    $("load-error").textContent = "";
    render(data);
    $("refreshed").textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (error) {
    if (error instanceof Unauthenticated) return showSignIn(error.message);
    $("load-error").textContent = `Could not load the fleet: ${error.message}`;
  }
  timer = setTimeout(load, REFRESH_MS);
}

// -- rendering ----------------------------------------------------------------------------

function render(data) {
  const me = data.me;
  $("who").textContent = `${me.name} · ${me.role}${me.tenant ? ` · ${me.tenant}` : ""}`;
  const total = data.capacity.total;
  const gpus = total.resources.gpus;
  $("kpi-utilization").textContent = `${total.utilizationPercent.toFixed(1)}%`;
  $("kpi-gpus").textContent =
    `${number.format(gpus.allocated)} of ${number.format(gpus.allocatable)} GPUs allocated`;
  $("kpi-nodes").textContent = number.format(total.nodesAllocatable);
  $("kpi-nodes-sub").textContent = `of ${number.format(total.nodes)} nodes`;
  $("kpi-whole").textContent = number.format(total.wholeNodesFree);
  const held = data.allocationTotals.reduce((sum, t) => sum + t.allocations, 0);
  $("kpi-allocations").textContent = number.format(held);
  $("kpi-allocations-sub").textContent = `${data.allocationTotals.length} tenant(s)`;
  renderSync(data.syncState);
  bars($("chart-sites"), data.capacity.sites.map((s) => [s.key ?? "(no site)", s.resources.gpus]));
  bars(
    $("chart-models"),
    total.gpuModels.map((m) => [`${m.vendor} ${m.model}`, m.gpus]),
  );
  rows($("table-sites"), data.capacity.sites.map((s) => {
    const g = s.resources.gpus;
    return [s.key ?? "(no site)", s.nodes, g.capacity, g.allocated, g.available,
      `${s.utilizationPercent.toFixed(1)}%`];
  }));
  rows($("table-tenants"), data.allocationTotals.map(
    (t) => [t.tenant ?? "(platform)", t.allocations, t.devices, t.gpus],
  ));
  rows($("table-audit"), data.auditEvents.edges.map(({ node: e }) => [
    new Date(e.at).toLocaleString(), e.actor, e.action, `${e.objectKind} ${e.objectName ?? ""}`,
    e.tenant ?? "",
  ]));
}

function renderSync(state) {
  if (!state) {
    $("kpi-sync").textContent = "never";
    $("kpi-sync-sub").textContent = "no sync has run";
    return;
  }
  $("kpi-sync").textContent = state.lagSeconds == null ? "never" : ago(state.lagSeconds);
  const failing = state.lastErrorAt && (!state.lastSuccessAt || state.lastErrorAt > state.lastSuccessAt);
  $("kpi-sync-sub").textContent = failing ? `failing: ${state.lastError}` : "since the last success";
  $("kpi-sync-sub").classList.toggle("error", Boolean(failing));
}

function ago(seconds) {
  if (seconds < 90) return `${Math.round(seconds)} s ago`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min ago`;
  return `${(seconds / 3600).toFixed(1)} h ago`;
}

function rows(table, values) {
  const body = table.tBodies[0];
  body.replaceChildren(...values.map((cells) => {
    const tr = document.createElement("tr");
    for (const cell of cells) {
      const td = document.createElement("td");
      td.textContent = typeof cell === "number" ? number.format(cell) : cell;
      if (typeof cell === "number" || /^[\d.]+%$/.test(cell)) td.className = "num";
      tr.append(td);
    }
    return tr;
  }));
}

const SVG = "http://www.w3.org/2000/svg";

function svg(name, attributes, text) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

// One horizontal bar per row: allocated, available, and the rest of the capacity.
function bars(target, entries) {
  const height = 28, label = 170, width = 740, scale = Math.max(1, ...entries.map(([, g]) => g.capacity));
  target.setAttribute("viewBox", `0 0 ${width + label + 70} ${Math.max(1, entries.length) * height}`);
  target.replaceChildren(...entries.flatMap(([name, g], i) => {
    const y = i * height;
    const parts = [["allocated", g.allocated], ["available", g.available],
      ["unavailable", Math.max(0, g.capacity - g.allocated - g.available)]];
    let x = label;
    const drawn = [svg("text", { x: 0, y: y + 18 }, name)];
    for (const [kind, amount] of parts) {
      const w = (amount / scale) * width;
      const rect = svg("rect", { x, y: y + 4, width: w, height: height - 8, class: kind });
      rect.append(svg("title", {}, `${name}: ${number.format(amount)} ${kind}`));
      drawn.push(rect);
      x += w;
    }
    drawn.push(svg("text", { x: x + 6, y: y + 18 }, number.format(g.capacity)));
    return drawn;
  }));
}

// -- wiring ----------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("signin").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    $("token").value = "";
    load();
  });
  $("signout").addEventListener("click", () => showSignIn("Signed out."));
  $("refresh").addEventListener("click", load);
  load();
});
