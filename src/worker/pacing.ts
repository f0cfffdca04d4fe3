/**
 * Paced closing: a set of connections closed one by one, spread evenly over a window with jitter, so the
 * clients' reconnects arrive as a trickle instead of a storm. Used when a backend is drained (health
 * check down with onDown: drain, an address gone from DNS, a backend removed by a reload) and when an
 * entry point shuts down (transport.lifeCycle.graceTimeOut). Costs O(victims) and one timer.
 */
import { TunnelState, type Tunnel } from './tunnel.js';

/** Shortest pause between two ticks; shorter windows close several per tick. */
const MIN_TICK_MS = 20;

export interface PacedClose {
  /** Close what is left now (a second SIGTERM). */
  finish(): void;
  /** Stop without closing the rest (a drained backend came back up). */
  cancel(): void;
  readonly remaining: number;
}

/**
 * Close `victims` with `close`, the i-th at a random moment within the i-th of `victims.length` equal
 * parts of `windowMs` (the first part starts now). `keepGoing` is asked before each tick: false stops.
 * `progress` hears how many were closed and remain after each tick that closed some.
 */
export function paceCloses(
  victims: readonly Tunnel[],
  windowMs: number,
  close: (t: Tunnel) => void,
  keepGoing: () => boolean = () => true,
  progress?: (closed: number, remaining: number) => void,
  ended?: (closed: number, kept: number) => void,
): PacedClose {
  const n = victims.length;
  const slot = n === 0 ? 0 : windowMs / n;
  const due = new Float64Array(n);
  const start = Date.now();
  for (let i = 0; i < n; i++) due[i] = start + (i + Math.random()) * slot;
  // The first goes at once, so a drain that has a single victim does not wait for nothing.
  if (n > 0) due[0] = start;
  let next = 0;
  let timer: NodeJS.Timeout | null = null;
  const closeOne = (t: Tunnel): void => {
    // Skip a tunnel that closed meanwhile.
    if (t.ws !== null && t.state === TunnelState.Open) close(t);
  };
  const tick = (): void => {
    if (!keepGoing()) {
      stop();
      ended?.(next, n - next);
      return;
    }
    const now = Date.now();
    const before = next;
    while (next < n && due[next]! <= now) closeOne(victims[next++]!);
    if (next > before) progress?.(next, n - next);
    if (next >= n) {
      stop();
      ended?.(n, 0);
    }
  };
  const stop = (): void => {
    if (timer !== null) clearInterval(timer);
    timer = null;
  };
  tick();
  if (next < n) timer = setInterval(tick, Math.max(MIN_TICK_MS, Math.min(slot, 1000)));
  return {
    finish() {
      stop();
      while (next < n) closeOne(victims[next++]!);
    },
    cancel: stop,
    get remaining() {
      return n - next;
    },
  };
}
