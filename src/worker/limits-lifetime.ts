/**
 * websocket.maxLifetime: a WebSocket open that long is closed with 1012 (Service Restart: reconnect), so
 * long-lived clients move over to backends added since and no connection pins a backend for ever. Each
 * connection's deadline is its open time plus the lifetime less up to 10% at random, so that connections
 * opened together (a reconnect wave) are not closed together either.
 *
 * The schedule is a map from deadline second to the connections due then, swept just after each whole second
 * by one unref'd timer that runs only while something is scheduled: O(1) to add or remove (a connection that
 * closes first leaves its bucket at once, so nothing is kept for the lifetime of a closed connection), and
 * each connection is looked at once, when due.
 */
import type { Tunnel } from './tunnel.js';
import { TunnelState } from './tunnel.js';
import { Side, closeStartedBy } from './metrics.js';

/** The part of maxLifetime taken off at random. */
export const LIFETIME_JITTER = 0.1;

const buckets = new Map<number, Set<Tunnel>>();
let timer: NodeJS.Timeout | null = null;
let swept = 0;

/** Put an opened tunnel on the schedule (its limits exist and the generation has a lifetime). */
export function scheduleLifetime(t: Tunnel, lifetimeMs: number, nowMs = Date.now()): void {
  const l = t.limits;
  if (l === null || lifetimeMs <= 0) return;
  if (timer === null) swept = Math.floor(nowMs / 1000);
  // Never behind the sweep, so even a lifetime under a second is closed on the next tick.
  const second = Math.max(swept, deadlineSecond(nowMs, lifetimeMs, Math.random()));
  let bucket = buckets.get(second);
  if (bucket === undefined) buckets.set(second, (bucket = new Set()));
  bucket.add(t);
  l.lifetimeBucket = second;
  if (timer === null) armSweep(nowMs);
}

/** The next sweep just after the next whole second, so a bucket is swept as soon as its second begins. */
function armSweep(nowMs: number): void {
  timer = setTimeout(sweep, 1001 - (nowMs % 1000));
  timer.unref();
}

/**
 * The bucket of a connection opened at `nowMs`: the first whole second at or after its deadline (lifetime less
 * `random` × the jitter), since a bucket is swept once the clock reaches its second.
 */
export function deadlineSecond(nowMs: number, lifetimeMs: number, random: number): number {
  return Math.ceil((nowMs + lifetimeMs * (1 - LIFETIME_JITTER * random)) / 1000);
}

/** Take a tunnel off the schedule (it closed first). */
export function unscheduleLifetime(t: Tunnel): void {
  const l = t.limits;
  if (l === null || l.lifetimeBucket < 0) return;
  const second = l.lifetimeBucket;
  l.lifetimeBucket = -1;
  const bucket = buckets.get(second);
  if (bucket === undefined) return;
  bucket.delete(t);
  if (bucket.size === 0) buckets.delete(second);
}

/** Close every connection whose deadline second has come; run again while any are scheduled. */
function sweep(): void {
  timer = null;
  const nowMs = Date.now();
  const now = Math.floor(nowMs / 1000);
  for (let second = swept; second <= now; second++) {
    const bucket = buckets.get(second);
    if (bucket === undefined) continue;
    buckets.delete(second);
    for (const t of bucket) {
      t.limits!.lifetimeBucket = -1;
      if (t.state !== TunnelState.Open || t.ws === null) continue;
      closeStartedBy(t, Side.Proxy, 1012);
      t.state = TunnelState.Closing;
      t.ws.end(1012, 'connection lifetime reached: reconnect');
    }
  }
  swept = now + 1;
  if (buckets.size > 0) armSweep(nowMs);
}
