// Chat: a language model over POST /v1/chat/completions, streamed (SSE read with fetch); TTFT and tokens/s under each answer.
"use strict";

(() => {
  const { $, el, message, api, fmt, fmtMs } = berth;
  const MODEL_KEY = "berth.chatModel";
  let messages = [];          // the conversation sent with each request: {role, content}
  let controller = null;      // the AbortController of the answer in flight

  function setState(state) {
    document.body.dataset.chatState = state;
    $("send").disabled = state === "streaming";
    $("stop").disabled = state !== "streaming";
    $("model").disabled = state === "streaming";
  }

  async function loadModels() {
    const select = $("model");
    const result = await api("/v1/models");
    if (!result.ok) {
      select.replaceChildren(el("option", { value: "", text: "no language models" }));
      message("chat-msg", "error", "GET /v1/models — " + (result.message || result.error));
      return;
    }
    const models = (result.data && result.data.data) || [];
    if (!models.length) {
      select.replaceChildren(el("option", { value: "", text: "no language models" }));
      message("chat-msg", "info", "this server has no language models (configure one with model_path to a transformers folder)");
      return;
    }
    const previous = select.value || localStorage.getItem(MODEL_KEY) || "";
    select.replaceChildren(...models.map((m) => el("option", { value: m.id, text: m.berth && m.berth.state ? `${m.id} (${m.berth.state.toLowerCase()})` : m.id })));
    const ready = models.find((m) => m.berth && m.berth.state === "READY");
    select.value = models.some((m) => m.id === previous) ? previous : (ready || models[0]).id;
    message("chat-msg", "", "");
  }

  function turn(role, text) {
    const node = el("div", { class: "turn " + role, dataset: { role } },
      el("div", { class: "who", text: role === "user" ? "you" : role }),
      role === "assistant" ? el("div", { class: "reasoning", title: "reasoning" }) : null,
      el("div", { class: "text", text: text || "" }),
      role === "assistant" ? el("div", { class: "meta" }) : null);
    $("conversation").append(node);
    $("conversation-empty").hidden = true;
    node.scrollIntoView({ block: "end" });
    return node;
  }

  /** The server's message from an OpenAI error envelope ({error: {message}}), or the status text. */
  function errorText(status, text) {
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (_) { data = null; }
    const error = data && (typeof data.error === "string" ? data.error : data.error && data.error.message);
    return berth.describe({ status, error: error || text || "request failed" });
  }

  function showError(node, text) {
    node.classList.add("error");
    node.append(el("div", { class: "msg error", text }));
  }

  function showMeta(node, stats) {
    const meta = node.querySelector(".meta");
    const source = stats.server ? "server" : "client";
    meta.replaceChildren(
      el("span", {}, "TTFT ", el("strong", { class: "ttft", text: fmtMs(stats.ttft) })),
      el("span", {}, el("strong", { class: "tps", text: fmt(stats.tps, 1) }), " tokens/s"),
      stats.tokens !== null ? el("span", { class: "tokens", text: `${stats.tokens} tokens` }) : null,
      stats.total !== null ? el("span", { text: `total ${fmtMs(stats.total)}` }) : null,
      el("span", { class: "source", text: `(${source}-measured${stats.note ? ", " + stats.note : ""})` }));
  }

  async function send() {
    const prompt = $("prompt");
    const text = prompt.value.trim();
    const model = $("model").value;
    if (!text || controller) return;
    if (!model) { message("chat-msg", "error", "pick a language model first"); return; }
    message("chat-msg", "", "");
    localStorage.setItem(MODEL_KEY, model);
    messages.push({ role: "user", content: text });
    turn("user", text);
    prompt.value = "";
    const node = turn("assistant", "");
    node.classList.add("streaming");
    const textNode = node.querySelector(".text");
    const reasoningNode = node.querySelector(".reasoning");
    let answer = "", reasoning = "", chunks = 0, usage = null, metrics = null, finished = false;
    const started = performance.now();
    let firstAt = null, lastAt = null;
    controller = new AbortController();
    setState("streaming");
    const body = {
      model, messages, stream: true, stream_options: { include_usage: true },
      max_tokens: Number($("max-tokens").value) || undefined,
      temperature: $("temperature").value === "" ? undefined : Number($("temperature").value),
    };
    let outcome = "done";
    try {
      const response = await fetch("/v1/chat/completions", {
        method: "POST", signal: controller.signal, cache: "no-store",
        headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
        body: JSON.stringify(body),
      });
      if (!response.ok || !response.body) throw new Error(errorText(response.status, await response.text().catch(() => "")));
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        const events = buffer.split(/\r?\n\r?\n/);
        buffer = events.pop();
        for (const event of events) {
          const data = event.split(/\r?\n/).filter((line) => line.startsWith("data:")).map((line) => line.slice(5).trimStart()).join("\n");
          if (!data) continue;
          if (data === "[DONE]") { finished = true; continue; }
          const payload = JSON.parse(data);
          if (payload.error) throw new Error(typeof payload.error === "string" ? payload.error : payload.error.message || "generation failed");
          if (payload.usage) usage = payload.usage;
          if (payload.berth) metrics = payload.berth;
          const delta = payload.choices && payload.choices[0] && payload.choices[0].delta;
          if (!delta) continue;
          if (delta.content || delta.reasoning_content) {
            const now = performance.now();
            if (firstAt === null) firstAt = now;
            lastAt = now;
            chunks += 1;
          }
          if (delta.reasoning_content) { reasoning += delta.reasoning_content; reasoningNode.textContent = reasoning; }
          if (delta.content) { answer += delta.content; textNode.textContent = answer; }
        }
        node.scrollIntoView({ block: "end" });
      }
      if (!finished) throw new Error("the stream ended early (no [DONE])");
    } catch (error) {
      if (error && error.name === "AbortError") outcome = "stopped";
      else {
        outcome = "error";
        showError(node, error instanceof TypeError ? "server unreachable: " + error.message + " — is berth running?" : String(error && error.message || error));
      }
    } finally {
      controller = null;
      node.classList.remove("streaming");
    }
    if (answer || reasoning) {
      messages.push({ role: "assistant", content: answer });
      const tokens = usage ? usage.completion_tokens : chunks;
      const span = firstAt !== null && lastAt > firstAt ? (lastAt - firstAt) / 1000 : 0;
      showMeta(node, metrics && outcome === "done"
        ? { server: true, ttft: metrics.ttft_ms, tps: metrics.tokens_per_s, tokens, total: metrics.total_ms ?? null }
        : { server: false, ttft: firstAt === null ? null : firstAt - started, tps: span ? (tokens - 1) / span : null, tokens, total: (lastAt ?? performance.now()) - started, note: outcome === "stopped" ? "stopped" : "" });
    } else {
      messages.pop();           // nothing came back: the question is not part of the conversation
      if (outcome === "stopped") showError(node, "stopped before the first token (not kept in the conversation)");
      else if (outcome === "done") textNode.textContent = "(empty answer)";
    }
    if (outcome === "stopped" && answer) node.append(el("div", { class: "small muted", text: "stopped — the partial answer is kept in the conversation" }));
    node.dataset.outcome = outcome;
    setState(outcome);
    prompt.focus();
  }

  function stop() { if (controller) controller.abort(); }

  function clear() {
    stop();
    messages = [];
    $("conversation").replaceChildren();
    $("conversation-empty").hidden = false;
    setState("idle");
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("send").addEventListener("click", send);
    $("stop").addEventListener("click", stop);
    $("clear").addEventListener("click", clear);
    $("reload-models").addEventListener("click", loadModels);
    $("prompt").addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) { event.preventDefault(); send(); }
    });
    setState("idle");
    loadModels();
  });
  window.berthChat = { messages: () => messages.map((m) => ({ ...m })) };
})();
