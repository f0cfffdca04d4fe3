/**
 * The broker between replicas (Centrifuge's `Broker`, Redis flavour): every publication a Sluice takes on
 * its publish listener is forwarded once to a Redis pub/sub channel, and every publication that arrives
 * there from another replica (or straight from a publisher) is handed to this Sluice's workers.
 *
 * Redis pub/sub keeps nothing: a replica whose link is down misses what was published meanwhile, and
 * what this replica could not forward while its link was down is lost for the others (counted as
 * `unforwarded`; local subscribers still got it). Reconnection uses ioredis with a capped exponential
 * backoff; the subscription is renewed on reconnect.
 *
 * On the wire: a replica's message is 0x00, a 16-byte origin id (so a replica skips its own echo), then
 * the msgpack batch of fanout-wire.ts. A message starting with '{' is a Pushpin publish body
 * (`{"items":[…]}`), so a publisher may PUBLISH to Redis directly.
 */
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { log } from './log.js';

const REPLICA_MESSAGE = 0x00;
const ORIGIN_BYTES = 16;
const MAX_BACKOFF_MS = 2000;

/** Reconnect delay: 50 ms doubling to MAX_BACKOFF_MS, with jitter so replicas do not reconnect in step. */
function backoff(attempt: number): number {
  return Math.min(50 * 2 ** Math.min(attempt, 10), MAX_BACKOFF_MS) * (0.75 + Math.random() * 0.5);
}

export interface BrokerEvents {
  /** A batch another replica forwarded (fanout-wire.ts bytes). */
  onBatch(batch: Uint8Array): void;
  /** A Pushpin publish body published to Redis directly. */
  onJson(body: string): void;
}

export class RedisBroker {
  private readonly origin = randomBytes(ORIGIN_BYTES);
  private readonly publisher: Redis;
  private readonly subscriber: Redis;
  /** Publications taken here that could not reach Redis (link down, or the publish failed). */
  unforwarded = 0;
  private lastLinkLog = 0;

  constructor(
    readonly url: string,
    readonly channel: string,
    events: BrokerEvents,
  ) {
    // Publisher: no offline queue and no resend, so a publication is forwarded now or counted as not
    // forwarded, never held in memory while Redis is away.
    this.publisher = new Redis(url, { retryStrategy: backoff, lazyConnect: true, enableOfflineQueue: false, autoResendUnfulfilledCommands: false, maxRetriesPerRequest: 0 });
    // Subscriber: its SUBSCRIBE waits for the link however long it takes, and is renewed on every reconnect.
    this.subscriber = new Redis(url, { retryStrategy: backoff, lazyConnect: true, autoResubscribe: true, maxRetriesPerRequest: null });
    for (const [role, client] of [['publisher', this.publisher], ['subscriber', this.subscriber]] as const) {
      client.on('error', (error: Error) => this.linkLog('warn', `fan-out: Redis ${role} ${url}: ${error.message}`));
      client.on('ready', () => log.info(`fan-out: Redis ${role} connected to ${url}`));
    }
    this.subscriber.on('messageBuffer', (_channel: Buffer, message: Buffer) => {
      if (message.length === 0) return;
      if (message[0] === REPLICA_MESSAGE) {
        if (message.length <= 1 + ORIGIN_BYTES || message.subarray(1, 1 + ORIGIN_BYTES).equals(this.origin)) return;
        events.onBatch(message.subarray(1 + ORIGIN_BYTES));
      } else if (message[0] === 0x7b /* '{' */) events.onJson(message.toString('utf8'));
    });
  }

  /** Errors repeat at every reconnect attempt: log at most one every 10 s. */
  private linkLog(level: 'warn', message: string): void {
    const now = Date.now();
    if (now - this.lastLinkLog < 10_000) return;
    this.lastLinkLog = now;
    log[level](message);
  }

  async start(): Promise<void> {
    // A Redis that is down at start is not fatal: the clients keep trying, local fan-out works meanwhile.
    await Promise.all([this.publisher.connect().catch(() => undefined), this.subscriber.connect().catch(() => undefined)]);
    this.subscriber.subscribe(this.channel).catch((error: Error) => log.error(`fan-out: Redis subscribe to '${this.channel}' failed: ${error.message}`));
  }

  /** Both links are up. */
  get connected(): boolean {
    return this.publisher.status === 'ready' && this.subscriber.status === 'ready';
  }

  /** Forward a batch of `count` publications to the other replicas. */
  forward(batch: Uint8Array, count: number): void {
    if (this.publisher.status !== 'ready') {
      this.unforwarded += count;
      return;
    }
    const message = Buffer.allocUnsafe(1 + ORIGIN_BYTES + batch.byteLength);
    message[0] = REPLICA_MESSAGE;
    this.origin.copy(message, 1);
    message.set(batch, 1 + ORIGIN_BYTES);
    this.publisher.publish(this.channel, message).catch(() => {
      this.unforwarded += count;
    });
  }

  close(): void {
    this.publisher.disconnect();
    this.subscriber.disconnect();
  }
}
