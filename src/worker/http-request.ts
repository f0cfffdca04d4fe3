/**
 * A request as Sluice forwards it: what is copied out of uWebSockets.js's request (only valid inside its
 * callback), in a form middlewares can change (path, headers, host) before it goes to a backend. The same
 * class carries plain HTTP requests and WebSocket upgrades through the middleware chain.
 *
 * Header rules, as for upgrades (forwarded-request.ts): hop-by-hop headers (and those named in Connection)
 * are dropped, the client's own X-Forwarded-* and X-Real-Ip are replaced by Sluice's (Traefik's behaviour
 * without trusted IPs), and the request head is bounded (431 past entryPoints.<name>.http.maxHeaderBytes).
 */
import type uWS from 'uWebSockets.js';
import type { ClientRequestInfo } from './forwarded-request.js';
import type { TrustedForwarding } from './real-client.js';

/** Request headers never forwarded on a plain HTTP request: they describe this hop, or Sluice sets them. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'host',
  // uWebSockets.js answers `Expect: 100-continue` itself as soon as the request is routed.
  'expect',
  // Set per attempt: undici counts a buffered body itself, and a streamed one gets the client's length back.
  'content-length',
]);

/** The client's own forwarding headers: replaced by Sluice's, kept aside for forwardAuth's trustForwardHeader. */
const CLIENT_FORWARDED = new Set(['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-forwarded-port', 'x-forwarded-server', 'x-forwarded-uri', 'x-forwarded-method', 'x-real-ip']);

export class ProxyRequest {
  /** As sent (case kept). */
  method: string;
  /** Path as sent (still percent-encoded), without the query. */
  path: string;
  /** '?query' as sent, or '' when the URL had no '?'. */
  search: string;
  /** Host header ('' when absent). */
  host: string;
  /** Forwarded headers, flat: lowercase name, value, name, value… */
  headers: string[];
  /** The client's own X-Forwarded-* and X-Real-Ip (flat, like headers); empty when it sent none. */
  readonly clientForwarded: string[];
  /** The middleware chain changed the request (upgrades then rebuild their forwarded head). */
  edited = false;
  /** The client sent `Connection: close` (among other tokens): close after the response. */
  closeAfter = false;
  /** X-Forwarded-For as a trusted peer sent it (entryPoints.<name>.forwardedHeaders), '' otherwise: what
   *  Traefik's ipStrategy (depth, excludedIPs) reads. */
  trustedForwardedFor = '';

  constructor(
    method: string,
    path: string,
    search: string,
    host: string,
    headers: string[],
    clientForwarded: string[],
    readonly clientIp: string,
    /** The entry point terminates TLS. */
    readonly tls: boolean,
    /** The entry point's port (X-Forwarded-Port). */
    readonly port: number,
    /** A WebSocket upgrade (X-Forwarded-Proto ws/wss), not a plain HTTP request. */
    readonly upgrade: boolean,
  ) {
    this.method = method;
    this.path = path;
    this.search = search;
    this.host = host;
    this.headers = headers;
    this.clientForwarded = clientForwarded;
  }

  /** Path and query, as the request line carries them. */
  get url(): string {
    return this.search === '' ? this.path : this.path + this.search;
  }

  get scheme(): string {
    return this.upgrade ? (this.tls ? 'wss' : 'ws') : this.tls ? 'https' : 'http';
  }

  /** The first value of header `name` (lowercase), '' when absent. */
  header(name: string): string {
    if (name === 'host') return this.host;
    const h = this.headers;
    for (let i = 0; i < h.length; i += 2) if (h[i] === name) return h[i + 1]!;
    return '';
  }

  has(name: string): boolean {
    if (name === 'host') return this.host !== '';
    const h = this.headers;
    for (let i = 0; i < h.length; i += 2) if (h[i] === name) return true;
    return false;
  }

  /** Replace every value of `name` (lowercase) with `value`; an empty value removes the header (Traefik). */
  setHeader(name: string, value: string): void {
    this.edited = true;
    if (name === 'host') {
      this.host = value;
      return;
    }
    this.removeHeader(name);
    if (value !== '') this.headers.push(name, value);
  }

  removeHeader(name: string): void {
    this.edited = true;
    if (name === 'host') {
      this.host = '';
      return;
    }
    const h = this.headers;
    let kept = 0;
    for (let i = 0; i < h.length; i += 2) {
      if (h[i] === name) continue;
      h[kept++] = h[i]!;
      h[kept++] = h[i + 1]!;
    }
    h.length = kept;
  }

  addHeader(name: string, value: string): void {
    this.edited = true;
    this.headers.push(name, value);
  }

  setPath(path: string): void {
    this.edited = true;
    this.path = path;
  }
}

// Module-level state of one synchronous req.forEach pass: no closure per request.
let collected: string[] = [];
let forwarded: string[] = [];
let connectionTokens = '';
let headBytes = 0;

function collectHeader(name: string, value: string): void {
  headBytes += name.length + value.length + 4;
  if (name === 'connection') connectionTokens = value.toLowerCase();
  if (CLIENT_FORWARDED.has(name)) forwarded.push(name, value);
  else if (!HOP_BY_HOP.has(name)) collected.push(name, value);
}

export interface HttpRequestHead {
  readonly request: ProxyRequest;
  /** Bytes of the request head (request line and headers), to check against maxHeaderBytes. */
  readonly headBytes: number;
  /** Content-Length as sent: -1 when absent (chunked, or no body). */
  readonly contentLength: number;
  /** Transfer-Encoding was sent: a body of unknown length follows. */
  readonly chunked: boolean;
}

/** The first value of `name` among the client's forwarding headers (flat), '' when absent. */
function forwardedValue(name: string): string {
  for (let i = 0; i < forwarded.length; i += 2) if (forwarded[i] === name) return forwarded[i + 1]!;
  return '';
}

/**
 * Copy a plain HTTP request out of uWS (call synchronously in the handler), with X-Forwarded-* and X-Real-Ip
 * set as for upgrades, so middlewares see (and may override) what the backend will get. `trusted`: the peer is
 * trusted with X-Forwarded-* (real-client.ts): its chain goes on with the peer appended, and its
 * X-Forwarded-Proto/-Host/-Port and X-Real-Ip as they came.
 */
export function readHttpRequest(req: uWS.HttpRequest, clientIp: string, tls: boolean, port: number, trusted: TrustedForwarding | null = null): HttpRequestHead {
  collected = [];
  forwarded = [];
  connectionTokens = '';
  const url = req.getUrl();
  const method = req.getCaseSensitiveMethod();
  const query = req.getQuery();
  headBytes = method.length + url.length + (query === undefined ? 0 : query.length + 1) + 12;
  req.forEach(collectHeader);
  let headers = collected;
  if (connectionTokens !== '' && connectionTokens !== 'keep-alive' && connectionTokens !== 'close') {
    // Headers named in Connection are hop-by-hop too (RFC 9110 §7.6.1).
    const named = new Set(connectionTokens.split(',').map((t) => t.trim()));
    headers = [];
    for (let i = 0; i < collected.length; i += 2) if (!named.has(collected[i]!)) headers.push(collected[i]!, collected[i + 1]!);
  }
  const host = req.getHeader('host');
  if (trusted === null) {
    headers.push('x-forwarded-for', clientIp, 'x-forwarded-proto', tls ? 'https' : 'http');
    if (host !== '') headers.push('x-forwarded-host', host);
    headers.push('x-forwarded-port', String(port), 'x-real-ip', clientIp);
  } else {
    headers.push('x-forwarded-for', trusted.chain, 'x-forwarded-proto', forwardedValue('x-forwarded-proto') || (tls ? 'https' : 'http'));
    const forwardedHost = forwardedValue('x-forwarded-host') || host;
    if (forwardedHost !== '') headers.push('x-forwarded-host', forwardedHost);
    headers.push('x-forwarded-port', forwardedValue('x-forwarded-port') || String(port), 'x-real-ip', forwardedValue('x-real-ip') || clientIp);
  }
  const lengthText = req.getHeader('content-length');
  const contentLength = lengthText === '' ? -1 : /^\d{1,15}$/.test(lengthText) ? Number(lengthText) : -2;
  const request = new ProxyRequest(method, url, query === undefined ? '' : `?${query}`, host, headers, forwarded, clientIp, tls, port, false);
  if (trusted !== null) request.trustedForwardedFor = trusted.received;
  if (connectionTokens !== '' && /(^|,)\s*close\s*(,|$)/.test(connectionTokens)) request.closeAfter = true;
  return { request, headBytes, contentLength, chunked: req.getHeader('transfer-encoding') !== '', };
}

/** The client's X-Forwarded-* of an upgrade request (readClientRequest drops them), for trustForwardHeader. */
export function readClientForwarded(req: uWS.HttpRequest): string[] {
  forwarded = [];
  req.forEach(collectForwarded);
  return forwarded;
}

function collectForwarded(name: string, value: string): void {
  if (CLIENT_FORWARDED.has(name)) forwarded.push(name, value);
}

/** An upgrade as a ProxyRequest, for the middleware chain (its headers are readClientRequest's, already filtered). */
export function upgradeRequest(client: ClientRequestInfo, clientForwarded: string[], port: number): ProxyRequest {
  const q = client.path.indexOf('?');
  const path = q < 0 ? client.path : client.path.slice(0, q);
  const search = q < 0 ? '' : client.path.slice(q);
  const request = new ProxyRequest('GET', path, search, client.host, [...client.headers], clientForwarded, client.clientIp, client.tls, port, true);
  if (client.forwarded !== undefined) request.trustedForwardedFor = client.forwarded.received;
  return request;
}

/** The upgrade as the chain left it, for beginUpgrade. */
export function upgradeClientInfo(original: ClientRequestInfo, request: ProxyRequest): ClientRequestInfo {
  if (!request.edited) return original;
  return {
    path: request.url,
    host: request.host,
    key: original.key,
    extensions: original.extensions,
    protocols: original.protocols,
    clientIp: original.clientIp,
    tls: original.tls,
    headers: request.headers,
    edited: true,
    ...(original.forwarded === undefined ? {} : { forwarded: original.forwarded }),
  };
}
