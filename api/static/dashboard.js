// The dashboard's pages: each polls the JSON API and redraws its tables and charts.
// Stored strings (event ids, payloads, raw bytes, reasons) only ever reach the page as text
// nodes (textContent), never as HTML, and chart labels are escaped for plotly's markup.
"use strict";

(function () {
  const body = document.body;
  const page = body.dataset.page;
  const POLL_MS = Math.max(1, Number(body.dataset.pollSeconds) || 5) * 1000;
  const TOKEN_KEY = "modelbus-api-token";

  // -- DOM ------------------------------------------------------------------------------------

  // el("td", {class: "num"}, "text", node, ...): strings become text nodes.
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "class") node.className = value;
      else if (name === "href") node.setAttribute("href", safeHref(value));
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  // Links are built from our own paths; anything else (a scheme such as javascript:) is dropped.
  function safeHref(value) {
    const text = String(value);
    return text.startsWith("/") && !text.startsWith("//") ? text : "#";
  }

  function link(href, text) {
    return el("a", {href: href}, text);
  }

  function query(params) {
    const search = new URLSearchParams();
    for (const [key, value] of Object.entries(params)) {
      if (value !== null && value !== undefined && value !== "") search.set(key, String(value));
    }
    const text = search.toString();
    return text ? "?" + text : "";
  }

  function fill(id, ...nodes) {
    const target = document.getElementById(id);
    if (target) target.replaceChildren(...nodes);
  }

  function empty(text) {
    return el("p", {class: "empty"}, text);
  }

  // columns: [{label, cell: row => string|Node, num: bool}]
  function table(columns, rows, emptyText) {
    if (!rows.length) return empty(emptyText || "nothing yet");
    return el("table", {},
      el("thead", {}, el("tr", {}, columns.map(c => el("th", {class: c.num ? "num" : null, scope: "col"}, c.label)))),
      el("tbody", {}, rows.map(row => el("tr", {}, columns.map(c => el("td", {class: c.num ? "num" : c.cls || null}, c.cell(row)))))));
  }

  function badge(text, kind) {
    return el("span", {class: "badge " + (kind || text)}, text);
  }

  function notice(text, kind) {
    const box = document.getElementById("notice");
    if (!box) return;
    box.className = "notice " + (kind || "");
    box.textContent = text;
    box.hidden = !text;
  }

  function setStatus(text, failed) {
    const status = document.getElementById("status");
    if (!status) return;
    status.textContent = text;
    status.classList.toggle("error", Boolean(failed));
  }

  // -- numbers and times ------------------------------------------------------------------------

  function num(value, digits) {
    if (value === null || value === undefined) return "–";
    if (typeof value !== "number") return String(value);
    if (Number.isInteger(value)) return value.toLocaleString("en-US");
    return value.toFixed(digits === undefined ? 3 : digits);
  }

  // The API's times are UTC without a zone; the dashboard shows UTC throughout (as plotly does).
  function time(value) {
    if (!value) return "–";
    return String(value).replace("T", " ").slice(0, 19);
  }

  function plotTime(value) {
    return String(value).replace("T", " ");
  }

  // plotly reads a few HTML-like tags in labels: stored strings go in as text.
  function plotText(value) {
    return String(value).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  }

  // -- the API ------------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function getJSON(url, init) {
    const response = await fetch(url, Object.assign({headers: {Accept: "application/json"}, cache: "no-store"}, init || {}));
    let payload = null;
    try {
      payload = await response.json();
    } catch (error) {
      payload = null;
    }
    if (!response.ok) {
      const detail = payload && payload.error ? payload.error : {code: "http_" + response.status, message: response.statusText};
      throw new ApiError(response.status, detail.code, detail.message);
    }
    return payload;
  }

  function token() {
    try {
      return window.sessionStorage.getItem(TOKEN_KEY) || "";
    } catch (error) {
      return "";
    }
  }

  // Write routes need the token when the server has one; the page asks for it on a 401.
  async function write(url, payload) {
    const headers = {"Content-Type": "application/json", Accept: "application/json"};
    if (token()) headers.Authorization = "Bearer " + token();
    try {
      return await getJSON(url, {method: "POST", headers: headers, body: JSON.stringify(payload || {})});
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) {
        notice("This server needs its API token (MODELBUS_API_TOKEN) for that: enter it at the top right and try again.", "error");
        const input = document.getElementById("token");
        if (input) input.focus();
      } else {
        notice(describe(error), "error");
      }
      throw error;
    }
  }

  function describe(error) {
    if (error instanceof ApiError) return error.code + ": " + error.message;
    return "cannot reach the API: " + error.message;
  }

  function setupToken() {
    const form = document.getElementById("token-form");
    const input = document.getElementById("token");
    if (!form || !input) return;
    input.value = token();
    form.addEventListener("submit", event => {
      event.preventDefault();
      try {
        if (input.value) window.sessionStorage.setItem(TOKEN_KEY, input.value);
        else window.sessionStorage.removeItem(TOKEN_KEY);
        notice(input.value ? "The token is kept for this tab." : "The token is forgotten.", "ok");
      } catch (error) {
        notice("This browser keeps no token: " + error.message, "error");
      }
    });
  }

  // Run `refresh` now and every POLL_MS; a failure shows in the status line and the next poll retries.
  function poll(refresh) {
    let timer = null;
    async function tick() {
      if (document.hidden) {  // a background tab waits for its turn without asking the API
        timer = window.setTimeout(tick, POLL_MS);
        return;
      }
      try {
        await refresh();
        setStatus("updated " + new Date().toLocaleTimeString() + " · every " + POLL_MS / 1000 + " s", false);
      } catch (error) {
        setStatus(describe(error), true);
      }
      timer = window.setTimeout(tick, POLL_MS);
    }
    tick();
    return () => window.clearTimeout(timer);
  }

  // -- charts ---------------------------------------------------------------------------------

  const COLORS = ["#1f4e79", "#d9822b", "#2e8540", "#8e44ad", "#c0392b", "#16a085", "#7f8c8d"];
  const CONFIG = {displayModeBar: false, responsive: true};

  function plot(id, traces, layout) {
    const target = document.getElementById(id);
    if (!target || !window.Plotly) return;
    const base = {
      margin: {l: 50, r: 16, t: 10, b: 40}, paper_bgcolor: "#fff", plot_bgcolor: "#fff",
      font: {size: 11, color: "#1d2733"}, colorway: COLORS, showlegend: false,
      xaxis: {gridcolor: "#eef1f5", zeroline: false}, yaxis: {gridcolor: "#eef1f5", zeroline: false, rangemode: "tozero"},
    };
    window.Plotly.react(target, traces, Object.assign(base, layout || {}), CONFIG);
  }

  function timeSeries(id, series, key, name, options) {
    const t = series.t.map(ms => new Date(ms).toISOString().replace("T", " ").replace("Z", ""));
    plot(id, [Object.assign({x: t, y: series[key], type: "scatter", mode: "lines+markers", name: name,
      marker: {size: 4}, line: {width: 2}, connectgaps: false}, options || {})],
    {xaxis: {type: "date", gridcolor: "#eef1f5"}});
  }

  // -- pages ----------------------------------------------------------------------------------

  function versionHref(model, dataset, version) {
    return "/models/" + encodeURIComponent(model) + "/versions/" + encodeURIComponent(version) + query({dataset: dataset});
  }

  function modelHref(model, dataset) {
    return "/models/" + encodeURIComponent(model) + query({dataset: dataset});
  }

  function eventHref(position) {
    return "/events" + query({after: Math.max(0, position - 1), limit: 1});
  }

  // The classifiers, whose main metric is accuracy (messages/types.py MAIN_METRICS); the rest score R².
  const CLASSIFIERS = new Set(["mlp", "dtr"]);

  function metricName(model) {
    return CLASSIFIERS.has(model) ? "accuracy" : "R²";
  }

  function buildColumns() {
    return [
      {label: "position", num: true, cell: b => link(eventHref(b.position), num(b.position))},
      {label: "model", cell: b => link(modelHref(b.model, b.dataset), b.model)},
      {label: "dataset", cell: b => b.dataset},
      {label: "status", cell: b => badge(b.status)},
      {label: "version", num: true, cell: b => b.version ? link(versionHref(b.model, b.dataset, b.version), "v" + b.version) : "–"},
      {label: "events", num: true, cell: b => num(b.n_events)},
      {label: "fit s", num: true, cell: b => num(b.fit_seconds, 2)},
      {label: "finished (UTC)", cell: b => time(b.finished_at)},
      {label: "reason", cls: "wrap", cell: b => b.reason || ""},
    ];
  }

  function alertColumns() {
    return [
      {label: "time (UTC)", cell: a => time(a.created_at)},
      {label: "rule", cell: a => a.rule},
      {label: "model", cell: a => a.version ? link(versionHref(a.model, a.dataset, a.version), a.model + " v" + a.version) : a.model},
      {label: "value", num: true, cell: a => a.value === undefined ? "–" : num(a.value, 4)},
      {label: "subject", cls: "wrap", cell: a => a.subject},
      {label: "rule says", cls: "wrap", cell: a => a.detail + (a.action === "rebuild" ? " (rebuild)" : "")},
    ];
  }

  function alerts() {
    const search = params();
    let shown = "";
    poll(async () => {
      const [page, overview] = await Promise.all([
        getJSON("/api/alerts" + query({before: search.get("before"), limit: search.get("limit") || body.dataset.limit})),
        getJSON("/api/feedback" + query({limit: 1})),
      ]);
      const rules = Object.entries(page.counts);
      plot("chart-rules", [{x: rules.map(r => plotText(r[0])), y: rules.map(r => r[1]), type: "bar", marker: {color: COLORS[4]}}],
        {margin: {l: 40, r: 10, t: 10, b: 70}});
      const statuses = Object.entries(overview.counts);
      plot("chart-feedback", [{x: statuses.map(r => plotText(r[0])), y: statuses.map(r => r[1]), type: "bar", marker: {color: COLORS[2]}}],
        {margin: {l: 40, r: 10, t: 10, b: 70}});
      const items = [["/alerts", "newest"]];
      if (page.next !== null) items.push(["/alerts" + query({before: page.next, limit: search.get("limit")}), "older"]);
      pager(items);
      const key = JSON.stringify(page.alerts);
      if (key === shown) return;
      shown = key;
      fill("rows", table(alertColumns(), page.alerts, "no alert yet: rules fire on predictions, live metrics and drift"));
    });
  }

  function windows() {
    const search = params();
    const name = body.dataset.name;
    let shown = "";
    const form = document.getElementById("filters");
    if (form) fillForm(form, search);
    poll(async () => {
      const declared = (await getJSON("/api/dashboard/windows")).windows;
      const duration = ms => ms === null || ms === undefined ? "–" : (ms % 60000 === 0 ? ms / 60000 + " min" : ms / 1000 + " s");
      fill("window-table", table([
        {label: "window", cell: w => link("/windows" + query({name: w.name}), w.name)},
        {label: "stream", cell: w => w.stream},
        {label: "kind", cell: w => w.kind},
        {label: "size / gap", cell: w => w.kind === "session" ? "gap " + duration(w.gap_ms) : duration(w.size_ms) +
          (w.kind === "hopping" ? " every " + duration(w.advance_ms) : "")},
        {label: "grace", cell: w => duration(w.grace_ms)},
        {label: "aggregates", cls: "wrap", cell: w => w.columns.join(", ")},
        {label: "closed", num: true, cell: w => num(w.closed)},
        {label: "late events", num: true, cell: w => num(w.late_events)},
        {label: "watermark (UTC)", cell: w => w.watermark ? time(w.watermark) : "–"},
        {label: "model", cell: w => w.model || "–"},
      ], declared, "no window declared"));
      plot("chart-windows", [
        {x: declared.map(w => plotText(w.name)), y: declared.map(w => w.closed), type: "bar", name: "closed"},
        {x: declared.map(w => plotText(w.name)), y: declared.map(w => w.late_events), type: "bar", name: "late"},
      ], {barmode: "group", showlegend: true, legend: {orientation: "h", y: 1.15}, margin: {l: 50, r: 10, t: 10, b: 60}});
      if (!name) return;
      const page = await getJSON("/api/windows/" + encodeURIComponent(name) +
        query({key: search.get("key"), after: search.get("after"), limit: search.get("limit") || body.dataset.limit}));
      const items = [["/windows" + query({name: name, key: search.get("key")}), "first"]];
      if (page.next !== null) items.push(["/windows" + query({name: name, key: search.get("key"), after: page.next}), "next"]);
      pager(items);
      const key = JSON.stringify(page.rows);
      if (key === shown) return;
      shown = key;
      const columns = page.rows.length ? page.rows[0].columns : [];
      fill("rows", table([
        {label: "key", cell: r => r.key},
        {label: "start (UTC)", cell: r => time(r.start)},
        {label: "end (UTC)", cell: r => time(r.end)},
        ...columns.map((column, i) => ({label: column, num: true, cell: r => r.values[i] === null ? "–" : typeof r.values[i] === "number" ? num(r.values[i], 4) : String(r.values[i])})),
      ], page.rows, "no closed window yet"));
      if (columns.length) {
        fill("values-caption", columns[0] + " by window start" + (search.get("key") ? " (key " + search.get("key") + ")" : " (this page's rows)"));
        plot("chart-values", [{x: page.rows.map(r => r.start.replace("T", " ").replace("Z", "")), y: page.rows.map(r => r.values[0]),
          type: "scatter", mode: "markers", marker: {size: 5}}], {xaxis: {type: "date", gridcolor: "#eef1f5"}});
      }
    });
  }

  function showLive(live) {
    if (!live) {
      fill("live", empty("no live metrics"));
      return;
    }
    const rows = [["feedback joined", num(live.feedback_count)]];
    for (const key of ["accuracy", "mae", "rmse"]) {
      if (live[key] !== undefined && live[key] !== null) rows.push([key + " (whole life)", num(live[key], 4)]);
      if (live.last && live.last[key] !== undefined && live.last[key] !== null) {
        rows.push([key + " (last " + num(live.last.n) + ")", num(live.last[key], 4)]);
      }
    }
    const nodes = [el("table", {}, el("tbody", {}, ...rows.map(([name, value]) =>
      el("tr", {}, el("th", {scope: "row"}, name), el("td", {class: "num"}, value)))))];
    if (!live.feedback_count) nodes.push(empty("no feedback joined yet: send {\"type\":\"feedback\",\"id\":<prediction id>,\"label\":...}"));
    fill("live", ...nodes);
    const drift = Object.entries(live.drift || {});
    if (!drift.length) {
      fill("chart-drift", empty("fewer than 100 recorded inputs: no drift yet"));
      return;
    }
    plot("chart-drift", [{x: drift.map(d => plotText(d[0])), y: drift.map(d => d[1]), type: "bar",
      marker: {color: drift.map(d => d[1] >= 0.25 ? COLORS[4] : d[1] >= 0.1 ? COLORS[1] : COLORS[2])}}],
    {margin: {l: 50, r: 10, t: 10, b: 50}, xaxis: {type: "category"},
      shapes: [0.1, 0.25].map(y => ({type: "line", xref: "paper", x0: 0, x1: 1, y0: y, y1: y, line: {dash: "dot", width: 1, color: "#7f8c8d"}}))});
  }

  function overview() {
    poll(async () => {
      const data = await getJSON("/api/dashboard/overview");
      const series = data.series;
      const last = values => {
        for (let i = values.length - 1; i >= 0; i--) if (values[i] !== null) return values[i];
        return null;
      };
      fill("card-head", num(data.log_head));
      fill("card-mode", data.mode + " mode");
      fill("card-ingest", num(last(series.ingest_rate), 1));
      fill("card-predictions", num(last(series.prediction_rate), 1));
      fill("card-queue", num(data.build_queue.length));
      fill("card-dead", num(data.dead_letters));
      fill("card-failures", num(data.handler_failures.count));
      fill("card-alerts", num(Object.values(data.alerts.counts).reduce((a, b) => a + b, 0)));
      fill("card-feedback", num(data.feedback.joined || 0));
      const otherFeedback = Object.entries(data.feedback).filter(([k]) => k !== "joined");
      fill("card-feedback-sub", otherFeedback.length ? otherFeedback.map(([k, v]) => v + " " + k).join(", ") : "feedback events joined");
      fill("recent-alerts", table(alertColumns(), data.alerts.recent, "no alert yet"));

      timeSeries("chart-head", series, "head", "log head");
      timeSeries("chart-ingest", series, "ingest_rate", "events/s", {type: "bar", mode: undefined, marker: {color: COLORS[1]}});
      timeSeries("chart-predictions", series, "prediction_rate", "predictions/s", {line: {color: COLORS[2], width: 2}});
      const t = series.t.map(ms => new Date(ms).toISOString().replace("T", " ").replace("Z", ""));
      const lagTraces = Object.entries(series.lag).map(([name, values]) => ({
        x: t, y: values, type: "scatter", mode: "lines+markers", name: plotText(name), marker: {size: 4}}));
      plot("chart-lag", lagTraces, {showlegend: true, legend: {orientation: "h", y: 1.15}, xaxis: {type: "date", gridcolor: "#eef1f5"}});

      fill("handlers", table([
        {label: "handler", cell: h => h.handler},
        {label: "position", num: true, cell: h => num(h.position)},
        {label: "lag", num: true, cell: h => num(h.lag)},
        {label: "lease", cell: h => h.owner || "free"},
        {label: "moved (UTC)", cell: h => time(h.updated_at)},
      ], data.handlers, "no handler has run yet"));

      fill("models", table([
        {label: "model", cell: m => link(modelHref(m.model, m.dataset), m.model)},
        {label: "dataset", cell: m => m.dataset},
        {label: "production", num: true, cell: m => link(versionHref(m.model, m.dataset, m.production), "v" + m.production)},
        {label: "main metric", num: true, cell: m => num(m.main_metric, 4) + " " + metricName(m.model)},
      ], data.models, "no model in production yet"));

      fill("queue", table([
        {label: "position", num: true, cell: q => link(eventHref(q.position), num(q.position))},
        {label: "model", cell: q => q.model},
        {label: "dataset", cell: q => q.dataset},
        {label: "id", cls: "wrap", cell: q => q.id},
        {label: "requested (UTC)", cell: q => time(q.requested_at)},
      ], data.build_queue, "no build waiting"));

      fill("builds", table(buildColumns(), data.builds, "no build yet"));

      const reasons = data.dead_letter_reasons;
      plot("chart-reasons", [{x: reasons.map(r => plotText(r.code)), y: reasons.map(r => r.count), type: "bar",
        marker: {color: COLORS[4]}}], {margin: {l: 40, r: 10, t: 10, b: 70}});
      fill("reasons", table([
        {label: "reason", cell: r => link("/dead-letters" + query({code: r.code}), r.code)},
        {label: "count", num: true, cell: r => num(r.count)},
        {label: "latest (UTC)", cell: r => time(r.latest)},
      ], reasons, "no dead letters"));

      fill("failures", table([
        {label: "handler", cell: f => f.handler},
        {label: "position", num: true, cell: f => link(eventHref(f.position), num(f.position))},
        {label: "event id", cls: "wrap", cell: f => f.event_id},
        {label: "error", cls: "wrap", cell: f => f.message},
      ], data.handler_failures.recent, "every event was applied"));
    });
  }

  // One figure per model and dataset: metric by version (left) and over time with production (right).
  function historyFigure(id, entry) {
    const versions = entry.versions;
    const byVersion = new Map(versions.map(v => [v.version, v]));
    const isProduction = v => v.version === entry.production;
    const hover = versions.map(v => plotText("v" + v.version + " · " + num(v.main_metric, 4) + " · " + time(v.created_at) +
      " UTC · " + v.n_events + " events"));
    const traces = [
      {x: versions.map(v => v.version), y: versions.map(v => v.main_metric), type: "scatter", mode: "lines+markers",
        name: "versions", text: hover, hoverinfo: "text", line: {color: "#9fb3c8"},
        marker: {size: versions.map(v => isProduction(v) ? 14 : 8), symbol: versions.map(v => isProduction(v) ? "star" : "circle"),
          color: versions.map(v => isProduction(v) ? COLORS[1] : COLORS[0])}},
      {x: versions.map(v => plotTime(v.created_at)), y: versions.map(v => v.main_metric), type: "scatter", mode: "markers",
        name: "built", text: hover, hoverinfo: "text", xaxis: "x2", yaxis: "y2", marker: {size: 8, color: COLORS[0]}},
    ];
    const moves = entry.promotions.filter(p => p.status === "moved" && byVersion.has(p.version));
    if (moves.length) {
      const x = [], y = [], text = [];
      for (const move of moves) {
        x.push(plotTime(move.created_at));
        y.push(byVersion.get(move.version).main_metric);
        text.push(plotText("production → v" + move.version + (move.automatic ? " (automatic)" : " (promoted)") +
          " at position " + move.position));
      }
      x.push(new Date().toISOString().replace("T", " ").replace("Z", ""));
      y.push(y[y.length - 1]);
      text.push("production now: v" + entry.production);
      traces.push({x: x, y: y, type: "scatter", mode: "lines+markers", name: "production", text: text, hoverinfo: "text",
        xaxis: "x2", yaxis: "y2", line: {shape: "hv", color: COLORS[1], width: 2},
        marker: {size: x.map((_, i) => i === x.length - 1 ? 1 : 13), symbol: "star", color: COLORS[1]}});
    }
    plot(id, traces, {
      grid: {rows: 1, columns: 2, pattern: "independent"},
      margin: {l: 50, r: 16, t: 10, b: 50},
      xaxis: {title: {text: "version"}, dtick: 1, gridcolor: "#eef1f5"},
      yaxis: {title: {text: metricName(entry.model)}, gridcolor: "#eef1f5"},
      xaxis2: {type: "date", nticks: 5, gridcolor: "#eef1f5"},
      yaxis2: {gridcolor: "#eef1f5"},
    });
  }

  function historyCharts(container, entries) {
    const holder = document.getElementById(container);
    if (!holder) return;
    const wanted = entries.map((entry, i) => "history-" + i);
    if (holder.children.length !== entries.length) {
      holder.replaceChildren(...entries.map((entry, i) => el("figure", {class: "panel"},
        el("figcaption", {}, link(modelHref(entry.model, entry.dataset), entry.model), " on " + entry.dataset +
          " · production " + (entry.production ? "v" + entry.production : "none")),
        el("div", {class: "chart wide history", id: wanted[i]}))));
    } else {
      entries.forEach((entry, i) => {
        const caption = holder.children[i].querySelector("figcaption");
        caption.replaceChildren(link(modelHref(entry.model, entry.dataset), entry.model), " on " + entry.dataset +
          " · production " + (entry.production ? "v" + entry.production : "none"));
      });
    }
    entries.forEach((entry, i) => historyFigure(wanted[i], entry));
  }

  function models() {
    poll(async () => {
      const data = await getJSON("/api/dashboard/models");
      fill("model-table", table([
        {label: "model", cell: m => link(modelHref(m.model, m.dataset), m.model)},
        {label: "dataset", cell: m => m.dataset},
        {label: "production", num: true, cell: m => m.production ? link(versionHref(m.model, m.dataset, m.production), "v" + m.production) : "none"},
        {label: "its metric", num: true, cell: m => {
          const prod = m.versions.find(v => v.version === m.production);
          return prod ? num(prod.main_metric, 4) + " " + metricName(m.model) : "–";
        }},
        {label: "versions", num: true, cell: m => num(m.versions.length)},
        {label: "latest built (UTC)", cell: m => time(m.versions[m.versions.length - 1].created_at)},
      ], data.models, "no model built yet: post a build command (modelbus build mlp)"));
      historyCharts("model-charts", data.models);
    });
  }

  function model() {
    const name = body.dataset.model;
    const dataset = body.dataset.dataset;
    const form = document.getElementById("build-form");
    form.addEventListener("submit", async event => {
      event.preventDefault();
      const payload = {dataset: form.elements.dataset.value};
      const params = form.elements.params.value.trim();
      if (params) {
        try {
          payload.params = JSON.parse(params);
        } catch (error) {
          notice("params must be a JSON object: " + error.message, "error");
          return;
        }
      }
      try {
        const outcome = await write("/api/models/" + encodeURIComponent(name) + "/build", payload);
        notice("build_" + name + " " + outcome.status + (outcome.position ? " at position " + outcome.position : "") +
          " (id " + outcome.id + "); it shows under build attempts once built.", "ok");
      } catch (error) {
        // write() said why
      }
    });

    async function promote(ds, version) {
      try {
        const outcome = await write("/api/models/" + encodeURIComponent(name) + "/promote", {dataset: ds, version: version});
        notice("promote v" + version + " " + outcome.status + "; production moves when the builds handler applies it.", "ok");
      } catch (error) {
        // write() said why
      }
    }

    poll(async () => {
      const [detail, history] = await Promise.all([
        getJSON("/api/models/" + encodeURIComponent(name) + query({dataset: dataset})),
        getJSON("/api/dashboard/models" + query({model: name, dataset: dataset})),
      ]);
      historyCharts("model-charts", history.models);
      const sections = detail.datasets.map(ds => el("section", {class: "panel"},
        el("h2", {}, "Versions on " + ds.dataset + " · production " + (ds.production ? "v" + ds.production : "none")),
        table([
          {label: "version", num: true, cell: v => link(versionHref(name, ds.dataset, v.version), "v" + v.version)},
          {label: "built (UTC)", cell: v => time(v.created_at)},
          {label: metricName(name), num: true, cell: v => num(v.main_metric, 4)},
          {label: "events", num: true, cell: v => num(v.lineage.n_events)},
          {label: "params", cls: "wrap", cell: v => el("code", {}, JSON.stringify(v.params))},
          {label: "", cell: v => v.production ? badge("production") :
            el("button", {type: "button", class: "small promote", "data-dataset": ds.dataset, "data-version": v.version}, "promote")},
        ], ds.versions.slice().reverse())));
      fill("datasets", ...(sections.length ? sections : [el("section", {class: "panel"}, empty("no version of " + name + " yet"))]));
      for (const button of document.querySelectorAll("button.promote")) {
        button.addEventListener("click", () => promote(button.dataset.dataset, Number(button.dataset.version)));
      }
      fill("builds", table(buildColumns(), detail.builds, "no build attempt yet"));
    });
  }

  function version() {
    const name = body.dataset.model;
    const dataset = body.dataset.dataset;
    const number = Number(body.dataset.version);
    const verifyUrl = "/api/models/" + encodeURIComponent(name) + "/versions/" + number + "/verify" + query({dataset: dataset});
    let drawn = false;

    function showVerify(state) {
      const labels = {never: "not run here", queued: "queued", running: "running…", ok: "identical", mismatch: "MISMATCH",
        failed: "failed"};
      fill("verify-state", state.state === "never" ? labels.never : badge(labels[state.state] || state.state, state.state));
      let detail = "";
      if (state.finished_at) detail = "at " + time(state.finished_at) + " UTC in " + num(state.seconds, 1) + " s";
      if (state.error) detail = state.error;
      fill("verify-detail", detail);
      fill("verify-differences", ...(state.differences || []).map(line => el("li", {}, line)));
      document.getElementById("verify-button").disabled = state.state === "queued" || state.state === "running";
    }

    document.getElementById("verify-button").addEventListener("click", async () => {
      try {
        showVerify(await write(verifyUrl, {}));
      } catch (error) {
        // write() said why
      }
    });
    document.getElementById("promote-button").addEventListener("click", async () => {
      try {
        const outcome = await write("/api/models/" + encodeURIComponent(name) + "/promote", {dataset: dataset, version: number});
        notice("promote v" + number + " " + outcome.status + "; production moves when the builds handler applies it.", "ok");
      } catch (error) {
        // write() said why
      }
    });

    poll(async () => {
      const [detail, verify] = await Promise.all([
        getJSON("/api/models/" + encodeURIComponent(name) + query({dataset: dataset, builds: 0})),
        getJSON(verifyUrl),
      ]);
      showVerify(verify);
      const ds = detail.datasets.find(d => d.dataset === dataset);
      const found = ds && ds.versions.find(v => v.version === number);
      if (!found) return;
      fill("production", ds.production === number ? "yes" : "no");
      document.getElementById("promote-button").disabled = ds.production === number;
      showLive(found.live);
      if (drawn) return;  // a version never changes: draw its charts once
      drawn = true;
      const metrics = found.metrics;
      // A category label's classes are its values (metrics.classes holds their codes).
      const classes = metrics.label_values ? metrics.label_values.map(plotText)
        : (metrics.classes || []).map(c => plotText(num(c, Number.isInteger(c) ? 0 : 2)));
      if (metrics.confusion_matrix) {
        const matrix = metrics.confusion_matrix;
        plot("chart-confusion", [{z: matrix, x: classes, y: classes, type: "heatmap", colorscale: [[0, "#f4f8fc"], [1, "#1f4e79"]], showscale: true,
          text: matrix.map(row => row.map(String)), texttemplate: "%{text}", hovertemplate: "true %{y}, predicted %{x}: %{z}<extra></extra>"}],
        {margin: {l: 50, r: 10, t: 10, b: 50}, xaxis: {title: {text: "predicted"}, type: "category"},
          yaxis: {title: {text: "true"}, type: "category", autorange: "reversed"}});
      }
      if (metrics.class_counts) {
        plot("chart-classes", [
          {x: classes, y: metrics.class_counts.train, type: "bar", name: "train"},
          {x: classes, y: metrics.class_counts.test, type: "bar", name: "test"},
        ], {barmode: "group", showlegend: true, legend: {orientation: "h", y: 1.1}, xaxis: {title: {text: "class"}, type: "category"}});
      }
    });
  }

  function params() {
    return new URLSearchParams(window.location.search);
  }

  function fillForm(form, search) {
    for (const [key, value] of search.entries()) {
      const field = form.elements.namedItem(key);
      if (field) field.value = value;
    }
  }

  // items: [text] or [href, text]; each pager above and below the table gets its own nodes.
  function pager(items) {
    for (const nav of document.querySelectorAll("nav.pager")) {
      nav.replaceChildren(...items.map(item => item.length === 2 ? link(item[0], item[1]) : el("span", {}, item[0])));
    }
  }

  function pageHref(path, search, after) {
    const next = new URLSearchParams(search);
    if (after) next.set("after", String(after));
    else next.delete("after");
    return path + (next.toString() ? "?" + next.toString() : "");
  }

  function payloadCell(value) {
    const text = JSON.stringify(value);
    if (text.length <= 160) return el("code", {}, text);
    return el("details", {}, el("summary", {}, el("code", {}, text.slice(0, 120) + "…")), el("pre", {class: "raw"}, JSON.stringify(value, null, 2)));
  }

  function events() {
    const search = params();
    fillForm(document.getElementById("filters"), search);
    const after = Number(search.get("after") || 0);
    const filtered = ["type", "name", "dataset"].some(key => search.get(key));
    let shown = "";
    poll(async () => {
      const apiQuery = {};
      for (const key of ["after", "limit", "type", "name", "dataset"]) apiQuery[key] = search.get(key);
      const data = await getJSON("/api/events" + query(apiQuery));
      const limit = Number(search.get("limit") || 100);
      const items = [[pageHref("/events", search, 0), "first"]];
      if (after > 0 && !filtered) items.push([pageHref("/events", search, Math.max(0, after - limit)), "previous"]);
      if (data.next !== null) items.push([pageHref("/events", search, data.next), "next"]);
      if (!filtered) items.push([pageHref("/events", search, Math.max(0, data.head - limit)), "latest"]);
      items.push(["log head " + num(data.head) + (data.next === null ? " · this page grows as events arrive" : "")]);
      pager(items);
      const key = JSON.stringify(data.events);
      if (key === shown) return;
      shown = key;
      fill("rows", table([
        {label: "position", num: true, cell: e => num(e.position)},
        {label: "received (UTC)", cell: e => time(e.received_at)},
        {label: "name", cell: e => e.name},
        {label: "dataset", cell: e => e.dataset},
        {label: "id", cls: "wrap event-id", cell: e => e.id},
        {label: "source", cell: e => e.source},
        {label: "event", cls: "wrap", cell: e => payloadCell(e.event)},
      ], data.events, "no events here"));
    });
  }

  function deadLetters() {
    const search = params();
    const form = document.getElementById("filters");
    const select = document.getElementById("code-select");
    let shown = "";
    poll(async () => {
      const apiQuery = {};
      for (const key of ["after", "limit", "code"]) apiQuery[key] = search.get(key);
      const data = await getJSON("/api/dashboard/dead-letters" + query(apiQuery));
      const wanted = search.get("code") || "";
      const codes = data.reasons.map(r => r.code);
      if (wanted && !codes.includes(wanted)) codes.push(wanted);
      if (select.options.length !== codes.length + 1) {
        select.replaceChildren(el("option", {value: ""}, "any"),
          ...codes.map(code => {
            const reason = data.reasons.find(r => r.code === code);
            return el("option", {value: code}, code + " (" + (reason ? reason.count : 0) + ")");
          }));
        fillForm(form, search);
      }
      const items = [[pageHref("/dead-letters", search, 0), "first"]];
      if (data.next !== null) items.push([pageHref("/dead-letters", search, data.next), "next"]);
      items.push([num(data.total) + " dead letters" + (wanted ? " with reason " + wanted : "")]);
      pager(items);
      const key = JSON.stringify(data.errors);
      if (key === shown) return;
      shown = key;
      fill("rows", table([
        {label: "id", num: true, cell: d => num(d.id)},
        {label: "received (UTC)", cell: d => time(d.received_at)},
        {label: "reason", cell: d => badge(d.code, "failed")},
        {label: "message", cls: "wrap", cell: d => d.reason},
        {label: "source", cell: d => [d.source.kind, d.source.topic, d.source.partition, d.source.offset]
          .filter(v => v !== undefined && v !== null).join(" ")},
        {label: "bytes", num: true, cell: d => num(d.raw_bytes)},
        {label: "raw", cls: "wrap", cell: d => [
          d.raw_encoding === "base64" ? el("div", {class: "empty"}, "not UTF-8, shown as base64") : null,
          el("pre", {class: "raw"}, d.raw),
          d.truncated ? el("div", {class: "empty"}, "first 4 KiB; the store keeps every byte") : null,
        ]},
      ], data.errors, "no dead letters here"));
    });
  }

  setupToken();
  const pages = {overview: overview, models: models, model: model, version: version, windows: windows, alerts: alerts, events: events,
    "dead-letters": deadLetters};
  if (pages[page]) pages[page]();
  else setStatus("", false);
})();
