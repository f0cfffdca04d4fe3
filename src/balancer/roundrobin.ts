/**
 * Round robin: each worker walks the pool in order, skipping backends that are down or already
 * tried for this request. The cursor is per worker (no shared write per pick); with N workers the
 * pool still sees an even spread because the kernel spreads accepts evenly over the workers.
 */
import type { Balancer, BackendState } from './balancer.js';
import { wasTried } from './balancer.js';

export class RoundRobin implements Balancer {
  private readonly backends: Int32Array;
  private cursor = 0;

  constructor(backends: readonly number[], private readonly state: BackendState) {
    this.backends = Int32Array.from(backends);
  }

  pick(tried: Int32Array, triedCount: number): number {
    const n = this.backends.length;
    for (let i = 0; i < n; i++) {
      const at = this.cursor;
      this.cursor = at + 1 === n ? 0 : at + 1;
      const backend = this.backends[at]!;
      if (Atomics.load(this.state.backendUp, backend) === 0) continue;
      if (triedCount > 0 && wasTried(tried, triedCount, backend)) continue;
      return backend;
    }
    return -1;
  }
}
