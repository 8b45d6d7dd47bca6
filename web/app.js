// Shivneri's web console: plain modern JavaScript, no framework and no
// build step, served from the binary with a Content-Security-Policy that
// allows only this file.  Four views behind the URL's hash: the providers'
// board (#/), the compose form (#/compose), the queue (#/queue) and one
// message (#/message/ID).  Data comes from /v1 with the API key, which is
// asked for once when /v1 answers 401 and kept in sessionStorage only
// (never localStorage, never a URL).  Live updates come from GET /v1/events
// read with fetch() (EventSource cannot send the key) and parsed here;
// the stream reconnects with Last-Event-ID and refetches on `reset`.
// Everything the API returns reaches the DOM as text (textContent), never
// as HTML.

const KEY_STORE = "shivneri.api_key";
const SPARK_BUCKET_MS = 10000; // one bar of a sparkline
const SPARK_BUCKETS = 30; // five minutes
const RETRY_MIN_MS = 500;
const RETRY_MAX_MS = 10000;
const PAGE_SIZE = 25;

// --- small DOM helpers ---------------------------------------------------

// el("div", {class: "x", onclick: fn}, child, "text") -> element.  Strings
// become text nodes, so API text can never become markup.
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "text") e.textContent = String(v);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function $(id) {
  return document.getElementById(id);
}

function fmtTime(s) {
  if (!s) return "-";
  const d = new Date(s);
  return isNaN(d) ? String(s) : d.toLocaleString();
}

// A size in bytes as people read it, as `shivneri providers` writes it
// (src/cli/providers.c, human_bytes): whole MiB or KiB when exact (the
// server's default limit is 25 MiB), whole MB or kB when exact (providers
// document theirs so), else MB or kB with one decimal, rounded down so a
// limit is never overstated.  Anything but a number is shown as it is.
function fmtBytes(b) {
  if (b === null || b === undefined) return "-";
  if (typeof b !== "number" || !Number.isInteger(b) || b < 0) return String(b);
  const KiB = 1024;
  const MiB = 1024 * 1024;
  const dec = (n, unit) => Math.floor(b / n) + "." + Math.floor((b % n) / (n / 10)) + " " + unit;
  if (b >= MiB && b % MiB === 0) return b / MiB + " MiB";
  if (b >= 1e6 && b % 1e6 === 0) return b / 1e6 + " MB";
  if (b >= 1e6) return dec(1e6, "MB");
  if (b >= KiB && b % KiB === 0) return b / KiB + " KiB";
  if (b >= 1000 && b % 1000 === 0) return b / 1000 + " kB";
  if (b >= 1000) return dec(1000, "kB");
  return b + " B";
}

// "HH:MM" of an RFC 3339 time, in the browser's time zone.
function fmtClock(s) {
  const d = new Date(s);
  if (isNaN(d)) return String(s);
  const two = (n) => String(n).padStart(2, "0");
  return two(d.getHours()) + ":" + two(d.getMinutes());
}

// GET /v1/providers' link_tls: true, false, or null while no agent is
// linked.
function fmtLink(tls) {
  if (tls === true) return "TLS";
  if (tls === false) return "plain (no TLS)";
  if (tls === null || tls === undefined) return "no agent linked";
  return String(tls);
}

function fmtAgo(ms) {
  if (ms === null || ms === undefined) return "never";
  if (ms < 1000) return ms + " ms ago";
  if (ms < 120000) return (ms / 1000).toFixed(1) + " s ago";
  return Math.round(ms / 60000) + " min ago";
}

function showBanner(text) {
  const b = $("banner");
  b.textContent = text;
  b.hidden = !text;
}

// --- the API key and /v1 -------------------------------------------------

let keyWaiters = null; // resolvers waiting for the key form

function apiKey() {
  return sessionStorage.getItem(KEY_STORE);
}

// Shows the key form once, however many requests are waiting for it.
function askKey(wrong) {
  if (keyWaiters === null) {
    keyWaiters = [];
    $("key-overlay").hidden = false;
    const err = $("key-error");
    err.hidden = !wrong;
    err.textContent = wrong ? "The server refused this key." : "";
    $("key-input").value = "";
    $("key-input").focus();
  }
  return new Promise((resolve) => keyWaiters.push(resolve));
}

function keySubmitted(ev) {
  ev.preventDefault();
  const k = $("key-input").value.trim();
  if (!k) return;
  sessionStorage.setItem(KEY_STORE, k);
  $("key-overlay").hidden = true;
  $("forget-key").hidden = false;
  const w = keyWaiters || [];
  keyWaiters = null;
  for (const r of w) r();
}

function authHeaders(extra) {
  const h = Object.assign({}, extra || {});
  const k = apiKey();
  if (k) h["Authorization"] = "Bearer " + k;
  return h;
}

class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code || "HTTP " + status);
    this.status = status;
    this.code = code;
  }
}

// One /v1 call: JSON in and out.  A 401 asks for the key (once for all
// callers) and tries again; other errors throw ApiError with the API's
// code and message.
async function api(method, path, body) {
  for (let tries = 0; tries < 5; tries++) {
    const opt = { method, headers: authHeaders(), cache: "no-store" };
    if (body !== undefined) {
      opt.headers["Content-Type"] = "application/json";
      opt.body = JSON.stringify(body);
    }
    let r;
    try {
      r = await fetch(path, opt);
    } catch (e) {
      throw new ApiError(0, "network", "cannot reach the server");
    }
    if (r.status === 401) {
      const had = apiKey() !== null;
      if (had) sessionStorage.removeItem(KEY_STORE);
      await askKey(had);
      continue;
    }
    let j = null;
    try {
      j = await r.json();
    } catch (e) {
      j = null;
    }
    if (!r.ok) {
      const er = (j && j.error) || {};
      throw new ApiError(r.status, er.code, er.message);
    }
    return j;
  }
  throw new ApiError(401, "unauthorized", "no accepted API key");
}

// --- the event stream ----------------------------------------------------

const listeners = new Set(); // fn(type, data) for each event
// "0" on the first connection asks for the server's whole history (after
// a reset): the sparklines start with the last minutes, not empty.
let lastEventId = "0";
let streamStarted = false;
let streamLive = false; // while false, views poll instead
const POLL_MS = 2000;

function onEvent(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

function emit(type, data) {
  for (const fn of [...listeners]) {
    try {
      fn(type, data);
    } catch (e) {
      console.error(e);
    }
  }
}

function setLive(on, text) {
  streamLive = on;
  const l = $("live");
  l.textContent = text;
  l.className = "live " + (on ? "on" : "off");
}

// The SSE wire format: fields up to a blank line make one event; lines
// starting with ':' are comments (the server's pings).
class SseParser {
  constructor(dispatch) {
    this.buf = "";
    this.reset();
    this.dispatch = dispatch;
  }
  reset() {
    this.event = "";
    this.data = [];
    this.id = null;
  }
  push(text) {
    this.buf += text;
    for (;;) {
      const m = /\r\n|\r|\n/.exec(this.buf);
      if (!m) break;
      // A lone CR at the end may be the first half of a CRLF.
      if (m[0] === "\r" && m.index === this.buf.length - 1) break;
      const line = this.buf.slice(0, m.index);
      this.buf = this.buf.slice(m.index + m[0].length);
      this.line(line);
    }
    // A line without an end in a megabyte is not SSE: drop it.
    if (this.buf.length > 1 << 20) this.buf = "";
  }
  line(line) {
    if (line === "") {
      if (this.id !== null) lastEventId = this.id;
      if (this.data.length > 0 || this.event)
        this.dispatch(this.event || "message", this.data.join("\n"));
      this.reset();
      return;
    }
    if (line.startsWith(":")) return;
    const i = line.indexOf(":");
    const name = i < 0 ? line : line.slice(0, i);
    let value = i < 0 ? "" : line.slice(i + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (name === "event") this.event = value;
    else if (name === "data") this.data.push(value);
    else if (name === "id" && !value.includes("\0")) this.id = value;
  }
}

function dispatchSse(type, data) {
  if (type === "reset") {
    emit("reset", null);
    return;
  }
  let obj = null;
  try {
    obj = JSON.parse(data);
  } catch (e) {
    return; // not ours
  }
  emit(type, obj);
}

// Reads /v1/events for as long as the page lives, reconnecting with a
// growing delay (reset by a stream that worked) and Last-Event-ID.
async function streamEvents() {
  let delay = RETRY_MIN_MS;
  for (;;) {
    try {
      const headers = authHeaders({ Accept: "text/event-stream" });
      if (lastEventId !== null) headers["Last-Event-ID"] = lastEventId;
      const r = await fetch("/v1/events", { headers, cache: "no-store" });
      if (r.status === 401) {
        setLive(false, "needs key");
        const had = apiKey() !== null;
        if (had) sessionStorage.removeItem(KEY_STORE);
        await askKey(had);
        continue;
      }
      if (!r.ok || !r.body) throw new Error("HTTP " + r.status);
      setLive(true, "live");
      delay = RETRY_MIN_MS;
      const parser = new SseParser(dispatchSse);
      const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        parser.push(value);
      }
    } catch (e) {
      // Cut, refused or not there: try again below.
    }
    setLive(false, "reconnecting");
    await new Promise((res) => setTimeout(res, delay));
    delay = Math.min(delay * 2, RETRY_MAX_MS);
  }
}

// --- throughput, from the stream -----------------------------------------

const spark = new Map(); // provider -> Map(bucket -> delivered count)

function countDelivery(type, ev) {
  if (type !== "message.delivered" || !ev || !ev.provider) return;
  const at = Date.parse(ev.at);
  const b = Math.floor((isNaN(at) ? Date.now() : at) / SPARK_BUCKET_MS);
  if (!spark.has(ev.provider)) spark.set(ev.provider, new Map());
  const m = spark.get(ev.provider);
  m.set(b, (m.get(b) || 0) + 1);
  const oldest = Math.floor(Date.now() / SPARK_BUCKET_MS) - SPARK_BUCKETS;
  for (const k of m.keys()) if (k < oldest) m.delete(k);
}

// An SVG polyline of the last SPARK_BUCKETS buckets of deliveries.
function sparkline(name) {
  const ns = "http://www.w3.org/2000/svg";
  const w = 150;
  const h = 30;
  const now = Math.floor(Date.now() / SPARK_BUCKET_MS);
  const m = spark.get(name) || new Map();
  const vals = [];
  for (let i = SPARK_BUCKETS - 1; i >= 0; i--) vals.push(m.get(now - i) || 0);
  const max = Math.max(1, ...vals);
  const pts = vals
    .map((v, i) => {
      const x = (i * w) / (SPARK_BUCKETS - 1);
      const y = h - 3 - (v * (h - 6)) / max; // inside the stroke's width
      return x.toFixed(1) + "," + y.toFixed(1);
    })
    .join(" ");
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 " + w + " " + h);
  svg.setAttribute("class", "spark");
  svg.setAttribute("preserveAspectRatio", "none"); // the card's width
  svg.setAttribute("role", "img");
  const total = vals.reduce((a, b) => a + b, 0);
  svg.setAttribute(
    "aria-label",
    total + " delivered in the last " + (SPARK_BUCKETS * SPARK_BUCKET_MS) / 60000 + " minutes",
  );
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("points", pts);
  svg.append(line);
  return svg;
}

// --- views ---------------------------------------------------------------

// Each view renders into main and returns a function that stops it.
let stopView = () => {};

function debounce(fn, ms) {
  let t = null;
  return () => {
    if (t !== null) return;
    t = setTimeout(() => {
      t = null;
      fn();
    }, ms);
  };
}

// The board: one card per provider, refreshed on provider events and
// every 2 s (for heartbeat ages).
// Keeps a view current: refresh() now, again (debounced by waitMs) on
// each event wants(type, ev) takes, and every POLL_MS while poll() says
// so.  Returns what stops all three.
function follow(refresh, waitMs, wants, poll) {
  const later = debounce(refresh, waitMs);
  const off = onEvent((type, ev) => {
    if (wants(type, ev)) later();
  });
  const timer = setInterval(() => {
    if (poll()) refresh();
  }, POLL_MS);
  refresh();
  return () => {
    off();
    clearInterval(timer);
  };
}

function viewBoard(main) {
  const grid = el("div", { class: "board", id: "board" });
  main.append(el("h2", {}, "Providers"), grid);
  let alive = true;

  async function refresh() {
    let j;
    try {
      j = await api("GET", "/v1/providers");
    } catch (e) {
      if (alive) showBanner("Providers: " + e.message);
      return;
    }
    if (!alive) return;
    showBanner("");
    grid.replaceChildren(...j.providers.map(card));
  }

  function card(p) {
    const disabled = p.state === "disabled";
    const btn = el(
      "button",
      {
        type: "button",
        class: disabled ? "enable" : "disable",
        "data-action": disabled ? "enable" : "disable",
        onclick: async () => {
          btn.disabled = true;
          try {
            await api("POST", "/v1/providers/" + encodeURIComponent(p.name) + "/" + (disabled ? "enable" : "disable"));
          } catch (e) {
            showBanner(p.name + ": " + e.message);
          }
          refresh();
        },
      },
      disabled ? "Enable" : "Disable",
    );
    const row = (k, v, cls) => el("div", { class: "kv " + (cls || "") }, el("span", { class: "k" }, k), el("span", { class: "v" }, v));
    return el(
      "section",
      { class: "card provider state-" + p.state, "data-provider": p.name, "data-state": p.state },
      el("header", {}, el("h3", {}, el("a", { href: "#/queue?provider=" + encodeURIComponent(p.name), title: "its messages" }, p.name)), el("span", { class: "badge state", text: p.state })),
      p.reason ? el("p", { class: "reason" }, p.reason) : null,
      row("type", p.type),
      row("health", p.health),
      row("breaker", p.breaker),
      row("in flight", p.in_flight + " / " + p.max_in_flight, "in-flight"),
      row("delivered", p.delivered, "delivered"),
      row("failed", p.failed, "failed"),
      row("last heartbeat", fmtAgo(p.last_heartbeat_ms_ago), "heartbeat"),
      p.paused_until ? row("paused until", fmtTime(p.paused_until)) : null,
      row("link", fmtLink(p.link_tls), "link"),
      sizeRow(p),
      p.smtputf8_refused_until ? utf8Row(p.smtputf8_refused_until) : null,
      el("div", { class: "spark-wrap" }, sparkline(p.name), el("span", { class: "spark-label" }, "deliveries per 10 s, last 5 min")),
      el("div", { class: "actions" }, btn),
    );
  }

  // The size limit; while one learned from a too_large answer holds,
  // until when (the whole time in its tooltip).
  function sizeRow(p) {
    const v = el("span", { class: "v", title: p.max_message_bytes + " bytes" }, fmtBytes(p.max_message_bytes));
    if (p.max_message_bytes_learned_until)
      v.append(
        el(
          "span",
          { class: "learned", title: fmtTime(p.max_message_bytes_learned_until) },
          "lowered until " + fmtClock(p.max_message_bytes_learned_until) + " (a too_large answer)",
        ),
      );
    return el("div", { class: "kv size-limit" + (p.max_message_bytes_learned_until ? " lowered" : "") }, el("span", { class: "k" }, "size limit"), v);
  }

  // While a needs_smtputf8 answer keeps non-ASCII addresses away from
  // the provider: until when (the whole time in its tooltip).
  function utf8Row(until) {
    return el(
      "div",
      { class: "kv smtputf8 lowered" },
      el("span", { class: "k" }, "SMTPUTF8"),
      el("span", { class: "v", title: fmtTime(until) }, "refused until " + fmtClock(until) + " (non-ASCII addresses go elsewhere)"),
    );
  }

  // provider.* takes in provider.limit_learned and provider.limit_restored.
  const stop = follow(
    refresh,
    150,
    (type) => type.startsWith("provider.") || type === "message.delivered" || type === "message.failed" || type === "reset",
    () => true,
  );
  return () => {
    alive = false;
    stop();
  };
}

// "a@x, b@y" or one per line -> ["a@x", "b@y"].
function splitList(s) {
  return s
    .split(/[,\n]/)
    .map((x) => x.trim())
    .filter((x) => x !== "");
}

function readBase64(file) {
  return new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onerror = () => reject(new Error(file.name + ": cannot read"));
    r.onload = () => {
      const s = String(r.result);
      resolve(s.slice(s.indexOf(",") + 1)); // after "data:...;base64,"
    };
    r.readAsDataURL(file);
  });
}

const COMPOSE_FIELDS = [
  ["from", "From", "input", "Ann <ann@example.com>"],
  ["to", "To", "input", "bob@example.net, carol@example.org"],
  ["cc", "Cc", "input", ""],
  ["bcc", "Bcc", "input", ""],
  ["reply_to", "Reply-To", "input", ""],
  ["subject", "Subject", "input", ""],
  ["text", "Text", "textarea", ""],
  ["html", "HTML", "textarea", ""],
  ["attachments", "Attachments", "file", ""],
  ["headers", "Headers", "textarea", "X-Campaign: c1"],
  ["tags", "Tags", "input", "welcome, october"],
];

// The API names the field first: "to[1]: not a valid address" -> "to".
function fieldOf(message) {
  const m = /^([a-z_]+)(\[|\.|:)/.exec(message || "");
  return m && COMPOSE_FIELDS.some((f) => f[0] === m[1]) ? m[1] : null;
}

function viewCompose(main) {
  const form = el("form", { id: "compose", class: "compose", novalidate: true });
  for (const [name, label, kind, ph] of COMPOSE_FIELDS) {
    const id = "f-" + name;
    let input;
    const err = "err-" + name; // read out with the field by screen readers
    if (kind === "textarea") input = el("textarea", { id, name, rows: name === "headers" ? 3 : 6, placeholder: ph, "aria-describedby": err });
    else if (kind === "file") input = el("input", { id, name, type: "file", multiple: true, "aria-describedby": err });
    else input = el("input", { id, name, type: "text", placeholder: ph, autocomplete: "off", "aria-describedby": err });
    form.append(
      el("div", { class: "field", id: "field-" + name }, el("label", { for: id }, label), input, el("p", { class: "field-error", id: "err-" + name, hidden: true })),
    );
  }
  const status = el("p", { id: "compose-status", class: "status", role: "status" });
  form.append(el("div", { class: "actions" }, el("button", { type: "submit", id: "send" }, "Send")), status);
  main.append(el("h2", {}, "Compose"), form);

  function clearErrors() {
    for (const e of form.querySelectorAll(".field-error")) {
      e.hidden = true;
      e.textContent = "";
    }
    for (const e of form.querySelectorAll(".field.bad")) e.classList.remove("bad");
    for (const e of form.querySelectorAll("[aria-invalid]")) e.removeAttribute("aria-invalid");
  }

  function fieldError(name, text) {
    const e = $("err-" + name);
    e.textContent = text;
    e.hidden = false;
    $("field-" + name).classList.add("bad");
    $("f-" + name).setAttribute("aria-invalid", "true");
  }

  async function build() {
    const v = (n) => $("f-" + n).value.trim();
    const body = {};
    if (v("from")) body.from = v("from");
    for (const n of ["to", "cc", "bcc"]) if (v(n)) body[n] = splitList(v(n));
    if (v("reply_to")) {
      const r = splitList(v("reply_to"));
      body.reply_to = r.length === 1 ? r[0] : r;
    }
    if (v("subject")) body.subject = $("f-subject").value;
    if ($("f-text").value) body.text = $("f-text").value;
    if ($("f-html").value) body.html = $("f-html").value;
    if (v("headers")) {
      body.headers = {};
      for (const line of v("headers").split("\n")) {
        if (!line.trim()) continue;
        const i = line.indexOf(":");
        if (i <= 0) throw { field: "headers", message: "headers: write one 'Name: value' a line" };
        body.headers[line.slice(0, i).trim()] = line.slice(i + 1).trim();
      }
    }
    if (v("tags")) body.tags = splitList(v("tags"));
    const files = [...$("f-attachments").files];
    if (files.length) {
      body.attachments = [];
      for (const f of files)
        body.attachments.push({ filename: f.name, content_type: f.type || "application/octet-stream", content_base64: await readBase64(f) });
    }
    return body;
  }

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearErrors();
    status.textContent = "Sending…";
    $("send").disabled = true;
    try {
      const body = await build();
      const r = await api("POST", "/v1/messages", body);
      status.textContent = "";
      status.append("Queued as ", el("a", { href: "#/message/" + encodeURIComponent(r.id), id: "sent-link" }, r.id));
    } catch (e) {
      const msg = e.message || String(e);
      const f = e.field || fieldOf(msg);
      if (f) fieldError(f, msg);
      status.textContent = f ? "Not sent: see the field marked." : "Not sent: " + msg;
    } finally {
      $("send").disabled = false;
    }
  });
  return () => {};
}

function badge(status) {
  return el("span", { class: "badge status-" + status, text: status });
}

function retryButton(id, after) {
  const b = el(
    "button",
    {
      type: "button",
      class: "retry",
      "data-id": id,
      onclick: async () => {
        b.disabled = true;
        try {
          await api("POST", "/v1/messages/" + encodeURIComponent(id) + "/retry");
        } catch (e) {
          showBanner("Retry " + id + ": " + e.message);
        }
        after();
      },
    },
    "Retry",
  );
  return b;
}

// One message and its attempts as a timeline; refetched on its events.
function viewMessage(main, id) {
  const box = el("div", { id: "message" });
  main.append(el("h2", {}, "Message"), box);
  let alive = true;

  async function refresh() {
    let m;
    try {
      m = await api("GET", "/v1/messages/" + encodeURIComponent(id));
    } catch (e) {
      if (alive) box.replaceChildren(el("p", { class: "error" }, e.message));
      return;
    }
    if (!alive) return;
    const row = (k, v) => [el("dt", {}, k), el("dd", {}, v === null || v === undefined ? "-" : v)];
    const tl = el("ol", { class: "timeline", id: "timeline" });
    for (const a of m.attempts || [])
      tl.append(
        el(
          "li",
          { class: "attempt outcome-" + a.outcome, "data-outcome": a.outcome },
          el("span", { class: "when" }, fmtTime(a.at)),
          el("span", { class: "n" }, "#" + a.n),
          el("span", { class: "who" }, a.provider || "-"),
          el("span", { class: "badge outcome", text: a.outcome }),
          a.detail ? el("span", { class: "detail" }, a.detail) : null,
        ),
      );
    if (!tl.children.length) tl.append(el("li", { class: "empty" }, "No attempt yet."));
    box.replaceChildren(
      el("div", { class: "msg-head" }, el("code", { class: "id" }, m.id), el("span", { id: "msg-status", "data-status": m.status }, badge(m.status)), m.status === "failed" ? retryButton(m.id, refresh) : null),
      el(
        "dl",
        { class: "meta" },
        ...row("From", m.from),
        ...row("To", (m.to || []).join(", ")),
        ...row("Subject", m.subject),
        ...row("Created", fmtTime(m.created_at)),
        ...row("Updated", fmtTime(m.updated_at)),
        ...row("Provider", m.provider),
        ...row("Provider's id", m.provider_message_id),
        ...row("Error", m.error),
        ...row("Tags", (m.tags || []).join(", ")),
      ),
      el("h3", {}, "Attempts"),
      tl,
    );
  }

  // Without the stream (cut, or an older server) the page still moves.
  const stop = follow(
    refresh,
    100,
    (type, ev) => type === "reset" || (ev && ev.id === id),
    () => !streamLive,
  );
  return () => {
    alive = false;
    stop();
  };
}

// The queue, newest first, filtered and paged by the API's cursor.
function viewQueue(main, params) {
  const status = params.get("status") || "";
  const provider = params.get("provider") || "";
  const sSel = el("select", { id: "q-status" }, ...["", "queued", "sending", "delivered", "failed"].map((s) => el("option", { value: s, selected: s === status }, s || "any status")));
  const pSel = el("select", { id: "q-provider" }, el("option", { value: "" }, "any provider"));
  const go = () => {
    const q = new URLSearchParams();
    if (sSel.value) q.set("status", sSel.value);
    if (pSel.value) q.set("provider", pSel.value);
    location.hash = "#/queue" + (q.toString() ? "?" + q : "");
  };
  sSel.addEventListener("change", go);
  pSel.addEventListener("change", go);
  const tbody = el("tbody", { id: "queue-rows" });
  const prev = el("button", { type: "button", id: "q-prev", disabled: true }, "Newer");
  const next = el("button", { type: "button", id: "q-next", disabled: true }, "Older");
  const pageNo = el("span", { id: "q-page" }, "page 1");
  main.append(
    el("h2", {}, "Queue"),
    el("div", { class: "filters" }, el("label", {}, "Status ", sSel), el("label", {}, "Provider ", pSel)),
    el("table", { class: "queue" }, el("thead", {}, el("tr", {}, ...["Id", "Status", "To", "Subject", "Provider", "Attempts", "Updated", "Error", ""].map((h) => el("th", {}, h)))), tbody),
    el("div", { class: "pager" }, prev, pageNo, next),
  );
  let alive = true;
  const cursors = [null]; // the `before` of each page seen
  let page = 0;
  let nextCursor = null;

  api("GET", "/v1/providers")
    .then((j) => {
      for (const p of j.providers) pSel.append(el("option", { value: p.name, selected: p.name === provider }, p.name));
    })
    .catch(() => {});

  async function refresh() {
    const q = new URLSearchParams({ limit: String(PAGE_SIZE) });
    if (status) q.set("status", status);
    if (provider) q.set("provider", provider);
    if (cursors[page]) q.set("before", cursors[page]);
    let j;
    try {
      j = await api("GET", "/v1/messages?" + q);
    } catch (e) {
      if (alive) tbody.replaceChildren(el("tr", {}, el("td", { colspan: 9, class: "error" }, e.message)));
      return;
    }
    if (!alive) return;
    nextCursor = j.next || null;
    next.disabled = !nextCursor;
    prev.disabled = page === 0;
    pageNo.textContent = "page " + (page + 1);
    const rows = j.messages.map((m) =>
      el(
        "tr",
        { "data-id": m.id, "data-status": m.status },
        el("td", {}, el("a", { href: "#/message/" + encodeURIComponent(m.id) }, m.id)),
        el("td", {}, badge(m.status)),
        el("td", {}, (m.to || []).join(", ")),
        el("td", {}, m.subject || ""),
        el("td", {}, m.provider || "-"),
        el("td", {}, m.attempt_count),
        el("td", {}, fmtTime(m.updated_at)),
        el("td", { class: "error" }, m.error || ""),
        el("td", {}, m.status === "failed" ? retryButton(m.id, refresh) : null),
      ),
    );
    if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: 9, class: "empty" }, "No message.")));
    tbody.replaceChildren(...rows);
  }
  next.addEventListener("click", () => {
    if (!nextCursor) return;
    cursors[page + 1] = nextCursor;
    page++;
    refresh();
  });
  prev.addEventListener("click", () => {
    if (page === 0) return;
    page--;
    refresh();
  });
  // Live on the first page only: later pages would shift under the reader.
  const stop = follow(
    refresh,
    300,
    (type) => page === 0 && (type.startsWith("message.") || type === "reset"),
    () => !streamLive && page === 0,
  );
  return () => {
    alive = false;
    stop();
  };
}

// --- routing -------------------------------------------------------------

// The id of a #/message/ID link.  A link anyone can write may hold a
// broken %-escape, which decodeURIComponent throws on (the page would
// stay blank): the text is then taken as it is, and the API's 404 says
// there is no such message.
function hashId(s) {
  try {
    return decodeURIComponent(s);
  } catch (e) {
    return s;
  }
}

function route() {
  stopView();
  showBanner("");
  const main = $("main");
  main.replaceChildren();
  const h = location.hash.replace(/^#/, "") || "/";
  const [path, query] = h.split("?");
  const params = new URLSearchParams(query || "");
  for (const a of document.querySelectorAll("header nav a")) a.classList.toggle("current", a.getAttribute("href") === "#" + (path.startsWith("/message/") ? "/queue" : path));
  if (path === "/compose") stopView = viewCompose(main);
  else if (path === "/queue") stopView = viewQueue(main, params);
  else if (path.startsWith("/message/")) stopView = viewMessage(main, hashId(path.slice(9)));
  else stopView = viewBoard(main);
}

function start() {
  $("key-form").addEventListener("submit", keySubmitted);
  $("forget-key").hidden = apiKey() === null;
  $("forget-key").addEventListener("click", () => {
    sessionStorage.removeItem(KEY_STORE);
    location.reload();
  });
  onEvent(countDelivery);
  window.addEventListener("hashchange", route);
  route();
  if (!streamStarted) {
    streamStarted = true;
    streamEvents();
  }
}

start();
