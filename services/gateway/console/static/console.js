// The Mesh LLM console: everything it shows comes from /api/events (the status, on every
// change); the chat goes through the gateway's own /v1/chat/completions.
"use strict";

const $ = (id) => document.getElementById(id);
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) =>
  ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
const gib = (b) => b >= 2 ** 30 ? (b / 2 ** 30).toFixed(1) + " GiB" : Math.round(b / 2 ** 20) + " MiB";
let status = null;
let apiKey = sessionStorage.getItem("mesh-llm-key") || "";

function headers(extra = {}) {
  return apiKey ? { ...extra, authorization: "Bearer " + apiKey } : extra;
}

function needKey() {
  $("keybar").hidden = false;
}

$("usekey").onclick = () => {
  apiKey = $("key").value.trim();
  sessionStorage.setItem("mesh-llm-key", apiKey);
  $("keybar").hidden = true;
  follow();
};

// ---- views -------------------------------------------------------------------------------

for (const button of document.querySelectorAll("nav button")) {
  button.onclick = () => {
    for (const b of document.querySelectorAll("nav button")) b.classList.toggle("active", b === button);
    for (const v of document.querySelectorAll(".view")) v.classList.toggle("active", v.id === button.dataset.view);
    if (button.dataset.view === "invite") showInvite();
  };
}

function render() {
  if (!status) return;
  const me = status.this_node;
  $("mesh").textContent = "mesh " + status.mesh_id;
  $("me").innerHTML = `node <b>${esc(me.id)}</b> · ${esc(me.role)} · v${esc(me.version)}` +
    (me.llama_build ? ` · llama.cpp ${esc(me.llama_build)}` : "");
  renderTopology();
  renderNodes();
  renderModels();
  renderChatModels();
}

function state(s) {
  return `<span class="state ${esc(s)}">${esc(s)}</span>`;
}

function renderNodes() {
  $("nodes").innerHTML = status.nodes.map((n) => `
    <div class="node" data-node="${esc(n.id)}">
      <div class="node-head"><b>${esc(n.id)}</b>${state(n.role)}
        <span class="muted">${esc(n.services.join(", "))}${n.rtt_ms != null ? ` · ${n.rtt_ms.toFixed(1)} ms from here` : ""}</span></div>
      ${n.workers.map(deviceRow).join("")}
    </div>`).join("") || '<p class="muted">no nodes yet</p>';
}

function deviceRow(w) {
  const d = w.device;
  const total = d.memory_total_bytes || 1;
  const pct = (b) => Math.min(100, (100 * b) / total).toFixed(1) + "%";
  const instances = w.instances.map((i) => `${esc(i.model)} ${state(i.state)}`).join(" ");
  return `<div class="device">
      <div><b>${esc(d.name)}</b><br><span class="muted">${esc(d.stable_id)}${w.standby ? " · standby" : ""}</span></div>
      <div>
        <div class="bar" title="budget ${gib(d.memory_budget_bytes)}, reserved ${gib(d.memory_reserved_bytes)}, used ${gib(d.memory_used_bytes)} of ${gib(total)}">
          <span class="budget" style="width:${pct(d.memory_budget_bytes)}"></span>
          <span class="used" style="width:${pct(d.memory_used_bytes)}"></span>
          <span class="reserved" style="width:${pct(d.memory_reserved_bytes)}"></span>
        </div>
        <div>${instances}</div>
      </div>
      <div class="muted">${gib(d.memory_reserved_bytes)} reserved of ${gib(d.memory_budget_bytes)} budget · ${gib(total)} total</div>
    </div>`;
}

function placementText(p) {
  if (p.kind === "solo") return `solo on ${p.members.map((m) => esc(m.node)).join(", ")}`;
  if (p.kind === "split") {
    return "split: " + p.members.map((m) =>
      `${esc(m.node)} ${m.layer_share != null ? Math.round(m.layer_share * 100) + "%" : ""} ${state(m.state)}`).join(" + ");
  }
  return `${p.members.length} shards: ` + p.members.map((m) =>
    `${esc(m.node)} (${m.experts} experts${m.quality ? ", " + esc(m.quality.verdict) : ", not measured yet"}) ${state(m.state)}`).join(", ");
}

function renderModels() {
  $("model-rows").innerHTML = status.models.map((m) => `
    <tr data-model="${esc(m.id)}">
      <td><b>${esc(m.id)}</b><br><span class="muted">${esc(m.architecture)} · ${gib(m.size_bytes)} · ${esc(m.capabilities.join(", "))}</span></td>
      <td>${state(m.state)}</td>
      <td>${m.replicas}</td>
      <td>${m.placements.map(placementText).join("<br>") || '<span class="muted">none</span>'}</td>
      <td>${m.demand ? `${m.demand.requests_per_minute} req/min<br><span class="muted">${esc(m.demand.verdict)}</span>` : ""}</td>
      <td class="muted">${esc([...m.why, ...m.next].join("; "))}</td>
    </tr>`).join("") || '<tr><td colspan="6" class="muted">no models yet</td></tr>';
  $("routing-rows").innerHTML = status.routing.map((r) => `
    <tr><td>${esc(r.model)}</td><td>${r.requests}</td><td>${r.failures}</td><td>${r.retries}</td>
      <td>${r.failovers}</td><td>${r.in_flight}</td></tr>`).join("");
}

function renderTopology() {
  const svg = $("topology");
  const nodes = status.nodes;
  const cx = 320, cy = 180, r = nodes.length > 1 ? 130 : 0;
  const at = {};
  nodes.forEach((n, i) => {
    const a = (2 * Math.PI * i) / Math.max(1, nodes.length) - Math.PI / 2;
    at[n.id] = [cx + r * Math.cos(a), cy + r * Math.sin(a)];
  });
  const me = status.this_node.id;
  let edges = "";
  for (const n of nodes) {
    if (n.id === me || n.rtt_ms == null || !at[me]) continue;
    const [x1, y1] = at[me], [x2, y2] = at[n.id];
    edges += `<line x1="${x1}" y1="${y1}" x2="${x2}" y2="${y2}" stroke="#c5cad6"/>` +
      `<text class="rtt" x="${(x1 + x2) / 2}" y="${(y1 + y2) / 2 - 4}" text-anchor="middle">${n.rtt_ms.toFixed(1)} ms</text>`;
  }
  const colours = ["#3461d8", "#1f9d55", "#c98a0b", "#8e44ad", "#c8372d"];
  let k = 0;
  for (const m of status.models) {
    for (const p of m.placements) {
      if (p.kind === "solo" || p.members.length < 2) continue;
      const colour = colours[k++ % colours.length];
      const [first, ...rest] = p.members;
      for (const other of rest) {
        if (!at[first.node] || !at[other.node] || first.node === other.node) continue;
        const [x1, y1] = at[first.node], [x2, y2] = at[other.node];
        edges += `<line x1="${x1}" y1="${y1}" x2="${x2}" y2="${y2}" stroke="${colour}" stroke-width="4" opacity=".6"><title>${esc(m.id)} (${p.kind})</title></line>`;
      }
    }
  }
  const fill = { serving: "#dff3e7", loading: "#fdf0d5", standby: "#eef0f4", client: "#fff" };
  const circles = nodes.map((n) => {
    const [x, y] = at[n.id];
    return `<g data-node="${esc(n.id)}"><circle cx="${x}" cy="${y}" r="26" fill="${fill[n.role] || "#fff"}"
      stroke="${n.id === me ? "#3461d8" : "#9aa3b5"}" stroke-width="${n.id === me ? 3 : 1.5}"/>
      <text x="${x}" y="${y + 4}" text-anchor="middle">${esc(n.id.slice(0, 10))}</text>
      <text class="rtt" x="${x}" y="${y + 42}" text-anchor="middle">${esc(n.role)}</text></g>`;
  }).join("");
  svg.innerHTML = edges + circles;
}

// ---- live status -------------------------------------------------------------------------

let following = null;

async function follow() {
  if (following) following.abort();
  const control = new AbortController();
  following = control;
  let delay = 500;
  while (!control.signal.aborted) {
    try {
      const reply = await fetch("api/events", { headers: headers(), signal: control.signal });
      if (reply.status === 401) { needKey(); setLive("key needed"); return; }
      if (!reply.ok) throw new Error("status " + reply.status);
      setLive("live");
      delay = 500;
      await readEvents(reply.body.getReader());
    } catch (e) {
      if (control.signal.aborted) return;
    }
    setLive("reconnecting");
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 5000);
  }
}

async function readEvents(reader) {
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = block.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
      if (data) {
        status = JSON.parse(data);
        render();
      }
    }
  }
}

function setLive(text) {
  const pill = $("live");
  pill.textContent = text === "live" ? "live" : text === "reconnecting" ? "reconnecting…" : text;
  pill.dataset.state = text;
}

// ---- models: ask and withdraw ----------------------------------------------------------

async function modelRequest(method, path, body) {
  const reply = await fetch(path, {
    method, headers: headers({ "content-type": "application/json" }),
    body: body ? JSON.stringify(body) : undefined,
  });
  const answer = await reply.json().catch(() => ({}));
  $("ask-result").textContent = reply.ok
    ? `${answer.model}: ${answer.state}`
    : (answer.error && answer.error.message) || `failed (${reply.status})`;
}

$("ask").onsubmit = (e) => {
  e.preventDefault();
  modelRequest("POST", "api/models", { model: $("ask-model").value.trim() });
};
$("withdraw").onclick = () =>
  modelRequest("DELETE", "api/models/" + encodeURIComponent($("ask-model").value.trim()));

// ---- chat --------------------------------------------------------------------------------

let history = [];

function renderChatModels() {
  const select = $("chat-model");
  const served = status.models.filter((m) => m.replicas > 0).map((m) => m.id);
  const current = select.value;
  const options = served.map((id) => `<option${id === current ? " selected" : ""}>${esc(id)}</option>`).join("");
  if (select.innerHTML !== options) select.innerHTML = options;
}

function addMessage(role, text) {
  const div = document.createElement("div");
  div.className = "msg " + role;
  div.textContent = text;
  $("messages").appendChild(div);
  $("messages").scrollTop = $("messages").scrollHeight;
  return div;
}

$("chat-clear").onclick = () => { history = []; $("messages").innerHTML = ""; $("tps").textContent = ""; };

$("chat-form").onsubmit = async (e) => {
  e.preventDefault();
  const text = $("prompt").value.trim();
  if (!text) return;
  $("prompt").value = "";
  history.push({ role: "user", content: text });
  addMessage("user", text);
  const out = addMessage("assistant", "");
  $("send").disabled = true;
  try {
    const reply = await fetch("v1/chat/completions", {
      method: "POST",
      headers: headers({ "content-type": "application/json" }),
      body: JSON.stringify({ model: $("chat-model").value, messages: history, stream: true }),
    });
    if (reply.status === 401) needKey();
    if (!reply.ok) {
      const answer = await reply.json().catch(() => ({}));
      throw new Error((answer.error && answer.error.message) || "status " + reply.status);
    }
    const answer = await streamAnswer(reply.body.getReader(), out);
    history.push({ role: "assistant", content: answer });
  } catch (err) {
    out.className = "msg error";
    out.textContent = String(err.message || err);
    history.pop();
  } finally {
    $("send").disabled = false;
  }
};

async function streamAnswer(reader, out) {
  const decoder = new TextDecoder();
  let buffer = "", text = "", tokens = 0, first = 0;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, end).trim();
      buffer = buffer.slice(end + 1);
      if (!line.startsWith("data: ") || line === "data: [DONE]") continue;
      const chunk = JSON.parse(line.slice(6));
      if (chunk.error) throw new Error(chunk.error.message || "the stream failed");
      const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
      if (delta && delta.content) {
        if (!first) first = performance.now();
        tokens += 1;
        text += delta.content;
        out.textContent = text;
        const seconds = (performance.now() - first) / 1000;
        if (seconds > 0) $("tps").textContent = `${(tokens / seconds).toFixed(1)} tokens/s`;
      }
    }
  }
  return text;
}

// ---- invite ------------------------------------------------------------------------------

async function showInvite() {
  const reply = await fetch("api/invite", { headers: headers() });
  const answer = await reply.json().catch(() => ({}));
  if (!reply.ok) {
    $("invite-body").textContent = (answer.error && answer.error.message) || `no invite (${reply.status})`;
    return;
  }
  $("invite-body").innerHTML = `
    <p>On another machine, run one of these (an invite lets its holder join: share it like a password):</p>
    <div class="cmd"><code>${esc(answer.join)}</code><button data-copy="${esc(answer.join)}">Copy</button></div>
    <div class="cmd"><code>${esc(answer.client)}</code><button data-copy="${esc(answer.client)}">Copy</button>
      <span class="muted">(API only)</span></div>`;
  for (const b of $("invite-body").querySelectorAll("button[data-copy]")) {
    b.onclick = () => navigator.clipboard && navigator.clipboard.writeText(b.dataset.copy);
  }
}

follow();
