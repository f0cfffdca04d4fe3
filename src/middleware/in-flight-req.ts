/**
 * Traefik's inFlightReq: at most `amount` requests in flight per source, counted across all workers in the
 * shared limits table (src/shared/limit-table.ts); the rest get 429. A WebSocket is in flight from its upgrade
 * to its close (the count is released by the tunnel, see chain.ts onEnd), so on a WebSocket router this is a
 * limit of open connections per client.
 */
import type { InFlightReqSpec } from '../config/middleware-spec.js';
import { LimitReason } from '../shared/metrics-plan.js';
import { LIMIT_REACHED, UNTRACKED, keyHash, seedOf, type KeyHash } from '../shared/limit-table.js';
import { countUntracked, limitTable } from '../worker/limits.js';
import type { Exchange, Middleware } from './chain.js';
import { SourceKey } from './source.js';

const TEXT = [['content-type', 'text/plain; charset=utf-8']] as const;

export class InFlightReq implements Middleware {
  readonly name: string;
  private readonly amount: number;
  private readonly source: SourceKey;
  /** Keyed by the middleware's name: a reload that keeps the name keeps the counts of what is in flight. */
  private readonly seed: KeyHash;
  private readonly key: KeyHash = { index: 0, fingerprint: 0 };

  constructor(spec: InFlightReqSpec) {
    this.name = spec.name;
    this.amount = spec.amount;
    this.source = new SourceKey(spec.source);
    this.seed = seedOf(`inFlightReq\u0000${spec.name}`);
  }

  handle(exchange: Exchange): void {
    const table = limitTable();
    const slot = table.acquire(keyHash(this.seed, this.source.of(exchange.request), this.key), this.amount);
    if (slot === LIMIT_REACHED) {
      exchange.refuse(LimitReason.InFlight, 429, TEXT, 'Too Many Requests\n');
      return;
    }
    if (slot === UNTRACKED) countUntracked();
    else exchange.onEnd(() => table.release(slot));
    exchange.next();
  }
}
