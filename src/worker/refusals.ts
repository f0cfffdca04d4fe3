/**
 * Requests that end without a WebSocket or a backend's response, made visible: an unrouted request
 * (404, counted per entry point in sluice_unrouted_requests_total), an upgrade refused before it reached
 * a backend (426, 400, 431, 503 while shutting down), an upgrade that no backend took (503, 502, 504),
 * the backend's own refusal relayed, a middleware's answer. Each gets an access-log record
 * (shared/messages.ts RejectedRecord) with its status and reason. Per refused request, never per message;
 * nothing is built when the access log is off.
 */
import type uWS from 'uWebSockets.js';
import { Total } from '../shared/layout.js';
import { accessLogEnabled, logRejected } from './access-log.js';
import { countTotal } from './context.js';
import type { Generation } from './generation.js';
import { sendError } from './http-responses.js';
import type { Tunnel } from './tunnel.js';
import { hostnameOf } from './listeners.js';

/** What a refusal's record says about the request (listeners.ts keeps one per request it routes). */
export interface RefusedRequest {
  readonly method: string;
  /** The Host header's name, without port (Traefik's RequestHost). */
  readonly host: string;
  readonly path: string;
  readonly query: string;
  readonly clientIp: string;
}

/** The upgrade's client request as upgrade.ts and http-upgrade.ts hold it. */
export interface RefusedUpgrade {
  /** Host header as sent. */
  readonly host: string;
  /** Path and query as sent. */
  readonly path: string;
  readonly clientIp: string;
}

/** No router of entry point `entryPoint` (-1: not in `gen`) matched: count it, log it, answer Traefik's 404. */
export function answerUnrouted(res: uWS.HttpResponse, req: uWS.HttpRequest, request: RefusedRequest, gen: Generation, entryPoint: number): void {
  countTotal(Total.NoRoute);
  if (entryPoint >= 0) gen.slab[gen.slabBase + gen.plan.unroutedBase + entryPoint]++;
  if (accessLogEnabled()) {
    const upgrade = req.getHeader('upgrade').toLowerCase() === 'websocket';
    record(gen, entryPoint, -1, -1, -1, upgrade, request.method, request.host, pathOf(request), request.clientIp, 404, 'no router matched', 0);
  }
  res.writeStatus('404 Not Found').end('404 page not found\n');
}

/** Refuse a request on entry point `entryPoint`, routed to `router` (-1: none), before any backend: answer
 *  `status` with `message` (http-responses.ts sendError) and log it. */
export function refuseRequest(
  res: uWS.HttpResponse,
  request: RefusedRequest,
  gen: Generation,
  entryPoint: number,
  router: number,
  upgrade: boolean,
  status: number,
  message: string,
  headers?: readonly (readonly [string, string])[],
): void {
  if (accessLogEnabled()) {
    const service = router >= 0 ? gen.snapshot.routers[router]!.service : -1;
    record(gen, entryPoint, router, service, -1, upgrade, request.method, request.host, pathOf(request), request.clientIp, status, message, 0);
  }
  sendError(res, status, message, headers);
}

/** An upgrade that reached the backend stage ended with `status` instead of a 101 (upgrade.ts, http-upgrade.ts). */
export function logRefusedUpgrade(t: Tunnel, client: RefusedUpgrade, status: number, reason: string): void {
  if (!accessLogEnabled()) return;
  const durationMs = t.startedAt === 0 ? 0 : Math.round(performance.now() - t.startedAt);
  record(t.gen, t.entryPoint, t.router, t.service, t.backend, true, 'GET', hostnameOf(client.host), client.path, client.clientIp, status, reason, durationMs);
}

/** A middleware answered an upgrade (http-upgrade.ts) instead of letting it go on to a backend. */
export function logMiddlewareAnswer(gen: Generation, entryPoint: number, router: number, client: RefusedUpgrade, status: number): void {
  if (!accessLogEnabled()) return;
  record(gen, entryPoint, router, gen.snapshot.routers[router]!.service, -1, true, 'GET', hostnameOf(client.host), client.path, client.clientIp, status, `a middleware of router '${gen.snapshot.routers[router]!.name}' answered`, 0);
}

function pathOf(request: RefusedRequest): string {
  return request.query === '' ? request.path : `${request.path}?${request.query}`;
}

function record(
  gen: Generation,
  entryPoint: number,
  router: number,
  service: number,
  backend: number,
  upgrade: boolean,
  method: string,
  host: string,
  path: string,
  clientIp: string,
  status: number,
  reason: string,
  durationMs: number,
): void {
  const { snapshot } = gen;
  logRejected([
    'rejected',
    Date.now(),
    clientIp,
    entryPoint >= 0 ? snapshot.entryPoints[entryPoint]!.name : '',
    router >= 0 ? snapshot.routers[router]!.name : '',
    service >= 0 ? snapshot.services[service]!.name : '',
    backend >= 0 ? gen.backend(backend).url : '',
    upgrade ? 1 : 0,
    method,
    host,
    path,
    status,
    reason,
    durationMs,
  ]);
}
