// Stream (seed 001 dashboard): POST /infer/stream, read the SSE body with fetch + ReadableStream.
"use strict";

(() => {
  const { $, el, setText, message, api, fmt, fmtMs, percentile } = berth;
  const WINDOW = 300;          // points in the latency chart
  const LOG_LINES = 200;

  let controller = null;
  let chart = null;
  let times = [], latencies = [], arrivals = [], logLines = [];
  let counts = new Map();
  let frames = 0, latencySum = 0, t0 = 0;
  let dirty = false;

  function log(text) {
    logLines.unshift(`${new Date().toISOString().slice(11, 23)}  ${text}`);
    if (logLines.length > LOG_LINES) logLines.length = LOG_LINES;
    dirty = true;
  }

  function setState(text, kind) {
    const badge = $("state");
    badge.textContent = text;
    badge.className = "badge " + (kind || "");
    document.body.dataset.streamState = text;
  }

  function reset() {
    times = []; latencies = []; arrivals = []; logLines = []; counts = new Map();
    frames = 0; latencySum = 0; t0 = performance.now();
    setText("prediction", "–"); setText("confidence", "–");
    $("confidence-bar").style.width = "0";
    dirty = true;
  }

  function onFrame(event) {
    frames++;
    const now = performance.now();
    arrivals.push(now);
    while (arrivals.length && now - arrivals[0] > 2000) arrivals.shift();
    times.push((now - t0) / 1000);
    latencies.push(Number(event.latency_ms));
    latencySum += Number(event.latency_ms);
    if (times.length > WINDOW) { times.shift(); latencies.shift(); }
    const name = event.gesture !== undefined && event.gesture !== null ? String(event.gesture) : `class ${event.prediction}`;
    counts.set(name, (counts.get(name) || 0) + 1);
    setText("prediction", name);
    const confidence = Number(event.confidence);
    setText("confidence", `${(confidence * 100).toFixed(1)} %`);
    $("confidence-bar").style.width = `${Math.max(0, Math.min(100, confidence * 100))}%`;
    setText("m-frames", frames);
    setText("m-latency", fmtMs(event.latency_ms));
    setText("m-late", fmtMs(event.late_ms));
    setText("m-missed", `${event.missed_frames ?? 0} / ${event.dropped_events ?? 0}`);
    setText("m-backend", event.backend);
    setText("m-model", event.model);
    setText("m-cpu", event.cpu_percent === undefined ? "–" : `${fmt(event.cpu_percent, 1)} %`);
    if (frames <= 3 || frames % 10 === 0) {
      log(`frame ${event.frame}: ${name} ${(confidence * 100).toFixed(1)}% · ${fmt(event.latency_ms, 3)} ms · batch ${event.batch_size ?? 1}`);
    }
    dirty = true;
  }

  function render() {
    if (!dirty) return;
    dirty = false;
    const span = arrivals.length > 1 ? (arrivals[arrivals.length - 1] - arrivals[0]) / 1000 : 0;
    setText("m-fps", span > 0 ? ((arrivals.length - 1) / span).toFixed(1) : "–");
    setText("m-mean", frames ? fmtMs(latencySum / frames) : "–");
    setText("m-p99", latencies.length ? fmtMs(percentile(latencies, 99)) : "–");
    if (chart) chart.setData([times.slice(), latencies.slice()]);
    const total = [...counts.values()].reduce((a, b) => a + b, 0) || 1;
    $("distribution").replaceChildren(...[...counts.entries()].sort((a, b) => b[1] - a[1]).map(([name, n]) => {
      const fill = el("span");
      fill.style.width = `${(100 * n) / total}%`;
      return el("div", { class: "dist-row" }, el("span", { text: name }), el("div", { class: "bar" }, fill), el("span", { class: "num", text: `${((100 * n) / total).toFixed(0)}%` }));
    }));
    $("log").textContent = logLines.join("\n");
  }

  function params() {
    const body = {
      fps: Number($("fps").value) || 30,
      use_tensorrt: $("accelerated").checked,
      preprocess: $("preprocess").checked,
    };
    const duration = $("duration").value.trim();
    body.duration_seconds = duration === "" ? null : Number(duration);
    if ($("model").value) body.model = $("model").value;
    return body;
  }

  async function start() {
    const body = params();
    reset();
    controller = new AbortController();
    $("start").disabled = true;
    $("stop").disabled = false;
    message("stream-msg", "", "");
    setState("connecting", "LOADING");
    log(`start: ${JSON.stringify(body)}`);
    let response;
    try {
      response = await fetch("/infer/stream", {
        method: "POST", signal: controller.signal, cache: "no-store",
        headers: { "Content-Type": "application/json", Accept: "text/event-stream" }, body: JSON.stringify(body),
      });
    } catch (error) {
      finish(error.name === "AbortError" ? null : "server unreachable: " + error.message);
      return;
    }
    if (!response.ok) {
      let text = "";
      try { const data = await response.json(); text = data.error || ""; } catch (_) { /* not JSON */ }
      finish(berth.describe({ status: response.status, error: text || response.statusText, retryAfter: response.headers.get("Retry-After") }));
      return;
    }
    setState("streaming", "READY");
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    let outcome = null;
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          for (const line of block.split("\n")) {
            if (line.startsWith(":")) { log(`server: ${line.slice(1).trim()}`); continue; }
            if (!line.startsWith("data:")) continue;
            let event;
            try { event = JSON.parse(line.slice(5).trim()); } catch (_) { log("unreadable event"); continue; }
            if (event.status === "completed") {
              outcome = { ok: true, text: `completed: ${event.total_frames} frames in ${fmt(event.duration_seconds, 2)} s, ${fmt(event.avg_fps, 1)} fps average, ${event.delivered_frames ?? "?"} delivered, ${event.missed_frames ?? 0} missed` };
              log(outcome.text);
            } else if (event.error !== undefined) {
              outcome = { ok: false, text: `stream error at frame ${event.frame ?? "?"}: ${event.error}` };
              log(outcome.text);
            } else {
              onFrame(event);
            }
          }
        }
      }
    } catch (error) {
      if (error.name !== "AbortError") outcome = { ok: false, text: "connection lost: " + error.message };
    }
    if (!outcome && controller && controller.signal.aborted) outcome = { ok: true, text: `stopped after ${frames} frames` };
    if (!outcome) outcome = { ok: false, text: "the stream ended without a completion event" };
    finish(outcome.ok ? null : outcome.text, outcome.ok ? outcome.text : null);
  }

  function finish(errorText, okText) {
    controller = null;
    $("start").disabled = false;
    $("stop").disabled = true;
    if (errorText) { message("stream-msg", "error", errorText); setState("error", "FAILED"); log(errorText); }
    else { if (okText) message("stream-msg", "ok", okText); setState("stopped"); }
    dirty = true;
    render();
  }

  async function loadModels() {
    const result = await api("/models");
    if (!result.ok) { message("stream-msg", "error", "could not list models — " + result.message); return; }
    const select = $("model");
    for (const m of result.data.models) {
      const input = m.signature && m.signature.inputs[0];
      const fits = !m.signature || (m.signature.inputs.length === 1 && input.shape.length === 3);
      if (fits && m.backend !== "lm") select.append(el("option", { value: m.name, text: `${m.name}${input ? ` [${input.shape.join(", ")}]` : ""}` }));
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    chart = berth.chart($("latency-chart"), {
      height: 200,
      scales: { x: { time: false } },
      legend: { show: false },
      axes: [{ label: "seconds" }, { label: "ms", size: 55 }],
      series: [{}, { label: "latency", stroke: "#12805c", width: 1.5, points: { show: false } }],
    }, [[], []]);
    $("start").addEventListener("click", start);
    $("stop").addEventListener("click", () => controller && controller.abort());
    setInterval(render, 250);
    loadModels();
    setState("idle");
  });
})();
