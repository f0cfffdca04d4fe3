/**
 * The keys of Sluice's limits (part of CONFIG_SCHEMA): Traefik's inFlightReq, rateLimit and ipAllowList
 * middlewares, the entry point keys that say who the client is (proxyProtocol, forwardedHeaders) and how long
 * an HTTP exchange may take (respondingTimeouts), and Sluice's own limits on connections, upgrades and
 * messages. compile-limits.ts turns them into the snapshot's limit specs (limits-spec.ts).
 */
import type { ListSchema, ObjectSchema, ScalarSchema } from './schema-types.js';
import { notYet } from './schema-types.js';

type ListExtra = Omit<ListSchema, 'kind' | 'item' | 'doc'>;

function addresses<const D extends string, const E extends ListExtra = object>(doc: D, extra: E = {} as E) {
  return {
    kind: 'list',
    item: { kind: 'scalar', type: 'string', doc: 'An IP address ("10.0.0.1", "::1") or a CIDR range ("10.0.0.0/8", "fd00::/8").' },
    typeText: 'list of IPs or CIDR ranges',
    doc,
    ...extra,
  } as const;
}

/** A rate in Traefik's rateLimit shape: `average` per `period`, up to `burst` at once. */
function rate<const D extends string, const A extends string, const B extends ScalarSchema>(doc: D, averageDoc: A, burst: B) {
  return {
    kind: 'object',
    optIn: true,
    doc,
    fields: {
      average: { kind: 'scalar', type: 'number', min: 0, max: 1e9, defaultValue: 0, defaultNote: '(off)', doc: averageDoc },
      period: { kind: 'scalar', type: 'duration', min: 1, defaultValue: 1000, doc: 'The period `average` counts over: the rate is `average / period`.' },
      burst,
    },
  } as const;
}

const ipStrategy = {
  kind: 'object',
  optIn: true,
  doc: "Which address is the client's: the connection's (default), or one taken from X-Forwarded-For (as the entry point's `forwardedHeaders` left it).",
  fields: {
    depth: {
      kind: 'scalar',
      type: 'integer',
      min: 0,
      max: 64,
      defaultValue: 0,
      defaultNote: "(the connection's address)",
      doc: 'Use the address `depth` places from the right of X-Forwarded-For (1 = the rightmost); a header with fewer addresses gives none (ipAllowList refuses it). Wins over `excludedIPs`.',
    },
    excludedIPs: addresses('Scanning X-Forwarded-For from the right, skip these addresses (your own proxies) and use the first other one.', { defaultText: 'none' }),
    ipv6Subnet: {
      kind: 'scalar',
      type: 'integer',
      min: 1,
      max: 128,
      doc: 'Group IPv6 clients by this prefix length (64: one key per /64 network), since one client often holds a whole network.',
      defaultText: 'none (each address apart)',
    },
  },
} as const satisfies ObjectSchema;

const sourceCriterion = {
  kind: 'object',
  optIn: true,
  doc: 'What groups requests into one source: one of `ipStrategy`, `requestHeaderName` or `requestHost`.',
  defaultText: "the client's IP",
  fields: {
    ipStrategy,
    requestHeaderName: {
      kind: 'scalar',
      type: 'string',
      doc: 'Requests with the same value of this header are one source (requests without it share one).',
      defaultText: 'none',
    },
    requestHost: { kind: 'scalar', type: 'boolean', defaultValue: false, doc: 'Requests to the same Host are one source.' },
  },
} as const satisfies ObjectSchema;

export const inFlightReqSchema = {
  kind: 'object',
  optIn: true,
  doc: 'Limits the requests in flight per source, across all workers; the rest get 429. A WebSocket is in flight for its whole life, so on an upgrade this is a limit of open connections per client.',
  fields: {
    amount: { kind: 'scalar', type: 'integer', min: 1, max: 1_000_000_000, required: true, doc: 'Requests (and WebSockets) in flight allowed per source.' },
    sourceCriterion,
  },
} as const satisfies ObjectSchema;

export const rateLimitSchema = {
  kind: 'object',
  optIn: true,
  doc: 'A token bucket per source, shared by all workers: `burst` requests at once, refilled at `average` per `period`; the rest get 429 with Retry-After. On a router with WebSockets it limits upgrades, not messages (see `websocket.messageRate`).',
  fields: {
    average: { kind: 'scalar', type: 'number', min: 0, max: 1e9, defaultValue: 0, defaultNote: '(no limit)', doc: 'Requests per `period` allowed on average; fractions allowed.' },
    period: { kind: 'scalar', type: 'duration', min: 1, defaultValue: 1000, doc: 'The period `average` counts over.' },
    burst: { kind: 'scalar', type: 'integer', min: 1, max: 1_000_000_000, defaultValue: 1, doc: 'Requests allowed at once (the bucket size).' },
    sourceCriterion,
  },
  refused: { redis: 'the buckets are shared by the workers of one Sluice through shared memory; replicas each keep their own' },
} as const satisfies ObjectSchema;

export const ipAllowListSchema = {
  kind: 'object',
  optIn: true,
  doc: 'Lets through only clients whose address is in `sourceRange`; the rest get 403.',
  fields: {
    sourceRange: addresses('Allowed addresses and ranges.', { required: true, nonEmpty: 'address or range', expects: 'a list of IPs or CIDR ranges like "10.0.0.0/8"' }),
    ipStrategy,
    rejectStatusCode: { kind: 'scalar', type: 'integer', min: 400, max: 599, defaultValue: 403, doc: 'Status of the answer to a refused client.' },
  },
} as const satisfies ObjectSchema;

/** Traefik's `entryPoints.<name>.proxyProtocol` and `.forwardedHeaders`. */
function trustedSources<const D extends string, const T extends string, const I extends string>(doc: D, trustedDoc: T, insecureDoc: I) {
  return {
    kind: 'object',
    optIn: true,
    doc,
    fields: {
      trustedIPs: addresses(trustedDoc, { defaultText: 'none' }),
      insecure: { kind: 'scalar', type: 'boolean', defaultValue: false, doc: insecureDoc },
    },
  } as const;
}

export const proxyProtocolSchema = {
  ...trustedSources(
    'PROXY protocol v2 from the load balancer in front: the address it reports is the client (uWebSockets.js parses the header; a v1 header, plain text, is not understood and the connection is dropped).',
    'Peers whose PROXY header is believed; from any other peer the header is ignored and the peer is the client.',
    'Believe every peer (only when nothing else can reach this port).',
  ),
} as const satisfies ObjectSchema;

export const forwardedHeadersSchema = {
  ...trustedSources(
    "X-Forwarded-* from the proxies in front: from these peers they are kept (X-Forwarded-For gets the peer appended) and the client is the rightmost X-Forwarded-For address that is not itself trusted; from anyone else they are replaced.",
    'Peers whose X-Forwarded-* headers are believed.',
    'Believe every peer.',
  ),
  refused: notYet('connection'),
} as const satisfies ObjectSchema;

export const respondingTimeoutsSchema = {
  kind: 'object',
  doc: "Traefik's timeouts of a plain HTTP exchange on this entry point. They never apply to WebSockets (see [Timeouts](#timeouts)).",
  fields: {
    readTimeout: {
      kind: 'scalar',
      type: 'duration',
      defaultValue: 60_000,
      defaultNote: "(Traefik's)",
      doc: 'Time allowed to receive a whole request body, from the request head on; past it the client gets 408 (or its connection is closed when an answer has started). `0s`: none.',
    },
    writeTimeout: {
      kind: 'scalar',
      type: 'duration',
      defaultValue: 0,
      defaultNote: '(none)',
      doc: 'Time allowed to send a whole response, from the request head on; past it the connection is closed (a long-poll or a stream needs this off or long).',
    },
    idleTimeout: {
      kind: 'scalar',
      type: 'duration',
      defaultValue: 180_000,
      defaultNote: "(Traefik's)",
      doc: 'Accepted for Traefik configs, but uWebSockets.js 20.30 closes an idle keep-alive connection after 10 s whatever this says (its compiled-in timeout); a value below 10s warns.',
    },
  },
} as const satisfies ObjectSchema;

/** `entryPoints.<name>.websocket.maxConnections`. */
export const entryPointMaxConnections = {
  kind: 'scalar',
  type: 'integer',
  min: 0,
  max: 100_000_000,
  defaultValue: 0,
  defaultNote: '(no limit)',
  doc: 'Sluice: WebSockets open or opening on this entry point, all workers together; an upgrade beyond gets 503 with Retry-After (plain HTTP is not counted: use inFlightReq).',
} as const satisfies ScalarSchema;

/** `loadBalancer.maxConnections` and `http.services.<name>.loadBalancer.maxConnections`. */
export function backendMaxConnections<const D extends string, const E extends object>(doc: D, extra: E) {
  return { kind: 'scalar', type: 'integer', min: 0, max: 100_000_000, doc, ...extra } as const;
}

/** `loadBalancer.admission` and `http.services.<name>.loadBalancer.admission`. */
export function admissionSchema<const D extends string>(doc: D) {
  return rate(
    doc,
    'Upgrades per `period` each backend takes on average; `0`: no admission control.',
    { kind: 'scalar', type: 'integer', min: 1, max: 1_000_000_000, doc: 'Upgrades a backend takes at once (the bucket size).', defaultText: '`average` ÷ 10, at least 1' } as const,
  );
}

/** Sluice's own keys under `websocket`. */
export const websocketLimitFields = {
  allowedOrigins: {
    kind: 'list',
    item: { kind: 'scalar', type: 'string', doc: 'An origin like "https://app.example.com", with `*` for one or more labels of the host ("https://*.example.com").' },
    typeText: 'list of origins',
    defaultText: 'any',
    doc: 'Browsers whose page comes from one of these origins may open WebSockets; an upgrade with another `Origin` gets 403. An upgrade without `Origin` (not from a browser) is let through: Origin checks protect users from other web pages, not servers from clients.',
  },
  messageRate: {
    kind: 'object',
    optIn: true,
    doc: 'Messages a client may send per connection: `burst` at once, refilled at `average` per `period`.',
    fields: {
      average: { kind: 'scalar', type: 'number', min: 0, max: 1e9, defaultValue: 0, defaultNote: '(off)', doc: 'Client messages per `period` on average; `0`: no limit.' },
      period: { kind: 'scalar', type: 'duration', min: 1, defaultValue: 1000, doc: 'The period `average` counts over: the rate is `average / period`.' },
      burst: { kind: 'scalar', type: 'integer', min: 1, max: 1_000_000_000, doc: 'Messages allowed at once.', defaultText: '`average`, at least 1' },
      onLimit: {
        kind: 'scalar',
        type: 'choice',
        choices: ['close', 'drop'],
        defaultValue: 'close',
        expects: "'close' or 'drop'",
        doc: '`close`: a message over the rate closes the client with 1008 (and its backend connection with 1008); `drop`: the message is not forwarded, only counted, and the connection stays.',
      },
    },
  },
  controlFrameRate: rate(
    'Pings and pongs a client may send per connection (uWebSockets.js answers each ping itself); past the rate the client is closed with 1008.',
    'Control frames per `period` on average; `0`: no limit.',
    { kind: 'scalar', type: 'integer', min: 1, max: 1_000_000_000, doc: 'Control frames allowed at once.', defaultText: '`average`, at least 1' } as const,
  ),
  maxLifetime: {
    kind: 'scalar',
    type: 'duration',
    defaultValue: 0,
    defaultNote: '(off)',
    doc: 'Close a WebSocket with 1012 (Service Restart: reconnect) after it has been open this long, less up to 10% at random so that connections opened together do not reconnect together; rotates long-lived clients over backends added since. `0s`: connections live as long as they like.',
  },
} as const satisfies ObjectSchema['fields'];
