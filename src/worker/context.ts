/**
 * What one worker thread knows for its whole life: its slot, the shared counters, the generation new
 * connections start in, and every generation still alive because connections opened under it are
 * open. Module-level and set once at start, so per-message code reads plain fields instead of passing a
 * context object through every call. Everything that depends on the config lives in a Generation
 * (generation.ts), never here.
 */
import type { SharedViews } from '../shared/layout.js';
import { TOTALS, TRAFFIC, type Total } from '../shared/layout.js';
import type { WorkerToPrimary } from '../shared/messages.js';
import type { Generation } from './generation.js';

export interface WorkerContext {
  readonly workerIndex: number;
  readonly shared: SharedViews;
  /** Offset of this worker's first traffic counter in shared.workerTraffic. */
  readonly trafficBase: number;
  /** Offset of this worker's first live-count slot in shared.workerActive. */
  readonly activeBase: number;
  /** The generation new connections and requests start in. */
  current: Generation;
  /** Every generation with connections left, the current one included. */
  readonly live: Set<Generation>;
  /** Set once this worker started closing its clients for good: backends that close now get 1001, not 1011. */
  shuttingDown: boolean;
  /** Entry points (by name) that stopped accepting: upgrades still arriving on open HTTP connections get 503. */
  readonly closing: Set<string>;
  /** To the primary (lifecycle messages only: never per connection). */
  post(message: WorkerToPrimary): void;
}

let ctx: WorkerContext | undefined;

export function initContext(workerIndex: number, shared: SharedViews, first: Generation, post: (message: WorkerToPrimary) => void): WorkerContext {
  ctx = {
    workerIndex,
    shared,
    trafficBase: workerIndex * shared.backendSlots * TRAFFIC,
    activeBase: workerIndex * shared.backendSlots,
    current: first,
    live: new Set([first]),
    shuttingDown: false,
    closing: new Set(),
    post,
  };
  return ctx;
}

export function context(): WorkerContext {
  if (ctx === undefined) throw new Error('worker context used before initContext');
  return ctx;
}

/** Count one event in this worker's own slab (single writer, see layout.ts). */
export function countTotal(total: Total): void {
  const c = ctx!;
  c.shared.workerTotals[c.workerIndex * TOTALS + total]++;
}
