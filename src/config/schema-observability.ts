/**
 * The keys of Sluice's observability (part of CONFIG_SCHEMA in schema.ts): the admin listener, the log and
 * the access log, with Traefik's log and accessLog keys that Sluice does not support refused by name.
 */
import type { ObjectSchema } from './schema-types.js';
import { notYet } from './schema-types.js';

export const adminSchema = {
  kind: 'object',
  doc: "Sluice's own key: the admin listener, apart from the entry points, served by the primary: `/metrics` (Prometheus), `/health` (liveness), `/ready` (readiness), `/api/overview`, `/api/routers`, `/api/services`, `/api/backends` (JSON), `/dashboard`.",
  fields: {
    address: {
      kind: 'scalar',
      type: 'address',
      defaultValue: { host: '', port: 9090 },
      doc: 'Where the admin listener listens. Its read-only endpoints have no authentication: bind it to a private address (`"127.0.0.1:9090"`, the pod IP). A port that cannot be opened is logged as an error and Sluice serves traffic without it (the liveness probe then fails and tells you).',
    },
    token: {
      kind: 'scalar',
      type: 'string',
      defaultText: 'env `SLUICE_ADMIN_TOKEN`; none',
      doc: 'Bearer token of the endpoints that change Sluice (`POST /api/reload`). Without a token they answer 401, unless `admin.address` is a loopback address.',
    },
  },
} as const satisfies ObjectSchema;

export const logSchema = {
  kind: 'object',
  doc: "Sluice's own log: JSON lines on stderr (pino), one object per event, never per connection or message.",
  fields: {
    level: {
      kind: 'scalar',
      type: 'choice',
      choices: ['DEBUG', 'INFO', 'WARN', 'ERROR', 'debug', 'info', 'warn', 'error'],
      defaultValue: 'INFO',
      expects: "'DEBUG', 'INFO', 'WARN' or 'ERROR', in upper or lower case",
      typeText: '`DEBUG` | `INFO` | `WARN` | `ERROR` (or lowercase)',
      doc: "Least severe level written, as Traefik's `log.level`.",
    },
  },
  refused: {
    ...notYet('filePath', 'noColor', 'maxSize', 'maxAge', 'maxBackups', 'compress'),
    format: 'the log is always JSON lines on stderr',
  },
} as const satisfies ObjectSchema;

export const accessLogSchema = {
  kind: 'object',
  acceptsBoolean: true,
  doc: 'Present: one JSON line per closed WebSocket connection (see below). As in Traefik, writing the section turns the log on.',
  defaultText: 'absent (off)',
  fields: {
    filePath: {
      kind: 'scalar',
      type: 'string',
      typeText: 'file path',
      defaultText: 'standard output',
      doc: 'File the lines are appended to (created with its folder when missing).',
    },
    format: {
      kind: 'scalar',
      type: 'choice',
      choices: ['json'],
      defaultValue: 'json',
      expects: "'json': Traefik's 'common' format is not supported",
      doc: "Only JSON; Traefik's `common` format is refused.",
    },
  },
  refused: notYet('bufferingSize', 'filters', 'fields', 'addInternals'),
} as const satisfies ObjectSchema;
