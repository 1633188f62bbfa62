// Models: state, device, memory, usage; load / unload / pin (admin routes); capacity and evictions.
"use strict";

(() => {
  const { $, el, setText, message, api, ago } = berth;
  let timer = null;
  const busy = new Set();     // models with an action in flight
  const notes = new Map();    // model name -> {kind, text} shown under the row
  let listError = false;      // the message shows that GET /models failed (cleared once it works again)

  function bar(id, used, max) {
    const fill = $(id);
    const share = max ? Math.min(1, used / max) : 0;
    fill.style.width = `${share * 100}%`;
    fill.parentElement.className = "bar" + (share > 0.95 ? " bad" : share > 0.8 ? " warn" : "");
  }

  function renderServer(server) {
    setText("c-models", `${server.resident_models} / ${server.max_models}`);
    setText("c-memory", `${server.memory_mb.toFixed(1)} / ${server.max_memory_mb.toFixed(0)} MB`);
    setText("c-policy", server.eviction_policy);
    setText("c-inflight", server.inflight);
    bar("c-models-bar", server.resident_models, server.max_models);
    bar("c-memory-bar", server.memory_mb, server.max_memory_mb);
    $("devices").tBodies[0].replaceChildren(...(server.devices || []).map((d) => el("tr", {},
      el("td", { text: d.id }), el("td", { text: d.kind }),
      el("td", { class: "num", text: `${d.models}${d.max_models ? " / " + d.max_models : ""}` }),
      el("td", { class: "num", text: `${d.memory_mb} MB${d.max_memory_mb ? " / " + d.max_memory_mb + " MB" : ""}` }),
      el("td", { class: "num", text: d.workers }))));
  }

  function renderEvictions(models) {
    const rows = [];
    for (const m of models) for (const e of m.stats.recent_evictions || []) rows.push({ ...e, model: m.name });
    rows.sort((a, b) => b.at - a.at);
    $("evictions").tBodies[0].replaceChildren(...rows.slice(0, 30).map((e) => el("tr", {},
      el("td", { title: new Date(e.at * 1000).toISOString(), text: ago(e.at) }),
      el("td", { text: e.model }), el("td", { text: e.reason }))));
    $("evictions-empty").hidden = rows.length > 0;
  }

  function actionButton(label, m, action, body) {
    const button = el("button", { text: label, dataset: { action, model: m.name } });
    button.disabled = busy.has(m.name);
    button.addEventListener("click", () => act(m.name, action, body));
    return button;
  }

  function renderModels(models) {
    const body = $("models").tBodies[0];
    const rows = [];
    for (const m of models) {
      const memory = m.memory_mb ? `${m.memory_mb.toFixed(1)} MB${m.memory_measured ? "" : " (est.)"}` : "–";
      const resident = m.state === "READY" || m.state === "LOADING";
      rows.push(el("tr", { dataset: { model: m.name } },
        el("td", {}, el("strong", { text: m.name }), m.versions.length > 1 ? ` v${m.version}` : "",
          el("div", { class: "small muted", text: m.backend + (m.description ? " · " + m.description : "") })),
        el("td", {}, el("span", { class: "badge " + m.state, text: m.state }), m.pinned ? [" ", el("span", { class: "badge pinned", text: "pinned" })] : null,
          m.reason ? el("div", { class: "small", text: m.reason }) : null),
        el("td", { text: m.device || "–" }),
        el("td", { class: "num", text: memory }),
        el("td", { class: "num", text: m.stats.usage_count }),
        el("td", { text: ago(m.stats.last_used) }),
        el("td", { class: "num", text: m.inflight }),
        el("td", { class: "num", text: m.stats.evictions }),
        el("td", { class: "actions" },
          resident ? actionButton("Unload", m, "unload") : actionButton("Load", m, "load"), " ",
          actionButton(m.pinned ? "Unpin" : "Pin", m, "pin", { pinned: !m.pinned })),
      ));
      const note = notes.get(m.name);
      if (note) rows.push(el("tr", { class: note.kind === "error" ? "error" : "" }, el("td", { colspan: 9, class: "small", text: note.text })));
    }
    body.replaceChildren(...rows);
  }

  async function refresh() {
    const result = await api("/models");
    if (!result.ok) { listError = true; message("models-msg", "error", "could not list models — " + result.message); return; }
    if (listError) { listError = false; message("models-msg", "", ""); }
    renderServer(result.data.server);
    renderEvictions(result.data.models);
    renderModels(result.data.models);
    document.body.dataset.refreshed = String(Date.now());
  }

  async function act(name, action, body) {
    busy.add(name);
    notes.set(name, { kind: "info", text: `${action}…` });
    refresh();
    const result = await api(`/models/${encodeURIComponent(name)}/${action}`, { method: "POST", body, admin: true });
    busy.delete(name);
    if (result.ok) {
      const d = result.data || {};
      const text = `${action} ${name}: ${d.state || "done"}${d.device ? " on " + d.device : ""}${d.memory_mb ? `, ${d.memory_mb} MB` : ""}`;
      notes.set(name, { kind: "ok", text });
      message("models-msg", "ok", text);
    } else {
      const text = `${action} ${name} failed — ${result.message}`;
      notes.set(name, { kind: "error", text });
      message("models-msg", "error", text);
    }
    refresh();
  }

  function showToken() {
    setText("token-state", berth.adminToken() ? "An admin token is set for this tab (sessionStorage); it is sent as Authorization: Bearer." : "No admin token: management is allowed from loopback only, unless the server has a token.");
  }

  function auto() {
    if (timer) clearInterval(timer);
    timer = $("auto").checked ? setInterval(refresh, 2000) : null;
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("token").value = berth.adminToken();
    $("token-save").addEventListener("click", () => { berth.setAdminToken($("token").value.trim()); showToken(); });
    $("token").addEventListener("keydown", (e) => { if (e.key === "Enter") { berth.setAdminToken($("token").value.trim()); showToken(); } });
    $("token-clear").addEventListener("click", () => { berth.setAdminToken(""); $("token").value = ""; showToken(); });
    $("refresh").addEventListener("click", refresh);
    $("auto").addEventListener("change", auto);
    showToken();
    refresh();
    auto();
  });
})();
