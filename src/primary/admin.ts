/**
 * The admin listener (admin.address, default ":9090"), in the primary on node:http: it is not a hot path
 * and never touches a proxied connection. Routes: /metrics (Prometheus text), /health (liveness), /ready
 * (readiness), /api/overview|routers|services|backends|history (JSON), /dashboard (HTML, with its chart
 * library's script and style under /dashboard/). GET and HEAD only.
 *
 * A port that cannot be opened is logged as an error and Sluice keeps proxying without it: the admin
 * listener must never take the traffic down (a liveness probe will notice it is missing).
 */
import http from 'node:http';
import {
  backendsDocument,
  health,
  overviewDocument,
  readiness,
  routersDocument,
  servicesDocument,
  type AdminContext,
} from './admin-api.js';
import { DASHBOARD_ASSETS, DASHBOARD_HTML } from './dashboard.js';
import type { Observability } from './metrics.js';
import { log } from './log.js';

const JSON_TYPE = 'application/json; charset=utf-8';

function send(res: http.ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store', 'content-length': Buffer.byteLength(body) });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

function sendJson(res: http.ServerResponse, status: number, document: unknown): void {
  send(res, status, JSON_TYPE, `${JSON.stringify(document, null, 2)}\n`);
}

export function startAdmin(ctx: AdminContext, metrics: Observability, host: string, port: number): Promise<http.Server | null> {
  const server = http.createServer((req, res) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      sendJson(res, 405, { error: `method ${req.method} not allowed (expected GET)` });
      return;
    }
    const path = (req.url ?? '/').split('?')[0]!;
    switch (path) {
      case '/metrics':
        metrics.render().then(
          (text) => send(res, 200, metrics.registry.contentType, text),
          (error: Error) => sendJson(res, 500, { error: error.message }),
        );
        return;
      case '/health': {
        const verdict = health(ctx);
        sendJson(res, verdict.ok ? 200 : 503, verdict.body);
        return;
      }
      case '/ready': {
        const verdict = readiness(ctx);
        sendJson(res, verdict.ok ? 200 : 503, verdict.body);
        return;
      }
      case '/api/overview':
        sendJson(res, 200, overviewDocument(ctx));
        return;
      case '/api/routers':
        sendJson(res, 200, routersDocument(ctx));
        return;
      case '/api/services':
        sendJson(res, 200, servicesDocument(ctx));
        return;
      case '/api/backends':
        sendJson(res, 200, backendsDocument(ctx));
        return;
      case '/api/history': {
        // Compact JSON: the first poll carries the whole window (up to 900 samples per series).
        const since = new URL(req.url ?? '/', 'http://admin').searchParams.get('since') ?? '0';
        if (ctx.history === undefined) sendJson(res, 404, { error: 'no history in this process' });
        else if (!/^\d+(\.\d+)?$/.test(since)) sendJson(res, 400, { error: `since: invalid value '${since}' (expected seconds since the epoch, e.g. the last 't' received)` });
        else send(res, 200, JSON_TYPE, JSON.stringify(ctx.history.since(Number(since))));
        return;
      }
      case '/':
      case '/dashboard/':
        // The page fetches 'api/…' relative to itself, which only resolves to /api/… from /dashboard.
        res.writeHead(302, { location: '/dashboard' });
        res.end();
        return;
      case '/dashboard':
        send(res, 200, 'text/html; charset=utf-8', DASHBOARD_HTML);
        return;
      default: {
        const asset = DASHBOARD_ASSETS.get(path);
        if (asset !== undefined) {
          send(res, 200, asset.type, asset.body);
          return;
        }
        sendJson(res, 404, { error: `no such page '${path}' (expected /metrics, /health, /ready, /api/overview, /api/routers, /api/services, /api/backends, /api/history or /dashboard)` });
      }
    }
  });
  server.keepAliveTimeout = 65_000;
  return new Promise((resolve) => {
    server.once('error', (error: NodeJS.ErrnoException) => {
      log.error({ err: error, address: ctx.adminAddress }, `admin listener: cannot listen on ${ctx.adminAddress}: ${error.code ?? error.message}; /metrics, /health and /ready are unavailable`);
      resolve(null);
    });
    const onListening = (): void => {
      server.removeAllListeners('error');
      server.on('error', (error) => log.error({ err: error }, 'admin listener error'));
      resolve(server);
    };
    if (host === '') server.listen(port, onListening);
    else server.listen(port, host, onListening);
  });
}
