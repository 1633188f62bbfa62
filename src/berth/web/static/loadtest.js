// Load test (seed 000): client-side /infer in parallel or a server-side /blast burst,
// live percentiles and chart, recent results, sessions kept in localStorage.
"use strict";

(() => {
  const { $, el, setText, message, api, fmt, fmtMs, percentile } = berth;
  const SESSIONS_KEY = "berth.sessions";
  const ACTIVE_KEY = "berth.activeSession";
  const MAX_SESSIONS = 20;
  const MAX_STORED_PROBS = 4096;   // larger outputs are kept out of the session (localStorage is small)
  const MAX_ROWS = 200;            // rows in the recent-results table
  const CSV_FIELDS = ["req_id", "mode", "started_at", "finished_at", "client_ms", "server_ms", "queue_ms", "top_index", "top_score", "probs"];

  let models = [];
  let lastHealth = null;
  let controller = null;
  let chart = null;
  let run = null;          // the run in progress or the last one: {basis, latencies, errors, started, finished}
  let recent = [];         // newest first, for the table

  // ── models ──────────────────────────────────────────────────────────────
  const modelByName = (name) => models.find((m) => m.name === name);
  const isSingleInput = (m) => !m.signature || m.signature.inputs.length === 1;
  function itemShape(m) {
    const input = m && m.signature && m.signature.inputs[0];
    return input ? input.shape.slice(1).map((d) => (d > 0 ? d : 1)) : null;
  }
  const itemSize = (m) => (itemShape(m) || []).reduce((a, b) => a * b, 1);

  async function loadModels(keep) {
    const result = await api("/models");
    if (!result.ok) { message("run-msg", "error", "could not list models — " + result.message); return; }
    models = result.data.models.filter((m) => m.backend !== "lm" && isSingleInput(m));
    const select = $("model");
    const chosen = keep || select.value || localStorage.getItem("berth.loadtestModel");
    const config = await api("/config");
    const fallback = config.ok && config.data.model;
    select.replaceChildren(...models.map((m) => el("option", { value: m.name, text: `${m.name} (${m.state.toLowerCase()})` })));
    const pick = [chosen, fallback, models[0] && models[0].name].find((name) => name && modelByName(name));
    if (pick) select.value = pick;
    describeModel();
  }

  function describeModel() {
    const m = modelByName($("model").value);
    if (!m) { setText("model-info", "no model to test"); return; }
    const input = m.signature && m.signature.inputs[0];
    setText("model-info", input
      ? `${m.backend} · input ${input.name} [${input.shape.join(", ")}] ${input.dtype} · ${itemSize(m)} values per request${m.labels ? " · labels " + m.labels.length : ""}`
      : `${m.backend} · ${m.state.toLowerCase()}: its input shape is known once it is loaded (the first run loads it)`);
  }

  /** Make sure the model is loaded and its signature known: a one-request /blast loads it. */
  async function ensureSignature(name, signal) {
    let m = modelByName(name);
    if (m && m.signature) return m;
    setText("m-done", "loading…");
    const warm = await api("/blast", { method: "POST", body: { model: name, n: 1 }, signal });
    if (!warm.ok) throw new Error(`model '${name}' could not run — ${warm.message}`);
    await loadModels(name);
    m = modelByName(name);
    if (!m || !m.signature) throw new Error(`model '${name}' has no input signature`);
    return m;
  }

  // ── sessions ────────────────────────────────────────────────────────────
  function readSessions() {
    try {
      const list = JSON.parse(localStorage.getItem(SESSIONS_KEY) || "[]");
      return Array.isArray(list) ? list.filter((s) => s && typeof s === "object") : [];
    } catch (_) { return []; }
  }
  function writeSessions(list) {
    try {
      localStorage.setItem(SESSIONS_KEY, JSON.stringify(list.slice(-MAX_SESSIONS)));
    } catch (error) {
      message("session-msg", "error", "browser storage is full: export or delete old sessions (" + error.message + ")");
    }
  }
  const activeId = () => localStorage.getItem(ACTIVE_KEY);
  const activeSession = () => readSessions().find((s) => s.id === activeId()) || null;
  function latestSession() {
    const list = readSessions();
    return activeSession() || list[list.length - 1] || null;
  }
  function newSessionId(date) { return "sess_" + date.toISOString().replace(/\.\d+Z$/, "Z").replace(/:/g, "-"); }

  function startSession() {
    const m = modelByName($("model").value);
    const now = new Date();
    const session = {
      id: newSessionId(now), started_at: now.toISOString(), model: m ? m.name : null,
      gpu: Boolean(lastHealth && lastHealth.gpu), input: itemShape(m), results: [], stopped_at: null,
    };
    const list = readSessions();
    list.push(session);
    writeSessions(list);
    localStorage.setItem(ACTIVE_KEY, session.id);
    message("session-msg", "", "");
    renderSessions();
  }

  function stopSession() {
    const list = readSessions();
    const session = list.find((s) => s.id === activeId());
    if (session) session.stopped_at = new Date().toISOString();
    writeSessions(list);
    localStorage.removeItem(ACTIVE_KEY);
    renderSessions();
  }

  let pending = [];
  let pendingModel = null;
  function recordInSession(results, model) {
    pending.push(...results);
    pendingModel = model;
  }
  function flushSession() {
    if (!pending.length || !activeId()) { pending = []; return; }
    const list = readSessions();
    const session = list.find((s) => s.id === activeId());
    if (session) {
      const offset = session.results.length;
      pending.forEach((r, i) => session.results.push({ ...r, req_id: offset + i }));
      if (!session.model) session.model = pendingModel;
      if (!session.input) session.input = itemShape(modelByName(session.model));
      writeSessions(list);
    }
    pending = [];
    renderSessions();
  }

  function csvCell(value) {
    if (value === null || value === undefined) return "";
    let text = Array.isArray(value) ? value.join(" ") : String(value);
    if (typeof value === "string" && /^[=+\-@\t\r]/.test(text)) text = "'" + text;   // no spreadsheet formulas
    return /[",\n\r]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
  }
  function sessionCsv(session) {
    const lines = [CSV_FIELDS.join(",")];
    for (const r of session.results || []) lines.push(CSV_FIELDS.map((f) => csvCell(r[f])).join(","));
    return lines.join("\r\n") + "\r\n";
  }
  function exportSession(session, kind) {
    if (!session) { message("session-msg", "error", "no session yet: start one, then run"); return; }
    const safe = String(session.id || "session").replace(/[^A-Za-z0-9_.-]/g, "_");
    if (kind === "json") berth.download(`${safe}.json`, JSON.stringify(session, null, 2), "application/json");
    else berth.download(`${safe}.csv`, sessionCsv(session), "text/csv");
  }
  async function saveSession(session) {
    if (!session) { message("session-msg", "error", "no session yet: start one, then run"); return; }
    message("session-msg", "info", "saving…");
    const result = await api("/save-session", { method: "POST", body: session });
    if (result.ok) message("session-msg", "ok", `saved on the server: ${result.data.path} (${result.data.bytes} bytes)`);
    else message("session-msg", "error", "could not save — " + result.message);
  }

  function viewSession(session) {
    $("session-view").hidden = false;
    setText("sv-id", session.id);
    const fields = $("sv-fields");
    const results = Array.isArray(session.results) ? session.results : [];
    const client = results.map((r) => r.client_ms).filter((v) => typeof v === "number");
    const rows = [
      ["model", session.model], ["started", session.started_at], ["stopped", session.stopped_at || "recording"],
      ["gpu", session.gpu], ["input", JSON.stringify(session.input)], ["results", results.length],
      ["client p50 / p99", client.length ? `${fmtMs(percentile(client, 50))} / ${fmtMs(percentile(client, 99))}` : "–"],
    ];
    fields.replaceChildren(...rows.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v === null || v === undefined ? "–" : v })]));
    const json = JSON.stringify(session, null, 2);
    $("sv-json").textContent = json.length > 20000 ? json.slice(0, 20000) + "\n…" : json;
  }

  function renderSessions() {
    const list = readSessions();
    const active = activeSession();
    $("session-start").disabled = Boolean(active);
    $("session-stop").disabled = !active;
    setText("session-status", active
      ? `Recording ${active.id}: ${active.results.length} results so far (kept across runs and reloads)`
      : "No session recording. Start one to keep results across runs.");
    const body = $("sessions").tBodies[0];
    body.replaceChildren(...list.slice().reverse().map((s) => el("tr", {},
      el("td", { class: "mono", text: s.id }),
      el("td", { text: s.model === null || s.model === undefined ? "–" : s.model }),
      el("td", { class: "num", text: Array.isArray(s.results) ? s.results.length : 0 }),
      el("td", { text: s.started_at || "–" }),
      el("td", { text: s.stopped_at || (s.id === activeId() ? "recording" : "–") }),
      el("td", { class: "actions" },
        el("button", { class: "link", onclick: () => viewSession(s), text: "View" }),
        el("button", { class: "link", onclick: () => exportSession(s, "json"), text: "JSON" }),
        el("button", { class: "link", onclick: () => exportSession(s, "csv"), text: "CSV" }),
        el("button", { class: "link", onclick: () => saveSession(s), text: "Save" }),
        el("button", { class: "link danger", onclick: () => deleteSession(s.id), text: "Delete" })),
    )));
    if (!list.length) body.append(el("tr", {}, el("td", { colspan: 6, class: "muted", text: "no sessions" })));
  }
  function deleteSession(id) {
    writeSessions(readSessions().filter((s) => s.id !== id));
    if (activeId() === id) localStorage.removeItem(ACTIVE_KEY);
    $("session-view").hidden = true;
    renderSessions();
  }
  async function importSession(file) {
    try {
      const session = JSON.parse(await file.text());
      if (!session || typeof session !== "object" || Array.isArray(session)) throw new Error("not a session object");
      if (typeof session.id !== "string") session.id = newSessionId(new Date());
      if (!Array.isArray(session.results)) session.results = [];
      const list = readSessions().filter((s) => s.id !== session.id);
      list.push(session);
      writeSessions(list);
      renderSessions();
      viewSession(session);
      message("session-msg", "ok", `imported ${session.id}`);
    } catch (error) {
      message("session-msg", "error", "could not import: " + error.message);
    }
  }

  // ── results, metrics, chart ─────────────────────────────────────────────
  function resultRow(r) {
    const m = modelByName(r.model);
    const label = r.top_index === null || r.top_index === undefined ? "–"
      : (m && m.labels && m.labels[r.top_index] !== undefined
        ? (String(m.labels[r.top_index]) === String(r.top_index) ? String(r.top_index) : `${m.labels[r.top_index]} (#${r.top_index})`)
        : `#${r.top_index}`);
    const view = el("button", { class: "link", text: "View" });
    view.addEventListener("click", () => {
      const out = $("output-view");
      out.hidden = false;
      out.textContent = r.error ? `request ${r.req_id}: ${r.error}`
        : `request ${r.req_id} · ${r.model} · top ${r.top_index} (${fmt(r.top_score, 4)})\n` + JSON.stringify(r.output || r.probs).replace(/,/g, ", ");
    });
    return el("tr", { class: r.error ? "error" : "" },
      el("td", { class: "num", text: r.req_id }),
      el("td", { text: r.mode }),
      el("td", { text: r.error ? "error" : label }),
      el("td", { class: "num", text: r.error ? r.error : fmt(r.top_score, 4) }),
      el("td", { class: "num", text: fmtMs(r.client_ms) }),
      el("td", { class: "num", text: fmtMs(r.server_ms) }),
      el("td", { class: "num", text: fmtMs(r.queue_ms) }),
      el("td", { class: "hide-sm", text: r.finished_at ? r.finished_at.slice(11, 23) : "–" }),
      el("td", {}, view));
  }
  function renderResults() {
    $("results").tBodies[0].replaceChildren(...recent.slice(0, MAX_ROWS).map(resultRow));
  }

  function renderMetrics() {
    if (!run) return;
    const lat = run.latencies;
    setText("m-done", `${run.done} / ${run.n}`);
    setText("m-p50", fmtMs(percentile(lat, 50)));
    setText("m-p90", fmtMs(percentile(lat, 90)));
    setText("m-p99", fmtMs(percentile(lat, 99)));
    const elapsed = ((run.finished || performance.now()) - run.started) / 1000;
    setText("m-total", `${(elapsed * 1000).toFixed(0)} ms`);
    setText("m-rps", elapsed > 0 ? `${(run.done / elapsed).toFixed(0)} req/s` : "–");
    setText("m-errors", run.errors);
    setText("metric-basis", run.basis === "client" ? "(client-measured latency)" : "(server-measured latency, /blast)");
    if (chart) {
      chart.setData([lat.map((_, i) => i + 1), lat.slice()]);
    }
  }

  let renderTimer = 0;
  function scheduleRender() {   // at most 5 redraws a second, so drawing does not slow the run it measures
    if (renderTimer) return;
    renderTimer = setTimeout(() => { renderTimer = 0; renderMetrics(); renderResults(); }, 200);
  }

  function toResult(mode, data, startedAt, finishedAt, clientMs) {
    const probs = Array.isArray(data.probs) ? data.probs : null;
    return {
      req_id: 0, mode, model: data.model, started_at: startedAt, finished_at: finishedAt,
      client_ms: clientMs === null ? null : Math.round(clientMs * 1000) / 1000,
      server_ms: data.latency_ms, queue_ms: data.queued_ms, top_index: data.top_index, top_score: data.top_score,
      probs: probs && probs.length <= MAX_STORED_PROBS ? probs : null,
      output: probs,   // for "View" only; not stored in the session
    };
  }
  const stored = ({ output, model, error, ...rest }) => (error ? { ...rest, error } : rest);

  // ── runs ────────────────────────────────────────────────────────────────
  function inputFor(m, kind) {
    const size = itemSize(m);
    const values = new Array(size);
    for (let i = 0; i < size; i++) values[i] = kind === "random" ? Math.random() : 0;
    return values;
  }

  async function runClient(m, n, parallel, kind, signal) {
    const zerosBody = kind === "zeros" ? JSON.stringify({ model: m.name, input: inputFor(m, "zeros") }) : null;
    let next = 0;
    const worker = async () => {
      while (next < n && !signal.aborted) {
        const index = next++;
        const body = zerosBody || JSON.stringify({ model: m.name, input: inputFor(m, "random") });
        const startedAt = new Date().toISOString();
        const t0 = performance.now();
        let result;
        try {
          result = await api("/infer", { method: "POST", body, signal });
        } catch (_) { return; }   // aborted
        const clientMs = performance.now() - t0;
        const finishedAt = new Date().toISOString();
        let item;
        if (result.ok) {
          item = toResult("client", result.data, startedAt, finishedAt, clientMs);
          run.latencies.push(clientMs);
        } else {
          run.errors++;
          item = { req_id: index, mode: "client", model: m.name, started_at: startedAt, finished_at: finishedAt, client_ms: clientMs, error: result.message };
          message("run-msg", "error", result.message);
        }
        item.req_id = index;
        run.done++;
        recent.unshift(item);
        if (recent.length > MAX_ROWS) recent.length = MAX_ROWS;
        recordInSession([stored(item)], m.name);
        scheduleRender();
      }
    };
    await Promise.all(Array.from({ length: Math.min(parallel, n) }, worker));
  }

  async function runServer(m, n, kind, signal) {
    const body = { model: m.name, n };
    if (kind === "random") body.input = inputFor(m, "random");
    const startedAt = new Date().toISOString();
    let result;
    try {
      result = await api("/blast", { method: "POST", body, signal });
    } catch (_) { return; }
    const finishedAt = new Date().toISOString();
    if (!result.ok) {
      run.errors++;
      message("run-msg", "error", result.message);
      return;
    }
    const items = result.data.results.map((data, i) => ({ ...toResult("server", data, startedAt, finishedAt, null), req_id: i }));
    for (const item of items) run.latencies.push(item.server_ms);
    run.done = items.length;
    run.serverTotal = result.data.total_ms;
    recent = items.slice().reverse().concat(recent).slice(0, MAX_ROWS);
    recordInSession(items.map(stored), m.name);
    message("run-msg", "ok", `server-side burst of ${result.data.count}: ${result.data.total_ms} ms on the server, parallel ${result.data.parallel ?? "–"}`);
  }

  async function start() {
    const name = $("model").value;
    const n = Math.max(1, Math.min(2000, Number($("n").value) || 1));
    const parallel = Math.max(1, Math.min(64, Number($("parallel").value) || 1));
    const kind = $("input-kind").value;
    const mode = document.querySelector("input[name=mode]:checked").value;
    if (!name) { message("run-msg", "error", "no model to test"); return; }
    localStorage.setItem("berth.loadtestModel", name);
    controller = new AbortController();
    $("run").disabled = true;
    $("stop").disabled = false;
    message("run-msg", "info", `running ${n} ${mode === "client" ? `requests, ${parallel} in parallel` : "requests in one server-side burst"}…`);
    try {
      const m = await ensureSignature(name, controller.signal);
      run = { basis: mode, n, done: 0, errors: 0, latencies: [], started: performance.now(), finished: null };
      if (mode === "client") await runClient(m, n, parallel, kind, controller.signal);
      else await runServer(m, n, kind, controller.signal);
      run.finished = performance.now();
      if (controller.signal.aborted) message("run-msg", "info", `stopped after ${run.done} of ${n}`);
      else if (mode === "client" && !run.errors) message("run-msg", "ok", `done: ${n} requests in ${(run.finished - run.started).toFixed(0)} ms`);
      else if (mode === "client") message("run-msg", "error", `done with ${run.errors} errors of ${n}; the last: ${recent.find((r) => r.error)?.error || "?"}`);
    } catch (error) {
      if (error.name !== "AbortError") message("run-msg", "error", error.message);
    } finally {
      controller = null;
      $("run").disabled = false;
      $("stop").disabled = true;
      flushSession();
      renderMetrics();
      renderResults();
      document.body.dataset.runState = "done";
    }
  }

  // ── wiring ──────────────────────────────────────────────────────────────
  berth.onHealth((result) => {
    if (!result.ok) { setText("m-inflight", "?"); if (!controller) message("run-msg", "error", berth.describe(result)); return; }
    lastHealth = result.data;
    const inflight = result.data.inflight;
    setText("m-inflight", inflight);
    const bar = $("m-inflight-bar");
    bar.style.width = `${Math.min(100, (inflight / 64) * 100)}%`;
    bar.parentElement.className = "bar" + (inflight > 48 ? " bad" : inflight > 16 ? " warn" : "");
  });

  document.addEventListener("DOMContentLoaded", () => {
    chart = berth.chart($("latency-chart"), {
      height: 220,
      scales: { x: { time: false } },
      legend: { show: false },
      axes: [{ label: "request" }, { label: "ms", size: 55 }],
      series: [{}, { label: "latency", stroke: "#2f6fed", fill: "rgba(47,111,237,.35)", paths: typeof uPlot !== "undefined" ? uPlot.paths.bars({ size: [0.9, 30] }) : undefined, points: { show: false } }],
    }, [[], []]);
    $("model").addEventListener("change", describeModel);
    $("run").addEventListener("click", start);
    $("stop").addEventListener("click", () => controller && controller.abort());
    $("session-start").addEventListener("click", startSession);
    $("session-stop").addEventListener("click", stopSession);
    $("export-json").addEventListener("click", () => exportSession(latestSession(), "json"));
    $("export-csv").addEventListener("click", () => exportSession(latestSession(), "csv"));
    $("save-server").addEventListener("click", () => saveSession(latestSession()));
    $("import-file").addEventListener("change", (event) => event.target.files[0] && importSession(event.target.files[0]));
    for (const radio of document.querySelectorAll("input[name=mode]")) radio.addEventListener("change", () => { $("parallel").disabled = radio.value === "server" && radio.checked; });
    loadModels();
    renderSessions();
  });
})();
