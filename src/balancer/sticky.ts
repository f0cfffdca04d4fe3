/**
 * Sticky sessions by signed cookie, shared by every policy (Traefik's loadbalancer/sticky.go).
 * The cookie value is HMAC-SHA256(secret, service + backend URL), cut to 128 bits: it names the
 * backend without revealing its address, cannot be forged without the secret, and is the same in
 * every Sluice replica that shares the secret, so a client keeps its backend whichever replica it
 * reaches. A cookie that names no backend of the pool (forged, stale, from another secret) or a
 * backend that is down, cooling down after a failed connect, or already tried is ignored: the wrapped
 * policy picks, and the upgrade sets a new cookie.
 */
import { createHmac } from 'node:crypto';
import type { BackendSpec, ServiceSpec } from '../config/snapshot.js';
import type { Balancer, BackendState, PickRequest } from './balancer.js';
import { coolingDown } from './pool.js';

export class StickyBalancer implements Balancer {
  private readonly inPool: Set<number>;

  constructor(
    private readonly policy: Balancer,
    backends: readonly number[],
    private readonly state: BackendState,
  ) {
    this.inPool = new Set(backends);
  }

  pick(tried: Int32Array, triedCount: number, request?: PickRequest): number {
    const sticky = request?.stickyBackend ?? -1;
    if (sticky >= 0 && this.inPool.has(sticky) && Atomics.load(this.state.backendUp, sticky) !== 0 && !coolingDown(this.state.backendCoolUntil, sticky)) {
      let fresh = true;
      for (let i = 0; i < triedCount; i++) if (tried[i] === sticky) fresh = false;
      if (fresh) return sticky;
    }
    return this.policy.pick(tried, triedCount, request);
  }

  setIdentity(backend: number, identity: string): void {
    this.policy.setIdentity?.(backend, identity);
  }
}

/** The cookie value naming `identity` (a backend URL) in `service`. */
export function stickyValue(secret: string, service: string, identity: string): string {
  return createHmac('sha256', secret).update(`sluice-sticky\n${service}\n${identity}`).digest('base64url').slice(0, 22);
}

/** One service's cookie: reads the backend a request names, and writes the Set-Cookie of a backend. */
export class StickyCookies {
  private readonly byValue = new Map<string, number>();
  /** Set-Cookie header value per global backend index (only this service's). */
  private readonly setCookies = new Map<number, string>();
  private readonly valueOf = new Map<number, string>();

  constructor(
    private readonly service: ServiceSpec,
    backends: readonly BackendSpec[],
    private readonly secret: string,
  ) {
    for (const b of service.backends) this.setIdentity(b, backends[b]!.dnsName === '' ? backends[b]!.url : '');
  }

  get cookieName(): string {
    return this.service.sticky!.cookieName;
  }

  setIdentity(backend: number, identity: string): void {
    const old = this.valueOf.get(backend);
    if (old !== undefined) this.byValue.delete(old);
    this.valueOf.delete(backend);
    this.setCookies.delete(backend);
    if (identity === '') return;
    const value = stickyValue(this.secret, this.service.name, identity);
    this.byValue.set(value, backend);
    this.valueOf.set(backend, value);
    this.setCookies.set(backend, `${this.service.sticky!.cookieName}=${value}${this.service.sticky!.attributes}`);
  }

  /** The backend a Cookie header names, or -1. */
  backendFor(cookieHeader: string): number {
    const value = cookieValue(cookieHeader, this.service.sticky!.cookieName);
    return value === '' ? -1 : this.byValue.get(value) ?? -1;
  }

  /** Set-Cookie value that sends later requests to `backend` ('' when it has no identity). */
  setCookieFor(backend: number): string {
    return this.setCookies.get(backend) ?? '';
  }
}

/** The value of cookie `name` in a Cookie header ('' when absent). */
export function cookieValue(header: string, name: string): string {
  let at = 0;
  while (at < header.length) {
    let end = header.indexOf(';', at);
    if (end < 0) end = header.length;
    let start = at;
    while (start < end && header.charCodeAt(start) === 32) start++;
    if (header.startsWith(name, start) && header.charCodeAt(start + name.length) === 61 /* = */) {
      let value = header.slice(start + name.length + 1, end).trim();
      if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
      return value;
    }
    at = end + 1;
  }
  return '';
}
