// Home and About: the server at a glance and what is loaded now (GET /health, /config, /models).
"use strict";

(() => {
  const { $, el, setText, message, api, ago, duration } = berth;

  function inputShape(model) {
    const input = model.signature && model.signature.inputs && model.signature.inputs[0];
    return input ? `${input.name} [${input.shape.join(", ")}]` : "–";
  }

  async function refreshModels() {
    const result = await api("/models");
    const body = $("loaded").tBodies[0];
    if (!result.ok) {
      message("loaded-msg", "error", "could not list models — " + result.message);
      return;
    }
    message("loaded-msg", "", "");
    const models = result.data.models || [];
    const loaded = models.filter((m) => m.state === "READY" || m.state === "LOADING");
    body.replaceChildren(...loaded.map((m) => el("tr", {},
      el("td", {}, el("strong", { text: m.name }), m.pinned ? [" ", el("span", { class: "badge pinned", text: "pinned" })] : null,
        m.state !== "READY" ? [" ", el("span", { class: "badge " + m.state, text: m.state })] : null),
      el("td", { text: m.backend || "–" }),
      el("td", { text: m.device || "–" }),
      el("td", { class: "num", text: `${m.memory_mb.toFixed(1)} MB` }),
      el("td", { class: "num", text: m.stats.usage_count }),
      el("td", { text: ago(m.stats.last_used) }),
      el("td", { class: "mono", text: inputShape(m) }),
    )));
    if (!loaded.length) body.append(el("tr", {}, el("td", { colspan: 7, class: "muted", text: "no model is loaded" })));
    const server = result.data.server || {};
    setText("loaded-summary", `${loaded.length} of ${models.length} models resident · ${server.memory_mb} MB of ${server.max_memory_mb} MB · policy ${server.eviction_policy}`);
    setText("s-capacity", `${server.resident_models} / ${server.max_models} models, ${server.memory_mb} / ${server.max_memory_mb} MB`);
    setText("s-policy", server.eviction_policy);
  }

  async function refreshConfig() {
    const result = await api("/config");
    setText("s-default", result.ok ? (result.data.model || "none") : "–");
  }

  berth.onHealth((result) => {
    if (!result.ok) {
      message("server-msg", "error", berth.describe(result));
      return;
    }
    message("server-msg", "", "");
    const h = result.data;
    setText("s-status", h.status);
    setText("s-uptime", duration(h.uptime_s));
    setText("s-loaded", h.models_loaded);
    setText("s-inflight", h.inflight);
    setText("s-gpu", h.gpu ? "GPU" : "CPU only");
    if (h.failed_models && h.failed_models.length) message("server-msg", "error", "failed models: " + h.failed_models.join(", "));
  });

  document.addEventListener("DOMContentLoaded", () => {
    refreshModels();
    refreshConfig();
    setInterval(refreshModels, 5000);
  });
})();
