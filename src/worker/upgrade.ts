/**
 * The WebSocket upgrade, in uWebSockets.js's async-upgrade idiom: copy what is needed out of the
 * request at once, route, register onAborted, pick a backend, connect, forward the handshake, and
 * only when the backend answered 101 upgrade the client (res.cork + res.upgrade) with the
 * subprotocol the backend chose. Any other answer is relayed as it came (status, headers, body);
 * a failed connect is retried on another backend, then answered 502/504; an empty pool 503.
 */
import net from 'node:net';
import type uWS from 'uWebSockets.js';
import { Total } from '../shared/layout.js';
import type { Balancer } from '../balancer/balancer.js';
import { context, countTotal } from './context.js';
import type { Generation } from './generation.js';
import { Conn, ErrorReason, countError, countOutcome, connectionOpened, upgradeStarted } from './metrics.js';
import { newHandshakeKey } from './frame-codec.js';
import { hostOf } from './backend-addresses.js';
import { cookieHeaderOf, requestHashKey } from './pick-request.js';
import { Tunnel, TunnelState, countOn, uncount, openTunnel, releaseTunnel } from './tunnel.js';
import { bracketHost } from '../shared/address.js';
import { joinDrain } from './shutdown.js';
import { legFor, sourceAddressFor } from './backend-leg.js';
import { parseResponseHead, relayBackendResponse, sendError, type ResponseHead } from './http-responses.js';
import { buildForwardedHead, type ClientRequestInfo } from './forwarded-request.js';
import { upgradeClient } from './client-upgrade.js';
import type { CompressionSpec } from '../config/snapshot.js';
import { clientDeflateOffer, startClientCompression } from './compression.js';
import { BACKEND_DEFLATE_OFFER, BackendInflater, PERMESSAGE_DEFLATE, backendDeflate, backendExtensionsProblem } from './backend-inflate.js';
import { extensionsHeaderOf, parseExtensions } from './ws-extensions.js';

/** Extensions Sluice offers a backend, by whether its transport has websocketCompression. */
const OFFERED_WITH_DEFLATE: readonly string[] = [PERMESSAGE_DEFLATE];
const OFFERED_NONE: readonly string[] = [];
import { gripOffer, takeGripExtension } from './fanout-grip.js';
import { backendFailed, Failure } from './backend-failures.js';
import { logRefusedUpgrade } from './refusals.js';
import { admitBackend, refuseForBackends, type BackendRefusals } from './admission.js';
import type { ConnectionLimits } from './limits-connection.js';
import { scheduleLifetime } from './limits-lifetime.js';
import { LimitReason } from '../shared/metrics-plan.js';

/** Bytes of a backend's answer head we accept before calling it invalid. */
const MAX_HEAD = 16 * 1024;
/** Largest non-101 body relayed to the client; longer bodies are cut (the status still goes). */
const MAX_BODY = 64 * 1024;

/** State that lives only while the upgrade is in flight; dropped once the tunnel opens. */
export class Handshake {
  aborted = false;
  attempts = 0;
  readonly tried: Int32Array;
  lastFailure: 'refused' | 'timeout' = 'refused';
  timedOut = false;
  acceptExpected = '';
  /** The upgrade request of the current attempt (the leg sends it once connected). */
  request = '';
  head: Buffer | null = null;
  response: ResponseHead | null = null;
  bodyChunks: Buffer[] = [];
  bodyLength = 0;
  /** The backend answered and we are relaying: a close now is the end of the body, not a failure. */
  relaying = false;
  // PickRequest (balancer.ts): what the balancer may know of this request, computed once.
  hashKey = -1;
  stickyBackend = -1;
  /** Response headers the router's middlewares set (http-upgrade.ts): written on the 101 or the answer. */
  responseHeaders: readonly (readonly [string, string])[] | null = null;
  /** Backends skipped for maxConnections or admission (admission.ts). */
  readonly refusals: BackendRefusals = { skipped: 0, reason: LimitReason.BackendsFull, admissionBackend: -1, admitted: -1 };

  constructor(
    readonly res: uWS.HttpResponse,
    readonly uwsContext: uWS.us_socket_context_t,
    readonly client: ClientRequestInfo,
    readonly requestHead: string,
    readonly balancer: Balancer,
    readonly serviceName: string,
    maxAttempts: number,
    /** Client-leg compression of the app that took the request (fixed per app: listeners.ts). */
    readonly compression: CompressionSpec | null,
  ) {
    this.tried = new Int32Array(maxAttempts);
  }
}

export type HandshakeTunnel = Tunnel & { handshake: Handshake | null };

/** Start the backend side of an upgrade; the caller has routed and validated the client request in `gen`. */
export function beginUpgrade(
  res: uWS.HttpResponse,
  uwsContext: uWS.us_socket_context_t,
  client: ClientRequestInfo,
  gen: Generation,
  routerIndex: number,
  entryPoint: number,
  compression: CompressionSpec | null = null,
  responseHeaders: readonly (readonly [string, string])[] | null = null,
  limits: ConnectionLimits | null = null,
): void {
  const { snapshot } = gen;
  const router = snapshot.routers[routerIndex]!;
  const service = snapshot.services[router.service]!;
  const t = new Tunnel(gen, router.service, routerIndex, entryPoint) as HandshakeTunnel;
  t.limits = limits;
  // A backend skipped for a limit does not use up a retry: room for every backend of the pool to be skipped.
  const limited = service.limits.maxConnections > 0 || service.limits.admission !== null;
  const h = new Handshake(res, uwsContext, client, buildForwardedHead(client, snapshot.entryPoints[entryPoint]!), gen.balancers[router.service]!, service.name, service.retries + 1 + (limited ? service.backends.length : 0), compression);
  t.handshake = h;
  h.responseHeaders = responseHeaders;
  h.hashKey = requestHashKey(service, client);
  const sticky = gen.stickies[router.service] ?? null;
  if (sticky !== null) h.stickyBackend = sticky.backendFor(cookieHeaderOf(client));
  t.clientAddress = client.clientIp;
  upgradeStarted(t);
  res.onAborted(() => {
    h.aborted = true;
    abandonBackend(t);
  });
  connectNext(t);
}

/** Try the next backend: `chosen` when the caller already picked it, else the balancer's pick. */
function connectNext(t: HandshakeTunnel, chosen = -1): void {
  const h = t.handshake!;
  const { snapshot } = t.gen;
  let backend = chosen >= 0 ? chosen : h.attempts < h.tried.length ? h.balancer.pick(h.tried, h.attempts, h) : -1;
  // A discovery slot whose address this worker has not heard of yet, or a backend at a limit (admission.ts):
  // count it tried and move on.
  let wait = 0;
  while (backend >= 0 && (hostOf(backend) === '' || (wait = admitBackend(t, h.refusals, backend)) < 0)) {
    h.tried[h.attempts++] = backend;
    backend = h.attempts < h.tried.length ? h.balancer.pick(h.tried, h.attempts, h) : -1;
  }
  if (backend >= 0 && wait > 0) {
    // Its admission token is reserved and comes within a second: come back then.
    setTimeout(connectAdmitted, wait, t, backend);
    return;
  }
  if (backend < 0) {
    if (h.attempts > 0 && h.attempts === h.refusals.skipped) {
      const refused = refuseForBackends(t, h.refusals);
      answer(t, 503, refused.message, [['retry-after', refused.retryAfter]]);
      return;
    }
    if (h.attempts === 0) {
      // Every backend is down (or ejected): say when to come back rather than invite a retry storm.
      countTotal(Total.NoBackend);
      countOutcome(t, Conn.NoBackend);
      const retryAfter = String(t.gen.service(t.service).retryAfterSeconds);
      answer(t, 503, `no backend available for service '${h.serviceName}'`, [['retry-after', retryAfter]]);
    } else {
      countTotal(Total.ConnectFailed);
      countOutcome(t, Conn.ConnectFailed);
      if (h.lastFailure === 'timeout') answer(t, 504, `timed out connecting to a backend of service '${h.serviceName}'`);
      else answer(t, 502, `no backend of service '${h.serviceName}' accepted the connection`);
    }
    return;
  }
  h.tried[h.attempts++] = backend;
  h.timedOut = false;
  countOn(t, backend);
  const spec = t.gen.backend(backend);
  const transport = snapshot.transports[snapshot.services[t.service]!.transport]!;
  const host = hostOf(backend);
  const { key, accept } = newHandshakeKey();
  h.acceptExpected = accept;
  h.head = null;
  const deflate = transport.websocketCompression ? BACKEND_DEFLATE_OFFER : '';
  h.request = `GET ${spec.pathPrefix + h.client.path} HTTP/1.1\r\nHost: ${hostFor(t, h)}\r\n${h.requestHead}${deflate}${gripOffer(snapshot.fanout)}Sec-WebSocket-Key: ${key}\r\n\r\n`;
  const started = legFor(spec.tls, transport.websocketCompression).connect(t, {
    host,
    port: spec.port,
    tls: spec.tls,
    serverName: transport.serverName !== '' ? transport.serverName : net.isIP(spec.host) === 0 ? spec.host : undefined,
    insecureSkipVerify: transport.insecureSkipVerify,
    rootCAs: transport.rootCAs,
    dialTimeoutMs: transport.dialTimeoutMs,
    localAddress: sourceAddressFor(transport, host),
  });
  if (!started) handshakeSocketClosed(t, false);
}

/** The admission wait of connectNext is over (unless the client left meanwhile). */
function connectAdmitted(t: HandshakeTunnel, backend: number): void {
  if (t.handshake === null || t.handshake.aborted) return;
  connectNext(t, backend);
}

function hostFor(t: Tunnel, h: Handshake): string {
  if (t.gen.service(t.service).passHostHeader && h.client.host !== '') return h.client.host;
  const spec = t.gen.backend(t.backend);
  const host = bracketHost(spec.host);
  const defaultPort = spec.tls ? 443 : 80;
  return spec.port === defaultPort ? host : `${host}:${spec.port}`;
}

/** Bytes from the backend before the tunnel opened: the answer to our upgrade request. */
export function handshakeData(t: HandshakeTunnel, chunk: Buffer, length: number): void {
  const h = t.handshake;
  if (h === null || h.aborted) return;
  if (h.relaying) {
    collectBody(t, h, chunk.subarray(0, length));
    return;
  }
  const piece = Buffer.from(chunk.subarray(0, length)); // copy: chunk may be the shared read buffer
  h.head = h.head === null ? piece : Buffer.concat([h.head, piece]);
  const end = h.head.indexOf('\r\n\r\n');
  if (end < 0) {
    if (h.head.length > MAX_HEAD) failHandshake(t, 502, 'backend sent an oversized response head');
    return;
  }
  const parsed = parseResponseHead(h.head.toString('latin1', 0, end));
  const rest = h.head.subarray(end + 4);
  h.head = null;
  if (parsed === null) {
    failHandshake(t, 502, 'backend sent an invalid HTTP response');
    return;
  }
  if (parsed.status === 101) {
    completeUpgrade(t, h, parsed, rest);
    return;
  }
  if (parsed.status >= 500) {
    backendFailed(t.gen, t.backend, Failure.ServerError, String(parsed.status));
    // This backend cannot take the connection now: try another (never one already tried); the
    // last 5xx is relayed as it came when none is left.
    const next = h.attempts < h.tried.length ? h.balancer.pick(h.tried, h.attempts, h) : -1;
    if (next >= 0) {
      dropAttempt(t);
      connectNext(t, next);
      return;
    }
  }
  countTotal(Total.RejectedByBackend);
  countOutcome(t, Conn.RejectedByBackend);
  h.response = parsed;
  h.relaying = true;
  if (parsed.status === 204 || parsed.status === 304 || parsed.contentLength === 0) {
    finishRelay(t, h);
    return;
  }
  collectBody(t, h, rest);
}

function completeUpgrade(t: HandshakeTunnel, h: Handshake, head: ResponseHead, early: Buffer): void {
  if ((head.headers.get('upgrade') ?? '').toLowerCase() !== 'websocket' || head.headers.get('sec-websocket-accept') !== h.acceptExpected) {
    failHandshake(t, 502, 'backend answered 101 without a valid WebSocket accept');
    return;
  }
  const protocol = head.headers.get('sec-websocket-protocol') ?? '';
  if (protocol !== '' && !h.client.protocols.split(',').some((p) => p.trim() === protocol)) {
    failHandshake(t, 502, `backend chose subprotocol '${protocol}' that the client did not offer`);
    return;
  }
  const transport = t.gen.snapshot.transports[t.gen.service(t.service).transport]!;
  const parsed = parseExtensions(extensionsHeaderOf(head.raw));
  // GRIP (fanout-grip.ts) is taken out here and never reaches the client; what is left must be what
  // Sluice offered (permessage-deflate, when the transport has websocketCompression).
  const extensions = parsed === null ? null : takeGripExtension(t, parsed);
  const problem = backendExtensionsProblem(extensions, transport.websocketCompression ? OFFERED_WITH_DEFLATE : OFFERED_NONE);
  if (problem !== '') {
    failHandshake(t, 502, problem);
    return;
  }
  const backendDeflated = backendDeflate(extensions!);
  if (context().closing.has(t.gen.snapshot.entryPoints[t.entryPoint]!.name)) {
    answer(t, 503, 'Sluice is shutting down');
    return;
  }
  t.handshake = null;
  countTotal(Total.Upgraded);
  const res = h.res;
  const sticky = t.gen.stickies[t.service] ?? null;
  const setCookie = sticky !== null && t.backend !== h.stickyBackend ? sticky.setCookieFor(t.backend) : '';
  if (backendDeflated !== null) t.inflater = new BackendInflater(t.gen.websocket.maxMessageSize, backendDeflated);
  // uWS negotiates permessage-deflate from the offer given here (only one it honours exactly as asked)
  // and writes its answer into the 101.
  const clientDeflate = h.compression === null ? '' : clientDeflateOffer(h.client.extensions, h.compression);
  const ws = upgradeClient(res, { tunnel: t }, h.client.key, protocol, h.uwsContext, setCookie, h.responseHeaders, clientDeflate);
  // If the client was gone by then, uWS closed it inside upgrade() (onClientClose moved the tunnel
  // out of Upgrading): let the backend go too.
  if (ws === null || t.state !== TunnelState.Upgrading) {
    abandonBackend(t);
    return;
  }
  t.ws = ws;
  if (clientDeflate !== '') startClientCompression(t, clientDeflate, h.compression!);
  // Counted open only once uWS holds the client: then its `close` is sure to come and count the close.
  connectionOpened(t);
  if (t.limits !== null) scheduleLifetime(t, t.gen.limits.connection.maxLifetimeMs);
  openTunnel(t, ws, early.length > 0 ? early : null);
  if (context().draining.size > 0) joinDrain(t);
}

/** uWS `open`: see client-upgrade.ts for why it only parks the WebSocket. */
export { onClientOpen } from './client-upgrade.js';

function collectBody(t: HandshakeTunnel, h: Handshake, piece: Buffer): void {
  if (piece.length > 0 && h.bodyLength < MAX_BODY) {
    const keep = piece.subarray(0, MAX_BODY - h.bodyLength);
    h.bodyChunks.push(Buffer.from(keep));
    h.bodyLength += keep.length;
  }
  const response = h.response!;
  const body = h.bodyLength;
  if ((response.contentLength >= 0 && body >= Math.min(response.contentLength, MAX_BODY)) || (response.chunked && endsChunked(h)) || body >= MAX_BODY) {
    finishRelay(t, h);
  }
}

function endsChunked(h: Handshake): boolean {
  const last = Buffer.concat(h.bodyChunks.slice(-2));
  return last.subarray(-5).toString('latin1') === '0\r\n\r\n';
}

/** Relay the backend's non-101 answer (or end of body at close). */
export function finishRelay(t: HandshakeTunnel, h: Handshake): void {
  if (h.aborted) return;
  const response = h.response!;
  let body: Buffer = Buffer.concat(h.bodyChunks);
  if (response.chunked) body = dechunk(body);
  if (response.contentLength >= 0 && body.length > response.contentLength) body = body.subarray(0, response.contentLength);
  t.handshake = null;
  logRefusedUpgrade(t, h.client, response.status, `the backend answered the upgrade with ${response.status}`);
  abandonBackend(t);
  h.aborted = true;
  relayBackendResponse(h.res, response, body, h.responseHeaders);
}

function dechunk(raw: Buffer): Buffer {
  const parts: Buffer[] = [];
  let at = 0;
  while (at < raw.length) {
    const lineEnd = raw.indexOf('\r\n', at);
    if (lineEnd < 0) break;
    const size = parseInt(raw.toString('latin1', at, lineEnd), 16);
    if (!Number.isFinite(size) || size === 0) break;
    parts.push(raw.subarray(lineEnd + 2, Math.min(raw.length, lineEnd + 2 + size)));
    at = lineEnd + 2 + size + 2;
  }
  return Buffer.concat(parts);
}

/** The backend socket ended before the tunnel opened. */
export function handshakeSocketClosed(t: HandshakeTunnel, timedOut: boolean): void {
  const h = t.handshake;
  uncount(t);
  if (h === null || h.aborted) return;
  if (h.relaying) {
    finishRelay(t, h);
    return;
  }
  if (h.head === null) {
    // Nothing came back: a failed or timed-out connect. Retry on another backend.
    h.lastFailure = timedOut ? 'timeout' : 'refused';
    backendFailed(t.gen, t.backend, timedOut ? Failure.Timeout : Failure.ConnectRefused);
    countError(t.gen, t.backend, timedOut ? ErrorReason.ConnectTimeout : ErrorReason.ConnectRefused);
    connectNext(t);
    return;
  }
  countTotal(Total.ConnectFailed);
  countOutcome(t, Conn.ConnectFailed);
  countError(t.gen, t.backend, ErrorReason.HandshakeFailed);
  backendFailed(t.gen, t.backend, Failure.BadHandshake, 'closed during the upgrade');
  answer(t, 502, `backend of service '${h.serviceName}' closed the connection during the upgrade`);
}

function failHandshake(t: HandshakeTunnel, status: number, reason: string): void {
  backendFailed(t.gen, t.backend, Failure.BadHandshake, reason);
  countTotal(Total.ConnectFailed);
  countOutcome(t, Conn.ConnectFailed);
  countError(t.gen, t.backend, ErrorReason.HandshakeFailed);
  answer(t, status, `${reason} (service '${t.handshake!.serviceName}')`);
}

function answer(t: HandshakeTunnel, status: number, message: string, headers?: readonly (readonly [string, string])[]): void {
  const h = t.handshake!;
  t.handshake = null;
  if (!h.aborted) logRefusedUpgrade(t, h.client, status, message);
  abandonBackend(t);
  if (h.aborted) return;
  h.aborted = true;
  sendError(h.res, status, message, h.responseHeaders === null ? headers : [...(headers ?? []), ...h.responseHeaders]);
}

/** Let go of this attempt's backend socket and its count; the upgrade goes on with another. */
function dropAttempt(t: Tunnel): void {
  t.leg?.destroy(t);
  uncount(t);
}

/** The upgrade is over without a tunnel (answered, relayed, or the client left): let go of everything. */
function abandonBackend(t: Tunnel): void {
  t.state = TunnelState.Closed;
  t.leg?.destroy(t);
  uncount(t);
  releaseTunnel(t);
}
