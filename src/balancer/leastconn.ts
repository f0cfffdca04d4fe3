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
  protected choose(tried: Int32Array, triedCount: number): number {
    return this.leastLoaded(tried, triedCount, this.now());
  }
}
