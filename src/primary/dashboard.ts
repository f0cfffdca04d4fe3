/**
 * GET /dashboard: one self-contained page (no external scripts, styles or fonts, so it works behind a
 * firewall) that polls /api/overview and /api/backends every second and shows live connections per
 * service and backend, message rates, errors and backend health. Rates are computed in the page from the
 * difference between two polls of the monotonic counters.
 */
export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sluice dashboard</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #1d2330; background: #f7f8fa; }
  h1 { font-size: 1.3em; margin: 0 0 .2em; }
  .muted { color: #667; }
  .tiles { display: flex; gap: 1em; flex-wrap: wrap; margin: 1em 0; }
  .tile { background: #fff; border: 1px solid #dde; border-radius: 6px; padding: .6em 1em; min-width: 9em; }
  .tile b { display: block; font-size: 1.6em; font-variant-numeric: tabular-nums; }
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
<h2>Services</h2>
<table><thead><tr><th>Service</th><th></th><th>Active</th><th>Upgraded</th><th>Msg/s in</th><th>Msg/s out</th><th>Errors</th></tr></thead>
<tbody id="services"></tbody></table>
<h2>Backends</h2>
<table><thead><tr><th>Service</th><th>Backend</th><th>Health</th><th>Active</th><th>Upgraded</th><th>Msg/s in</th><th>Msg/s out</th><th>Messages in</th><th>Messages out</th><th>Errors</th></tr></thead>
<tbody id="backends"></tbody></table>
<h2>Workers</h2>
<table><thead><tr><th>Worker</th><th></th><th>Running</th><th>Listening</th><th>Event-loop lag (ms)</th></tr></thead>
<tbody id="workers"></tbody></table>
<script>
"use strict";
let previous = null;
const sum = (o) => Object.values(o).reduce((a, b) => a + b, 0);
const fmt = (n) => (Math.round(n * 10) / 10).toLocaleString('en');
function cell(text, cls) { const td = document.createElement('td'); td.textContent = text; if (cls) td.className = cls; return td; }
function row(cells, testid) { const tr = document.createElement('tr'); if (testid) tr.dataset.testid = testid; cells.forEach((c) => tr.appendChild(c)); return tr; }
function rate(now, before, seconds) { return before === undefined || seconds <= 0 ? 0 : Math.max(0, (now - before) / seconds); }
async function poll() {
  try {
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
    document.getElementById('updated').textContent = new Date().toLocaleTimeString();
    document.getElementById('error').textContent = '';
    previous = { at: now, backends: new Map(backends.map((b) => [b.service + ' ' + b.url, { in: b.messages.clientToBackend, out: b.messages.backendToClient }])) };
  } catch (error) {
    document.getElementById('error').textContent = 'cannot reach the admin API: ' + error;
  }
}
poll();
setInterval(poll, 1000);
</script>
</body>
</html>
`;
