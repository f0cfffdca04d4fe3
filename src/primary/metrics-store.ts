/**
 * The primary's view of the counters: on each read it sums every worker's slab of the SharedArrayBuffer
 * (layout.ts, metrics-plan.ts) plus the totals carried over from workers that exited, so a counter never
 * goes down when a worker is restarted. Reads only; the one write is folding a dead worker's slab, done
 * after its thread exited (no writer is left) and before the replacement starts.
 *
 * Cost of a read: (workers + 1) × slab size float additions, a few thousand for a typical config; it
 * runs per scrape or per API call, never per event.
 */
import type { Snapshot } from '../config/snapshot.js';
import { resetWorkerCounters, TOTALS, TRAFFIC, Total, type SharedViews } from '../shared/layout.js';
import { CONN_FIELDS, Conn, planMetrics, type MetricsPlan } from '../shared/metrics-plan.js';

/** A worker whose heartbeat is older than this is stuck: /health fails and its lag shows it. */
export const HEARTBEAT_STALE_MS = 3000;
const HEARTBEAT_PERIOD_MS = 1000;

export interface Sums {
  readonly slab: Float64Array;
  /** [backend][TRAFFIC] */
  readonly traffic: Float64Array;
  /** [TOTALS], counters only (Heartbeat and EventLoopLag are per worker: see workerLag). */
  readonly totals: Float64Array;
}

export class MetricsStore {
  readonly plan: MetricsPlan;
  private readonly carriedSlab: Float64Array;
  private readonly carriedTraffic: Float64Array;
  private readonly carriedTotals: Float64Array;

  constructor(
    readonly snapshot: Snapshot,
    readonly shared: SharedViews,
  ) {
    this.plan = planMetrics(snapshot);
    if (this.plan.slabFloats !== shared.slabFloats) throw new Error('metrics: the shared buffer was not made for this snapshot');
    this.carriedSlab = new Float64Array(shared.slabFloats);
    this.carriedTraffic = new Float64Array(shared.backendSlots * TRAFFIC);
    this.carriedTotals = new Float64Array(TOTALS);
  }

  /** Worker `w` exited: keep its counts (not its live gauge: those connections are gone), zero its slab. */
  foldWorker(w: number): void {
    const { shared } = this;
    addInto(this.carriedSlab, shared.workerMetrics, w * shared.slabFloats);
    addInto(this.carriedTraffic, shared.workerTraffic, w * shared.backendSlots * TRAFFIC);
    addInto(this.carriedTotals, shared.workerTotals, w * TOTALS);
    this.carriedTotals[Total.Heartbeat] = 0;
    this.carriedTotals[Total.EventLoopLag] = 0;
    for (const route of this.plan.routes) {
      const cells = this.snapshot.services[route.service]!.backends.length + 1;
      for (let c = 0; c < cells; c++) this.carriedSlab[route.base + c * CONN_FIELDS + Conn.Active] = 0;
    }
    resetWorkerCounters(shared, w);
  }

  /** Carried totals plus every worker's current slab. */
  sums(): Sums {
    const { shared } = this;
    const slab = Float64Array.from(this.carriedSlab);
    const traffic = Float64Array.from(this.carriedTraffic);
    const totals = Float64Array.from(this.carriedTotals);
    for (let w = 0; w < shared.workerSlots; w++) {
      addInto(slab, shared.workerMetrics, w * shared.slabFloats);
      addInto(traffic, shared.workerTraffic, w * shared.backendSlots * TRAFFIC);
      addInto(totals, shared.workerTotals, w * TOTALS);
    }
    totals[Total.Heartbeat] = 0;
    totals[Total.EventLoopLag] = 0;
    return { slab, traffic, totals };
  }

  /** Milliseconds since worker `w` last ticked (Infinity before its first tick). */
  heartbeatAge(w: number, now = Date.now()): number {
    const at = this.shared.workerTotals[w * TOTALS + Total.Heartbeat]!;
    return at === 0 ? Infinity : now - at;
  }

  /** Event-loop lag of worker `w` in seconds: the delay it measured over the last second (99th
   *  percentile), or, when its loop is stuck and cannot measure, how late its heartbeat is. */
  workerLag(w: number, now = Date.now()): number {
    const measured = this.shared.workerTotals[w * TOTALS + Total.EventLoopLag]!;
    const age = this.heartbeatAge(w, now);
    const late = Number.isFinite(age) ? Math.max(0, (age - HEARTBEAT_PERIOD_MS) / 1000) : 0;
    return Math.max(measured, late);
  }
}

function addInto(target: Float64Array, source: Float64Array, offset: number): void {
  for (let i = 0; i < target.length; i++) target[i]! += source[offset + i]!;
}
