/**
 * Passive health, the worker's half: an attempt on a backend failed. A refused or timed-out connect
 * starts the backend's cool-down in shared memory at once (every pick in every worker passes it over for
 * COOL_DOWN_MS, balancer/pool.ts), and every failure goes to the primary, which counts them and ejects
 * (primary/backend-health.ts). Both are off for a service with `passiveHealthCheck: { maxFailedAttempts:
 * 0 }`. Called per failed attempt, never per message.
 */
import { COOL_DOWN_MS } from '../balancer/pool.js';
import { context } from './context.js';
import type { Generation } from './generation.js';

/** What a failure was, as the admin API shows it (lastPassiveFailure.reason). */
export const enum Failure {
  /** Refused, reset or unreachable before anything was sent back: cools down. */
  ConnectRefused = 0,
  /** No connection, or no answer to the upgrade, in time (dialTimeout, handshakeTimeout): cools down. */
  Timeout = 1,
  /** A 5xx answer to the upgrade. */
  ServerError = 2,
  /** An answer that is not a valid WebSocket 101, or a close in the middle of it. */
  BadHandshake = 3,
  /** Plain HTTP: the backend closed or reset the connection before its response head. */
  Reset = 4,
}

const REASONS = ['connect_refused', 'timeout', 'server_error', 'bad_handshake', 'backend_reset'] as const;

/** Report a failed attempt on backend slot `backend` of generation `gen`; `detail` goes with the reason
 *  (the status, the handshake problem). */
export function backendFailed(gen: Generation, backend: number, failure: Failure, detail = ''): void {
  if (backend < 0 || gen.service(gen.backend(backend).service).passiveHealthCheck === null) return;
  const ctx = context();
  if (failure === Failure.ConnectRefused || failure === Failure.Timeout) ctx.shared.backendCoolUntil[backend] = Date.now() + COOL_DOWN_MS;
  ctx.post({ type: 'backend-failed', backend, reason: detail === '' ? REASONS[failure] : `${REASONS[failure]}: ${detail}` });
}
