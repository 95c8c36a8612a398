// hammer web chat: plain JavaScript, no build step. Talks to /ws as the signed-in account.
"use strict";
const log = document.getElementById("log");
const statusEl = document.getElementById("status");
const signedOut = document.getElementById("signed-out");
const composer = document.getElementById("composer");
const nodes = new Map();   // message id -> element
let ws = null, csrf = "", retry = 0;

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function linkify(value) {
  const span = el("span");
  if (/^https?:\/\/\S+$/.test(value)) {
    const a = el("a", "", value); a.href = value; a.target = "_blank"; a.rel = "noopener"; span.append(a);
  } else span.textContent = value;
  return span;
}

function renderCard(m) {
  const msg = m.msg || {};
  const card = el("div", "card " + (msg.level || "info") + (m.ephemeral ? " ephemeral" : ""));
  if (msg.title) card.append(el("h3", "", msg.title));
  if (msg.text) card.append(el("div", "text", msg.text));
  if (msg.fields && msg.fields.length) {
    const dl = el("dl", "fields");
    for (const [k, v] of msg.fields) { dl.append(el("dt", "", k)); const dd = el("dd"); dd.append(linkify(v)); dl.append(dd); }
    card.append(dl);
  }
  if (typeof msg.progress === "number") {
    const bar = el("div", "bar"); const fill = el("div"); fill.style.width = Math.round(msg.progress * 100) + "%";
    bar.append(fill); card.append(bar);
  }
  if (msg.image) { const img = el("img"); img.src = msg.image; img.alt = msg.image_title || "image"; card.append(img); }
  if (msg.buttons && msg.buttons.length) {
    const row = el("div", "buttons");
    for (const b of msg.buttons) {
      const btn = el("button", b.style || "", b.label);
      btn.dataset.action = b.action_id; btn.dataset.value = b.value;
      btn.onclick = () => { btn.disabled = true; send({type: "click", action_id: b.action_id, value: b.value,
                                                         message_id: m.id, thread: m.thread}); };
      row.append(btn);
    }
    card.append(row);
  }
  if (msg.footer) card.append(el("div", "footer", msg.footer));
  return card;
}

function render(m) {
  const wrap = el("div", "msg " + m.kind);
  wrap.dataset.id = m.id;
  const t = new Date(m.ts * 1000).toLocaleTimeString();
  wrap.append(el("div", "meta", m.author + " · " + t));
  if (m.kind === "user") wrap.append(el("div", "body", m.msg.text));
  else wrap.append(renderCard(m));
  return wrap;
}

function place(m) {
  const node = render(m);
  const old = nodes.get(m.id);
  if (old) { old.replaceWith(node); nodes.set(m.id, node); return; }
  nodes.set(m.id, node);
  let parent = log;
  if (m.thread && nodes.has(m.thread)) {
    const owner = nodes.get(m.thread);
    let thread = owner.querySelector(":scope > .thread");
    if (!thread) { thread = el("div", "thread"); owner.append(thread); }
    parent = thread;
  }
  parent.append(node);
  log.scrollTop = log.scrollHeight;
}

function send(obj) { if (ws && ws.readyState === 1) ws.send(JSON.stringify(obj)); }

async function start() {
  const resp = await fetch("/web/session", {credentials: "same-origin"}).catch(() => null);
  if (!resp || resp.status === 401) { statusEl.textContent = "signed out"; signedOut.hidden = false; return; }
  const me = await resp.json();
  csrf = me.csrf;
  document.getElementById("who").textContent = me.name + " (" + me.role + ")";
  connect();
}

function connect() {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  ws = new WebSocket(proto + "//" + location.host + "/ws");
  ws.onopen = () => { retry = 0; statusEl.textContent = "connected"; };
  ws.onclose = () => { statusEl.textContent = "disconnected, retrying…"; setTimeout(connect, Math.min(10000, 500 * 2 ** retry++)); };
  ws.onmessage = (ev) => {
    const data = JSON.parse(ev.data);
    if (data.type === "history") { log.textContent = ""; nodes.clear(); data.messages.forEach(place); }
    else if (data.type === "message" || data.type === "edit") place(data.message);
    else if (data.type === "ephemeral") place(data.message);
    else if (data.type === "welcome") { composer.hidden = false; document.getElementById("text").focus(); }
  };
}

composer.onsubmit = (e) => {
  e.preventDefault();
  const input = document.getElementById("text");
  if (input.value.trim()) send({type: "command", text: input.value});
  input.value = "";
};
document.getElementById("file").onchange = async (e) => {
  const file = e.target.files[0];
  if (!file) return;
  const body = new FormData();
  body.append("file", file);
  const resp = await fetch("/web/upload", {method: "POST", body, credentials: "same-origin",
                                          headers: {"X-CSRF-Token": csrf}});
  const data = await resp.json().catch(() => ({ok: false, error: "upload failed"}));
  if (!data.ok) place({id: "u" + Date.now(), kind: "bot", author: "hammer", ts: Date.now() / 1000, ephemeral: true,
                       msg: {title: data.error, level: "error"}});
  e.target.value = "";
};
start();
