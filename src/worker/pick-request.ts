/**
 * What a balancer may know of a request, read once per upgrade or HTTP request: the hash key of a
 * service with strategy: hash (client IP, a header, a cookie or a query parameter) and the sticky
 * cookie's header. Works on the headers copied out of uWS (forwarded-request.ts), never on the live
 * request object.
 */
import type { ServiceSpec } from '../config/snapshot.js';
import { NO_KEY } from '../balancer/balancer.js';
import { hashString } from '../balancer/hash.js';
import { cookieValue } from '../balancer/sticky.js';
import type { ClientRequestInfo } from './forwarded-request.js';

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
