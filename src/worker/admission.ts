/**
 * Admission of WebSocket upgrades, in the order they meet one:
 *  1. at the entry point, before the router's middlewares (admitUpgrade): websocket.allowedOrigins (403) and
 *     entryPoints.<name>.websocket.maxConnections (503 with Retry-After; the listener keeps answering), and the
 *     per-connection limits object the tunnel will carry (limits-connection.ts);
 *  2. at each backend the balancer picks (admitBackend): loadBalancer.maxConnections (a full backend is skipped
 *     for the next one) and the upgrade admission bucket: an upgrade whose token comes within
 *     ADMISSION_MAX_WAIT_MS waits for it (held in Sluice, so the backend sees the admitted rate, not the bursts
 *     in which clients arrive); one whose token is further away skips the backend;
 *  3. when every backend was skipped (refuseForBackends): 503 with a Retry-After spread so that the refused
 *     clients of a reconnect wave come back at the rate the buckets admit (LimitTable.nextTurn). Retry-After
 *     counts whole seconds, so clients come back in bunches; the one-second wait of step 2 smooths each bunch
 *     out over the second that follows.
 * Every refusal counts in sluice_limited_total and websocket_connections_total{outcome="limited"}.
 *
 * maxConnections per backend reads the shared live count before the pick takes its slot, so workers picking
 * the last free place at the same instant may pass it by one each; admission buckets are exact (locked).
 */
import type uWS from 'uWebSockets.js';
import { LIMIT_REACHED, UNTRACKED, nowMs } from '../shared/limit-table.js';
import { LimitKind, LimitReason } from '../shared/metrics-plan.js';
import { context } from './context.js';
import type { Generation } from './generation.js';
import { refuseRequest, type RefusedRequest } from './refusals.js';
import { ConnectionLimits } from './limits-connection.js';
import { countLimited, countUntracked, jitteredRetryAfter, limitTable } from './limits.js';
import type { Tunnel } from './tunnel.js';

/** The longest an upgrade is held waiting for its backend's admission token. */
export const ADMISSION_MAX_WAIT_MS = 1000;

/** admitUpgrade: the upgrade was answered (refused); the caller stops. */
export const REFUSED = false;

/**
 * Check an upgrade routed to `router` on `entryPoint` (call inside the uWS upgrade handler, after routing):
 * REFUSED after answering, else the limits object the connection carries (null when it needs none).
 */
export function admitUpgrade(gen: Generation, entryPoint: number, router: number, res: uWS.HttpResponse, req: uWS.HttpRequest, request: RefusedRequest): ConnectionLimits | null | typeof REFUSED {
  const limits = gen.limits;
  const origins = limits.origins;
  if (origins !== null) {
    const origin = req.getHeader('origin');
    if (origin !== '' && !origins.allows(origin)) {
      countLimited(gen, entryPoint, router, LimitKind.Upgrade, LimitReason.OriginNotAllowed);
      refuseRequest(res, request, gen, entryPoint, router, true, 403, `origin '${origin.slice(0, 200)}' is not allowed (websocket.allowedOrigins)`);
      return REFUSED;
    }
  }
  const guard = limits.entryPoints[entryPoint]!;
  let held: ConnectionLimits | null = null;
  if (guard.maxConnections > 0) {
    const slot = limitTable().acquire(guard.connectionsKey, guard.maxConnections);
    if (slot === LIMIT_REACHED) {
      countLimited(gen, entryPoint, router, LimitKind.Upgrade, LimitReason.EntryPointFull);
      refuseRequest(res, request, gen, entryPoint, router, true, 503, `entry point '${gen.snapshot.entryPoints[entryPoint]!.name}' is at its maxConnections`, [['retry-after', jitteredRetryAfter(1000)]]);
      return REFUSED;
    }
    if (slot === UNTRACKED) countUntracked();
    else {
      held = newConnectionLimits(gen);
      held.entryPointSlot = slot;
    }
  }
  return held ?? (limits.perConnection ? newConnectionLimits(gen) : null);
}

/** The limits object of a connection of `gen` (also made for an upgrade whose middlewares hold something). */
export function newConnectionLimits(gen: Generation): ConnectionLimits {
  const c = gen.limits.connection;
  return new ConnectionLimits(c.messageRate, c.controlFrameRate);
}

/** What the backend checks of one upgrade found, kept on its handshake for the answer when all refuse. */
export interface BackendRefusals {
  /** Backends skipped for a limit (they are in `tried` but were not attempted). */
  skipped: number;
  /** The last reason a backend was skipped for. */
  reason: LimitReason.BackendsFull | LimitReason.Admission;
  /** The backend skipped for admission last, -1 when none (its bucket hands out the Retry-After turn). */
  admissionBackend: number;
  /** The backend whose admission token this upgrade waited for (it goes there without asking again), -1. */
  admitted: number;
}

/**
 * Whether backend `slot` of the tunnel's service may take this upgrade: -1 no (skip it), 0 now, or the
 * milliseconds to wait for its admission token, reserved for this upgrade.
 */
export function admitBackend(t: Tunnel, refusals: BackendRefusals, slot: number): number {
  if (refusals.admitted === slot) {
    refusals.admitted = -1;
    return 0;
  }
  const gen = t.gen;
  const service = gen.service(t.service);
  const { maxConnections, admission } = service.limits;
  if (maxConnections > 0 && Atomics.load(context().shared.backendActive, slot) >= maxConnections) {
    refusals.skipped++;
    refusals.reason = LimitReason.BackendsFull;
    return -1;
  }
  if (admission === null) return 0;
  const key = gen.limits.admissionKey(slot);
  if (key === undefined) return 0;
  const wait = limitTable().reserve(key, nowMs(), admission.intervalMs, admission.burst, ADMISSION_MAX_WAIT_MS);
  if (wait >= 1) {
    refusals.admitted = slot;
    return wait;
  }
  if (wait >= 0) return 0;
  refusals.skipped++;
  refusals.reason = LimitReason.Admission;
  refusals.admissionBackend = slot;
  return -1;
}

/**
 * Every backend was skipped for a limit: count the refusal and give the status and Retry-After to answer. For
 * admission, the Retry-After is this client's turn in the refused backend's queue (so a wave of refused
 * clients comes back spread at the admitted rate), plus up to a second of jitter.
 */
export function refuseForBackends(t: Tunnel, refusals: BackendRefusals): { message: string; retryAfter: string } {
  const gen = t.gen;
  const service = gen.service(t.service);
  countLimited(gen, t.entryPoint, t.router, LimitKind.Upgrade, refusals.reason);
  if (refusals.reason === LimitReason.Admission && refusals.admissionBackend >= 0 && service.limits.admission !== null) {
    const admission = service.limits.admission;
    const wait = limitTable().nextTurn(gen.limits.admissionKey(refusals.admissionBackend)!, nowMs(), admission.intervalMs, admission.burst);
    return { message: `the backends of service '${service.name}' are admitting upgrades at their admission rate; retry later`, retryAfter: jitteredRetryAfter(wait) };
  }
  return { message: `every backend of service '${service.name}' is at its maxConnections`, retryAfter: jitteredRetryAfter(service.retryAfterSeconds * 1000) };
}
