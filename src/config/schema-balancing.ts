/**
 * The keys of a service's backends that come and go (part of CONFIG_SCHEMA in schema.ts): sticky
 * cookies, active and passive health checks, consistent hashing and DNS discovery. Each section is
 * opt-in: absent means the feature is off, so validate.ts does not fill it with its defaults.
 */
import type { ObjectSchema } from './schema-types.js';

export const stickySchema = {
  kind: 'object',
  optIn: true,
  doc: "Sticky sessions (Traefik's). A reconnecting client (or a Socket.IO long-poll) that presents the cookie returns to its backend.",
  defaultText: 'absent',
  fields: {
    cookie: {
      kind: 'object',
      acceptsBoolean: true,
      doc: 'The cookie set on the `101` answer. Its value is HMAC-SHA256(`loadBalancer.stickySecret`, service and backend URL), cut to 128 bits: it names the backend without showing its address, cannot be forged, and every replica with the same secret honours it. A cookie naming no backend of the pool, or one that is down or failed this request, is ignored and replaced.',
      fields: {
        name: {
          kind: 'scalar',
          type: 'string',
          doc: "Cookie name (Traefik's default).",
          defaultText: '`_` and 6 hex digits of SHA-1 of the service name',
        },
        secure: { kind: 'scalar', type: 'boolean', defaultValue: false, doc: 'Send `Secure`.' },
        httpOnly: { kind: 'scalar', type: 'boolean', defaultValue: false, doc: 'Send `HttpOnly`.' },
        sameSite: {
          kind: 'scalar',
          type: 'choice',
          choices: ['', 'none', 'lax', 'strict'],
          defaultValue: '',
          doc: "`SameSite` attribute (none sent when `''`).",
        },
        maxAge: {
          kind: 'scalar',
          type: 'integer',
          min: -1,
          max: Number.MAX_SAFE_INTEGER,
          defaultValue: 0,
          doc: '`Max-Age` in seconds; `0` is a session cookie, `-1` expires it at once.',
        },
        path: { kind: 'scalar', type: 'string', defaultValue: '/', doc: '`Path` attribute.' },
        domain: { kind: 'scalar', type: 'string', defaultText: 'none', doc: '`Domain` attribute (host-only cookie when absent).' },
      },
    },
  },
} as const satisfies ObjectSchema;

export const healthCheckSchema = {
  kind: 'object',
  optIn: true,
  doc: 'Active HTTP checks, run by the primary process (not once per worker). Every backend starts up.',
  defaultText: 'absent (no active checks)',
  fields: {
    path: {
      kind: 'scalar',
      type: 'string',
      required: true,
      expects: 'a path like "/health"',
      doc: 'Path (and query) requested.',
    },
    method: { kind: 'scalar', type: 'string', defaultValue: 'GET', doc: 'Method of the check.' },
    scheme: {
      kind: 'scalar',
      type: 'choice',
      choices: ['http', 'https'],
      doc: "HTTPS checks trust what the service's `serversTransport` trusts.",
      defaultText: '`https` for `wss`/`https` servers, else `http`',
    },
    hostname: { kind: 'scalar', type: 'string', doc: '`Host` header (and SNI) of the check.', defaultText: "the server's host" },
    port: { kind: 'scalar', type: 'integer', min: 1, max: 65535, doc: 'Port of the check.', defaultText: "the server's port" },
    headers: {
      kind: 'map',
      entry: 'header',
      value: { kind: 'scalar', type: 'string', doc: "One header's value." },
      doc: 'Extra request headers.',
    },
    status: {
      kind: 'scalar',
      type: 'integer',
      min: 100,
      max: 599,
      doc: 'The status a healthy backend answers.',
      defaultText: 'any 2xx or 3xx',
    },
    interval: { kind: 'scalar', type: 'duration', min: 1, defaultValue: 30_000, doc: 'Time between checks of a backend that is up.' },
    unhealthyInterval: {
      kind: 'scalar',
      type: 'duration',
      min: 1,
      doc: 'Time between checks of a backend that is down. It is also the `Retry-After` of the `503` answered when every backend is down.',
      defaultText: '`interval`',
    },
    timeout: { kind: 'scalar', type: 'duration', min: 1, defaultValue: 5000, doc: 'A check slower than this failed.' },
    rise: {
      kind: 'scalar',
      type: 'integer',
      min: 1,
      max: 100,
      defaultValue: 2,
      doc: "Sluice's own key: good checks in a row that bring a down backend back.",
    },
    fall: {
      kind: 'scalar',
      type: 'integer',
      min: 1,
      max: 100,
      defaultValue: 3,
      doc: "Sluice's own key: failed checks in a row that mark a backend down (no new connections).",
    },
    onDown: {
      kind: 'scalar',
      type: 'choice',
      choices: ['keep', 'drain'],
      defaultValue: 'keep',
      doc: "Sluice's own key: a down backend's open WebSockets are kept (a failed probe does not prove they are dead), or drained: closed with 1012, paced over `drainWindow`; a drain stops when the backend passes `rise` checks again before it ends.",
    },
  },
  refused: {
    mode: 'only HTTP checks exist (no gRPC)',
    followRedirects: 'a redirect answer counts as it is (3xx is healthy unless status is set)',
  },
} as const satisfies ObjectSchema;

/**
 * What a service without `passiveHealthCheck` gets: Sluice's own default (Traefik has none). Three
 * failures, not Traefik's one, because it applies to every service unasked: one refused connect (a
 * backend restarting, a full accept queue) only cools the backend down for a moment; three in a window
 * mean it is gone.
 */
export const DEFAULT_PASSIVE_HEALTH_CHECK = { maxFailedAttempts: 3, failureWindow: 10_000, maxEjectionTime: 300_000 } as const;

export const passiveHealthCheckSchema = {
  kind: 'object',
  optIn: true,
  doc: "Traefik's passive checks: failed connects, dial or handshake timeouts, invalid or `5xx` answers to the upgrade (never a clean WebSocket close) are counted by every worker, and a refused or timed-out connect also passes the backend over for a 2-second cool-down at once. Unlike Traefik, Sluice checks passively when the key is absent: a dead backend holds no connections, so least connections would otherwise send it every new client until an active check (if any) marks it down.",
  defaultText: '`{ maxFailedAttempts: 3, failureWindow: 10s }` when absent; `{ maxFailedAttempts: 0 }` turns passive checks off',
  fields: {
    maxFailedAttempts: {
      kind: 'scalar',
      type: 'integer',
      min: 0,
      max: 1000,
      defaultValue: 1,
      doc: 'Failures within `failureWindow` that eject the backend (Traefik\'s default, when the section is written). `0` turns passive checks off: failures are neither counted nor cooled down.',
    },
    failureWindow: {
      kind: 'scalar',
      type: 'duration',
      min: 1,
      defaultValue: 10_000,
      doc: 'Window of counted failures, and the first ejection time. Each ejection in a row doubles it; after an ejection the backend is on probation for one window, where a single failure ejects it again, and a clean window forgives the past. Without active checks, it is also the `Retry-After` of the `503` answered when every backend is down.',
    },
    maxEjectionTime: {
      kind: 'scalar',
      type: 'duration',
      min: 1,
      defaultValue: 300_000,
      doc: "Sluice's own key: cap of the doubled ejection time.",
    },
  },
} as const satisfies ObjectSchema;

export const hashSchema = {
  kind: 'object',
  optIn: true,
  doc: "Sluice's own key, for `strategy: hash` (an error with another strategy).",
  defaultText: 'absent',
  fields: {
    key: {
      kind: 'scalar',
      type: 'string',
      defaultValue: 'clientIP',
      expects: "'clientIP', 'header:NAME', 'cookie:NAME' or 'query:NAME'",
      doc: 'What is hashed: `clientIP`, `header:NAME` (`header:host` is the Host header), `cookie:NAME` or `query:NAME`. A request without the key has no affinity to keep: it goes to the least loaded backend.',
    },
    balanceFactor: {
      kind: 'scalar',
      type: 'number',
      min: 1,
      max: 100,
      defaultValue: 1.25,
      doc: "Bounded load: no backend takes more than factor × its weighted share of the live connections (counted over all workers); a key whose backend is full goes to the next backend in that key's own order. The counts are this process's (all its workers): replicas agree on every key until one of them has to overflow it.",
    },
  },
} as const satisfies ObjectSchema;

export const discoverySchema = {
  kind: 'object',
  optIn: true,
  doc: "Sluice's own key: expand each server's host name to one backend per address it resolves to (a Kubernetes headless Service, Docker's `tasks.<name>`).",
  defaultText: 'absent (static servers)',
  fields: {
    type: {
      kind: 'scalar',
      type: 'choice',
      choices: ['dns'],
      required: true,
      expects: "'dns'",
      doc: 'A and AAAA records, through `dns.servers` or the system resolver.',
    },
    refreshInterval: {
      kind: 'scalar',
      type: 'duration',
      min: 1,
      defaultValue: 30_000,
      doc: 'Time between resolutions. New addresses join (with `slowStart`, except at the first resolution); vanished ones are marked down and drained over `drainWindow`. A failed lookup changes nothing.',
    },
    maxAddresses: {
      kind: 'scalar',
      type: 'integer',
      min: 1,
      max: 1024,
      defaultValue: 16,
      doc: 'Backend slots reserved per server (the shared counters are sized at start); further addresses are ignored and logged. Metrics, the admin API and logs name slot N of a server `URL#N`.',
    },
  },
} as const satisfies ObjectSchema;
