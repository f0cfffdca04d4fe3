/**
 * Smooth weighted round robin (NGINX's): every pick adds each eligible backend's weight to its
 * running credit, takes the backend with the most credit and charges it the total. Over any
 * window of sum(weights) picks each backend gets exactly its weight's share, interleaved rather
 * than in bursts (weights 5,1,1 give a a b a c a a, not a a a a a b c). Slow start ramps a
 * backend's weight in. Credit is per worker, O(backends) per pick, no allocation.
 */
import { PoolPolicy, type PoolOptions } from './pool.js';
import type { BackendState } from './balancer.js';

export class WeightedRoundRobin extends PoolPolicy {
  /** Running credit per pool position. */
  private readonly credit: Float64Array;

  constructor(backends: readonly number[], state: BackendState, options: PoolOptions = {}) {
    super(backends, state, options);
    this.credit = new Float64Array(backends.length);
  }

  protected choose(tried: Int32Array, triedCount: number): number {
    const n = this.backends.length;
    const now = this.now();
    let total = 0;
    let best = -1;
    let bestCredit = -Infinity;
    for (let at = 0; at < n; at++) {
      const backend = this.backends[at]!;
      if (!this.eligible(backend, tried, triedCount)) continue;
      const weight = this.effectiveWeight(at, backend, now);
      if (weight <= 0) continue;
      const credit = (this.credit[at] = this.credit[at]! + weight);
      total += weight;
      if (credit > bestCredit) {
        bestCredit = credit;
        best = at;
      }
    }
    if (best < 0) return -1;
    this.credit[best] = this.credit[best]! - total;
    return this.backends[best]!;
  }
}
