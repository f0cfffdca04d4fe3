/**
 * Least connections, global across workers: the backend with the fewest live connections in the
 * shared counters wins. Ties rotate (the scan starts one further each pick) so that an idle pool
 * fills evenly instead of piling onto its first server. O(backends) per pick, which is per upgrade,
 * not per message.
 */
import { PoolPolicy } from './pool.js';

export class LeastConnections extends PoolPolicy {
  pick(tried: Int32Array, triedCount: number): number {
    const n = this.backends.length;
    if (n === 0) return -1;
    const start = this.cursor;
    this.cursor = start + 1 === n ? 0 : start + 1;
    let best = -1;
    let bestActive = 0x7fffffff;
    for (let i = 0; i < n; i++) {
      let at = start + i;
      if (at >= n) at -= n;
      const backend = this.backends[at]!;
      if (!this.eligible(backend, tried, triedCount)) continue;
      const active = Atomics.load(this.state.backendActive, backend);
      if (active < bestActive) {
        bestActive = active;
        best = backend;
      }
    }
    return best;
  }
}
