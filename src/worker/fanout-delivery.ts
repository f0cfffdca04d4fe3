/**
 * Fan-out in one worker (the hub, in Centrifuge's terms): which connection listens to which channel, and
 * delivery of the publications the primary sends.
 *
 * Delivery goes through uWebSockets.js's own pub/sub: a subscription is `ws.subscribe(channel)`, and a
 * publication is one `app.publish(channel, payload)` per app, after which uWS frames the message once and
 * writes it to every subscriber from C++, with no JavaScript per recipient. Topics belong to an app, and a
 * worker runs several (one per entry point, plus old apps kept for their connections across reloads:
 * listeners.ts ListenerSet), so each publication goes to every app.
 *
 * Beside the uWS topics this keeps a small index (channel → sessions) for what uWS cannot do: close every
 * subscriber of a channel, send pings, count subscribers per channel for the admin API, and apply the
 * slow-consumer policy. uWS 20.30 has no `dropped` handler and skips a subscriber past maxBackpressure
 * silently, so the policy is a sweep every SWEEP_MS: a subscriber whose unsent data passed
 * fanout.slowConsumerBuffer is closed with 1013 ('close'), or unsubscribed from its topics until it has
 * drained to half of that ('drop'), the publications it missed meanwhile counted exactly from per-channel
 * publish counts. The sweep also runs as soon as half of that many bytes were published since the last
 * one, so no subscriber gains more than half the limit between two checks, however fast publishers go
 * (uWS's own cap, websocket.clientMaxBuffer, is never the one that drops). It costs one
 * getBufferedAmount() per subscribed connection every 100 ms or every half-limit of published bytes,
 * whichever comes first. The same sweep sends keep-alives.
 *
 * Counters live in this worker's slot of the shared `workerFanout` region (fanout-wire.ts FanoutCounter);
 * per-channel subscriber counts go to the primary in one batch per second at most.
 */
import { performance } from 'node:perf_hooks';
import type uWS from 'uWebSockets.js';
import type { FanoutSettings } from '../config/snapshot.js';
import { FANOUT_FIELDS, FANOUT_LATENCY_BUCKETS, FanoutCounter, FanoutKind, Field, ITEM_FIELDS, decodeBatch } from '../shared/fanout-wire.js';
import { context } from './context.js';
import { isSendableCloseCode } from './frame-codec.js';
import { closeStartedBy, Side } from './metrics.js';
import { TunnelState, type Tunnel, type TunnelRef } from './tunnel.js';

const SWEEP_MS = 100;
const REPORT_MS = 1000;

/** Pushpin's keep-alive: content sent after `timeoutMs` without traffic ('idle') or every `timeoutMs`. */
export interface KeepAlive {
  readonly kind: FanoutKind;
  readonly payload: Buffer;
  readonly timeoutMs: number;
  readonly interval: boolean;
}

/** GRIP on one proxied connection: set when its backend answered the upgrade with the grip extension. */
export class GripSession {
  readonly channels = new Set<string>();
  /** The rest of a fragmented backend message is to be dropped (a control message in pieces, or no prefix). */
  skipping = false;
  /** The backend leg was let go (detach): the client stays, fed by publications and keep-alives only. */
  detached = false;
  /** Unsubscribed from its topics by the drop policy until it drains; channel → publishes seen then. */
  lagging: Map<string, number> | null = null;
  keepAlive: KeepAlive | null = null;
  /** Time of the last message sent to the client by the backend or a keep-alive: exact where a keep-alive
   *  is set (a keep-alive is never sent early), the sweep's coarse clock otherwise. */
  lastSentAt: number;
  /** In `sessions` (has channels or a keep-alive). */
  active = false;

  constructor(
    readonly tunnel: Tunnel,
    /** Bytes every ordinary backend message must start with; they are stripped before the client gets it. */
    readonly prefix: Buffer,
    readonly settings: FanoutSettings,
  ) {
    this.lastSentAt = coarseNow;
  }
}

interface ChannelEntry {
  readonly sessions: Set<GripSession>;
  /** Publications this worker delivered on the channel (a lagging session's misses are counted from it). */
  publishes: number;
  /** Coarse time of the last one (idle keep-alives count a publication as traffic). */
  lastPublishAt: number;
}

/** The sweep clock: Date.now() as of the last sweep tick (per-message code reads this, not the clock). */
export let coarseNow = Date.now();

const channels = new Map<string, ChannelEntry>();
const sessions = new Set<GripSession>();
/** Channels whose subscriber count in this worker changed since the last report. */
const changed = new Set<string>();
let appsOf: () => readonly uWS.TemplatedApp[] = () => [];
let counters: Float64Array = new Float64Array(FANOUT_FIELDS);
let base = 0;
let timers: NodeJS.Timeout[] = [];
/** Payload bytes published since the last sweep, and the count that triggers one early. */
let bytesSinceSweep = 0;
let sweepScheduled = false;

/** Start fan-out in this worker: `apps` lists every uWS app that may hold subscribers. */
export function initFanout(apps: () => readonly uWS.TemplatedApp[]): void {
  const ctx = context();
  appsOf = apps;
  counters = ctx.shared.workerFanout;
  base = ctx.workerIndex * FANOUT_FIELDS;
  // unref: fan-out must never keep a draining worker's thread alive.
  timers = [setInterval(sweep, SWEEP_MS).unref(), setInterval(report, REPORT_MS).unref()];
}

export function stopFanout(): void {
  for (const timer of timers) clearInterval(timer);
  timers = [];
  report();
}

function activate(s: GripSession): void {
  if (!s.active) {
    s.active = true;
    sessions.add(s);
  }
}

/** Subscribe the session's client to `channel` (a backend's `subscribe` control message). */
export function subscribe(s: GripSession, channel: string): void {
  const ws = s.tunnel.ws;
  if (ws === null || s.channels.has(channel) || s.channels.size >= s.settings.maxSubscriptions) return;
  s.channels.add(channel);
  let entry = channels.get(channel);
  if (entry === undefined) channels.set(channel, (entry = { sessions: new Set(), publishes: 0, lastPublishAt: coarseNow }));
  entry.sessions.add(s);
  if (s.lagging === null) ws.subscribe(channel);
  else s.lagging.set(channel, entry.publishes);
  counters[base + FanoutCounter.Subscriptions]!++;
  changed.add(channel);
  activate(s);
}

export function unsubscribe(s: GripSession, channel: string): void {
  if (!s.channels.delete(channel)) return;
  const ws = s.tunnel.ws;
  if (s.lagging === null) ws?.unsubscribe(channel);
  else countMissed(s, channel);
  leave(s, channel);
}

function leave(s: GripSession, channel: string): void {
  const entry = channels.get(channel)!;
  entry.sessions.delete(s);
  if (entry.sessions.size === 0) channels.delete(channel);
  counters[base + FanoutCounter.Subscriptions]!--;
  changed.add(channel);
}

export function setKeepAlive(s: GripSession, keepAlive: KeepAlive | null): void {
  s.keepAlive = keepAlive;
  // The exact time, not the sweep's: a mark up to a sweep old (longer when the worker is starved of CPU)
  // would send the first keep-alive that much early.
  s.lastSentAt = Date.now();
  if (keepAlive !== null) activate(s);
}

/** The client closed: uWS drops its topics itself; the index and the counters follow. */
export function dropSession(s: GripSession): void {
  if (s.lagging !== null) for (const channel of s.channels) countMissed(s, channel);
  for (const channel of s.channels) leave(s, channel);
  s.channels.clear();
  s.lagging = null;
  s.keepAlive = null;
  sessions.delete(s);
  s.active = false;
}

function countMissed(s: GripSession, channel: string): void {
  const since = s.lagging!.get(channel);
  const entry = channels.get(channel);
  if (since !== undefined && entry !== undefined) counters[base + FanoutCounter.DroppedSlow]! += entry.publishes - since;
}

// ---- publications from the primary ----------------------------------------------------------------

/** A batch from the primary (fanout-wire.ts): each publication once to every app of this worker. */
export function deliverBatch(bytes: Uint8Array): void {
  const flat = decodeBatch(bytes);
  const apps = appsOf();
  let deliveries = 0;
  for (let i = 0; i < flat.length; i += ITEM_FIELDS) {
    const channel = flat[i + Field.Channel] as string;
    const entry = channels.get(channel);
    counters[base + FanoutCounter.Handled]!++;
    if (entry === undefined) continue; // nobody listens here
    entry.publishes++;
    entry.lastPublishAt = Date.now(); // once per publication and channel, not per subscriber
    const kind = flat[i + Field.Kind] as FanoutKind;
    const payload = flat[i + Field.Payload] as Uint8Array;
    bytesSinceSweep += payload.byteLength;
    if (kind === FanoutKind.Text || kind === FanoutKind.Binary) {
      for (let a = 0; a < apps.length; a++) {
        const app = apps[a]!;
        const n = app.numSubscribers(channel);
        if (n === 0) continue;
        app.publish(channel, payload, kind === FanoutKind.Binary);
        deliveries += n;
      }
    } else if (kind === FanoutKind.Close) {
      closeChannel(entry, flat[i + Field.Code] as number, flat[i + Field.Reason] as string);
    } else {
      // uWS has no publish for control frames; pings go one by one (rare: keep-alives of a channel).
      for (const s of entry.sessions) {
        if (s.lagging !== null || s.tunnel.ws === null) continue;
        s.tunnel.ws.ping(payload);
        deliveries++;
      }
    }
    observeLatency(performance.timeOrigin + performance.now() - (flat[i + Field.ReceivedAt] as number));
  }
  counters[base + FanoutCounter.Deliveries]! += deliveries;
  const limit = context().current.snapshot.fanout?.slowConsumerBuffer ?? Infinity;
  if (bytesSinceSweep >= limit / 2 && !sweepScheduled) {
    // After this turn, when uWS has written what it could: what is left buffered is the lag.
    sweepScheduled = true;
    setImmediate(sweep);
  }
}

function observeLatency(ms: number): void {
  const seconds = ms > 0 ? ms / 1000 : 0;
  let bucket = 0;
  while (bucket < FANOUT_LATENCY_BUCKETS.length && seconds > FANOUT_LATENCY_BUCKETS[bucket]!) bucket++;
  counters[base + FanoutCounter.LatencyBuckets + bucket]!++;
  counters[base + FanoutCounter.LatencySum]! += seconds;
  counters[base + FanoutCounter.LatencyCount]!++;
}

/** Pushpin's `action: close`: every subscriber of the channel is closed (code 0 = without a code). */
function closeChannel(entry: ChannelEntry, code: number, reason: string): void {
  for (const s of [...entry.sessions]) closeClient(s.tunnel, code, reason, Side.Backend);
}

/** Close a fan-out client (a `close` control message, a channel close, the close policy). */
export function closeClient(t: Tunnel, code: number, reason: string, side: Side): void {
  const ws = t.ws;
  if (ws === null) return;
  const sendable = isSendableCloseCode(code);
  closeStartedBy(t, side, sendable ? code : 1005);
  t.state = TunnelState.Closing;
  if (sendable) ws.end(code, reason);
  else ws.end();
}

// ---- the sweep: slow consumers and keep-alives ----------------------------------------------------

function sweep(): void {
  sweepScheduled = false;
  bytesSinceSweep = 0;
  coarseNow = Date.now();
  for (const s of sessions) {
    const ws = s.tunnel.ws;
    if (ws === null) continue;
    if (s.channels.size > 0) {
      const buffered = ws.getBufferedAmount();
      if (s.lagging === null && buffered > s.settings.slowConsumerBuffer) {
        if (tooSlow(s, ws)) continue;
      } else if (s.lagging !== null && buffered <= s.settings.slowConsumerBuffer / 2) catchUp(s, ws);
    }
    if (s.keepAlive !== null) keepAlive(s, s.keepAlive, ws);
  }
}

/** Apply the slow-consumer policy; true when the client was closed. */
function tooSlow(s: GripSession, ws: uWS.WebSocket<TunnelRef>): boolean {
  if (s.settings.slowConsumer === 'close') {
    counters[base + FanoutCounter.ClosedSlow]!++;
    closeClient(s.tunnel, 1013, 'subscriber too slow', Side.Proxy);
    return true;
  }
  const marks = new Map<string, number>();
  for (const channel of s.channels) {
    ws.unsubscribe(channel);
    marks.set(channel, channels.get(channel)!.publishes);
  }
  s.lagging = marks;
  return false;
}

function catchUp(s: GripSession, ws: uWS.WebSocket<TunnelRef>): void {
  for (const channel of s.channels) {
    countMissed(s, channel);
    ws.subscribe(channel);
  }
  s.lagging = null;
}

function keepAlive(s: GripSession, k: KeepAlive, ws: uWS.WebSocket<TunnelRef>): void {
  let last = s.lastSentAt;
  if (!k.interval) {
    for (const channel of s.channels) {
      const at = channels.get(channel)!.lastPublishAt;
      if (at > last) last = at;
    }
  }
  if (coarseNow - last < k.timeoutMs) return;
  s.lastSentAt = coarseNow;
  // uWS 20.30 cannot send an unsolicited pong: a 'pong' keep-alive goes as a ping, which the client answers.
  if (k.kind === FanoutKind.Ping || k.kind === FanoutKind.Pong) ws.ping(k.payload);
  else ws.send(k.payload, k.kind === FanoutKind.Binary);
}

// ---- subscriber counts for the primary (admin API, sluice_fanout_channels) --------------------------

function report(): void {
  if (changed.size === 0) return;
  const counts: (string | number)[] = [];
  for (const channel of changed) counts.push(channel, channels.get(channel)?.sessions.size ?? 0);
  changed.clear();
  context().post({ type: 'fanout-channels', counts });
}
