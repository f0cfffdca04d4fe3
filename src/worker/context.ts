/**
 * What one worker thread knows: its slot, the compiled snapshot, the shared counters and the live
 * tunnels. Module-level and set once at start, so the per-message code reads plain fields instead
 * of passing a context object through every call.
 */
import type { Snapshot } from '../config/snapshot.js';
import type { SharedViews } from '../shared/layout.js';
import { TOTALS, TRAFFIC, type Total } from '../shared/layout.js';

export interface WorkerContext {
  readonly workerIndex: number;
  readonly snapshot: Snapshot;
  readonly shared: SharedViews;
  /** Offset of this worker's first traffic counter in shared.workerTraffic. */
  readonly trafficBase: number;
  /** Offset of this worker's first live-count slot in shared.workerActive. */
  readonly activeBase: number;
  /** Set when the primary asked this worker to drain: backends that close now get 1001, not 1011. */
  shuttingDown: boolean;
}

let current: WorkerContext | undefined;

export function initContext(workerIndex: number, snapshot: Snapshot, shared: SharedViews): WorkerContext {
  current = {
    workerIndex,
    snapshot,
    shared,
    trafficBase: workerIndex * shared.backendSlots * TRAFFIC,
    activeBase: workerIndex * shared.backendSlots,
    shuttingDown: false,
  };
  return current;
}

export function context(): WorkerContext {
  if (current === undefined) throw new Error('worker context used before initContext');
  return current;
}

/** Count one event in this worker's own slab (single writer, see layout.ts). */
export function countTotal(total: Total): void {
  const ctx = current!;
  ctx.shared.workerTotals[ctx.workerIndex * TOTALS + total]++;
}
