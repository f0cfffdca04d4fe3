/**
 * One generation's limits as a worker runs them (built with the Generation from its snapshot): per entry
 * point who is trusted to name the client (PROXY protocol, X-Forwarded-*) and the key of its connection
 * count; the allowed origins; per service the admission keys of its backends. Also the worker-level access to
 * the shared limits table (src/shared/limit-table.ts) and the counting of refusals (sluice_limited_total and
 * websocket_connections_total{outcome="limited"}).
 *
 * Costs: nothing per message here; per upgrade or request, only what is configured (a CIDR test per trusted
 * list, a string compare per allowed origin, one locked table slot per counted limit).
 */
import type { ConnectionLimitsSpec, Snapshot } from '../config/snapshot.js';
import type { RateSpec } from '../config/limits-spec.js';
import { LimitTable, keyHash, seedOf, type KeyHash } from '../shared/limit-table.js';
import { CidrList } from '../shared/cidr.js';
import { Total } from '../shared/layout.js';
import { Conn, LimitKind, LimitReason, connectionCell, limitedOffset } from '../shared/metrics-plan.js';
import { context, countTotal } from './context.js';
import type { Generation } from './generation.js';

/** Who may name the client on one entry point: null when nobody. */
export class TrustList {
  private readonly ranges: CidrList;
  constructor(
    private readonly insecure: boolean,
    trustedIPs: readonly string[],
  ) {
    this.ranges = new CidrList(trustedIPs);
  }

  trusts(address: string): boolean {
    return this.insecure || this.ranges.contains(address);
  }
}

export interface EntryPointGuard {
  /** Peers whose PROXY protocol header is believed. */
  readonly proxyProtocol: TrustList | null;
  /** Peers whose X-Forwarded-* headers are believed. */
  readonly forwardedHeaders: TrustList | null;
  /** WebSockets open or opening, all workers; 0 = no limit. */
  readonly maxConnections: number;
  /** The table key of this entry point's connection count. */
  readonly connectionsKey: KeyHash;
  readonly readTimeoutMs: number;
  readonly writeTimeoutMs: number;
}

/** websocket.allowedOrigins as a matcher: exact origins, and patterns with `*` for one or more host labels. */
export class OriginMatcher {
  private readonly exact: Set<string>;
  private readonly patterns: RegExp[];

  constructor(origins: readonly string[]) {
    this.exact = new Set(origins.filter((o) => !o.includes('*')));
    this.patterns = origins
      .filter((o) => o.includes('*'))
      .map((o) => new RegExp(`^${o.split('*').map((part) => part.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('[a-z0-9-]+(?:\\.[a-z0-9-]+)*')}$`));
  }

  /** `origin` as the browser sent it (any case). */
  allows(origin: string): boolean {
    const text = origin.toLowerCase();
    if (this.exact.has(text)) return true;
    for (const re of this.patterns) if (re.test(text)) return true;
    return false;
  }
}

export class GenerationLimits {
  /** By entry point index. */
  readonly entryPoints: readonly EntryPointGuard[];
  /** null: any origin. */
  readonly origins: OriginMatcher | null;
  readonly connection: ConnectionLimitsSpec;
  /** A connection needs its own limits object (message or control-frame rates, a lifetime). */
  readonly perConnection: boolean;
  /** By backend slot: the table key of its admission bucket (only for services with admission). */
  private readonly admissionKeys: (KeyHash | undefined)[] = [];

  constructor(snapshot: Snapshot) {
    this.entryPoints = snapshot.entryPoints.map((ep) => ({
      proxyProtocol: ep.limits.proxyProtocol === null ? null : new TrustList(ep.limits.proxyProtocol.insecure, ep.limits.proxyProtocol.trustedIPs),
      forwardedHeaders: ep.limits.forwardedHeaders === null ? null : new TrustList(ep.limits.forwardedHeaders.insecure, ep.limits.forwardedHeaders.trustedIPs),
      maxConnections: ep.limits.maxConnections,
      connectionsKey: keyHash(seedOf('entrypoint'), ep.name, { index: 0, fingerprint: 0 }),
      readTimeoutMs: ep.limits.readTimeoutMs,
      writeTimeoutMs: ep.limits.writeTimeoutMs,
    }));
    this.connection = snapshot.limits;
    this.origins = snapshot.limits.allowedOrigins.length === 0 ? null : new OriginMatcher(snapshot.limits.allowedOrigins);
    this.perConnection = snapshot.limits.messageRate !== null || snapshot.limits.controlFrameRate !== null || snapshot.limits.maxLifetimeMs > 0;
    for (const backend of snapshot.backends) {
      const service = snapshot.services[backend.service]!;
      if (service.limits.admission === null) continue;
      // Keyed by service and URL, as backend slots are: a backend that stays across a reload keeps its bucket.
      this.admissionKeys[backend.index] = keyHash(seedOf(`admission\u0000${service.name}`), backend.url, { index: 0, fingerprint: 0 });
    }
  }

  admissionKey(slot: number): KeyHash | undefined {
    return this.admissionKeys[slot];
  }
}

// ---- the shared table, per worker ----------------------------------------------------------------

let table: LimitTable | null = null;

/** This worker's view of the limits table (made on first use from the shared views). */
export function limitTable(): LimitTable {
  if (table === null) {
    const shared = context().shared;
    table = new LimitTable(shared.limitWords, shared.limitTimes);
  }
  return table;
}

/** A per-client limit let a request through uncounted (the table had no room for its key). */
export function countUntracked(): void {
  countTotal(Total.LimitsUntracked);
}

// ---- counting refusals ---------------------------------------------------------------------------

/**
 * An upgrade or request on (entryPoint, router) of `gen` was refused by a limit: sluice_limited_total, and for
 * an upgrade websocket_connections_total{outcome="limited"} with no backend.
 */
export function countLimited(gen: Generation, entryPoint: number, router: number, kind: LimitKind, reason: LimitReason): void {
  const plan = gen.plan;
  const route = plan.routeIndex[entryPoint * gen.snapshot.routers.length + router]!;
  if (route < 0) return;
  gen.slab[gen.slabBase + limitedOffset(plan, route, kind, reason)]++;
  if (kind === LimitKind.Upgrade) gen.slab[gen.slabBase + connectionCell(plan, plan.routes[route]!, -1) + Conn.Limited]++;
}

/** Whole seconds for a Retry-After that is at least `ms` away, plus up to a second at random so that clients
 *  refused together do not all come back in the same second. */
export function jitteredRetryAfter(ms: number): string {
  return String(Math.max(1, Math.ceil(ms / 1000 + Math.random())));
}

/** Milliseconds until a token, as Go's time.Duration prints it (Traefik's X-Retry-In): "1.5s", "250ms". */
export function goDuration(ms: number): string {
  if (ms >= 1000) return `${Number((ms / 1000).toFixed(3))}s`;
  return `${Number(ms.toFixed(3))}ms`;
}

/** A rate's GCRA tolerance: how far ahead of now the bucket's tat may run and still allow (burst - 1 tokens). */
export function toleranceOf(rate: RateSpec): number {
  return (rate.burst - 1) * rate.intervalMs;
}
