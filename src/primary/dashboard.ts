/**
 * GET /dashboard: one page served by the admin listener itself, with no request leaving the machine
 * (it works behind a firewall): time-series charts of the last 15 minutes drawn with uPlot from
 * /api/history (history.ts), and under them the numeric tables from /api/overview and /api/backends.
 * uPlot's script and style are read from node_modules once at start and served under /dashboard/.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { log } from './log.js';

export interface DashboardAsset {
  readonly type: string;
  readonly body: string;
}

/** Path → uPlot's file (the version pinned in package.json). Empty when uPlot is missing: the page then
 *  says so where the charts would be, and its tables still work. */
function loadAssets(): Map<string, DashboardAsset> {
  const assets = new Map<string, DashboardAsset>();
  try {
    const require = createRequire(import.meta.url);
    const read = (file: string): string => readFileSync(require.resolve(`uplot/dist/${file}`), 'utf8');
    assets.set('/dashboard/uplot.min.js', { type: 'text/javascript; charset=utf-8', body: read('uPlot.iife.min.js') });
    assets.set('/dashboard/uplot.min.css', { type: 'text/css; charset=utf-8', body: read('uPlot.min.css') });
  } catch (error) {
    log.warn({ err: error }, `dashboard: uPlot not found (${(error as Error).message}); the dashboard shows tables without charts`);
    assets.clear();
  }
  return assets;
}

export const DASHBOARD_ASSETS: ReadonlyMap<string, DashboardAsset> = loadAssets();

export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sluice dashboard</title>
<link rel="stylesheet" href="dashboard/uplot.min.css">
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #1d2330; background: #f7f8fa; }
  h1 { font-size: 1.3em; margin: 0 0 .2em; }
  h3 { font-size: 1em; margin: 0 0 .3em; }
  .muted { color: #667; }
  .tiles { display: flex; gap: 1em; flex-wrap: wrap; margin: 1em 0; }
  .tile { background: #fff; border: 1px solid #dde; border-radius: 6px; padding: .6em 1em; min-width: 9em; }
  .tile b { display: block; font-size: 1.6em; font-variant-numeric: tabular-nums; }
  .charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(440px, 1fr)); gap: 1em; margin-bottom: 1.5em; }
  .chart { background: #fff; border: 1px solid #dde; border-radius: 6px; padding: .6em; min-width: 0; }
  .chart .empty { color: #667; height: 200px; display: flex; align-items: center; justify-content: center; text-align: center; }
  .chart .u-legend { font-size: 12px; }
  table { border-collapse: collapse; background: #fff; width: 100%; margin-bottom: 1.5em; }
  th, td { border-bottom: 1px solid #eee; padding: .35em .6em; text-align: right; font-variant-numeric: tabular-nums; }
  th:first-child, td:first-child, th:nth-child(2), td:nth-child(2) { text-align: left; }
  .up { color: #1a7f37; } .down { color: #c62828; font-weight: bold; }
  #error { color: #c62828; }
</style>
</head>
<body>
<h1>Sluice</h1>
<div class="muted"><span id="config"></span> · up <span id="uptime">0</span> s · <span id="ready"></span> · updated <span id="updated">never</span></div>
<div id="error"></div>
<div class="tiles">
  <div class="tile">Active connections<b id="total-active" data-testid="total-active">0</b></div>
  <div class="tile">Upgrades<b id="total-upgraded" data-testid="total-upgraded">0</b></div>
  <div class="tile">Messages/s in<b id="rate-in" data-testid="rate-in">0</b></div>
  <div class="tile">Messages/s out<b id="rate-out" data-testid="rate-out">0</b></div>
  <div class="tile">Messages in<b id="total-messages-in" data-testid="total-messages-in">0</b></div>
  <div class="tile">Errors<b id="total-errors" data-testid="total-errors">0</b></div>
</div>
<section class="charts" id="charts" data-testid="charts"></section>
<h2>Services</h2>
<table><thead><tr><th>Service</th><th></th><th>Active</th><th>Upgraded</th><th>Msg/s in</th><th>Msg/s out</th><th>Errors</th></tr></thead>
<tbody id="services"></tbody></table>
<h2>Backends</h2>
<table><thead><tr><th>Service</th><th>Backend</th><th>Health</th><th>Active</th><th>Upgraded</th><th>Msg/s in</th><th>Msg/s out</th><th>Messages in</th><th>Messages out</th><th>Errors</th></tr></thead>
<tbody id="backends"></tbody></table>
<h2>Workers</h2>
<table><thead><tr><th>Worker</th><th></th><th>Running</th><th>Listening</th><th>Event-loop lag (ms)</th></tr></thead>
<tbody id="workers"></tbody></table>
<script src="dashboard/uplot.min.js"></script>
<script>
"use strict";
// One entry per chart, in page order; the series come from /api/history (history.ts DASHBOARD_SERIES),
// matched by 'chart'. A chart with no series shows 'empty'; a chart id not listed here still gets a chart.
const CHARTS = [
  { id: 'connections', title: 'Live connections (total and per service)' },
  { id: 'upgrades', title: 'Upgrades/s' },
  { id: 'messages', title: 'Messages/s' },
  { id: 'bytes', title: 'Bytes/s (payload)', format: 'bytes' },
  { id: 'errors', title: 'Errors/s by reason', empty: 'no errors in this window' },
  { id: 'closes', title: 'Closes/s by side and code', empty: 'no closes in this window' },
  { id: 'upgrade-latency', title: 'Upgrade latency, ms (over the last 10 samples)', empty: 'no upgrades in this window', format: 'ms' },
  { id: 'backend-health', title: 'Backend health', band: true },
  { id: 'backend-connections', title: 'Live connections per backend' },
  // HTTP proxying lands later: its sampler line is in history.ts; its series will appear here as they come.
  { id: 'http-requests', title: 'HTTP requests/s by code class', empty: 'no HTTP requests: HTTP proxying is not in this build yet' },
  { id: 'limited', title: 'Refused by a limit, per second (kind and reason)', empty: 'nothing refused by a limit in this window' },
];
const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf', '#bcbd22', '#7f7f7f'];
const UP = '#2da44e', DOWN = '#cf222e';
const CHART_HEIGHT = 200;

let previous = null;
const sum = (o) => Object.values(o).reduce((a, b) => a + b, 0);
const fmt = (n) => (Math.round(n * 10) / 10).toLocaleString('en');
function si(n, unit) {
  if (n == null) return '–';
  const steps = unit === 'B' ? [[1024 ** 3, 'Gi'], [1024 ** 2, 'Mi'], [1024, 'Ki']] : [[1e9, 'G'], [1e6, 'M'], [1e3, 'k']];
  for (const [size, prefix] of steps) if (Math.abs(n) >= size) return +(n / size).toFixed(1) + ' ' + prefix + (unit || '');
  return +n.toFixed(n < 10 ? 2 : 1) + (unit ? ' ' + unit : '');
}
function formatter(format) {
  if (format === 'bytes') return (v) => si(v, 'B');
  if (format === 'ms') return (v) => (v == null ? '–' : +v.toFixed(v < 10 ? 2 : 0) + ' ms');
  return (v) => si(v, '');
}
function cell(text, cls) { const td = document.createElement('td'); td.textContent = text; if (cls) td.className = cls; return td; }
function row(cells, testid) { const tr = document.createElement('tr'); if (testid) tr.dataset.testid = testid; cells.forEach((c) => tr.appendChild(c)); return tr; }
function rate(now, before, seconds) { return before === undefined || seconds <= 0 ? 0 : Math.max(0, (now - before) / seconds); }

// ---- History: the samples of the window, merged from each poll of /api/history?since=<last t> ----
const history = { startedAt: 0, intervalSeconds: 1, capacity: 900, t: [], series: new Map() };
function resetHistory(doc) {
  history.startedAt = doc.startedAt; history.intervalSeconds = doc.intervalSeconds; history.capacity = doc.capacity;
  history.t = []; history.series = new Map();
}
function mergeHistory(doc) {
  const before = history.t.length;
  for (const t of doc.t) history.t.push(t);
  for (const s of doc.series) {
    let mine = history.series.get(s.key);
    if (!mine) history.series.set(s.key, (mine = { chart: s.chart, label: s.label, values: new Array(before).fill(null) }));
    for (const v of s.values) mine.values.push(v);
  }
  // A series the server no longer sends (dropped after a window without values) pads with gaps.
  for (const mine of history.series.values()) while (mine.values.length < history.t.length) mine.values.push(null);
  const extra = history.t.length - history.capacity;
  if (extra > 0) {
    history.t.splice(0, extra);
    for (const mine of history.series.values()) mine.values.splice(0, extra);
  }
  for (const [key, mine] of history.series) if (mine.values.every((v) => v === null)) history.series.delete(key);
}

// ---- Charts ----
const charts = new Map();  // id -> { def, card, plotBox, empty, plot, signature }
function chartFor(id) {
  let chart = charts.get(id);
  if (chart) return chart;
  const def = CHARTS.find((c) => c.id === id) || { id, title: id };
  const card = document.createElement('div');
  card.className = 'chart';
  card.dataset.testid = 'chart-' + id;
  const h = document.createElement('h3');
  h.textContent = def.title;
  const plotBox = document.createElement('div');
  const empty = document.createElement('div');
  empty.className = 'empty';
  empty.textContent = def.empty || 'no data yet';
  card.append(h, plotBox, empty);
  document.getElementById('charts').appendChild(card);
  chart = { def, card, plotBox, empty, plot: null, signature: '' };
  charts.set(id, chart);
  return chart;
}
/** Up/down bands, one row per backend: green while up, red while down, nothing before it existed. */
function drawBands(u) {
  const ctx = u.ctx, rows = u.series.length - 1, box = u.bbox, xs = u.data[0];
  if (rows === 0) return;
  const rowHeight = box.height / rows;
  ctx.save();
  ctx.font = Math.round(11 * devicePixelRatio) + 'px system-ui, sans-serif';
  ctx.textBaseline = 'middle';
  ctx.textAlign = 'left';
  for (let s = 1; s <= rows; s++) {
    const values = u.data[s], y = box.top + (s - 1) * rowHeight + rowHeight * 0.12, height = rowHeight * 0.76;
    for (let i = 0; i < xs.length; i++) {
      if (values[i] == null) continue;
      // Whole pixels, so neighbouring samples meet without anti-aliased seams.
      const x0 = Math.round(u.valToPos(xs[i], 'x', true));
      const x1 = Math.round(i + 1 < xs.length ? u.valToPos(xs[i + 1], 'x', true) : i > 0 ? 2 * x0 - u.valToPos(xs[i - 1], 'x', true) : x0 + 2);
      ctx.fillStyle = values[i] > 0 ? UP : DOWN;
      ctx.fillRect(x0, y, Math.max(1, x1 - x0), height);
    }
    ctx.fillStyle = '#fff';
    ctx.fillText(u.series[s].label, box.left + 6 * devicePixelRatio, y + height / 2);
  }
  ctx.restore();
}
/** Room for the longest tick label (uPlot's fixed default cuts '146.5 KiB'). */
function axisWidth(u, values) {
  return values ? 16 + 7 * Math.max(3, ...values.map((v) => String(v).length)) : 50;
}
function makePlot(chart, labels) {
  const def = chart.def, format = formatter(def.format);
  const width = Math.max(300, chart.card.clientWidth - 16);
  const series = [{}].concat(labels.map((label, i) => def.band
    ? { label, stroke: '#888', paths: () => null, points: { show: false }, value: (u, v) => (v == null ? '–' : v > 0 ? 'up' : 'down') }
    : { label, stroke: COLORS[i % COLORS.length], width: 1.5, points: { show: false }, value: (u, v) => format(v) }));
  const opts = {
    width, height: CHART_HEIGHT, series,
    scales: {
      x: { time: true },
      y: def.band ? { range: [0, labels.length] } : { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] },
    },
    axes: [{}, def.band ? { show: false } : { size: axisWidth, values: (u, splits) => splits.map(format) }],
    legend: { live: true },
    hooks: def.band ? { draw: [drawBands] } : {},
  };
  chart.plotBox.replaceChildren();
  return new uPlot(opts, null, chart.plotBox);
}
function renderCharts() {
  const byChart = new Map();
  for (const def of CHARTS) byChart.set(def.id, []);
  for (const s of history.series.values()) {
    if (!byChart.has(s.chart)) byChart.set(s.chart, []);
    byChart.get(s.chart).push(s);
  }
  for (const [id, list] of byChart) {
    const chart = chartFor(id);
    const signature = list.map((s) => s.label).join('\\u0000');
    chart.empty.style.display = list.length === 0 ? '' : 'none';
    chart.plotBox.style.display = list.length === 0 ? 'none' : '';
    if (list.length > 0) {
      if (signature !== chart.signature) {
        if (chart.plot) chart.plot.destroy();
        chart.plot = makePlot(chart, list.map((s) => s.label));
        chart.signature = signature;
      }
      chart.plot.setData([history.t.slice()].concat(list.map((s) => s.values.slice())));
    }
    // For tests and for a quick look in the inspector: what this chart holds.
    let peak = 0;
    for (const s of list) for (const v of s.values) if (v !== null && v > peak) peak = v;
    chart.card.dataset.series = String(list.length);
    chart.card.dataset.samples = String(history.t.length);
    chart.card.dataset.peak = String(peak);
  }
}
window.addEventListener('resize', () => {
  for (const chart of charts.values()) if (chart.plot) chart.plot.setSize({ width: Math.max(300, chart.card.clientWidth - 16), height: CHART_HEIGHT });
});

let since = 0;
async function pollHistory() {
  const doc = await fetch('api/history?since=' + since).then((r) => r.json());
  if (doc.startedAt !== history.startedAt) {
    // First poll, or Sluice restarted: start over from its whole window.
    resetHistory(doc);
    if (since !== 0) { since = 0; return; }
  }
  mergeHistory(doc);
  if (history.t.length > 0) since = history.t[history.t.length - 1];
  if (typeof uPlot === 'undefined') {
    document.getElementById('charts').textContent = 'charts unavailable: the chart library (uPlot) was not found by this Sluice';
    return;
  }
  renderCharts();
  document.body.dataset.lastSample = String(since);
}

async function pollTables() {
  const [overview, backends] = await Promise.all([fetch('api/overview').then((r) => r.json()), fetch('api/backends').then((r) => r.json())]);
  const now = performance.now();
  const seconds = previous ? (now - previous.at) / 1000 : 0;
  const before = previous ? previous.backends : new Map();
  document.getElementById('config').textContent = overview.config;
  document.getElementById('uptime').textContent = overview.uptimeSeconds;
  document.getElementById('ready').textContent = overview.draining ? 'draining' : overview.ready ? 'ready' : 'not ready';
  document.getElementById('total-active').textContent = overview.active;
  document.getElementById('total-upgraded').textContent = overview.connections.upgraded;
  document.getElementById('total-messages-in').textContent = overview.messages.clientToBackend;
  document.getElementById('total-errors').textContent = sum(overview.errors);
  let inRate = 0, outRate = 0;
  const services = new Map();
  const tbody = document.getElementById('backends');
  tbody.replaceChildren();
  for (const b of backends) {
    const key = b.service + ' ' + b.url;
    const was = before.get(key) || {};
    const rin = rate(b.messages.clientToBackend, was.in, seconds), rout = rate(b.messages.backendToClient, was.out, seconds);
    inRate += rin; outRate += rout;
    const s = services.get(b.service) || { active: 0, upgraded: 0, rin: 0, rout: 0, errors: 0 };
    s.active += b.active; s.upgraded += b.connections.upgraded; s.rin += rin; s.rout += rout; s.errors += sum(b.errors);
    services.set(b.service, s);
    tbody.appendChild(row([cell(b.service), cell(b.url), cell(b.state, b.state), cell(b.active), cell(b.connections.upgraded), cell(fmt(rin)), cell(fmt(rout)),
      cell(b.messages.clientToBackend), cell(b.messages.backendToClient), cell(sum(b.errors))], 'backend-' + b.url));
  }
  const sbody = document.getElementById('services');
  sbody.replaceChildren();
  for (const [name, s] of services) sbody.appendChild(row([cell(name), cell(''), cell(s.active), cell(s.upgraded), cell(fmt(s.rin)), cell(fmt(s.rout)), cell(s.errors)], 'service-' + name));
  const wbody = document.getElementById('workers');
  wbody.replaceChildren();
  for (const w of overview.workers) wbody.appendChild(row([cell(w.index), cell(''), cell(w.running ? 'yes' : 'no'), cell(w.listening ? 'yes' : 'no'), cell(fmt(w.eventLoopLagSeconds * 1000))]));
  document.getElementById('rate-in').textContent = fmt(inRate);
  document.getElementById('rate-out').textContent = fmt(outRate);
  previous = { at: now, backends: new Map(backends.map((b) => [b.service + ' ' + b.url, { in: b.messages.clientToBackend, out: b.messages.backendToClient }])) };
}

// Polls as often as Sluice samples (once a second unless a test shortened it), never two at once.
async function poll() {
  try {
    await Promise.all([pollTables(), pollHistory()]);
    document.getElementById('updated').textContent = new Date().toLocaleTimeString();
    document.getElementById('error').textContent = '';
  } catch (error) {
    document.getElementById('error').textContent = 'cannot reach the admin API: ' + error;
  }
  setTimeout(poll, Math.min(1000, Math.max(100, history.intervalSeconds * 1000)));
}
poll();
</script>
</body>
</html>
`;
