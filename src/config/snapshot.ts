/**
 * The compiled configuration: what the primary hands every worker. It is plain data (structured-clone
 * safe, deep-frozen after compile) with every name already resolved to an index, so the hot path never
 * looks anything up by name. Written by src/config/compile.ts in the primary, read by src/worker/*.
 */
import type { RuleNode } from './rule-ast.js';
import type { MiddlewareSpec } from './middleware-spec.js';
import type { ConnectionLimitsSpec, EntryPointLimits, ServiceLimits } from './limits-spec.js';

export type { MiddlewareSpec } from './middleware-spec.js';
export type { ConnectionLimitsSpec, EntryPointLimits, ServiceLimits } from './limits-spec.js';

export const SNAPSHOT_VERSION = 4;

export type Strategy = 'leastconn' | 'roundrobin' | 'hash';

export interface EntryPointSpec {
  readonly name: string;
  /** Host to bind ('' = all interfaces, IPv4 and IPv6). IPv6 literals without brackets. */
  readonly host: string;
  readonly port: number;
  /** True when this entry point terminates TLS (it serves routers that carry `tls`). */
  readonly tls: boolean;
  /** Why it terminates TLS: it sets http.tls, a TLS router lists it, or Traefik's convention (named
   *  websecure, or on :443/:8443, while no entry point sets http.tls); '' when plain. */
  readonly tlsBy: '' | 'http.tls' | 'router' | 'convention';
  /** The TLS settings its uWS app is made with (tls.options); null when plain. */
  readonly tlsOptions: TlsOptionsSpec | null;
  /** transport.lifeCycle: on SIGTERM, keep accepting for acceptGraceMs, then close the open
   *  WebSockets with 1001 spread over graceMs. */
  readonly lifeCycle: { readonly acceptGraceMs: number; readonly graceMs: number };
  /** http.maxHeaderBytes: a request head above this is answered 431. */
  readonly maxHeaderBytes: number;
  /** permessage-deflate toward this entry point's clients (its own keys over the global ones). */
  readonly compression: CompressionSpec;
  /** maxConnections, who the client is (PROXY protocol, X-Forwarded-*), HTTP timeouts (limits-spec.ts). */
  readonly limits: EntryPointLimits;
}

/** Client-leg permessage-deflate of one entry point (src/worker/compression.ts maps it to uWS options). */
export interface CompressionSpec {
  readonly mode: 'off' | 'shared' | 'dedicated';
  /** Messages to a client below this many bytes go uncompressed. */
  readonly threshold: number;
  /** uWS DEDICATED_COMPRESSOR_<size> (used when mode is dedicated): '3KB' … '256KB'. */
  readonly dedicatedCompressor: string;
  /** 'shared' or uWS DEDICATED_DECOMPRESSOR_<size>: '512B' … '32KB'. */
  readonly decompressor: string;
}

/** One set of tls.options, as the worker's SSLApp takes it. */
export interface TlsOptionsSpec {
  readonly name: string;
  /** uWS ssl_ciphers (OpenSSL names, ':'-separated); '' = the TLS library's defaults. */
  readonly ciphers: string;
  /** No certificate for an unknown or absent SNI: the handshake fails. */
  readonly sniStrict: boolean;
}

export interface CertificateSpec {
  readonly certFile: string;
  readonly keyFile: string;
  /** DNS names (CN and SANs, lowercased; wildcards kept as `*.example.com`) read from the certificate. */
  readonly names: readonly string[];
  /** SHA-256 of the certificate and key files as read: a file rewritten in place (a renewal) changes it,
   *  so a reload serves the new certificate to new connections. */
  readonly fingerprint: string;
  /** Made by Sluice at start (src/config/default-certificate.ts) because no configured certificate covers
   *  a TLS router's host names; its files live in a private temporary directory. */
  readonly generated: boolean;
}

export interface RouterSpec {
  readonly name: string;
  readonly rule: string;
  /** Parsed rule; workers compile it into a matcher (functions cannot cross threads). */
  readonly ast: RuleNode;
  readonly priority: number;
  readonly service: number;
  /** Indexes into Snapshot.entryPoints. */
  readonly entryPoints: readonly number[];
  readonly tls: boolean;
  /** Indexes into Snapshot.middlewares, in the order they apply (chains already flattened). */
  readonly middlewares: readonly number[];
}

export interface TransportSpec {
  readonly name: string;
  readonly insecureSkipVerify: boolean;
  /** PEM text of every configured root CA, concatenated; '' = the system's roots. */
  readonly rootCAs: string;
  /** SNI and certificate name to use toward the backend; '' = the backend URL's host. */
  readonly serverName: string;
  readonly dialTimeoutMs: number;
  /** HTTP: time allowed for a backend's response head (0 = no limit). */
  readonly responseHeaderTimeoutMs: number;
  /** HTTP: how long an idle keep-alive connection to a backend stays open. */
  readonly idleConnTimeoutMs: number;
  /** HTTP: idle keep-alive connections kept per backend (0 = none kept). */
  readonly maxIdleConnsPerHost: number;
  /** Offer permessage-deflate to backends and inflate what they compress. */
  readonly websocketCompression: boolean;
  /** Local addresses upstream WebSocket connections leave from, in turn (empty or absent: the kernel's choice). */
  readonly sourceAddresses?: readonly string[];
}

export interface BackendSpec {
  /** Global backend index: the slot of its counters in the SharedArrayBuffer. */
  readonly index: number;
  readonly service: number;
  /** The server URL as written; a DNS discovery slot's is `URL#N` (slot N of that server). */
  readonly url: string;
  readonly host: string;
  readonly port: number;
  /** https/wss: TLS toward the backend. */
  readonly tls: boolean;
  /** Path prefix from the server URL (Traefik prepends it to the request path); '' when none. */
  readonly pathPrefix: string;
  /** servers[].weight: share of new connections relative to the pool (0 = none). */
  readonly weight: number;
  /**
   * With DNS discovery: the name this slot's address comes from ('' for a static backend). The primary
   * resolves it and tells the workers which address each slot holds; an empty slot is down.
   */
  readonly dnsName: string;
}

/** Where the hash key of a request comes from (strategy: hash). */
export interface HashSpec {
  readonly source: 'clientIP' | 'header' | 'cookie' | 'query';
  /** Header name (lowercase), cookie name or query parameter name; '' for clientIP. */
  readonly name: string;
  /** No backend takes more than balanceFactor × the average live connections. */
  readonly balanceFactor: number;
}

export interface StickySpec {
  readonly cookieName: string;
  /** Cookie attributes after the value, ready to append: `; Path=/; HttpOnly; …`. */
  readonly attributes: string;
}

export interface HealthCheckSpec {
  readonly path: string;
  readonly method: string;
  /** '' = from the backend URL (https for wss/https). */
  readonly scheme: '' | 'http' | 'https';
  /** '' = the backend's host. */
  readonly hostname: string;
  /** 0 = the backend's port. */
  readonly port: number;
  readonly headers: readonly (readonly [string, string])[];
  /** 0 = any 2xx or 3xx. */
  readonly status: number;
  readonly intervalMs: number;
  readonly unhealthyIntervalMs: number;
  readonly timeoutMs: number;
  readonly rise: number;
  readonly fall: number;
  readonly onDown: 'keep' | 'drain';
}

export interface PassiveHealthSpec {
  readonly maxFailedAttempts: number;
  readonly failureWindowMs: number;
  readonly maxEjectionMs: number;
}

export interface DiscoverySpec {
  readonly refreshIntervalMs: number;
  /** Backend slots per server. */
  readonly maxAddresses: number;
}

export interface ServiceSpec {
  readonly name: string;
  readonly strategy: Strategy;
  /** Connect attempts on other backends after the first fails. */
  readonly retries: number;
  readonly passHostHeader: boolean;
  /** Index into Snapshot.transports. */
  readonly transport: number;
  /** Global backend indexes, in config order (with discovery: maxAddresses slots per server). */
  readonly backends: readonly number[];
  readonly hash: HashSpec | null;
  readonly sticky: StickySpec | null;
  readonly healthCheck: HealthCheckSpec | null;
  readonly passiveHealthCheck: PassiveHealthSpec | null;
  /** 0 = off. */
  readonly slowStartMs: number;
  readonly drainWindowMs: number;
  /** A reload that removes one of this pool's backends drains its WebSockets (1012, paced) or keeps them. */
  readonly onRemove: 'drain' | 'keep';
  readonly discovery: DiscoverySpec | null;
  /** Retry-After (seconds) of the 503 answered when every backend is down. */
  readonly retryAfterSeconds: number;
  /** maxConnections and upgrade admission per backend (limits-spec.ts). */
  readonly limits: ServiceLimits;
}

export interface WebSocketSettings {
  /** Largest message accepted on either leg; larger closes with 1009. */
  readonly maxMessageSize: number;
  /** Client send buffer above which Sluice stops reading that client's upstream socket. */
  readonly clientHighWaterMark: number;
  /** Hard cap of the client send buffer (uWS maxBackpressure); past it the client is closed with 1013. */
  readonly clientMaxBuffer: number;
  /** Upstream socket write buffer past which the client is closed with 1013. */
  readonly upstreamWriteBudget: number;
  /** Seconds without traffic before uWS pings/closes the client (0 = off). */
  readonly idleTimeoutSeconds: number;
  /** Time allowed for the backend to answer the upgrade. */
  readonly handshakeTimeoutMs: number;
  /** Backend leg: ping a backend silent this long (0 = no pings). */
  readonly pingIntervalMs: number;
  /** Backend leg: a pinged backend silent this long is dropped (client closed with 1011). */
  readonly pongTimeoutMs: number;
}

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export interface AdminSettings {
  /** Host of the admin listener ('' = all interfaces). */
  readonly host: string;
  readonly port: number;
  /** Bearer token of the mutating endpoints ('' = none: they answer 401 unless bound to loopback). */
  readonly token: string;
}

export interface AccessLogSettings {
  /** Off unless the config has an `accessLog` section. */
  readonly enabled: boolean;
  /** Absolute path of the file appended to; '' = standard output. */
  readonly filePath: string;
  readonly format: 'json';
}

/** Fan-out (GRIP), compiled from the `fanout` section; null when the section is absent. */
export interface FanoutSettings {
  /** Publish listener ('' host = all interfaces). Read at start, like the admin listener. */
  readonly publishHost: string;
  readonly publishPort: number;
  /** HS256 key publishers' JWTs are checked against, as base64 of its bytes; '' = none (allowed on
   *  loopback only). A string, not bytes: the snapshot is deep-frozen and typed arrays cannot be. */
  readonly keyBase64: string;
  readonly maxBodySize: number;
  readonly slowConsumer: 'drop' | 'close';
  readonly slowConsumerBuffer: number;
  readonly maxSubscriptions: number;
  /** '' = no Redis: one Sluice alone. */
  readonly redisUrl: string;
  readonly redisChannel: string;
}

export interface Snapshot {
  readonly version: number;
  /** The config file this came from (for messages). */
  readonly source: string;
  readonly workers: number;
  readonly entryPoints: readonly EntryPointSpec[];
  readonly certificates: readonly CertificateSpec[];
  /** Sorted: highest priority first, then longer rule, then name. */
  readonly routers: readonly RouterSpec[];
  readonly services: readonly ServiceSpec[];
  readonly backends: readonly BackendSpec[];
  readonly transports: readonly TransportSpec[];
  /** http.middlewares that do something (chains are flattened into RouterSpec.middlewares). */
  readonly middlewares: readonly MiddlewareSpec[];
  readonly websocket: WebSocketSettings;
  /** Per-connection WebSocket limits: origins, message and control-frame rates, lifetime (limits-spec.ts). */
  readonly limits: ConnectionLimitsSpec;
  /** loadBalancer.onRemove: what a reload does to the WebSockets of a backend whose service it removed
   *  altogether (a service that stays uses its own ServiceSpec.onRemove). */
  readonly onRemove: 'drain' | 'keep';
  /** Signs sticky cookies (HMAC-SHA256); from the config, SLUICE_STICKY_SECRET, or random per process. */
  readonly stickySecret: string;
  /** True when stickySecret was generated (replicas will not agree; the primary warns). */
  readonly stickySecretGenerated: boolean;
  /** DNS servers for discovery ('IP' or 'IP:port'); empty = the system's. */
  readonly dnsServers: readonly string[];
  readonly admin: AdminSettings;
  readonly logLevel: LogLevel;
  readonly accessLog: AccessLogSettings;
  readonly fanout: FanoutSettings | null;
}
