/**
 * What every policy shares: its pool as a typed array of global backend indexes, each backend's
 * weight, and the rules for which backends may be picked at all (up in the shared health bits, not
 * already tried for this request) and how much a backend in slow start counts.
 */
import type { Balancer, BackendState, PickRequest } from './balancer.js';

export interface PoolOptions {
  /** servers[].weight per pool position (default 1 each). */
  readonly weights?: readonly number[];
  /** Slow start window: a backend that came up less than this long ago counts for a ramped share. */
  readonly slowStartMs?: number;
}

/** The smallest share a backend in slow start counts for, so it still gets its first connections. */
const MIN_RAMP = 0.01;

export abstract class PoolPolicy implements Balancer {
  protected readonly backends: Int32Array;
  /** Weight per pool position. */
  protected readonly weights: Float64Array;
  protected readonly slowStartMs: number;
  protected cursor = 0;

  constructor(
    backends: readonly number[],
    protected readonly state: BackendState,
    options: PoolOptions = {},
  ) {
    this.backends = Int32Array.from(backends);
    this.weights = Float64Array.from(backends, (_, i) => options.weights?.[i] ?? 1);
    this.slowStartMs = options.slowStartMs ?? 0;
  }

  abstract pick(tried: Int32Array, triedCount: number, request?: PickRequest): number;

  /** Up, and not among the first `triedCount` entries of `tried`. */
  protected eligible(backend: number, tried: Int32Array, triedCount: number): boolean {
    if (Atomics.load(this.state.backendUp, backend) === 0) return false;
    for (let i = 0; i < triedCount; i++) if (tried[i] === backend) return false;
    return true;
  }

  /** Pool positions a policy can never pick (hash.ts: a discovery slot with no address yet). */
  protected usable(_at: number): boolean {
    return true;
  }

  /**
   * Fewest live connections per unit of weight ((active + 1) / weight, HAProxy's weighted leastconn),
   * global across workers through the shared counters. Ties rotate: the scan starts one further each
   * pick, so an idle pool fills evenly instead of piling onto its first server.
   */
  protected leastLoaded(tried: Int32Array, triedCount: number, now: number): number {
    const n = this.backends.length;
    if (n === 0) return -1;
    const start = this.cursor;
    this.cursor = start + 1 === n ? 0 : start + 1;
    let best = -1;
    let bestScore = Infinity;
    for (let i = 0; i < n; i++) {
      let at = start + i;
      if (at >= n) at -= n;
      const backend = this.backends[at]!;
      if (!this.eligible(backend, tried, triedCount) || !this.usable(at)) continue;
      const weight = this.effectiveWeight(at, backend, now);
      if (weight <= 0) continue;
      const score = (Atomics.load(this.state.backendActive, backend) + 1) / weight;
      if (score < bestScore) {
        bestScore = score;
        best = backend;
      }
    }
    return best;
  }

  /** The clock for effectiveWeight: read once per pick, and only when slow start is on. */
  protected now(): number {
    return this.slowStartMs > 0 ? Date.now() : 0;
  }

  /**
   * Weight of pool position `at` now: servers[].weight, times the slow start ramp (from MIN_RAMP to 1,
   * linear over slowStartMs) when the backend came up recently.
   */
  protected effectiveWeight(at: number, backend: number, now: number): number {
    const weight = this.weights[at]!;
    if (this.slowStartMs === 0 || weight === 0) return weight;
    const since = this.state.backendUpSince?.[backend] ?? 0;
    if (since === 0) return weight;
    const ramp = (now - since) / this.slowStartMs;
    return ramp >= 1 ? weight : weight * (ramp > MIN_RAMP ? ramp : MIN_RAMP);
  }
}
