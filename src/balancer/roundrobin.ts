/**
 * Round robin: each worker walks the pool in order, skipping backends that are down or already
 * tried for this request. The cursor is per worker (no shared write per pick); with N workers the
 * pool still sees an even spread because the kernel spreads accepts evenly over the workers.
 * Used when every weight is 1 and there is no slow start; otherwise weighted.ts.
 */
import { PoolPolicy } from './pool.js';

export class RoundRobin extends PoolPolicy {
  protected choose(tried: Int32Array, triedCount: number): number {
    const n = this.backends.length;
    for (let i = 0; i < n; i++) {
      const at = this.cursor;
      this.cursor = at + 1 === n ? 0 : at + 1;
      const backend = this.backends[at]!;
      if (this.eligible(backend, tried, triedCount) && this.weights[at]! > 0) return backend;
    }
    return -1;
  }
}
