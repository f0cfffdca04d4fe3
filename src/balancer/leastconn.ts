/**
 * Least connections, global across workers: the backend with the fewest live connections in the
 * shared counters per unit of weight wins ((active + 1) / weight, HAProxy's weighted leastconn).
 * Ties rotate (the scan starts one further each pick) so that an idle pool fills evenly instead of
 * piling onto its first server. A backend in slow start has a ramped weight, so it takes a growing
 * share instead of every connection until it catches up. O(backends) per pick, which is per
 * upgrade, not per message.
 */
import { PoolPolicy } from './pool.js';

export class LeastConnections extends PoolPolicy {
  pick(tried: Int32Array, triedCount: number): number {
    const n = this.backends.length;
    if (n === 0) return -1;
    const start = this.cursor;
    this.cursor = start + 1 === n ? 0 : start + 1;
    const now = this.now();
    let best = -1;
    let bestScore = Infinity;
    for (let i = 0; i < n; i++) {
      let at = start + i;
      if (at >= n) at -= n;
      const backend = this.backends[at]!;
      if (!this.eligible(backend, tried, triedCount)) continue;
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
}
