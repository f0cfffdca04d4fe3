/**
 * Traefik's rateLimit: a token bucket per source (`burst` tokens, one more every period/average), shared by
 * all workers through the limits table (GCRA, src/shared/limit-table.ts). A request finding no token gets 429
 * with Retry-After (whole seconds until the next token) and X-Retry-In (the exact wait), as Traefik answers.
 * On a WebSocket router it limits upgrades; messages have websocket.messageRate.
 */
import type { RateLimitSpec } from '../config/middleware-spec.js';
import type { RateSpec } from '../config/limits-spec.js';
import { LimitReason } from '../shared/metrics-plan.js';
import { keyHash, nowMs, seedOf, type KeyHash } from '../shared/limit-table.js';
import { goDuration, limitTable } from '../worker/limits.js';
import type { Exchange, Middleware } from './chain.js';
import { SourceKey } from './source.js';

export class RateLimit implements Middleware {
  readonly name: string;
  private readonly rate: RateSpec | null;
  private readonly source: SourceKey;
  private readonly seed: KeyHash;
  private readonly key: KeyHash = { index: 0, fingerprint: 0 };

  constructor(spec: RateLimitSpec) {
    this.name = spec.name;
    this.rate = spec.rate;
    this.source = new SourceKey(spec.source);
    // The interval is part of the key: a reload that changes the rate starts the buckets afresh rather than
    // reading a tat written at another rate.
    this.seed = seedOf(`rateLimit\u0000${spec.name}\u0000${spec.rate?.intervalMs ?? 0}`);
  }

  handle(exchange: Exchange): void {
    const rate = this.rate;
    if (rate !== null) {
      const wait = limitTable().take(keyHash(this.seed, this.source.of(exchange.request), this.key), nowMs(), rate.intervalMs, rate.burst);
      if (wait > 0) {
        const headers = [
          ['content-type', 'text/plain; charset=utf-8'],
          ['retry-after', String(Math.max(1, Math.ceil(wait / 1000)))],
          ['x-retry-in', goDuration(wait)],
        ] as const;
        exchange.refuse(LimitReason.RateLimit, 429, headers, 'Too Many Requests\n');
        return;
      }
    }
    exchange.next();
  }
}
