// berth web UI: helpers shared by every page. Server data is only ever written as text.
"use strict";

const berth = (() => {
  const $ = (id) => document.getElementById(id);

  /** An element: attributes (on* and innerHTML are never set), then children as text or nodes. */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = String(value);
      else if (key === "dataset") Object.assign(node.dataset, value);
      else if (key === "onclick") node.addEventListener("click", value);
      else if (/^on/i.test(key) || key === "innerHTML") throw new Error("not allowed: " + key);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function setText(id, value) {
    const node = typeof id === "string" ? $(id) : id;
    if (node) node.textContent = value === null || value === undefined ? "–" : String(value);
  }

  function message(id, kind, text) {
    const node = typeof id === "string" ? $(id) : id;
    if (!node) return;
    node.className = "msg " + (text ? kind : "");
    node.textContent = text || "";
  }

  const ADMIN_KEY = "berth.adminToken";
  const adminToken = () => sessionStorage.getItem(ADMIN_KEY) || "";
  const setAdminToken = (value) => value ? sessionStorage.setItem(ADMIN_KEY, value) : sessionStorage.removeItem(ADMIN_KEY);

  /** What went wrong, in words: the server's message, a 503's Retry-After, or that the server is down. */
  function describe(result) {
    if (result.status === 0) return "server unreachable: " + (result.error || "no answer") + " — is berth running?";
    let text = `${result.status}: ${result.error || "request failed"}`;
    if (result.status === 503) text += result.retryAfter ? ` — server busy, retry after ${result.retryAfter} s` : " — server busy or model not ready";
    if (result.status === 401) text += " — set the admin token (Models page) or API key";
    if (result.status === 403) text += " — not allowed from here";
    return text;
  }

  /** fetch JSON: {ok, status, data, error, retryAfter}. Never throws except on abort. */
  async function api(path, options = {}) {
    const headers = { Accept: "application/json" };
    const init = { method: options.method || "GET", headers, signal: options.signal, cache: "no-store" };
    if (options.body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = typeof options.body === "string" ? options.body : JSON.stringify(options.body);
    }
    const token = options.admin ? adminToken() : "";
    if (token) headers.Authorization = "Bearer " + token;
    let response;
    try {
      response = await fetch(path, init);
    } catch (error) {
      if (error && error.name === "AbortError") throw error;
      return { ok: false, status: 0, data: null, error: String(error && error.message || error) };
    }
    let data = null;
    const text = await response.text().catch(() => "");
    try { data = text ? JSON.parse(text) : null; } catch (_) { data = null; }
    const result = { ok: response.ok, status: response.status, data, retryAfter: response.headers.get("Retry-After") };
    if (!response.ok) {
      const error = data && (typeof data.error === "string" ? data.error : data.error && data.error.message);
      result.error = error || response.statusText || "request failed";
      result.message = describe(result);
    }
    return result;
  }

  const fmt = (value, digits = 2) => value === null || value === undefined || Number.isNaN(value) ? "–" : Number(value).toFixed(digits);
  const fmtMs = (value) => value === null || value === undefined ? "–" : `${fmt(value, value < 10 ? 3 : 1)} ms`;
  function ago(epochSeconds) {
    if (!epochSeconds) return "never";
    const s = Math.max(0, Date.now() / 1000 - epochSeconds);
    if (s < 60) return `${s.toFixed(0)} s ago`;
    if (s < 3600) return `${(s / 60).toFixed(0)} min ago`;
    if (s < 86400) return `${(s / 3600).toFixed(1)} h ago`;
    return new Date(epochSeconds * 1000).toLocaleString();
  }
  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    if (seconds < 90) return `${seconds.toFixed(0)} s`;
    if (seconds < 5400) return `${(seconds / 60).toFixed(0)} min`;
    return `${(seconds / 3600).toFixed(1)} h`;
  }

  /** The p-th percentile (0..100) of numbers, by linear interpolation (numpy's default). */
  function percentile(values, p) {
    if (!values.length) return null;
    const sorted = Float64Array.from(values).sort();
    const rank = (p / 100) * (sorted.length - 1);
    const lo = Math.floor(rank), hi = Math.ceil(rank);
    return sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo);
  }

  // ── the health pill in the header, polled for every page ────────────────
  const healthListeners = [];
  let lastHealth = null;
  function onHealth(listener) { healthListeners.push(listener); if (lastHealth) listener(lastHealth); }
  async function pollHealth() {
    const result = await api("/health");
    lastHealth = result;
    const pill = $("health-pill");
    if (pill) {
      if (result.ok) {
        const h = result.data;
        pill.className = "pill " + (h.ready ? "ok" : "bad");
        pill.textContent = `${h.status} · ${h.models_loaded} loaded · ${h.inflight} in flight`;
      } else {
        pill.className = "pill bad";
        pill.textContent = result.status === 0 ? "server unreachable" : `health ${result.status}`;
      }
    }
    for (const listener of healthListeners) listener(result);
  }
  let healthTimer = null;
  function startHealth(periodMs) {
    if (healthTimer) clearInterval(healthTimer);
    pollHealth();
    healthTimer = setInterval(pollHealth, periodMs);
  }

  /** A uPlot chart that follows its container's width (null when uPlot did not load). */
  function chart(container, options, data) {
    if (typeof uPlot === "undefined") { container.textContent = "chart library not loaded"; return null; }
    const width = () => Math.max(240, container.clientWidth || 600);
    const plot = new uPlot({ width: width(), height: options.height || 220, ...options }, data, container);
    if (typeof ResizeObserver !== "undefined") new ResizeObserver(() => plot.setSize({ width: width(), height: options.height || 220 })).observe(container);
    return plot;
  }

  /** Trigger a download of text as a file. */
  function download(fileName, text, type) {
    const url = URL.createObjectURL(new Blob([text], { type }));
    const link = el("a", { href: url, download: fileName });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  }

  document.addEventListener("DOMContentLoaded", () => {
    for (const link of document.querySelectorAll(".nav a")) {
      if (link.getAttribute("href") === location.pathname || (location.pathname === "/" && link.getAttribute("href") === "/ui/")) link.setAttribute("aria-current", "page");
    }
    startHealth(document.body.dataset.healthMs ? Number(document.body.dataset.healthMs) : 5000);
  });

  return { $, el, setText, message, api, describe, fmt, fmtMs, ago, duration, percentile, onHealth, chart, download, adminToken, setAdminToken };
})();
