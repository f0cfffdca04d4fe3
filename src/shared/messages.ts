/**
 * The messages between the primary and a worker. None of them is per connection or per message:
 * live state travels through the SharedArrayBuffer (layout.ts); these only steer the lifecycle.
 */
import type { Snapshot } from '../config/snapshot.js';

/** workerData of every worker thread. */
export interface WorkerInit {
  readonly workerIndex: number;
  readonly snapshot: Snapshot;
  readonly sharedBuffer: SharedArrayBuffer;
  readonly backendSlots: number;
  readonly workerSlots: number;
  /** Size of each worker's metrics slab (layout.ts workerMetrics). */
  readonly slabFloats: number;
}

export interface BackendAddress {
  readonly backend: number;
  readonly host: string;
  readonly identity: string;
}

export type PrimaryToWorker =
  /** Stop accepting, close every client with 1001 within graceMs, then exit. */
  | { readonly type: 'shutdown'; readonly graceMs: number }
  /** Fault injection for tests of the supervisor (only reachable in-process, never from outside):
   *  'throw' raises an uncaught exception in the worker, 'block' busy-waits its loop for `ms`. */
  | { readonly type: 'fault'; readonly kind: 'throw' | 'block'; readonly ms?: number }
  /** Discovery: these backend slots now hold these addresses (host '' = the slot is empty). Also sent
   *  to every new worker with the current table. `identity` is the slot's URL with its address, which
   *  keys sticky cookies and hash order. */
  | { readonly type: 'backend-addresses'; readonly addresses: readonly BackendAddress[] }
  /** Close the backend's tunnels with 1012, paced over windowMs (health check down with onDown:
   *  drain, or an address gone from DNS). `untilUp`: stop if the backend comes back up meanwhile
   *  (a health drain; never for a slot whose address left, which may be reused at once). */
  | { readonly type: 'drain-backend'; readonly backend: number; readonly windowMs: number; readonly reason: string; readonly untilUp: boolean };

export type WorkerToPrimary =
  | { readonly type: 'listening' }
  /** A batch of access-log records (msgpackr-packed AccessRecord[], worker/access-log.ts), at most
   *  one message every 250 ms per worker, never one per connection. */
  | { readonly type: 'access-log'; readonly records: Uint8Array }
  | { readonly type: 'listen-failed'; readonly addresses: readonly string[] }
  /** Passive health: a connect to `backend` failed, timed out, or its upgrade answer was 5xx or
   *  invalid. One message per failed attempt (a clean close is never one). */
  | { readonly type: 'backend-failed'; readonly backend: number }
  /** An uncaught exception: the worker is closing its connections and will exit; restart it. */
  | { readonly type: 'crashed'; readonly message: string; readonly stack: string };
