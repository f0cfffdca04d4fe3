/**
 * Paced closing of one backend's connections: when the primary marks a backend down (health check
 * with onDown: drain), discovery loses its address, or a reload removes it, its clients are closed with
 * 1012 (Service Restart: "reconnect, you will be sent elsewhere") spread evenly over the window
 * (pacing.ts). Costs O(tunnels of that backend).
 */
import { TunnelState, tunnelsOf, type Tunnel } from './tunnel.js';
import { closeStartedBy, Side } from './metrics.js';
import { context } from './context.js';
import { paceCloses } from './pacing.js';

export function drainBackend(backend: number, windowMs: number, reason: string, untilUp: boolean): void {
  const victims = [...tunnelsOf(backend)];
  if (victims.length === 0) return;
  const up = context().shared.backendUp;
  const text = reason.length <= 120 ? reason : reason.slice(0, 120);
  paceCloses(
    victims,
    windowMs,
    (t) => close(t, backend, text),
    // A backend whose health check passes again keeps the connections not yet closed.
    () => !untilUp || Atomics.load(up, backend) !== 1,
    undefined,
    (closed, kept) => context().post({ type: 'drain-ended', backend, closed, kept }),
  );
}

function close(t: Tunnel, backend: number, reason: string): void {
  // A slot reused by another backend address meanwhile is not this drain's business.
  if (t.backend !== backend) return;
  closeStartedBy(t, Side.Proxy, 1012);
  t.state = TunnelState.Closing;
  t.ws!.end(1012, reason);
}
