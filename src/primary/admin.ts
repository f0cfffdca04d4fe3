/**
 * The admin listener (admin.address, default ":9090"), in the primary on node:http: it is not a hot path
 * and never touches a proxied connection. Read-only routes (GET/HEAD, no authentication: probes and
 * Prometheus need them): /metrics (Prometheus text), /health (liveness), /ready (readiness),
 * /api/overview|routers|services|backends|history (JSON), /dashboard (HTML, with its chart library's
 * script and style under /dashboard/). Mutating routes (POST /api/reload) need
 * `Authorization: Bearer <admin.token>`; without a token configured they are open only when the listener
 * is bound to loopback, and answer 401 otherwise.
 *
 * A port that cannot be opened is logged as an error and Sluice keeps proxying without it: the admin
 * listener must never take the traffic down (a liveness probe will notice it is missing).
 */
import { timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import type { AdminSettings } from '../config/snapshot.js';
import type { ReloadOutcome } from './live-config.js';
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

/** Loopback only: a token-less mutating endpoint is reachable from this host alone. */
export function isLoopback(host: string): boolean {
  return host === '127.0.0.1' || host === '::1' || host === 'localhost' || /^127\./.test(host);
}

/** Whether a mutating request may go on; answers 401 itself when not. */
function authorized(req: http.IncomingMessage, res: http.ServerResponse, settings: AdminSettings): boolean {
  if (settings.token === '') {
    if (isLoopback(settings.host)) return true;
    res.setHeader('www-authenticate', 'Bearer realm="sluice admin"');
    sendJson(res, 401, { error: 'this endpoint changes Sluice: set admin.token (or SLUICE_ADMIN_TOKEN) and send Authorization: Bearer <token>, or bind admin.address to loopback' });
    return false;
  }
  const given = /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? '')?.[1]?.trim() ?? '';
  const a = Buffer.from(given);
  const b = Buffer.from(settings.token);
  if (a.length === b.length && timingSafeEqual(a, b)) return true;
  res.setHeader('www-authenticate', 'Bearer realm="sluice admin"');
  sendJson(res, 401, { error: given === '' ? 'missing bearer token (expected Authorization: Bearer <admin.token>)' : 'wrong bearer token' });
  return false;
}

/** POST /api/reload: reload now and answer with the outcome (422 with the errors when refused). */
function reloadEndpoint(res: http.ServerResponse, reload: ((trigger: string) => Promise<ReloadOutcome>) | undefined): void {
  if (reload === undefined) {
    sendJson(res, 404, { error: 'reloads are not available here' });
    return;
  }
  reload('POST /api/reload').then(
    (outcome) => sendJson(res, outcome.result === 'failure' ? 422 : 200, outcome),
    (error: Error) => sendJson(res, 500, { error: error.message }),
  );
}

/**
 * Open the admin listener. Resolves with the server, null when it cannot listen (logged), or 'in-use'
 * when `quietIfInUse` and the address is taken (the caller retries: a takeover's predecessor still
 * holds it).
 */
export function startAdmin(
  ctx: AdminContext,
  metrics: Observability,
  settings: AdminSettings,
  reload?: (trigger: string) => Promise<ReloadOutcome>,
  quietIfInUse = false,
): Promise<http.Server | null | 'in-use'> {
  const { host, port } = settings;
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]!;
    if (req.method === 'POST' && path === '/api/reload') {
      if (authorized(req, res, settings)) reloadEndpoint(res, reload);
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', path === '/api/reload' ? 'POST' : 'GET, HEAD');
      sendJson(res, 405, { error: `method ${req.method} not allowed (expected ${path === '/api/reload' ? 'POST' : 'GET'})` });
      return;
    }
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
      case '/api/fanout':
        if (ctx.fanout === undefined) sendJson(res, 404, { error: 'fan-out is off (no fanout section in the config)' });
        else sendJson(res, 200, ctx.fanout.document());
        return;
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
        sendJson(res, 404, { error: `no such page '${path}' (expected /metrics, /health, /ready, /api/overview, /api/routers, /api/services, /api/backends, /api/history, /api/fanout or /dashboard)` });
      }
    }
  });
  server.keepAliveTimeout = 65_000;
  return new Promise((resolve) => {
    server.once('error', (error: NodeJS.ErrnoException) => {
      if (quietIfInUse && error.code === 'EADDRINUSE') {
        resolve('in-use');
        return;
      }
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
