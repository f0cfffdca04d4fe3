/**
 * The keys of a service's backends that come and go (part of CONFIG_SCHEMA in schema.ts): sticky
 * cookies, active and passive health checks, consistent hashing and DNS discovery. Each section is
 * opt-in: absent means the feature is off, so validate.ts does not fill it with its defaults.
 */
import type { ObjectSchema } from './schema.js';

export const stickySchema: ObjectSchema = {
  kind: 'object',
  optIn: true,
  doc: 'Sticky sessions: a signed cookie names the backend, so reconnects (and every replica with the same secret) return to it.',
  fields: {
    cookie: {
      kind: 'object',
      acceptsBoolean: true,
      doc: 'The cookie; `{}` takes every default.',
      fields: {
        name: {
          kind: 'scalar',
          type: 'string',
          doc: 'Cookie name.',
          defaultText: "'_' and 6 hex digits of SHA-1 of the service name, as in Traefik",
        },
        secure: { kind: 'scalar', type: 'boolean', defaultValue: false, defaultText: 'false', doc: 'Send the Secure attribute.' },
        httpOnly: { kind: 'scalar', type: 'boolean', defaultValue: false, defaultText: 'false', doc: 'Send the HttpOnly attribute.' },
        sameSite: {
          kind: 'scalar',
          type: 'choice',
          choices: ['', 'none', 'lax', 'strict'],
          defaultValue: '',
          defaultText: "'' (no attribute)",
          doc: "SameSite attribute: 'none', 'lax', 'strict', or '' for none sent.",
        },
        maxAge: {
          kind: 'scalar',
          type: 'integer',
          min: -1,
          max: Number.MAX_SAFE_INTEGER,
          defaultValue: 0,
          defaultText: '0 (a session cookie)',
          doc: 'Max-Age in seconds; 0 = session cookie; -1 expires it at once.',
        },
        path: { kind: 'scalar', type: 'string', defaultValue: '/', defaultText: "'/'", doc: 'Path attribute.' },
        domain: { kind: 'scalar', type: 'string', defaultText: 'none (host only)', doc: 'Domain attribute.' },
      },
    },
  },
};

export const healthCheckSchema: ObjectSchema = {
  kind: 'object',
  optIn: true,
  doc: 'Active HTTP health checks, run by the primary against every backend of the service.',
  fields: {
    path: {
      kind: 'scalar',
      type: 'string',
      required: true,
      expects: 'a path like "/health"',
      doc: 'Path (and query) requested.',
    },
    method: { kind: 'scalar', type: 'string', defaultValue: 'GET', defaultText: 'GET', doc: 'HTTP method of the check.' },
    scheme: {
      kind: 'scalar',
      type: 'choice',
      choices: ['http', 'https'],
      doc: "'http' or 'https'.",
      defaultText: 'https for wss/https servers, else http',
    },
    hostname: { kind: 'scalar', type: 'string', doc: 'Host header of the check.', defaultText: "the server's host" },
    port: { kind: 'scalar', type: 'integer', min: 1, max: 65535, doc: 'Port of the check.', defaultText: "the server's port" },
    headers: {
      kind: 'map',
      entry: 'header',
      value: { kind: 'scalar', type: 'string', doc: 'Header value.' },
      doc: 'Extra request headers, by name.',
    },
    status: {
      kind: 'scalar',
      type: 'integer',
      min: 100,
      max: 599,
      doc: 'The status a healthy backend answers.',
      defaultText: 'any 2xx or 3xx',
    },
    interval: { kind: 'scalar', type: 'duration', min: 1, defaultValue: 30_000, defaultText: '30s', doc: 'Time between checks of a healthy backend.' },
    unhealthyInterval: { kind: 'scalar', type: 'duration', min: 1, doc: 'Time between checks of a backend marked down.', defaultText: 'interval' },
    timeout: { kind: 'scalar', type: 'duration', min: 1, defaultValue: 5000, defaultText: '5s', doc: 'Time a check may take before it counts as failed.' },
    rise: { kind: 'scalar', type: 'integer', min: 1, max: 100, defaultValue: 2, defaultText: '2', doc: 'Sluice: consecutive good checks that bring a down backend back.' },
    fall: { kind: 'scalar', type: 'integer', min: 1, max: 100, defaultValue: 3, defaultText: '3', doc: 'Sluice: consecutive failed checks that mark a backend down.' },
    onDown: {
      kind: 'scalar',
      type: 'choice',
      choices: ['keep', 'drain'],
      defaultValue: 'keep',
      defaultText: 'keep',
      doc: "Sluice: what happens to a down backend's open WebSockets: 'keep' them, or 'drain' them with 1012, paced over drainWindow.",
    },
  },
  refused: {
    mode: 'only HTTP checks exist (no gRPC)',
    followRedirects: 'a redirect answer counts as it is (3xx is healthy unless status is set)',
  },
};

export const passiveHealthCheckSchema: ObjectSchema = {
  kind: 'object',
  optIn: true,
  doc: 'Passive checks: failed connects and failed upgrades eject a backend for a while.',
  fields: {
    maxFailedAttempts: {
      kind: 'scalar',
      type: 'integer',
      min: 1,
      max: 1000,
      defaultValue: 1,
      defaultText: '1',
      doc: 'Failures within failureWindow that eject the backend.',
    },
    failureWindow: {
      kind: 'scalar',
      type: 'duration',
      min: 1,
      defaultValue: 10_000,
      defaultText: '10s',
      doc: 'Window of counted failures, and the first ejection time (doubled on each ejection in a row).',
    },
    maxEjectionTime: {
      kind: 'scalar',
      type: 'duration',
      min: 1,
      defaultValue: 300_000,
      defaultText: '5m',
      doc: 'Sluice: cap of the doubled ejection time.',
    },
  },
};

export const hashSchema: ObjectSchema = {
  kind: 'object',
  optIn: true,
  doc: 'Sluice: consistent hashing (strategy: hash).',
  fields: {
    key: {
      kind: 'scalar',
      type: 'string',
      defaultValue: 'clientIP',
      defaultText: 'clientIP',
      expects: "'clientIP', 'header:NAME', 'cookie:NAME' or 'query:NAME'",
      doc: "What is hashed: 'clientIP', 'header:NAME', 'cookie:NAME' or 'query:NAME'.",
    },
    balanceFactor: {
      kind: 'scalar',
      type: 'number',
      min: 1,
      max: 100,
      defaultValue: 1.25,
      defaultText: '1.25',
      doc: 'Bounded load: no backend takes more than factor × the average live connections; keys overflow to their next backend.',
    },
  },
};

export const discoverySchema: ObjectSchema = {
  kind: 'object',
  optIn: true,
  doc: "Sluice: expand each server's host name to one backend per address it resolves to.",
  fields: {
    type: {
      kind: 'scalar',
      type: 'choice',
      choices: ['dns'],
      required: true,
      expects: "'dns'",
      doc: "'dns': resolve A and AAAA records of each server's host.",
    },
    refreshInterval: {
      kind: 'scalar',
      type: 'duration',
      min: 1,
      defaultValue: 30_000,
      defaultText: '30s',
      doc: 'Time between resolutions; added addresses join (with slowStart), vanished ones drain.',
    },
    maxAddresses: {
      kind: 'scalar',
      type: 'integer',
      min: 1,
      max: 1024,
      defaultValue: 16,
      defaultText: '16',
      doc: 'Backend slots reserved per server; addresses beyond it are ignored (and logged).',
    },
  },
};
