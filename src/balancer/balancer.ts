/**
 * The one interface every balancing policy implements, and the factory that picks one per service.
 * A policy only chooses among backends; whether a backend is up is read from the shared health bits
 * (written by the primary), and live connection counts from the shared counters, so a choice made in
 * one worker accounts for the connections every other worker holds.
 */
import type { ServiceSpec } from '../config/snapshot.js';
import { LeastConnections } from './leastconn.js';
import { RoundRobin } from './roundrobin.js';

/** What a policy can read: live connections and health per global backend index. */
export interface BackendState {
  readonly backendActive: Int32Array;
  readonly backendUp: Int32Array;
}

export interface Balancer {
  /**
   * The global index of the backend to try next, or -1 when none is left.
   * `tried` holds backends already attempted for this request (never chosen twice); only its first
   * `triedCount` entries are meaningful, so the caller can reuse one array.
   */
  pick(tried: Int32Array, triedCount: number): number;
}

export function createBalancer(service: ServiceSpec, state: BackendState): Balancer {
  switch (service.strategy) {
    case 'leastconn':
      return new LeastConnections(service.backends, state);
    case 'roundrobin':
      return new RoundRobin(service.backends, state);
  }
}
