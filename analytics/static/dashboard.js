// Turnout analytics dashboard: fetches one JSON document per panel from this server and
// draws it (uPlot for time series, plain HTML bars and tables for breakdowns). The URL's
// query (?range=24h&until=...) names the window, so a link shows the same figures later.
"use strict";

const RANGES = ["1h", "6h", "24h", "7d", "30d"];
const PALETTE = ["#2f6fde", "#e8833a", "#1f9d6b", "#8a5cd6", "#d1453b", "#14a3b8", "#c98a12", "#6b7686", "#b5487f", "#4d7c0f"];
const PERCENTILE_COLORS = { p50_ms: "#1f9d6b", p95_ms: "#e8833a", p99_ms: "#d1453b" };

const params = new URLSearchParams(location.search);
const state = { range: RANGES.includes(params.get("range")) ? params.get("range") : "24h", until: params.get("until"), traffic: null, charts: [] };

// -- formatting -------------------------------------------------------------------------------
const fmt = {
  int: (v) => (v == null ? "–" : Math.round(v).toLocaleString("en-US")),
  usd: (v) => (v == null ? "–" : (v < 0 ? "−$" : "$") + (Math.abs(v) >= 100 ? Math.abs(v).toFixed(0) : Math.abs(v) >= 1 ? Math.abs(v).toFixed(2) : Math.abs(v).toFixed(4))),
  pct: (v) => (v == null ? "–" : (100 * v).toFixed(1) + "%"),
  ms: (v) => (v == null ? "–" : v >= 1000 ? (v / 1000).toFixed(2) + " s" : v.toFixed(0) + " ms"),
  score: (v) => (v == null ? "–" : v.toFixed(2)),
  change: (v) => (v == null ? "new" : (v > 0 ? "+" : "") + (100 * v).toFixed(1) + "%"),
  p: (v) => (v == null ? "–" : v < 0.0001 ? v.toExponential(1) : v.toFixed(4)),
};
const BUCKET_NAMES = { 60: "minute", 300: "5 minutes", 3600: "hour", 21600: "6 hours", 86400: "day" };
const utc = (ts) => uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC");

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "style") node.style.cssText = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

function setState(card, status, message) {
  card.dataset.state = status;
  card.querySelectorAll(".message").forEach((m) => m.remove());
  if (message && card.tagName === "ARTICLE") card.append(el("div", { class: "message" }, message));
}

async function api(panel) {
  const query = new URLSearchParams({ range: state.range });
  if (state.until) query.set("until", state.until);
  const response = await fetch(`/api/${panel}?${query}`);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

// -- charts -----------------------------------------------------------------------------------
// A time chart in a card: lines, or bars stacked in series order. ``series`` is
// [{label, values, color}]; ``unit`` labels the y axis and ``format`` its ticks and legend.
function timeChart(card, buckets, series, { unit, format, stacked = false }) {
  const box = card.querySelector(".chart");
  if (box.chart) {  // redrawn (another percentile, another range): the old one goes first
    box.chart.destroy();
    state.charts = state.charts.filter((c) => c !== box.chart);
    box.chart = null;
  }
  box.replaceChildren();
  // a key with nothing to show gets no legend entry: no spend (stacked), no measurement (lines; 0 % is one)
  series = series.filter((s) => s.values.some((v) => (stacked ? v > 0 : v != null)));
  if (!series.length) {
    setState(card, "empty", "no traffic in this window");
    return;
  }
  let data = series.map((s) => s.values);
  const shown = series.map((s) => s.values);
  let order = series;
  if (stacked) {  // cumulative sums, drawn tallest first so each lower band stays visible
    const sums = [];
    data.forEach((values, i) => sums.push(values.map((v, j) => (v || 0) + (i ? sums[i - 1][j] : 0))));
    data = sums.slice().reverse();
    order = series.slice().reverse();
    shown.reverse();
  }
  const width = Math.max(320, box.clientWidth);
  const bars = stacked ? uPlot.paths.bars({ size: [0.7, 60] }) : undefined;
  const opts = {
    width,
    height: 250,
    tzDate: utc,
    cursor: { points: { size: 6 } },
    legend: { live: true },
    scales: { x: { time: true }, y: { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] } },
    axes: [
      { stroke: "#6b7686", grid: { stroke: "#eef2f7" }, ticks: { stroke: "#e3e8ef" } },
      { label: unit, labelSize: 18, size: 64, stroke: "#6b7686", grid: { stroke: "#eef2f7" }, ticks: { stroke: "#e3e8ef" }, values: (u, ticks) => ticks.map(format) },
    ],
    series: [
      { value: (u, ts) => (ts == null ? "–" : utc(ts).toISOString().slice(0, 16).replace("T", " ")) },
      ...order.map((s, i) => ({
        label: s.label,
        stroke: s.color,
        width: stacked ? 0 : 2,
        fill: stacked ? s.color : undefined,
        paths: bars,
        points: { show: !stacked && buckets.length <= 40 },
        spanGaps: false,
        value: (u, v, si, di) => format(di == null ? null : shown[i][di]),
      })),
    ],
  };
  const chart = new uPlot(opts, [buckets, ...data], box);
  box.chart = chart;
  chart.root.dataset.series = order.length;
  state.charts.push(chart);
  setState(card, "ready");
}

// Horizontal bars: rows [{name, value, text}], scaled to the largest value.
function barList(container, rows, { className = "" } = {}) {
  container.replaceChildren();
  const max = Math.max(...rows.map((r) => r.value || 0), 0);
  for (const row of rows) {
    const share = max > 0 ? (100 * (row.value || 0)) / max : 0;
    container.append(
      el("div", { class: "name", title: row.name }, row.name),
      el("div", { class: "track" }, el("div", { class: `fill ${className}`, style: `width:${share}%` })),
      el("div", { class: "num", "data-value": row.value ?? "" }, row.text),
    );
  }
}

function colored(entries) {
  return entries.map(([label, values], i) => ({ label, values, color: PALETTE[i % PALETTE.length] }));
}

// -- panels -----------------------------------------------------------------------------------
function drawTraffic(traffic) {
  const { buckets, totals, series } = traffic;
  const all = totals.all[""] || { requests: 0, failed: 0, spend_usd: 0, attempts: 0 };
  const kpi = (id, value, text) => {
    const node = document.getElementById(id);
    node.textContent = text;
    node.dataset.value = value ?? "";
  };
  kpi("kpi-requests", all.requests, fmt.int(all.requests));
  document.getElementById("kpi-requests-sub").textContent = `${fmt.int(all.attempts)} backend calls`;
  kpi("kpi-error-rate", all.error_rate, fmt.pct(all.error_rate));
  document.getElementById("kpi-errors-sub").textContent = `${fmt.int(all.failed)} failed requests`;
  kpi("kpi-spend", all.spend_usd, fmt.usd(all.spend_usd));
  document.getElementById("kpi-spend-sub").textContent = `${fmt.int(all.tokens_in)} in / ${fmt.int(all.tokens_out)} out tokens`;
  kpi("kpi-latency", all.p95_ms, fmt.ms(all.p95_ms));
  document.getElementById("kpi-latency-sub").textContent = `p50 ${fmt.ms(all.p50_ms)} · p99 ${fmt.ms(all.p99_ms)}, completed requests`;
  document.getElementById("kpis").dataset.state = "ready";
  document.querySelectorAll(".bucket-name").forEach((n) => (n.textContent = BUCKET_NAMES[traffic.window.bucket_s] || `${traffic.window.bucket_s} s`));

  const byKey = (dimension, figure) => Object.entries(series[dimension]).map(([key, lines]) => [key || "(none)", lines[figure]]);
  const spendCard = document.getElementById("panel-spend-time");
  timeChart(spendCard, buckets, colored(byKey("model", "spend_usd")), { unit: "USD", format: fmt.usd, stacked: true });

  const split = document.getElementById("panel-spend-split");
  const spendRows = (dimension) =>
    Object.entries(totals[dimension]).sort((a, b) => b[1].spend_usd - a[1].spend_usd).filter(([, t]) => t.spend_usd > 0).map(([key, t]) => ({ name: key || "(none)", value: t.spend_usd, text: fmt.usd(t.spend_usd) }));
  barList(document.getElementById("spend-by-tenant"), spendRows("tenant"));
  barList(document.getElementById("spend-by-model"), spendRows("model"));
  setState(split, Object.keys(totals.tenant).length ? "ready" : "empty", Object.keys(totals.tenant).length ? "" : "no spend in this window");

  const overall = series.all[""] || {};
  timeChart(document.getElementById("panel-latency"), buckets,
    Object.keys(PERCENTILE_COLORS).map((p) => ({ label: p.replace("_ms", ""), values: overall[p] || buckets.map(() => null), color: PERCENTILE_COLORS[p] })),
    { unit: "ms", format: fmt.ms });
  drawLatencyBreakdown();

  timeChart(document.getElementById("panel-errors-route"), buckets, colored(byKey("route", "error_rate")), { unit: "% of requests", format: fmt.pct });
  timeChart(document.getElementById("panel-errors-model"), buckets, colored(byKey("model", "attempt_error_rate").filter(([k]) => k !== "(none)")), { unit: "% of attempts", format: fmt.pct });
}

function drawLatencyBreakdown() {
  if (!state.traffic) return;
  const percentile = document.getElementById("latency-percentile").value;
  const dimension = document.getElementById("latency-dimension").value;
  const lines = Object.entries(state.traffic.series[dimension]).filter(([key]) => key !== "").map(([key, l]) => [key, l[percentile]]);
  timeChart(document.getElementById("panel-latency-by"), state.traffic.buckets, colored(lines), { unit: "ms", format: fmt.ms });
}

function drawSavings(savings) {
  const node = document.getElementById("kpi-saved");
  node.textContent = fmt.usd(savings.total.saved_usd);
  node.dataset.value = savings.total.saved_usd;
  const baseline = savings.title.match(/\(([^)]*)\)/);
  document.getElementById("kpi-saved-sub").textContent =
    savings.total.saved_pct == null ? "no spend in this window" : `${savings.total.saved_pct.toFixed(1)}% of ${fmt.usd(savings.total.baseline_usd)} on ${baseline ? baseline[1] : "the baseline"}`;
}

function drawQuality(quality) {
  const card = document.getElementById("panel-quality");
  const box = document.getElementById("quality-routes");
  box.replaceChildren();
  for (const r of quality.routes) {
    const rates = [["pass", r.pass_rate], ["esc", r.escalation_rate], ["fb", r.fallback_rate]];
    box.append(
      el("div", { class: "name" }, r.route, el("br"), el("small", {}, `${fmt.int(r.requests)} requests, ${fmt.int(r.validated)} validated`)),
      el("div", { class: "stack" }, ...rates.map(([cls, v]) => el("div", { class: "track" }, el("div", { class: `fill ${cls}`, style: `width:${v == null ? 0 : 100 * v}%` })))),
      el("div", { class: "stack-nums", "data-route": r.route }, ...rates.map(([cls, v]) => el("span", { "data-rate": cls, "data-value": v ?? "" }, v == null ? "n/a" : fmt.pct(v)))),
    );
  }
  setState(card, quality.routes.length ? "ready" : "empty", quality.routes.length ? "" : "no requests in this window");

  const feedbackCard = document.getElementById("panel-feedback");
  const rows = quality.feedback.map((f) => ({ name: `${f.route} · ${f.metric}`, value: f.mean_score, text: `${fmt.score(f.mean_score)} (${f.scores})` }));
  barList(document.getElementById("feedback-scores"), rows, { className: "pass" });
  setState(feedbackCard, rows.length ? "ready" : "empty", rows.length ? "" : "no feedback on requests in this window");
}

const REGRESSION_COLUMNS = [
  ["verdict", "verdict"], ["metric", "metric"], ["route", "route"], ["model", "model"],
  ["baseline_value", "baseline", "num"], ["candidate_value", "recent", "num"], ["relative_change", "change", "num"],
  ["n_baseline", "n baseline", "num"], ["n_candidate", "n recent", "num"], ["test", "test"], ["p_value", "p-value", "num"],
];

function metricFormat(metric) {
  if (metric.startsWith("latency")) return fmt.ms;
  if (metric.endsWith("_rate")) return fmt.pct;
  if (metric.startsWith("cost")) return fmt.usd;
  return fmt.score;
}

function drawRegressions(found) {
  const card = document.getElementById("panel-regressions");
  document.getElementById("regressions-title").textContent =
    `${found.regressions} regression${found.regressions === 1 ? "" : "s"} found, last quarter of the window against the rest`;
  document.getElementById("regressions-description").textContent = found.description;
  const table = document.getElementById("regressions-table");
  table.replaceChildren(el("tr", {}, ...REGRESSION_COLUMNS.map(([, title, cls]) => el("th", cls ? { class: cls } : {}, title))));
  for (const f of found.findings) {
    const value = metricFormat(f.metric);
    const cells = {
      verdict: el("span", { class: `verdict ${f.verdict.replaceAll(" ", "-")}` }, f.verdict),
      model: f.model === "*" ? "all" : f.model,
      baseline_value: value(f.baseline_value), candidate_value: value(f.candidate_value),
      relative_change: fmt.change(f.relative_change), p_value: fmt.p(f.p_value), test: f.test || "–",
    };
    table.append(el("tr", { class: f.verdict.replaceAll(" ", "-") },
      ...REGRESSION_COLUMNS.map(([key, , cls]) => el("td", cls ? { class: cls } : {}, key in cells ? cells[key] : f[key]))));
  }
  setState(card, found.findings.length ? "ready" : "empty", found.findings.length ? "" : "not enough requests in both windows to compare");
}

// -- loading ----------------------------------------------------------------------------------
const PANELS = {
  traffic: { draw: (d) => { state.traffic = d; drawTraffic(d); }, cards: ["kpis", "panel-spend-time", "panel-spend-split", "panel-latency", "panel-latency-by", "panel-errors-route", "panel-errors-model"] },
  savings: { draw: drawSavings, cards: [] },
  quality: { draw: drawQuality, cards: ["panel-quality", "panel-feedback"] },
  regressions: { draw: drawRegressions, cards: ["panel-regressions"] },
};

function load() {
  state.charts.forEach((c) => c.destroy());
  state.charts = [];
  document.querySelectorAll("nav button").forEach((b) => b.classList.toggle("active", b.dataset.range === state.range));
  return Promise.all(Object.entries(PANELS).map(async ([name, panel]) => {
    panel.cards.forEach((id) => setState(document.getElementById(id), "loading"));
    try {
      const data = await api(name);
      if (name === "traffic") showWindow(data.window);
      panel.draw(data);
    } catch (error) {
      panel.cards.forEach((id) => setState(document.getElementById(id), "error", `could not load ${name}: ${error.message}`));
      if (name === "savings") document.getElementById("kpi-saved-sub").textContent = error.message;
    }
  })).then(() => (document.body.dataset.loaded = "true"));
}

function showWindow(w) {
  const text = (iso) => iso.slice(0, 16).replace("T", " ");
  document.getElementById("window-label").textContent = `${text(w.since)} – ${text(w.until)} UTC · per ${BUCKET_NAMES[w.bucket_s] || w.bucket_s + " s"}`;
}

function init() {
  const nav = document.getElementById("ranges");
  for (const range of RANGES) {
    const button = el("button", { "data-range": range }, range);
    button.addEventListener("click", () => {
      state.range = range;
      const query = new URLSearchParams(location.search);
      query.set("range", range);
      history.replaceState(null, "", `?${query}`);
      document.body.dataset.loaded = "false";
      load();
    });
    nav.append(button);
  }
  document.getElementById("latency-percentile").addEventListener("change", drawLatencyBreakdown);
  document.getElementById("latency-dimension").addEventListener("change", drawLatencyBreakdown);
  let resizing;
  window.addEventListener("resize", () => {
    clearTimeout(resizing);
    resizing = setTimeout(() => state.charts.forEach((c) => c.setSize({ width: Math.max(320, c.root.parentElement.clientWidth), height: 250 })), 150);
  });
  load();
}

init();
