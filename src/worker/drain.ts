/**
 * Paced closing of one backend's connections: when the primary marks a backend down (health check
 * with onDown: drain) or discovery loses its address, its clients are closed with 1012 (Service
 * Restart: "reconnect, you will be sent elsewhere") one by one, spread evenly over the window, so
 * their reconnects arrive as a trickle instead of a storm. Costs O(tunnels of that backend).
 */
import { TunnelState, tunnelsOf, type Tunnel } from './tunnel.js';
import { closeStartedBy, Side } from './metrics.js';
import { context } from './context.js';

/** Shortest pause between two closes; shorter windows close several per tick. */
const MIN_TICK_MS = 20;

export function drainBackend(backend: number, windowMs: number, reason: string, untilUp: boolean): void {
  const victims = [...tunnelsOf(backend)];
  const up = context().shared.backendUp;
  const n = victims.length;
  if (n === 0) return;
  const tickMs = Math.max(MIN_TICK_MS, windowMs / n);
  const perTick = Math.ceil((n * tickMs) / windowMs);
  let next = 0;
  const closeSome = (): boolean => {
    // A backend whose health check passes again keeps the connections not yet closed.
    if (untilUp && Atomics.load(up, backend) === 1) return false;
    for (let i = 0; i < perTick && next < n; i++) close(victims[next++]!, backend, reason);
    return next < n;
  };
  // The first goes at once, the last by the end of the window.
  if (!closeSome()) return;
  const timer = setInterval(() => {
    if (!closeSome()) clearInterval(timer);
  }, tickMs);
}

function close(t: Tunnel, backend: number, reason: string): void {
  // Skip a tunnel that closed meanwhile (or a slot reused by another backend address).
  if (t.ws === null || t.state !== TunnelState.Open || t.backend !== backend) return;
  closeStartedBy(t, Side.Proxy, 1012);
  t.state = TunnelState.Closing;
  t.ws.end(1012, reason.length <= 120 ? reason : reason.slice(0, 120));
}
