/**
 * What one WebSocket holds because of limits, from its upgrade to its end (Tunnel.limits):
 *  - counts to give back when it ends: its entry point's connection count, and the end hooks of its router's
 *    middlewares (inFlightReq), which for a WebSocket run at the close, not when the upgrade is handed on;
 *  - its message and control-frame token buckets (websocket.messageRate, websocket.controlFrameRate), kept per
 *    connection in this worker, since a connection lives in one worker;
 *  - its place in the lifetime schedule (websocket.maxLifetime, limits-lifetime.ts).
 * Exactly one release() per object: the tunnel's release (upgrade refused, abandoned, or the client closed),
 * or the upgrade exchange's end when a middleware answered instead.
 *
 * Per message (admitMessage): one performance.now(), two compares and a store, only on connections with a
 * message rate; nothing at all when the connection has no limits object (Tunnel.limits === null).
 */
import { performance } from 'node:perf_hooks';
import type uWS from 'uWebSockets.js';
import type { RateSpec } from '../config/limits-spec.js';
import { ErrorReason, Side, closeStartedBy, countError } from './metrics.js';
import { TunnelState, type Tunnel, type TunnelRef } from './tunnel.js';
import { limitTable } from './limits.js';
import { unscheduleLifetime } from './limits-lifetime.js';
import { onClientClose } from './tunnel.js';
import { Total } from '../shared/layout.js';
import { countTotal } from './context.js';

export class ConnectionLimits {
  /** Table slots to release (entry point count); -1 when none. */
  entryPointSlot = -1;
  /** inFlightReq's (and any middleware's) end hooks, moved here from the upgrade exchange. */
  private hooks: (() => void)[] | null = null;
  readonly messageRate: (RateSpec & { readonly onLimit: 'close' | 'drop' }) | null;
  /** The message rate's tolerance: how far the bucket's tat may run ahead of now. */
  readonly messageTolerance: number;
  messageTat = 0;
  readonly controlRate: RateSpec | null;
  readonly controlTolerance: number;
  controlTat = 0;
  /** The lifetime schedule's bucket (second) this connection is in, -1 when none. */
  lifetimeBucket = -1;
  private released = false;

  constructor(messageRate: ConnectionLimits['messageRate'], controlRate: RateSpec | null) {
    this.messageRate = messageRate;
    this.messageTolerance = messageRate === null ? 0 : (messageRate.burst - 1) * messageRate.intervalMs;
    this.controlRate = controlRate;
    this.controlTolerance = controlRate === null ? 0 : (controlRate.burst - 1) * controlRate.intervalMs;
  }

  /** Take over end hooks (from an upgrade exchange): they run at release. */
  addHooks(hooks: (() => void)[] | null): void {
    if (hooks === null || hooks.length === 0) return;
    if (this.hooks === null) this.hooks = hooks;
    else this.hooks.push(...hooks);
  }

  /** The connection (or its attempt) is over: give everything back, once. */
  release(t: Tunnel | null): void {
    if (this.released) return;
    this.released = true;
    if (this.entryPointSlot >= 0) limitTable().release(this.entryPointSlot);
    this.entryPointSlot = -1;
    if (t !== null && this.lifetimeBucket >= 0) unscheduleLifetime(t);
    const hooks = this.hooks;
    this.hooks = null;
    if (hooks !== null) for (const fn of hooks) fn();
  }
}

/**
 * Tunnel hook, per client message: false when the message must not be forwarded (over the rate: the client is
 * being closed with 1008, or the message is dropped and counted).
 */
export function admitMessage(t: Tunnel, l: ConnectionLimits): boolean {
  const rate = l.messageRate;
  if (rate === null) return true;
  const now = performance.now();
  const tat = l.messageTat > now ? l.messageTat : now;
  if (tat - now <= l.messageTolerance) {
    l.messageTat = tat + rate.intervalMs;
    return true;
  }
  countError(t.gen, t.backend, ErrorReason.MessageRate);
  if (rate.onLimit === 'close') closeForRate(t, 'message rate limit exceeded');
  return false;
}

/** uWS `ping` and `pong` (set only on apps whose config has websocket.controlFrameRate). */
export function onClientControlFrame(ws: uWS.WebSocket<TunnelRef>): void {
  const t = ws.getUserData().tunnel;
  const l = t.limits;
  if (l === null || l.controlRate === null || t.state !== TunnelState.Open) return;
  const now = performance.now();
  const tat = l.controlTat > now ? l.controlTat : now;
  if (tat - now <= l.controlTolerance) {
    l.controlTat = tat + l.controlRate.intervalMs;
    return;
  }
  countError(t.gen, t.backend, ErrorReason.ControlFrameRate);
  closeForRate(t, 'control frame rate limit exceeded');
}

function closeForRate(t: Tunnel, reason: string): void {
  closeStartedBy(t, Side.Proxy, 1008);
  t.state = TunnelState.Closing;
  t.ws?.end(1008, reason);
}

const INVALID_UTF8 = 'Received invalid UTF-8';
const TOO_BIG = 'Received too big message';

/**
 * uWS `close`: what uWebSockets.js itself dropped without a close frame is counted first (it reports 1006 with
 * its reason text): invalid UTF-8 in a text message (also what an unmasked frame usually turns into, since this
 * uWS build unmasks every client frame with whatever four bytes stand where the mask should be) and a message
 * past maxPayloadLength (twice websocket.maxMessageSize). Then the tunnel closes as for any close.
 */
export function onClientClosed(ws: uWS.WebSocket<TunnelRef>, code: number, reason: ArrayBuffer): void {
  if (code === 1006 && reason.byteLength > 0) {
    const t = ws.getUserData().tunnel;
    const text = Buffer.from(reason).toString('latin1');
    if (text === INVALID_UTF8) {
      countError(t.gen, t.backend, ErrorReason.ClientProtocolError);
    } else if (text.startsWith(TOO_BIG)) {
      countTotal(Total.OversizeCloses);
      countError(t.gen, t.backend, ErrorReason.MessageTooBig);
    }
  }
  onClientClose(ws, code, reason);
}
