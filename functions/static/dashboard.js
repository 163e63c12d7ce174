"use strict";
// The order-engine dashboard. A client of the public HTTP and WebSocket APIs and
// nothing else, so the same page works against AWS and against `order-engine up`.

const CONFIG = JSON.parse(document.getElementById("config").textContent);
const TOKENS = new Map(CONFIG.tokens.map((t) => [t.symbol, t]));
const FLOW = CONFIG.happyPath;
const TERMINAL = new Set(CONFIG.terminal);
const CANCELLABLE = new Set(CONFIG.cancellable);
const KEY_STORE = "order-engine.apiKey";
const ORDERS_STORE = "order-engine.orders";
const REMEMBERED = 50;
const FIELDS = ["tokenIn", "tokenOut", "amount", "slippageBps", "limitPrice", "expiresAt"];
// How often a watching order asks for its pair's best price (the watch ticks every 2 s).
const WATCH_POLL_MS = 2000;

// API paths resolve against the page's own address, so a stage prefix (/v1/ on AWS) stays.
const BASE = new URL(location.pathname.replace(/\/?$/, "/"), location.origin);

const $ = (selector, root = document) => root.querySelector(selector);
const form = $("#order-form");
const keyInput = $("#api-key");
const list = $("#orders");
const orders = new Map(); // order id -> state, see track()

// --- the API --------------------------------------------------------------------------

function apiKey() {
  return keyInput.value.trim();
}

async function call(method, path, body, headers = {}) {
  const all = { Accept: "application/json", ...headers };
  if (apiKey()) all.Authorization = `Bearer ${apiKey()}`;
  if (body !== undefined) all["Content-Type"] = "application/json";
  const response = await fetch(new URL(path, BASE), {
    method,
    headers: all,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  try {
    data = await response.json();
  } catch {
    // a gateway's non-JSON answer: the status says enough
  }
  return { status: response.status, data };
}

function uuid() {
  if (crypto.randomUUID) return crypto.randomUUID();
  // randomUUID needs a secure context; plain http on a LAN address is not one.
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

async function place(order) {
  // One key per submission. A network error is retried once with the same key: if the
  // first request did reach the server, the answer is that order again, never a second.
  const headers = { "Idempotency-Key": uuid() };
  try {
    return await call("POST", "api/orders/execute", order, headers);
  } catch {
    return await call("POST", "api/orders/execute", order, headers);
  }
}

// --- the form -------------------------------------------------------------------------

function fillForm() {
  for (const select of [form.tokenIn, form.tokenOut]) {
    for (const token of TOKENS.keys()) select.add(new Option(token, token));
  }
  form.tokenIn.value = "SOL";
  form.tokenOut.value = "USDC";
  form.slippageBps.value = CONFIG.slippageBps.default;
  const { min, max } = CONFIG.slippageBps;
  $("#slippage-hint").textContent = `bps, ${min}–${max} (100 = 1 %)`;
  $("#expiry-hint").textContent = `minutes, at most ${CONFIG.limit.maxWaitMinutes}`;
  updateHints();
}

function updateHints() {
  const token = TOKENS.get(form.tokenIn.value);
  $("#amount-hint").textContent = `${token.symbol}, up to ${token.decimals} decimals`;
  $("#limit-hint").textContent = `least ${form.tokenOut.value} per ${form.tokenIn.value}, after fees`;
  $("#limit-fields").hidden = form.type.value !== "limit";
}

// The API's own rules, checked here first so a typo costs no round trip. The largest
// order size is left to the API: its answer shows next to the field all the same.
function validate(values) {
  const errors = {};
  const token = TOKENS.get(values.tokenIn);
  if (values.tokenIn === values.tokenOut) errors.tokenOut = "tokenOut must differ from tokenIn";
  const amount = values.amount;
  if (amount === "") {
    errors.amount = "amount is required";
  } else if (!/^(\d+\.?\d*|\.\d+)$/.test(amount)) {
    errors.amount = /^-\s*(\d|\.\d)/.test(amount)
      ? "amount must be greater than zero"
      : `amount ${JSON.stringify(amount)} is not a number`;
  } else if (!/[1-9]/.test(amount)) {
    errors.amount = "amount must be greater than zero";
  } else {
    const decimals = (amount.split(".")[1] || "").replace(/0+$/, "").length;
    if (decimals > token.decimals) {
      errors.amount = `amount has more than ${token.decimals} decimals, the precision of ${token.symbol}`;
    }
  }
  const { min, max } = CONFIG.slippageBps;
  const slippage = values.slippageBps;
  if (slippage !== "" && (!/^\d+$/.test(slippage) || +slippage < min || +slippage > max)) {
    errors.slippageBps = `slippageBps must be between ${min} and ${max}`;
  }
  if (values.type === "limit") {
    const price = values.limitPrice;
    if (price === "") errors.limitPrice = "limitPrice is required";
    else if (!/^\d+(\.\d+)?$/.test(price)) errors.limitPrice = `limitPrice ${JSON.stringify(price)} is not a number`;
    else if (!/[1-9]/.test(price)) errors.limitPrice = "limitPrice must be greater than zero";
    const minutes = values.expiresIn;
    if (!/^\d+$/.test(minutes) || +minutes < 1 || +minutes > CONFIG.limit.maxWaitMinutes) {
      errors.expiresAt = `expiry must be 1 to ${CONFIG.limit.maxWaitMinutes} minutes`;
    }
  }
  return errors;
}

function showError(field, message) {
  const known = field === "apiKey" || FIELDS.includes(field);
  const slot = $(`.field-error[data-for="${known ? field : ""}"]`);
  slot.textContent = message;
  const input = known ? document.getElementsByName(field)[0] || keyInput : null;
  if (input) input.setAttribute("aria-invalid", "true");
}

function clearErrors() {
  document.querySelectorAll(".field-error").forEach((slot) => (slot.textContent = ""));
  document.querySelectorAll("[aria-invalid]").forEach((el) => el.removeAttribute("aria-invalid"));
}

// Puts an API error where it belongs: 422 names the field; 401/403 is the key's fault.
function showApiError(status, data) {
  const error = (data && data.error) || {};
  let field = error.field || "";
  if (status === 401 || status === 403 || /^(authorization|api-?key)$/i.test(field)) {
    field = "apiKey";
  }
  const message = error.message || (data && (data.message || data.Message)) || `HTTP ${status}`;
  showError(field, message);
}

async function submit(count) {
  clearErrors();
  const values = {
    tokenIn: form.tokenIn.value,
    tokenOut: form.tokenOut.value,
    amount: form.amount.value.trim(),
    slippageBps: form.slippageBps.value.trim(),
    type: form.type.value,
    limitPrice: form.limitPrice.value.trim(),
    expiresIn: form.expiresIn.value.trim(),
  };
  const errors = validate(values);
  if (Object.keys(errors).length) {
    for (const [field, message] of Object.entries(errors)) showError(field, message);
    return;
  }
  const order = { type: "market", tokenIn: values.tokenIn, tokenOut: values.tokenOut, amount: values.amount };
  if (values.slippageBps !== "") order.slippageBps = Number(values.slippageBps);
  if (values.type === "limit") {
    order.type = "limit";
    order.limitPrice = values.limitPrice;
    order.expiresAt = new Date(Date.now() + Number(values.expiresIn) * 60000).toISOString();
  }

  setBusy(true);
  try {
    const answers = await Promise.all(Array.from({ length: count }, () => place(order)));
    const failed = answers.find((a) => a.status !== 202);
    if (failed) showApiError(failed.status, failed.data);
    // The list is newest first; of the five, the first placed stays on top.
    for (const answer of answers.filter((a) => a.status === 202).reverse()) {
      const state = track(answer.data.orderId, answer.data.wsUrl, true);
      state.order = state.order || { ...order, slippageBps: order.slippageBps ?? CONFIG.slippageBps.default };
      render(state);
      follow(state);
    }
  } catch (error) {
    showError("", `The API did not answer (${error.message}).`);
  } finally {
    setBusy(false);
  }
}

function setBusy(busy) {
  for (const button of form.querySelectorAll("button")) button.disabled = busy;
  form.setAttribute("aria-busy", String(busy));
}

// --- remembered orders ----------------------------------------------------------------

function remembered() {
  try {
    const saved = JSON.parse(localStorage.getItem(ORDERS_STORE) || "[]");
    return Array.isArray(saved) ? saved.filter((o) => o && typeof o.id === "string") : [];
  } catch {
    return [];
  }
}

// In the order shown, newest first, so a reload shows the same list.
function remember() {
  const shown = [...list.children].map((row) => orders.get(row.dataset.orderId)).filter(Boolean);
  const saved = shown.map((s) => ({ id: s.id, wsUrl: s.wsUrl }));
  localStorage.setItem(ORDERS_STORE, JSON.stringify(saved.slice(0, REMEMBERED)));
}

// The key's most recent orders, from the API: what another browser placed shows here
// too. Once per key; rows already shown are kept as they are.
let listedFor = null;
async function loadList() {
  const key = apiKey();
  if (!key || listedFor === key) return;
  listedFor = key;
  let answer;
  try {
    answer = await call("GET", `api/orders?limit=${REMEMBERED}`);
  } catch {
    listedFor = null; // offline: try again when the key or the network comes back
    return;
  }
  if (answer.status !== 200 || !answer.data || !Array.isArray(answer.data.orders)) {
    listedFor = null;
    return;
  }
  // Any order's WebSocket URL serves every order (follow() subscribes by message);
  // without one the rows poll the HTTP API.
  const wsUrl = [...orders.values()].map((s) => s.wsUrl).find(Boolean) || null;
  for (const order of answer.data.orders) {
    if (orders.has(order.id)) continue;
    const state = track(order.id, wsUrl, false);
    state.order = order;
    render(state);
    resync(state).then(() => follow(state));
  }
}

async function cancel(state) {
  const button = $(".cancel", state.row);
  button.disabled = true;
  let answer;
  try {
    answer = await call("DELETE", `api/orders/${encodeURIComponent(state.id)}`);
  } catch {
    answer = { status: 0, data: null };
  }
  const error = $(".row-error", state.row);
  error.hidden = answer.status === 200;
  if (answer.status !== 200) {
    error.textContent = answer.data?.error?.message || "could not cancel: the API did not answer";
  }
  button.disabled = false;
  await resync(state); // the cancelled event (or where the order got to), in seq order
}

// --- following orders -----------------------------------------------------------------

function track(id, wsUrl, isNew) {
  let state = orders.get(id);
  if (!state) {
    state = { id, wsUrl, order: null, events: [], seq: 0, socket: null, retries: 0, row: newRow(id), timer: 0 };
    orders.set(id, state);
    if (isNew) list.prepend(state.row);
    else list.append(state.row);
    remember();
    updateCount();
  } else if (wsUrl && !state.wsUrl) {
    // The key's list can answer after the order is written and before the POST does:
    // its row knew no WebSocket URL, and the POST's answer brings one.
    state.wsUrl = wsUrl;
    remember();
  }
  return state;
}

function forget(state) {
  clearTimeout(state.timer);
  if (state.socket) state.socket.close(1000);
  state.forgotten = true;
  orders.delete(state.id);
  state.row.remove();
  remember();
  updateCount();
}

function status(state) {
  return state.events.length ? state.events[state.events.length - 1].status : FLOW[0];
}

// Applies events in seq order, each exactly once: a seq already seen is a duplicate
// (a snapshot after a reconnect repeats what we have) and is dropped. A gap means an
// event was lost, so start over from a fresh snapshot rather than show a hole.
function accept(state, events) {
  for (const event of events) {
    if (event.seq <= state.seq) continue;
    if (event.seq !== state.seq + 1) {
      if (state.socket) state.socket.close(4000, "gap");
      break;
    }
    state.seq = event.seq;
    state.events.push(event);
    noteClock(event);
    render(state);
  }
  if (TERMINAL.has(status(state)) && state.socket) state.socket.close(1000);
}

function follow(state) {
  if (state.socket || state.forgotten || state.stalled || TERMINAL.has(status(state))) return;
  if (!state.wsUrl) {
    poll(state); // this deployment has no WebSocket URL configured
    return;
  }
  // Subscribing by message answers with the snapshot at once; a ?orderId= in the URL
  // would subscribe only after the handshake. Browsers cannot set headers on a
  // WebSocket, so the key travels in the query string.
  const url = new URL(state.wsUrl);
  url.search = "";
  if (apiKey()) url.searchParams.set("apiKey", apiKey());
  const socket = new WebSocket(url);
  state.socket = socket;
  let opened = false;
  socket.onopen = () => {
    opened = true;
    state.retries = 0;
    socket.send(JSON.stringify({ action: "subscribe", orderId: state.id }));
    render(state);
  };
  socket.onmessage = (message) => {
    let data;
    try {
      data = JSON.parse(message.data);
    } catch {
      return;
    }
    if (data.type === "snapshot") {
      if (data.order) state.order = data.order;
      accept(state, data.events || []);
    } else if (data.type === "event" && data.orderId === state.id) {
      accept(state, [data]);
    } else if (data.type === "error") {
      if (data.error && data.error.code === "not_found") forget(state);
    }
  };
  socket.onclose = () => {
    state.socket = null;
    render(state);
    if (state.forgotten || TERMINAL.has(status(state))) return;
    const delay = Math.min(10000, 250 * 2 ** state.retries++) * (0.75 + Math.random() / 2);
    state.timer = setTimeout(async () => {
      // Refused before it opened (an unknown order, a rejected key, no network): ask the
      // HTTP API why first. After a drop, resubscribe; the snapshot fills the gap.
      if (!opened) await resync(state);
      follow(state);
    }, delay);
  };
}

// The order as the HTTP API has it: rebuilds a row after a reload, and explains a
// refused socket. Events go through accept(), so nothing shows twice.
async function resync(state) {
  let answer;
  try {
    answer = await call("GET", `api/orders/${encodeURIComponent(state.id)}`);
  } catch {
    return; // offline: the socket's retries go on
  }
  if (answer.status === 200) {
    state.order = answer.data;
    state.stalled = false;
    accept(state, answer.data.events || []);
    render(state);
  } else if (answer.status === 404) {
    forget(state); // placed against another database
  } else if (answer.status === 401 || answer.status === 403) {
    state.stalled = true; // until the key changes
    showApiError(answer.status, answer.data);
    render(state);
  }
}

function poll(state) {
  if (state.wsUrl) return follow(state); // a URL arrived since: go live
  resync(state).then(() => {
    if (!state.forgotten && !state.stalled && !TERMINAL.has(status(state))) {
      state.timer = setTimeout(() => poll(state), 1000);
    }
  });
}

function resume() {
  for (const state of orders.values()) {
    state.stalled = false;
    if (!state.socket) {
      clearTimeout(state.timer);
      state.retries = 0;
      follow(state);
    }
  }
}

// --- drawing --------------------------------------------------------------------------

// Server timestamps give exact times between states; only the state still running is
// timed against this browser's clock, corrected when the server's is seen to run ahead.
let clockOffset = 0;
function noteClock(event) {
  clockOffset = Math.min(clockOffset, Date.now() - Date.parse(event.at));
}

// Prices to six significant digits; amounts exactly, every digit the API sent.
const number = new Intl.NumberFormat(undefined, { maximumSignificantDigits: 6 });
const exact = new Intl.NumberFormat(undefined, { maximumFractionDigits: 20 });
const clock = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });

function duration(ms) {
  ms = Math.max(0, ms);
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 10000) return `${(ms / 1000).toFixed(2)} s`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  const s = Math.floor(ms / 1000);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")} min`;
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function newRow(id) {
  const row = $("#order-template").content.firstElementChild.cloneNode(true);
  row.dataset.orderId = id;
  const code = $(".id", row);
  code.textContent = id;
  code.title = id;
  return row;
}

function render(state) {
  const row = state.row;
  const now = status(state);
  const order = state.order || {};
  row.dataset.status = now;
  const badge = $(".badge", row);
  badge.textContent = now;
  badge.dataset.status = now;

  $(".amount", row).textContent = order.amount ?? "";
  $(".tok.in", row).textContent = order.tokenIn ?? "";
  $(".tok.out", row).textContent = order.tokenOut ?? "";
  $(".created", row).textContent = state.events.length ? clock.format(new Date(state.events[0].at)) : "";
  $(".slip", row).textContent =
    (order.slippageBps ? `slippage ≤ ${order.slippageBps / 100} %` : "") +
    (order.limitPrice ? ` · limit ≥ ${order.limitPrice}` : "");
  const link = $(".link-state", row);
  const live = !TERMINAL.has(now);
  link.textContent = !live ? "" : state.stalled ? "API key rejected" : state.socket?.readyState === 1 ? "live" : "connecting…";
  link.dataset.state = !live ? "" : state.socket?.readyState === 1 ? "live" : "waiting";

  $(".cancel", row).hidden = !CANCELLABLE.has(now);

  renderSteps(state);
  renderRoute(state);
  renderWatch(state);
  renderResult(state);
  updateCount();
}

// A watching order shows its pair's best net price (the watch's latest quote) against
// its limit, asked of the HTTP API while it waits.
function renderWatch(state) {
  const box = $(".watch", state.row);
  const watching = status(state) === CONFIG.watching;
  box.hidden = !watching;
  if (!watching) {
    clearTimeout(state.watchTimer);
    state.watchTimer = null;
    return;
  }
  const order = state.order || {};
  const best = state.bestPrice;
  box.textContent = best
    ? `best ${number.format(best.price)} ${order.tokenOut} (${best.venue}) vs limit ${order.limitPrice}`
    : `waiting for the price watch · limit ${order.limitPrice ?? ""}`;
  box.dataset.met = best && Number(best.price) >= Number(order.limitPrice) ? "yes" : "no";
  if (!state.watchTimer) state.watchTimer = setTimeout(() => watchPrice(state), best ? WATCH_POLL_MS : 300);
}

async function watchPrice(state) {
  try {
    const answer = await call("GET", `api/orders/${encodeURIComponent(state.id)}`);
    if (answer.status === 200) {
      state.order = answer.data;
      state.bestPrice = answer.data.bestPrice;
      accept(state, answer.data.events || []);
    }
  } catch {
    // offline: the next poll tries again
  }
  state.watchTimer = null;
  if (!state.forgotten) render(state);
}

function renderSteps(state) {
  const steps = $(".steps", state.row);
  const reached = state.events.map((e) => e.status);
  // A limit order waits in "watching" between the first status and the second.
  const flow = state.order?.type === "limit" ? [FLOW[0], CONFIG.watching, ...FLOW.slice(1)] : FLOW;
  const todo = TERMINAL.has(status(state)) ? [] : flow.slice(reached.length ? flow.indexOf(reached[reached.length - 1]) + 1 : 0);
  steps.replaceChildren();
  state.events.forEach((event, i) => {
    const li = el("li", "step reached");
    li.dataset.step = event.status;
    const next = state.events[i + 1];
    const last = !next;
    if (last && !TERMINAL.has(event.status)) li.classList.add("current");
    li.append(el("span", "dot"), el("span", "name", event.status));
    const dur = el("span", "dur");
    if (next) dur.textContent = duration(Date.parse(next.at) - Date.parse(event.at));
    else if (TERMINAL.has(event.status)) {
      dur.append(el("span", "total", "total "), duration(Date.parse(event.at) - Date.parse(state.events[0].at)));
    }
    else dur.dataset.since = event.at; // ticking, see tick()
    li.append(dur);
    steps.append(li);
  });
  for (const name of todo) {
    const li = el("li", "step todo");
    li.dataset.step = name;
    li.append(el("span", "dot"), el("span", "name", name), el("span", "dur"));
    steps.append(li);
  }
  tick();
}

function renderRoute(state) {
  const routing = state.events.find((e) => e.status === "routing");
  const box = $(".route", state.row);
  if (!routing || !routing.data) {
    box.hidden = true;
    return;
  }
  box.hidden = false;
  const data = routing.data;
  const out = (state.order && state.order.tokenOut) || data.tokenOut || "";
  $(".quotes th.out", state.row).textContent = `You get (${out})`;
  const body = $(".quotes tbody", state.row);
  body.replaceChildren();
  for (const outcome of data.quotes || []) {
    const tr = el("tr", "quote");
    tr.dataset.venue = outcome.venue;
    const venue = el("th", "venue", outcome.venue);
    venue.scope = "row";
    tr.append(venue);
    if (outcome.venue === data.venue) {
      tr.classList.add("chosen");
      venue.append(el("span", "chosen-mark", "chosen"));
    }
    if (outcome.quote) {
      const q = outcome.quote;
      tr.append(
        el("td", "num", exact.format(q.amountOut)),
        el("td", "num", number.format(q.price)),
        el("td", "num fee", `${(q.feeBps / 100).toFixed(2)} %`),
      );
    } else {
      tr.classList.add("failed");
      const td = el("td", "quote-error", outcome.error || "no quote");
      td.colSpan = 3;
      tr.append(td);
    }
    body.append(tr);
  }
  $(".reason", state.row).textContent = data.reason || "";
}

function renderResult(state) {
  const box = $(".result", state.row);
  const last = state.events[state.events.length - 1];
  box.replaceChildren();
  box.hidden = !last || !TERMINAL.has(last.status);
  if (box.hidden) return;
  const data = last.data || {};
  box.dataset.status = last.status;
  if (last.status !== "confirmed") {
    // failed, expired or cancelled: the reason is what there is to show
    box.append(el("p", "failure", data.reason || state.order?.failureReason || last.status));
    const attempts = data.attempts ?? state.order?.attempts;
    if (attempts !== undefined) box.append(el("p", "attempts", `after ${attempts} attempt${attempts === 1 ? "" : "s"}`));
    return;
  }
  const out = state.order?.tokenOut ?? "";
  const facts = el("dl", "facts");
  const fact = (label, value, className = "") => {
    const div = el("div", className);
    div.append(el("dt", "", label), value instanceof Node ? value : el("dd", "", value));
    facts.append(div);
    return div;
  };
  fact("Received", `${exact.format(data.amountOut ?? state.order?.amountOut)} ${out}`, "received");
  const executed = el("dd", "executed", number.format(data.executedPrice));
  const quoted = Number(data.quotedPrice);
  if (quoted > 0) {
    // More output per unit of input than quoted is good for the user.
    const bps = ((Number(data.executedPrice) - quoted) / quoted) * 10000;
    const delta = el("span", `delta ${bps >= 0 ? "better" : "worse"}`, `${bps >= 0 ? "+" : "−"}${(Math.abs(bps) / 100).toFixed(2)} %`);
    delta.title = "executed price against the quoted price";
    executed.append(delta);
  }
  fact("Executed price", executed);
  fact("Quoted price", number.format(data.quotedPrice), "quoted");
  const sig = el("code", "signature", data.txSignature || "");
  sig.title = data.txSignature || "";
  const dd = el("dd");
  dd.append(sig);
  fact("Signature", dd, "sig");
  box.append(facts);
}

// Advances the running state's clock between events.
function tick() {
  for (const dur of list.querySelectorAll(".dur[data-since]")) {
    dur.textContent = duration(Date.now() - clockOffset - Date.parse(dur.dataset.since));
  }
}

function updateCount() {
  const all = [...orders.values()];
  const running = all.filter((s) => !TERMINAL.has(status(s))).length;
  $("#order-count").textContent = all.length ? `${all.length} total${running ? ` · ${running} running` : ""}` : "";
  $("#empty").hidden = all.length > 0;
  $("#clear").hidden = running === all.length;
}

// --- wiring ---------------------------------------------------------------------------

fillForm();
keyInput.value = localStorage.getItem(KEY_STORE) || "";
keyInput.addEventListener("input", () => localStorage.setItem(KEY_STORE, apiKey()));
keyInput.addEventListener("change", () => {
  clearErrors();
  resume();
  loadList();
});
list.addEventListener("click", (event) => {
  const button = event.target.closest("button.cancel");
  const state = button && orders.get(button.closest("li.order").dataset.orderId);
  if (state) cancel(state);
});
$("#key-form").addEventListener("submit", (event) => event.preventDefault());
form.addEventListener("submit", (event) => {
  event.preventDefault();
  submit(1);
});
$("#place-five").addEventListener("click", () => submit(5));
$("#swap").addEventListener("click", () => {
  [form.tokenIn.value, form.tokenOut.value] = [form.tokenOut.value, form.tokenIn.value];
  updateHints();
});
form.tokenIn.addEventListener("change", updateHints);
form.tokenOut.addEventListener("change", updateHints);
form.type.addEventListener("change", updateHints);
$("#clear").addEventListener("click", () => {
  for (const state of [...orders.values()]) if (TERMINAL.has(status(state))) forget(state);
});
window.addEventListener("online", resume);
setInterval(tick, 200);

// After a reload: the remembered orders, rebuilt from the HTTP API, and followed live
// again if still running (the socket's snapshot fills in anything since).
for (const saved of remembered()) {
  const state = track(saved.id, saved.wsUrl, false);
  render(state);
  resync(state).then(() => follow(state));
}
loadList();

// --- live metrics panel ---------------------------------------------------------------
// The local runtime serves what the functions print as CloudWatch EMF at METRICS_PATH,
// as Prometheus text. On AWS that path is API Gateway's 403 (or a 404): the panel stays
// hidden and polling stops.

const METRICS_PATH = "/@local/metrics";
const METRICS_EVERY_MS = 2000;
const FINISHED_METRICS = ["OrderEngine_OrdersConfirmed_total", "OrderEngine_OrdersFailed_total"];
const STEP_METRIC = "OrderEngine_StepDuration_milliseconds";
const finishedSamples = []; // [time ms, orders finished so far], the last minute of polls

function parseMetricLines(text) {
  const samples = [];
  for (const line of text.split("\n")) {
    const match = /^([A-Za-z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)$/.exec(line);
    if (!match) continue;
    const labels = {};
    for (const [, key, value] of (match[2] || "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) {
      labels[key] = value.replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
    }
    samples.push({ name: match[1], labels, value: Number(match[3]) });
  }
  return samples;
}

function ordersInLastMinute(samples) {
  const finished = samples
    .filter((s) => FINISHED_METRICS.includes(s.name))
    .reduce((sum, s) => sum + s.value, 0);
  const now = Date.now();
  finishedSamples.push([now, finished]);
  // Keep the newest sample at least a minute old as the baseline, nothing older.
  while (finishedSamples.length > 1 && finishedSamples[1][0] <= now - 60_000) finishedSamples.shift();
  return finished - finishedSamples[0][1];
}

function renderStepTimes(samples) {
  const steps = new Map();
  for (const s of samples) {
    if (!s.name.startsWith(STEP_METRIC) || !s.labels.step) continue;
    const row = steps.get(s.labels.step) || {};
    if (s.name === STEP_METRIC && s.labels.quantile === "0.5") row.p50 = s.value;
    if (s.name === STEP_METRIC && s.labels.quantile === "0.99") row.p99 = s.value;
    if (s.name === `${STEP_METRIC}_count`) row.count = s.value;
    steps.set(s.labels.step, row);
  }
  const ms = (v) => (v === undefined ? "–" : `${v < 10 ? v.toFixed(1) : Math.round(v)} ms`);
  const order = (step) => (CONFIG.steps.indexOf(step) + 1 || CONFIG.steps.length + 1);
  $("#step-times").replaceChildren(
    ...[...steps.entries()]
      .sort(([a], [b]) => order(a) - order(b) || a.localeCompare(b))
      .map(([step, row]) => {
        const tr = document.createElement("tr");
        tr.dataset.step = step;
        for (const [text, cls] of [[step, ""], [ms(row.p50), "num p50"], [ms(row.p99), "num p99"], [String(row.count ?? 0), "num count"]]) {
          const td = document.createElement("td");
          td.textContent = text;
          if (cls) td.className = cls;
          tr.append(td);
        }
        return tr;
      }),
  );
}

async function pollMetrics() {
  let response;
  try {
    response = await fetch(METRICS_PATH, { cache: "no-store" });
  } catch {
    setTimeout(pollMetrics, METRICS_EVERY_MS * 5); // the runtime restarting: try later
    return;
  }
  if (response.status === 404 || response.status === 403) return; // not served here
  if (response.ok) {
    const samples = parseMetricLines(await response.text());
    $("#orders-a-minute").textContent = String(ordersInLastMinute(samples));
    renderStepTimes(samples);
    $("#live-metrics").hidden = false;
  }
  setTimeout(pollMetrics, METRICS_EVERY_MS);
}

pollMetrics();
