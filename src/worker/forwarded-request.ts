/**
 * What the worker copies out of a client's upgrade request (uWS's request object is only valid
 * inside the callback), and the header block forwarded to the backend: end-to-end headers as sent,
 * hop-by-hop headers stripped, X-Forwarded-* set.
 *
 * As in Traefik, a client's own X-Forwarded-* and X-Real-Ip are replaced, so a client cannot forge its
 * address to the backend, unless its peer is trusted (entryPoints.<name>.forwardedHeaders, real-client.ts):
 * then X-Forwarded-For goes on with the peer appended, and the X-Forwarded-Proto/-Host/-Port and X-Real-Ip
 * it sent go on as they came.
 */
import type uWS from 'uWebSockets.js';
import type { EntryPointSpec } from '../config/snapshot.js';
import type { TrustedForwarding } from './real-client.js';

/** The forwarding headers a trusted peer sent that go on as they came (X-Forwarded-For is chained instead). */
const KEPT_FROM_TRUSTED = new Set(['x-forwarded-proto', 'x-forwarded-host', 'x-forwarded-port', 'x-real-ip']);

/** X-Forwarded-* of an upgrade from a trusted peer. */
export interface ForwardedFromPeer extends TrustedForwarding {
  /** The peer's X-Forwarded-Proto/-Host/-Port and X-Real-Ip (flat: name, value…), kept as they came. */
  readonly kept: readonly string[];
}

export interface ClientRequestInfo {
  /** Path and query exactly as sent. */
  readonly path: string;
  /** Host header as sent ('' when absent). */
  readonly host: string;
  readonly key: string;
  /** Sec-WebSocket-Protocol as offered ('' when none). */
  readonly protocols: string;
  /** Sec-WebSocket-Extensions as offered ('' when none): negotiated on the client leg by Sluice itself
   *  (compression.ts), never forwarded. */
  readonly extensions: string;
  readonly clientIp: string;
  readonly tls: boolean;
  /** Headers to forward, already filtered. */
  readonly headers: readonly string[];
  /** A middleware changed the request: X-Forwarded-* or X-Real-Ip it set win over Sluice's. */
  readonly edited?: boolean;
  /** The peer is trusted with X-Forwarded-* (absent: replace them). */
  readonly forwarded?: ForwardedFromPeer;
}

/** Never forwarded: they describe this hop, or Sluice sets them itself per attempt. */
const NOT_FORWARDED = new Set([
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
  'sec-websocket-key',
  'sec-websocket-version',
  // Sluice re-frames every message, so extensions are negotiated per leg (compression.ts), not passed on.
  'sec-websocket-extensions',
  'x-forwarded-for',
  'x-forwarded-proto',
  'x-forwarded-host',
  'x-forwarded-port',
  'x-forwarded-server',
  'x-real-ip',
]);

let collected: string[] = [];
let kept: string[] | null = null;
let connectionTokens = '';
let headBytes = 0;

function collectHeader(name: string, value: string): void {
  headBytes += name.length + value.length + 4;
  if (name === 'connection') connectionTokens = value.toLowerCase();
  if (!NOT_FORWARDED.has(name)) collected.push(name, value);
  else if (kept !== null && KEPT_FROM_TRUSTED.has(name)) kept.push(name, value);
}

/** Copy the upgrade request's data out of uWS (call synchronously inside the upgrade handler); `trusted`:
 *  the peer's X-Forwarded-For when it is trusted with it (real-client.ts). */
export function readClientRequest(req: uWS.HttpRequest, clientIp: string, tls: boolean, trusted: TrustedForwarding | null = null): ClientRequestInfo {
  collected = [];
  kept = trusted === null ? null : [];
  connectionTokens = '';
  headBytes = 0;
  req.forEach(collectHeader);
  let headers = collected;
  if (connectionTokens !== '' && connectionTokens !== 'upgrade') {
    // Headers named in Connection are hop-by-hop too (RFC 9110 §7.6.1).
    const named = new Set(connectionTokens.split(',').map((t) => t.trim()));
    headers = [];
    for (let i = 0; i < collected.length; i += 2) if (!named.has(collected[i]!)) headers.push(collected[i]!, collected[i + 1]!);
  }
  const query = req.getQuery();
  const path = query === undefined ? req.getUrl() : `${req.getUrl()}?${query}`;
  headBytes += path.length + 16;
  const info: ClientRequestInfo = {
    path,
    host: req.getHeader('host'),
    key: req.getHeader('sec-websocket-key'),
    protocols: req.getHeader('sec-websocket-protocol'),
    extensions: req.getHeader('sec-websocket-extensions'),
    clientIp,
    tls,
    headers,
  };
  if (trusted === null) return info;
  const forwarded: ForwardedFromPeer = { received: trusted.received, chain: trusted.chain, kept: kept! };
  kept = null;
  return { ...info, forwarded };
}

/** Bytes of the request head readClientRequest last copied (request line and headers), for the 431 bound. */
export function lastRequestHeadBytes(): number {
  return headBytes;
}

/** The part of the backend request head that is the same for every attempt (all but the request
 *  line, Host and Sec-WebSocket-Key). */
export function buildForwardedHead(client: ClientRequestInfo, entryPoint: EntryPointSpec): string {
  let head = 'Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n';
  for (let i = 0; i < client.headers.length; i += 2) head += `${client.headers[i]}: ${client.headers[i + 1]}\r\n`;
  const edited = client.edited === true;
  const forwarded = client.forwarded;
  const kept = forwarded?.kept;
  // A middleware's value wins, then the trusted peer's, then Sluice's own.
  const set = (name: string): boolean => {
    if (edited && hasHeader(client.headers, name)) return true;
    if (kept === undefined || !hasHeader(kept, name)) return false;
    for (let i = 0; i < kept.length; i += 2) if (kept[i] === name) head += `${name}: ${kept[i + 1]}\r\n`;
    return true;
  };
  if (!(edited && hasHeader(client.headers, 'x-forwarded-for'))) head += `X-Forwarded-For: ${forwarded?.chain ?? client.clientIp}\r\n`;
  if (!set('x-forwarded-proto')) head += `X-Forwarded-Proto: ${client.tls ? 'wss' : 'ws'}\r\n`;
  if (client.host !== '' && !set('x-forwarded-host')) head += `X-Forwarded-Host: ${client.host}\r\n`;
  if (!set('x-forwarded-port')) head += `X-Forwarded-Port: ${entryPoint.port}\r\n`;
  if (!set('x-real-ip')) head += `X-Real-Ip: ${client.clientIp}\r\n`;
  return head;
}

function hasHeader(headers: readonly string[], name: string): boolean {
  for (let i = 0; i < headers.length; i += 2) if (headers[i] === name) return true;
  return false;
}
