/**
 * The worker's half of the metrics: adds to this worker's own slab of its generation's metrics buffer at
 * offsets planned from the generation's snapshot (metrics-plan.ts), and to the per-backend traffic
 * counters of the shared layout, so counting is a store to a Float64Array, with no message between
 * threads, no lock and no allocation. The primary sums every worker's slabs when scraped. A connection
 * counts in the generation it started in for its whole life (tunnel.gen).
 *
 * Per message (countToBackend/countToClient): four or five Float64 adds, two or three on the shared slab (per
 * backend and direction; toward the client also the bytes on the client's wire) and two on the tunnel (for its
 * access-log line); per backend data frame one more (countBackendWire: the bytes on the backend's wire). Per connection: the outcome, the live gauge,
 * the close (side and code), two histograms, and the access-log record when that log is on.
 *
 * SLUICE_METRICS=off, read once when the worker starts, swaps the per-message functions for no-ops and
 * turns the per-connection ones off: the bench compares both to show what counting costs.
 */
import { performance } from 'node:perf_hooks';
import {
  Conn,
  CONNECTION_BUCKETS,
  ErrorReason,
  Side,
  UPGRADE_BUCKETS,
  closeOffset,
  connectionCell,
  errorOffset,
  observe,
  type RoutePlan,
  UPGRADE_STRIDE,
  DURATION_STRIDE,
} from '../shared/metrics-plan.js';
import { Traffic } from '../shared/layout.js';
import type { WorkerContext } from './context.js';
import type { Generation } from './generation.js';
import type { Tunnel } from './tunnel.js';
import { logConnection } from './access-log.js';

export { Conn, ErrorReason, Side };

let enabled = false;
let traffic: Float64Array = new Float64Array(0);

/** Set up counting for this worker. Returns false (and counts nothing) when SLUICE_METRICS=off. */
export function initMetrics(ctx: WorkerContext): boolean {
  traffic = ctx.shared.workerTraffic;
  enabled = process.env.SLUICE_METRICS !== 'off';
  if (enabled) {
    countToBackend = countToBackendOn;
    countToClient = countToClientOn;
    countBackendWire = countBackendWireOn;
  } else {
    countToBackend = countNothing;
    countToClient = countNothing;
    countBackendWire = countNothing;
  }
  return enabled;
}

function routeOf(t: Tunnel): RoutePlan {
  const { plan, snapshot } = t.gen;
  return plan.routes[plan.routeIndex[t.entryPoint * snapshot.routers.length + t.router]!]!;
}

// ---- per message ------------------------------------------------------------------------------

function countToBackendOn(t: Tunnel, bytes: number): void {
  traffic[t.trafficOffset + Traffic.MessagesToBackend]++;
  traffic[t.trafficOffset + Traffic.BytesToBackend] += bytes;
  t.messagesToBackend++;
  t.bytesToBackend += bytes;
}

function countToClientOn(t: Tunnel, bytes: number, wireBytes: number): void {
  traffic[t.trafficOffset + Traffic.MessagesToClient]++;
  traffic[t.trafficOffset + Traffic.BytesToClient] += bytes;
  traffic[t.trafficOffset + Traffic.WireBytesToClient] += wireBytes;
  t.messagesToClient++;
  t.bytesToClient += bytes;
}

function countBackendWireOn(t: Tunnel, bytes: number): void {
  traffic[t.trafficOffset + Traffic.WireBytesFromBackend] += bytes;
}

function countNothing(_t: Tunnel, _bytes: number, _wireBytes?: number): void {}

/** One client message forwarded to the backend (payload bytes). */
export let countToBackend: (t: Tunnel, bytes: number) => void = countNothing;
/** One backend message delivered to the client: payload bytes (all fragments), and its bytes on the
 *  client's wire (after compression; equal when sent plain). */
export let countToClient: (t: Tunnel, bytes: number, wireBytes: number) => void = countNothing;
/** One data frame from the backend: its payload bytes as they came on the backend leg (compressed or not). */
export let countBackendWire: (t: Tunnel, bytes: number) => void = countNothing;

// ---- per connection ---------------------------------------------------------------------------

/** The client's upgrade request arrived (routed): the upgrade duration starts now. */
export function upgradeStarted(t: Tunnel): void {
  t.startedAt = performance.now();
}

/** How an upgrade ended when it did not open a tunnel; `t.backend` is the last backend tried (-1: none). */
export function countOutcome(t: Tunnel, outcome: Conn.RejectedByBackend | Conn.NoBackend | Conn.ConnectFailed | Conn.Limited): void {
  if (!enabled) return;
  const g = t.gen;
  g.slab[g.slabBase + connectionCell(g.plan, routeOf(t), outcome === Conn.NoBackend ? -1 : t.backend) + outcome]++;
}

/** The backend's 101 was relayed: the connection is live. */
export function connectionOpened(t: Tunnel): void {
  t.openedAt = performance.now();
  if (!enabled) return;
  const g = t.gen;
  const cell = g.slabBase + connectionCell(g.plan, routeOf(t), t.backend);
  g.slab[cell + Conn.Upgraded]++;
  g.slab[cell + Conn.Active]++;
  observe(g.slab, g.slabBase + g.plan.upgradeBase + t.service * UPGRADE_STRIDE, UPGRADE_BUCKETS, (t.openedAt - t.startedAt) / 1000);
}

/** A backend (slot) of generation `g` failed this way (counted per attempt, so a retried connect counts too). */
export function countError(g: Generation, backend: number, reason: ErrorReason): void {
  if (!enabled || backend < 0) return;
  g.slab[g.slabBase + errorOffset(g.plan, backend, reason)]++;
}

/** Remember who started closing and with which code; the first call wins. */
export function closeStartedBy(t: Tunnel, side: Side, code: number): void {
  if (t.closeSide < 0) {
    t.closeSide = side;
    t.closeCode = code;
  }
}

/** uWS closed the client of an open tunnel (exactly once per opened connection). `code` is what uWS
 *  reported; it counts as the client's close unless a side was recorded before. */
export function connectionClosed(t: Tunnel, code: number): void {
  if (t.openedAt === 0) return;
  closeStartedBy(t, Side.Client, code);
  const seconds = (performance.now() - t.openedAt) / 1000;
  t.openedAt = 0;
  logConnection(t, seconds);
  if (!enabled) return;
  const g = t.gen;
  g.slab[g.slabBase + connectionCell(g.plan, routeOf(t), t.backend) + Conn.Active]--;
  g.slab[g.slabBase + closeOffset(g.plan, t.service, t.closeSide as Side, t.closeCode)]++;
  observe(g.slab, g.slabBase + g.plan.durationBase + t.service * DURATION_STRIDE, CONNECTION_BUCKETS, seconds);
}
