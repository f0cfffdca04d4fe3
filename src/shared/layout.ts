/**
 * The SharedArrayBuffer layout: one binary contract between the primary and every worker.
 * Changing an offset here changes a shared-memory format, so LAYOUT_VERSION goes up with it.
 *
 * Regions, in order (all offsets in elements of the view named):
 *   header          Int32[5]                       magic, version, backendSlots, workerSlots,  (primary writes once)
 *                                                  slabFloats
 *   backendActive   Int32[backendSlots]            live connections per backend, all workers   (every worker: Atomics.add/sub; everyone reads)
 *   backendUp       Int32[backendSlots]            1 = may receive new connections             (primary writes; workers read on each pick)
 *   workerActive    Int32[workerSlots*backendSlots] live connections per worker per backend    (one writer: that worker; the primary reads
 *                                                                                              it to give back a crashed worker's share)
 *   workerTotals    Float64[workerSlots*TOTALS]    per-worker event counters                   (one writer: that worker; primary sums)
 *   workerTraffic   Float64[workerSlots*backendSlots*TRAFFIC] messages/bytes per backend       (one writer: that worker; primary sums)
 *   workerMetrics   Float64[workerSlots*slabFloats] labelled counters and histograms             (one writer: that worker; primary sums
 *                                                  on each scrape, and folds a dead worker's slab into its own
 *                                                  carried totals before zeroing it). The slab's sub-regions and
 *                                                  their label tables are planned from the snapshot by
 *                                                  metrics-plan.ts; only its size is part of this header.
 *   backendUpSince  Float64[backendSlots]          Date.now() when the backend last came up, 0 =   (primary writes when it sets backendUp to 1;
 *                                                  up from the start (no slow start ramp)          workers read on each pick of a service
 *                                                                                                  with slowStart)
 *
 * Float64 counters are written without Atomics: each has exactly one writer, aligned 8-byte stores do
 * not tear on the 64-bit targets we run on, and a reader that sees a value one event old is fine for
 * metrics. Atomics has no Float64 and BigInt64 would allocate a BigInt per increment on the hot path.
 */

export const LAYOUT_MAGIC = 0x534c4345; // 'SLCE'
export const LAYOUT_VERSION = 3;
const HEADER_INTS = 5;

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
}
export const TOTALS = 10;

/** Per-worker per-backend traffic counters (workerTraffic). */
export const enum Traffic {
  MessagesToBackend = 0,
  MessagesToClient = 1,
  BytesToBackend = 2,
  BytesToClient = 3,
}
export const TRAFFIC = 4;

export interface SharedViews {
  readonly buffer: SharedArrayBuffer;
  readonly backendSlots: number;
  readonly workerSlots: number;
  readonly backendActive: Int32Array;
  readonly backendUp: Int32Array;
  readonly workerActive: Int32Array;
  readonly workerTotals: Float64Array;
  readonly workerTraffic: Float64Array;
  /** Floats in each worker's metrics slab (workerMetrics), as planned by metrics-plan.ts. */
  readonly slabFloats: number;
  readonly workerMetrics: Float64Array;
  readonly backendUpSince: Float64Array;
}

function byteLength(backendSlots: number, workerSlots: number, slabFloats: number): { ints: number; floatsOffset: number; total: number } {
  const ints = HEADER_INTS + backendSlots * 2 + workerSlots * backendSlots;
  const floatsOffset = Math.ceil((ints * 4) / 8) * 8;
  const floats = workerSlots * TOTALS + workerSlots * backendSlots * TRAFFIC + workerSlots * slabFloats + backendSlots;
  return { ints, floatsOffset, total: floatsOffset + floats * 8 };
}

/**
 * Primary: allocate and stamp the header. Every backend starts up (health checks may clear it).
 * `slabFloats` is the size of each worker's metrics slab (metrics-plan.ts: planMetrics(snapshot).slabFloats);
 * 0 leaves the labelled metrics out (balancer unit tests need none).
 */
export function createShared(backendSlots: number, workerSlots: number, slabFloats = 0): SharedViews {
  const { total } = byteLength(backendSlots, workerSlots, slabFloats);
  const views = attachShared(new SharedArrayBuffer(total), backendSlots, workerSlots, slabFloats, true);
  views.backendUp.fill(1);
  return views;
}

/** Any thread: map the views over a buffer received from the primary, checking the contract. */
export function attachShared(
  buffer: SharedArrayBuffer,
  backendSlots: number,
  workerSlots: number,
  slabFloats: number,
  stamp = false,
): SharedViews {
  const { floatsOffset } = byteLength(backendSlots, workerSlots, slabFloats);
  const header = new Int32Array(buffer, 0, HEADER_INTS);
  if (stamp) {
    header[0] = LAYOUT_MAGIC;
    header[1] = LAYOUT_VERSION;
    header[2] = backendSlots;
    header[3] = workerSlots;
    header[4] = slabFloats;
  } else if (
    header[0] !== LAYOUT_MAGIC ||
    header[1] !== LAYOUT_VERSION ||
    header[2] !== backendSlots ||
    header[3] !== workerSlots ||
    header[4] !== slabFloats
  ) {
    throw new Error(
      `shared counters: layout mismatch (expected version ${LAYOUT_VERSION}, ${backendSlots} backends, ${workerSlots} workers, ${slabFloats} metric slots)`,
    );
  }
  let offset = HEADER_INTS * 4;
  const backendActive = new Int32Array(buffer, offset, backendSlots);
  offset += backendSlots * 4;
  const backendUp = new Int32Array(buffer, offset, backendSlots);
  offset += backendSlots * 4;
  const workerActive = new Int32Array(buffer, offset, workerSlots * backendSlots);
  const workerTotals = new Float64Array(buffer, floatsOffset, workerSlots * TOTALS);
  const trafficOffset = floatsOffset + workerSlots * TOTALS * 8;
  const workerTraffic = new Float64Array(buffer, trafficOffset, workerSlots * backendSlots * TRAFFIC);
  const metricsOffset = trafficOffset + workerSlots * backendSlots * TRAFFIC * 8;
  const workerMetrics = new Float64Array(buffer, metricsOffset, workerSlots * slabFloats);
  const backendUpSince = new Float64Array(buffer, metricsOffset + workerSlots * slabFloats * 8, backendSlots);
  return { buffer, backendSlots, workerSlots, backendActive, backendUp, workerActive, workerTotals, workerTraffic, slabFloats, workerMetrics, backendUpSince };
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
  }
}

/** Sum of one per-worker total over all workers (primary, on scrape). */
export function sumTotal(views: SharedViews, total: Total): number {
  let sum = 0;
  for (let w = 0; w < views.workerSlots; w++) sum += views.workerTotals[w * TOTALS + total]!;
  return sum;
}

/** Sum of one traffic counter of one backend over all workers. */
export function sumTraffic(views: SharedViews, backend: number, traffic: Traffic): number {
  let sum = 0;
  const stride = views.backendSlots * TRAFFIC;
  for (let w = 0; w < views.workerSlots; w++) sum += views.workerTraffic[w * stride + backend * TRAFFIC + traffic]!;
  return sum;
}

/** Primary, after folding a dead worker's counters elsewhere: zero its totals, traffic and metrics slab
 *  so the replacement worker starts from 0 (no writer exists while this runs: the thread has exited). */
export function resetWorkerCounters(views: SharedViews, worker: number): void {
  views.workerTotals.fill(0, worker * TOTALS, (worker + 1) * TOTALS);
  const stride = views.backendSlots * TRAFFIC;
  views.workerTraffic.fill(0, worker * stride, (worker + 1) * stride);
  views.workerMetrics.fill(0, worker * views.slabFloats, (worker + 1) * views.slabFloats);
}
