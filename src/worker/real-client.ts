/**
 * Who the client is, as Traefik's entry point keys say: the TCP peer, unless the peer is trusted to name it.
 *  1. proxyProtocol.trustedIPs: a trusted peer's PROXY protocol v2 header (uWebSockets.js parses it and keeps
 *     the address: getProxiedRemoteAddress) names the client. From any other peer the header is ignored.
 *  2. forwardedHeaders.trustedIPs: a trusted peer's X-Forwarded-For is kept, and the client is its rightmost
 *     address that is not itself trusted (a chain of trusted proxies is walked through; an entry that is not
 *     an address stops the walk at the last good one). From any other peer X-Forwarded-* are replaced.
 * Everything that asks for the client's IP (ClientIP rules, per-IP limits, ipStrategy, hashing on the client
 * IP, X-Forwarded-For and X-Real-Ip to the backend, access logs) gets this one answer.
 *
 * Runs once per request or upgrade, synchronously inside the uWS handler. An entry point with no trust
 * configured costs what it did before this file existed: one address formatting.
 */
import { isIP } from 'node:net';
import type uWS from 'uWebSockets.js';
import { formatAddress } from './client-address.js';
import type { EntryPointGuard, TrustList } from './limits.js';

/** X-Forwarded-For of a request from a trusted peer. */
export interface TrustedForwarding {
  /** As the peer sent it ('' when it sent none). */
  readonly received: string;
  /** What goes on to the backend: the received addresses, then the peer. */
  readonly chain: string;
}

let forwarding: TrustedForwarding | null = null;

/** The forwarding of the request resolveClient last looked at, null when its peer is not trusted for it. */
export function lastForwarding(): TrustedForwarding | null {
  return forwarding;
}

/** The client's address for a request on an entry point guarded by `guard` (null: the entry point is gone). */
export function resolveClient(guard: EntryPointGuard | undefined, res: uWS.HttpResponse, req: uWS.HttpRequest): string {
  forwarding = null;
  let peer = formatAddress(res.getRemoteAddress());
  if (guard === undefined) return peer;
  if (guard.proxyProtocol !== null && guard.proxyProtocol.trusts(peer)) {
    const proxied = res.getProxiedRemoteAddress();
    if (proxied.byteLength > 0) peer = formatAddress(proxied);
  }
  const trusted = guard.forwardedHeaders;
  if (trusted === null || !trusted.trusts(peer)) return peer;
  const received = req.getHeader('x-forwarded-for');
  forwarding = { received, chain: received === '' ? peer : `${received}, ${peer}` };
  return received === '' ? peer : clientInChain(received, trusted, peer);
}

/** Walk X-Forwarded-For from the right: the first address not trusted is the client. */
export function clientInChain(header: string, trusted: TrustList, peer: string): string {
  let client = peer;
  let end = header.length;
  while (end > 0) {
    const comma = header.lastIndexOf(',', end - 1);
    const address = bareAddress(header.slice(comma + 1, end).trim());
    if (isIP(address) === 0) return client;
    client = address;
    if (!trusted.trusts(address)) return client;
    end = comma < 0 ? 0 : comma;
  }
  return client;
}

/** An X-Forwarded-For entry without brackets or port ("[2001:db8::1]:443", "10.0.0.1:5000"). */
export function bareAddress(entry: string): string {
  if (entry.startsWith('[')) {
    const close = entry.indexOf(']');
    return close < 0 ? entry : entry.slice(1, close);
  }
  const colon = entry.indexOf(':');
  return colon > 0 && colon === entry.lastIndexOf(':') ? entry.slice(0, colon) : entry;
}
