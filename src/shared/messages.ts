/**
 * The messages between the primary and a worker, and the record shapes that cross threads. None of them
 * is per connection or per message: live state travels through the SharedArrayBuffer (layout.ts); these
 * steer the lifecycle, hand over config generations, and carry batched access-log records.
 */
import type { Snapshot } from '../config/snapshot.js';

/** One compiled config as the workers receive it. */
export interface GenerationInit {
  /** Increases with every successful reload (1 = the config Sluice started with). */
  readonly id: number;
  readonly snapshot: Snapshot;
  /** The generation's metrics slabs (metrics-plan.ts): workerSlots × plan.slabFloats Float64s. */
  readonly metricsBuffer: SharedArrayBuffer;
}

/** workerData of every worker thread. */
export interface WorkerInit {
  readonly workerIndex: number;
  readonly sharedBuffer: SharedArrayBuffer;
  readonly backendSlots: number;
  readonly workerSlots: number;
  /** The config in force when the worker starts. */
  readonly generation: GenerationInit;
}

export interface BackendAddress {
  readonly backend: number;
  readonly host: string;
  readonly identity: string;
}

/** How one entry point stops (transport.lifeCycle), in the order the primary asks for it. */
export interface EntryPointStop {
  readonly entryPoint: string;
  /** Keep accepting this long, then close the listener. */
  readonly acceptGraceMs: number;
  /** Then close the open WebSockets with 1001, spread evenly (with jitter) over this window. */
  readonly graceMs: number;
}

export type PrimaryToWorker =
  /** Stop as each entry point's lifeCycle says, then exit. `immediate`: close everything now (a second
   *  signal). */
  | { readonly type: 'shutdown'; readonly entryPoints: readonly EntryPointStop[]; readonly immediate: boolean }
  /** A new config: new connections and requests use it from now on; open ones keep theirs. */
  | { readonly type: 'generation'; readonly generation: GenerationInit }
  /** Fault injection for tests of the supervisor (only reachable in-process, never from outside):
   *  'throw' raises an uncaught exception in the worker, 'block' busy-waits its loop for `ms`. */
  | { readonly type: 'fault'; readonly kind: 'throw' | 'block'; readonly ms?: number }
  /** Discovery: these backend slots now hold these addresses (host '' = the slot is empty). Also sent
   *  to every new worker with the current table. `identity` is the slot's URL with its address, which
   *  keys sticky cookies and hash order. */
  | { readonly type: 'backend-addresses'; readonly addresses: readonly BackendAddress[] }
  /** Close the backend's tunnels with 1012, paced over windowMs (health check down with onDown:
   *  drain, an address gone from DNS, a backend removed by a reload). `untilUp`: stop if the backend
   *  comes back up meanwhile (a health drain; never for a slot whose address left, which may be reused). */
  | { readonly type: 'drain-backend'; readonly backend: number; readonly windowMs: number; readonly reason: string; readonly untilUp: boolean }
  /** Fan-out: publications, packed once by the primary for every worker (fanout-wire.ts encodeBatch); at
   *  most one message per worker per event-loop turn of the primary, whatever the number of publications. */
  | { readonly type: 'fanout-publish'; readonly batch: Uint8Array };

export type WorkerToPrimary =
  | { readonly type: 'listening' }
  /** A batch of access-log records (msgpackr-packed (AccessRecord | HttpAccessRecord | RejectedRecord)[]), at most one message every 250 ms
   *  per worker, never one per connection. */
  | { readonly type: 'access-log'; readonly records: Uint8Array }
  | { readonly type: 'listen-failed'; readonly addresses: readonly string[] }
  /** The worker installed generation `id` (its listeners are open); `pauseMs` is how long the install
   *  held its event loop. `failed`: entry points whose new listener could not be opened. */
  | { readonly type: 'generation-installed'; readonly id: number; readonly pauseMs: number; readonly failed: readonly string[] }
  /** Generation `id` is no longer current and its last connection in this worker closed. */
  | { readonly type: 'generation-released'; readonly id: number }
  /** Passive health: a connect to `backend` failed, timed out, or its upgrade answer was 5xx or
   *  invalid. One message per failed attempt (a clean close is never one). `reason`: a fixed word,
   *  maybe followed by a detail (worker/backend-failures.ts), shown by the admin API. */
  | { readonly type: 'backend-failed'; readonly backend: number; readonly reason: string }
  /** A backend drain ended in this worker: all its connections closed, or `kept` of them spared because
   *  the backend passed its checks again (logged by the primary). */
  | { readonly type: 'drain-ended'; readonly backend: number; readonly closed: number; readonly kept: number }
  /** Shutdown progress of one entry point (logged by the primary, so the pace is visible). */
  | { readonly type: 'drain-progress'; readonly entryPoint: string; readonly closed: number; readonly remaining: number }
  /** An uncaught exception: the worker is closing its connections and will exit; restart it. */
  | { readonly type: 'crashed'; readonly message: string; readonly stack: string }
  /** Fan-out: subscriber counts in this worker of the channels that changed (channel, count, channel, count…),
   *  at most one message a second per worker. */
  | { readonly type: 'fanout-channels'; readonly counts: readonly (string | number)[] };

/**
 * One access-log record: a closed WebSocket connection, in this order (the primary's reader depends on
 * it). Names travel as strings: the generation whose indexes they were may be gone when the batch
 * arrives.
 */
export type AccessRecord = [
  endedAtMs: number,
  clientAddress: string,
  entryPoint: string,
  router: string,
  service: string,
  backendUrl: string,
  durationMs: number,
  messagesToBackend: number,
  bytesToBackend: number,
  messagesToClient: number,
  bytesToClient: number,
  closeCode: number,
  closeSide: number,
];

/**
 * One access-log record of a plain HTTP request, in this order; the leading 'http' tells it from a
 * WebSocket's AccessRecord (which starts with a number). `status` is what the client got (499: it left first).
 */
export type HttpAccessRecord = [
  kind: 'http',
  endedAtMs: number,
  clientAddress: string,
  entryPoint: string,
  router: string,
  service: string,
  backendUrl: string,
  durationMs: number,
  method: string,
  /** Path and query as the client sent them (cut at 2,048 characters). */
  path: string,
  status: number,
  requestBytes: number,
  responseBytes: number,
];

/**
 * One access-log record of a request Sluice answered without a WebSocket or a backend's response: a
 * refused upgrade (no router, no backend, a bad handshake, every attempt failed, the backend's own refusal
 * relayed, a middleware's answer) or an unrouted plain HTTP request. The leading 'rejected' tells it from
 * the others. `router`, `service`, `backendUrl` are '' when none was reached.
 */
export type RejectedRecord = [
  kind: 'rejected',
  endedAtMs: number,
  clientAddress: string,
  entryPoint: string,
  router: string,
  service: string,
  backendUrl: string,
  /** 1: a WebSocket upgrade; 0: a plain HTTP request. */
  upgrade: number,
  method: string,
  /** The Host header's name without port (Traefik's RequestHost), and path and query as sent (each
   *  cut to a bounded length). */
  host: string,
  path: string,
  status: number,
  /** Why, in words (the text of Sluice's own answer, or who answered). */
  reason: string,
  /** From the request to the answer (0 for what is refused at once). */
  durationMs: number,
];
