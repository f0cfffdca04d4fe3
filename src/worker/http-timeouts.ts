/**
 * respondingTimeouts of a plain HTTP exchange (http-proxy.ts), Traefik's readTimeout and writeTimeout, never
 * on upgrades. Kept apart from the streaming code because it touches it only at its ends: one timer per
 * request, armed for the next deadline still ahead, and an answer (408) or a cut connection when one passes.
 */
import { performance } from 'node:perf_hooks';
import type { HttpExchange } from './http-proxy.js';
import { Out } from './http-response-writer.js';

/** Arm the timer for the next deadline still ahead: readTimeout while the body is not all in, writeTimeout
 *  while the response is not all out. */
export function armDeadline(x: HttpExchange): void {
  const guard = x.gen.limits.entryPoints[x.entryPoint]!;
  const elapsed = performance.now() - x.startedAt;
  let next = Infinity;
  if (!x.bodyDone && guard.readTimeoutMs > 0) next = guard.readTimeoutMs;
  if (guard.writeTimeoutMs > 0) next = Math.min(next, guard.writeTimeoutMs);
  if (next === Infinity) return;
  x.deadline = setTimeout(onDeadline, Math.max(1, next - elapsed), x);
}

/** A respondingTimeout may have passed: a body still arriving after readTimeout gets 408 (or the connection
 *  is cut when an answer has started); a response not out after writeTimeout is cut. */
function onDeadline(x: HttpExchange): void {
  x.deadline = null;
  if (x.finished || x.aborted) return;
  const guard = x.gen.limits.entryPoints[x.entryPoint]!;
  const elapsed = performance.now() - x.startedAt;
  const readLate = !x.bodyDone && guard.readTimeoutMs > 0 && elapsed >= guard.readTimeoutMs;
  const writeLate = x.out !== Out.Done && guard.writeTimeoutMs > 0 && elapsed >= guard.writeTimeoutMs;
  if (!readLate && !writeLate) {
    armDeadline(x);
    return;
  }
  x.timedOut = true;
  if (!x.upstreamDone && x.abortUpstream !== null) x.abortUpstream(new Error('respondingTimeouts'));
  else if (!x.upstreamDone) x.releaseUpstream(false);
  if (readLate && x.out === Out.Nothing) x.answerError(408, 'the request body did not arrive within readTimeout');
  else x.cut();
}
