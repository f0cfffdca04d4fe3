/**
 * The compiled form of the limits (schema-limits.ts), part of the Snapshot: plain, structured-clone-safe data.
 * Rates are token buckets as GCRA wants them (an interval per token and a burst); address lists stay text,
 * already checked, and workers parse them once per generation (src/shared/cidr.ts).
 */

/** `average` per `period`, `burst` at once: one token every intervalMs, at most burst stored. */
export interface RateSpec {
  readonly intervalMs: number;
  readonly burst: number;
}

/** Traefik's ipStrategy: which address of the request is the client's. */
export interface IpStrategySpec {
  /** Take the address this many places from the right of X-Forwarded-For; 0 = not by depth. */
  readonly depth: number;
  /** With depth 0: skip these addresses from the right of X-Forwarded-For. Empty with depth 0 = the client's IP. */
  readonly excludedIPs: readonly string[];
  /** Group IPv6 addresses by this prefix; 0 = each address apart. */
  readonly ipv6Subnet: number;
}

/** Traefik's sourceCriterion: what makes requests one source. */
export interface SourceSpec {
  readonly kind: 'ip' | 'header' | 'host';
  /** Lowercase header name for kind 'header', '' otherwise. */
  readonly header: string;
  /** For kind 'ip'. */
  readonly ipStrategy: IpStrategySpec;
}

export interface InFlightReqSpec {
  readonly type: 'inFlightReq';
  readonly name: string;
  readonly amount: number;
  readonly source: SourceSpec;
}

export interface RateLimitSpec {
  readonly type: 'rateLimit';
  readonly name: string;
  /** null: average 0, no limit. */
  readonly rate: RateSpec | null;
  readonly source: SourceSpec;
}

export interface IpAllowListSpec {
  readonly type: 'ipAllowList';
  readonly name: string;
  readonly sourceRange: readonly string[];
  readonly ipStrategy: IpStrategySpec;
  readonly rejectStatusCode: number;
}

/** PROXY protocol or X-Forwarded-* believed from these peers. */
export interface TrustSpec {
  /** Every peer. */
  readonly insecure: boolean;
  readonly trustedIPs: readonly string[];
}

/** An entry point's limits and who its clients are. */
export interface EntryPointLimits {
  /** WebSockets open or opening on the entry point, all workers; 0 = no limit. */
  readonly maxConnections: number;
  readonly proxyProtocol: TrustSpec | null;
  readonly forwardedHeaders: TrustSpec | null;
  /** respondingTimeouts for plain HTTP (0 = none). */
  readonly readTimeoutMs: number;
  readonly writeTimeoutMs: number;
}

/** A service's limits, applied to each of its backends. */
export interface ServiceLimits {
  /** WebSockets per backend, all workers; 0 = no limit. */
  readonly maxConnections: number;
  /** Upgrade admission per backend; null = none. */
  readonly admission: RateSpec | null;
}

/** Per-connection WebSocket limits (websocket.*). */
export interface ConnectionLimitsSpec {
  /** Lowercase origins; an entry may hold `*` for one or more host labels. Empty = any origin. */
  readonly allowedOrigins: readonly string[];
  readonly messageRate: (RateSpec & { readonly onLimit: 'close' | 'drop' }) | null;
  readonly controlFrameRate: RateSpec | null;
  /** 0 = off. */
  readonly maxLifetimeMs: number;
}
