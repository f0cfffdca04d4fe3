/**
 * The SharedArrayBuffer layout: one binary contract between the primary and every worker.
 * Changing an offset here changes a shared-memory format, so LAYOUT_VERSION goes up with it.
 *
 * Backend slots: every backend of every live config generation owns one slot, assigned by the primary
 * from its identity (service name + server URL, src/primary/backend-slots.ts), so a backend that stays
 * across a reload keeps its slot and with it its live count, health bit, slow-start clock and traffic
 * counters. `backendSlots` is a capacity fixed at start (BackendSlots.capacityFor); a slot is freed only
 * once no live generation names it, and a reload that needs more slots than are free is refused.
 *
 * Regions, in order (all offsets in elements of the view named):
 *   header          Int32[4]                       magic, version, backendSlots, workerSlots    (primary writes once)
 *   backendActive   Int32[backendSlots]            live connections per backend, all workers   (every worker: Atomics.add/sub; everyone reads)
 *   backendUp       Int32[backendSlots]            1 = may receive new connections             (primary writes; workers read on each pick)
 *   workerActive    Int32[workerSlots*backendSlots] live connections per worker per backend    (one writer: that worker; the primary reads
 *                                                                                              it to give back a crashed worker's share)
 *   workerTotals    Float64[workerSlots*TOTALS]    per-worker event counters                   (one writer: that worker; primary sums)
 *   workerTraffic   Float64[workerSlots*backendSlots*TRAFFIC] messages/bytes (payload and on   (one writer: that worker; primary sums, and
 *                                                  the wire) per backend
 *                                                                                              folds and zeroes a slot before reusing it)
 *   backendUpSince  Float64[backendSlots]          Date.now() when the backend last came up, 0 =   (primary writes when it sets backendUp to 1;
 *                                                  up from the start (no slow start ramp)          workers read on each pick of a service
 *                                                                                                  with slowStart)
 *   workerFanout    Float64[workerSlots*FANOUT_FIELDS] fan-out deliveries, drops, subscriptions,  (one writer: that worker; primary sums, folds and
 *                                                  publish-to-send histogram (fanout-wire.ts)     zeroes a dead worker's slot: fanout-hub.ts)
 *   backendHttpActive Int32[backendSlots]          plain HTTP requests in flight per backend,   (every worker: Atomics.add/sub around each
 *                                                  all workers (least outstanding requests)      upstream attempt; workers read on each HTTP
 *                                                                                                pick; the primary shows it)
 *   workerHttpActive Int32[workerSlots*backendSlots] HTTP requests in flight per worker per backend (one writer: that worker; the primary reads
 *                                                                                                it to give back a crashed worker's share)
 *   backendCoolUntil Float64[backendSlots]         Date.now() until which picks pass the backend   (any worker, on a refused or timed-out connect
 *                                                  over (a short cool-down after a connect failed   to it: worker/backend-failures.ts; every pick
 *                                                  or timed out); 0 = never                         reads it: balancer/pool.ts; the primary zeroes
 *                                                                                                a slot before reuse and shows it in the API)
 *   limitWords      Int32[TABLE_SLOTS*SLOT_WORDS]  the limits table: per key a lock, fingerprint    (every worker, under each slot's lock:
 *                                                  and count (limit-table.ts)                        limit-table.ts; the primary only allocates)
 *   limitTimes      Float64[TABLE_SLOTS*SLOT_TIMES] the limits table's token buckets (tat, horizon) (the same)
 *
 * HTTP requests in flight are counted apart from the WebSocket connections (backendActive): a long-poll
 * or a REST call must not change what websocket_connections_active and least-connections mean.
 *
 * The labelled metrics (outcomes per route, errors, closes, histograms) are not here: their shape depends
 * on the routers and services of one config, so each generation has its own SharedArrayBuffer of slabs
 * (src/shared/metrics-plan.ts), made by the primary with the generation and dropped when it is released.
 *
 * Float64 counters are written without Atomics: each has exactly one writer, aligned 8-byte stores do
 * not tear on the 64-bit targets we run on, and a reader that sees a value one event old is fine for
 * metrics. Atomics has no Float64 and BigInt64 would allocate a BigInt per increment on the hot path.
 * backendCoolUntil is the one Float64 with many writers: each writes "now + cool-down" with a plain store,
 * so whichever store lands last is a cool-down that began a moment ago, which is all a pick needs.
 */

import { FANOUT_FIELDS } from './fanout-wire.js';
import { SLOT_TIMES, SLOT_WORDS, TABLE_SLOTS } from './limit-table.js';

export const LAYOUT_MAGIC = 0x534c4345; // 'SLCE'
export const LAYOUT_VERSION = 9;
const HEADER_INTS = 4;

/** Per-worker event counters (workerTotals), one Float64 each. */
export const enum Total {
  Upgraded = 0,
  RejectedByBackend = 1,
  NoBackend = 2,
  ConnectFailed = 3,
  NoRoute = 4,
  BackpressureCloses = 5,
  OversizeCloses = 6,
  BackendClosedAbruptly = 7,
  /** Date.now() of the worker's last timer tick: lets the primary see a stuck event loop. */
  Heartbeat = 8,
  /** Event-loop delay (99th percentile) over the last heartbeat period, in seconds (a gauge, not a count). */
  EventLoopLag = 9,
  /** A per-client limit found the limits table's probe window full and let a request through uncounted
   *  (limit-table.ts UNTRACKED). */
  LimitsUntracked = 10,
}
export const TOTALS = 11;

/** Per-worker per-backend traffic counters (workerTraffic). */
export const enum Traffic {
  MessagesToBackend = 0,
  MessagesToClient = 1,
  BytesToBackend = 2,
  BytesToClient = 3,
  /** Payload bytes on the client leg toward the client after permessage-deflate (= BytesToClient when
   *  nothing is compressed; uWS does not report compressed sizes, so compressed ones are estimated:
   *  src/worker/compression.ts). */
  WireBytesToClient = 4,
  /** Payload bytes of the backend's data frames as they came on the backend leg (compressed when the
   *  backend compresses: serversTransport.websocketCompression). */
  WireBytesFromBackend = 5,
}
export const TRAFFIC = 6;

export interface SharedViews {
  readonly buffer: SharedArrayBuffer;
  readonly backendSlots: number;
  readonly workerSlots: number;
  readonly backendActive: Int32Array;
  readonly backendUp: Int32Array;
  readonly workerActive: Int32Array;
  readonly workerTotals: Float64Array;
  readonly workerTraffic: Float64Array;
  readonly backendUpSince: Float64Array;
  readonly backendHttpActive: Int32Array;
  readonly workerHttpActive: Int32Array;
  readonly workerFanout: Float64Array;
  readonly backendCoolUntil: Float64Array;
  /** The limits table (limit-table.ts): lock, key and count words per slot, and two times per slot. */
  readonly limitWords: Int32Array;
  readonly limitTimes: Float64Array;
}

function byteLength(backendSlots: number, workerSlots: number): { ints: number; floatsOffset: number; total: number } {
  const ints = HEADER_INTS + backendSlots * 2 + workerSlots * backendSlots + backendSlots + workerSlots * backendSlots + TABLE_SLOTS * SLOT_WORDS;
  const floatsOffset = Math.ceil((ints * 4) / 8) * 8;
  const floats = workerSlots * TOTALS + workerSlots * backendSlots * TRAFFIC + backendSlots + workerSlots * FANOUT_FIELDS + backendSlots + TABLE_SLOTS * SLOT_TIMES;
  return { ints, floatsOffset, total: floatsOffset + floats * 8 };
}

/** Primary: allocate and stamp the header. Every slot starts up (health checks may clear it). */
export function createShared(backendSlots: number, workerSlots: number): SharedViews {
  const { total } = byteLength(backendSlots, workerSlots);
  const views = attachShared(new SharedArrayBuffer(total), backendSlots, workerSlots, true);
  views.backendUp.fill(1);
  return views;
}

/** Any thread: map the views over a buffer received from the primary, checking the contract. */
export function attachShared(buffer: SharedArrayBuffer, backendSlots: number, workerSlots: number, stamp = false): SharedViews {
  const { floatsOffset } = byteLength(backendSlots, workerSlots);
  const header = new Int32Array(buffer, 0, HEADER_INTS);
  if (stamp) {
    header[0] = LAYOUT_MAGIC;
    header[1] = LAYOUT_VERSION;
    header[2] = backendSlots;
    header[3] = workerSlots;
  } else if (header[0] !== LAYOUT_MAGIC || header[1] !== LAYOUT_VERSION || header[2] !== backendSlots || header[3] !== workerSlots) {
    throw new Error(`shared counters: layout mismatch (expected version ${LAYOUT_VERSION}, ${backendSlots} backend slots, ${workerSlots} workers)`);
  }
  let offset = HEADER_INTS * 4;
  const backendActive = new Int32Array(buffer, offset, backendSlots);
  offset += backendSlots * 4;
  const backendUp = new Int32Array(buffer, offset, backendSlots);
  offset += backendSlots * 4;
  const workerActive = new Int32Array(buffer, offset, workerSlots * backendSlots);
  offset += workerSlots * backendSlots * 4;
  const backendHttpActive = new Int32Array(buffer, offset, backendSlots);
  offset += backendSlots * 4;
  const workerHttpActive = new Int32Array(buffer, offset, workerSlots * backendSlots);
  offset += workerSlots * backendSlots * 4;
  const limitWords = new Int32Array(buffer, offset, TABLE_SLOTS * SLOT_WORDS);
  const workerTotals = new Float64Array(buffer, floatsOffset, workerSlots * TOTALS);
  const trafficOffset = floatsOffset + workerSlots * TOTALS * 8;
  const workerTraffic = new Float64Array(buffer, trafficOffset, workerSlots * backendSlots * TRAFFIC);
  const upSinceOffset = trafficOffset + workerSlots * backendSlots * TRAFFIC * 8;
  const backendUpSince = new Float64Array(buffer, upSinceOffset, backendSlots);
  const fanoutOffset = upSinceOffset + backendSlots * 8;
  const workerFanout = new Float64Array(buffer, fanoutOffset, workerSlots * FANOUT_FIELDS);
  const coolOffset = fanoutOffset + workerSlots * FANOUT_FIELDS * 8;
  const backendCoolUntil = new Float64Array(buffer, coolOffset, backendSlots);
  const limitTimes = new Float64Array(buffer, coolOffset + backendSlots * 8, TABLE_SLOTS * SLOT_TIMES);
  return { buffer, backendSlots, workerSlots, backendActive, backendUp, workerActive, workerTotals, workerTraffic, backendUpSince, workerFanout, backendHttpActive, workerHttpActive, backendCoolUntil, limitWords, limitTimes };
}

/**
 * Primary, after a worker died: its connections died with it, so give its share of every backend's
 * live count back before the slot is reused by the replacement worker. Its event counters are left
 * for the caller to fold into carried totals (metrics-store.ts) and zero with resetWorkerCounters.
 */
export function releaseWorkerSlot(views: SharedViews, worker: number): void {
  const base = worker * views.backendSlots;
  for (let b = 0; b < views.backendSlots; b++) {
    const held = Atomics.exchange(views.workerActive, base + b, 0);
    if (held !== 0) Atomics.sub(views.backendActive, b, held);
    const requests = Atomics.exchange(views.workerHttpActive, base + b, 0);
    if (requests !== 0) Atomics.sub(views.backendHttpActive, b, requests);
  }
}

/** Primary, after folding a dead worker's counters elsewhere: zero its totals and traffic so the
 *  replacement worker starts from 0 (no writer exists while this runs: the thread has exited). */
export function resetWorkerCounters(views: SharedViews, worker: number): void {
  views.workerTotals.fill(0, worker * TOTALS, (worker + 1) * TOTALS);
  const stride = views.backendSlots * TRAFFIC;
  views.workerTraffic.fill(0, worker * stride, (worker + 1) * stride);
}
