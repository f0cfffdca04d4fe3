/**
 * Fan-out in the primary: where publications enter (the publish listener, fanout-publish.ts, and Redis,
 * fanout-redis.ts) and leave for the workers.
 *
 * Why the primary: a publication has to reach every worker exactly once, decoded once. The primary already
 * talks to every worker, owns no connection, and can own the single Redis link of the process; a worker
 * would have to relay to its siblings, and a listener per worker (SO_REUSEPORT) would hand each publish to
 * one worker only. So the primary parses a publish body once, packs the publications of one event-loop
 * turn into one msgpack batch (fanout-wire.ts) and posts the same bytes to every worker; each worker then
 * calls uWS publish once per channel and app. Redis gets the same batch once, and batches from Redis go the
 * same way to the workers.
 *
 * It also keeps what the admin API and the metrics read: publications by source, the Redis link's state
 * and losses, subscriber counts per channel (each worker reports its changes at most once a second), and
 * the counters of workers that exited (folded, so totals never go down).
 */
import { performance } from 'node:perf_hooks';
import type { FanoutSettings } from '../config/snapshot.js';
import { FANOUT_FIELDS, FanoutCounter, decodeBatch, encodeBatch, publicationsOf, type Publication } from '../shared/fanout-wire.js';
import type { SharedViews } from '../shared/layout.js';
import type { PrimaryToWorker } from '../shared/messages.js';
import { RedisBroker } from './fanout-redis.js';
import { log } from './log.js';
import { parsePublishBody } from './publish-api.js';

export type PublishSource = 'http' | 'redis';

/** What the hub needs of the supervisor: send a message to every running worker. */
export interface WorkerBroadcast {
  broadcast(message: PrimaryToWorker): void;
}

export interface FanoutTotals {
  readonly publishes: { readonly http: number; readonly redis: number };
  readonly deliveries: number;
  readonly dropped: { readonly slowConsumer: number; readonly slowConsumerClosed: number; readonly redisUnavailable: number };
  readonly subscriptions: number;
  readonly channels: number;
  /** Summed counter region (FanoutCounter order), histogram parts included. */
  readonly counters: Float64Array;
}

export class FanoutHub {
  private readonly publishes = { http: 0, redis: 0 };
  /** To the workers, in arrival order. */
  private local: Publication[] = [];
  /** Taken on this replica's listener: to Redis too. */
  private forward: Publication[] = [];
  private flushScheduled = false;
  /** Channel → subscribers in each worker. */
  private readonly channels = new Map<string, number[]>();
  /** Counters of workers that exited. */
  private readonly carried = new Float64Array(FANOUT_FIELDS);
  readonly broker: RedisBroker | null;
  private lastInvalidLog = 0;

  constructor(
    readonly settings: FanoutSettings,
    private readonly shared: SharedViews,
    private readonly workers: WorkerBroadcast,
  ) {
    this.broker =
      settings.redisUrl === ''
        ? null
        : new RedisBroker(settings.redisUrl, settings.redisChannel, {
            onBatch: (batch) => this.fromRedisBatch(batch),
            onJson: (body) => this.fromRedisJson(body),
          });
  }

  start(): Promise<void> {
    return this.broker?.start() ?? Promise.resolve();
  }

  close(): void {
    this.broker?.close();
  }

  /** Publications accepted by the publish listener or read from Redis; delivered on the next turn. */
  take(items: readonly Publication[], source: PublishSource): void {
    if (items.length === 0) return;
    this.publishes[source] += items.length;
    for (const item of items) this.local.push(item);
    if (source === 'http' && this.broker !== null) for (const item of items) this.forward.push(item);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
  }

  /** One batch for all workers (the same bytes to each), and one to Redis. */
  private flush(): void {
    this.flushScheduled = false;
    const local = this.local;
    const forward = this.forward;
    this.local = [];
    this.forward = [];
    const batch = encodeBatch(local);
    this.workers.broadcast({ type: 'fanout-publish', batch });
    if (forward.length > 0) this.broker!.forward(forward.length === local.length ? batch : encodeBatch(forward), forward.length);
  }

  private fromRedisBatch(bytes: Uint8Array): void {
    let items: Publication[];
    try {
      items = publicationsOf(decodeBatch(bytes), performance.timeOrigin + performance.now());
    } catch (error) {
      this.invalid((error as Error).message);
      return;
    }
    this.take(items, 'redis');
  }

  private fromRedisJson(body: string): void {
    const parsed = parsePublishBody(body, performance.timeOrigin + performance.now());
    if (parsed.ok) this.take(parsed.items, 'redis');
    else this.invalid(parsed.error);
  }

  private invalid(reason: string): void {
    const now = Date.now();
    if (now - this.lastInvalidLog < 10_000) return;
    this.lastInvalidLog = now;
    log.warn(`fan-out: ignored a message on Redis channel '${this.settings.redisChannel}': ${reason}`);
  }

  // ---- what the workers report --------------------------------------------------------------------

  /** A worker's subscriber counts of the channels that changed (channel, count, …). */
  channelCounts(worker: number, counts: readonly (string | number)[]): void {
    for (let i = 0; i + 1 < counts.length; i += 2) this.setCount(worker, counts[i] as string, counts[i + 1] as number);
  }

  private setCount(worker: number, channel: string, count: number): void {
    let perWorker = this.channels.get(channel);
    if (perWorker === undefined) {
      if (count === 0) return;
      this.channels.set(channel, (perWorker = new Array<number>(this.shared.workerSlots).fill(0)));
    }
    perWorker[worker] = count;
    if (count === 0 && perWorker.every((n) => n === 0)) this.channels.delete(channel);
  }

  /** Worker `w` exited: its subscribers are gone, its counts are kept (not its gauge), its slot zeroed. */
  foldWorker(w: number): void {
    const region = this.shared.workerFanout;
    const at = w * FANOUT_FIELDS;
    for (let f = 0; f < FANOUT_FIELDS; f++) if (f !== FanoutCounter.Subscriptions) this.carried[f]! += region[at + f]!;
    region.fill(0, at, at + FANOUT_FIELDS);
    for (const channel of [...this.channels.keys()]) this.setCount(w, channel, 0);
  }

  totals(): FanoutTotals {
    const counters = Float64Array.from(this.carried);
    counters[FanoutCounter.Subscriptions] = 0;
    const region = this.shared.workerFanout;
    for (let w = 0; w < this.shared.workerSlots; w++) {
      for (let f = 0; f < FANOUT_FIELDS; f++) counters[f]! += region[w * FANOUT_FIELDS + f]!;
    }
    return {
      publishes: { ...this.publishes },
      deliveries: counters[FanoutCounter.Deliveries]!,
      dropped: {
        slowConsumer: counters[FanoutCounter.DroppedSlow]!,
        slowConsumerClosed: counters[FanoutCounter.ClosedSlow]!,
        redisUnavailable: this.broker?.unforwarded ?? 0,
      },
      subscriptions: counters[FanoutCounter.Subscriptions]!,
      channels: this.channels.size,
      counters,
    };
  }

  /** The `limit` channels with the most subscribers (all workers), most first. */
  busiest(limit: number): { channel: string; subscribers: number }[] {
    const all: { channel: string; subscribers: number }[] = [];
    for (const [channel, perWorker] of this.channels) all.push({ channel, subscribers: perWorker.reduce((a, b) => a + b, 0) });
    all.sort((a, b) => b.subscribers - a.subscribers || (a.channel < b.channel ? -1 : 1));
    return all.slice(0, limit);
  }
}
