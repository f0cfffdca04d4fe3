/**
 * Stopping a worker the way Traefik's entryPoints.<name>.transport.lifeCycle says: each entry point keeps
 * accepting for requestAcceptGraceTimeout (the load balancer in front has seen /ready fail and stops
 * sending), then stops accepting and closes its open WebSockets with 1001 spread evenly over graceTimeOut
 * with jitter (pacing.ts), so the clients' reconnects reach the other replicas as a trickle. A second
 * signal closes what is left at once. Progress goes to the primary, which logs the pace.
 */
import type { EntryPointStop, WorkerToPrimary } from '../shared/messages.js';
import { context } from './context.js';
import type { ListenerSet } from './listeners.js';
import { closeStartedBy, Side } from './metrics.js';
import { paceCloses, type PacedClose } from './pacing.js';
import { TunnelState, tunnels, type Tunnel } from './tunnel.js';

/** How often one entry point reports its drain progress, at most. */
const PROGRESS_EVERY_MS = 1000;

export interface Shutdown {
  /** Close everything now: stop accepting everywhere, close every client with 1001. */
  now(): void;
  /** Some entry point is still in its accept grace: the worker must not end yet. */
  readonly accepting: boolean;
}

function entryPointName(t: Tunnel): string {
  return t.gen.snapshot.entryPoints[t.entryPoint]?.name ?? '';
}

function closeClient(t: Tunnel): void {
  closeStartedBy(t, Side.Proxy, 1001);
  t.state = TunnelState.Closing;
  t.ws!.end(1001, 'Sluice is shutting down');
}

/**
 * A tunnel opened on an entry point whose drain is under way (its client was accepted just before the
 * listener closed, or sent its upgrade on a connection open from before): it is closed like the others,
 * at a random moment within what is left of the window, rather than refused.
 */
export function joinDrain(t: Tunnel): void {
  const endsAt = context().draining.get(entryPointName(t));
  if (endsAt === undefined) return;
  const delay = Math.max(0, endsAt - Date.now()) * Math.random();
  setTimeout(() => {
    if (t.ws !== null && t.state === TunnelState.Open) closeClient(t);
  }, delay);
}

export function shutdownEntryPoints(stops: readonly EntryPointStop[], listeners: ListenerSet, post: (message: WorkerToPrimary) => void): Shutdown {
  const ctx = context();
  const timers: NodeJS.Timeout[] = [];
  const paced: PacedClose[] = [];
  let done = false;
  let inGrace = 0;

  const closeEntryPoint = (stop: EntryPointStop): void => {
    if (ctx.draining.has(stop.entryPoint) || ctx.closing.has(stop.entryPoint)) return;
    ctx.draining.set(stop.entryPoint, Date.now() + stop.graceMs);
    listeners.stopAccepting(stop.entryPoint);
    ctx.shuttingDown = true;
    // Past the window, what still arrives on open HTTP connections is told to go elsewhere (503). Unref'd:
    // a worker with nothing left to close must not wait for it to end.
    timers.push(setTimeout(() => ctx.closing.add(stop.entryPoint), stop.graceMs).unref());
    const victims: Tunnel[] = [];
    for (const t of tunnels()) if (t.state === TunnelState.Open && entryPointName(t) === stop.entryPoint) victims.push(t);
    let reportedAt = 0;
    post({ type: 'drain-progress', entryPoint: stop.entryPoint, closed: 0, remaining: victims.length });
    paced.push(
      paceCloses(victims, stop.graceMs, closeClient, () => true, (closed, remaining) => {
        const now = Date.now();
        if (remaining > 0 && now - reportedAt < PROGRESS_EVERY_MS) return;
        reportedAt = now;
        post({ type: 'drain-progress', entryPoint: stop.entryPoint, closed, remaining });
      }),
    );
  };

  for (const stop of stops) {
    if (stop.acceptGraceMs <= 0) {
      closeEntryPoint(stop);
      continue;
    }
    inGrace++;
    timers.push(
      setTimeout(() => {
        inGrace--;
        closeEntryPoint(stop);
      }, stop.acceptGraceMs),
    );
  }

  return {
    now() {
      if (done) return;
      done = true;
      for (const timer of timers) clearTimeout(timer);
      inGrace = 0;
      ctx.shuttingDown = true;
      for (const entryPoint of ctx.current.snapshot.entryPoints) ctx.closing.add(entryPoint.name);
      for (const name of ctx.draining.keys()) ctx.closing.add(name);
      listeners.stopAccepting();
      for (const p of paced) p.finish();
      for (const t of tunnels()) {
        ctx.closing.add(entryPointName(t));
        if (t.ws !== null && t.state === TunnelState.Open) closeClient(t);
      }
    },
    get accepting() {
      return inGrace > 0;
    },
  };
}
