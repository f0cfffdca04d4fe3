/**
 * The one interface every balancing policy implements, and the factory that picks one per service.
 * A policy only chooses among backends; whether a backend is up is read from the shared health bits
 * (written by the primary), and live connection counts from the shared counters, so a choice made in
 * one worker accounts for the connections every other worker holds.
 */
import { defaultOf } from '../config/schema.js';
import type { BackendSpec, ServiceSpec } from '../config/snapshot.js';
import { HashRing } from './hash.js';
import { LeastConnections } from './leastconn.js';
import type { PoolOptions } from './pool.js';
import { RoundRobin } from './roundrobin.js';
import { StickyBalancer } from './sticky.js';
import { WeightedRoundRobin } from './weighted.js';

/** What a policy can read: live connections, health and (for slow start) when each came up, per
 *  global backend index. */
export interface BackendState {
  readonly backendActive: Int32Array;
  readonly backendUp: Int32Array;
  /** Date.now() when the backend last came up; 0 = up from the start. Absent: no slow start. */
  readonly backendUpSince?: Float64Array;
  /** Date.now() until which the backend is passed over after a failed connect (pool.ts). Absent: never. */
  readonly backendCoolUntil?: Float64Array;
}

/**
 * What a policy may know about the request, computed once per upgrade (the upgrade's Handshake
 * implements it, so a pick allocates nothing).
 */
export interface PickRequest {
  /** Unsigned 32-bit hash of the request's hash key (strategy: hash); NO_KEY when it has none. */
  readonly hashKey: number;
  /** Backend named by a valid sticky cookie, -1 when none. */
  readonly stickyBackend: number;
}

/** hashKey of a request that carries no key (no such header, cookie or parameter). */
export const NO_KEY = -1;


export interface Balancer {
  /**
   * The global index of the backend to try next, or -1 when none is left.
   * `tried` holds backends already attempted for this request (never chosen twice); only its first
   * `triedCount` entries are meaningful, so the caller can reuse one array.
   */
  pick(tried: Int32Array, triedCount: number, request?: PickRequest): number;
  /** A discovered backend slot now holds another address (identity: its URL); '' = empty slot. */
  setIdentity?(backend: number, identity: string): void;
}

/** The weight of a server that declares none, and the balance factor of `strategy: hash` without `hash`. */
const DEFAULT_WEIGHT = defaultOf('http.services.<name>.loadBalancer.servers[].weight');
const DEFAULT_BALANCE_FACTOR = defaultOf('http.services.<name>.loadBalancer.hash.balanceFactor');

/**
 * The policy a service names, wrapped in sticky cookies when it has them. `backends` is the
 * snapshot's table (weights and identities); without it every server has the default weight.
 */
export function createBalancer(service: ServiceSpec, state: BackendState, backends?: readonly BackendSpec[]): Balancer {
  const weights = service.backends.map((b) => backends?.[b]?.weight ?? DEFAULT_WEIGHT);
  const slowStartMs = service.slowStartMs;
  const options: PoolOptions = { weights, slowStartMs };
  const weighted = slowStartMs > 0 || weights.some((w) => w !== 1);
  let policy: Balancer;
  switch (service.strategy) {
    case 'leastconn':
      policy = new LeastConnections(service.backends, state, options);
      break;
    case 'roundrobin':
      policy = weighted ? new WeightedRoundRobin(service.backends, state, options) : new RoundRobin(service.backends, state, options);
      break;
    case 'hash': {
      const identities = service.backends.map((b) => (backends?.[b]?.dnsName ? '' : backends?.[b]?.url ?? String(b)));
      policy = new HashRing(service.backends, state, options, identities, service.hash?.balanceFactor ?? DEFAULT_BALANCE_FACTOR);
      break;
    }
  }
  return service.sticky ? new StickyBalancer(policy, service.backends, state) : policy;
}
