/**
 * The plan of one config generation's metrics slabs: which labelled counter lives at which offset,
 * derived from the snapshot alone, so the primary (which sums and labels) and every worker (which
 * counts) compute the same offsets without a message. Names are resolved to offsets here, once; the hot
 * path adds a precomputed offset and an enum value, never looks up a label.
 *
 * Each generation has its own SharedArrayBuffer (made by the primary, `workers × slabFloats` Float64s),
 * one slab per worker. Sub-regions of one slab, in order (one writer: the worker that owns the slab):
 *   connections  [route][backend position + 1 ("none")][CONN_FIELDS]   outcomes of upgrades and the live gauge
 *   errors       [backend (snapshot order)][ERROR_REASONS]             per backend failure reasons
 *   closes       [service][SIDES][CLOSE_CODES]                          who closed, with which code (bucketed)
 *   upgrade      [service][UPGRADE_BUCKETS.length + 3]                  histogram: per-bucket counts, +Inf, sum, count
 *   duration     [service][CONNECTION_BUCKETS.length + 3]               the same for connection lifetimes
 *   httpRequests [route][backend position + 1 ("none")][HTTP_METHODS][HTTP_CODES]   plain HTTP requests answered
 *   httpBackend  [backend (snapshot order)][HTTP_BACKEND_FIELDS]       request/response body bytes, HTTP errors by reason
 *   httpDuration [service][HTTP_DURATION_STRIDE]                       histogram of HTTP request durations
 *   unrouted     [entry point]                                          requests no router matched (404)
 *   limited      [route][LIMIT_KINDS][LIMIT_REASONS]                  upgrades and requests refused by a limit
 * A route is one (entry point, router) pair the router listens on.
 *
 * A counter's identity is its label set, never its offset: the primary (metrics-store.ts) sums every live
 * generation's slabs by label set and, when a generation is released (its last connection closed in every
 * worker), folds them into carried totals, so a backend that stays across a reload keeps counting from its
 * old total under the new plan's offsets.
 */
import type { Snapshot } from '../config/snapshot.js';

/** Fields of one (route, backend) cell of the connections region. */
export const enum Conn {
  Upgraded = 0,
  RejectedByBackend = 1,
  NoBackend = 2,
  ConnectFailed = 3,
  Limited = 4,
  /** Live upgraded connections (a gauge: +1 on open, -1 on close). */
  Active = 5,
}
export const CONN_FIELDS = 6;
/** The `outcome` label of websocket_connections_total, indexed by Conn. */
export const CONN_OUTCOMES = ['upgraded', 'rejected_by_backend', 'no_backend', 'connect_failed', 'limited'] as const;

export const enum ErrorReason {
  /** The backend refused the TCP (or TLS) connection. */
  ConnectRefused = 0,
  /** The dial or the backend's answer to the upgrade took too long. */
  ConnectTimeout = 1,
  /** The backend answered the upgrade with something that is not a valid WebSocket 101. */
  HandshakeFailed = 2,
  /** The backend's socket closed after the upgrade without a close frame (client gets 1011). */
  BackendLost = 3,
  /** The backend broke RFC 6455 (masked frame, reserved bits, bad opcode…): 1002. */
  ProtocolError = 4,
  /** A message above websocket.maxMessageSize on either leg: 1009. */
  MessageTooBig = 5,
  /** The backend stopped reading past websocket.upstreamWriteBudget: the client is closed with 1013. */
  Backpressure = 6,
  /** A client message over websocket.messageRate (closed with 1008, or dropped). */
  MessageRate = 7,
  /** Client pings and pongs over websocket.controlFrameRate: closed with 1008. */
  ControlFrameRate = 8,
  /** The client broke RFC 6455 in a way uWebSockets.js drops without a close frame (invalid UTF-8 in a text
   *  message, which is also what an unmasked frame usually turns into): 1006. */
  ClientProtocolError = 9,
  /** The backend did not answer a ping within websocket.pongTimeout: dropped, its client closed with 1011. */
  BackendUnresponsive = 10,
  /** uWebSockets.js dropped a message to the client (its send buffer was past websocket.clientMaxBuffer):
   *  one per message dropped; the message is not counted as delivered, and the client is closed with 1013. */
  MessageDropped = 11,
}
export const ERROR_REASONS = [
  'connect_refused',
  'connect_timeout',
  'handshake_failed',
  'backend_lost',
  'protocol_error',
  'message_too_big',
  'backpressure',
  'message_rate',
  'control_frame_rate',
  'client_protocol_error',
  'backend_unresponsive',
  'message_dropped',
] as const;

/** What refused an upgrade or a request (`reason` of sluice_limited_total). */
export const enum LimitReason {
  /** inFlightReq: the source has `amount` requests or WebSockets in flight (429). */
  InFlight = 0,
  /** rateLimit: the source's bucket is empty (429). */
  RateLimit = 1,
  /** ipAllowList: the address is not in sourceRange (403). */
  IpNotAllowed = 2,
  /** websocket.allowedOrigins (403). */
  OriginNotAllowed = 3,
  /** entryPoints.<name>.websocket.maxConnections (503). */
  EntryPointFull = 4,
  /** Every backend holds loadBalancer.maxConnections (503). */
  BackendsFull = 5,
  /** No backend had an admission token (503 with a spread Retry-After). */
  Admission = 6,
}
export const LIMIT_REASONS = ['in_flight', 'rate_limit', 'ip_not_allowed', 'origin_not_allowed', 'entrypoint_max_connections', 'backend_max_connections', 'backend_admission'] as const;
/** `kind` label of sluice_limited_total: a WebSocket upgrade, or a plain HTTP request. */
export const LIMIT_KINDS = ['websocket', 'http'] as const;
export const enum LimitKind {
  Upgrade = 0,
  Http = 1,
}

/** Which leg started the close: the client, the backend, or Sluice itself (limits, shutdown, protocol). */
export const enum Side {
  Client = 0,
  Backend = 1,
  Proxy = 2,
}
export const SIDES = ['client', 'backend', 'proxy'] as const;

/** `code` label values: the standard codes 1000-1015 one by one, then three buckets, so the label set is
 *  bounded whatever codes applications use. */
export const CLOSE_CODES = [
  ...Array.from({ length: 16 }, (_, i) => String(1000 + i)),
  '3xxx',
  '4xxx',
  'other',
] as const;

export function closeCodeIndex(code: number): number {
  if (code >= 1000 && code <= 1015) return code - 1000;
  if (code >= 3000 && code <= 3999) return 16;
  if (code >= 4000 && code <= 4999) return 17;
  return 18;
}

/** Upper bounds (seconds) of websocket_upgrade_duration_seconds: from a loopback 101 to a slow dial. */
export const UPGRADE_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] as const;
/** Upper bounds (seconds) of websocket_connection_duration_seconds: a second to a day. */
export const CONNECTION_BUCKETS = [1, 5, 10, 30, 60, 300, 600, 1800, 3600, 7200, 21600, 86400] as const;

// ---- plain HTTP --------------------------------------------------------------------------------

/** `method` label values of http_requests_total: the common methods one by one, the rest as 'other'. */
export const HTTP_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'other'] as const;
/** `code` label values: status classes, so the label set stays bounded (exact statuses are in the access log).
 *  A client that went away before any answer counts as 4xx (nginx's 499). */
export const HTTP_CODES = ['1xx', '2xx', '3xx', '4xx', '5xx'] as const;
export const HTTP_CELL = HTTP_METHODS.length * HTTP_CODES.length;

export function httpMethodIndex(method: string): number {
  switch (method) {
    case 'GET':
      return 0;
    case 'HEAD':
      return 1;
    case 'POST':
      return 2;
    case 'PUT':
      return 3;
    case 'DELETE':
      return 4;
    case 'PATCH':
      return 5;
    case 'OPTIONS':
      return 6;
    default:
      return 7;
  }
}

export function httpCodeIndex(status: number): number {
  const c = Math.floor(status / 100) - 1;
  return c < 0 ? 3 : c > 4 ? 4 : c;
}

/** Fields of one backend's row of the httpBackend region. */
export const enum HttpField {
  RequestBytes = 0,
  ResponseBytes = 1,
  /** First error reason (HttpError); the reasons follow in order. */
  Errors = 2,
}

export const enum HttpError {
  /** The backend refused the connection (or TLS failed): nothing was sent. */
  ConnectRefused = 0,
  /** The dial took longer than dialTimeout. */
  ConnectTimeout = 1,
  /** No response head within responseHeaderTimeout (504). */
  ResponseTimeout = 2,
  /** The backend closed or reset the connection before its response head. */
  BackendReset = 3,
  /** The backend's connection ended in the middle of its response body: the client's response was cut. */
  BackendLost = 4,
  /** The backend's answer was not valid HTTP/1.1 (or its head was too large). */
  InvalidResponse = 5,
  /** The client went away before the response was complete; the backend request was cancelled. */
  ClientAborted = 6,
}
export const HTTP_ERROR_REASONS = ['connect_refused', 'connect_timeout', 'response_timeout', 'backend_reset', 'backend_lost', 'invalid_response', 'client_aborted'] as const;
export const HTTP_BACKEND_FIELDS = 2 + HTTP_ERROR_REASONS.length;

/** Upper bounds (seconds) of http_request_duration_seconds: a loopback GET to a Socket.IO long-poll (25 s). */
export const HTTP_DURATION_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60] as const;
export const HTTP_DURATION_STRIDE = HTTP_DURATION_BUCKETS.length + 3;

export interface RoutePlan {
  readonly entryPoint: number;
  readonly router: number;
  readonly service: number;
  /** Offset of this route's connections cells in a slab. */
  readonly base: number;
  /** Offset of this route's HTTP request cells (one HTTP_CELL per backend position, then "none"). */
  httpBase: number;
}

export interface MetricsPlan {
  readonly slabFloats: number;
  readonly routes: readonly RoutePlan[];
  /** Route index by `entryPoint * routers.length + router`, -1 when the router is not on that entry point. */
  readonly routeIndex: Int32Array;
  /** By backend slot: the backend's position in its service's pool (the cell of its connections counters). */
  readonly backendPosition: Int32Array;
  /** By backend slot: the backend's index in snapshot.backends (its errors row), -1 when not in this snapshot. */
  readonly backendLocal: Int32Array;
  /** The "none" position of each service (its pool size): outcomes with no backend chosen. */
  readonly noneOffset: Int32Array;
  readonly errorsBase: number;
  readonly closesBase: number;
  readonly upgradeBase: number;
  readonly durationBase: number;
  readonly httpBackendBase: number;
  readonly httpDurationBase: number;
  /** sluice_unrouted_requests_total, one counter per entry point (snapshot order). */
  readonly unroutedBase: number;
  readonly limitedBase: number;
}

export const UPGRADE_STRIDE = UPGRADE_BUCKETS.length + 3;
export const DURATION_STRIDE = CONNECTION_BUCKETS.length + 3;

/** `slotCapacity`: the shared backend slots (layout.ts); backend indexes in the snapshot are slots. */
export function planMetrics(snapshot: Snapshot, slotCapacity = slotsNeeded(snapshot)): MetricsPlan {
  const routers = snapshot.routers.length;
  const routeIndex = new Int32Array(snapshot.entryPoints.length * routers).fill(-1);
  const routes: RoutePlan[] = [];
  let offset = 0;
  snapshot.routers.forEach((router, r) => {
    for (const entryPoint of router.entryPoints) {
      routeIndex[entryPoint * routers + r] = routes.length;
      routes.push({ entryPoint, router: r, service: router.service, base: offset, httpBase: 0 });
      offset += (snapshot.services[router.service]!.backends.length + 1) * CONN_FIELDS;
    }
  });
  const backendPosition = new Int32Array(slotCapacity).fill(-1);
  const backendLocal = new Int32Array(slotCapacity).fill(-1);
  const noneOffset = new Int32Array(snapshot.services.length);
  snapshot.services.forEach((service, s) => {
    service.backends.forEach((backend, position) => (backendPosition[backend] = position));
    noneOffset[s] = service.backends.length;
  });
  snapshot.backends.forEach((spec, local) => (backendLocal[spec.index] = local));
  const errorsBase = offset;
  offset += snapshot.backends.length * ERROR_REASONS.length;
  const closesBase = offset;
  offset += snapshot.services.length * SIDES.length * CLOSE_CODES.length;
  const upgradeBase = offset;
  offset += snapshot.services.length * UPGRADE_STRIDE;
  const durationBase = offset;
  offset += snapshot.services.length * DURATION_STRIDE;
  for (const route of routes) {
    route.httpBase = offset;
    offset += (snapshot.services[route.service]!.backends.length + 1) * HTTP_CELL;
  }
  const httpBackendBase = offset;
  offset += snapshot.backends.length * HTTP_BACKEND_FIELDS;
  const httpDurationBase = offset;
  offset += snapshot.services.length * HTTP_DURATION_STRIDE;
  const unroutedBase = offset;
  offset += snapshot.entryPoints.length;
  const limitedBase = offset;
  offset += routes.length * LIMIT_KINDS.length * LIMIT_REASONS.length;
  return {
    slabFloats: offset,
    routes,
    routeIndex,
    backendPosition,
    backendLocal,
    noneOffset,
    errorsBase,
    closesBase,
    upgradeBase,
    durationBase,
    httpBackendBase,
    httpDurationBase,
    unroutedBase,
    limitedBase,
  };
}

/** The slot capacity a snapshot needs when its backend indexes are used as they are (tests, tools). */
export function slotsNeeded(snapshot: Snapshot): number {
  let max = 0;
  for (const b of snapshot.backends) max = Math.max(max, b.index + 1);
  return max;
}

/** Offset of the connections cell of `backend` (-1: none chosen) on `route`, field 0. */
export function connectionCell(plan: MetricsPlan, route: RoutePlan, backend: number): number {
  const position = backend < 0 ? plan.noneOffset[route.service]! : plan.backendPosition[backend]!;
  return route.base + position * CONN_FIELDS;
}

/** Offset of the http_requests_total counter of `backend` (-1: none chosen) on `route` for this method and status. */
export function httpRequestOffset(plan: MetricsPlan, route: RoutePlan, backend: number, method: number, status: number): number {
  const position = backend < 0 ? plan.noneOffset[route.service]! : plan.backendPosition[backend]!;
  return route.httpBase + position * HTTP_CELL + method * HTTP_CODES.length + httpCodeIndex(status);
}

/** Offset of field `field` of backend slot `backend`'s HTTP row (it must be in this plan's snapshot). */
export function httpBackendOffset(plan: MetricsPlan, backend: number, field: number): number {
  return plan.httpBackendBase + plan.backendLocal[backend]! * HTTP_BACKEND_FIELDS + field;
}

/** Offset of the error counter of backend slot `backend` (it must be in this plan's snapshot). */
export function errorOffset(plan: MetricsPlan, backend: number, reason: ErrorReason): number {
  return plan.errorsBase + plan.backendLocal[backend]! * ERROR_REASONS.length + reason;
}

/** Offset of the sluice_limited_total counter of route number `route` (an index into plan.routes). */
export function limitedOffset(plan: MetricsPlan, route: number, kind: LimitKind, reason: LimitReason): number {
  return plan.limitedBase + (route * LIMIT_KINDS.length + kind) * LIMIT_REASONS.length + reason;
}

export function closeOffset(plan: MetricsPlan, service: number, side: Side, code: number): number {
  return plan.closesBase + (service * SIDES.length + side) * CLOSE_CODES.length + closeCodeIndex(code);
}

/** Add one observation to the histogram at `base` (counts per bucket, +Inf, sum, count). */
export function observe(slab: Float64Array, base: number, bounds: readonly number[], seconds: number): void {
  let bucket = 0;
  while (bucket < bounds.length && seconds > bounds[bucket]!) bucket++;
  slab[base + bucket]++;
  slab[base + bounds.length + 1] += seconds;
  slab[base + bounds.length + 2]++;
}
