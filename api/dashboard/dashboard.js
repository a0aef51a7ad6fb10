// The fleet dashboard: one GraphQL query, rendered with the DOM (no framework, no build).
// Requests and allocations are dashboard-requests.js's (loaded first: `Requests`).
// The token is asked for once and kept in sessionStorage: it lives as long as the tab. It is
// pasted, or got by "Sign in with …" from an OpenID Connect issuer (dashboard-oidc.js).
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
  quotas { tenant project gpuModel gpus nodes usedGpus usedNodes borrowedGpus }
  ${Requests.selection}
}
${Requests.fragments}`;

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
    // Refused whole: no token, a bad one, or (OpenID Connect) one this service grants nothing.
    if (code === "UNAUTHENTICATED" || (code === "FORBIDDEN" && !body.data)) {
      throw new Unauthenticated(error.message);
    }
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

async function offerIssuers() {
  const issuers = await SignIn.options();
  SignIn.offer($("issuer-buttons"), issuers, (message) => { $("signin-error").textContent = message; });
  $("signin-issuers").hidden = issuers.length === 0;
}

// Back from an issuer's login page: keep the token it gave, then show the fleet.
async function start() {
  try {
    const token = await SignIn.finish();
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
  } catch (error) {
    return showSignIn(error.message);
  }
  load();
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
  charts(
    data.capacity.sites.map((s) => [s.key ?? "(no site)", s.resources.gpus]),
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
  renderQuotas(data.quotas);
  Requests.render(data);
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

// The bar series, in drawing order, with their legend text. The legend lists only the
// series that some bar draws (a fleet with nothing in maintenance has no "not allocatable").
const SERIES = [
  ["allocated", "allocated"],
  ["available", "available"],
  ["unavailable", "not allocatable (maintenance, offline, reserved, unhealthy)"],
];
const CHARTS = ["chart-sites", "chart-models"];

function segments(g) {
  const amounts = {
    allocated: g.allocated,
    available: g.available,
    unavailable: Math.max(0, g.capacity - g.allocated - g.available),
  };
  return SERIES.map(([kind]) => [kind, amounts[kind]]).filter(([, amount]) => amount > 0);
}

function charts(sites, models) {
  const drawn = new Set();
  for (const [id, entries] of [["chart-sites", sites], ["chart-models", models]]) {
    const target = $(id);
    target.entries = entries;
    bars(target);
    const kinds = new Set(entries.flatMap(([, g]) => segments(g).map(([kind]) => kind)));
    kinds.forEach((kind) => drawn.add(kind));
    const names = SERIES.filter(([kind]) => kinds.has(kind)).map(([, text]) => text.split(" (")[0]);
    target.setAttribute("aria-label", `${target.dataset.title}: ${names.join(", ") || "no GPUs"}`);
  }
  $("legend").replaceChildren(...SERIES.filter(([kind]) => drawn.has(kind)).map(([kind, text]) => {
    const item = document.createElement("li");
    item.dataset.series = kind;
    const swatch = document.createElement("span");
    swatch.className = `swatch ${kind}`;
    item.append(swatch, text);
    return item;
  }));
}

// Chart geometry is in CSS pixels: the SVG has no viewBox, so its text is never scaled
// with the page; the layout is redone for the width the chart has (see the ResizeObserver).
const ROW = 32, BAR = 20, GAP = 10, LINE = 18, MIN_BAR = 160;

// One horizontal bar per row: allocated, available, and the rest of the capacity. Labels
// are measured: they get a column as wide as the longest one, or, where the chart is too
// narrow for that, a line of their own above their bar (wrapped at spaces and hyphens).
function bars(target) {
  const entries = target.entries || [];
  const width = Math.floor(target.getBoundingClientRect().width);
  if (!width) return;  // not displayed: drawn when it is (the observer sees it grow)
  target.dataset.drawnWidth = width;
  target.replaceChildren();
  const probe = svg("text", { x: 0, y: 0 });
  target.append(probe);
  const measure = (text) => {
    probe.textContent = text;
    return probe.getComputedTextLength() || text.length * 8;
  };
  const names = entries.map(([name]) => name);
  const values = entries.map(([, g]) => number.format(g.capacity));
  const nameWidth = Math.ceil(Math.max(0, ...names.map(measure)));
  const valueWidth = Math.ceil(Math.max(0, ...values.map(measure)));
  const inline = nameWidth + GAP + MIN_BAR + GAP + valueWidth <= width;
  const lines = names.map((name) => (inline ? [name] : wrap(name, width, measure)));
  probe.remove();

  const left = inline ? nameWidth + GAP : 0;
  const span = Math.max(1, width - left - GAP - valueWidth);
  const scale = Math.max(1, ...entries.map(([, g]) => g.capacity));
  const drawn = [];
  let y = 0;
  entries.forEach(([name, g], i) => {
    const label = svg("text", { class: "label" });
    if (inline) {
      label.setAttribute("x", 0);
      label.setAttribute("y", y + ROW / 2);
      label.textContent = name;
    } else {
      lines[i].forEach((line, n) => label.append(svg("tspan", { x: 0, y: y + LINE / 2 + n * LINE }, line)));
      y += lines[i].length * LINE;
    }
    drawn.push(label);
    const top = inline ? y + (ROW - BAR) / 2 : y + 2;
    let x = left;
    for (const [kind, amount] of segments(g)) {
      const w = (amount / scale) * span;
      const rect = svg("rect", { x, y: top, width: w, height: BAR, class: kind });
      const what = kind === "unavailable" ? "not allocatable" : kind;
      rect.append(svg("title", {}, `${name}: ${number.format(amount)} ${what}`));
      drawn.push(rect);
      x += w;
    }
    drawn.push(svg("text", { class: "value", x: x + GAP / 2, y: top + BAR / 2 }, values[i]));
    y += inline ? ROW : BAR + 2 + GAP;
  });
  target.setAttribute("height", Math.max(1, Math.ceil(y)));
  target.replaceChildren(...drawn);
}

// Lines no wider than the chart, broken after a space or a hyphen; a part wider than the
// chart on its own keeps its line (the chart is narrower than one word).
function wrap(text, width, measure) {
  const parts = text.match(/[^\s-]+-?\s*|\s+/g) || [text];
  const lines = [];
  let line = "";
  for (const part of parts) {
    if (line && measure((line + part).trimEnd()) > width) {
      lines.push(line.trimEnd());
      line = part.trimStart();
    } else {
      line += part;
    }
  }
  if (line.trim()) lines.push(line.trimEnd());
  return lines.length ? lines : [text];
}

const resized = new ResizeObserver((changes) => {
  for (const { target } of changes) {
    if (Math.floor(target.getBoundingClientRect().width) !== Number(target.dataset.drawnWidth)) {
      bars(target);
    }
  }
});

// -- quotas -----------------------------------------------------------------------------

// One row per quota, as the query orders them: by tenant, its own limits before its
// projects'. Usage against a limit is its text and a bar (the bar only shows the text).
function renderQuotas(quotas) {
  $("quotas-empty").hidden = quotas.length > 0;
  $("table-quotas").hidden = quotas.length === 0;
  $("table-quotas").tBodies[0].replaceChildren(...quotas.map((q) => {
    const tr = document.createElement("tr");
    tr.dataset.tenant = q.tenant;
    tr.dataset.project = q.project ?? "";
    tr.dataset.model = q.gpuModel ?? "";
    const who = document.createElement("td");
    if (q.project == null) {
      who.textContent = q.tenant;
    } else {
      tr.className = "project";
      const tenant = document.createElement("span");
      tenant.className = "muted";
      tenant.textContent = `${q.tenant} / `;
      who.append(tenant, q.project);
    }
    const model = document.createElement("td");
    model.textContent = q.gpuModel ?? "every model";
    if (q.gpuModel == null) model.className = "muted";
    const borrowed = document.createElement("td");
    borrowed.className = "num";
    borrowed.textContent = number.format(q.borrowedGpus);
    tr.append(who, model, usage(q.usedGpus, q.gpus), usage(q.usedNodes, q.nodes), borrowed);
    return tr;
  }));
}

function usage(used, limit) {
  const td = document.createElement("td");
  td.className = "num usage";
  const text = document.createElement("div");
  text.className = "amount";
  if (limit == null) {
    text.textContent = `${number.format(used)}, no limit`;
    td.append(text);
    return td;
  }
  text.textContent = `${number.format(used)} of ${number.format(limit)}`;
  const bar = document.createElement("div");
  bar.className = "meter";
  bar.setAttribute("aria-hidden", "true");
  const fill = document.createElement("div");
  fill.style.width = `${limit > 0 ? Math.min(100, (used / limit) * 100) : 100}%`;
  bar.append(fill);
  // at the limit: new claims fail; above it (a limit lowered below usage): until usage falls
  td.classList.toggle("full", used >= limit);
  td.classList.toggle("over", used > limit);
  if (used > limit) td.title = "above the limit (lowered below usage): new claims fail until usage falls";
  else if (used >= limit) td.title = "at the limit: new claims fail";
  td.append(text, bar);
  return td;
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
  for (const id of CHARTS) resized.observe($(id));
  offerIssuers();
  start();
});
