// The dashboard's Requests and Allocations views (issue 17): provision requests, waiting ones
// first, and the active allocations with their state, a PREEMPTING one marked with the time
// it is released. Loaded before dashboard.js, which puts `Requests.selection` in its query
// and calls `Requests.render(data)`. Everything shown is text: request reasons, environment
// and tenant names are chosen by callers, so no markup is ever built from them.
"use strict";

const Requests = (() => {
  // Each open state asked for apart, so that a busy day's closed requests, which the list
  // would give first (newest first), never push a waiting one off the page.
  const OPEN_LIMIT = 200;
  const RECENT = 20;
  const ALLOCATIONS = 100;
  const fragments = `fragment DashboardRequest on ProvisionRequest {
  id state environment tenant project priority gpus reason requestedBy requestedAt startsAt
  queuePosition lastError lastErrorCode allocation { state preemptAt } }
fragment DashboardAllocation on Allocation {
  id environment tenant project priority preemptible state preemptAt createdAt devices { gpus } }`;
  const selection = `
  pendingRequests: provisionRequests(filter: {state: PENDING_APPROVAL, limit: ${OPEN_LIMIT}}) {
    ...DashboardRequest }
  approvedRequests: provisionRequests(filter: {state: APPROVED, limit: ${OPEN_LIMIT}}) {
    ...DashboardRequest }
  queuedRequests: provisionRequests(filter: {state: QUEUED, limit: ${OPEN_LIMIT}}) {
    ...DashboardRequest }
  recentRequests: provisionRequests(filter: {limit: ${RECENT}}) { ...DashboardRequest }
  activeAllocations: allocations(filter: {active: true}, first: ${ALLOCATIONS}) { totalCount
    edges { node { ...DashboardAllocation } } }
  # Asked for apart, so a victim older than the newest active ones still shows.
  preemptingAllocations: allocations(filter: {state: PREEMPTING}, first: ${ALLOCATIONS}) {
    edges { node { ...DashboardAllocation } } }`;

  const STATES = {
    PENDING_APPROVAL: "Pending approval",
    APPROVED: "Approved",
    QUEUED: "Queued",
    FULFILLED: "Fulfilled",
    REJECTED: "Rejected",
    CANCELLED: "Cancelled",
    EXPIRED: "Expired",
  };
  const count = new Intl.NumberFormat();
  const $ = (id) => document.getElementById(id);

  // An element with text children only: strings become text nodes, never markup.
  function el(tag, className, ...children) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    node.append(...children.filter((child) => child !== null && child !== undefined));
    return node;
  }

  function duration(seconds) {
    const s = Math.abs(seconds);
    if (s < 90) return `${Math.round(s)} s`;
    if (s < 5400) return `${Math.round(s / 60)} min`;
    if (s < 172800) return `${(s / 3600).toFixed(1)} h`;
    return `${(s / 86400).toFixed(1)} d`;
  }

  // A <time> with the instant as the API gave it (machine-readable), shown in local time.
  function when(iso, relative) {
    const time = el("time", null, new Date(iso).toLocaleString());
    time.dateTime = iso;
    if (relative) {
      const seconds = (new Date(iso) - Date.now()) / 1000;
      time.append(` (${seconds >= 0 ? `in ${duration(seconds)}` : `${duration(seconds)} ago`})`);
    }
    return time;
  }

  function whose(item) {
    if (!item.tenant) return el("td", "muted", "(platform)");
    if (!item.project) return el("td", null, item.tenant);
    return el("td", null, el("span", "muted", `${item.tenant} / `), item.project);
  }

  function badge(state, text) {
    const mark = el("span", `state state-${state.toLowerCase()}`, text);
    mark.dataset.state = state;
    return mark;
  }

  // Pending approval first (oldest first: it has waited longest for a person), then the
  // waiting ones in queue order, then the rest, newest first.
  function ordered(data) {
    const pending = [...data.pendingRequests].sort((a, b) => a.requestedAt.localeCompare(b.requestedAt));
    const waiting = [...data.queuedRequests, ...data.approvedRequests].sort(
      (a, b) => (a.queuePosition ?? Infinity) - (b.queuePosition ?? Infinity)
        || a.requestedAt.localeCompare(b.requestedAt),
    );
    const open = new Set([...pending, ...waiting].map((r) => r.id));
    return [...pending, ...waiting, ...data.recentRequests.filter((r) => !open.has(r.id))];
  }

  function stateCell(r) {
    const td = el("td", null, badge(r.state, STATES[r.state] ?? r.state));
    if (r.state === "APPROVED" && r.startsAt && new Date(r.startsAt) > Date.now()) {
      td.append(el("div", "muted", "starts ", when(r.startsAt, true)));
    }
    const held = r.allocation;
    if (held && held.state !== "ACTIVE") {
      const note = el("div", held.state === "PREEMPTING" ? "preempting" : "muted",
        `allocation ${held.state.toLowerCase()}`);
      if (held.preemptAt) note.append(" at ", when(held.preemptAt, true));
      td.append(note);
    }
    return td;
  }

  function requestRow(r) {
    const tr = document.createElement("tr");
    tr.dataset.id = r.id;
    tr.dataset.state = r.state;
    const reason = el("td", "reason", r.reason);
    reason.title = r.reason;  // the cell is clamped; the title has it whole (an attribute: text)
    const error = el("td", "last-error");
    if (r.lastErrorCode) error.append(el("div", "code", r.lastErrorCode));
    if (r.lastError) {
      const message = el("div", "muted", r.lastError);
      message.title = r.lastError;  // clamped to a line, as the reason is
      error.append(message);
    }
    const age = el("td", "num", duration((Date.now() - new Date(r.requestedAt)) / 1000));
    age.title = new Date(r.requestedAt).toLocaleString();
    tr.append(
      stateCell(r), whose(r), el("td", "environment", r.environment), reason,
      el("td", "num", count.format(r.priority)), el("td", "num", count.format(r.gpus)),
      el("td", null, r.requestedBy), age,
      el("td", "num", r.queuePosition == null ? "–" : count.format(r.queuePosition)), error,
    );
    return tr;
  }

  function renderRequests(data) {
    const shown = ordered(data);
    const summary = [
      [data.pendingRequests.length, "pending approval"],
      [data.queuedRequests.length, "queued"],
      [data.approvedRequests.length, "approved, not yet tried"],
    ].filter(([n]) => n > 0).map(([n, what]) => `${count.format(n)} ${what}`);
    $("requests-summary").textContent = summary.length ? summary.join(" · ") : "None waiting.";
    $("requests-summary").hidden = shown.length === 0;  // the empty text says it all
    $("requests-empty").hidden = shown.length > 0;
    $("table-requests").hidden = shown.length === 0;
    $("table-requests").tBodies[0].replaceChildren(...shown.map(requestRow));
  }

  function allocationRow(a) {
    const tr = document.createElement("tr");
    tr.dataset.environment = a.environment;
    tr.dataset.tenant = a.tenant ?? "";
    tr.dataset.state = a.state;
    const state = el("td", null, badge(a.state, a.state === "PREEMPTING" ? "Preempting" : "Active"));
    if (a.state === "PREEMPTING") {
      tr.className = "preempting";
      state.append(el("div", "preempting", "released at ", when(a.preemptAt, true)));
    } else if (a.preemptible) {
      state.append(el("div", "muted", "preemptible"));
    }
    const gpus = a.devices.reduce((sum, d) => sum + d.gpus, 0);
    tr.append(
      el("td", "environment", a.environment), whose(a), state,
      el("td", "num", count.format(a.devices.length)), el("td", "num", count.format(gpus)),
      el("td", "num", count.format(a.priority)), el("td", null, when(a.createdAt, false)),
    );
    return tr;
  }

  // Being preempted first, the soonest released first; the rest as listed, newest first.
  function renderAllocations(connection, preemptingConnection) {
    const all = connection.edges.map(({ node }) => node);
    const preempting = preemptingConnection.edges.map(({ node }) => node)
      .sort((a, b) => a.preemptAt.localeCompare(b.preemptAt));
    const marked = new Set(preempting.map((a) => a.id));
    const shown = [...preempting, ...all.filter((a) => !marked.has(a.id))];
    const notice = $("preempting-notice");
    notice.hidden = preempting.length === 0;
    notice.replaceChildren();
    if (preempting.length) {
      const one = preempting.length === 1;
      notice.append(
        `${count.format(preempting.length)} allocation${one ? " is" : "s are"} being preempted `
        + "for a request of higher priority; the first is released at ",
        when(preempting[0].preemptAt, true), ".",
      );
    }
    const more = $("allocations-more");
    more.hidden = connection.totalCount <= all.length;
    more.textContent = `The newest ${count.format(all.length)} of ${count.format(connection.totalCount)} active allocations.`;
    $("allocations-empty").hidden = all.length > 0;
    $("table-allocations").hidden = all.length === 0;
    $("table-allocations").tBodies[0].replaceChildren(...shown.map(allocationRow));
  }

  function render(data) {
    renderRequests(data);
    renderAllocations(data.activeAllocations, data.preemptingAllocations);
  }

  return { selection, fragments, render };
})();
