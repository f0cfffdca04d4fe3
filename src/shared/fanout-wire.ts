/**
 * The fan-out contract between threads and between replicas:
 *  - a *batch* of publications, packed once with msgpackr by the primary and handed as bytes to every worker
 *    (and, with an origin prefix, to Redis), so nothing is encoded per worker and no JSON crosses threads;
 *  - the per-worker fan-out counters, a region of the SharedArrayBuffer (layout.ts `workerFanout`): one writer
 *    (that worker), summed by the primary when scraped (src/primary/fanout-hub.ts).
 *
 * A batch is one flat array, ITEM_FIELDS entries per publication: channel, kind, payload, close code, close
 * reason, and the time the primary took it (performance.timeOrigin + performance.now(), comparable across
 * threads), so the worker can measure publish-to-send latency.
 */
import { Packr } from 'msgpackr';

export const enum FanoutKind {
  Text = 1,
  Binary = 2,
  Ping = 3,
  Pong = 4,
  /** Close every subscriber of the channel (Pushpin's ws-message `action: close`). */
  Close = 5,
}

export interface Publication {
  readonly channel: string;
  readonly kind: FanoutKind;
  /** Message content (Text, Binary, Ping, Pong); empty for Close. */
  readonly payload: Uint8Array;
  /** Close: the code (0 = none) and reason. */
  readonly code: number;
  readonly reason: string;
  /** When this process took it (ms, timeOrigin-based). */
  readonly receivedAt: number;
}

export const ITEM_FIELDS = 6;
export const enum Field {
  Channel = 0,
  Kind = 1,
  Payload = 2,
  Code = 3,
  Reason = 4,
  ReceivedAt = 5,
}

// Plain arrays and binary only: no records, so any msgpack reader (another replica's version) reads it.
const packr = new Packr({ useRecords: false, moreTypes: false });

/** Pack publications into one batch (called once per batch, whatever the number of workers). */
export function encodeBatch(items: readonly Publication[]): Uint8Array {
  const flat: unknown[] = new Array(items.length * ITEM_FIELDS);
  let at = 0;
  for (const item of items) {
    flat[at++] = item.channel;
    flat[at++] = item.kind;
    flat[at++] = item.payload;
    flat[at++] = item.code;
    flat[at++] = item.reason;
    flat[at++] = item.receivedAt;
  }
  return packr.pack(flat);
}

/** The flat array of a batch (see ITEM_FIELDS); payloads are views into `bytes`. Throws on malformed input. */
export function decodeBatch(bytes: Uint8Array): unknown[] {
  const flat: unknown = packr.unpack(bytes);
  if (!Array.isArray(flat) || flat.length % ITEM_FIELDS !== 0) throw new Error('fan-out batch: not a list of publications');
  return flat;
}

/** Publications from a decoded batch, checked field by field (a batch from Redis may come from anyone). */
export function publicationsOf(flat: unknown[], receivedAt: number): Publication[] {
  const out: Publication[] = [];
  for (let i = 0; i < flat.length; i += ITEM_FIELDS) {
    const channel = flat[i + Field.Channel];
    const kind = flat[i + Field.Kind];
    const payload = flat[i + Field.Payload];
    const code = flat[i + Field.Code];
    const reason = flat[i + Field.Reason];
    if (typeof channel !== 'string' || typeof kind !== 'number' || kind < FanoutKind.Text || kind > FanoutKind.Close) throw new Error('fan-out batch: bad publication');
    if (!(payload instanceof Uint8Array) || typeof code !== 'number' || typeof reason !== 'string') throw new Error('fan-out batch: bad publication');
    out.push({ channel, kind: kind as FanoutKind, payload, code, reason, receivedAt });
  }
  return out;
}

// ---- per-worker counters (layout.ts workerFanout) ---------------------------------------------------

/** Upper bounds (seconds) of the publish-to-send latency histogram. */
export const FANOUT_LATENCY_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5] as const;

export const enum FanoutCounter {
  /** Messages handed to uWebSockets.js for a subscriber (sum of numSubscribers at each publish). */
  Deliveries = 0,
  /** Publications a lagging subscriber missed (slowConsumer: drop). */
  DroppedSlow = 1,
  /** Subscribers closed with 1013 (slowConsumer: close). */
  ClosedSlow = 2,
  /** Gauge: (connection, channel) subscriptions held now. */
  Subscriptions = 3,
  /** Publications this worker handled (a batch item with at least one local subscriber or not). */
  Handled = 4,
  LatencySum = 5,
  LatencyCount = 6,
  /** FANOUT_LATENCY_BUCKETS.length buckets, then +Inf. */
  LatencyBuckets = 7,
}
export const FANOUT_FIELDS = FanoutCounter.LatencyBuckets + FANOUT_LATENCY_BUCKETS.length + 1;
