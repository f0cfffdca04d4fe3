/**
 * The worker's side of backends that come and go: one balancer per service (wrapped in sticky
 * cookies where configured), the address each discovered backend slot holds now (the primary
 * sends them), the per-request inputs of a pick (hash key, sticky cookie), and the report of a
 * failed attempt to the primary's passive health checks. Health itself is only read, from the
 * shared bits, by the balancers.
 */
import type { BackendSpec, ServiceSpec, Snapshot } from '../config/snapshot.js';
import { NO_KEY, createBalancer, type Balancer, type BackendState } from '../balancer/balancer.js';
import { hashString } from '../balancer/hash.js';
import { StickyCookies, cookieValue } from '../balancer/sticky.js';
import type { BackendAddress } from '../shared/messages.js';
import type { ClientRequestInfo } from './forwarded-request.js';

let snapshot: Snapshot;
let balancers: Balancer[] = [];
let stickies: (StickyCookies | null)[] = [];
/** Host to connect to per global backend index; '' = an empty discovery slot. */
let hosts: string[] = [];
let reportFailure: (backend: number) => void = () => undefined;

/** Build every service's balancer; `report` tells the primary of a failed attempt. */
export function initBackendPools(from: Snapshot, state: BackendState, report: (backend: number) => void): Balancer[] {
  snapshot = from;
  reportFailure = report;
  hosts = from.backends.map((b) => (b.dnsName === '' ? b.host : ''));
  balancers = from.services.map((service) => createBalancer(service, state, from.backends));
  stickies = from.services.map((service) => (service.sticky === null ? null : new StickyCookies(service, from.backends, from.stickySecret)));
  return balancers;
}

/** The address to connect to for `backend` now ('' when its discovery slot is empty). */
export function hostOf(backend: number): string {
  return hosts[backend] ?? '';
}

export function stickyCookiesOf(service: number): StickyCookies | null {
  return stickies[service] ?? null;
}

/** Discovery moved addresses in or out of slots. */
export function applyAddresses(addresses: readonly BackendAddress[]): void {
  for (const { backend, host, identity } of addresses) {
    const spec: BackendSpec | undefined = snapshot.backends[backend];
    if (spec === undefined || spec.dnsName === '') continue;
    hosts[backend] = host;
    balancers[spec.service]?.setIdentity?.(backend, identity);
    stickies[spec.service]?.setIdentity(backend, identity);
  }
}

/** Passive health: an attempt on `backend` failed (connect, timeout, invalid or 5xx answer). */
export function backendFailed(backend: number): void {
  const spec = snapshot.backends[backend];
  if (spec !== undefined && snapshot.services[spec.service]!.passiveHealthCheck !== null) reportFailure(backend);
}

/** The 32-bit hash of the request's key for strategy: hash (computed once per upgrade). */
export function requestHashKey(service: ServiceSpec, client: ClientRequestInfo): number {
  const hash = service.hash;
  if (hash === null) return NO_KEY;
  let key = '';
  switch (hash.source) {
    case 'clientIP':
      key = client.clientIp;
      break;
    case 'header':
      key = headerOf(client, hash.name);
      break;
    case 'cookie':
      key = cookieValue(headerOf(client, 'cookie'), hash.name);
      break;
    case 'query':
      key = queryParameter(client.path, hash.name);
      break;
  }
  return key === '' ? NO_KEY : hashString(key);
}

/** The request's Cookie header(s), joined as one ('' when none). */
export function cookieHeaderOf(client: ClientRequestInfo): string {
  return headerOf(client, 'cookie');
}

/** A forwarded header's value (names are lowercase; repeated headers joined as HTTP allows). */
function headerOf(client: ClientRequestInfo, name: string): string {
  if (name === 'host') return client.host;
  let value = '';
  const headers = client.headers;
  for (let i = 0; i < headers.length; i += 2) {
    if (headers[i] !== name) continue;
    value = value === '' ? headers[i + 1]! : `${value}${name === 'cookie' ? '; ' : ', '}${headers[i + 1]}`;
  }
  return value;
}

/** Raw (still percent-encoded) value of query parameter `name` in `path` ('' when absent). */
function queryParameter(path: string, name: string): string {
  const q = path.indexOf('?');
  if (q < 0) return '';
  for (const pair of path.slice(q + 1).split('&')) {
    const eq = pair.indexOf('=');
    if ((eq < 0 ? pair : pair.slice(0, eq)) === name) return eq < 0 ? '' : pair.slice(eq + 1);
  }
  return '';
}
